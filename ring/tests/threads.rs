//! Threads hammering one ring, every byte of every message checked: the threaded stress that
//! `scripts/tsan.sh` runs under ThreadSanitizer (and `cargo test` runs plainly).
//!
//! It has its own `main` (`harness = false`): libtest's worker threads and channels are built
//! without the sanitizer and would be reported as races of their own. The process-based stress
//! lives in `stress.rs`; TSan cannot follow accesses across processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shmring::{Ring, TryRecvError, TrySendError};

/// Messages per producer; `SHMRING_THREADS_MESSAGES` overrides (TSan runs slower).
fn messages() -> u64 {
    std::env::var("SHMRING_THREADS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Aborts the process if the run outlasts `limit`: no hang can block CI.
fn watchdog(limit: Duration) {
    thread::spawn(move || {
        thread::sleep(limit);
        eprintln!("watchdog: threads stress still running after {limit:?}");
        std::process::abort();
    });
}

/// Message `seq` of producer `p`: a header (producer, sequence, length) then payload bytes that
/// depend on all three, so a torn, stale or misplaced byte shows. 12..=slot bytes long.
fn encode(buf: &mut [u8], p: u8, seq: u64) -> usize {
    let len = 12 + (seq.wrapping_mul(0x9e37_79b9) % (buf.len() as u64 - 11)) as usize;
    buf[0] = p;
    buf[1..9].copy_from_slice(&seq.to_le_bytes());
    buf[9..11].copy_from_slice(&(len as u16).to_le_bytes());
    for (k, b) in buf[11..len].iter_mut().enumerate() {
        *b = byte(p, seq, k);
    }
    len
}

fn byte(p: u8, seq: u64, k: usize) -> u8 {
    (seq.wrapping_mul(31)
        .wrapping_add(k as u64 * 7)
        .wrapping_add(u64::from(p) * 131)
        >> 1) as u8
}

/// Checks a message whole and returns (producer, sequence).
fn decode(m: &[u8]) -> (u8, u64) {
    assert!(m.len() >= 12, "torn length {}", m.len());
    let p = m[0];
    let seq = u64::from_le_bytes(m[1..9].try_into().unwrap());
    let len = u16::from_le_bytes(m[9..11].try_into().unwrap()) as usize;
    assert_eq!(len, m.len(), "length of {p}/{seq}");
    for (k, &b) in m[11..].iter().enumerate() {
        assert_eq!(b, byte(p, seq, k), "byte {k} of {p}/{seq} torn");
    }
    (p, seq)
}

/// Per-producer order: the next sequence expected from each producer, shared by consumers.
struct Order(Vec<AtomicU64>);

impl Order {
    fn new(producers: usize) -> Arc<Order> {
        Arc::new(Order((0..producers).map(|_| AtomicU64::new(0)).collect()))
    }

    /// With several consumers, messages of one producer reach them in order of claim; each
    /// consumer sees its own share in increasing order, and every number exactly once overall
    /// (checked by the total and the per-consumer monotonicity).
    fn take(&self, last: &mut [Option<u64>], p: u8, seq: u64) {
        let slot = &mut last[p as usize];
        assert!(
            slot.is_none_or(|l| seq > l),
            "producer {p}: {seq} after {slot:?}"
        );
        *slot = Some(seq);
        self.0[p as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn spsc(blocking: bool) {
    let n = messages();
    let ring = Ring::builder()
        .spsc()
        .capacity(64)
        .slot_size(64)
        .heap()
        .create()
        .unwrap();
    let mut tx = ring.spsc_producer().unwrap();
    let mut rx = ring.spsc_consumer().unwrap();
    let producer = thread::spawn(move || {
        let mut buf = [0u8; 64];
        for seq in 0..n {
            let len = encode(&mut buf, 0, seq);
            if blocking {
                tx.send(&buf[..len]).unwrap();
            } else if seq % 2 == 0 {
                while let Err(TrySendError::Full(_)) = tx.try_send(&buf[..len]) {
                    std::hint::spin_loop();
                }
            } else {
                // Zero-copy: claim, write in place, commit.
                let mut slot = loop {
                    match tx.try_claim() {
                        Ok(slot) => break slot,
                        Err(_) => std::hint::spin_loop(),
                    }
                };
                slot[..len].copy_from_slice(&buf[..len]);
                slot.commit(len).unwrap();
            }
        }
    });
    let mut buf = [0u8; 64];
    for seq in 0..n {
        let got = if blocking {
            let len = rx.recv(&mut buf).unwrap();
            decode(&buf[..len])
        } else if seq % 3 == 0 {
            loop {
                match rx.try_read() {
                    Ok(m) => break decode(&m),
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        } else {
            loop {
                match rx.try_recv(&mut buf) {
                    Ok(len) => break decode(&buf[..len]),
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        };
        assert_eq!(got, (0, seq), "gap or duplicate");
    }
    producer.join().unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
}

fn mpmc(producers: u8, consumers: usize, blocking: bool) {
    let n = messages();
    let ring = Ring::builder()
        .mpmc()
        .capacity(32)
        .slot_size(64)
        .heap()
        .create()
        .unwrap();
    let order = Order::new(producers as usize);
    let mut handles = Vec::new();
    for p in 0..producers {
        let mut tx = ring.mpmc_producer().unwrap();
        handles.push(thread::spawn(move || {
            let mut buf = [0u8; 64];
            for seq in 0..n {
                let len = encode(&mut buf, p, seq);
                if blocking {
                    tx.send(&buf[..len]).unwrap();
                } else if seq % 5 == 4 {
                    // An aborted claim: consumers step over its skip marker.
                    if let Ok(slot) = tx.try_claim() {
                        drop(slot);
                    }
                    while tx.try_send(&buf[..len]).is_err() {
                        std::hint::spin_loop();
                    }
                } else {
                    while tx.try_send(&buf[..len]).is_err() {
                        std::hint::spin_loop();
                    }
                }
            }
        }));
    }
    let total = n * u64::from(producers);
    let received = Arc::new(AtomicU64::new(0));
    for _ in 0..consumers {
        let mut rx = ring.mpmc_consumer().unwrap();
        let (order, received) = (order.clone(), received.clone());
        handles.push(thread::spawn(move || {
            let mut last = vec![None; producers as usize];
            let mut buf = [0u8; 64];
            loop {
                let r = if blocking {
                    rx.recv_timeout(&mut buf, Duration::from_millis(20))
                        .map_err(|e| e.to_string())
                } else {
                    rx.try_recv(&mut buf).map_err(|e| e.to_string())
                };
                match r {
                    Ok(len) => {
                        let (p, seq) = decode(&buf[..len]);
                        order.take(&mut last, p, seq);
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if received.load(Ordering::Relaxed) >= total => break,
                    Err(_) => std::hint::spin_loop(),
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        received.load(Ordering::Relaxed),
        total,
        "lost or duplicated"
    );
    for (p, c) in order.0.iter().enumerate() {
        assert_eq!(c.load(Ordering::Relaxed), n, "producer {p}");
    }
}

fn main() {
    watchdog(Duration::from_secs(300));
    let cases: [(&str, fn()); 5] = [
        ("spsc: try, zero-copy, in place", || spsc(false)),
        ("spsc: blocking", || spsc(true)),
        ("mpmc 2 -> 2: try, aborted claims", || mpmc(2, 2, false)),
        ("mpmc 3 -> 1: try", || mpmc(3, 1, false)),
        ("mpmc 2 -> 2: blocking", || mpmc(2, 2, true)),
    ];
    for (name, case) in cases {
        let start = Instant::now();
        case();
        println!("ok  {name} ({} ms)", start.elapsed().as_millis());
    }
}
