//! Process-local memory with the same alignment and zero fill as a mapping: the backend the
//! ring algorithms run on under loom and in unit tests, and for rings between threads.

use core::ptr::NonNull;
use std::alloc::{self, Layout};

use super::{Kind, Segment};
use crate::error::{ConfigError, CreateError};

const PAGE: usize = 4096;

/// Allocates `len` zero bytes, page-aligned.
pub(crate) fn create(len: usize) -> Result<Segment, CreateError> {
    let layout = Layout::from_size_align(len.max(1), PAGE).map_err(|_| {
        CreateError::Config(ConfigError::Unsupported(
            "a heap segment larger than isize::MAX",
        ))
    })?;
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc::alloc_zeroed(layout) };
    let base = NonNull::new(ptr).ok_or_else(|| CreateError::Io {
        op: "alloc_zeroed",
        source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
    })?;
    Ok(Segment {
        base,
        len,
        kind: Kind::Heap { layout },
        remove_by: None,
        guard: None,
    })
}

/// Frees a heap segment.
///
/// # Safety
/// `base` was returned by `create` with this `layout` and is no longer referenced.
pub(crate) unsafe fn dealloc(base: NonNull<u8>, layout: Layout) {
    // SAFETY: caller's duty.
    unsafe { alloc::dealloc(base.as_ptr(), layout) }
}
