//! POSIX shared memory: `shm_open` + `ftruncate` + `mmap`, removed with `shm_unlink`.

use core::num::NonZeroUsize;
use core::ptr::NonNull;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{self, MapFlags, ProtFlags};
use nix::sys::stat::{self, Mode};

use super::{Kind, MapOptions, Segment};
use crate::error::{ConfigError, OpenError};

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
fn mmap(fd: impl AsFd, len: usize, opts: &MapOptions) -> Result<NonNull<u8>, OpenError> {
    let len = NonZeroUsize::new(len).ok_or(OpenError::Truncated {
        needed: crate::layout::HEADER_SIZE as u64,
        found: 0,
    })?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh mapping at an address of the kernel's choosing aliases no Rust object.
    let ptr = unsafe { mman::mmap(None, len, prot, map_flags(opts), fd, 0) }
        .map_err(|e| OpenError::from_errno("mmap", e))?;
    Ok(ptr.cast())
}

/// `fstat(2)`'s size of the object.
fn object_len(fd: impl AsFd) -> Result<usize, OpenError> {
    let st = stat::fstat(fd).map_err(|e| OpenError::from_errno("fstat", e))?;
    usize::try_from(st.st_size).map_err(|_| OpenError::CorruptHeader {
        field: "segment size",
        found: st.st_size as u64,
        reason: "negative or larger than the address space",
    })
}

/// Creates `name` exclusively with `len` zero bytes and maps it.
pub(crate) fn create(name: &str, len: usize, opts: &MapOptions) -> Result<Segment, OpenError> {
    if opts.huge_pages {
        return Err(ConfigError::Unsupported(
            "huge pages with POSIX segments (they live on tmpfs); use SysV or anonymous",
        )
        .into());
    }
    let mode = Mode::from_bits_truncate(opts.mode);
    let fd = mman::shm_open(name, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR, mode)
        .map_err(|e| OpenError::from_errno("shm_open", e))?;
    let built = size_and_map(&fd, len, opts);
    if built.is_err() {
        // Leave nothing half-made behind.
        let _ = mman::shm_unlink(name);
    }
    let base = built?;
    Ok(Segment {
        base,
        len,
        kind: Kind::Posix {
            name: name.to_owned(),
        },
        remove_by: None,
        guard: super::guard::guard(base, len),
    })
}

fn size_and_map(fd: &OwnedFd, len: usize, opts: &MapOptions) -> Result<NonNull<u8>, OpenError> {
    // shm_open's mode is filtered through the umask; fchmod sets exactly what was asked.
    stat::fchmod(fd, Mode::from_bits_truncate(opts.mode))
        .map_err(|e| OpenError::from_errno("fchmod", e))?;
    let size = i64::try_from(len).map_err(|_| OpenError::Io {
        op: "ftruncate",
        source: std::io::Error::from_raw_os_error(Errno::EFBIG as i32),
    })?;
    nix::unistd::ftruncate(fd, size).map_err(|e| OpenError::from_errno("ftruncate", e))?;
    mmap(fd, len, opts)
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
        .map_err(|e| OpenError::from_errno("shm_open", e))?;
    let len = loop {
        let len = object_len(&fd)?;
        if len >= min_len {
            break len;
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
        },
        remove_by: None,
        guard: super::guard::guard(base, len),
    })
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
