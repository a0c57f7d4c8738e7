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

/// `core`'s atomics whatever the build, for words that are never part of a loom model: words
/// that live in a segment (the ready word, the endpoint registry), and process-local statics
/// that a model must not own (the `SIGBUS` guard's table, read from a signal handler; test
/// hooks).
pub(crate) mod raw {
    pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
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

/// Process death, as the loom models of crash recovery see it.
///
/// A loom model has one process, so "provably dead" cannot be asked of `/proc`. Instead each
/// endpoint gets its own identity (a counter in place of the start time), and a model declares
/// an endpoint dead once the thread using it has stopped for good ([`declare_dead`]). A thread
/// stops at a chosen step ([`crash_after`]): at that [`crash_point`] it unwinds without running
/// the library's own clean-up (the claim guards check [`dying`]), which is what `SIGKILL` does
/// to a process. Normal builds compile all of this away.
#[cfg(loom)]
pub(crate) mod death {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    loom::lazy_static! {
        /// Identities handed out in this execution (reset by loom for each one).
        static ref NEXT: AtomicU64 = AtomicU64::new(1);
        /// This execution models crash recovery: MPMC endpoints keep their claim records.
        static ref RECORDING: AtomicBool = AtomicBool::new(false);
        /// Identities declared dead in this execution. A loom mutex, because proving a death
        /// synchronises with it (the kernel reaps the process before `/proc` says it is gone):
        /// everything the dead endpoint did happens before the verdict.
        static ref DEAD: loom::sync::Mutex<Vec<u64>> = loom::sync::Mutex::new(Vec::new());
    }

    loom::thread_local! {
        /// The step at which this thread dies; `None`: it does not.
        static AT: Cell<Option<super::Step>> = Cell::new(None);
        /// This thread is unwinding out of a crash point.
        static DYING: Cell<bool> = Cell::new(false);
    }

    /// The panic payload of a crash point.
    #[derive(Debug)]
    pub struct Died;

    /// Makes this execution keep MPMC claim records (call it first in a crash model).
    pub fn record_claims() {
        RECORDING.store(true, Ordering::Relaxed);
    }

    pub(crate) fn recording() -> bool {
        RECORDING.load(Ordering::Relaxed)
    }

    /// A fresh endpoint identity (stands for a process start time).
    pub(crate) fn identity() -> u64 {
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_alive(identity: u64) -> bool {
        // Only crash models kill; elsewhere skip the mutex, whose scheduling points would
        // multiply the trees of models that never declare a death.
        !recording() || !DEAD.lock().unwrap().contains(&identity)
    }

    pub(crate) fn declare_dead(identity: u64) {
        assert!(
            recording(),
            "a crash model must call `record_claims()` first"
        );
        DEAD.lock().unwrap().push(identity);
    }

    /// Makes the current thread die the next time it reaches `step`.
    pub fn crash_at(step: super::Step) {
        AT.with(|c| c.set(Some(step)));
        DYING.with(|d| d.set(false));
    }

    /// The current thread's "process" is dead from now on: destructors it runs do nothing a
    /// killed process would not (they only end loom's access tracking).
    pub fn die_here() {
        AT.with(|c| c.set(None));
        DYING.with(|d| d.set(true));
    }

    /// A step boundary at which a process may be killed.
    pub(crate) fn crash_point(step: super::Step) {
        let die = AT.with(|c| {
            let die = c.get() == Some(step);
            if die {
                c.set(None);
            }
            die
        });
        if die {
            DYING.with(|d| d.set(true));
            std::panic::resume_unwind(Box::new(Died));
        }
    }

    /// Whether the current thread is unwinding out of a crash point: destructors must then
    /// do nothing a killed process would not.
    pub(crate) fn dying() -> bool {
        DYING.with(Cell::get)
    }
}

/// The step boundaries at which the loom models of crash recovery kill a "process"
/// ([`crash_point`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(loom), allow(unreachable_pub))] // re-exported by `__loom` only under loom
pub enum Step {
    /// An MPMC endpoint recorded its claim and has not made its claim CAS.
    ClaimRecorded,
    /// An MPMC producer stored the length and not the sequence word.
    LengthWritten,
    /// An MPMC producer published the slot (its record still names it).
    Published,
    /// An MPMC consumer released the slot (its record still names it).
    Released,
    /// A recoverer took the recovery lock.
    RecoveryLocked,
    /// A recoverer wrote the abandoned marker and has not published it.
    MarkerWritten,
    /// A recoverer settled the slot and has not cleared the records or counted it.
    Settled,
    /// An SPSC producer published its slots (their sequence words) and has not stored `head`.
    BeforeHead,
}

/// A step boundary at which a process may be killed (loom models of crash recovery; nothing in
/// normal builds).
#[inline(always)]
pub(crate) fn crash_point(_step: Step) {
    #[cfg(loom)]
    death::crash_point(_step);
}

/// Whether MPMC endpoints keep their claim records and look for stuck slots: always, except in
/// loom models that do not model crashes. Without a death neither plays a part, and in the
/// 4-thread models the extra stores and looks multiplied the tree (the two largest models,
/// about two minutes each before, had not finished after half an hour), so only the crash
/// models opt in (`death::record_claims`).
#[inline(always)]
pub(crate) fn recording() -> bool {
    #[cfg(loom)]
    return death::recording();
    #[cfg(not(loom))]
    true
}

/// Whether the current thread is being "killed" at a crash point (always false outside loom).
#[inline(always)]
pub(crate) fn dying() -> bool {
    #[cfg(loom)]
    return death::dying();
    #[cfg(not(loom))]
    false
}
