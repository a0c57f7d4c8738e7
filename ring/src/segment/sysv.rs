//! System V shared memory: `shmget` + `shmat`, sized by `shmctl(IPC_STAT)`, removed with
//! `shmctl(IPC_RMID)`.
//!
//! Linux keeps a segment that is marked for removal while still attached alive until the last
//! `shmdt` (or the last attached process exits); from the mark on, it cannot be attached by key.
//! A detached segment that nobody removed stays in the system, contents intact, until reboot.
//! SysV permissions are not filtered through the umask.

use core::ptr::NonNull;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use super::{Kind, MapOptions, Segment, SysvKey};
use crate::error::{ConfigError, CreateError, OpenError, OsError};

/// Resolves a key: explicit, or `ftok(3)` of a path and project id. Generic over the error of
/// the operation asking (create, open, remove).
pub(crate) fn ftok_key<E: From<ConfigError> + From<OsError>>(
    key: &SysvKey,
) -> Result<libc::key_t, E> {
    match key {
        SysvKey::Key(0) => Err(ConfigError::InvalidName {
            name: "0".into(),
            reason: "SysV key 0 is IPC_PRIVATE; use an anonymous segment to share with children",
        }
        .into()),
        SysvKey::Key(k) => Ok(*k),
        SysvKey::Path { path, proj_id } => {
            if *proj_id == 0 {
                return Err(ConfigError::InvalidName {
                    name: path.display().to_string(),
                    reason: "ftok's project id must not be 0",
                }
                .into());
            }
            let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                ConfigError::InvalidName {
                    name: path.display().to_string(),
                    reason: "contains a NUL byte",
                }
            })?;
            // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
            let k = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(*proj_id)) };
            if k == -1 {
                return Err(OsError::new("ftok", Errno::last()).into());
            }
            Ok(k)
        }
    }
}

/// `shmget(2)`.
pub(crate) fn shmget(key: libc::key_t, size: usize, flags: libc::c_int) -> nix::Result<i32> {
    // SAFETY: plain syscall with integer arguments.
    Errno::result(unsafe { libc::shmget(key, size, flags) })
}

/// `shmctl(2)` with `IPC_RMID`: mark for removal (freed after the last detach).
pub(crate) fn shmctl_rmid(id: i32) -> nix::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument, so null is fine.
    Errno::result(unsafe { libc::shmctl(id, libc::IPC_RMID, core::ptr::null_mut()) }).map(drop)
}

/// `shmctl(2)` with `IPC_STAT`.
fn ipc_stat(id: i32) -> Result<libc::shmid_ds, OsError> {
    let mut ds = core::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a writable shmid_ds for IPC_STAT to fill.
    Errno::result(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })
        .map_err(|e| OsError::new("shmctl", e))?;
    // SAFETY: IPC_STAT succeeded and filled the struct (it was zeroed before, too).
    Ok(unsafe { ds.assume_init() })
}

/// The segment's real size, which the header must not exceed.
fn segment_size(id: i32) -> Result<usize, OsError> {
    Ok(ipc_stat(id)?.shm_segsz)
}

/// The uid owning segment `id`.
pub(crate) fn owner(id: i32) -> Option<u32> {
    ipc_stat(id).ok().map(|ds| ds.shm_perm.uid)
}

/// `shmat(2)` at an address of the kernel's choosing, read-write.
fn shmat(id: i32) -> Result<NonNull<u8>, OsError> {
    // SAFETY: a null address lets the kernel choose a fresh range that aliases nothing.
    let p = unsafe { libc::shmat(id, core::ptr::null(), 0) };
    if p as isize == -1 {
        return Err(OsError::new("shmat", Errno::last()));
    }
    NonNull::new(p.cast()).ok_or(OsError {
        op: "shmat",
        source: std::io::Error::other("returned a null address"),
    })
}

/// `shmdt(2)`.
///
/// # Safety
/// `base` was returned by `shmat` and is no longer referenced.
pub(crate) unsafe fn shmdt(base: NonNull<u8>) {
    // SAFETY: caller's duty; a failure (EINVAL) would mean it is already detached.
    let _ = unsafe { libc::shmdt(base.as_ptr().cast()) };
}

/// Creates the segment for `key` exclusively with `len` zero bytes and attaches it.
pub(crate) fn create(
    key: libc::key_t,
    len: usize,
    opts: &MapOptions,
) -> Result<Segment, CreateError> {
    let mut flags = libc::IPC_CREAT | libc::IPC_EXCL | (opts.mode & 0o777) as libc::c_int;
    if opts.huge_pages {
        flags |= libc::SHM_HUGETLB;
    }
    let id = shmget(key, len, flags).map_err(|e| limit(e, len))?;
    match shmat(id) {
        Ok(base) => {
            if opts.populate {
                prefault(base, len);
            }
            Ok(Segment {
                base,
                len,
                kind: Kind::SysV { id },
                remove_by: None,
                guard: None,
            })
        }
        Err(e) => {
            let _ = shmctl_rmid(id);
            Err(e.into())
        }
    }
}

/// An error of a call on a segment id found by key a moment ago: the segment may have been
/// removed since (`EIDRM`, or `EINVAL` once its id is gone), which is what a caller of `open`
/// must hear as `NotFound`, as it would for a POSIX name, not as an OS error.
fn vanished(e: OsError) -> OpenError {
    match e.source.raw_os_error() {
        Some(libc::EIDRM | libc::EINVAL) => OpenError::NotFound,
        _ => e.into(),
    }
}

/// Attaches the existing segment for `key`, all of it, as `IPC_STAT` reports its size.
pub(crate) fn open(
    key: libc::key_t,
    opts: &MapOptions,
    min_len: usize,
) -> Result<Segment, OpenError> {
    let id = shmget(key, 0, 0).map_err(|e| OsError::new("shmget", e))?;
    let len = segment_size(id).map_err(vanished)?;
    if len < min_len {
        // A SysV segment is sized by shmget itself: a short one will not grow, so no wait.
        return Err(OpenError::Truncated {
            needed: min_len as u64,
            found: len as u64,
        });
    }
    let base = shmat(id).map_err(vanished)?;
    if opts.populate {
        prefault(base, len);
    }
    Ok(Segment {
        base,
        len,
        kind: Kind::SysV { id },
        remove_by: None,
        guard: None,
    })
}

/// A keyed segment as `/proc/sysvipc/shm` lists it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listed {
    pub(crate) key: i32,
    pub(crate) id: i32,
    pub(crate) bytes: u64,
    pub(crate) attached: u64,
}

/// Every keyed segment (key 0, `IPC_PRIVATE`, has no name to find it by), from
/// `/proc/sysvipc/shm`.
pub(crate) fn list() -> Vec<Listed> {
    list_all().into_iter().filter(|l| l.key != 0).collect()
}

/// Every segment this process can see, private ones too.
pub(crate) fn list_all() -> Vec<Listed> {
    let Ok(text) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // key shmid perms size cpid lpid nattch ...
            Some(Listed {
                key: f.first()?.parse().ok()?,
                id: f.get(1)?.parse().ok()?,
                bytes: f.get(3)?.parse().ok()?,
                attached: f.get(6)?.parse().ok()?,
            })
        })
        .collect()
}

/// The first `N` bytes of segment `id` (fewer if it is shorter) and how many there were,
/// read through a read-only attachment that is detached before returning.
pub(crate) fn peek<const N: usize>(id: i32) -> Result<([u8; N], usize), OpenError> {
    let len = segment_size(id).map_err(vanished)?;
    // SAFETY: a null address lets the kernel choose a fresh range; read-only.
    let p = unsafe { libc::shmat(id, core::ptr::null(), libc::SHM_RDONLY) };
    if p as isize == -1 {
        return Err(vanished(OsError::new("shmat", Errno::last())));
    }
    let mut bytes = [0u8; N];
    let n = len.min(N);
    // SAFETY: the attachment holds `len >= n` readable bytes; `bytes` holds N >= n.
    unsafe { core::ptr::copy_nonoverlapping(p.cast::<u8>(), bytes.as_mut_ptr(), n) };
    // SAFETY: `p` came from shmat just above and nothing references it any more.
    unsafe { libc::shmdt(p) };
    Ok((bytes, n))
}

/// What a failed `shmget` of `len` new bytes means: a System V limit by its sysctl name and
/// value (`EINVAL` past `shmmax`, `ENOSPC` past `shmmni` segments or `shmall` pages), no memory
/// (`ENOMEM`), or another error.
fn limit(e: Errno, len: usize) -> CreateError {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let needed = len as u64;
    let found = match e {
        Errno::EINVAL => sysctl("shmmax")
            .filter(|&max| needed > max)
            .map(|value| ("kernel.shmmax", value)),
        Errno::ENOSPC => {
            let segments = list_all().len() as u64;
            match sysctl("shmmni") {
                Some(value) if segments >= value => Some(("kernel.shmmni", value)),
                _ => sysctl("shmall").map(|value| ("kernel.shmall", value)),
            }
        }
        Errno::ENOMEM => {
            return CreateError::NoSpace {
                needed,
                available: None,
                place: "System V shared memory (RAM, or the memory cgroup's limit)".into(),
            };
        }
        _ => None,
    };
    match found {
        Some((sysctl, value)) => CreateError::SysvLimit {
            sysctl,
            value,
            needed,
        },
        None => OsError::new("shmget", e).into(),
    }
}

/// `madvise(MADV_WILLNEED)` cannot populate shared anonymous-backed SysV memory, so touch one
/// byte per page (a read, leaving contents unchanged).
fn prefault(base: NonNull<u8>, len: usize) {
    for off in (0..len).step_by(4096) {
        // SAFETY: `off < len`, inside the attached segment; a volatile read changes nothing.
        unsafe { core::ptr::read_volatile(base.as_ptr().add(off)) };
    }
}
