//! POSIX shared memory: `shm_open` + `ftruncate` + `mmap`, removed with `shm_unlink`.
//!
//! A new object gets its caller's identifying prefix (`pwrite`) *before* it is sized, so at no
//! instant does an object of ours hold bytes without it: a tool that finds a half-made object
//! can tell it from someone else's. It is then sized with `fallocate`, which reserves every page
//! in the filesystem (tmpfs): a full `/dev/shm` refuses the ring at create
//! (`CreateError::NoSpace`) instead of killing a later sender with `SIGBUS` and losing the
//! messages it was told were sent. Where the filesystem cannot reserve (`EOPNOTSUPP`), it falls
//! back to `ftruncate`, and the pages come as they are touched (the `SIGBUS` guard then reports
//! a page that cannot be had). Every mapping remembers the object's device and inode, so a
//! removal can check that the name still refers to the object it means (`unlink_if_same`).

use core::num::NonZeroUsize;
use core::ptr::NonNull;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{self, MapFlags, ProtFlags};
use nix::sys::stat::{self, Mode};

use super::{Kind, MapOptions, ObjectId, Segment};
use crate::error::{ConfigError, CreateError, OpenError, OsError, RemoveError};

/// Longest POSIX shared-memory name Linux accepts (`NAME_MAX`, without the leading slash).
const NAME_MAX: usize = 255;

/// Checks a POSIX name and gives it its leading slash: `"demo"` and `"/demo"` both name
/// `/dev/shm/demo`.
pub(crate) fn normalize_name(name: &str) -> Result<String, ConfigError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let invalid = |reason| ConfigError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if bare.is_empty() {
        return Err(invalid("empty"));
    }
    if bare.contains('/') {
        return Err(invalid("contains '/' after the leading one"));
    }
    if bare.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if bare == "." || bare == ".." {
        return Err(invalid("'.' and '..' are not object names"));
    }
    if bare.len() > NAME_MAX {
        return Err(invalid("longer than 255 bytes (NAME_MAX)"));
    }
    Ok(format!("/{bare}"))
}

/// `shm_unlink(3)`.
pub(crate) fn shm_unlink(name: &str) -> nix::Result<()> {
    mman::shm_unlink(name)
}

/// `munmap(2)`.
///
/// # Safety
/// `base`/`len` describe a whole mapping made by this module or `anon`, no longer referenced.
pub(crate) unsafe fn munmap(base: NonNull<u8>, len: usize) {
    // SAFETY: caller's duty. A failure (EINVAL) would mean the mapping is already gone.
    let _ = unsafe { mman::munmap(base.cast(), len) };
}

fn map_flags(opts: &MapOptions) -> MapFlags {
    let mut flags = MapFlags::MAP_SHARED;
    if opts.populate {
        flags |= MapFlags::MAP_POPULATE;
    }
    flags
}

/// `mmap(2)` of the whole object, shared, read-write.
fn mmap(fd: impl AsFd, len: usize, opts: &MapOptions) -> Result<NonNull<u8>, OsError> {
    let len = NonZeroUsize::new(len).ok_or(OsError::new("mmap", Errno::EINVAL))?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh mapping at an address of the kernel's choosing aliases no Rust object.
    let ptr = unsafe { mman::mmap(None, len, prot, map_flags(opts), fd, 0) }
        .map_err(|e| OsError::new("mmap", e))?;
    Ok(ptr.cast())
}

/// `fstat(2)`: the object's size and identity. (A size that does not fit the address space
/// is `EOVERFLOW`, as `mmap` would say.)
fn object_stat(fd: impl AsFd) -> Result<(usize, ObjectId), OsError> {
    let st = stat::fstat(fd).map_err(|e| OsError::new("fstat", e))?;
    let len = usize::try_from(st.st_size).map_err(|_| OsError::new("fstat", Errno::EOVERFLOW))?;
    Ok((len, id_of(&st)))
}

fn id_of(st: &libc::stat) -> ObjectId {
    ObjectId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

/// Creates `name` exclusively, writes `prefix` at its start, sizes it to `len` bytes (zero
/// beyond the prefix) and maps it.
pub(crate) fn create(
    name: &str,
    len: usize,
    prefix: &[u8],
    opts: &MapOptions,
) -> Result<Segment, CreateError> {
    if opts.huge_pages {
        return Err(ConfigError::Unsupported(
            "huge pages with POSIX segments (they live on tmpfs); use SysV or anonymous",
        )
        .into());
    }
    let mode = Mode::from_bits_truncate(opts.mode);
    let fd = mman::shm_open(name, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR, mode)
        .map_err(|e| OsError::new("shm_open", e))?;
    let built = size_and_map(&fd, len, prefix, opts);
    if built.is_err() {
        // Leave nothing half-made behind.
        let _ = mman::shm_unlink(name);
    }
    let (base, id) = built.map_err(|e| match e.source.raw_os_error() {
        // The identity prefix is the first page written: on a full tmpfs it is what fails.
        Some(libc::ENOSPC | libc::ENOMEM) if matches!(e.op, "fallocate" | "pwrite") => {
            CreateError::NoSpace {
                needed: len as u64,
                available: free_bytes(),
                place: SHM_DIR.to_owned(),
            }
        }
        _ => e.into(),
    })?;
    Ok(Segment {
        base,
        len,
        kind: Kind::Posix {
            name: name.to_owned(),
            id,
        },
        remove_by: None,
        guard: super::guard::guard(base, len),
    })
}

fn size_and_map(
    fd: &OwnedFd,
    len: usize,
    prefix: &[u8],
    opts: &MapOptions,
) -> Result<(NonNull<u8>, ObjectId), OsError> {
    // shm_open's mode is filtered through the umask; fchmod sets exactly what was asked.
    stat::fchmod(fd, Mode::from_bits_truncate(opts.mode)).map_err(|e| OsError::new("fchmod", e))?;
    pwrite_all(fd, prefix)?;
    let size = i64::try_from(len).map_err(|_| OsError::new("ftruncate", Errno::EFBIG))?;
    reserve(fd, size)?;
    let (_, id) = object_stat(fd)?;
    Ok((mmap(fd, len, opts)?, id))
}

/// Sizes the object to `size` bytes with every page allocated (`fallocate(2)`, mode 0), or,
/// where the filesystem cannot reserve, with `ftruncate(2)` (pages then come on first touch).
fn reserve(fd: &OwnedFd, size: i64) -> Result<(), OsError> {
    loop {
        // SAFETY: fallocate takes a descriptor we own and plain integers.
        if unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, size) } == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => {}
            Errno::EOPNOTSUPP | Errno::ENOSYS => {
                return nix::unistd::ftruncate(fd, size).map_err(|e| OsError::new("ftruncate", e));
            }
            e => return Err(OsError::new("fallocate", e)),
        }
    }
}

/// Where glibc and musl keep POSIX shared-memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Free bytes in [`SHM_DIR`] for an unprivileged writer (`statvfs(3)`), if it can be asked.
pub(crate) fn free_bytes() -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(SHM_DIR).ok()?;
    Some(st.blocks_available() * st.fragment_size())
}

/// The uid owning the object `name` (`stat` of its file in `/dev/shm`).
pub(crate) fn owner(name: &str) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("{SHM_DIR}{name}"))
        .ok()
        .map(|m| m.uid())
}

/// The size of the object `name` refers to, if it is still the object `id`.
pub(crate) fn size_of(name: &str, id: ObjectId) -> Option<u64> {
    let fd = mman::shm_open(name, OFlag::O_RDONLY, Mode::empty()).ok()?;
    let (len, now) = object_stat(&fd).ok()?;
    (now == id).then_some(len as u64)
}

/// `pwrite(2)` of all of `bytes` at offset 0.
fn pwrite_all(fd: &OwnedFd, bytes: &[u8]) -> Result<(), OsError> {
    let mut done = 0;
    while done < bytes.len() {
        match nix::sys::uio::pwrite(fd, &bytes[done..], done as i64) {
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(OsError::new("pwrite", e)),
        }
    }
    Ok(())
}

/// Opens an existing `name` and maps all of it, waiting until `deadline` for its creator to size
/// it to at least `min_len` bytes.
pub(crate) fn open(
    name: &str,
    opts: &MapOptions,
    min_len: usize,
    started: Instant,
    timeout: Duration,
) -> Result<Segment, OpenError> {
    let fd = mman::shm_open(name, OFlag::O_RDWR, Mode::empty())
        .map_err(|e| OsError::new("shm_open", e))?;
    let (len, id) = loop {
        let (len, id) = object_stat(&fd)?;
        if len >= min_len {
            break (len, id);
        }
        if started.elapsed() >= timeout {
            return Err(OpenError::Truncated {
                needed: min_len as u64,
                found: len as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let base = mmap(&fd, len, opts)?;
    Ok(Segment {
        base,
        len,
        kind: Kind::Posix {
            name: name.to_owned(),
            id,
        },
        remove_by: None,
        guard: super::guard::guard(base, len),
    })
}

/// The identity of the object `name` refers to now.
fn current_id(name: &str) -> nix::Result<ObjectId> {
    let fd = mman::shm_open(name, OFlag::O_RDONLY, Mode::empty())?;
    Ok(id_of(&stat::fstat(&fd)?))
}

/// `shm_unlink(name)`, but only while `name` still refers to the object `id`: never a name that
/// someone removed and gave to another object meanwhile. Returns whether it unlinked.
///
/// The caller keeps the object mapped (or open), so its inode cannot be freed and its number
/// reused before the comparison. A window remains between the comparison and the unlink, as
/// `shm_unlink` takes a name: a process that removes and re-creates the name inside those
/// microseconds loses its new object (`docs/safety.md`).
pub(crate) fn unlink_if_same(name: &str, id: ObjectId) -> Result<bool, RemoveError> {
    match current_id(name) {
        Ok(now) if now == id => {
            shm_unlink(name).map_err(|e| OsError::new("shm_unlink", e))?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(OsError::new("shm_open", e).into()),
    }
}

/// What a tool needs to judge an object without mapping it: its first `N` bytes (fewer if it
/// is shorter), its size and its identity. `shm_open` read-only + `pread` + `fstat`.
pub(crate) fn peek<const N: usize>(
    name: &str,
) -> Result<([u8; N], usize, u64, ObjectId), OpenError> {
    let fd = mman::shm_open(name, OFlag::O_RDONLY, Mode::empty())
        .map_err(|e| OsError::new("shm_open", e))?;
    let (size, id) = object_stat(&fd)?;
    let mut bytes = [0u8; N];
    let mut got = 0;
    while got < N {
        match nix::sys::uio::pread(&fd, &mut bytes[got..], got as i64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(OsError::new("pread", e).into()),
        }
    }
    Ok((bytes, got, size as u64, id))
}

/// The names of the POSIX objects visible to this process (the files of `/dev/shm`, where
/// glibc and musl put them), sorted, each with its leading slash.
pub(crate) fn names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| format!("/{}", e.file_name().to_string_lossy()))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_and_checked() {
        assert_eq!(normalize_name("demo").unwrap(), "/demo");
        assert_eq!(normalize_name("/demo").unwrap(), "/demo");
        for bad in ["", "/", "/a/b", "a\0b", "..", &"x".repeat(256)] {
            assert!(
                matches!(normalize_name(bad), Err(ConfigError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert!(normalize_name(&"x".repeat(255)).is_ok());
    }
}
