//! Fault injection: processes killed (SIGKILL) or stopped (SIGSTOP) at the worst moments.
//!
//! - An MPMC producer killed between claim and commit: consumers wait while it might be alive,
//!   recover the slot once its death is proven, report the loss (`Abandoned`), and every other
//!   message arrives exactly once. Stopped instead of killed, it is never robbed.
//! - Producers killed at random points, hundreds of times: the consumer receives a gap-free
//!   prefix, nothing torn or duplicated, and never hangs.
//! - An SPSC consumer killed holding a receive guard: the next consumer gets that message.
//!
//! Children attach after `fork`, allocate nothing and leave with `_exit` (or are killed); the
//! parent reaps them with a deadline. Every test runs under a watchdog.

mod common;

use std::time::Duration;

use common::{Flags, kill, park_forever, reap, spawn, stamp, unstamp, wait_until, with_watchdog};
use shmring::{Kind, RecvError, Ring, TryRecvError, WaitOptions};

const LIMIT: Duration = Duration::from_secs(120);

/// Liveness checks every 5 ms: dead peers and stuck slots are noticed quickly.
fn quick() -> WaitOptions {
    WaitOptions::default()
        .spin(Duration::from_micros(20))
        .yield_for(Duration::ZERO)
        .liveness_check(Duration::from_millis(5))
}

fn ring(kind: Kind, capacity: u64) -> Ring {
    Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .slot_size(16)
        .anonymous()
        .wait(quick())
        .create()
        .unwrap()
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, sig) };
}

#[test]
fn mpmc_producer_killed_after_its_claim_is_recovered_once_proven_dead() {
    with_watchdog(LIMIT, || {
        let ring = ring(Kind::Mpmc, 8);
        let flags = Flags::new();
        // A claims slot 0 and stops there forever.
        let a = spawn(|| {
            let mut tx = ring.mpmc_producer().unwrap();
            let _slot = tx.try_claim().unwrap();
            flags.set(0, 1);
            park_forever()
        });
        assert!(wait_until(LIMIT, || flags.get(0) == 1));
        // B sends 100 messages behind it (and blocks while the ring is full).
        let b = spawn(|| {
            let mut tx = ring.mpmc_producer().unwrap();
            i32::from(!(0..100).all(|i| tx.send(&stamp(i)).is_ok()))
        });
        let mut rx = ring.mpmc_consumer().unwrap();
        let mut buf = [0u8; 16];
        // A is alive: its slot is waited for, not taken.
        assert_eq!(
            rx.recv_timeout(&mut buf, Duration::from_millis(200)),
            Err(RecvError::Timeout)
        );
        assert_eq!(ring.status().abandoned, 0);
        kill(a);
        assert_eq!(reap(&[a], LIMIT), [-libc::SIGKILL]);
        // Dead: the loss is reported once, then every other message in order.
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Abandoned { cursor: 0 }));
        for i in 0..100 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(unstamp(&buf[..n]), i);
        }
        assert_eq!(reap(&[b], LIMIT), [0]);
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected));
        assert_eq!(ring.status().abandoned, 1);
        assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
    });
}

#[test]
fn mpmc_producer_stopped_after_its_claim_is_never_robbed() {
    with_watchdog(LIMIT, || {
        let ring = ring(Kind::Mpmc, 8);
        let flags = Flags::new();
        let a = spawn(|| {
            let mut tx = ring.mpmc_producer().unwrap();
            let mut slot = tx.try_claim().unwrap();
            flags.set(0, 1);
            while flags.get(1) == 0 {
                // SAFETY: usleep has no memory preconditions.
                unsafe { libc::usleep(1000) };
            }
            slot[..16].copy_from_slice(&stamp(7));
            i32::from(slot.commit(16).is_err())
        });
        assert!(wait_until(LIMIT, || flags.get(0) == 1));
        signal(a, libc::SIGSTOP);
        flags.set(1, 1); // it would commit now, but it is stopped
        let mut rx = ring.mpmc_consumer().unwrap();
        let mut buf = [0u8; 16];
        // Many liveness intervals pass; a stopped process is alive: nothing is recovered.
        assert_eq!(
            rx.recv_timeout(&mut buf, Duration::from_millis(300)),
            Err(RecvError::Timeout)
        );
        assert_eq!(ring.status().abandoned, 0);
        signal(a, libc::SIGCONT);
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(unstamp(&buf[..n]), 7, "the claimer's own message, intact");
        assert_eq!(reap(&[a], LIMIT), [0]);
        assert_eq!(ring.status().abandoned, 0);
    });
}

/// Kills a producer at a random point, `iterations` times; each time the consumer must get a
/// gap-free prefix 0, 1, 2, … (MPMC: then at most one `Abandoned`, for the next cursor), and
/// then `Disconnected`, never a hang. Returns how many messages crossed in all, and how many
/// kills left a claim in flight (recovered as `Abandoned`).
fn random_kills(kind: Kind, iterations: u32) -> (u64, u32) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let (mut total, mut recovered) = (0, 0);
    for _ in 0..iterations {
        let ring = ring(kind, 16);
        // MPMC child: [0] = claims about to be taken, [2] = claims taken (so whether a kill
        // landed inside a claim is known, up to the instants between those writes and the
        // claim itself).
        let flags = Flags::new();
        let child = spawn(|| {
            let mut i = 0u64;
            match ring.kind() {
                Kind::Spsc => {
                    let mut tx = ring.spsc_producer().unwrap();
                    while tx.send(&stamp(i)).is_ok() {
                        i += 1;
                    }
                }
                _ => {
                    // Zero-copy, dawdling between claim and commit so that many kills land
                    // inside a claim.
                    let mut tx = ring.mpmc_producer().unwrap();
                    loop {
                        flags.set(0, i + 1);
                        let Ok(mut slot) = tx.claim() else { break };
                        flags.set(2, i + 1);
                        slot[..16].copy_from_slice(&stamp(i));
                        let t = std::time::Instant::now();
                        while t.elapsed() < Duration::from_micros(3) {
                            core::hint::spin_loop();
                        }
                        if slot.commit(16).is_err() {
                            break;
                        }
                        i += 1;
                    }
                }
            }
            1
        });
        let mut rx = ring.consumer().unwrap();
        let mut buf = [0u8; 16];
        // A producer that never attached is "not arrived yet", not gone: wait for it to attach.
        assert!(wait_until(LIMIT, || ring
            .endpoints()
            .iter()
            .any(|e| e.role == Some(shmring::Role::Producer))));
        // Kill it at a random moment while it is sending and we are receiving, so the kill
        // lands anywhere: mid-copy, between claim and commit, asleep on a full ring.
        let delay = Duration::from_micros(common::xorshift(&mut rng) % 2000);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            kill(child);
            reap(&[child], LIMIT)
        });
        let mut expect = 0u64;
        let mut abandoned = false;
        loop {
            match rx.recv(&mut buf) {
                Ok(n) => {
                    assert!(!abandoned, "a message after the abandoned one");
                    assert_eq!(unstamp(&buf[..n]), expect, "gap or duplicate");
                    expect += 1;
                }
                Err(RecvError::Abandoned { cursor }) => {
                    assert_eq!(kind, Kind::Mpmc);
                    assert_eq!(cursor, expect, "the lost message is the next one");
                    assert!(!abandoned, "one claim in flight at most");
                    abandoned = true;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(killer.join().unwrap(), [-libc::SIGKILL]);
        if kind == Kind::Mpmc {
            // Killed inside a claim ⇔ the loss was reported: never silent, never invented.
            if flags.get(2) > expect {
                assert!(
                    abandoned,
                    "claim {} was in flight: its loss must be reported",
                    expect
                );
            }
            if flags.get(0) <= expect {
                assert!(
                    !abandoned,
                    "no claim was in flight, yet a loss was reported"
                );
            }
        }
        total += expect;
        recovered += u32::from(abandoned);
    }
    eprintln!("{kind}: {iterations} kills, {total} messages, {recovered} claims recovered");
    (total, recovered)
}

#[test]
fn spsc_producer_killed_at_random_points_two_hundred_times() {
    let (total, _) = with_watchdog(LIMIT, || random_kills(Kind::Spsc, 200));
    assert!(total > 0);
}

#[test]
fn mpmc_producer_killed_at_random_points_a_hundred_times() {
    let (total, _) = with_watchdog(LIMIT, || random_kills(Kind::Mpmc, 100));
    assert!(total > 0);
}

#[test]
fn spsc_consumer_killed_holding_a_receive_guard() {
    with_watchdog(LIMIT, || {
        let ring = ring(Kind::Spsc, 8);
        let flags = Flags::new();
        let mut tx = ring.spsc_producer().unwrap();
        for i in 0..3 {
            tx.send(&stamp(i)).unwrap();
        }
        let child = spawn(|| {
            let mut rx = ring.spsc_consumer().unwrap();
            let guard = rx.try_read().unwrap();
            flags.set(0, if *guard == stamp(0) { 1 } else { 2 });
            park_forever()
        });
        assert!(wait_until(LIMIT, || flags.get(0) != 0));
        assert_eq!(flags.get(0), 1, "the child read message 0");
        kill(child);
        assert_eq!(reap(&[child], LIMIT), [-libc::SIGKILL]);
        // The dead consumer's entry is taken over; its unreleased message is delivered again,
        // to the next consumer, once: nothing lost, nothing twice after it.
        let mut rx = ring.spsc_consumer().unwrap();
        let mut buf = [0u8; 16];
        for i in 0..3 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(unstamp(&buf[..n]), i);
        }
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    });
}

#[test]
fn mpmc_consumer_killed_holding_a_read_guard_does_not_stall_the_producers() {
    with_watchdog(LIMIT, || {
        let ring = ring(Kind::Mpmc, 4);
        let flags = Flags::new();
        let mut tx = ring.mpmc_producer().unwrap();
        tx.send(&stamp(0)).unwrap();
        // A takes message 0 in place and stops there forever.
        let a = spawn(|| {
            let mut rx = ring.mpmc_consumer().unwrap();
            let slot = rx.try_read().unwrap();
            flags.set(0, unstamp(&slot) + 1);
            park_forever()
        });
        assert!(wait_until(LIMIT, || flags.get(0) == 1));
        // B receives everything else.
        let b = spawn(|| {
            let mut rx = ring.mpmc_consumer().unwrap();
            let mut buf = [0u8; 16];
            let all = (1..100).all(|i| rx.recv(&mut buf).is_ok_and(|n| unstamp(&buf[..n]) == i));
            i32::from(!all)
        });
        // While A lives, the slot it holds is not taken back: a lap later the ring is full.
        for i in 1..4 {
            tx.send(&stamp(i)).unwrap();
        }
        assert!(matches!(
            tx.send_timeout(&stamp(4), Duration::from_millis(200)),
            Err(shmring::SendError::Timeout(_))
        ));
        assert_eq!(ring.status().reclaimed, 0);
        kill(a);
        assert_eq!(reap(&[a], LIMIT), [-libc::SIGKILL]);
        // Dead: its slot is released (its message counts as delivered), and the rest flows.
        for i in 4..100 {
            tx.send(&stamp(i)).unwrap();
        }
        assert_eq!(reap(&[b], LIMIT), [0]);
        assert_eq!(ring.status().reclaimed, 1);
        assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
    });
}

#[test]
fn creator_killed_before_its_ready_word_leaves_a_segment_gc_removes() {
    with_watchdog(LIMIT, || {
        let unique = common::Unique::posix("unready");
        let builder = unique.builder().spsc().capacity(8).slot_size(16);
        let creator = spawn(|| {
            fn park() {
                park_forever()
            }
            shmring::hooks::set_before_ready(Some(park));
            let _ = builder.create();
            1
        });
        // The header is written up to the ready word: openers wait, naming a live creator.
        assert!(wait_until(LIMIT, || matches!(
            builder.clone().init_timeout(Duration::ZERO).open(),
            Err(shmring::OpenError::NotInitialized {
                creator_alive: true,
                ..
            })
        )));
        kill(creator);
        assert_eq!(reap(&[creator], LIMIT), [-libc::SIGKILL]);
        let opened = builder
            .clone()
            .init_timeout(Duration::from_millis(50))
            .open();
        assert!(
            matches!(
                opened,
                Err(shmring::OpenError::NotInitialized { creator_pid: Some(p), creator_alive: false, .. })
                    if p == creator as u32
            ),
            "{opened:?}"
        );
        let verdicts = shmring::admin::gc_matching(true, |b| *b == unique.backing);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        assert!(verdicts[0].stale.is_some());
        assert_eq!(verdicts[0].removed, Some(Ok(())));
        assert!(!unique.path().exists());
    });
}

/// A consumer killed while asleep in `recv` leaves its count in the `sleepers` word, and every
/// send after it made a `FUTEX_WAKE` system call for nobody, for ever. Its registry entry says
/// it was asleep: the next liveness check of any endpoint takes the count back.
#[test]
fn a_sleeper_killed_asleep_is_counted_out_at_the_next_liveness_check() {
    with_watchdog(LIMIT, || {
        let ring = Ring::builder()
            .spsc()
            .capacity(8)
            .slot_size(16)
            .anonymous()
            .wait(
                WaitOptions::default()
                    .spin(Duration::ZERO)
                    .yield_for(Duration::ZERO)
                    .liveness_check(Duration::from_secs(3600)),
            )
            .create()
            .unwrap();
        let mut tx = ring.spsc_producer().unwrap();
        let sleeper = spawn(|| {
            let mut rx = ring.spsc_consumer().unwrap();
            let mut buf = [0u8; 16];
            let _ = rx.recv(&mut buf); // sleeps: nothing is ever sent before the kill
            0
        });
        assert!(wait_until(LIMIT, || ring.status().sleepers[0] == 1));
        kill(sleeper);
        assert_eq!(reap(&[sleeper], LIMIT), [-libc::SIGKILL]);
        assert_eq!(
            ring.status().sleepers[0],
            1,
            "the dead sleeper's count is left behind"
        );
        tx.check_peers();
        assert_eq!(
            ring.status().sleepers[0],
            0,
            "taken back by the liveness check"
        );
        // And a consumer taking the dead one's place starts from a clean count.
        let mut rx = ring.spsc_consumer().unwrap();
        tx.try_send(&stamp(1)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rx.try_recv(&mut buf), Ok(16));
        assert_eq!(ring.status().sleepers, [0, 0]);
    });
}
