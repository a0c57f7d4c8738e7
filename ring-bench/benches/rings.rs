//! Criterion micro-benchmarks of the ring algorithms on the heap backend: send+receive on one
//! thread (the cost of the operations themselves), and a producer and a consumer thread (the
//! cost of a hand-off). Only the transfer is timed; each benchmark checks what it receives.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmring::{Kind, Ring, TryRecvError};

/// A ring of 4096 messages of `slot` bytes (a record ring: the bytes 4096 of them take).
fn ring(kind: Kind, slot: usize) -> Ring {
    let capacity = if kind.is_records() {
        4096 * (8 + slot.next_multiple_of(8)) as u64
    } else {
        4096
    };
    Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .slot_size(slot)
        .heap()
        .create()
        .expect("heap ring")
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("one-thread send+recv 8 B");
    g.throughput(Throughput::Elements(1));
    let r = ring(Kind::Spsc, 8);
    let (mut tx, mut rx) = (r.spsc_producer().unwrap(), r.spsc_consumer().unwrap());
    let mut buf = [0u8; 8];
    g.bench_function("spsc copy", |b| {
        b.iter(|| {
            tx.try_send(black_box(&[1u8; 8])).unwrap();
            black_box(rx.try_recv(&mut buf).unwrap());
        })
    });
    g.bench_function("spsc value", |b| {
        b.iter(|| {
            tx.try_send_value(black_box(7u64)).unwrap();
            black_box(rx.try_recv_value::<u64>().unwrap());
        })
    });
    let r = ring(Kind::Mpmc, 8);
    let (mut tx, mut rx) = (r.mpmc_producer().unwrap(), r.mpmc_consumer().unwrap());
    g.bench_function("mpmc copy", |b| {
        b.iter(|| {
            tx.try_send(black_box(&[1u8; 8])).unwrap();
            black_box(rx.try_recv(&mut buf).unwrap());
        })
    });
    let r = ring(Kind::Records, 8);
    let (mut tx, mut rx) = (r.records_producer().unwrap(), r.records_consumer().unwrap());
    g.bench_function("records copy", |b| {
        b.iter(|| {
            tx.try_send(black_box(&[1u8; 8])).unwrap();
            black_box(rx.try_recv(&mut buf).unwrap());
        })
    });
    // The kind-erased endpoints (`Ring::producer`), on an SPSC ring: the cost of the dispatch.
    let r = ring(Kind::Spsc, 8);
    let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
    g.bench_function("erased spsc copy", |b| {
        b.iter(|| {
            tx.try_send(black_box(&[1u8; 8])).unwrap();
            black_box(rx.try_recv(&mut buf).unwrap());
        })
    });
    g.finish();
}

/// `iters` u64 messages from a producer thread to a consumer thread; times only the transfer.
fn transfer(kind: Kind, iters: u64) -> Duration {
    let r = ring(kind, 8);
    let barrier = Arc::new(Barrier::new(2));
    let b2 = Arc::clone(&barrier);
    let consumer = {
        let r = r.clone();
        std::thread::spawn(move || {
            let mut next = 0u64;
            let recv = |next: &mut u64, got: Result<u64, TryRecvError>| match got {
                Ok(v) => {
                    assert_eq!(v, *next, "out of order");
                    *next += 1;
                }
                // Empty, or (MPMC) Pending: the producer claimed the next slot and is writing it.
                Err(e) if e.would_block() => core::hint::spin_loop(),
                Err(e) => panic!("{e}"),
            };
            match kind {
                Kind::Spsc => {
                    let mut rx = r.spsc_consumer().unwrap();
                    b2.wait();
                    while next < iters {
                        recv(&mut next, rx.try_recv_value::<u64>());
                    }
                }
                Kind::Mpmc => {
                    let mut rx = r.mpmc_consumer().unwrap();
                    b2.wait();
                    while next < iters {
                        recv(&mut next, rx.try_recv_value::<u64>());
                    }
                }
                _ => {
                    let mut rx = r.records_consumer().unwrap();
                    b2.wait();
                    while next < iters {
                        recv(&mut next, rx.try_recv_value::<u64>());
                    }
                }
            }
        })
    };
    let start;
    match kind {
        Kind::Spsc => {
            let mut tx = r.spsc_producer().unwrap();
            barrier.wait();
            start = Instant::now();
            for i in 0..iters {
                while tx.try_send_value(i).is_err() {
                    core::hint::spin_loop();
                }
            }
        }
        Kind::Mpmc => {
            let mut tx = r.mpmc_producer().unwrap();
            barrier.wait();
            start = Instant::now();
            for i in 0..iters {
                while tx.try_send_value(i).is_err() {
                    core::hint::spin_loop();
                }
            }
        }
        _ => {
            let mut tx = r.records_producer().unwrap();
            barrier.wait();
            start = Instant::now();
            for i in 0..iters {
                while tx.try_send_value(i).is_err() {
                    core::hint::spin_loop();
                }
            }
        }
    }
    consumer.join().unwrap();
    start.elapsed()
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two threads, 8 B messages");
    g.throughput(Throughput::Elements(1));
    g.bench_function("spsc", |b| {
        b.iter_custom(|iters| transfer(Kind::Spsc, iters))
    });
    g.bench_function("mpmc 1->1", |b| {
        b.iter_custom(|iters| transfer(Kind::Mpmc, iters))
    });
    g.bench_function("records 1->1", |b| {
        b.iter_custom(|iters| transfer(Kind::Records, iters))
    });
    g.finish();
}

criterion_group!(benches, one_thread, two_threads);
criterion_main!(benches);
