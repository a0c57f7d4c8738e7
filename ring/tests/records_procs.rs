//! Record rings across processes: fork stress over POSIX, SysV and anonymous memory, with every
//! byte of every message checked; and producers killed (SIGKILL) or stopped (SIGSTOP) at the
//! worst moments.
//!
//! Messages have lengths drawn uniformly from 0..=max. A message of (producer p, number s) is a
//! function of (p, s): its length, then, from 24 bytes up, a header (p, s, length, checksum)
//! and payload bytes; below 24 bytes, p in its first byte and payload bytes after it. The
//! consumer knows each producer's next number, so it checks every byte against the one
//! expected; an empty message carries nothing and is counted as a credit that the producer's
//! next non-empty message (or the end) must settle exactly.
//!
//! Forked children of the multi-threaded test harness touch only memory made before the fork,
//! allocate nothing, and leave with `_exit`; the parent reaps them with a deadline.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    Flags, Unique, kill, park_forever, reap, spawn, stamp, unstamp, wait_until, with_watchdog,
};
use shmring::{Kind, RecvError, Ring, RingBuilder, TryRecvError, WaitOptions};

const DEADLINE: Duration = Duration::from_secs(240);
const HEADER: usize = 24;
/// The largest message in the stress tests (and the encoding buffer).
const MAX: usize = 512;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn byte_at(p: u32, seq: u64, k: usize) -> u8 {
    (mix(seq ^ (u64::from(p) << 48)) >> (k % 8 * 8)) as u8 ^ k as u8
}

/// Uniform in 0..=max.
fn msg_len(p: u32, seq: u64, max: usize) -> usize {
    (mix(seq.wrapping_mul(31) ^ u64::from(p) ^ 0xABCD) % (max as u64 + 1)) as usize
}

fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Fills `buf` with message (p, seq) and returns its length.
fn encode(buf: &mut [u8], p: u32, seq: u64, max: usize) -> usize {
    let len = msg_len(p, seq, max);
    if len >= HEADER {
        buf[0..4].copy_from_slice(&p.to_le_bytes());
        buf[4..12].copy_from_slice(&seq.to_le_bytes());
        buf[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        for (k, b) in buf[HEADER..len].iter_mut().enumerate() {
            *b = byte_at(p, seq, k);
        }
        let sum = checksum(&buf[HEADER..len]) ^ checksum(&buf[0..16]);
        buf[16..24].copy_from_slice(&sum.to_le_bytes());
    } else if len > 0 {
        buf[0] = p as u8;
        for (k, b) in buf[1..len].iter_mut().enumerate() {
            *b = byte_at(p, seq, k);
        }
    }
    len
}

/// Where children report, in an anonymous shared mapping made before the fork.
struct Report(common::SharedMap);

impl Report {
    fn new() -> Report {
        Report(common::SharedMap::new(64))
    }
    fn word(&self, i: usize) -> &AtomicU64 {
        self.0.at(i * 8)
    }
    /// The first failure: a code and three details.
    fn fail(&self, code: u64, a: u64, b: u64, c: u64) -> i32 {
        if self
            .word(0)
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.word(1).store(a, Ordering::Relaxed);
            self.word(2).store(b, Ordering::Relaxed);
            self.word(3).store(c, Ordering::Relaxed);
        }
        code as i32
    }
    fn error(&self) -> u64 {
        self.word(0).load(Ordering::Relaxed)
    }
    fn received(&self) -> &AtomicU64 {
        self.word(4)
    }
}

const E_ATTACH: u64 = 1;
const E_SEND: u64 = 2;
const E_RECV: u64 = 3;
const E_PRODUCER: u64 = 4;
const E_MISMATCH: u64 = 5;
const E_COUNT: u64 = 6;

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        core::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// A producer child: alternately a copy and a claim of the exact length written in place.
fn produce(ring: &Ring, report: &Report, p: u32, per: u64) -> i32 {
    let Ok(mut tx) = ring.records_producer() else {
        return report.fail(E_ATTACH, u64::from(p), 0, 0);
    };
    let max = ring.slot_size();
    let mut buf = [0u8; MAX];
    for seq in 0..per {
        let len = encode(&mut buf, p, seq, max);
        let mut spins = 0u32;
        loop {
            let sent = if seq.is_multiple_of(2) {
                tx.try_send(&buf[..len]).map_err(|e| e.would_block())
            } else {
                tx.try_claim(len)
                    .map(|mut r| {
                        r.copy_from_slice(&buf[..len]);
                        let _ = r.commit();
                    })
                    .map_err(|e| e.would_block())
            };
            match sent {
                Ok(()) => break,
                Err(true) => backoff(&mut spins),
                Err(false) => return report.fail(E_SEND, u64::from(p), seq, 0),
            }
            if report.error() != 0 {
                return 0;
            }
        }
    }
    0
}

/// What the consumer expects next from each producer, and the empty messages not yet matched.
struct Expect {
    next: [u64; 8],
    empty_credits: u64,
}

impl Expect {
    /// Checks message `m` against the next one expected from its producer; `Err` with a
    /// report code and details on any difference.
    fn check(
        &mut self,
        m: &[u8],
        producers: u32,
        per: u64,
        max: usize,
        buf: &mut [u8; MAX],
    ) -> Result<(), (u64, u64, u64, u64)> {
        if m.is_empty() {
            self.empty_credits += 1;
            return Ok(());
        }
        let p = u32::from(m[0]);
        if p >= producers {
            return Err((E_PRODUCER, u64::from(p), m.len() as u64, 0));
        }
        // The producer's empty messages before this one were received as credits.
        let mut seq = self.next[p as usize];
        while seq < per && msg_len(p, seq, max) == 0 {
            if self.empty_credits == 0 {
                return Err((E_COUNT, u64::from(p), seq, 0));
            }
            self.empty_credits -= 1;
            seq += 1;
        }
        let len = encode(buf, p, seq, max);
        if seq >= per || m != &buf[..len] {
            return Err((E_MISMATCH, u64::from(p), seq, m.len() as u64));
        }
        self.next[p as usize] = seq + 1;
        Ok(())
    }

    /// After the last message: every producer's trailing empties settle the credits exactly.
    fn finish(&mut self, producers: u32, per: u64, max: usize) -> Result<(), (u64, u64, u64, u64)> {
        for p in 0..producers {
            let mut seq = self.next[p as usize];
            while seq < per {
                if msg_len(p, seq, max) != 0 || self.empty_credits == 0 {
                    return Err((E_COUNT, u64::from(p), seq, self.empty_credits));
                }
                self.empty_credits -= 1;
                seq += 1;
            }
        }
        if self.empty_credits != 0 {
            return Err((E_COUNT, u64::MAX, 0, self.empty_credits));
        }
        Ok(())
    }
}

/// The consumer child: in place, by copy and in batches, until every message is in.
fn consume(ring: &Ring, report: &Report, producers: u32, per: u64) -> i32 {
    let total = u64::from(producers) * per;
    let max = ring.slot_size();
    let Ok(mut rx) = ring.records_consumer() else {
        return report.fail(E_ATTACH, 0, 0, 0);
    };
    let mut expect = Expect {
        next: [0; 8],
        empty_credits: 0,
    };
    let mut scratch = [0u8; MAX];
    let mut copy = [0u8; MAX];
    let (mut got, mut n, mut spins) = (0u64, 0u64, 0u32);
    let mut failed = None;
    while got < total {
        if report.error() != 0 {
            return 0;
        }
        n += 1;
        let r = match n % 3 {
            0 => rx.try_recv(&mut copy).map(|len| {
                failed = failed.or(expect
                    .check(&copy[..len], producers, per, max, &mut scratch)
                    .err());
                1
            }),
            1 => rx.try_read().map(|m| {
                failed = failed.or(expect.check(&m, producers, per, max, &mut scratch).err());
                1
            }),
            _ => rx.try_recv_batch(16, |m| {
                failed = failed.or(expect.check(m, producers, per, max, &mut scratch).err());
            }),
        };
        if let Some((code, a, b, c)) = failed {
            return report.fail(code, a, b, c);
        }
        match r {
            Ok(k) => {
                got += k as u64;
                report.received().store(got, Ordering::Relaxed);
                if k == 0 {
                    backoff(&mut spins);
                } else {
                    spins = 0;
                }
            }
            Err(TryRecvError::Empty | TryRecvError::Pending | TryRecvError::Disconnected) => {
                backoff(&mut spins)
            }
            Err(_) => return report.fail(E_RECV, got, 0, 0),
        }
    }
    if let Err((code, a, b, c)) = expect.finish(producers, per, max) {
        return report.fail(code, a, b, c);
    }
    0
}

fn stress(builder: RingBuilder, producers: u32, messages: u64) {
    let per = messages.div_ceil(u64::from(producers));
    let ring = builder.create().unwrap();
    let report = Report::new();
    let mut pids = Vec::new();
    for p in 0..producers {
        pids.push(spawn(|| produce(&ring, &report, p, per)));
    }
    pids.push(spawn(|| consume(&ring, &report, producers, per)));
    let codes = reap(&pids, DEADLINE);
    let detail: Vec<u64> = (1..4)
        .map(|i| report.word(i).load(Ordering::Relaxed))
        .collect();
    assert_eq!(
        report.error(),
        0,
        "a child reported error {} with detail {detail:?} (exit codes {codes:?})",
        report.error()
    );
    assert!(codes.iter().all(|&c| c == 0), "exit codes {codes:?}");
    assert_eq!(
        report.received().load(Ordering::Relaxed),
        per * u64::from(producers)
    );
    assert!(ring.is_empty());
    assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
}

const MESSAGES: u64 = 1_000_000;

/// 16 KiB of data: 32 of the largest messages, about 60 of the average one.
fn one(b: RingBuilder) -> RingBuilder {
    b.records().capacity(16 * 1024).max_message(MAX)
}

fn many(b: RingBuilder) -> RingBuilder {
    b.records_mpsc().capacity(16 * 1024).max_message(MAX)
}

#[test]
fn posix_records_1_to_1() {
    let u = Unique::posix("rstress");
    stress(one(u.builder()), 1, MESSAGES);
}

#[test]
fn posix_records_3_to_1() {
    let u = Unique::posix("rstress");
    stress(many(u.builder()), 3, MESSAGES);
}

#[test]
fn sysv_records_1_to_1() {
    let u = Unique::sysv();
    stress(one(u.builder()), 1, MESSAGES);
}

#[test]
fn sysv_records_3_to_1() {
    let u = Unique::sysv();
    stress(many(u.builder()), 3, MESSAGES);
}

#[test]
fn anonymous_records_1_to_1() {
    stress(one(Ring::builder().anonymous()), 1, MESSAGES);
}

#[test]
fn anonymous_records_3_to_1() {
    stress(many(Ring::builder().anonymous()), 3, MESSAGES);
}

// ----- Kills -----

const LIMIT: Duration = Duration::from_secs(120);

/// Liveness checks every 5 ms: dead peers and stuck reservations are noticed quickly.
fn quick() -> WaitOptions {
    WaitOptions::default()
        .spin(Duration::from_micros(20))
        .yield_for(Duration::ZERO)
        .liveness_check(Duration::from_millis(5))
}

fn ring(kind: Kind) -> Ring {
    Ring::builder()
        .kind(kind)
        .capacity(256)
        .max_message(40)
        .anonymous()
        .wait(quick())
        .create()
        .unwrap()
}

/// Message `i`: its stamp, then `i % 25` bytes of `i`.
fn numbered(i: u64, buf: &mut [u8; 40]) -> usize {
    buf[..16].copy_from_slice(&stamp(i));
    let len = 16 + (i % 25) as usize;
    buf[16..len].fill(i as u8);
    len
}

fn check_numbered(m: &[u8], want: u64) {
    assert_eq!(unstamp(&m[..16]), want, "gap or duplicate");
    assert_eq!(m.len(), 16 + (want % 25) as usize, "message {want}: length");
    assert!(
        m[16..].iter().all(|&b| b == want as u8),
        "message {want}: torn"
    );
}

#[test]
fn many_producer_killed_after_its_reservation_is_recovered_once_proven_dead() {
    with_watchdog(LIMIT, || {
        let ring = ring(Kind::RecordsMpsc);
        let flags = Flags::new();
        // A reserves 20 bytes, writes half of them, and stops there for good.
        let a = spawn(|| {
            let mut tx = ring.records_producer().unwrap();
            let mut r = tx.try_claim(20).unwrap();
            r[..10].fill(0xEE);
            flags.set(0, 1);
            park_forever()
        });
        assert!(wait_until(LIMIT, || flags.get(0) == 1));
        // B sends 100 behind it (and blocks while the ring is full).
        let b = spawn(|| {
            let mut tx = ring.records_producer().unwrap();
            let mut buf = [0u8; 40];
            i32::from(!(0..100).all(|i| {
                let len = numbered(i, &mut buf);
                tx.send(&buf[..len]).is_ok()
            }))
        });
        let mut rx = ring.records_consumer().unwrap();
        let mut buf = Vec::new();
        // A is alive: its reservation is waited for, not taken.
        assert_eq!(
            rx.recv_vec_timeout(&mut buf, Duration::from_millis(200)),
            Err(RecvError::Timeout)
        );
        assert_eq!(ring.status().abandoned, 0);
        kill(a);
        assert_eq!(reap(&[a], LIMIT), [-libc::SIGKILL]);
        assert_eq!(
            rx.recv_vec(&mut buf),
            Err(RecvError::Abandoned { cursor: 0 })
        );
        for i in 0..100 {
            rx.recv_vec(&mut buf).unwrap();
            check_numbered(&buf, i);
        }
        assert_eq!(reap(&[b], LIMIT), [0]);
        assert_eq!(rx.recv_vec(&mut buf), Err(RecvError::Disconnected));
        assert_eq!(ring.status().abandoned, 1);
        assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
    });
}

#[test]
fn many_producer_stopped_after_its_reservation_is_never_robbed() {
    with_watchdog(LIMIT, || {
        let ring = ring(Kind::RecordsMpsc);
        let flags = Flags::new();
        let a = spawn(|| {
            let mut tx = ring.records_producer().unwrap();
            let mut r = tx.try_claim(16).unwrap();
            flags.set(0, 1);
            while flags.get(1) == 0 {
                // SAFETY: usleep has no memory preconditions.
                unsafe { libc::usleep(1000) };
            }
            r.copy_from_slice(&stamp(7));
            i32::from(r.commit().is_err())
        });
        assert!(wait_until(LIMIT, || flags.get(0) == 1));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(a, libc::SIGSTOP) };
        flags.set(1, 1); // it would commit now, but it is stopped
        let mut rx = ring.records_consumer().unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            rx.recv_vec_timeout(&mut buf, Duration::from_millis(300)),
            Err(RecvError::Timeout)
        );
        assert_eq!(ring.status().abandoned, 0);
        // SAFETY: as above.
        unsafe { libc::kill(a, libc::SIGCONT) };
        rx.recv_vec(&mut buf).unwrap();
        assert_eq!(unstamp(&buf), 7, "the reserver's own message, intact");
        assert_eq!(reap(&[a], LIMIT), [0]);
        assert_eq!(ring.status().abandoned, 0);
    });
}

/// Each step of one kill iteration is bounded by this, so a step that never ends fails with
/// [`state`] instead of hanging until the watchdog.
const STEP: Duration = Duration::from_secs(30);

/// What a stuck kill iteration looks like: the child's process state, the claims it made, the
/// registry and the ring's own check.
fn state(ring: &Ring, child: libc::pid_t, flags: &Flags) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat"))
        .unwrap_or_else(|e| format!("(no /proc/{child}/stat: {e})"));
    format!(
        "child {child} stat [{}], claims about to be made {}, made {}, endpoints {:?}, check {:?}",
        stat.trim(),
        flags.get(0),
        flags.get(2),
        ring.endpoints(),
        ring.check()
    )
}

/// Kills a producer at a random point, `iterations` times, while it sends numbered messages of
/// varying lengths (zero-copy, dawdling inside each claim so that many kills land there). Each
/// time the consumer gets a gap-free prefix, whole; with many producers then at most one
/// `Abandoned` (exactly when the kill landed inside a reservation); then `Disconnected`. Then a
/// successor producer sends one more message, which arrives alone: nothing the dead producer
/// half-wrote is ever read. Returns the messages that crossed and the reservations recovered.
fn random_kills(kind: Kind, iterations: u32) -> (u64, u32) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let (mut total, mut recovered) = (0, 0);
    let mut slowest = Duration::ZERO;
    for _ in 0..iterations {
        let began = std::time::Instant::now();
        let ring = ring(kind);
        // [0] = claims about to be made, [2] = claims made.
        let flags = Flags::new();
        let child = spawn(|| {
            let mut tx = ring.records_producer().unwrap();
            let mut buf = [0u8; 40];
            let mut i = 0u64;
            loop {
                let len = numbered(i, &mut buf);
                flags.set(0, i + 1);
                let Ok(mut r) = tx.claim(len) else { break };
                flags.set(2, i + 1);
                r.copy_from_slice(&buf[..len]);
                let t = std::time::Instant::now();
                while t.elapsed() < Duration::from_micros(3) {
                    core::hint::spin_loop();
                }
                if r.commit().is_err() {
                    break;
                }
                i += 1;
            }
            1
        });
        let mut rx = ring.records_consumer().unwrap();
        assert!(
            wait_until(STEP, || ring
                .endpoints()
                .iter()
                .any(|e| e.role == Some(shmring::Role::Producer))),
            "the producer never attached: {}",
            state(&ring, child, &flags)
        );
        let delay = Duration::from_micros(common::xorshift(&mut rng) % 2000);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            kill(child);
            reap(&[child], STEP)
        });
        let mut buf = Vec::new();
        let (mut expect, mut abandoned) = (0u64, false);
        loop {
            match rx.recv_vec_timeout(&mut buf, STEP) {
                Ok(_) => {
                    assert!(!abandoned, "a message after the abandoned one");
                    check_numbered(&buf, expect);
                    expect += 1;
                }
                Err(RecvError::Abandoned { .. }) => {
                    assert_eq!(kind, Kind::RecordsMpsc);
                    assert!(!abandoned, "one reservation in flight at most");
                    abandoned = true;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e} after {expect}: {}", state(&ring, child, &flags)),
            }
        }
        assert_eq!(killer.join().unwrap(), [-libc::SIGKILL]);
        if kind == Kind::RecordsMpsc {
            if flags.get(2) > expect {
                assert!(abandoned, "reservation {expect} was in flight: report it");
            }
            if flags.get(0) <= expect {
                assert!(
                    !abandoned,
                    "no reservation was in flight, yet a loss was reported"
                );
            }
        }
        // A successor: whatever the dead one left, the next message is the successor's alone.
        let mut tx = ring.records_producer().unwrap();
        tx.try_send(b"successor").unwrap();
        assert_eq!(rx.try_recv_vec(&mut buf), Ok(9));
        assert_eq!(buf, b"successor");
        drop(tx);
        assert_eq!(
            rx.recv_vec_timeout(&mut buf, Duration::from_secs(10)),
            Err(RecvError::Disconnected)
        );
        assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
        total += expect;
        recovered += u32::from(abandoned);
        slowest = slowest.max(began.elapsed());
    }
    eprintln!(
        "{kind}: {iterations} kills, {total} messages, {recovered} reservations recovered; \
         the slowest kill took {slowest:?}"
    );
    (total, recovered)
}

#[test]
fn one_producer_killed_at_random_points_two_hundred_times() {
    let (total, _) = with_watchdog(LIMIT, || random_kills(Kind::Records, 200));
    assert!(total > 0);
}

#[test]
fn many_producer_killed_at_random_points_a_hundred_times() {
    let (total, _) = with_watchdog(LIMIT, || random_kills(Kind::RecordsMpsc, 100));
    assert!(total > 0);
}
