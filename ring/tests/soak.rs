//! Multi-process soak: N producers and M consumers on one named MPMC ring, killed (SIGKILL) and
//! restarted at random for a bounded time, every message accounted for.
//!
//! Each producer incarnation `k` sends `(k, seq, checksum)` messages and records, in a ledger
//! shared with the parent, how many `send` returned for. Consumers read each message in place
//! (a read guard), check it whole, record it as "in hand", mark `(k, seq)` in a shared bitmap
//! (a second mark is a duplicate), and only then release it; they also check per-producer order.
//! At the end a fresh producer sends two laps (so any slot a killed consumer still held is
//! reclaimed), the consumers drain the ring, and the parent checks:
//! - no torn message, no duplicate, no reordering;
//! - every message a producer saw committed was received, or is explained by a consumer crash:
//!   it was "in hand" in a killed consumer, or its slot was taken back from one (`reclaimed`);
//! - recovered claims (`abandoned`) are at most the producer kills;
//! - the segment is removed and `gc` finds nothing left under the test's prefix.
//!
//! `cargo test` runs it for 3 s; `scripts/soak.sh` for as long as asked (`SHMRING_SOAK_SECS`).

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Unique, reap, spawn, with_watchdog};
use shmring::{RecvError, Ring, WaitOptions};

const PRODUCERS: usize = 3;
const CONSUMERS: usize = 2;
/// Producer incarnations the ledger can hold.
const INCARNATIONS: usize = 4096;
/// Messages one incarnation sends at most (then it leaves and is replaced).
const PER_INCARNATION: u64 = 1 << 16;

/// Counters at the start of the ledger.
const TORN: usize = 0;
const DUPLICATE: usize = 1;
const REORDERED: usize = 2;
const RECEIVED: usize = 3;
const COUNTERS: usize = 8;
/// Consumer incarnations the ledger can hold.
const READERS: usize = 4096;

/// Words before the bitmap: counters, producer incarnations, consumer incarnations.
const WORDS: usize = COUNTERS + INCARNATIONS + READERS;

/// The ledger, in an anonymous shared mapping made before any fork.
struct Ledger(common::SharedMap);

impl Ledger {
    fn new() -> Ledger {
        let bits = INCARNATIONS * PER_INCARNATION as usize;
        Ledger(common::SharedMap::new(WORDS * 8 + bits / 8))
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS);
        self.0.at(i * 8)
    }

    fn counter(&self, c: usize) -> &AtomicU64 {
        self.word(c)
    }

    /// How many of producer incarnation `k`'s messages `send` returned for.
    fn committed(&self, k: usize) -> &AtomicU64 {
        self.word(COUNTERS + k)
    }

    /// The message consumer incarnation `c` last had in hand: `(k << 32 | seq) + 1`.
    fn in_hand(&self, c: usize) -> &AtomicU64 {
        self.word(COUNTERS + INCARNATIONS + c)
    }

    /// Marks `(k, seq)` received; whether it already was.
    fn mark(&self, k: usize, seq: u64) -> bool {
        let bit = k * PER_INCARNATION as usize + seq as usize;
        // The bitmap follows the words.
        let w: &AtomicU32 = self.0.at(WORDS * 8 + bit / 32 * 4);
        w.fetch_or(1 << (bit % 32), Ordering::SeqCst) & (1 << (bit % 32)) != 0
    }

    fn marked(&self, k: usize, seq: u64) -> bool {
        let bit = k * PER_INCARNATION as usize + seq as usize;
        let w: &AtomicU32 = self.0.at(WORDS * 8 + bit / 32 * 4);
        w.load(Ordering::SeqCst) & (1 << (bit % 32)) != 0
    }
}

fn check_word(k: u64, seq: u64) -> u64 {
    (k << 32 | seq)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
        ^ 0xA5A5_5A5A_0F0F_F0F0
}

fn encode(k: usize, seq: u64) -> [u8; 24] {
    let mut m = [0u8; 24];
    m[..8].copy_from_slice(&(k as u64).to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m[16..].copy_from_slice(&check_word(k as u64, seq).to_le_bytes());
    m
}

fn decode(m: &[u8]) -> Option<(usize, u64)> {
    if m.len() != 24 {
        return None;
    }
    let k = u64::from_le_bytes(m[..8].try_into().unwrap());
    let seq = u64::from_le_bytes(m[8..16].try_into().unwrap());
    let check = u64::from_le_bytes(m[16..].try_into().unwrap());
    (check == check_word(k, seq) && (k as usize) < INCARNATIONS && seq < PER_INCARNATION)
        .then_some((k as usize, seq))
}

fn producer(ring: &Ring, ledger: &Ledger, k: usize, count: u64) -> i32 {
    let Ok(mut tx) = ring.mpmc_producer() else {
        return 2;
    };
    for seq in 0..count {
        if tx.send(&encode(k, seq)).is_err() {
            return 3;
        }
        ledger.committed(k).store(seq + 1, Ordering::SeqCst);
    }
    0
}

fn consumer(ring: &Ring, ledger: &Ledger, c: usize) -> i32 {
    let Ok(mut rx) = ring.mpmc_consumer() else {
        return 2;
    };
    let mut last = [u64::MAX; INCARNATIONS];
    loop {
        match rx.read_timeout(Duration::from_millis(100)) {
            Ok(m) => {
                let Some((k, seq)) = decode(&m) else {
                    ledger.counter(TORN).fetch_add(1, Ordering::SeqCst);
                    continue;
                };
                ledger
                    .in_hand(c)
                    .store(((k as u64) << 32 | seq) + 1, Ordering::SeqCst);
                if last[k] != u64::MAX && seq <= last[k] {
                    ledger.counter(REORDERED).fetch_add(1, Ordering::SeqCst);
                }
                last[k] = seq;
                if ledger.mark(k, seq) {
                    ledger.counter(DUPLICATE).fetch_add(1, Ordering::SeqCst);
                }
                ledger.counter(RECEIVED).fetch_add(1, Ordering::SeqCst);
                drop(m); // released only now: a kill before this leaves the slot held
            }
            Err(RecvError::Timeout | RecvError::Abandoned { .. } | RecvError::Disconnected) => {}
            Err(_) => {
                ledger.counter(TORN).fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn soak_random_kills_and_restarts() {
    let secs: u64 = std::env::var("SHMRING_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    with_watchdog(Duration::from_secs(secs * 2 + 120), move || soak(secs));
}

fn soak(secs: u64) {
    let unique = Unique::posix("soak");
    let prefix = unique.name().to_owned();
    let ring = unique
        .builder()
        .mpmc()
        .capacity(64)
        .slot_size(24)
        .wait(
            WaitOptions::default()
                .spin(Duration::from_micros(20))
                .liveness_check(Duration::from_millis(10)),
        )
        .create()
        .unwrap();
    let ledger = Ledger::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
    let mut incarnations = 0usize;
    let new_producer = |incarnations: &mut usize, count: u64| {
        let k = *incarnations;
        *incarnations += 1;
        spawn(|| producer(&ring, &ledger, k, count))
    };
    let mut readers = 0usize;
    let new_consumer = |readers: &mut usize| {
        let c = *readers;
        *readers += 1;
        spawn(|| consumer(&ring, &ledger, c))
    };
    let mut producers: Vec<libc::pid_t> = (0..PRODUCERS)
        .map(|_| new_producer(&mut incarnations, PER_INCARNATION))
        .collect();
    let mut consumers: Vec<libc::pid_t> =
        (0..CONSUMERS).map(|_| new_consumer(&mut readers)).collect();
    let (mut producer_kills, mut consumer_kills) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs)
        && incarnations < INCARNATIONS - PRODUCERS - 1
        && readers < READERS - CONSUMERS
    {
        std::thread::sleep(Duration::from_micros(common::xorshift(&mut rng) % 20_000));
        let r = common::xorshift(&mut rng);
        if r.is_multiple_of(3) {
            let i = (r / 3) as usize % CONSUMERS;
            common::kill(consumers[i]);
            reap(&[consumers[i]], Duration::from_secs(30));
            consumer_kills += 1;
            consumers[i] = new_consumer(&mut readers);
        } else {
            let i = (r / 3) as usize % PRODUCERS;
            common::kill(producers[i]);
            reap(&[producers[i]], Duration::from_secs(30));
            producer_kills += 1;
            producers[i] = new_producer(&mut incarnations, PER_INCARNATION);
        }
    }
    // Stop: producers first (killed, like the others), then a fresh one sends two laps, so a
    // slot that a killed consumer still holds is reclaimed; then let the consumers drain.
    for &p in &producers {
        common::kill(p);
    }
    reap(&producers, Duration::from_secs(30));
    producer_kills += producers.len() as u64;
    let last = new_producer(&mut incarnations, 2 * ring.capacity());
    assert_eq!(
        reap(&[last], Duration::from_secs(60)),
        [0],
        "the last producer"
    );
    let mut prev = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = ledger.counter(RECEIVED).load(Ordering::SeqCst);
        if now == prev && ring.status().is_empty() {
            break;
        }
        prev = now;
    }
    for &c in &consumers {
        common::kill(c);
    }
    reap(&consumers, Duration::from_secs(30));

    // Accounting.
    let status = ring.status();
    let (mut committed, mut missing) = (0u64, 0u64);
    for k in 0..incarnations {
        let done = ledger.committed(k).load(Ordering::SeqCst);
        committed += done;
        missing += (0..done).filter(|&s| !ledger.marked(k, s)).count() as u64;
    }
    let received = ledger.counter(RECEIVED).load(Ordering::SeqCst);
    // Committed messages a killed consumer had in hand (read, recorded, not yet marked).
    let in_hand = (0..readers)
        .filter_map(|c| match ledger.in_hand(c).load(Ordering::SeqCst) {
            0 => None,
            w => Some(((w - 1) >> 32) as usize).zip(Some((w - 1) & 0xFFFF_FFFF)),
        })
        .filter(|&(k, seq)| {
            seq < ledger.committed(k).load(Ordering::SeqCst) && !ledger.marked(k, seq)
        })
        .count() as u64;
    eprintln!(
        "soak {secs} s: {incarnations} producer incarnations, {producer_kills} producer kills, \
         {consumer_kills} consumer kills, {committed} messages committed, {received} received, \
         {missing} missing ({in_hand} in hand in killed consumers), {} abandoned (recovered \
         claims), {} reclaimed (held by killed consumers)",
        status.abandoned, status.reclaimed
    );
    assert_eq!(ledger.counter(TORN).load(Ordering::SeqCst), 0, "torn");
    assert_eq!(
        ledger.counter(DUPLICATE).load(Ordering::SeqCst),
        0,
        "duplicated"
    );
    assert_eq!(
        ledger.counter(REORDERED).load(Ordering::SeqCst),
        0,
        "reordered"
    );
    // Every missing message is explained by a consumer crash: in hand, or its slot reclaimed
    // (a reclaimed slot may also have held a skip marker, hence at most).
    assert!(
        missing >= in_hand && missing <= in_hand + status.reclaimed,
        "{missing} committed messages missing; {in_hand} in hand in killed consumers and {} \
         reclaimed slots explain them",
        status.reclaimed
    );
    assert!(status.abandoned <= producer_kills);
    assert!(status.reclaimed <= consumer_kills);
    assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());

    // Nothing left behind: the creator (this process) removes the name when its handle drops,
    // whatever happened to the others.
    drop(ring);
    assert!(!unique.path().exists(), "segment left behind");
    let left = shmring::admin::gc_matching(
        false,
        |b| matches!(b, shmring::Backing::Posix(n) if n.starts_with(&prefix)),
    );
    assert!(left.is_empty(), "{left:?}");
}
