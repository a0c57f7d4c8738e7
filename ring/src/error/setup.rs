//! Errors of setting up: configuring, creating, opening and removing a ring, and attaching an
//! endpoint to it.

use core::fmt;
use std::io;
use std::time::Duration;

use super::Corruption;
use crate::kind::{Kind, Role};

/// A ring configuration or builder argument that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The capacity must be a power of two, at least 1.
    CapacityNotPowerOfTwo(u64),
    /// The capacity exceeds [`MAX_CAPACITY`](crate::MAX_CAPACITY).
    CapacityTooLarge {
        /// What was asked for.
        requested: u64,
        /// The limit.
        max: u64,
    },
    /// A record ring's data area is below
    /// [`MIN_RECORD_CAPACITY`](crate::MIN_RECORD_CAPACITY) bytes.
    CapacityTooSmall {
        /// What was asked for.
        requested: u64,
        /// The minimum.
        min: u64,
    },
    /// An MPMC ring needs at least two slots: with one, Vyukov's sequence numbers cannot tell
    /// "written, not yet read" from "free for the next lap".
    MpmcCapacityOne,
    /// A slot must hold at least one byte.
    SlotSizeZero,
    /// The slot size exceeds [`MAX_SLOT_SIZE`](crate::MAX_SLOT_SIZE).
    SlotSizeTooLarge {
        /// What was asked for.
        requested: usize,
        /// The limit.
        max: usize,
    },
    /// `capacity × slot stride` exceeds [`MAX_SEGMENT_SIZE`](crate::MAX_SEGMENT_SIZE) or the
    /// address space.
    SegmentTooLarge {
        /// The requested capacity.
        capacity: u64,
        /// The requested slot size.
        slot_size: usize,
        /// The limit on the segment size, bytes.
        max: u64,
    },
    /// Creating a ring needs this setting, which was not given.
    Missing(&'static str),
    /// A segment name the OS would refuse or misread.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The combination asked for is not supported (for instance opening an anonymous segment).
    Unsupported(&'static str),
}

/// The header field a geometry check found wrong, and why: how a [`ConfigError`] about the
/// geometry reads when the geometry came from a segment's header (`OpenError::CorruptHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GeometryFault {
    /// The field at fault.
    pub(crate) field: GeometryField,
    /// A short reason.
    pub(crate) reason: &'static str,
}

/// The header fields the geometry is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeometryField {
    /// `capacity`.
    Capacity,
    /// `slot_size`.
    SlotSize,
}

impl GeometryField {
    /// The field's name in `docs/layout.md`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            GeometryField::Capacity => "capacity",
            GeometryField::SlotSize => "slot_size",
        }
    }
}

impl ConfigError {
    /// The header field and reason of a geometry error (`None` for the other errors, which a
    /// geometry check never returns).
    pub(crate) fn geometry_fault(&self) -> Option<GeometryFault> {
        let (field, reason) = match self {
            ConfigError::CapacityNotPowerOfTwo(_) => {
                (GeometryField::Capacity, "not a power of two")
            }
            ConfigError::CapacityTooLarge { .. } => {
                (GeometryField::Capacity, "above the maximum capacity")
            }
            ConfigError::CapacityTooSmall { .. } => {
                (GeometryField::Capacity, "below the minimum capacity")
            }
            ConfigError::MpmcCapacityOne => {
                (GeometryField::Capacity, "1 in an MPMC ring (minimum 2)")
            }
            ConfigError::SlotSizeZero => (GeometryField::SlotSize, "zero"),
            ConfigError::SlotSizeTooLarge { .. } => {
                (GeometryField::SlotSize, "above the maximum slot size")
            }
            ConfigError::SegmentTooLarge { .. } => {
                (GeometryField::SlotSize, "capacity × slot size too large")
            }
            _ => return None,
        };
        Some(GeometryFault { field, reason })
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::CapacityNotPowerOfTwo(c) => {
                write!(f, "capacity {c} is not a power of two (1, 2, 4, 8, ...)")
            }
            ConfigError::CapacityTooSmall { requested, min } => {
                write!(
                    f,
                    "capacity {requested} is below the minimum of {min} bytes"
                )
            }
            ConfigError::CapacityTooLarge { requested, max } => {
                write!(f, "capacity {requested} exceeds the maximum of {max}")
            }
            ConfigError::MpmcCapacityOne => {
                f.write_str("an MPMC ring needs a capacity of at least 2 slots")
            }
            ConfigError::SlotSizeZero => f.write_str("slot size must be at least 1 byte"),
            ConfigError::SlotSizeTooLarge { requested, max } => {
                write!(
                    f,
                    "slot size {requested} exceeds the maximum of {max} bytes"
                )
            }
            ConfigError::SegmentTooLarge {
                capacity,
                slot_size,
                max,
            } => write!(
                f,
                "{capacity} slots of {slot_size} bytes need a segment larger than the maximum of {max} bytes"
            ),
            ConfigError::Missing(what) => write!(f, "missing setting: {what}"),
            ConfigError::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            ConfigError::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A failed OS call, before it is told apart into the variants a caller acts on (each error
/// type below does that for its operation).
#[derive(Debug)]
pub(crate) struct OsError {
    /// The call, as named in its man page.
    pub(crate) op: &'static str,
    /// The OS error.
    pub(crate) source: io::Error,
}

impl OsError {
    /// The error of `op` that set `errno`.
    pub(crate) fn new(op: &'static str, errno: nix::errno::Errno) -> OsError {
        OsError {
            op,
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }

    /// The errno, if the error came from one.
    fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    fn denied(&self) -> bool {
        matches!(self.errno(), Some(libc::EACCES | libc::EPERM))
    }
}

/// Why a ring could not be created.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// A bad argument or configuration.
    Config(ConfigError),
    /// A segment of that name or key already exists.
    AlreadyExists,
    /// The OS refused (the directory's or the key's permissions, or a policy).
    PermissionDenied,
    /// The memory for the ring is not there: the filesystem behind POSIX shared memory
    /// (`/dev/shm`, a tmpfs; 64 MiB by default in a Docker container) has less room than the
    /// ring needs, or the memory limit was hit. Nothing is left behind.
    NoSpace {
        /// Bytes the ring needs.
        needed: u64,
        /// Bytes the filesystem had free when asked, if it could be asked.
        available: Option<u64>,
        /// Where the memory was to come from (`/dev/shm`, or "SysV shared memory").
        place: String,
    },
    /// A System V limit refuses the segment: `sysctl` (for instance `kernel.shmmax`) is
    /// `value`, and the ring needs `needed` bytes (or one more segment, for `kernel.shmmni`).
    SysvLimit {
        /// The limit, by its sysctl name.
        sysctl: &'static str,
        /// Its current value (bytes, pages for `kernel.shmall`, segments for `kernel.shmmni`).
        value: u64,
        /// Bytes the ring needs.
        needed: u64,
    },
    /// Another OS error.
    Io {
        /// The call that failed, as named in its man page.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Config(e) => e.fmt(f),
            CreateError::AlreadyExists => {
                f.write_str("a segment with that name or key already exists")
            }
            CreateError::PermissionDenied => f.write_str("permission denied creating the segment"),
            CreateError::NoSpace {
                needed,
                available,
                place,
            } => {
                write!(
                    f,
                    "no space for the ring in {place}: it needs {}",
                    mib(*needed)
                )?;
                if let Some(a) = available {
                    write!(f, ", {} free", mib(*a))?;
                }
                f.write_str(
                    " (make room with `shmring gc`, make a smaller ring, or give more: \
                     `docker run --shm-size=…` or `--ipc=host`, a Kubernetes emptyDir with \
                     medium: Memory; `shmring doctor` checks)",
                )
            }
            CreateError::SysvLimit {
                sysctl,
                value,
                needed,
            } => write!(
                f,
                "System V limit: {sysctl} is {value}, the ring needs {needed} bytes \
                 (raise it with `sysctl -w {sysctl}=…`, or use a POSIX ring)"
            ),
            CreateError::Io { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

/// Bytes as MiB (or KiB below one MiB), for messages.
fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::Config(e) => Some(e),
            CreateError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for CreateError {
    fn from(e: ConfigError) -> Self {
        CreateError::Config(e)
    }
}

impl From<OsError> for CreateError {
    fn from(e: OsError) -> Self {
        match e.errno() {
            Some(libc::EEXIST) => CreateError::AlreadyExists,
            _ if e.denied() => CreateError::PermissionDenied,
            _ => CreateError::Io {
                op: e.op,
                source: e.source,
            },
        }
    }
}

/// Why a ring could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// A bad argument or configuration.
    Config(ConfigError),
    /// No segment of that name or key exists.
    NotFound,
    /// The OS refused access (segment permissions, or a read-only mapping).
    PermissionDenied,
    /// Another OS error.
    Io {
        /// The call that failed, as named in its man page.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The segment does not start with the shmring magic: it belongs to something else.
    NotShmring {
        /// The first 8 bytes, as a little-endian `u64`.
        found: u64,
    },
    /// The segment was built by a shmring with another layout version.
    VersionMismatch {
        /// The version this build reads and writes.
        supported: u32,
        /// The version in the segment.
        found: u32,
    },
    /// A header field disagrees with what it must be: derived from the other fields, or asked for
    /// by the opener.
    LayoutMismatch {
        /// The header field.
        field: &'static str,
        /// What it should be.
        expected: u64,
        /// What the segment holds.
        found: u64,
    },
    /// A header field holds a value no shmring writes.
    CorruptHeader {
        /// The header field.
        field: &'static str,
        /// Its value.
        found: u64,
        /// Why it cannot be right.
        reason: &'static str,
    },
    /// The segment is shorter than its header says (or than a header).
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes the segment has.
        found: u64,
    },
    /// The creator has not finished building the header (it may have died doing so).
    NotInitialized {
        /// How long the opener waited for it.
        waited: Duration,
        /// The creating process, if the segment's identity line proves a shmring creator wrote
        /// it.
        creator_pid: Option<u32>,
        /// Whether that process still runs (false if unknown).
        creator_alive: bool,
    },
    /// [`open_or_create`](crate::RingBuilder::open_or_create) found no ring and could not
    /// create one.
    Create(CreateError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Config(e) => e.fmt(f),
            OpenError::NotFound => f.write_str("no segment with that name or key exists"),
            OpenError::PermissionDenied => f.write_str("permission denied by the segment's mode"),
            OpenError::Io { op, source } => write!(f, "{op} failed: {source}"),
            OpenError::NotShmring { found } => write!(
                f,
                "not a shmring segment (first word {found:#018x}, expected the SHMRING magic)"
            ),
            OpenError::VersionMismatch { supported, found } => write!(
                f,
                "segment has layout version {found}; this build of shmring reads version {supported}"
            ),
            OpenError::LayoutMismatch {
                field,
                expected,
                found,
            } => write!(
                f,
                "layout mismatch: {field} is {found}, expected {expected}"
            ),
            OpenError::CorruptHeader {
                field,
                found,
                reason,
            } => write!(f, "corrupt header: {field} = {found} is {reason}"),
            OpenError::Truncated { needed, found } => write!(
                f,
                "segment truncated: {found} bytes, the ring needs {needed}"
            ),
            OpenError::NotInitialized {
                waited,
                creator_pid: Some(pid),
                creator_alive,
            } => write!(
                f,
                "segment not initialized after waiting {waited:?}; its creator, process {pid}, {}",
                if *creator_alive {
                    "is still running"
                } else {
                    "is dead"
                }
            ),
            OpenError::NotInitialized { waited, .. } => write!(
                f,
                "segment not initialized after waiting {waited:?} (its creator may have died)"
            ),
            OpenError::Create(e) => write!(f, "creating it: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Config(e) => Some(e),
            OpenError::Io { source, .. } => Some(source),
            OpenError::Create(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for OpenError {
    fn from(e: ConfigError) -> Self {
        OpenError::Config(e)
    }
}

impl From<OsError> for OpenError {
    fn from(e: OsError) -> Self {
        match e.errno() {
            Some(libc::ENOENT) => OpenError::NotFound,
            _ if e.denied() => OpenError::PermissionDenied,
            _ => OpenError::Io {
                op: e.op,
                source: e.source,
            },
        }
    }
}

/// Why a segment could not be removed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoveError {
    /// A bad name, or a backing without one (anonymous, heap).
    Config(ConfigError),
    /// No segment of that name or key exists.
    NotFound,
    /// The segment is someone else's, and this process may not remove it (`/dev/shm` is
    /// sticky: only the owner of an object, or root, may remove it).
    PermissionDenied {
        /// The owner's uid, if it could be read.
        owner: Option<u32>,
    },
    /// Another OS error.
    Io {
        /// The call that failed, as named in its man page.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveError::Config(e) => e.fmt(f),
            RemoveError::NotFound => f.write_str("no segment with that name or key exists"),
            RemoveError::PermissionDenied { owner: Some(uid) } => {
                let who = crate::os::user_name(*uid).unwrap_or_else(|| format!("uid {uid}"));
                let remover = if *uid == 0 {
                    "only root".to_owned()
                } else {
                    format!("only {who} or root")
                };
                write!(
                    f,
                    "permission denied: the segment belongs to {who} (uid {uid}); {remover} can \
                     remove it"
                )
            }
            RemoveError::PermissionDenied { owner: None } => {
                f.write_str("permission denied: the segment belongs to another user")
            }
            RemoveError::Io { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for RemoveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RemoveError::Config(e) => Some(e),
            RemoveError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for RemoveError {
    fn from(e: ConfigError) -> Self {
        RemoveError::Config(e)
    }
}

impl From<OsError> for RemoveError {
    fn from(e: OsError) -> Self {
        match e.errno() {
            Some(libc::ENOENT) => RemoveError::NotFound,
            _ if e.denied() => RemoveError::PermissionDenied { owner: None },
            _ => RemoveError::Io {
                op: e.op,
                source: e.source,
            },
        }
    }
}

/// Why an endpoint could not attach to a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The ring runs the other algorithm.
    WrongKind {
        /// The kind the endpoint type needs.
        expected: Kind,
        /// The ring's kind.
        found: Kind,
    },
    /// A role the ring takes once (SPSC's two; a record ring's consumer, and its producer with
    /// one producer) is held by a live process.
    RoleTaken {
        /// The role asked for.
        role: Role,
        /// The process holding it.
        pid: u32,
    },
    /// Every registry entry is held by a live endpoint.
    RegistryFull {
        /// The number of entries.
        max: usize,
    },
    /// The cursors in the segment are inconsistent.
    Corrupt(Corruption),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::WrongKind { expected, found } => {
                write!(
                    f,
                    "this endpoint needs an {expected} ring, the segment holds an {found} ring"
                )
            }
            AttachError::RoleTaken { role, pid } => write!(
                f,
                "the ring already has a {role} (process {pid}), and this ring takes only one"
            ),
            AttachError::RegistryFull { max } => {
                write!(
                    f,
                    "all {max} endpoint registry entries are taken by live endpoints"
                )
            }
            AttachError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for AttachError {}
