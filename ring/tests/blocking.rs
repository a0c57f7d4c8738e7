//! Blocking calls, disconnect and dead peers, across threads and across processes.
//!
//! Forked children attach their endpoints after the fork, allocate nothing (attaching and the
//! blocking calls do not) and leave with `_exit`; the parent reaps them with a deadline. Every
//! test runs under a watchdog. No test asserts how fast anything is: only that blocking calls
//! return, and with what.

mod common;

use std::time::Duration;

use common::{kill, park_forever, reap, spawn, stamp, unstamp, with_watchdog};
use shmring::{ClaimError, Kind, RecvError, Ring, TryClaimError, TryRecvError, WaitOptions};

const LIMIT: Duration = Duration::from_secs(60);

/// Sleep at once (no spinning), so the futex path is what runs; check liveness every 20 ms.
fn sleepy() -> WaitOptions {
    WaitOptions::default()
        .spin(Duration::ZERO)
        .yield_for(Duration::ZERO)
        .liveness_check(Duration::from_millis(20))
}

fn ring(kind: Kind, capacity: u64) -> Ring {
    Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .slot_size(16)
        .anonymous()
        .wait(sleepy())
        .create()
        .unwrap()
}

fn pause_ms(ms: u32) {
    // SAFETY: usleep has no memory preconditions.
    unsafe { libc::usleep(ms * 1000) };
}

/// Receives one stamped message (blocking) and returns its number.
fn recv_id(rx: &mut shmring::Consumer) -> u64 {
    let mut buf = [0u8; 16];
    let n = rx.recv(&mut buf).unwrap();
    unstamp(&buf[..n])
}

const KINDS: [Kind; 2] = [Kind::Spsc, Kind::Mpmc];

#[test]
fn blocking_recv_and_send_wake_across_processes() {
    with_watchdog(LIMIT, || {
        for kind in KINDS {
            // Capacity 4 and 2,000 messages: both sides sleep many times, each way.
            let ring = ring(kind, 4);
            let child_ring = ring.clone();
            let child = spawn(move || {
                pause_ms(50); // let the parent fall asleep first
                let mut tx = child_ring.producer().unwrap();
                let ok = (0..2000u64).all(|i| tx.send(&stamp(i)).is_ok());
                i32::from(!ok)
            });
            let mut rx = ring.consumer().unwrap();
            let mut buf = [0u8; 16];
            for i in 0..2000 {
                let n = rx.recv(&mut buf).unwrap();
                assert_eq!(unstamp(&buf[..n]), i, "{kind}");
            }
            // The child's producer detached at its exit: drained, then disconnected.
            assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected), "{kind}");
            assert_eq!(reap(&[child], LIMIT), [0]);
        }
    });
}

#[test]
fn timeouts_return_and_a_late_peer_is_not_a_disconnect() {
    with_watchdog(LIMIT, || {
        for kind in KINDS {
            let ring = ring(kind, 2);
            // No producer has ever attached: waiting, not disconnected.
            let mut rx = ring.consumer().unwrap();
            let mut buf = [0u8; 16];
            let short = Duration::from_millis(30);
            assert_eq!(rx.recv_timeout(&mut buf, short), Err(RecvError::Timeout));
            assert_eq!(
                rx.read_timeout(short).map(|m| m.to_vec()),
                Err(RecvError::Timeout)
            );
            assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
            let mut tx = ring.producer().unwrap();
            assert_eq!(rx.recv_timeout(&mut buf, short), Err(RecvError::Timeout));
            tx.send(&stamp(1)).unwrap();
            tx.send(&stamp(2)).unwrap();
            assert!(tx.send_timeout(&stamp(3), short).unwrap_err().is_timeout());
            assert_eq!(tx.claim_timeout(short).map(drop), Err(ClaimError::Timeout));
            let n = rx.recv_timeout(&mut buf, short).unwrap();
            assert_eq!(unstamp(&buf[..n]), 1);
            assert_eq!(unstamp(&rx.read_timeout(short).unwrap()), 2);
            // A zero timeout is a non-blocking attempt.
            assert_eq!(
                rx.recv_timeout(&mut buf, Duration::ZERO),
                Err(RecvError::Timeout)
            );
        }
    });
}

#[test]
fn clean_disconnect_drains_then_reports() {
    with_watchdog(LIMIT, || {
        for kind in KINDS {
            let ring = ring(kind, 8);
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            for i in 0..5 {
                tx.send(&stamp(i)).unwrap();
            }
            drop(tx);
            let mut buf = [0u8; 16];
            for i in 0..5 {
                assert_eq!(recv_id(&mut rx), i);
            }
            assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
            assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected));
            // A new producer reconnects the ring.
            let mut tx = ring.producer().unwrap();
            assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
            // The consumer leaves: sends fill the ring, then report the disconnect.
            drop(rx);
            let mut sent = 0;
            while tx.try_send(&stamp(sent)).is_ok() {
                sent += 1;
            }
            assert_eq!(sent, 8, "messages for a later consumer still fit");
            assert!(tx.try_send(&stamp(9)).unwrap_err().is_disconnected());
            assert!(tx.send(&stamp(9)).unwrap_err().is_disconnected());
            assert_eq!(tx.try_claim().map(drop), Err(TryClaimError::Disconnected));
        }
    });
}

#[test]
fn blocked_consumer_sees_its_killed_producer() {
    with_watchdog(LIMIT, || {
        for kind in KINDS {
            let ring = ring(kind, 4);
            let child_ring = ring.clone();
            let child = spawn(move || {
                let mut tx = child_ring.producer().unwrap();
                for i in 0..3 {
                    if tx.send(&stamp(i)).is_err() {
                        return 1;
                    }
                }
                park_forever()
            });
            let mut rx = ring.consumer().unwrap();
            let mut buf = [0u8; 16];
            for i in 0..3 {
                assert_eq!(recv_id(&mut rx), i);
            }
            assert!(rx.is_peer_alive());
            // Kill it while we are blocked.
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                kill(child);
                reap(&[child], LIMIT)
            });
            assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected), "{kind}");
            assert_eq!(killer.join().unwrap(), [-libc::SIGKILL]);
            assert!(!rx.is_peer_alive());
        }
    });
}

#[test]
fn blocked_producer_sees_its_killed_consumer() {
    with_watchdog(LIMIT, || {
        for kind in KINDS {
            let ring = ring(kind, 2);
            let child_ring = ring.clone();
            let child = spawn(move || {
                let _rx = child_ring.consumer().unwrap();
                park_forever()
            });
            let mut tx = ring.producer().unwrap();
            assert!(common::wait_until(LIMIT, || ring
                .endpoints()
                .iter()
                .any(|e| e.pid == child as u32)));
            tx.send(&stamp(0)).unwrap();
            tx.send(&stamp(1)).unwrap();
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                kill(child);
                reap(&[child], LIMIT)
            });
            let last = stamp(2);
            let err = tx.send(&last).unwrap_err();
            assert!(err.is_disconnected(), "{kind}: {err}");
            assert_eq!(err.into_inner(), stamp(2));
            assert_eq!(killer.join().unwrap(), [-libc::SIGKILL]);
        }
    });
}

#[test]
fn blocking_across_threads_with_default_spinning() {
    with_watchdog(LIMIT, || {
        for kind in KINDS {
            let ring = Ring::builder()
                .kind(kind)
                .capacity(8)
                .slot_size(16)
                .heap()
                .create()
                .unwrap();
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            let producer = std::thread::spawn(move || {
                for i in 0..50_000 {
                    tx.send(&stamp(i)).unwrap();
                    if i % 10_000 == 0 {
                        // Long enough for the consumer to fall asleep.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            });
            let mut buf = [0u8; 16];
            for i in 0..50_000 {
                assert_eq!(recv_id(&mut rx), i);
            }
            assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected));
            producer.join().unwrap();
        }
    });
}
