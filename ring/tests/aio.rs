//! The async endpoints (feature `async`) across processes: the peer is this test binary,
//! re-executed, using the sync API (or the async one), on a ring it opens by name.
//!
//! - 1,000,000 messages from a sync producer process to an async consumer, every byte checked,
//!   on a current-thread and on a multi-thread runtime (SPSC and records), and the reverse
//!   (async producer, sync consumer process) on MPMC;
//! - futures dropped at random points (recv, read, send): nothing lost, nothing duplicated;
//! - a producer SIGKILLed while the consumer awaits: `Disconnected` (within the liveness bound);
//! - `tokio::select!` over two rings and a timer; `Stream` and `Sink`;
//! - a dropped, armed wait leaves no sleeper behind;
//! - the doorbell loop as documented: one wake-up per liveness interval, `Disconnected` once
//!   the producer is dead; a ring waited on is removed by its creator's last drop.
//!
//! Every test runs under a watchdog; no test asserts a duration.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Unique, in_child, with_watchdog};
use futures_util::{SinkExt, StreamExt};
use shmring::aio::{AsyncConsumer, AsyncProducer};
use shmring::{Kind, RecvError, Ring, WaitOptions};

const LIMIT: Duration = Duration::from_secs(240);
const PEER_ARG: &str = "SHMRING_AIO_PEER";

/// Liveness checks every 50 ms: a killed peer is noticed quickly.
fn quick() -> WaitOptions {
    WaitOptions::default().liveness_check(Duration::from_millis(50))
}

/// Message `i`: its number, then bytes that depend on it and on their position; 8 to 64 bytes.
fn make(i: u64, buf: &mut [u8; 64]) -> usize {
    let len = 8 + (i % 57) as usize;
    buf[..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in buf[8..len].iter_mut().enumerate() {
        *b = (i.wrapping_mul(31) as u8) ^ (k as u8).wrapping_mul(7);
    }
    len
}

/// Checks that `m` is message `want`, every byte.
fn check(m: &[u8], want: u64) {
    let mut expect = [0u8; 64];
    let len = make(want, &mut expect);
    assert_eq!(m.len(), len, "message {want}: length");
    let got = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(got, want, "gap, duplicate or reorder");
    assert_eq!(m, &expect[..len], "message {want}: torn");
}

/// Starts this test binary again as the peer of `test`, with `arg` (the ring's name and what
/// to do).
fn peer(test: &str, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SHMRING_TEST_CHILD", test)
        .env(PEER_ARG, arg)
        .spawn()
        .unwrap()
}

/// Waits for a peer, killing it past the deadline; returns whether it succeeded.
fn finish(mut child: Child) -> bool {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("watchdog: the peer still ran after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The peer's side: "NAME send N" (a sync producer), "NAME recv N" (a sync consumer),
/// "NAME park" (a producer that attaches and waits to be killed).
fn run_peer(arg: &str) {
    let mut words = arg.split(' ');
    let (name, what) = (words.next().unwrap(), words.next().unwrap());
    let n: u64 = words.next().map_or(0, |w| w.parse().unwrap());
    let ring = Ring::builder().posix(name).wait(quick()).open().unwrap();
    let mut buf = [0u8; 64];
    match what {
        "send" => {
            let mut tx = ring.producer().unwrap();
            for i in 0..n {
                let len = make(i, &mut buf);
                tx.send(&buf[..len]).unwrap();
            }
        }
        "recv" => {
            let mut rx = ring.consumer().unwrap();
            for i in 0..n {
                let got = rx.read().unwrap();
                check(&got, i);
            }
        }
        "park" => {
            let _tx = ring.producer().unwrap();
            std::thread::sleep(LIMIT);
        }
        other => panic!("unknown peer role {other}"),
    }
}

fn create(unique: &Unique, kind: Kind) -> Ring {
    let b = unique.builder().kind(kind).wait(quick());
    let b = if kind.is_records() {
        b.capacity(4096).max_message(64)
    } else {
        b.capacity(64).slot_size(64)
    };
    b.create().unwrap()
}

/// A sync producer process sends `n`; an async consumer receives them, alternating `recv`,
/// `read`, `recv_vec` and the `Stream`.
async fn consume_from_a_process(test: &'static str, kind: Kind, n: u64) {
    let unique = Unique::posix("aio");
    let ring = create(&unique, kind);
    let mut rx = AsyncConsumer::new(ring.consumer().unwrap()).unwrap();
    let child = peer(test, &format!("{} send {n}", unique.name()));
    let mut buf = [0u8; 64];
    let mut v = Vec::new();
    for i in 0..n {
        match i % 4 {
            0 => {
                let len = rx.recv(&mut buf).await.unwrap();
                check(&buf[..len], i);
            }
            1 => check(&rx.read().await.unwrap(), i),
            2 => {
                rx.recv_vec(&mut v).await.unwrap();
                check(&v, i);
            }
            _ => check(&rx.next().await.unwrap().unwrap(), i),
        }
    }
    // The producer leaves: the stream ends, the calls say `Disconnected`.
    assert!(rx.next().await.is_none());
    assert_eq!(rx.recv(&mut buf).await, Err(RecvError::Disconnected));
    assert!(finish(child), "the peer failed");
    assert_eq!(ring.status().sleepers, [0, 0], "no sleeper left behind");
}

#[test]
fn a_million_messages_from_a_sync_process_current_thread() {
    const T: &str = "a_million_messages_from_a_sync_process_current_thread";
    if in_child(T) {
        return run_peer(&std::env::var(PEER_ARG).unwrap());
    }
    with_watchdog(LIMIT, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(consume_from_a_process(T, Kind::Spsc, 1_000_000));
    });
}

#[test]
fn a_million_records_from_a_sync_process_multi_thread() {
    const T: &str = "a_million_records_from_a_sync_process_multi_thread";
    if in_child(T) {
        return run_peer(&std::env::var(PEER_ARG).unwrap());
    }
    with_watchdog(LIMIT, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(consume_from_a_process(T, Kind::Records, 1_000_000));
    });
}

/// The reverse: an async producer (`send`, `claim`, the `Sink`) and a sync consumer process,
/// on MPMC.
#[test]
fn an_async_producer_feeds_a_sync_process() {
    const T: &str = "an_async_producer_feeds_a_sync_process";
    if in_child(T) {
        return run_peer(&std::env::var(PEER_ARG).unwrap());
    }
    with_watchdog(LIMIT, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let n = 200_000u64;
                let unique = Unique::posix("aio-rev");
                let ring = create(&unique, Kind::Mpmc);
                let mut tx = AsyncProducer::new(ring.producer().unwrap()).unwrap();
                let child = peer(T, &format!("{} recv {n}", unique.name()));
                let mut buf = [0u8; 64];
                for i in 0..n {
                    let len = make(i, &mut buf);
                    match i % 3 {
                        0 => tx.send(&buf[..len]).await.unwrap(),
                        1 => {
                            let mut slot = tx.claim().await.unwrap();
                            slot[..len].copy_from_slice(&buf[..len]);
                            slot.commit(len).unwrap();
                        }
                        _ => SinkExt::send(&mut tx, buf[..len].to_vec()).await.unwrap(),
                    }
                }
                assert!(finish(child), "the peer failed");
            });
    });
}

/// Futures dropped at random points while a thread sends: every message arrives once, in
/// order; a send dropped while waiting for room publishes nothing.
#[test]
fn dropped_futures_lose_and_duplicate_nothing() {
    with_watchdog(LIMIT, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                for kind in [Kind::Spsc, Kind::Mpmc, Kind::Records] {
                    let unique = Unique::posix("aio-cancel");
                    let ring = create(&unique, kind);
                    let mut rx = AsyncConsumer::new(ring.consumer().unwrap()).unwrap();
                    let mut tx = ring.producer().unwrap();
                    let n = 20_000u64;
                    let sender = std::thread::spawn(move || {
                        let mut buf = [0u8; 64];
                        let mut rng = 0x1234_5678u64;
                        for i in 0..n {
                            let len = make(i, &mut buf);
                            tx.send(&buf[..len]).unwrap();
                            // Pauses longer than the longest wait below: some waits time out.
                            if common::xorshift(&mut rng).is_multiple_of(256) {
                                std::thread::sleep(Duration::from_millis(2));
                            }
                        }
                    });
                    let (mut next, mut cancelled) = (0u64, 0u32);
                    let mut rng = 0x9E37_79B9u64;
                    let mut buf = [0u8; 64];
                    while next < n {
                        // A deadline somewhere between "at once" and a few hundred µs.
                        let wait = Duration::from_micros(common::xorshift(&mut rng) % 400);
                        let got = if next % 2 == 0 {
                            tokio::time::timeout(wait, rx.recv(&mut buf))
                                .await
                                .map(|r| r.map(|len| buf[..len].to_vec()))
                        } else {
                            tokio::time::timeout(wait, rx.read())
                                .await
                                .map(|r| r.map(|m| m.to_vec()))
                        };
                        match got {
                            Ok(m) => {
                                check(&m.unwrap(), next);
                                next += 1;
                            }
                            Err(_) => cancelled += 1,
                        }
                    }
                    sender.join().unwrap();
                    assert!(
                        cancelled > 0,
                        "{kind}: no future was dropped: the test tests nothing"
                    );
                    assert_eq!(
                        ring.status().sleepers,
                        [0, 0],
                        "{kind}: a dropped wait left a sleeper"
                    );
                    // A send dropped while the ring is full publishes nothing.
                    let mut tx = AsyncProducer::new(ring.producer().unwrap()).unwrap();
                    while tx.get_mut().try_send(b"filler").is_ok() {}
                    let full =
                        tokio::time::timeout(Duration::from_millis(5), tx.send(b"never")).await;
                    assert!(full.is_err(), "{kind}: the send waited");
                    let mut plain = rx.into_inner();
                    let mut count = 0;
                    while let Ok(len) = plain.try_recv(&mut buf) {
                        assert_eq!(&buf[..len], b"filler", "{kind}: the dropped send published");
                        count += 1;
                    }
                    assert!(count > 0);
                    assert_eq!(ring.status().sleepers, [0, 0]);
                }
            });
    });
}

/// A producer process killed while the consumer awaits: `Disconnected`, not a hang.
#[test]
fn a_producer_killed_while_awaited_is_a_disconnect() {
    const T: &str = "a_producer_killed_while_awaited_is_a_disconnect";
    if in_child(T) {
        return run_peer(&std::env::var(PEER_ARG).unwrap());
    }
    with_watchdog(LIMIT, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                for kind in [Kind::Spsc, Kind::Mpmc, Kind::RecordsMpsc] {
                    let unique = Unique::posix("aio-kill");
                    let ring = create(&unique, kind);
                    let mut rx = AsyncConsumer::new(ring.consumer().unwrap()).unwrap();
                    let mut child = peer(T, &format!("{} park", unique.name()));
                    while !ring
                        .endpoints()
                        .iter()
                        .any(|e| e.role == Some(shmring::Role::Producer))
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let killer = std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(30));
                        child.kill().unwrap();
                        child.wait().unwrap();
                    });
                    let mut buf = [0u8; 64];
                    assert_eq!(
                        rx.recv(&mut buf).await,
                        Err(RecvError::Disconnected),
                        "{kind}"
                    );
                    killer.join().unwrap();
                }
            });
    });
}

/// One task waits on two rings and a timer with `tokio::select!`; two threads send.
#[test]
fn select_over_two_rings_and_a_timer() {
    with_watchdog(LIMIT, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let (ua, ub) = (Unique::posix("aio-sel"), Unique::posix("aio-sel"));
                let (a, b) = (create(&ua, Kind::Spsc), create(&ub, Kind::Records));
                let mut ra = AsyncConsumer::new(a.consumer().unwrap()).unwrap();
                let mut rb = AsyncConsumer::new(b.consumer().unwrap()).unwrap();
                let n = 5_000u64;
                let spawn = |ring: &Ring| {
                    let mut tx = ring.producer().unwrap();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64];
                        for i in 0..n {
                            let len = make(i, &mut buf);
                            tx.send(&buf[..len]).unwrap();
                        }
                    })
                };
                let (ta, tb) = (spawn(&a), spawn(&b));
                let (mut na, mut nb, mut ticks) = (0u64, 0u64, 0u32);
                let mut timer = tokio::time::interval(Duration::from_millis(1));
                let (mut ba, mut bb) = ([0u8; 64], [0u8; 64]);
                while na < n || nb < n {
                    tokio::select! {
                        r = ra.recv(&mut ba), if na < n => {
                            check(&ba[..r.unwrap()], na);
                            na += 1;
                        }
                        r = rb.recv(&mut bb), if nb < n => {
                            check(&bb[..r.unwrap()], nb);
                            nb += 1;
                        }
                        _ = timer.tick() => ticks += 1,
                    }
                }
                ta.join().unwrap();
                tb.join().unwrap();
                assert!(ticks > 0);
                assert_eq!(a.status().sleepers, [0, 0]);
                assert_eq!(b.status().sleepers, [0, 0]);
            });
    });
}

/// The `Sink` and the `Stream`, between two tasks of a multi-thread runtime.
#[test]
fn sink_into_stream() {
    with_watchdog(LIMIT, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let ring = Ring::builder()
                    .records_mpsc()
                    .capacity(1024)
                    .max_message(64)
                    .heap()
                    .wait(quick())
                    .create()
                    .unwrap();
                let mut tx = AsyncProducer::new(ring.producer().unwrap()).unwrap();
                let rx = AsyncConsumer::new(ring.consumer().unwrap()).unwrap();
                let sender = tokio::spawn(async move {
                    let mut msgs = futures_util::stream::iter((0..10_000u64).map(|i| {
                        let mut buf = [0u8; 64];
                        let len = make(i, &mut buf);
                        Ok(buf[..len].to_vec())
                    }));
                    tx.send_all(&mut msgs).await.unwrap();
                    drop(tx); // the stream ends once the ring is drained
                });
                let got: Vec<Vec<u8>> = rx.map(Result::unwrap).collect().await;
                sender.await.unwrap();
                assert_eq!(got.len(), 10_000);
                for (i, m) in got.iter().enumerate() {
                    check(m, i as u64);
                }
            });
    });
}

#[test]
fn without_a_runtime_it_says_so() {
    let ring = Ring::builder()
        .spsc()
        .capacity(4)
        .slot_size(8)
        .heap()
        .create()
        .unwrap();
    let err = AsyncConsumer::new(ring.consumer().unwrap()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

/// The doorbell loop exactly as `Doorbell`'s documentation writes it (try, arm, try again,
/// wait for the descriptor, disarm), with no `check_peers` of its own, until a call answers or
/// `stop` passes. Returns the answer (`Empty` at `stop`) and the wake-ups.
fn doorbell_loop(
    rx: &mut shmring::Consumer,
    stop: Instant,
) -> (Result<usize, shmring::TryRecvError>, u64) {
    use std::os::fd::AsRawFd;
    let mut bell = shmring::doorbell::Doorbell::new().unwrap();
    let mut buf = [0u8; 64];
    let mut wakes = 0;
    while Instant::now() < stop {
        match rx.try_recv(&mut buf) {
            Err(e) if e.would_block() => {}
            done => return (done, wakes),
        }
        bell.arm_consumer(rx).unwrap();
        match rx.try_recv(&mut buf) {
            Err(e) if e.would_block() => {}
            done => return (done, wakes),
        }
        let mut fds = [libc::pollfd {
            fd: bell.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 1_000) };
        wakes += 1;
        bell.disarm();
    }
    (Err(shmring::TryRecvError::Empty), wakes)
}

/// Before the fix a due liveness check was never run by this loop: after the first interval
/// every arm rang at once (tens of thousands of wake-ups a second, an idle loop at 60 % CPU),
/// and a killed producer was never reported.
#[test]
fn the_documented_doorbell_loop_rings_once_an_interval_and_sees_a_dead_producer() {
    const T: &str = "the_documented_doorbell_loop_rings_once_an_interval_and_sees_a_dead_producer";
    if in_child(T) {
        return run_peer(&std::env::var(PEER_ARG).unwrap());
    }
    with_watchdog(LIMIT, || {
        let unique = Unique::posix("aio-bell-loop");
        let ring = create(&unique, Kind::Spsc);
        let mut rx = ring.consumer().unwrap();
        let mut child = peer(T, &format!("{} park", unique.name()));
        while !ring
            .endpoints()
            .iter()
            .any(|e| e.role == Some(shmring::Role::Producer))
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Live and silent for 500 ms, 10 liveness intervals: a wake-up per interval (and a few
        // spurious ones), never one per arm.
        let (got, wakes) = doorbell_loop(&mut rx, Instant::now() + Duration::from_millis(500));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(got, Err(shmring::TryRecvError::Empty));
        assert!(
            wakes < 100,
            "{wakes} wake-ups in 10 intervals with nothing sent"
        );
        let (got, _) = doorbell_loop(&mut rx, Instant::now() + LIMIT);
        assert_eq!(got, Err(shmring::TryRecvError::Disconnected));
    });
}

/// Before the fix the doorbell's helper thread held the ring across its wait, so the creator's
/// last drop did not remove the POSIX object: the helper did, up to an interval later, or
/// nobody, if the process exited first.
#[test]
fn a_ring_waited_on_is_removed_when_its_creator_drops_it() {
    use std::os::fd::AsRawFd;
    with_watchdog(LIMIT, || {
        // The doorbell rang for the liveness deadline, then was disarmed.
        let unique = Unique::posix("aio-bell-unlink");
        let ring = create(&unique, Kind::Spsc);
        let (tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let mut bell = shmring::doorbell::Doorbell::new().unwrap();
        bell.arm_consumer(&mut rx).unwrap();
        let mut fds = [libc::pollfd {
            fd: bell.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 10_000) }, 1);
        bell.disarm();
        drop((bell, tx, rx, ring));
        assert!(!unique.path().exists(), "the ring outlived its last handle");

        // An async receive that timed out.
        let unique = Unique::posix("aio-timeout-unlink");
        let ring = create(&unique, Kind::Spsc);
        let tx = ring.producer().unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut rx = AsyncConsumer::new(ring.consumer().unwrap()).unwrap();
                let mut buf = [0u8; 64];
                assert_eq!(
                    rx.recv_timeout(&mut buf, Duration::from_millis(120)).await,
                    Err(RecvError::Timeout)
                );
            });
        drop((tx, ring));
        assert!(!unique.path().exists(), "the ring outlived its last handle");
    });
}
