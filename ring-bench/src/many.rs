//! Two producers and two consumers through one queue: shmring's MPMC ring across four processes
//! against crossbeam's `ArrayQueue` across four threads, pinned alike (producer 0 and consumer 1
//! on the child CPU, producer 1 and consumer 0 — the measuring side — on the parent's).
//!
//! Every message carries its producer and its number in its stamps; each consumer checks every
//! stamp and that each producer's numbers rise (a consumer sees a subsequence of each
//! producer's stream, in order). After the window the producers stop and say how many they
//! sent; the consumers drain until the counts meet, and the figure fails if they do not: no
//! message lost, none duplicated. On a 2-CPU machine four spinning sides share two CPUs, so the
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

/// Producer `p`: sends stamped messages until told to stop, then records how many it sent.
/// `push` returns whether the message went in (false: full, try again).
fn produce(
    ctl: &Control,
    p: usize,
    size: usize,
    mut push: impl FnMut(&[u8]) -> Result<bool, String>,
) -> Result<(), String> {
    let mut buf = Buf::new(size);
    let mut n = 0u64;
    'run: while ctl.stop.load(Ordering::Relaxed) == 0 {
        stamp(&mut buf, seq_of(p, n));
        while !push(&buf[..])? {
            if ctl.stop.load(Ordering::Relaxed) != 0 {
                break 'run;
            }
        }
        n += 1;
    }
    // Release: pairs with the consumers' Acquire of `done`: the count is final.
    ctl.sent[p].0.store(n, Ordering::Relaxed);
    ctl.done.0.fetch_add(1, Ordering::Release);
    Ok(())
}

/// What a consumer checks of each message: every stamp, and that each producer's numbers rise.
struct Order {
    last: [Option<u64>; SIDES],
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
                if ctl.done.0.load(Ordering::Acquire) as usize == SIDES {
                    let sent: u64 = ctl.sent.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
                    let received = total();
                    if received == sent {
                        return Ok(rate);
                    }
                    if received > sent {
                        return Err(format!("{received} messages received of {sent} sent"));
                    }
                    let until = *drain_deadline.get_or_insert(Instant::now() + DRAIN_LIMIT);
                    if Instant::now() > until {
                        return Err(format!(
                            "{received} messages received of {sent} sent, and no more come"
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

/// Two producer processes → two consumer processes through one shmring MPMC ring.
pub(crate) fn shmring(size: usize, window: Duration, cfg: &Config) -> Result<f64, String> {
    let ring = crate::shm::ring("mpmc2x2", Kind::Mpmc, size, WaitOptions::default(), cfg)?;
    let ctl = ControlMap::new();
    let ctl = ctl.get();
    let mut children = Vec::new();
    for p in 0..SIDES {
        children.push(proc::spawn(cpu(p == 0), || {
            let mut tx = ring.producer().map_err(|e| e.to_string())?;
            produce(ctl, p, size, |m| match tx.try_send(m) {
                Ok(()) => Ok(true),
                Err(e) if e.would_block() => Ok(false),
                Err(e) => Err(e.to_string()),
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
    let capacity = ((4 << 20) / N).clamp(8, 4096);
    let queue = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(capacity));
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
                produce(ctl, p, N, |m| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(m);
                    Ok(q.push(a).is_ok())
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
        result?.ok_or_else(|| "no rate measured".to_owned())
    })
}
