//! The one place synchronisation primitives come from.
//!
//! Normal builds use `core`'s atomics and spin hint. Under `--cfg loom` the ring algorithms run
//! against loom's model-checked versions instead, so every ordering they rely on is explored.
//!
//! Shared memory needs a second kind of atomic: the words laid into a segment must have the fixed
//! layout of `core`'s types whatever the build, so [`raw`] always re-exports those. Under loom,
//! the cursors and sequence words the algorithms use live in a process-local shadow
//! (`layout::Shadow`) and payload accesses are reported to loom through [`Cells`], which is what
//! lets loom catch a missing Release on a payload write.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// The futex emulation under loom (`wait::ShadowPair`): loom's own blocking primitives, so a
/// lost wake-up shows as a deadlock in the model.
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex};

/// Atomics with the fixed in-memory layout of `core`'s types, for words that live in a segment
/// and are never part of a loom model (the ready word, the endpoint registry).
pub(crate) mod raw {
    pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64};
}

/// Per-slot access tracking for payload bytes.
///
/// Payload bytes are plain memory; their safety rests entirely on the acquire/release pairs of the
/// cursors and sequence words. Loom cannot see raw-pointer accesses, so under loom each slot gets
/// a `loom::cell::UnsafeCell<()>` and every payload access holds a token from it for as long as
/// the access lasts: two unsynchronised accesses to one slot then fail the model. In normal
/// builds this type and its tokens are zero-sized and compile to nothing.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct Cells;

#[cfg(not(loom))]
impl Cells {
    pub(crate) fn new(_slots: usize) -> Self {
        Cells
    }

    /// Marks the start of a write access to slot `idx`; the access ends when the token drops.
    #[inline(always)]
    pub(crate) fn write(&self, _idx: usize) -> AccessToken {
        AccessToken
    }

    /// Marks the start of a read access to slot `idx`; the access ends when the token drops.
    #[inline(always)]
    pub(crate) fn read(&self, _idx: usize) -> AccessToken {
        AccessToken
    }
}

/// Held while a payload access lasts (zero-sized outside loom).
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct AccessToken;

impl AccessToken {
    /// Ends the access. Call it before the Release store that hands the slot on.
    #[inline(always)]
    pub(crate) fn end(self) {
        #[cfg(loom)]
        drop(self);
    }
}

#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Cells(Box<[loom::cell::UnsafeCell<()>]>);

#[cfg(loom)]
impl Cells {
    pub(crate) fn new(slots: usize) -> Self {
        Cells(
            (0..slots)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        )
    }

    pub(crate) fn write(&self, idx: usize) -> AccessToken {
        AccessToken::Write(self.0[idx].get_mut())
    }

    pub(crate) fn read(&self, idx: usize) -> AccessToken {
        AccessToken::Read(self.0[idx].get())
    }
}

/// Held while a payload access lasts; loom checks it against every other access to the slot.
#[cfg(loom)]
#[derive(Debug)]
#[allow(dead_code)] // held only for its drop (see `end`)
pub(crate) enum AccessToken {
    Write(loom::cell::MutPtr<()>),
    Read(loom::cell::ConstPtr<()>),
}
