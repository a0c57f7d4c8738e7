//! Two producers and two consumers through one queue: shmring's MPMC ring across four processes
//! against crossbeam's `ArrayQueue` across four threads, pinned alike (producer 0 and consumer 1
//! on the child CPU, producer 1 and consumer 0 — the measuring side — on the parent's).
//!
//! Every message carries its producer and its number in its stamps; each consumer checks every
//! stamp and that each producer's numbers rise (a consumer sees a subsequence of each
//! producer's stream, in order). After the window the producers stop and say how many they
//! sent; the consumers drain until the counts meet (with a deadline), and then the tally of each
//! producer's messages across both consumers must be exactly its numbers 0..sent, once each
//! (`check_tally`): no message lost, none duplicated. On a 2-CPU machine four spinning sides share two CPUs, so the
//! figure includes the scheduler's time slices; both rows pay them alike.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::{Kind, TryRecvError, WaitOptions};

use crate::check::{stamp, verify};
use crate::config::Config;
use crate::proc::{self, Buf, Control, ControlMap};
use crate::transport::{CHILD_LIMIT, child_cpu};

/// Producers, and consumers.
pub(crate) const SIDES: usize = 2;

/// How long the consumers may take to drain what was sent after the window.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// The stamp of producer `p`'s message `n`.
fn seq_of(p: usize, n: u64) -> u64 {
    (p as u64) << 56 | n
}

/// The CPU side `i` (0 or 1) of a role runs on: side 0 of the producers and side 1 of the
/// consumers on the child CPU, the others on the parent's.
fn cpu(child_side: bool) -> Option<usize> {
    if child_side {
        child_cpu()
    } else {
        child_cpu().map(|_| 0)
    }
}

/// Producer `p`: opens its end (`open`), then sends stamped messages until told to stop.
/// However it leaves — done, failed, or panicking — it counts itself in `done` with what it sent,
/// so the consumers' drain never waits for a producer that is gone. `push` returns whether the
/// message went in (false: full, try again).
fn produce<F: FnMut(&[u8]) -> Result<bool, String>>(
    ctl: &Control,
    p: usize,
    size: usize,
    open: impl FnOnce() -> Result<F, String>,
) -> Result<(), String> {
    struct Done<'a> {
        ctl: &'a Control,
        p: usize,
        sent: u64,
    }
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.ctl.sent[self.p].0.store(self.sent, Ordering::Relaxed);
            // Release: pairs with the consumers' Acquire of `done`: the count is final.
            self.ctl.done.0.fetch_add(1, Ordering::Release);
        }
    }
    let mut done = Done { ctl, p, sent: 0 };
    let mut push = open()?;
    let mut buf = Buf::new(size);
    'run: while ctl.stop.load(Ordering::Relaxed) == 0 {
        stamp(&mut buf, seq_of(p, done.sent));
        while !push(&buf[..])? {
            if ctl.stop.load(Ordering::Relaxed) != 0 {
                break 'run;
            }
        }
        done.sent += 1;
    }
    Ok(())
}

/// What a consumer checks of each message: every stamp, and that each producer's numbers rise.
struct Order {
    last: [Option<u64>; SIDES],
    /// Per producer: messages received, and the sum of their numbers (`Tally`).
    count: [u64; SIDES],
    sum: [u64; SIDES],
}

impl Order {
    fn check(&mut self, m: &[u8]) -> Result<(), String> {
        let s = u64::from_le_bytes(m[..8].try_into().map_err(|_| "short message")?);
        let (p, n) = ((s >> 56) as usize, s & ((1 << 56) - 1));
        if p >= SIDES {
            return Err(format!("a message names producer {p}"));
        }
        verify(m, s)?;
        if self.last[p].is_some_and(|l| n <= l) {
            return Err(format!(
                "producer {p}'s message {n} after its message {:?}",
                self.last[p]
            ));
        }
        self.last[p] = Some(n);
        self.count[p] += 1;
        self.sum[p] = self.sum[p].wrapping_add(n);
        Ok(())
    }
}

/// Consumer `c`: receives until the producers are done and everything they sent is received.
/// Consumer 0 measures: messages received by both consumers per second over `window`, from the
/// first message it receives. `pop` copies the next message into the buffer and returns its
/// length, or `None` if there is none now.
fn consume(
    ctl: &Control,
    c: usize,
    size: usize,
    window: Duration,
    mut pop: impl FnMut(&mut [u8]) -> Result<Option<usize>, String>,
) -> Result<Option<f64>, String> {
    let mut buf = Buf::new(size);
    let mut order = Order {
        last: [None; SIDES],
        count: [0; SIDES],
        sum: [0; SIDES],
    };
    // Relaxed: counts; `done` orders the end (below).
    let total = || -> u64 {
        ctl.received
            .iter()
            .map(|r| r.0.load(Ordering::Relaxed))
            .sum()
    };
    let mut got = 0u64;
    // Consumer 0's window: when it opened and both consumers' count then; the other
    // consumer's count is read only at the window's two ends, not per message.
    let mut opened: Option<(Instant, u64)> = None;
    let mut rate = None;
    let deadline = Instant::now() + window + Duration::from_secs(10);
    let mut drain_deadline = None;
    loop {
        match pop(&mut buf)? {
            Some(n) => {
                order.check(&buf[..n])?;
                got += 1;
                // Relaxed: a count for the measuring side and the drain; `done` orders the end.
                ctl.received[c].0.store(got, Ordering::Relaxed);
                if c == 0 && rate.is_none() && got % 64 == 1 {
                    let (t0, n0) = *opened.get_or_insert_with(|| (Instant::now(), total()));
                    let el = t0.elapsed();
                    if el >= window {
                        rate = Some((total() - n0) as f64 / el.as_secs_f64());
                        ctl.stop.store(1, Ordering::Relaxed);
                    }
                }
            }
            None => {
                // Acquire: pairs with the producers' Release of `done`: their counts are final.
                let finished = ctl.done.0.load(Ordering::Acquire) as usize == SIDES;
                let sent: u64 = ctl.sent.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
                let received = total();
                if finished && received == sent {
                    order.publish(ctl, c);
                    return Ok(rate);
                }
                if finished && received > sent {
                    return Err(format!("{received} messages received of {sent} sent"));
                }
                // Once the run is told to stop, the drain has a deadline, whether or not every
                // producer has reported (one killed outright never will).
                if finished || ctl.stop.load(Ordering::Relaxed) != 0 {
                    let until = *drain_deadline.get_or_insert(Instant::now() + DRAIN_LIMIT);
                    if Instant::now() > until {
                        return Err(format!(
                            "{received} messages received of {sent} sent by the producers that \
                             finished, and no more come"
                        ));
                    }
                } else if c == 0 && rate.is_none() && Instant::now() > deadline {
                    ctl.stop.store(1, Ordering::Relaxed);
                    return Err("no progress".into());
                }
            }
        }
    }
}

impl Order {
    /// Leaves this consumer's per-producer tally for [`check_tally`].
    fn publish(&self, ctl: &Control, c: usize) {
        for p in 0..SIDES {
            // Relaxed: read after the consumer's process or thread is reaped or joined.
            ctl.tally_count[c * SIDES + p]
                .0
                .store(self.count[p], Ordering::Relaxed);
            ctl.tally_sum[c * SIDES + p]
                .0
                .store(self.sum[p], Ordering::Relaxed);
        }
    }
}

/// After both consumers finished: each producer's messages were received exactly once — as
/// many as it sent, and numbers summing to 0 + 1 + … + (sent − 1). (Each consumer saw each
/// producer's numbers rise, so neither received one twice; the sum catches a message lost on
/// one side and another received twice across the two.)
fn check_tally(ctl: &Control) -> Result<(), String> {
    for p in 0..SIDES {
        let sent = ctl.sent[p].0.load(Ordering::Relaxed);
        let (mut count, mut sum) = (0u64, 0u64);
        for c in 0..SIDES {
            count += ctl.tally_count[c * SIDES + p].0.load(Ordering::Relaxed);
            sum = sum.wrapping_add(ctl.tally_sum[c * SIDES + p].0.load(Ordering::Relaxed));
        }
        let want = (u128::from(sent) * u128::from(sent.saturating_sub(1)) / 2) as u64;
        if count != sent || sum != want {
            return Err(format!(
                "producer {p} sent {sent} messages; the consumers received {count} (numbers \
                 summing to {sum}, not {want})"
            ));
        }
    }
    Ok(())
}

/// Two producer processes → two consumer processes through one shmring MPMC ring.
pub(crate) fn shmring(size: usize, window: Duration, cfg: &Config) -> Result<f64, String> {
    let ring = crate::shm::ring("mpmc2x2", Kind::Mpmc, size, WaitOptions::default(), cfg)?;
    let ctl = ControlMap::new();
    let ctl = ctl.get();
    let mut children = Vec::new();
    for p in 0..SIDES {
        children.push(proc::spawn(cpu(p == 0), || {
            produce(ctl, p, size, || {
                let mut tx = ring.producer().map_err(|e| e.to_string())?;
                Ok(move |m: &[u8]| match tx.try_send(m) {
                    Ok(()) => Ok(true),
                    Err(e) if e.would_block() => Ok(false),
                    Err(e) => Err(e.to_string()),
                })
            })
        }));
    }
    let pop = |rx: &mut shmring::Consumer, buf: &mut [u8]| match rx.try_recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.would_block() || e == TryRecvError::Disconnected => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    children.push(proc::spawn(cpu(true), || {
        let mut rx = ring.consumer().map_err(|e| e.to_string())?;
        consume(ctl, 1, size, window, |b| pop(&mut rx, b)).map(drop)
    }));
    let result = ring
        .consumer()
        .map_err(|e| e.to_string())
        .and_then(|mut rx| consume(ctl, 0, size, window, |b| pop(&mut rx, b)));
    ctl.stop.store(1, Ordering::Relaxed);
    let reaped: Result<Vec<()>, String> = children
        .into_iter()
        .map(|c| proc::reap(c, CHILD_LIMIT))
        .collect();
    drop(ring);
    let rate = result?.ok_or("no rate measured")?;
    reaped?;
    check_tally(ctl)?;
    Ok(rate)
}

/// Two producer threads → two consumer threads through one crossbeam `ArrayQueue`, `N`-byte
/// messages; `None` for sizes other than 8, 64 and 1024 bytes.
pub(crate) fn crossbeam(size: usize, window: Duration) -> Option<Result<f64, String>> {
    Some(match size {
        8 => array_queue::<8>(window),
        64 => array_queue::<64>(window),
        1024 => array_queue::<1024>(window),
        _ => return None,
    })
}

fn array_queue<const N: usize>(window: Duration) -> Result<f64, String> {
    let queue = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(
        crate::inproc::capacity(N),
    ));
    let ctl = ControlMap::new();
    let ctl = ctl.get();
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for p in 0..SIDES {
            let q = Arc::clone(&queue);
            threads.push(s.spawn(move || {
                if let Some(c) = cpu(p == 0) {
                    proc::pin(c);
                }
                produce(ctl, p, N, || {
                    Ok(move |m: &[u8]| {
                        let mut a = [0u8; N];
                        a.copy_from_slice(m);
                        Ok(q.push(a).is_ok())
                    })
                })
            }));
        }
        let pop = |q: &crossbeam_queue::ArrayQueue<[u8; N]>, buf: &mut [u8]| {
            Ok(q.pop().map(|m| {
                buf[..N].copy_from_slice(&m);
                N
            }))
        };
        let q = Arc::clone(&queue);
        threads.push(s.spawn(move || {
            if let Some(c) = cpu(true) {
                proc::pin(c);
            }
            consume(ctl, 1, N, window, |b| pop(&q, b)).map(drop)
        }));
        let result = consume(ctl, 0, N, window, |b| pop(&queue, b));
        ctl.stop.store(1, Ordering::Relaxed);
        for t in threads {
            t.join().map_err(|_| "a 2→2 thread panicked".to_owned())??;
        }
        let rate = result?.ok_or_else(|| "no rate measured".to_owned())?;
        check_tally(ctl)?;
        Ok(rate)
    })
}
