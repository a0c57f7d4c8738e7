//! A doorbell: a file descriptor any event loop can wait on (epoll, mio, tokio, async-io,
//! glib, Python's asyncio), readable once the ring an endpoint waits on has moved.
//!
//! # How it rings
//!
//! The wait protocol is the blocking calls' own (`wait`): a waiter counts itself in as a
//! sleeper on its side's wait pair, issues the heavy barrier, polls once more, and only then
//! waits for the pair's epoch word to move. A producer (or a consumer releasing) still makes a
//! system call only when the sleeper count is non-zero — one load per message otherwise, as
//! before. What differs is who waits on the word: not the waiting thread (an async task must
//! not block its worker), but **one helper thread per process**, which sleeps in
//! `futex_waitv(2)` on the epoch words of every ring its doorbells wait on (and on a word of
//! its own, bumped when the set changes) and, when a word moves or a waiter's liveness
//! deadline passes, writes to that waiter's `eventfd`. The event loop then sees the descriptor
//! readable, and the task polls the ring again.
//!
//! Why this and not a descriptor the *waker* writes to (an `eventfd` handed to the peer over a
//! Unix socket, or a named datagram socket per waiter): it needs no handshake, no socket, no
//! file in a shared directory and nothing per peer; it works between any processes that can
//! map the ring (other users, containers sharing only the IPC namespace); the producer's side
//! is unchanged, so sync and async peers mix freely; and a waiter killed with SIGKILL leaves
//! only its count in the sleeper word, which the next liveness check takes back
//! (`registry::heal`). The price is one more thread hop per wake-up: `docs/blocking.md` has the
//! measurement against a doorbell the producer rings directly.
//!
//! Kernels without `futex_waitv` (before Linux 5.16) get the same behaviour by polling the
//! words every millisecond. More than 127 rings waited on at once are polled every millisecond
//! beyond the first 127.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Shared};
use crate::layout::Side;
use crate::os;
use crate::sync::{Ordering, raw};
use crate::wait;

/// The most words one `futex_waitv` call takes.
const MAX_WAITV: usize = 128;

/// How often the words are polled when `futex_waitv` cannot wait on them all.
const POLL: Duration = Duration::from_millis(1);

/// A waiter's request: ring `bell` once the epoch word of `side` no longer holds `epoch`, or
/// at `deadline`.
struct Request {
    id: u64,
    shared: Arc<Shared>,
    side: Side,
    epoch: u32,
    /// Kept open by the waiter until it withdraws the request (`Doorbell::disarm`).
    bell: RawFd,
    deadline: Option<Instant>,
}

/// The helper thread's state, shared with the waiters.
struct Helper {
    /// The process it belongs to: a child made by `fork` has no helper thread (threads do not
    /// survive a fork) and copies of these words, possibly locked: it starts its own.
    pid: u32,
    requests: Mutex<Vec<Request>>,
    /// Bumped (and woken) when a request arrives, so the helper rebuilds its set.
    control: raw::AtomicU32,
    next_id: raw::AtomicU64,
}

/// This process's helper (leaked: it lives as long as the process). A lock-free pointer, not
/// a mutex: a `fork` in the middle of a start must not leave the child a lock held for ever.
static HELPER: raw::AtomicPtr<Helper> = raw::AtomicPtr::new(core::ptr::null_mut());

fn helper() -> std::io::Result<&'static Helper> {
    let pid = os::getpid();
    // Acquire: pairs with the Release compare-and-swap below: the helper is fully built.
    let current = HELPER.load(Ordering::Acquire);
    // SAFETY: a non-null pointer here was leaked by a winning compare-and-swap below and is
    // never freed.
    if let Some(h) = unsafe { current.as_ref() }
        && h.pid == pid
    {
        return Ok(h);
    }
    let fresh: &'static Helper = Box::leak(Box::new(Helper {
        pid,
        requests: Mutex::new(Vec::new()),
        control: raw::AtomicU32::new(0),
        next_id: raw::AtomicU64::new(1),
    }));
    let fresh_ptr = core::ptr::from_ref(fresh).cast_mut();
    // AcqRel: publishes `fresh` (Release) and sees a racing winner's (Acquire).
    match HELPER.compare_exchange(current, fresh_ptr, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            let started = std::thread::Builder::new()
                .name("shmring-doorbell".into())
                .spawn(move || run(fresh));
            if let Err(e) = started {
                // No thread to serve it: let the next caller try again. Release: pairs with the
                // Acquire load at the top (the reset is all there is to see); failure Relaxed:
                // someone replaced it already, and nothing is read from the value.
                let _ = HELPER.compare_exchange(
                    fresh_ptr,
                    core::ptr::null_mut(),
                    Ordering::Release,
                    Ordering::Relaxed,
                );
                return Err(e);
            }
            Ok(fresh)
        }
        // Another thread started one first (`fresh` stays leaked: a few bytes, once).
        Err(_) => helper(),
    }
}

/// The helper thread: ring every doorbell whose word moved or whose deadline passed, then
/// sleep on the rest.
fn run(h: &'static Helper) {
    let mut waits: Vec<os::FutexWaitv> = Vec::with_capacity(MAX_WAITV);
    loop {
        // Relaxed: any change to the requests is made under the mutex taken below; this value
        // only tells the kernel what to wait on, so a bump after it returns at once.
        let control = h.control.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut overflow = false;
        waits.clear();
        {
            let mut requests = h.requests.lock().unwrap_or_else(PoisonError::into_inner);
            requests.retain(|r| {
                let word = r.shared.mem.wait_pair(r.side).epoch.word();
                // Acquire: as a sleeper's load in `wait::arm`: a bump we see was made after
                // its waker published, so the waiter's poll will find what woke it.
                let moved = word.load(Ordering::Acquire) != r.epoch;
                if moved || r.deadline.is_some_and(|d| now >= d) {
                    // SAFETY: the waiter keeps `bell` open until its request is withdrawn,
                    // which takes this lock: it is open here.
                    os::eventfd_signal(unsafe { BorrowedFd::borrow_raw(r.bell) });
                    return false;
                }
                if waits.len() < MAX_WAITV - 1 {
                    waits.push(os::FutexWaitv::new(word.as_ptr(), r.epoch, false));
                } else {
                    overflow = true;
                }
                next = [next, r.deadline].into_iter().flatten().min();
                true
            });
        }
        waits.push(os::FutexWaitv::new(h.control.as_ptr(), control, true));
        let mut timeout = next.map(|d| d.saturating_duration_since(now));
        if overflow {
            timeout = Some(timeout.map_or(POLL, |t| t.min(POLL)));
        }
        // No reference to the rings is held across the wait: a waiter that disarms and then
        // drops its last handle must be the one that unmaps (and, as creator, unlinks) the
        // ring, at once, not this thread up to an interval later. So a word may be unmapped
        // during the call; the kernel only reads the words, through its fault-tolerant user
        // access (`EFAULT`, or a wait on whatever is mapped there now, ended by the control
        // word or the timeout), and this thread reads them again only through live requests.
        if os::futex_waitv(&waits, timeout) == os::Waitv::Unsupported {
            std::thread::sleep(timeout.map_or(POLL, |t| t.min(POLL)));
        }
    }
}

/// A readiness descriptor for one endpoint: an `eventfd` that becomes readable once the ring
/// the endpoint waits on has moved (a message arrived, or room was made), or once the
/// endpoint's next liveness check is due (arming runs that check, so a dead peer is then
/// reported by the next call).
///
/// Use it from any event loop, around the non-blocking calls:
///
/// 1. try the call (`try_recv`, `try_send`, …); if it would block,
/// 2. arm the doorbell ([`arm_consumer`](Self::arm_consumer) or
///    [`arm_producer`](Self::arm_producer)) and **try once more** (what arrived in between is
///    not rung for; after a due liveness check this is also where `Disconnected` shows);
/// 3. if that would block too, wait until the descriptor ([`AsFd`]) is readable;
/// 4. [`disarm`](Self::disarm) (which also clears the descriptor), and go back to 1.
///
/// With a live peer that sends nothing, the descriptor becomes readable once per liveness
/// interval; with a dead one, step 2 answers `Disconnected` within one interval.
///
/// An armed doorbell counts as a sleeper: wakers make a system call per message until it is
/// disarmed, so disarm as soon as the call succeeds (dropping the doorbell disarms too).
///
/// # Examples
/// ```
/// use std::os::fd::AsFd;
/// use shmring::{Ring, doorbell::Doorbell};
///
/// let ring = Ring::builder().spsc().capacity(8).slot_size(8).heap().create()?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// let mut bell = Doorbell::new()?;
/// let mut buf = [0u8; 8];
/// assert!(rx.try_recv(&mut buf).is_err());
/// bell.arm_consumer(&mut rx)?;
/// assert!(rx.try_recv(&mut buf).is_err()); // still nothing: wait for the descriptor
/// tx.try_send(b"ding")?;
/// let mut fds = [libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&bell.as_fd()), events: libc::POLLIN, revents: 0 }];
/// // SAFETY (of the example): one valid pollfd.
/// assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 10_000) }, 1);
/// bell.disarm();
/// assert_eq!(rx.try_recv(&mut buf)?, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
    armed: Option<Arming>,
}

/// What an armed doorbell holds.
struct Arming {
    shared: Arc<Shared>,
    side: Side,
    entry: usize,
    word: u64,
    request: u64,
}

impl core::fmt::Debug for Arming {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Arming")
            .field("side", &self.side)
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

impl Doorbell {
    /// A new doorbell (an `eventfd`; the helper thread starts with the first one armed).
    ///
    /// # Errors
    /// Creating the `eventfd` failed (the process is out of descriptors).
    pub fn new() -> std::io::Result<Doorbell> {
        Ok(Doorbell {
            fd: os::eventfd()?,
            armed: None,
        })
    }

    /// Arms for a consumer: rings once a message may have arrived, or once the consumer's next
    /// liveness check is due. Runs that check first if it is due already (so the call tried
    /// next answers `Disconnected` once every producer is dead).
    ///
    /// # Errors
    /// Starting the helper thread failed.
    pub fn arm_consumer(&mut self, consumer: &mut crate::Consumer) -> std::io::Result<()> {
        self.arm(consumer, Side::Data)
    }

    /// Arms for a producer: rings once room may have been made, or once the producer's next
    /// liveness check is due (run first if due already, as in
    /// [`arm_consumer`](Self::arm_consumer)).
    ///
    /// # Errors
    /// Starting the helper thread failed.
    pub fn arm_producer(&mut self, producer: &mut crate::Producer) -> std::io::Result<()> {
        self.arm(producer, Side::Space)
    }

    /// Runs the endpoint's liveness check if it is due, counts the endpoint in as a sleeper of
    /// `side` (`wait::arm`) and asks the helper to ring once the side's epoch moves or the
    /// next check is due. Re-arming an armed doorbell disarms it first.
    pub(crate) fn arm(&mut self, ep: &mut dyn Endpoint, side: Side) -> std::io::Result<()> {
        self.disarm();
        // The doorbell rang for this deadline (or the caller never waited): without the check,
        // the deadline stays in the past and every arm would ring at once.
        if ep
            .attached()
            .next_check()
            .is_some_and(|due| Instant::now() >= due)
        {
            ep.check_peers();
        }
        let ep = ep.attached();
        let h = helper()?;
        let shared = Arc::clone(ep.shared());
        let armed = wait::arm(&shared.mem, side, ep.sleeper());
        let deadline = ep.next_check();
        // Relaxed: a unique number; nothing is published through it.
        let request = h.next_id.fetch_add(1, Ordering::Relaxed);
        h.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Request {
                id: request,
                shared: Arc::clone(&shared),
                side,
                epoch: armed.epoch,
                bell: self.fd.as_raw_fd(),
                // Without the heavy barrier, wakers may not see us: look every slice.
                deadline: if armed.paired {
                    deadline
                } else {
                    Some(Instant::now() + wait::FALLBACK_SLICE)
                },
            });
        // Relaxed: the request is published by the mutex, which the helper takes before it
        // reads the requests; this word only makes the helper's `futex_waitv` return (the
        // kernel compares it), so it rebuilds its set and waits on the new word too.
        h.control.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `control` is an aligned u32 of a helper that is never freed.
        unsafe { os::futex_wake_private(h.control.as_ptr()) };
        self.armed = Some(Arming {
            shared,
            side,
            entry: ep.entry(),
            word: ep.word(),
            request,
        });
        Ok(())
    }

    /// Counts the endpoint out again, withdraws the request, and clears the descriptor. Does
    /// nothing if not armed.
    pub fn disarm(&mut self) {
        let Some(a) = self.armed.take() else {
            return;
        };
        if let Ok(h) = helper() {
            h.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|r| r.id != a.request);
        }
        let me = wait::Sleeper {
            asleep: a.shared.mem.asleep(a.entry),
            word: a.word,
        };
        wait::disarm(&a.shared.mem, a.side, me);
        os::eventfd_drain(self.fd.as_fd());
    }

    /// Whether the doorbell is armed.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        // Withdraw the request before the descriptor closes.
        self.disarm();
    }
}
