//! Fork-based multi-process stress tests over POSIX, SysV and anonymous segments.
//!
//! Producers and consumers are separate processes created with `fork`. Each message carries its
//! producer id, sequence number, length and a checksum, and its payload bytes are a function of
//! (producer, sequence, position), so the consumer checks every byte of every message: nothing
//! lost, nothing duplicated, nothing torn, each producer's order kept.
//!
//! A forked child of the multi-threaded test harness may only touch memory prepared before the
//! fork and make async-signal-safe calls, so the children here never allocate, never panic on
//! purpose, report failures through a shared result area, and leave with `_exit`. The parent
//! reaps them with a deadline and kills them all if it passes.

mod common;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use common::{Unique, reap, spawn};
use shmring::{Ring, TryRecvError};

const HEADER: usize = 24;
const DEADLINE: Duration = Duration::from_secs(240);

/// Where children report, in an anonymous shared mapping made before the fork.
#[repr(C)]
struct Report {
    consumed: AtomicU64,
    error: AtomicU64,
    detail: [AtomicU64; 3],
    // Followed by one counter per message.
}

const E_ATTACH: u64 = 1;
const E_RECV: u64 = 2;
const E_LENGTH: u64 = 3;
const E_PRODUCER: u64 = 4;
const E_ORDER: u64 = 5;
const E_BYTES: u64 = 6;
const E_CHECKSUM: u64 = 7;
const E_DUPLICATE: u64 = 8;
const E_SEND: u64 = 9;

struct Area {
    map: common::SharedMap,
    len: usize,
}

// SAFETY: `Report` is made of atomics only.
unsafe impl common::ZeroIsValid for Report {}

impl Area {
    fn new(messages: usize) -> Area {
        let len = size_of::<Report>() + messages;
        Area {
            map: common::SharedMap::new(len),
            len,
        }
    }

    fn report(&self) -> &Report {
        self.map.at(0)
    }

    fn seen(&self, k: usize) -> &AtomicU8 {
        assert!(size_of::<Report>() + k < self.len);
        self.map.at(size_of::<Report>() + k)
    }

    fn fail(&self, code: u64, a: u64, b: u64, c: u64) -> i32 {
        let r = self.report();
        if r.error
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            r.detail[0].store(a, Ordering::Relaxed);
            r.detail[1].store(b, Ordering::Relaxed);
            r.detail[2].store(c, Ordering::Relaxed);
        }
        code as i32
    }
}

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

fn msg_len(p: u32, seq: u64, slot: usize) -> usize {
    HEADER + (mix(seq.wrapping_mul(31) ^ u64::from(p)) as usize) % (slot - HEADER + 1)
}

fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Fills `buf` with message (p, seq) and returns its length.
fn encode(buf: &mut [u8], p: u32, seq: u64) -> usize {
    let len = msg_len(p, seq, buf.len());
    buf[0..4].copy_from_slice(&p.to_le_bytes());
    buf[4..12].copy_from_slice(&seq.to_le_bytes());
    buf[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    for (k, b) in buf[HEADER..len].iter_mut().enumerate() {
        *b = byte_at(p, seq, k);
    }
    let sum = checksum(&buf[HEADER..len]) ^ checksum(&buf[0..16]);
    buf[16..24].copy_from_slice(&sum.to_le_bytes());
    len
}

/// Checks every byte of a received message; returns (producer, seq) or an error code.
fn verify(m: &[u8], producers: u32, per: u64) -> Result<(u32, u64), (u64, u64, u64, u64)> {
    if m.len() < HEADER {
        return Err((E_LENGTH, m.len() as u64, 0, 0));
    }
    let p = u32::from_le_bytes(m[0..4].try_into().unwrap_or([0; 4]));
    let seq = u64::from_le_bytes(m[4..12].try_into().unwrap_or([0; 8]));
    let len = u32::from_le_bytes(m[12..16].try_into().unwrap_or([0; 4])) as usize;
    if p >= producers || seq >= per {
        return Err((E_PRODUCER, u64::from(p), seq, 0));
    }
    if len != m.len() {
        return Err((E_LENGTH, u64::from(p), seq, m.len() as u64));
    }
    for (k, &b) in m[HEADER..].iter().enumerate() {
        if b != byte_at(p, seq, k) {
            return Err((E_BYTES, u64::from(p), seq, k as u64));
        }
    }
    let sum = u64::from_le_bytes(m[16..24].try_into().unwrap_or([0; 8]));
    if sum != checksum(&m[HEADER..]) ^ checksum(&m[0..16]) {
        return Err((E_CHECKSUM, u64::from(p), seq, 0));
    }
    Ok((p, seq))
}

/// A producer child: half its messages by copy, half written in place.
fn produce(ring: &Ring, area: &Area, p: u32, per: u64) -> i32 {
    let Ok(mut tx) = ring.producer() else {
        return area.fail(E_ATTACH, u64::from(p), 0, 0);
    };
    let slot = ring.slot_size();
    let mut buf = [0u8; 512];
    let buf = &mut buf[..slot];
    for seq in 0..per {
        let len = encode(buf, p, seq);
        let mut spins = 0u32;
        loop {
            let sent = if seq.is_multiple_of(2) {
                tx.try_send(&buf[..len]).map_err(|e| e.would_block())
            } else {
                tx.try_claim()
                    .map(|mut s| {
                        s[..len].copy_from_slice(&buf[..len]);
                        let _ = s.commit(len);
                    })
                    .map_err(|e| e.would_block())
            };
            match sent {
                Ok(()) => break,
                Err(true) => backoff(&mut spins),
                Err(false) => return area.fail(E_SEND, u64::from(p), seq, 0),
            }
            if area.report().error.load(Ordering::Relaxed) != 0 {
                return 0;
            }
        }
    }
    0
}

/// A consumer child: alternates copy and in-place reads until every message is consumed.
fn consume(ring: &Ring, area: &Area, producers: u32, per: u64) -> i32 {
    let total = u64::from(producers) * per;
    let Ok(mut rx) = ring.consumer() else {
        return area.fail(E_ATTACH, 0, 0, 0);
    };
    let mut last = [u64::MAX; 8];
    let mut buf = [0u8; 512];
    let mut n = 0u64;
    let mut spins = 0u32;
    let report = area.report();
    while report.consumed.load(Ordering::Relaxed) < total {
        if report.error.load(Ordering::Relaxed) != 0 {
            return 0;
        }
        let check = |m: &[u8], last: &mut [u64; 8]| -> Result<(), i32> {
            let (p, seq) =
                verify(m, producers, per).map_err(|(c, a, b, d)| area.fail(c, a, b, d))?;
            let prev = last[p as usize];
            if prev != u64::MAX && seq <= prev {
                return Err(area.fail(E_ORDER, u64::from(p), prev, seq));
            }
            last[p as usize] = seq;
            let k = (u64::from(p) * per + seq) as usize;
            if area.seen(k).fetch_add(1, Ordering::Relaxed) != 0 {
                return Err(area.fail(E_DUPLICATE, u64::from(p), seq, 0));
            }
            report.consumed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        n += 1;
        let got = if n.is_multiple_of(2) {
            rx.try_recv(&mut buf)
                .map(|len| check(&buf[..len], &mut last))
        } else {
            rx.try_read().map(|m| check(&m, &mut last))
        };
        match got {
            Ok(Ok(())) => spins = 0,
            Ok(Err(code)) => return code,
            // Disconnected: the producers are done and the ring is drained; another consumer
            // may still be checking the last messages, so wait for the shared count.
            Err(TryRecvError::Empty | TryRecvError::Pending | TryRecvError::Disconnected) => {
                backoff(&mut spins)
            }
            Err(_) => return area.fail(E_RECV, n, 0, 0),
        }
    }
    0
}

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        core::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn stress(builder: shmring::RingBuilder, producers: u32, consumers: u32, messages: u64) {
    let per = messages.div_ceil(u64::from(producers));
    let total = per * u64::from(producers);
    let ring = builder.create().unwrap();
    let area = Area::new(total as usize);
    let mut pids = Vec::new();
    for p in 0..producers {
        pids.push(spawn(|| produce(&ring, &area, p, per)));
    }
    for _ in 0..consumers {
        pids.push(spawn(|| consume(&ring, &area, producers, per)));
    }
    let codes = reap(&pids, DEADLINE);
    let r = area.report();
    let detail: Vec<u64> = r.detail.iter().map(|d| d.load(Ordering::Relaxed)).collect();
    assert_eq!(
        r.error.load(Ordering::Relaxed),
        0,
        "a child reported error {} with detail {detail:?} (exit codes {codes:?})",
        r.error.load(Ordering::Relaxed)
    );
    assert!(codes.iter().all(|&c| c == 0), "exit codes {codes:?}");
    assert_eq!(r.consumed.load(Ordering::Relaxed), total);
    let missing = (0..total as usize)
        .filter(|&k| area.seen(k).load(Ordering::Relaxed) != 1)
        .count();
    assert_eq!(missing, 0, "messages lost or duplicated");
    assert!(ring.is_empty());
}

const MESSAGES: u64 = 1_000_000;

fn spsc(b: shmring::RingBuilder) -> shmring::RingBuilder {
    b.spsc().capacity(256).slot_size(300)
}

fn mpmc(b: shmring::RingBuilder) -> shmring::RingBuilder {
    b.mpmc().capacity(64).slot_size(64)
}

#[test]
fn posix_spsc_1_to_1() {
    let u = Unique::posix("stress");
    stress(spsc(u.builder()), 1, 1, MESSAGES);
}

#[test]
fn posix_mpmc_2_to_2() {
    let u = Unique::posix("stress");
    stress(mpmc(u.builder()), 2, 2, MESSAGES);
}

#[test]
fn posix_mpmc_3_to_1() {
    let u = Unique::posix("stress");
    stress(mpmc(u.builder()), 3, 1, MESSAGES);
}

#[test]
fn sysv_spsc_1_to_1() {
    let u = Unique::sysv();
    stress(spsc(u.builder()), 1, 1, MESSAGES);
}

#[test]
fn sysv_mpmc_2_to_2() {
    let u = Unique::sysv();
    stress(mpmc(u.builder()), 2, 2, MESSAGES);
}

#[test]
fn sysv_mpmc_3_to_1() {
    let u = Unique::sysv();
    stress(mpmc(u.builder()).slot_size(300), 3, 1, MESSAGES);
}

#[test]
fn anonymous_spsc_1_to_1() {
    stress(
        spsc(Ring::builder().anonymous()).slot_size(40),
        1,
        1,
        MESSAGES,
    );
}

#[test]
fn anonymous_mpmc_2_to_2() {
    stress(
        mpmc(Ring::builder().anonymous()).slot_size(300),
        2,
        2,
        MESSAGES,
    );
}

#[test]
fn anonymous_mpmc_3_to_1() {
    stress(mpmc(Ring::builder().anonymous()), 3, 1, MESSAGES);
}
