//! Loom models of the ring algorithms on the heap backend.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmring --release --test loom` (or
//! `scripts/loom.sh`). Payload bytes are tracked through per-slot loom cells, so a missing
//! Release/Acquire pair on a payload is reported as a data race, and the values received are
//! checked, so a lost, duplicated, reordered or torn message fails the model.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use shmring::{Ring, TryRecvError};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    // LOOM_MAX_PREEMPTIONS overrides; 2 keeps the 4-thread model within CI's budget while still
    // covering every interleaving with two preemptions (the bound used by tokio's CI).
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    // Spinning consumers make long paths; the default (1000) is too small for 4 threads.
    b.max_branches = 100_000;
    b.check(f);
}

/// A message that is torn if any of its bytes disagree.
fn msg(producer: u8, seq: u8) -> [u8; 4] {
    [producer, seq, producer ^ 0x5a, seq ^ 0xa5]
}

fn check(m: &[u8]) -> (u8, u8) {
    assert_eq!(m.len(), 4, "wrong length");
    assert_eq!(m[2], m[0] ^ 0x5a, "torn message");
    assert_eq!(m[3], m[1] ^ 0xa5, "torn message");
    (m[0], m[1])
}

#[test]
fn spsc_wraps_in_order() {
    model(|| {
        let ring = Ring::builder()
            .spsc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let mut tx = ring.spsc_producer().unwrap();
        let mut rx = ring.spsc_consumer().unwrap();
        let producer = thread::spawn(move || {
            for i in 0..3 {
                while tx.try_send(&msg(0, i)).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut buf = [0u8; 4];
        for i in 0..3 {
            loop {
                match rx.try_recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(check(&buf[..n]), (0, i));
                        break;
                    }
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn spsc_zero_copy_and_batches() {
    model(|| {
        let ring = Ring::builder()
            .spsc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let mut tx = ring.spsc_producer().unwrap();
        let mut rx = ring.spsc_consumer().unwrap();
        let producer = thread::spawn(move || {
            // One claim dropped (nothing sent), then two committed in place, then a batch.
            drop(tx.try_claim().unwrap());
            for i in 0..2 {
                loop {
                    if let Ok(mut slot) = tx.try_claim() {
                        slot[..4].copy_from_slice(&msg(0, i));
                        slot.commit(4).unwrap();
                        break;
                    }
                    thread::yield_now();
                }
            }
            let rest = [msg(0, 2), msg(0, 3)];
            let mut sent = 0;
            while sent < rest.len() {
                sent += tx.try_send_batch(&rest[sent..]).unwrap();
                thread::yield_now();
            }
        });
        let mut next = 0;
        while next < 4 {
            let got = rx
                .try_recv_batch(2, |m| {
                    assert_eq!(check(m), (0, next));
                    next += 1;
                })
                .unwrap();
            if got == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
    });
}

/// `producers` threads each try to send `per_producer` messages; `consumers` threads each make
/// `attempts` receive attempts; then the main thread drains the rest. Loops are bounded (a
/// producer gives up on a full ring after two tries, stopping its sequence there) so the model
/// stays small. Checks: every sent message is received exactly once, none is torn, and every
/// consumer sees each producer's messages in order.
fn mpmc_model(producers: u8, per_producer: u8, consumers: usize, attempts: usize) {
    model(move || {
        let ring = Ring::builder()
            .mpmc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let slots = producers as usize * per_producer as usize;
        let seen = Arc::new((0..slots).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
        let sent = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for p in 0..producers {
            let mut tx = ring.mpmc_producer().unwrap();
            let sent = Arc::clone(&sent);
            threads.push(thread::spawn(move || {
                'msgs: for i in 0..per_producer {
                    let mut tries = 0;
                    while tx.try_send(&msg(p, i)).is_err() {
                        tries += 1;
                        if tries == 2 {
                            break 'msgs;
                        }
                        thread::yield_now();
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let receive = move |rx: &mut shmring::mpmc::Consumer,
                            seen: &[AtomicUsize],
                            attempts: usize| {
            let mut last = vec![None::<u8>; producers as usize];
            let mut buf = [0u8; 4];
            for _ in 0..attempts {
                match rx.try_recv(&mut buf) {
                    Ok(n) => {
                        let (p, i) = check(&buf[..n]);
                        assert!(last[p as usize] < Some(i), "per-producer order broken");
                        last[p as usize] = Some(i);
                        let k = p as usize * per_producer as usize + i as usize;
                        assert_eq!(seen[k].fetch_add(1, Ordering::Relaxed), 0, "duplicate");
                    }
                    // Disconnected: every producer has left and the ring is drained
                    // (the lost-message check below holds it to that).
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        };
        for _ in 0..consumers {
            let mut rx = ring.mpmc_consumer().unwrap();
            let seen = Arc::clone(&seen);
            threads.push(thread::spawn(move || receive(&mut rx, &seen, attempts)));
        }
        let mut rx = ring.mpmc_consumer().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        receive(&mut rx, &seen, slots + 1);
        // Every producer has dropped its endpoint: drained, then disconnected.
        assert_eq!(rx.try_recv(&mut [0u8; 4]), Err(TryRecvError::Disconnected));
        let received: usize = seen.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        assert_eq!(received, sent.load(Ordering::Relaxed), "lost message");
    });
}

#[test]
fn mpmc_two_producers_two_consumers() {
    mpmc_model(2, 1, 2, 1);
}

#[test]
fn mpmc_two_producers_wrap() {
    mpmc_model(2, 2, 1, 3);
}

#[test]
fn mpmc_two_consumers_wrap() {
    mpmc_model(1, 3, 2, 2);
}

#[test]
fn mpmc_wraps_with_aborted_claims() {
    model(|| {
        let ring = Ring::builder()
            .mpmc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let mut tx = ring.mpmc_producer().unwrap();
        let mut rx = ring.mpmc_consumer().unwrap();
        let producer = thread::spawn(move || {
            for i in 0..3 {
                if i == 1 {
                    // An abandoned claim publishes a skip marker the consumer steps over.
                    while tx.try_claim().is_err() {
                        thread::yield_now();
                    }
                }
                loop {
                    if let Ok(mut slot) = tx.try_claim() {
                        slot[..4].copy_from_slice(&msg(0, i));
                        slot.commit(4).unwrap();
                        break;
                    }
                    thread::yield_now();
                }
            }
        });
        for i in 0..3 {
            loop {
                match rx.try_read() {
                    Ok(m) => {
                        assert_eq!(check(&m), (0, i));
                        break;
                    }
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        producer.join().unwrap();
    });
}

/// Blocking calls that go straight to sleep (no spinning, no liveness timer): a lost wake-up
/// leaves a thread asleep forever, which loom reports as a deadlock.
fn sleeper() -> shmring::WaitOptions {
    shmring::WaitOptions::default()
        .spin(std::time::Duration::ZERO)
        .yield_for(std::time::Duration::ZERO)
        .liveness_check(std::time::Duration::MAX)
}

#[test]
fn spsc_blocking_never_loses_a_wake_up() {
    model(|| {
        // Capacity 1: the producer must sleep for space, the consumer for data.
        let ring = Ring::builder()
            .spsc()
            .capacity(1)
            .slot_size(4)
            .heap()
            .wait(sleeper())
            .create()
            .unwrap();
        let mut tx = ring.spsc_producer().unwrap();
        let mut rx = ring.spsc_consumer().unwrap();
        let producer = thread::spawn(move || {
            for i in 0..2 {
                tx.send(&msg(0, i)).unwrap();
            }
        });
        let mut buf = [0u8; 4];
        for i in 0..2 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(check(&buf[..n]), (0, i));
        }
        producer.join().unwrap();
    });
}

#[test]
fn mpmc_blocking_never_loses_a_wake_up() {
    model(|| {
        let ring = Ring::builder()
            .mpmc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .wait(sleeper())
            .create()
            .unwrap();
        let mut a = ring.mpmc_producer().unwrap();
        let mut b = ring.mpmc_producer().unwrap();
        let mut rx = ring.mpmc_consumer().unwrap();
        let pa = thread::spawn(move || {
            for i in 0..2 {
                a.send(&msg(0, i)).unwrap();
            }
        });
        let pb = thread::spawn(move || b.send(&msg(1, 0)).unwrap());
        let mut buf = [0u8; 4];
        let mut next = [0u8; 2];
        for _ in 0..3 {
            let n = rx.recv(&mut buf).unwrap();
            let (p, s) = check(&buf[..n]);
            assert_eq!(s, next[p as usize], "per-producer order");
            next[p as usize] += 1;
        }
        pa.join().unwrap();
        pb.join().unwrap();
    });
}

/// A non-blocking receive on either kind of consumer.
type TryRecv = Box<dyn FnMut(&mut [u8]) -> Result<usize, TryRecvError>>;

/// A producer sends one message and leaves, while the consumer makes one attempt (loom tries
/// it at every point of the producer's run, with every value the memory model allows). The
/// attempt may find the ring empty (too early) or the message, but never `Disconnected`: the
/// departure is published by a Release decrement made after the message, and a consumer that
/// Acquires it must see the message too. A second attempt after the join must then report the
/// disconnect.
fn disconnect_never_hides_a_message(kind: shmring::Kind) {
    model(move || {
        let ring = Ring::builder()
            .kind(kind)
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let send: Box<dyn FnOnce() + Send> = match kind {
            shmring::Kind::Spsc => {
                let mut tx = ring.spsc_producer().unwrap();
                Box::new(move || tx.try_send(&msg(0, 0)).unwrap())
            }
            _ => {
                let mut tx = ring.mpmc_producer().unwrap();
                Box::new(move || tx.try_send(&msg(0, 0)).unwrap())
            }
        };
        let mut recv: TryRecv = match kind {
            shmring::Kind::Spsc => {
                let mut rx = ring.spsc_consumer().unwrap();
                Box::new(move |b| rx.try_recv(b))
            }
            _ => {
                let mut rx = ring.mpmc_consumer().unwrap();
                Box::new(move |b| rx.try_recv(b))
            }
        };
        // The endpoint drops at the end of the closure: the producer leaves.
        let producer = thread::spawn(send);
        let mut buf = [0u8; 4];
        let got = match recv(&mut buf) {
            Ok(n) => {
                assert_eq!(check(&buf[..n]), (0, 0));
                true
            }
            Err(TryRecvError::Empty) => false,
            Err(e) => panic!("before the message: {e}"),
        };
        producer.join().unwrap();
        if !got {
            let n = recv(&mut buf).unwrap();
            assert_eq!(check(&buf[..n]), (0, 0));
        }
        assert_eq!(recv(&mut buf), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn spsc_disconnect_never_hides_a_message() {
    disconnect_never_hides_a_message(shmring::Kind::Spsc);
}

#[test]
fn mpmc_disconnect_never_hides_a_message() {
    disconnect_never_hides_a_message(shmring::Kind::Mpmc);
}
