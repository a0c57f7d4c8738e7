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
    model_bounded(2, f);
}

/// [`model`] with another default preemption bound (LOOM_MAX_PREEMPTIONS still overrides).
fn model_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    // LOOM_MAX_PREEMPTIONS overrides; 2 keeps the 4-thread model within CI's budget while still
    // covering every interleaving with two preemptions (the bound used by tokio's CI).
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(preemptions);
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
                    Err(
                        TryRecvError::Empty | TryRecvError::Pending | TryRecvError::Disconnected,
                    ) => thread::yield_now(),
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
                    Err(TryRecvError::Empty | TryRecvError::Pending) => thread::yield_now(),
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
            Err(TryRecvError::Empty | TryRecvError::Pending) => false,
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

use shmring::__loom::Step;

/// An SPSC producer dies after publishing a batch (its slots' sequence words) and before
/// storing `head`: the crash that left `head` behind `tail` once the consumer drained, which
/// every later attach then refused as corrupt. A successor attaches (in every interleaving:
/// before, during or after the consumer drains the dead producer's messages) and sends one
/// more; the consumer receives the dead producer's two messages and then the successor's, each
/// once, in order.
#[test]
fn spsc_producer_killed_before_storing_head() {
    model(|| {
        shmring::__loom::record_claims();
        let ring = Ring::builder()
            .spsc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let mut victim = ring.spsc_producer().unwrap();
        let mut rx = ring.spsc_consumer().unwrap();
        let again = ring.clone();
        let v = thread::spawn(move || {
            let died = killable(Step::BeforeHead, || {
                assert_eq!(victim.try_send_batch(&[msg(1, 0), msg(1, 1)]).unwrap(), 2);
            });
            assert!(died, "the victim must die before storing head");
            victim.die();
            // The successor is another process, arriving after the death.
            thread::spawn(move || {
                let mut next = again.spsc_producer().expect("a successor attaches");
                while next.try_send(&msg(2, 0)).is_err() {
                    thread::yield_now();
                }
            })
        });
        let mut buf = [0u8; 4];
        for want in [(1, 0), (1, 1), (2, 0)] {
            loop {
                match rx.try_recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(check(&buf[..n]), want);
                        break;
                    }
                    // Between the death and the successor, no producer is attached.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        v.join().unwrap().join().unwrap();
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    });
}

/// Where a model's victim "process" dies (`shmring::__loom`): the first time it reaches a step
/// boundary inside one call, or holding a claim guard.
#[derive(Clone, Copy, Debug)]
enum Death {
    At(Step),
    HoldingGuard,
}

/// Runs `f` as a process that is killed when it reaches `step`: returns whether it died.
fn killable(step: Step, f: impl FnOnce()) -> bool {
    shmring::__loom::crash_at(step);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(()) => false,
        Err(payload) if payload.is::<shmring::__loom::Died>() => true,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// An MPMC producer dies at every step of a send (before its claim CAS, between the length and
/// the sequence word, right after publishing, its record still naming the slot) and holding an
/// uncommitted claim, while a live producer sends one message and leaves. The consumer polls,
/// checking its peers, until disconnected. Whatever the interleaving: the live producer's
/// message arrives exactly once; the victim's message arrives once if it was published, and
/// otherwise is reported `Abandoned` exactly once if the victim had claimed its slot, and
/// nothing is reported if it had not; a live victim is never robbed (it is declared dead only
/// after it stops); the counter agrees.
fn mpmc_dead_producer(death: Death) {
    model(move || {
        shmring::__loom::record_claims();
        let ring = Ring::builder()
            .mpmc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let mut victim = ring.mpmc_producer().unwrap();
        let mut live = ring.mpmc_producer().unwrap();
        let mut rx = ring.mpmc_consumer().unwrap();
        let v = thread::spawn(move || {
            let died = match death {
                Death::At(step) => killable(step, || victim.try_send(&msg(1, 0)).unwrap()),
                Death::HoldingGuard => {
                    let mut slot = victim.try_claim().unwrap();
                    slot.copy_from_slice(&msg(1, 0));
                    shmring::__loom::die_here();
                    drop(slot);
                    true
                }
            };
            assert!(died, "the victim must die where told");
            victim.die();
        });
        let l = thread::spawn(move || live.try_send(&msg(2, 0)).unwrap());
        let mut buf = [0u8; 4];
        let (mut got, mut abandoned) = ([0u32; 3], 0);
        loop {
            match rx.try_recv(&mut buf) {
                Ok(n) => got[check(&buf[..n]).0 as usize] += 1,
                Err(TryRecvError::Abandoned { .. }) => abandoned += 1,
                Err(TryRecvError::Empty | TryRecvError::Pending) => {
                    rx.check_peers();
                    thread::yield_now();
                }
                Err(TryRecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        v.join().unwrap();
        l.join().unwrap();
        assert_eq!(got[2], 1, "the live producer's message");
        let (victim_msgs, lost) = match death {
            Death::At(Step::ClaimRecorded) => (0, 0), // died before claiming
            Death::At(Step::Published) => (1, 0),
            _ => (0, 1), // died holding its claim
        };
        assert_eq!(
            (got[1], abandoned),
            (victim_msgs, lost),
            "victim died {death:?}"
        );
        assert_eq!(ring.status().abandoned, lost as u64);
    });
}

#[test]
fn mpmc_producer_killed_before_its_claim() {
    mpmc_dead_producer(Death::At(Step::ClaimRecorded));
}

#[test]
fn mpmc_producer_killed_holding_a_claim() {
    mpmc_dead_producer(Death::HoldingGuard);
}

#[test]
fn mpmc_producer_killed_mid_publish() {
    mpmc_dead_producer(Death::At(Step::LengthWritten));
}

#[test]
fn mpmc_producer_killed_right_after_publishing() {
    mpmc_dead_producer(Death::At(Step::Published));
}

/// An MPMC consumer dies at every step of a receive (before its claim CAS, right after
/// releasing, its record still naming the slot) and holding a read guard, while a producer sends three messages
/// into two slots (so the third needs the first slot back) and a live consumer receives. The
/// producer polls, checking its peers, until all three are in. Whatever the interleaving: the
/// producer never stalls for good (a slot a dead consumer held is reclaimed, once), every
/// message is received exactly once by one of the two consumers, and the counter agrees.
///
/// Three spinning threads, each re-reading the registry on every poll, make this model's tree
/// far larger than the producer's: it runs with one preemption (two took over ten minutes).
fn mpmc_dead_consumer(death: Death) {
    model_bounded(1, move || {
        shmring::__loom::record_claims();
        let ring = Ring::builder()
            .mpmc()
            .capacity(2)
            .slot_size(4)
            .heap()
            .create()
            .unwrap();
        let mut tx = ring.mpmc_producer().unwrap();
        let mut victim = ring.mpmc_consumer().unwrap();
        let mut live = ring.mpmc_consumer().unwrap();
        // What the victim took before dying (test bookkeeping, as a parent would know it):
        // 0 (nothing) or 1 + the message's number; usize::MAX while it lives.
        let taken = Arc::new(AtomicUsize::new(usize::MAX));
        let p = thread::spawn(move || {
            for i in 0..3 {
                loop {
                    match tx.try_send(&msg(0, i)) {
                        Ok(()) => break,
                        Err(e) if e.would_block() => {
                            tx.check_peers();
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let t = taken.clone();
        // The victim makes one attempt, at a point loom chooses: it may find nothing, or take a
        // message and die at the chosen step.
        let v = thread::spawn(move || {
            let mut buf = [0u8; 4];
            let got = match death {
                Death::At(step) => {
                    let mut got = None;
                    let died = killable(step, || {
                        got = victim.try_recv(&mut buf).ok().map(|n| check(&buf[..n]).1);
                    });
                    // Death before the claim CAS takes nothing; after the release, the message
                    // was read in full (`got` stays unset: the call never returned).
                    match (died, got) {
                        (true, _) if step == Step::ClaimRecorded => 0,
                        (true, _) => 1 + usize::from(buf[1]),
                        (false, got) => got.map_or(0, |i| 1 + usize::from(i)),
                    }
                }
                Death::HoldingGuard => match victim.try_read() {
                    Ok(slot) => {
                        let i = check(&slot).1;
                        shmring::__loom::die_here();
                        drop(slot);
                        1 + usize::from(i)
                    }
                    Err(_) => 0,
                },
            };
            victim.die();
            t.store(got, Ordering::SeqCst);
        });
        let mut buf = [0u8; 4];
        let (mut received, mut copies) = (0, [0u32; 3]);
        loop {
            match live.try_recv(&mut buf) {
                Ok(n) => {
                    copies[check(&buf[..n]).1 as usize] += 1;
                    received += 1;
                }
                // Disconnected once the producer has sent all three and left.
                Err(TryRecvError::Empty | TryRecvError::Pending | TryRecvError::Disconnected) => {
                    let victim_took = taken.load(Ordering::SeqCst);
                    if victim_took != usize::MAX && received + usize::from(victim_took > 0) == 3 {
                        break;
                    }
                    thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        p.join().unwrap();
        v.join().unwrap();
        let victim_took = taken.load(Ordering::SeqCst);
        if victim_took > 0 {
            copies[victim_took - 1] += 1;
        }
        assert_eq!(copies, [1; 3], "each message once, victim died {death:?}");
        // Reclaimed: exactly when the victim died holding a message whose slot the producer
        // needed again (the first: the third message reuses its slot).
        let held = matches!(death, Death::HoldingGuard) && taken.load(Ordering::SeqCst) == 1;
        assert_eq!(
            ring.status().reclaimed,
            u64::from(held),
            "victim died {death:?}"
        );
    });
}

#[test]
fn mpmc_consumer_killed_before_its_claim() {
    mpmc_dead_consumer(Death::At(Step::ClaimRecorded));
}

#[test]
fn mpmc_consumer_killed_holding_a_read_guard() {
    mpmc_dead_consumer(Death::HoldingGuard);
}

#[test]
fn mpmc_consumer_killed_right_after_releasing() {
    mpmc_dead_consumer(Death::At(Step::Released));
}

// ----- Record rings -----

/// A record of `len` bytes from `producer`, number `seq`: torn if any byte disagrees.
fn rec(producer: u8, seq: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| producer.wrapping_mul(31) ^ seq.wrapping_mul(7) ^ i as u8)
        .collect()
}

/// Checks a record made by [`rec`] whose producer and number are known to be one of the
/// given ones; returns which.
fn check_rec(m: &[u8], want: &[(u8, u8, usize)]) -> (u8, u8) {
    for &(p, s, len) in want {
        if m == rec(p, s, len).as_slice() {
            return (p, s);
        }
    }
    panic!("a torn or unexpected record: {m:?}");
}

fn records_ring(kind: shmring::Kind, capacity: u64, max: usize) -> Ring {
    Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .max_message(max)
        .heap()
        .create()
        .unwrap()
}

/// One producer, 64 bytes of data: a record, an aborted claim, a record that fills the end of
/// the data area exactly, one at the start of the next lap, and one that does not fit before
/// the end (padding, then the next lap). The consumer receives the four messages whole, once,
/// in order, whatever the interleaving: the padding and the abort are never read, and no
/// zeroing of a released record races with the producer's next write there.
#[test]
fn records_wrap_with_padding_aborts_and_an_exact_fill() {
    model(|| {
        let ring = records_ring(shmring::Kind::Records, 64, 32);
        let mut tx = ring.records_producer().unwrap();
        let mut rx = ring.records_consumer().unwrap();
        // Bytes: 16 @0, the abort's 16 @16, 32 @32 (ends at 64 exactly), 16 @64, 32 @80; then
        // 24 do not fit in the 16 left at 112: padding, and the record at 128.
        let plan: [(u8, usize); 4] = [(0, 4), (1, 20), (2, 4), (3, 20)];
        let producer = thread::spawn(move || {
            for (i, &(seq, len)) in plan.iter().enumerate() {
                if i == 1 {
                    drop(tx.try_claim(4).unwrap()); // aborted: padding
                }
                loop {
                    match tx.try_send(&rec(0, seq, len)) {
                        Ok(()) => break,
                        Err(e) if e.would_block() => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            loop {
                match tx.try_send(&rec(0, 4, 12)) {
                    Ok(()) => break,
                    Err(e) if e.would_block() => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut buf = Vec::new();
        let want = [(0, 0, 4), (0, 1, 20), (0, 2, 4), (0, 3, 20), (0, 4, 12)];
        for &(_, s, _) in &want {
            loop {
                match rx.try_recv_vec(&mut buf) {
                    Ok(_) => {
                        assert_eq!(check_rec(&buf, &want), (0, s));
                        break;
                    }
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.try_recv_vec(&mut buf), Err(TryRecvError::Disconnected));
    });
}

/// Two producers reserve by compare-and-swap in 64 bytes of data, one with a zero-copy claim it
/// aborts first, so a third reservation wraps to the next lap over bytes the consumer has just
/// released and zeroed, while the consumer reads in batches. As in the MPMC models, each
/// producer tries each send twice (a send that finds the ring full twice is given up) and the
/// consumer polls twice before the threads are joined and the ring drained: every message sent
/// arrives whole, exactly once, each producer's in order; the aborted claim is never read.
#[test]
fn records_two_producers_one_consumer() {
    model(|| {
        // Reservations of 32 bytes each: the third needs the first released.
        let ring = records_ring(shmring::Kind::RecordsMpsc, 64, 24);
        let mut a = ring.records_producer().unwrap();
        let mut b = ring.records_producer().unwrap();
        let mut rx = ring.records_consumer().unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let (sa, sb) = (Arc::clone(&sent), Arc::clone(&sent));
        let pa = thread::spawn(move || {
            for _ in 0..2 {
                if a.try_send(&rec(1, 0, 20)).is_ok() {
                    sa.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                thread::yield_now();
            }
        });
        let pb = thread::spawn(move || {
            drop(b.try_claim(24)); // aborted (or the ring was full): nothing sent
            for _ in 0..2 {
                if let Ok(mut r) = b.try_claim(17) {
                    r.copy_from_slice(&rec(2, 0, 17));
                    r.commit().unwrap();
                    sb.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                thread::yield_now();
            }
        });
        let want = [(1, 0, 20), (2, 0, 17)];
        let mut seen = [0usize; 3];
        let mut poll = |rx: &mut shmring::records::Consumer| match rx
            .try_recv_batch(2, |m| seen[check_rec(m, &want).0 as usize] += 1)
        {
            Ok(_) | Err(TryRecvError::Disconnected) => {}
            Err(e) => panic!("{e}"),
        };
        for _ in 0..2 {
            poll(&mut rx);
            thread::yield_now();
        }
        pa.join().unwrap();
        pb.join().unwrap();
        for _ in 0..3 {
            poll(&mut rx);
        }
        assert_eq!(
            rx.try_recv_batch(2, |_| {}),
            Err(TryRecvError::Disconnected)
        );
        assert!(seen[1] <= 1 && seen[2] <= 1, "duplicate: {seen:?}");
        assert_eq!(
            seen[1] + seen[2],
            sent.load(Ordering::Relaxed),
            "lost: {seen:?}"
        );
    });
}

#[test]
fn records_blocking_never_loses_a_wake_up() {
    model(|| {
        // 32 bytes: the second record (24 bytes) must wait for the first to be released, and
        // pads the end first, which the consumer must step over before the producer can go on.
        let ring = Ring::builder()
            .records()
            .capacity(64)
            .max_message(40)
            .heap()
            .wait(sleeper())
            .create()
            .unwrap();
        let mut tx = ring.records_producer().unwrap();
        let mut rx = ring.records_consumer().unwrap();
        let producer = thread::spawn(move || {
            tx.send(&rec(0, 0, 36)).unwrap(); // 48 bytes
            tx.send(&rec(0, 1, 20)).unwrap(); // 32: pads 16, then waits for room at 0
        });
        let mut buf = Vec::new();
        for (s, len) in [(0, 36), (1, 20)] {
            rx.recv_vec(&mut buf).unwrap();
            assert_eq!(check_rec(&buf, &[(0, s, len)]), (0, s));
        }
        producer.join().unwrap();
    });
}

/// A record-ring producer (many producers) dies at each step of a send — before its
/// compare-and-swap, between it and its RESERVED header (the header says nothing: the
/// recovery must tell its size from the claim records), after the header, holding a claim
/// guard, right after committing — while a live producer sends one record and leaves. The
/// consumer polls, checking its peers, until disconnected. Whatever the interleaving: the live
/// record arrives once; the victim's arrives once if committed, is reported `Abandoned` once if
/// reserved, and nothing is reported if it never reserved; a live victim is never robbed; the
/// counter agrees.
fn records_dead_producer(death: Death) {
    model(move || {
        shmring::__loom::record_claims();
        let ring = records_ring(shmring::Kind::RecordsMpsc, 64, 16);
        let mut victim = ring.records_producer().unwrap();
        let mut live = ring.records_producer().unwrap();
        let mut rx = ring.records_consumer().unwrap();
        let v = thread::spawn(move || {
            let died = match death {
                Death::At(step) => killable(step, || victim.try_send(&rec(1, 0, 4)).unwrap()),
                Death::HoldingGuard => {
                    let mut r = victim.try_claim(4).unwrap();
                    r.copy_from_slice(&rec(1, 0, 4));
                    shmring::__loom::die_here();
                    drop(r);
                    true
                }
            };
            assert!(died, "the victim must die where told");
            victim.die();
        });
        // A different size from the victim's, so a wrong guess at the victim's is visible.
        let l = thread::spawn(move || live.try_send(&rec(2, 0, 12)).unwrap());
        let want = [(1, 0, 4), (2, 0, 12)];
        let mut buf = Vec::new();
        let (mut got, mut abandoned) = ([0u32; 3], 0);
        loop {
            match rx.try_recv_vec(&mut buf) {
                Ok(_) => got[check_rec(&buf, &want).0 as usize] += 1,
                Err(TryRecvError::Abandoned { .. }) => abandoned += 1,
                Err(TryRecvError::Empty | TryRecvError::Pending) => {
                    rx.check_peers();
                    thread::yield_now();
                }
                Err(TryRecvError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        v.join().unwrap();
        l.join().unwrap();
        assert_eq!(got[2], 1, "the live producer's record");
        let (victim_msgs, lost) = match death {
            Death::At(Step::ClaimRecorded) => (0, 0),
            Death::At(Step::Published) => (1, 0),
            _ => (0, 1),
        };
        assert_eq!(
            (got[1], abandoned),
            (victim_msgs, lost),
            "victim died {death:?}"
        );
        assert_eq!(ring.status().abandoned, lost as u64);
    });
}

#[test]
fn records_producer_killed_before_its_reservation() {
    records_dead_producer(Death::At(Step::ClaimRecorded));
}

#[test]
fn records_producer_killed_before_announcing_its_reservation() {
    records_dead_producer(Death::At(Step::Reserved));
}

#[test]
fn records_producer_killed_after_announcing_its_reservation() {
    records_dead_producer(Death::At(Step::Announced));
}

#[test]
fn records_producer_killed_holding_a_claim() {
    records_dead_producer(Death::HoldingGuard);
}

#[test]
fn records_producer_killed_right_after_committing() {
    records_dead_producer(Death::At(Step::Published));
}

/// One producer dies holding a claim it half wrote (or right after committing); a successor
/// attaches (before, during or after the consumer's reads), erases what the dead one left and
/// sends. The consumer receives the committed records and the successor's, whole, once, in
/// order, and never a byte of the uncommitted one.
fn records_dead_single_producer(death: Death) {
    model(move || {
        shmring::__loom::record_claims();
        let ring = records_ring(shmring::Kind::Records, 64, 24);
        let mut victim = ring.records_producer().unwrap();
        let mut rx = ring.records_consumer().unwrap();
        let again = ring.clone();
        let v = thread::spawn(move || {
            let died = match death {
                Death::At(step) => killable(step, || victim.try_send(&rec(1, 0, 20)).unwrap()),
                Death::HoldingGuard => {
                    let mut r = victim.try_claim(20).unwrap();
                    r.copy_from_slice(&rec(1, 0, 20));
                    shmring::__loom::die_here();
                    drop(r);
                    true
                }
            };
            assert!(died);
            victim.die();
            thread::spawn(move || {
                let mut next = again.records_producer().expect("a successor attaches");
                while next.try_send(&rec(2, 0, 4)).is_err() {
                    thread::yield_now();
                }
            })
        });
        let committed = matches!(death, Death::At(Step::Published));
        let want: Vec<(u8, u8, usize)> = if committed {
            vec![(1, 0, 20), (2, 0, 4)]
        } else {
            vec![(2, 0, 4)]
        };
        let mut buf = Vec::new();
        for &(p, s, _) in &want {
            loop {
                match rx.try_recv_vec(&mut buf) {
                    Ok(_) => {
                        assert_eq!(check_rec(&buf, &want), (p, s));
                        break;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        v.join().unwrap().join().unwrap();
        assert_eq!(rx.try_recv_vec(&mut buf), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn records_single_producer_killed_holding_a_claim() {
    records_dead_single_producer(Death::HoldingGuard);
}

#[test]
fn records_single_producer_killed_right_after_committing() {
    records_dead_single_producer(Death::At(Step::Published));
}

/// The consumer of a many-producer ring (which zeroes what it consumed) dies after marking a
/// record consumed and before zeroing it; its successor finishes the release (counted as
/// reclaimed: the message went to the dead consumer) and receives the next record whole.
#[test]
fn records_consumer_killed_while_releasing() {
    model(|| {
        shmring::__loom::record_claims();
        let ring = records_ring(shmring::Kind::RecordsMpsc, 64, 24);
        let mut tx = ring.records_producer().unwrap();
        let mut victim = ring.records_consumer().unwrap();
        let again = ring.clone();
        let p = thread::spawn(move || {
            for s in 0..2 {
                while tx.try_send(&rec(0, s, 20)).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut buf = Vec::new();
        let died = killable(Step::Consumed, || {
            loop {
                match victim.try_recv_vec(&mut buf) {
                    Ok(_) => panic!("the victim must die releasing"),
                    Err(TryRecvError::Empty | TryRecvError::Pending) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        assert!(died);
        assert_eq!(
            check_rec(&buf, &[(0, 0, 20)]),
            (0, 0),
            "read whole before dying"
        );
        victim.die();
        let mut rx = again.records_consumer().expect("a successor attaches");
        loop {
            match rx.try_recv_vec(&mut buf) {
                Ok(_) => break,
                Err(TryRecvError::Empty | TryRecvError::Pending) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(check_rec(&buf, &[(0, 1, 20)]), (0, 1));
        p.join().unwrap();
        assert_eq!(ring.status().reclaimed, 1);
    });
}

/// The async doorbell's protocol: when a receive would block, the consumer arms (counts in as
/// a sleeper, heavy barrier), polls once more, and only then hands the wait to the helper
/// thread, which sleeps on the epoch it armed with; a producer blocked on a full ring of one
/// slot is woken by the consumer's releases. A lost wake-up leaves the helper (and so the
/// model) deadlocked, which loom reports. (Moving the re-poll before the arm, or dropping the
/// barriers, makes it fail.)
#[test]
fn async_doorbell_never_loses_a_wake_up() {
    model(|| {
        let ring = Ring::builder()
            .spsc()
            .capacity(1)
            .slot_size(4)
            .heap()
            .wait(sleeper())
            .create()
            .unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let producer = thread::spawn(move || {
            for i in 0..2 {
                tx.send(&msg(0, i)).unwrap();
            }
        });
        let mut buf = [0u8; 4];
        for i in 0..2 {
            loop {
                if let Ok(n) = rx.try_recv(&mut buf) {
                    assert_eq!(check(&buf[..n]), (0, i));
                    break;
                }
                let epoch = shmring::__loom::arm(&rx);
                if let Ok(n) = rx.try_recv(&mut buf) {
                    shmring::__loom::disarm(&rx);
                    assert_eq!(check(&buf[..n]), (0, i));
                    break;
                }
                let r = ring.clone();
                thread::spawn(move || shmring::__loom::helper_wait(&r, epoch))
                    .join()
                    .unwrap();
                shmring::__loom::disarm(&rx);
            }
        }
        producer.join().unwrap();
    });
}
