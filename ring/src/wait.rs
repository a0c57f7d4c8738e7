//! Blocking calls: spin, then yield, then sleep on a futex word in the segment — and a wake-up
//! that costs the message path no system call and no fence unless someone sleeps.
//!
//! # The protocol
//!
//! The wait line of the header (`layout::WaitLine`) holds two [`Pair`]s: `data`, where consumers
//! sleep until a message arrives, and `space`, where producers sleep until a slot frees up. Each
//! pair is a futex word (`epoch`) and a count of sleepers.
//!
//! A waiter that has spun and yielded without success:
//! 1. loads `epoch` (Acquire),
//! 2. increments `sleepers`,
//! 3. issues the **heavy barrier**,
//! 4. polls the ring once more, and only if that fails
//! 5. calls `FUTEX_WAIT(epoch, value from 1)` with a timeout, then decrements `sleepers`.
//!
//! The other side, after every publish (producer) or release (consumer):
//! 1. issues the **light barrier**,
//! 2. loads `sleepers`; only if it is non-zero, bumps `epoch` (Release) and calls `FUTEX_WAKE`.
//!
//! This is Dekker's pattern (the waiter stores `sleepers` then loads the ring; the waker stores
//! the ring then loads `sleepers`), so at least one side sees the other's store: either the
//! waiter's re-poll finds the message, or the waker sees the sleeper and wakes it. The futex
//! compare closes the last gap: a bump between steps 1 and 5 makes `FUTEX_WAIT` return at once.
//! A waker cannot bump `epoch` before the waiter's step 1 load yet after seeing its step 2
//! increment (that Acquire load would then read a value written after the increment was read).
//!
//! # Asymmetric barriers
//!
//! Dekker needs a full (StoreLoad) fence on both sides; on x86 that is an `mfence` per message,
//! which would cost the hot path more than the rest of a send. So the barrier is asymmetric, as
//! in folly and liburcu: the waker's *light* barrier is only a compiler fence, and the waiter's
//! *heavy* barrier is `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes every CPU
//! running a thread of a registered process execute a full fence before it returns (a CPU not
//! running one has passed through a context switch, which is a full fence too). Every process
//! registers (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`) when it first creates or opens a
//! ring, and again in every child it forks. The heavy barrier costs a few hundred nanoseconds, paid
//! only on the way to sleep, which costs tens of microseconds anyway.
//!
//! Where the kernel lacks `membarrier`, or registration fails, wakers fall back to a real
//! `SeqCst` fence; a waiter whose heavy barrier fails cannot rely on every waker, so it sleeps
//! in slices of [`FALLBACK_SLICE`] instead: never a lost message, at worst that much latency.
//! Both barriers, and the futex, come from the `sync` facade (`sync::barrier`, `sync::Futex`):
//! under loom the barriers are `fence(SeqCst)`, which is exactly the guarantee `membarrier`
//! gives, and the futex is a mutex and condition variable (a lost wake-up is then a deadlock
//! the model reports).
//!
//! # Liveness
//!
//! A sleep never outlasts the liveness interval ([`WaitOptions::liveness_check`]): the waiter
//! wakes, re-reads the registry with process liveness checks, and returns `Disconnected` once
//! every peer that attached is gone. The interval is the endpoint's, not the call's: each
//! endpoint remembers when it last checked, and a blocking call checks whenever an interval has
//! passed since — also when it is about to return at its deadline — so calls with timeouts
//! shorter than the interval, in a loop, notice a dead peer as soon as one long call would. So
//! a peer killed with SIGKILL is noticed within one interval, and a forged wait word (a hostile
//! process zeroing `sleepers`) costs at most that much latency, never a hang.

use std::time::{Duration, Instant};

use crate::layout::{Pair, RingMem, Side};
use crate::sync::{Ordering, barrier};

/// How long a waiter whose heavy barrier is unavailable sleeps before polling again.
pub const FALLBACK_SLICE: Duration = Duration::from_millis(1);

/// Polls between two clock reads while spinning.
const SPIN_BATCH: u32 = 32;

/// How blocking calls wait: spin, then yield, then sleep, checking peer liveness while asleep.
///
/// The defaults suit a machine where a futex wake-up costs tens of microseconds: spinning
/// about as long as one wake-up costs bounds the loss to twice the optimum (the classic
/// spin-then-block argument) while a busy peer is served at spinning latency.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use shmring::WaitOptions;
///
/// // Never spin: sleep at once (lowest CPU use, highest latency).
/// let lazy = WaitOptions::default().spin(Duration::ZERO).yield_for(Duration::ZERO);
/// let ring = shmring::Ring::builder().spsc().capacity(8).slot_size(8).heap().wait(lazy).create()?;
/// # Ok::<(), shmring::CreateError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitOptions {
    spin: Duration,
    yield_for: Duration,
    liveness: Duration,
}

impl Default for WaitOptions {
    /// Spin 50 µs, yield 50 µs, then sleep; check peer liveness every 100 ms.
    fn default() -> Self {
        WaitOptions {
            spin: Duration::from_micros(50),
            yield_for: Duration::from_micros(50),
            liveness: Duration::from_millis(100),
        }
    }
}

impl WaitOptions {
    /// How long to busy-poll (with a CPU spin hint) before yielding.
    pub fn spin(mut self, d: Duration) -> Self {
        self.spin = d;
        self
    }

    /// How long to poll with `sched_yield` between polls before sleeping.
    pub fn yield_for(mut self, d: Duration) -> Self {
        self.yield_for = d;
        self
    }

    /// The longest a sleeping waiter goes without checking that its peers are alive: the bound
    /// on how long a blocked call takes to notice a peer killed with SIGKILL.
    /// `Duration::MAX` never checks (a dead peer then blocks a call without timeout forever).
    pub fn liveness_check(mut self, d: Duration) -> Self {
        self.liveness = d;
        self
    }
}

impl WaitOptions {
    /// The liveness interval.
    pub(crate) fn liveness(&self) -> Duration {
        self.liveness
    }
}

/// The deadline of a call with an optional timeout (a timeout too large for the clock is none).
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Waits until `poll` returns `Some`, or `deadline` passes (then `None`).
///
/// `poll(true)` asks the caller to re-check peer liveness before polling; it is passed once
/// `next_check` has come (and then once per liveness interval), in whichever phase the call is
/// in, and at the deadline: the liveness interval runs across calls (the endpoint keeps the time
/// of its last check), so a loop of calls with timeouts far shorter than the interval still
/// notices a dead peer within one interval.
pub(crate) fn block<R>(
    mem: &RingMem,
    side: Side,
    me: Sleeper<'_>,
    opts: &WaitOptions,
    deadline: Option<Instant>,
    next_check: Option<Instant>,
    mut poll: impl FnMut(bool) -> Option<R>,
) -> Option<R> {
    let start = Instant::now();
    let expired = |now: Instant| deadline.is_some_and(|d| now >= d);
    let mut checks = Checks {
        next: next_check,
        every: opts.liveness,
    };
    // Phases 1 and 2: poll, with a spin hint and then with a yield between polls.
    for (budget, yielding) in [(opts.spin, false), (opts.yield_for, true)] {
        if budget.is_zero() {
            continue;
        }
        let end = start.checked_add(budget);
        loop {
            for _ in 0..SPIN_BATCH {
                if yielding {
                    std::thread::yield_now();
                } else {
                    core::hint::spin_loop();
                }
                if let Some(r) = poll(false) {
                    return Some(r);
                }
            }
            let now = Instant::now();
            if expired(now) {
                return poll(checks.due(now));
            }
            if end.is_none_or(|end| now >= end) {
                break;
            }
        }
    }
    // Phase 3: sleep (module docs).
    let pair = mem.wait_pair(side);
    loop {
        let now = Instant::now();
        let check = checks.due(now);
        if expired(now) {
            return poll(check);
        }
        let armed = arm(mem, side, me);
        if let Some(r) = poll(check) {
            disarm(mem, side, me);
            return Some(r);
        }
        let until = [deadline, checks.next].into_iter().flatten().min();
        let mut timeout = until.map(|t| t.saturating_duration_since(now));
        if !armed.paired {
            timeout = Some(timeout.map_or(FALLBACK_SLICE, |t| t.min(FALLBACK_SLICE)));
        }
        pair.epoch.wait(armed.epoch, timeout);
        disarm(mem, side, me);
    }
}

/// Who is going to sleep: the `asleep` word of its registry entry and its endpoint word, which
/// it stores there while counted, so that its count can be taken back if it dies asleep
/// (`registry::heal`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sleeper<'a> {
    pub(crate) asleep: &'a crate::sync::raw::AtomicU64,
    pub(crate) word: u64,
}

/// What [`arm`] read: the epoch to sleep on, and whether the heavy barrier paired with every
/// waker (if not, sleep in slices of [`FALLBACK_SLICE`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Armed {
    pub(crate) epoch: u32,
    pub(crate) paired: bool,
}

/// Steps 1–3 of the protocol (module docs): load the epoch, count in as a sleeper of `side`,
/// and issue the heavy barrier. The caller then polls the ring once more (step 4) and, if that
/// fails, sleeps until the epoch moves — on the futex itself, or through the async doorbell.
/// Every `arm` is matched by one [`disarm`].
pub(crate) fn arm(mem: &RingMem, side: Side, me: Sleeper<'_>) -> Armed {
    let pair = mem.wait_pair(side);
    // Acquire: pairs with the Release bump in `wake`, so a bump we read is one made after
    // its waker published (the argument in the module docs).
    let epoch = pair.epoch.word().load(Ordering::Acquire);
    // Relaxed: ordered before the re-poll by the heavy barrier just below, which is what
    // the waker's light barrier pairs with.
    pair.sleepers.fetch_add(1, Ordering::Relaxed);
    // Relaxed: evidence only (`registry::heal`). Stored after the increment: a death between
    // the two leaks a count (a needless wake-up per message) rather than taking back one that
    // was never given (which could hide a live sleeper from its wakers).
    me.asleep.store(me.word, Ordering::Relaxed);
    let paired = barrier::heavy();
    Armed { epoch, paired }
}

/// Counts a sleeper of `side` out again.
pub(crate) fn disarm(mem: &RingMem, side: Side, me: Sleeper<'_>) {
    // Relaxed (both): a stale non-zero count costs a waker one needless system call at most.
    // The evidence is cleared first, for the reason given in `arm`.
    me.asleep.store(0, Ordering::Relaxed);
    mem.wait_pair(side).sleepers.fetch_sub(1, Ordering::Relaxed);
}

/// The liveness checks of one blocking call.
struct Checks {
    /// When the next one is due (`None`: never).
    next: Option<Instant>,
    /// The liveness interval.
    every: Duration,
}

impl Checks {
    /// Whether a check is due at `now`; if so, schedules the next one.
    fn due(&mut self, now: Instant) -> bool {
        let due = self.next.is_some_and(|t| now >= t);
        if due {
            self.next = now.checked_add(self.every);
        }
        due
    }
}

/// Wakes the waiters of `side` if any sleep. Call after every publish (producers, `Data`) and
/// every release (consumers, `Space`).
#[inline(always)]
pub(crate) fn notify(mem: &RingMem, side: Side) {
    let pair = mem.wait_pair(side);
    barrier::light(mem.asymmetric);
    // Relaxed: the light barrier above orders it after our publication; it pairs with the
    // sleeper's heavy barrier (module docs).
    if pair.sleepers.load(Ordering::Relaxed) != 0 {
        wake(&pair);
    }
}

#[cold]
#[inline(never)]
fn wake(pair: &Pair<'_>) {
    // Release: pairs with the Acquire load of `epoch` in `arm` (reached from `block` and from
    // the doorbell).
    pair.epoch.word().fetch_add(1, Ordering::Release);
    pair.epoch.wake();
}
