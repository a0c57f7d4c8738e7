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
//!
//! What the model cannot see is mocked here too, as tokio's `loom/mocked` does: the futex
//! ([`Futex`]: the kernel's wait queue becomes a loom mutex and condition variable, so a lost
//! wake-up is a deadlock the model reports) and the memory barriers of the wake-up protocol
//! ([`barrier`]: `membarrier` becomes the full fence it guarantees).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// `core`'s atomics whatever the build, for words that are never part of a loom model: words
/// that live in a segment (the ready word, the endpoint registry), and process-local statics
/// that a model must not own (the `SIGBUS` guard's table, read from a signal handler; test
/// hooks).
pub(crate) mod raw {
    /// The doorbell's process-wide helper pointer.
    #[cfg(all(feature = "doorbell", not(loom)))]
    pub(crate) use core::sync::atomic::AtomicPtr;
    pub(crate) use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
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

#[cfg(not(loom))]
impl Cells {
    /// [`write`](Self::write) over `n` consecutive cells from `first` (a record's words).
    #[inline(always)]
    pub(crate) fn write_range(&self, _first: usize, _n: usize) -> RangeToken {
        RangeToken
    }

    /// [`read`](Self::read) over `n` consecutive cells from `first`.
    #[inline(always)]
    pub(crate) fn read_range(&self, _first: usize, _n: usize) -> RangeToken {
        RangeToken
    }
}

/// Held while an access to a range of cells lasts (zero-sized outside loom).
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct RangeToken;

/// Held while an access to a range of cells lasts; loom checks each cell.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct RangeToken(#[allow(dead_code)] Vec<AccessToken>);

impl RangeToken {
    /// Ends the access. Call it before the Release store that hands the range on.
    #[inline(always)]
    pub(crate) fn end(self) {
        #[cfg(loom)]
        drop(self);
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

    pub(crate) fn write_range(&self, first: usize, n: usize) -> RangeToken {
        RangeToken((first..first + n).map(|i| self.write(i)).collect())
    }

    pub(crate) fn read_range(&self, first: usize, n: usize) -> RangeToken {
        RangeToken((first..first + n).map(|i| self.read(i)).collect())
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
    /// A record-ring producer reserved its bytes (moved `head`) and has written nothing there.
    Reserved,
    /// A record-ring producer with many peers stored its "reserved" header and has not
    /// committed.
    Announced,
    /// A record-ring consumer marked a record consumed and has not zeroed it.
    Consumed,
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

/// A futex word: one 32-bit word processes sleep on (`FUTEX_WAIT`) and wake each other through
/// (`FUTEX_WAKE`), in a segment. Under loom the word lives in the model's shadow and the kernel's
/// wait queue is a loom mutex and condition variable ([`FutexQueue`]); timeouts are ignored
/// there (loom has no clock), so a lost wake-up leaves the model deadlocked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Futex<'a> {
    word: &'a AtomicU32,
    #[cfg(loom)]
    queue: &'a FutexQueue,
}

impl<'a> Futex<'a> {
    /// The futex on `word`.
    #[cfg(not(loom))]
    pub(crate) fn new(word: &'a AtomicU32) -> Futex<'a> {
        Futex { word }
    }

    /// The futex on `word`, with the model's wait queue.
    #[cfg(loom)]
    pub(crate) fn new(word: &'a AtomicU32, queue: &'a FutexQueue) -> Futex<'a> {
        Futex { word, queue }
    }

    /// The word itself.
    #[inline(always)]
    pub(crate) fn word(&self) -> &'a AtomicU32 {
        self.word
    }

    /// Sleeps while the word holds `expected`, for at most `timeout`; may return spuriously.
    #[cfg(not(loom))]
    pub(crate) fn wait(&self, expected: u32, timeout: Option<std::time::Duration>) {
        // SAFETY: the word is an aligned atomic u32 that `self` borrows for the whole call.
        unsafe { crate::os::futex_wait(self.word.as_ptr(), expected, timeout) }
    }

    /// Wakes every sleeper.
    #[cfg(not(loom))]
    pub(crate) fn wake(&self) {
        // SAFETY: as in `wait`.
        unsafe { crate::os::futex_wake(self.word.as_ptr()) }
    }

    // The `unwrap`s below are on loom's mutex and condition variable, which fail only if a
    // model thread panicked while holding the lock: the model has failed already.
    #[cfg(loom)]
    pub(crate) fn wait(&self, expected: u32, _timeout: Option<std::time::Duration>) {
        let guard = self.queue.lock.lock().unwrap();
        // Relaxed: the mutex orders it against `wake`, as the kernel's hash-bucket lock does.
        if self.word.load(Ordering::Relaxed) == expected {
            drop(self.queue.cv.wait(guard).unwrap());
        }
    }

    #[cfg(loom)]
    pub(crate) fn wake(&self) {
        let _guard = self.queue.lock.lock().unwrap();
        self.queue.cv.notify_all();
    }
}

/// The kernel's futex wait queue, as a loom model sees it.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct FutexQueue {
    lock: loom::sync::Mutex<()>,
    cv: loom::sync::Condvar,
}

#[cfg(loom)]
impl FutexQueue {
    pub(crate) fn new() -> FutexQueue {
        FutexQueue {
            lock: loom::sync::Mutex::new(()),
            cv: loom::sync::Condvar::new(),
        }
    }
}

/// The two barriers of the wake-up protocol (`wait`): a waker's *light* barrier between its
/// publication and its look at the sleeper count, and a sleeper's *heavy* barrier between its
/// count increment and its re-poll. Together they make Dekker's pattern hold.
///
/// Normally light is a compiler fence and heavy is `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`,
/// which makes every CPU running a thread of a registered process execute a full fence (as in
/// folly and liburcu). Where the kernel lacks it, or registration fails, light is a real SeqCst
/// fence and heavy reports that it only fenced this CPU. Under loom both are `fence(SeqCst)`:
/// exactly what `membarrier` guarantees the waker.
pub(crate) mod barrier {
    #[cfg(not(loom))]
    pub(crate) use imp::{heavy, light, register};
    #[cfg(loom)]
    pub(crate) use model::{heavy, light, register};

    #[cfg(not(loom))]
    mod imp {
        use crate::os;
        use crate::sync::raw::AtomicU32;
        use crate::sync::{Ordering, compiler_fence, fence};

        const UNKNOWN: u32 = 0;
        /// Registered: light barriers may be compiler fences.
        const ASYMMETRIC: u32 = 1;
        /// No membarrier: light barriers are full fences.
        const SYMMETRIC: u32 = 2;

        /// This process's barrier mode. Process-global, not shared memory.
        static MODE: AtomicU32 = AtomicU32::new(UNKNOWN);
        /// Whether the kernel offers `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (0 unknown, 1 yes, 2 no).
        static HEAVY: AtomicU32 = AtomicU32::new(UNKNOWN);

        fn supported() -> bool {
            // Relaxed: a cache of an idempotent query; racing threads compute the same answer.
            match HEAVY.load(Ordering::Relaxed) {
                1 => true,
                2 => false,
                _ => {
                    let mask = os::membarrier_query();
                    let wanted = (libc::MEMBARRIER_CMD_GLOBAL_EXPEDITED
                        | libc::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)
                        as libc::c_long;
                    let ok = mask >= 0 && mask & wanted == wanted;
                    HEAVY.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                    ok
                }
            }
        }

        /// Makes this process a target of other processes' heavy barriers, once per process
        /// (and again in each forked child, through `pthread_atfork`: whether the kernel
        /// carries the registration across `fork` is not documented); whether it is. Called by
        /// the ring handle when it maps a ring; cheap after the first call.
        pub(crate) fn register() -> bool {
            // Relaxed: MODE is only ever set after the registration it describes has completed
            // in this thread, and the kernel's registration is process-wide state.
            match MODE.load(Ordering::Relaxed) {
                ASYMMETRIC => return true,
                SYMMETRIC => return false,
                _ => {}
            }
            let ok = supported()
                && os::membarrier(libc::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED as libc::c_int);
            if ok {
                os::pthread_atfork_child(after_fork);
            }
            MODE.store(if ok { ASYMMETRIC } else { SYMMETRIC }, Ordering::Relaxed);
            ok
        }

        /// Re-registers a forked child (it only makes a system call and stores an atomic, both
        /// async-signal-safe, as a fork child handler must). Should that ever fail, rings
        /// mapped before the fork keep their compiler-fence light barrier: a sleeper's
        /// `membarrier` then does not cover this process, and a wake-up from it can be missed
        /// until the sleeper's next liveness check (a delay bounded by the liveness interval,
        /// not a hang). Rings mapped after it use full fences.
        extern "C" fn after_fork() {
            if !os::membarrier(libc::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED as libc::c_int) {
                // Relaxed: the child is single-threaded here.
                MODE.store(SYMMETRIC, Ordering::Relaxed);
            }
        }

        /// The waker's barrier: orders its publication before its load of `sleepers`.
        /// `asymmetric`: this process is registered (`RingMem::asymmetric`).
        #[inline(always)]
        pub(crate) fn light(asymmetric: bool) {
            if asymmetric {
                // Enough for the compiler; the CPU is fenced by a sleeper's membarrier.
                compiler_fence(Ordering::SeqCst);
            } else {
                // SeqCst fence: pairs with the sleeper's heavy barrier (a fence or membarrier).
                fence(Ordering::SeqCst);
            }
        }

        /// The sleeper's barrier: orders its `sleepers` increment before its re-poll, and
        /// pairs with every waker's light barrier. Returns false if it could only fence this
        /// CPU (then a registered waker's compiler-fence-only light barrier is not covered).
        pub(crate) fn heavy() -> bool {
            if supported() && os::membarrier(libc::MEMBARRIER_CMD_GLOBAL_EXPEDITED as libc::c_int) {
                return true;
            }
            fence(Ordering::SeqCst);
            false
        }
    }

    #[cfg(loom)]
    mod model {
        use crate::sync::{Ordering, fence};

        pub(crate) fn register() -> bool {
            true
        }

        /// What `membarrier` guarantees the waker: a full fence at this point.
        pub(crate) fn light(_asymmetric: bool) {
            fence(Ordering::SeqCst);
        }

        pub(crate) fn heavy() -> bool {
            fence(Ordering::SeqCst);
            true
        }
    }
}
