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

use crate::error::OpenError;

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

/// How a segment was obtained, and so how it is released.
#[derive(Debug)]
enum Kind {
    Posix { name: String },
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
        // SAFETY: getpid has no preconditions.
        self.remove_by = Some(unsafe { libc::getpid() } as u32);
    }

    /// Whether the object was shrunk under this mapping (a `SIGBUS` was contained; `guard`).
    pub(crate) fn tripped(&self) -> bool {
        self.guard.as_ref().is_some_and(guard::Guard::tripped)
    }

    fn should_remove(&self) -> bool {
        // SAFETY: getpid has no preconditions.
        self.remove_by == Some(unsafe { libc::getpid() } as u32)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Unguard before unmapping: the range must not be matched once it can be reused.
        drop(self.guard.take());
        // Errors cannot be reported from a destructor; each call below can only fail if the
        // mapping or name was already released by someone else, which leaves nothing to do.
        match &self.kind {
            Kind::Posix { name } => {
                // SAFETY: base/len describe the mapping `posix` created; nothing references it
                // any more (the ring handles holding it are gone).
                unsafe { posix::munmap(self.base, self.len) };
                if self.should_remove() {
                    let _ = posix::shm_unlink(name);
                }
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

/// Removes a named segment: `shm_unlink` for POSIX, `shmctl(IPC_RMID)` for SysV.
///
/// Processes that have the segment mapped keep using it (see the module docs for how POSIX and
/// SysV differ); new opens fail with [`OpenError::NotFound`].
///
/// # Errors
/// [`OpenError::NotFound`] if there is no such segment, [`OpenError::PermissionDenied`] if it
/// belongs to someone else, [`OpenError::Config`] for a bad name or for a backing that has no
/// name (anonymous, heap).
///
/// # Examples
/// ```
/// let err = shmring::remove(&shmring::Backing::Posix("/shmring-doc-no-such".into()));
/// assert!(matches!(err, Err(shmring::OpenError::NotFound)));
/// ```
pub fn remove(backing: &Backing) -> Result<(), OpenError> {
    match backing {
        Backing::Posix(name) => {
            let name = posix::normalize_name(name)?;
            posix::shm_unlink(&name).map_err(|e| OpenError::from_errno("shm_unlink", e))
        }
        Backing::SysV(key) => {
            let key = sysv::ftok_key(key)?;
            let id = sysv::shmget(key, 0, 0).map_err(|e| OpenError::from_errno("shmget", e))?;
            sysv::shmctl_rmid(id).map_err(|e| OpenError::from_errno("shmctl", e))
        }
        Backing::Anonymous | Backing::Heap => {
            Err(OpenError::Config(crate::error::ConfigError::Unsupported(
                "anonymous and heap segments have no name to remove",
            )))
        }
    }
}
