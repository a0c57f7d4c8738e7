//! Where a ring's memory comes from: the only module that makes OS calls for memory.
//!
//! Four backends give the same thing, a mapped, page-aligned, zero-filled region:
//!
//! | backend | create | attach | remove |
//! |---|---|---|---|
//! | POSIX | `shm_open(O_CREAT\|O_EXCL)` + `fchmod` + `ftruncate` + `mmap` | `shm_open` + `fstat` + `mmap` | `shm_unlink` |
//! | SysV | `shmget(IPC_CREAT\|IPC_EXCL)` + `shmat` | `shmget` + `shmctl(IPC_STAT)` + `shmat` | `shmctl(IPC_RMID)` |
//! | anonymous | `mmap(MAP_SHARED\|MAP_ANONYMOUS)` | inherited across `fork` | with the last mapping |
//! | heap | `alloc_zeroed` | — (one process) | `dealloc` |
//!
//! Removal semantics differ and matter: a POSIX name is removed at once by `shm_unlink`, while
//! processes that have it mapped keep using the memory until they unmap it. A SysV segment marked
//! with `IPC_RMID` while attached stays alive, marked for destruction (`ipcs` shows `dest`), and
//! can no longer be attached by key; Linux frees it after the last `shmdt` (or process exit).
//! A SysV or POSIX segment nobody removes outlives every process that used it.

pub(crate) mod anon;
pub(crate) mod guard;
pub(crate) mod heap;
pub(crate) mod posix;
pub(crate) mod sysv;

use core::ptr::NonNull;
use std::path::PathBuf;

use crate::error::{ConfigError, Corruption, OsError, RemoveError};
use crate::sync::raw::AtomicBool;

/// Which memory a ring lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// A POSIX shared-memory object (`/dev/shm/NAME` on Linux), named `/NAME`.
    Posix(String),
    /// A System V shared-memory segment.
    SysV(SysvKey),
    /// An anonymous shared mapping, inherited by children created with `fork`.
    Anonymous,
    /// Process-local memory: the ring runs between threads (tests, loom, benchmarks).
    Heap,
}

/// `/name` for a POSIX object, `sysv:0x…` (or `sysv:ftok(path, id)`) for a System V segment,
/// `anonymous`, `heap`: how the `shmring` command names segments.
impl std::fmt::Display for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backing::Posix(name) if name.starts_with('/') => f.write_str(name),
            Backing::Posix(name) => write!(f, "/{name}"),
            Backing::SysV(SysvKey::Key(k)) => write!(f, "sysv:{:#x}", *k as u32),
            Backing::SysV(SysvKey::Path { path, proj_id }) => {
                write!(f, "sysv:ftok({}, {proj_id})", path.display())
            }
            Backing::Anonymous => f.write_str("anonymous"),
            Backing::Heap => f.write_str("heap"),
        }
    }
}

/// How a System V segment is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysvKey {
    /// An explicit key (not 0, which is `IPC_PRIVATE`).
    Key(i32),
    /// A key derived with `ftok(path, proj_id)`: the same existing path and id give the same key.
    Path {
        /// An existing file; `ftok` uses its inode and device numbers.
        path: PathBuf,
        /// The low 8 bits of the key's project id (not 0).
        proj_id: u8,
    },
}

/// Who removes a named segment (POSIX name or SysV key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cleanup {
    /// The process that created the segment removes it when its last handle to the ring drops.
    /// Processes that opened it are unaffected: they keep their mapping until they drop theirs,
    /// but nobody can open the name afterwards.
    #[default]
    Creator,
    /// Nobody removes it automatically; call [`remove`] (or `shmring rm`).
    Manual,
}

/// Mapping options shared by the backends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapOptions {
    /// Permission bits for a new segment, applied whatever the umask.
    pub(crate) mode: u32,
    /// Fault every page in at map time (`MAP_POPULATE`), so the first messages do not pay for it.
    pub(crate) populate: bool,
    /// Back the segment with huge pages (`MAP_HUGETLB` / `SHM_HUGETLB`).
    pub(crate) huge_pages: bool,
}

/// A POSIX object's identity (device and inode): what a name referred to when we looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectId {
    dev: u64,
    ino: u64,
}

/// One particular segment, not just a name: removing it never removes another segment that
/// took the name or key meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exact {
    /// The POSIX object `id`, while `name` refers to it.
    Posix { name: String, id: ObjectId },
    /// The SysV segment with this id (ids are never reused for another key's segment while
    /// this one exists, and a removed one's id fails with `EINVAL`/`EIDRM`).
    SysV { id: i32 },
}

impl Exact {
    /// Removes this segment's name or key if it still names this segment. Returns whether it
    /// did (`false`: someone removed it, and maybe gave the name to another segment, already).
    pub(crate) fn remove(&self) -> Result<bool, RemoveError> {
        match self {
            Exact::Posix { name, id } => posix::unlink_if_same(name, *id),
            Exact::SysV { id } => match sysv::shmctl_rmid(*id) {
                Ok(()) => Ok(true),
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EIDRM) => Ok(false),
                Err(e) => Err(OsError::new("shmctl", e).into()),
            },
        }
    }
}

/// How a segment was obtained, and so how it is released.
#[derive(Debug)]
enum Kind {
    Posix { name: String, id: ObjectId },
    SysV { id: i32 },
    Anonymous,
    Heap { layout: std::alloc::Layout },
}

/// A mapped region and the duty to release it.
#[derive(Debug)]
pub(crate) struct Segment {
    base: NonNull<u8>,
    len: usize,
    kind: Kind,
    /// Remove the name or key when this handle drops in the process with this pid (see
    /// [`Cleanup`]). Remembering the pid keeps a `fork`ed copy from removing its parent's segment.
    remove_by: Option<u32>,
    /// POSIX mappings: contains a `SIGBUS` from the object being shrunk under us (`guard`).
    guard: Option<guard::Guard>,
}

// SAFETY: a `Segment` owns a mapping, not thread-bound state; unmapping from another thread is
// fine, and the memory itself is shared by design (access is governed by the ring protocol).
unsafe impl Send for Segment {}
// SAFETY: `&Segment` only exposes the base address and length.
unsafe impl Sync for Segment {}

impl Segment {
    /// Start of the mapping (page-aligned).
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length of the mapping in bytes: what the OS says the segment holds, not what its header
    /// claims.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes this process remove the segment's name or key when the handle drops.
    pub(crate) fn remove_on_drop(&mut self) {
        self.remove_by = Some(crate::os::getpid());
    }

    /// This named segment, exactly (`None` for anonymous and heap memory).
    pub(crate) fn exact(&self) -> Option<Exact> {
        match &self.kind {
            Kind::Posix { name, id } => Some(Exact::Posix {
                name: name.clone(),
                id: *id,
            }),
            Kind::SysV { id } => Some(Exact::SysV { id: *id }),
            Kind::Anonymous | Kind::Heap { .. } => None,
        }
    }

    /// Which pages of the mapping hold memory (`mincore(2)`): for a POSIX or SysV segment, a
    /// page never written is a hole of the tmpfs object, and reading it through the mapping
    /// would allocate it. `None` when every page may be read freely (heap memory, whose unused
    /// pages read as the shared zero page) or when the kernel cannot say. A page swapped out
    /// reads as not resident too.
    pub(crate) fn resident(&self) -> Option<Resident> {
        if matches!(self.kind, Kind::Heap { .. }) {
            return None;
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        let mut vec = vec![0u8; self.len.div_ceil(page)];
        // SAFETY: base is page-aligned and [base, base + len) is our mapping; `vec` holds one
        // byte per page of it.
        let r = unsafe { libc::mincore(self.base.as_ptr().cast(), self.len, vec.as_mut_ptr()) };
        (r == 0).then_some(Resident { page, vec })
    }

    /// Whether a `SIGBUS` in this mapping was contained (`guard`): the object was shrunk under
    /// us, or a page of it could not be allocated.
    pub(crate) fn tripped(&self) -> bool {
        self.guard.as_ref().is_some_and(guard::Guard::tripped)
    }

    /// The flag [`tripped`](Self::tripped) reads, for the one-load check on the send path; a
    /// flag that is never set for an unguarded mapping. Valid while this segment lives.
    pub(crate) fn fault_flag(&self) -> &'static AtomicBool {
        self.guard
            .as_ref()
            .map_or(&guard::NEVER, guard::Guard::flag)
    }

    /// What a contained fault means, if one happened: the object is still as long as the
    /// mapping (so a page could not be allocated: [`Corruption::OutOfSpace`]), or it is shorter,
    /// gone or replaced ([`Corruption::Shrunk`]).
    #[cold]
    pub(crate) fn lost(&self) -> Option<Corruption> {
        if !self.tripped() {
            return None;
        }
        let whole = match &self.kind {
            Kind::Posix { name, id } => {
                posix::size_of(name, *id).is_some_and(|size| size >= self.len as u64)
            }
            _ => false,
        };
        Some(if whole {
            Corruption::OutOfSpace
        } else {
            Corruption::Shrunk
        })
    }

    fn should_remove(&self) -> bool {
        self.remove_by == Some(crate::os::getpid())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Unguard before unmapping: the range must not be matched once it can be reused.
        drop(self.guard.take());
        // Errors cannot be reported from a destructor; each call below can only fail if the
        // mapping or name was already released by someone else, which leaves nothing to do.
        match &self.kind {
            Kind::Posix { name, id } => {
                // Unlink while still mapped: the mapping keeps the inode alive, so no other
                // object can have its number when the name is compared.
                if self.should_remove() {
                    let _ = posix::unlink_if_same(name, *id);
                }
                // SAFETY: base/len describe the mapping `posix` created; nothing references it
                // any more (the ring handles holding it are gone).
                unsafe { posix::munmap(self.base, self.len) };
            }
            Kind::SysV { id } => {
                // SAFETY: base is the address `shmat` returned; nothing references it any more.
                unsafe { sysv::shmdt(self.base) };
                if self.should_remove() {
                    let _ = sysv::shmctl_rmid(*id);
                }
            }
            // SAFETY: as for POSIX.
            Kind::Anonymous => unsafe { posix::munmap(self.base, self.len) },
            // SAFETY: base was returned by `alloc_zeroed` with this layout.
            Kind::Heap { layout } => unsafe { heap::dealloc(self.base, *layout) },
        }
    }
}

/// Which pages of a mapping hold memory (see [`Segment::resident`]).
#[derive(Debug)]
pub(crate) struct Resident {
    page: usize,
    vec: Vec<u8>,
}

impl Resident {
    /// Whether the byte at `offset` of the mapping lies on a resident page.
    pub(crate) fn at(&self, offset: usize) -> bool {
        self.vec.get(offset / self.page).is_some_and(|b| b & 1 != 0)
    }
}

/// A removal's error, naming the segment's owner when it was refused.
fn with_owner(e: OsError, owner: Option<u32>) -> RemoveError {
    match RemoveError::from(e) {
        RemoveError::PermissionDenied { .. } => RemoveError::PermissionDenied { owner },
        other => other,
    }
}

/// Removes a named segment: `shm_unlink` for POSIX, `shmctl(IPC_RMID)` for SysV.
///
/// Processes that have the segment mapped keep using it (see the module docs for how POSIX and
/// SysV differ); new opens fail with [`OpenError::NotFound`](crate::OpenError::NotFound).
///
/// # Errors
/// [`RemoveError::NotFound`] if there is no such segment, [`RemoveError::PermissionDenied`] if
/// it belongs to someone else, [`RemoveError::Config`] for a bad name or for a backing that has
/// no name (anonymous, heap).
///
/// # Examples
/// ```
/// let err = shmring::remove(&shmring::Backing::Posix("/shmring-doc-no-such".into()));
/// assert!(matches!(err, Err(shmring::RemoveError::NotFound)));
/// ```
pub fn remove(backing: &Backing) -> Result<(), RemoveError> {
    match backing {
        Backing::Posix(name) => {
            let name = posix::normalize_name(name)?;
            posix::shm_unlink(&name)
                .map_err(|e| with_owner(OsError::new("shm_unlink", e), posix::owner(&name)))
        }
        Backing::SysV(key) => {
            let key = sysv::ftok_key::<RemoveError>(key)?;
            let id = sysv::shmget(key, 0, 0).map_err(|e| OsError::new("shmget", e))?;
            sysv::shmctl_rmid(id)
                .map_err(|e| with_owner(OsError::new("shmctl", e), sysv::owner(id)))
        }
        Backing::Anonymous | Backing::Heap => Err(RemoveError::Config(ConfigError::Unsupported(
            "anonymous and heap segments have no name to remove",
        ))),
    }
}
