//! Hostile and extreme shared state between operations:
//! - cursors started just below `u64::MAX`, so every cursor wraps during the test (SPSC and
//!   MPMC): messages still arrive whole, once, in order;
//! - random and extreme values written over the cursors, sequence words, lengths, wait line and
//!   registry between random operations: every call returns a value or an error, never a panic,
//!   an out-of-bounds access or a hang;
//! - a process of another user (a child switched to `nobody`) is refused a `0600` segment.

mod common;

use std::time::Duration;

use common::{Unique, reap, spawn, stamp, unstamp, with_watchdog};
use shmring::{Kind, OpenError};

/// Offsets from docs/layout.md.
const HEAD: u64 = 128;
const TAIL: u64 = 256;
const SLOTS: u64 = 8192;

fn poke(u: &Unique, offset: u64, bytes: &[u8]) {
    u.poke(offset, bytes);
}

#[test]
fn cursors_wrap_past_u64_max() {
    with_watchdog(Duration::from_secs(60), || {
        for kind in [Kind::Spsc, Kind::Mpmc] {
            let unique = Unique::posix("wrap");
            let cap = 8u64;
            let ring = unique
                .builder()
                .kind(kind)
                .capacity(cap)
                .slot_size(16)
                .create()
                .unwrap();
            let start = u64::MAX - 3; // the wrap comes after four messages
            poke(&unique, HEAD, &start.to_le_bytes());
            poke(&unique, TAIL, &start.to_le_bytes());
            if kind == Kind::Mpmc {
                // Each slot's sequence word says "free for the cursor of this lap" (16-byte MPMC
                // slots: seq u64, len u32, pad u32, payload 16: a 32-byte stride).
                let stride = 32u64;
                for k in 0..cap {
                    let c = start.wrapping_add(k);
                    poke(&unique, SLOTS + (c % cap) * stride, &c.to_le_bytes());
                }
            }
            let (mut sent, mut got) = (0u64, 0u64);
            let mut buf = [0u8; 16];
            let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
            while got < 5 * cap {
                while sent < 5 * cap && tx.try_send(&stamp(sent)).is_ok() {
                    sent += 1;
                }
                let n = rx.try_recv(&mut buf).unwrap();
                assert_eq!(unstamp(&buf[..n]), got, "{kind}");
                got += 1;
            }
            assert!(ring.is_empty(), "{kind}");
            let s = ring.status();
            assert_eq!(
                s.head,
                start.wrapping_add(5 * cap),
                "{kind}: the cursor wrapped"
            );
            assert!(
                ring.check().iter().all(|f| !f.error),
                "{kind}: {:?}",
                ring.check()
            );
        }
    });
}

/// A xorshift generator: the fuzz is reproducible from its seed (printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const EXTREMES: [u64; 9] = [
    0,
    1,
    2,
    0x7f,
    1 << 31,
    1 << 32,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

#[test]
fn random_writes_between_operations_never_panic_or_hang() {
    with_watchdog(Duration::from_secs(120), || {
        let seed = 0x5EED_0000 ^ u64::from(std::process::id());
        let mut rng = Rng(seed);
        for kind in [Kind::Spsc, Kind::Mpmc, Kind::Records, Kind::RecordsMpsc] {
            for round in 0..20 {
                let unique = Unique::posix("fuzz");
                // Four 16-byte messages: 4 slots, or 128 bytes of records (24 bytes each, with
                // room for padding).
                let cap = if kind.is_records() { 128 } else { 4u64 };
                let ring = unique
                    .builder()
                    .kind(kind)
                    .capacity(cap)
                    .slot_size(16)
                    .wait(
                        shmring::WaitOptions::default()
                            .spin(Duration::ZERO)
                            .liveness_check(Duration::from_millis(2)),
                    )
                    .create()
                    .unwrap();
                let ctx = format!("seed {seed:#x}, {kind}, round {round}");
                // Slot strides for 16-byte slots (docs/layout.md): SPSC 8 + 16, MPMC 16 + 16;
                // a record ring's data area is `cap` bytes.
                let data = match kind {
                    Kind::Spsc => cap * 24,
                    Kind::Mpmc => cap * 32,
                    _ => cap,
                };
                // Targets: cursors, wait line, registry words, claims and claim lengths,
                // every slot (or data) word.
                let targets: Vec<u64> =
                    [HEAD, TAIL, 384, 388, 392, 396, 400, 404, 408, 416, 448, 452]
                        .into_iter()
                        .chain((0..4).flat_map(|e| [512 + 128 * e, 520 + 128 * e, 528 + 128 * e]))
                        .chain((0..data).step_by(4).map(|o| SLOTS + o))
                        .collect();
                // One pair of endpoints for the whole round: the writes land between their
                // operations, as a hostile peer's would.
                let mut ops = 0u32;
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut buf = [0u8; 16];
                    let poke_random = |rng: &mut Rng| {
                        let at = targets[rng.below(targets.len() as u64) as usize];
                        let value = if rng.below(2) == 0 {
                            EXTREMES[rng.below(EXTREMES.len() as u64) as usize]
                        } else {
                            rng.next()
                        };
                        let width = if at.is_multiple_of(8) && rng.below(2) == 0 {
                            8
                        } else {
                            4
                        };
                        poke(&unique, at, &value.to_le_bytes()[..width]);
                    };
                    let mut tx = ring.producer().unwrap();
                    let mut rx = ring.consumer().unwrap();
                    for _ in 0..200 {
                        poke_random(&mut rng);
                        match rng.below(10) {
                            0 => drop(tx.try_send(&stamp(1))),
                            1 => drop(rx.try_recv(&mut buf)),
                            2 => drop(rx.try_read().map(|m| m.len())),
                            3 => drop(tx.try_claim().map(|s| s.commit(3))),
                            4 => drop(rx.recv_timeout(&mut buf, Duration::from_millis(3))),
                            5 => drop(tx.send_timeout(&stamp(2), Duration::from_millis(3))),
                            6 => drop(rx.try_recv_batch(8, |_| {})),
                            7 => drop(tx.try_send_batch(&[stamp(3), stamp(4)])),
                            8 => drop(rx.try_recv_value::<u64>()),
                            _ => drop(tx.try_send_value(7u64)),
                        }
                        let _ = (ring.len(), ring.status(), ring.check(), tx.len(), rx.len());
                        ops += 1;
                    }
                    // And attaching to whatever is left is refused or succeeds, never worse.
                    let _ = (
                        ring.spsc_producer(),
                        ring.mpmc_consumer(),
                        ring.records_producer(),
                    );
                }));
                assert_eq!(ops, 200, "{ctx}");
                assert!(result.is_ok(), "panicked: {ctx}");
            }
        }
    });
}

#[test]
fn another_user_is_refused_a_private_segment() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to another user needs root");
        return;
    }
    with_watchdog(Duration::from_secs(30), || {
        let unique = Unique::posix("perm");
        let _ring = unique
            .builder()
            .spsc()
            .capacity(4)
            .slot_size(8)
            .create()
            .unwrap();
        let builder = unique.builder();
        let child = spawn(|| {
            // SAFETY: plain system calls in the child; 65534 is `nobody`.
            let switched = unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 };
            if !switched {
                return 3;
            }
            match builder.open() {
                Err(OpenError::PermissionDenied) => 0,
                Ok(_) => 1,
                Err(_) => 2,
            }
        });
        assert_eq!(
            reap(&[child], Duration::from_secs(20)),
            [0],
            "1: opened, 2: other error, 3: setuid"
        );
    });
}

/// Found by a black-box test of the docs: an MPMC `head` forged to 1..capacity past
/// `tail + capacity` left producers "full" and consumers "pending" for ever (blocking calls
/// timed out) instead of reporting `Corruption::Cursors`, as docs/layout.md says a reader
/// does.
#[test]
fn mpmc_cursors_more_than_a_capacity_apart_are_reported() {
    with_watchdog(Duration::from_secs(60), || {
        for forged in [5u64, 7] {
            let unique = Unique::posix("hostile-apart");
            let ring = unique
                .builder()
                .mpmc()
                .capacity(4)
                .slot_size(8)
                .create()
                .unwrap();
            let (mut tx, mut rx) = (ring.mpmc_producer().unwrap(), ring.mpmc_consumer().unwrap());
            poke(&unique, HEAD, &forged.to_le_bytes());
            let apart = |e: &str| e.contains("more than the capacity");
            let sent = tx.send_timeout(b"a", Duration::from_secs(5));
            assert!(
                matches!(&sent, Err(shmring::SendError::Corrupt(..))),
                "head {forged}: {sent:?}"
            );
            assert!(apart(&sent.unwrap_err().to_string()));
            let got = rx.recv_timeout(&mut [0u8; 8], Duration::from_secs(5));
            assert!(
                matches!(&got, Err(shmring::RecvError::Corrupt(_))),
                "head {forged}: {got:?}"
            );
            assert!(apart(&got.unwrap_err().to_string()));
        }
    });
}
