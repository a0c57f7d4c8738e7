//! In-process references: two threads exchanging fixed-size messages through `rtrb` (an
//! exemplary SPSC ring) and crossbeam's `ArrayQueue` (a Vyukov-style MPMC queue). They bound
//! what a ring can do without crossing a process boundary; shmring's rows should match them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::proc;

/// Which in-process queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queue {
    Rtrb,
    ArrayQueue,
}

/// Messages per second from a producer thread to the calling thread, `N`-byte messages, every
/// one stamped and checked as in the cross-process rows. `None` for unsupported sizes.
pub(crate) fn throughput(q: Queue, size: usize, window: Duration) -> Option<Result<f64, String>> {
    Some(match size {
        8 => run::<8>(q, window),
        64 => run::<64>(q, window),
        1024 => run::<1024>(q, window),
        _ => return None,
    })
}

fn stamp<const N: usize>(seq: u64) -> [u8; N] {
    let mut m = [0u8; N];
    crate::check::stamp(&mut m, seq);
    m
}

/// Slots of an in-process queue of `size`-byte messages: about 4 MiB, 8 to 4096, as the
/// shmring rings are sized.
pub(crate) fn capacity(size: usize) -> usize {
    ((4 << 20) / size).clamp(8, 4096)
}

fn run<const N: usize>(q: Queue, window: Duration) -> Result<f64, String> {
    let capacity = capacity(N);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu = crate::transport::child_cpu();
    match q {
        Queue::Rtrb => {
            let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(capacity);
            let stop2 = Arc::clone(&stop);
            let producer = std::thread::spawn(move || {
                if let Some(c) = cpu {
                    proc::pin(c);
                }
                let mut seq = 0;
                while !stop2.load(Ordering::Relaxed) {
                    if tx.push(stamp::<N>(seq)).is_ok() {
                        seq += 1;
                    }
                }
            });
            let r = consume(window, || rx.pop().ok());
            stop.store(true, Ordering::Relaxed);
            producer
                .join()
                .map_err(|_| "rtrb producer panicked".to_owned())?;
            r
        }
        Queue::ArrayQueue => {
            let queue = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(capacity));
            let (q2, stop2) = (Arc::clone(&queue), Arc::clone(&stop));
            let producer = std::thread::spawn(move || {
                if let Some(c) = cpu {
                    proc::pin(c);
                }
                let mut seq = 0;
                while !stop2.load(Ordering::Relaxed) {
                    if q2.push(stamp::<N>(seq)).is_ok() {
                        seq += 1;
                    }
                }
            });
            let r = consume(window, || queue.pop());
            stop.store(true, Ordering::Relaxed);
            producer
                .join()
                .map_err(|_| "ArrayQueue producer panicked".to_owned())?;
            r
        }
    }
}

fn consume<const N: usize>(
    window: Duration,
    mut pop: impl FnMut() -> Option<[u8; N]>,
) -> Result<f64, String> {
    let mut seq = 0u64;
    let mut meter = crate::check::Window::new(window, 64);
    let deadline = Instant::now() + window + Duration::from_secs(10);
    loop {
        match pop() {
            Some(m) => {
                crate::check::verify(&m, seq)?;
                seq += 1;
                if let Some(rate) = meter.tick(seq) {
                    return Ok(rate);
                }
            }
            None if Instant::now() > deadline => return Err("no progress".into()),
            None => core::hint::spin_loop(),
        }
    }
}
