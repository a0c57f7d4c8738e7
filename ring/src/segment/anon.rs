//! Anonymous shared memory: `mmap(MAP_SHARED | MAP_ANONYMOUS)`. It has no name; children created
//! with `fork` inherit the mapping and so share the ring with their parent.

use core::num::NonZeroUsize;

use nix::sys::mman::{self, MapFlags, ProtFlags};

use super::{Kind, MapOptions, Segment};
use crate::error::{ConfigError, CreateError, OsError};

/// Huge pages are 2 MiB on x86_64 and (with 4 KiB base pages) aarch64; a `MAP_HUGETLB` mapping
/// must be a multiple of that.
const HUGE_PAGE: usize = 2 << 20;

/// Maps `len` zero bytes shared with future children.
pub(crate) fn create(len: usize, opts: &MapOptions) -> Result<Segment, CreateError> {
    let mut flags = MapFlags::MAP_SHARED;
    let mut map_len = len;
    if opts.populate {
        flags |= MapFlags::MAP_POPULATE;
    }
    if opts.huge_pages {
        flags |= MapFlags::MAP_HUGETLB;
        map_len = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
    }
    let nz = NonZeroUsize::new(map_len).ok_or(ConfigError::SlotSizeZero)?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing aliases nothing.
    let ptr = unsafe { mman::mmap_anonymous(None, nz, prot, flags) }
        .map_err(|e| OsError::new("mmap", e))?;
    Ok(Segment {
        base: ptr.cast(),
        len: map_len,
        kind: Kind::Anonymous,
        remove_by: None,
        guard: None,
    })
}
