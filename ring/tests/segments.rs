//! Segments and headers: create/open/remove on every backend, permissions, the removal policy,
//! and every kind of bad input: foreign bytes, short segments, other kinds, future versions,
//! impossible fields and corrupt cursors each give their own clear error.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Unique, with_watchdog};
use shmring::{
    AttachError, Backing, Cleanup, ConfigError, Corruption, CreateError, Kind, OpenError,
    RemoveError, Ring, Role, TryRecvError, TrySendError,
};

const SHORT: Duration = Duration::from_millis(50);

fn poke(u: &Unique, offset: u64, bytes: &[u8]) {
    u.poke(offset, bytes);
}

fn spsc(u: &Unique) -> shmring::RingBuilder {
    u.builder().spsc().capacity(8).slot_size(32)
}

#[test]
fn posix_create_open_send_receive() {
    let u = Unique::posix("rt");
    let a = spsc(&u).create().unwrap();
    let b = u.builder().open().unwrap();
    assert!(a.created() && !b.created());
    assert_eq!(
        (b.kind(), b.capacity(), b.slot_size()),
        (shmring::Kind::Spsc, 8, 32)
    );
    assert_eq!(a.segment_size(), spsc(&u).segment_size().unwrap());
    let mut tx = a.spsc_producer().unwrap();
    let mut rx = b.spsc_consumer().unwrap();
    tx.try_send(b"across handles").unwrap();
    assert_eq!(&*rx.try_read().unwrap(), b"across handles");
}

#[test]
fn create_is_exclusive_and_open_needs_a_segment() {
    let u = Unique::posix("excl");
    let _a = spsc(&u).create().unwrap();
    assert!(matches!(spsc(&u).create(), Err(CreateError::AlreadyExists)));
    let missing = Unique::posix("missing");
    assert!(matches!(missing.builder().open(), Err(OpenError::NotFound)));
    let missing = Unique::sysv();
    assert!(matches!(missing.builder().open(), Err(OpenError::NotFound)));
}

#[test]
fn new_segments_are_0600_whatever_the_umask_and_mode_is_configurable() {
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0) };
    let u = Unique::posix("mode");
    let _r = spsc(&u).create().unwrap();
    let v = Unique::posix("mode640");
    let _s = spsc(&v).mode(0o640).create().unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let mode = |u: &Unique| std::fs::metadata(u.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&u), 0o600);
    assert_eq!(mode(&v), 0o640);
}

#[test]
fn the_creator_removes_the_name_unless_cleanup_is_manual() {
    let u = Unique::posix("cleanup");
    let ring = spsc(&u).create().unwrap();
    let opened = u.builder().open().unwrap();
    drop(ring);
    // The opener still works: the name is gone, the memory is not.
    assert!(matches!(u.builder().open(), Err(OpenError::NotFound)));
    let mut tx = opened.spsc_producer().unwrap();
    tx.try_send(b"still mapped").unwrap();

    let v = Unique::posix("manual");
    drop(spsc(&v).cleanup(Cleanup::Manual).create().unwrap());
    assert!(v.builder().open().is_ok());
    shmring::remove(&v.backing).unwrap();
    assert!(matches!(v.builder().open(), Err(OpenError::NotFound)));
    assert!(matches!(
        shmring::remove(&v.backing),
        Err(RemoveError::NotFound)
    ));
}

#[test]
fn sysv_by_key_and_by_ftok_path() {
    let u = Unique::sysv();
    let a = u
        .builder()
        .mpmc()
        .capacity(4)
        .slot_size(16)
        .create()
        .unwrap();
    let b = u.builder().open().unwrap();
    assert_eq!(
        (b.kind(), b.capacity(), b.slot_size()),
        (shmring::Kind::Mpmc, 4, 16)
    );
    let mut tx = a.mpmc_producer().unwrap();
    let mut rx = b.mpmc_consumer().unwrap();
    tx.try_send_value(7u32).unwrap();
    assert_eq!(rx.try_recv_value::<u32>().unwrap(), 7);
    drop((a, tx));
    // Marked for removal by its creator, still usable by those attached, not openable.
    assert!(matches!(u.builder().open(), Err(OpenError::NotFound)));
    assert!(rx.try_recv_value::<u32>().is_err());

    let dir = std::env::temp_dir().join(format!("shmring-ftok-{}", std::process::id()));
    std::fs::write(&dir, b"key file").unwrap();
    let by_path = || Ring::builder().sysv_path(&dir, 7);
    let c = by_path().spsc().capacity(2).slot_size(8).create().unwrap();
    let d = by_path().open().unwrap();
    assert_eq!(d.capacity(), 2);
    drop((c, d));
    let _ = shmring::remove(
        &by_path()
            .open()
            .map(|r| r.backing().clone())
            .unwrap_or(Backing::Heap),
    );
    std::fs::remove_file(&dir).unwrap();
    assert!(matches!(
        Ring::builder().sysv_path("/no/such/file", 1).open(),
        Err(OpenError::NotFound)
    ));
}

#[test]
fn anonymous_and_heap_rings_cannot_be_opened_by_name() {
    for b in [Ring::builder().anonymous(), Ring::builder().heap()] {
        assert!(matches!(
            b.open(),
            Err(OpenError::Config(ConfigError::Unsupported(_)))
        ));
    }
    let anon = Ring::builder()
        .anonymous()
        .spsc()
        .capacity(4)
        .slot_size(8)
        .populate(true);
    let ring = anon.create().unwrap();
    assert!(ring.spsc_producer().unwrap().try_send(b"x").is_ok());
}

#[test]
fn bad_configurations_are_refused_with_their_own_error() {
    let b = || Ring::builder().heap();
    let err = |b: shmring::RingBuilder| match b.create() {
        Err(CreateError::Config(e)) => e,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(
        err(b().spsc().capacity(3).slot_size(8)),
        ConfigError::CapacityNotPowerOfTwo(3)
    );
    assert_eq!(
        err(b().spsc().capacity(0).slot_size(8)),
        ConfigError::CapacityNotPowerOfTwo(0)
    );
    assert!(matches!(
        err(b().spsc().capacity(1 << 40).slot_size(8)),
        ConfigError::CapacityTooLarge { .. }
    ));
    assert_eq!(
        err(b().spsc().capacity(4).slot_size(0)),
        ConfigError::SlotSizeZero
    );
    assert_eq!(
        err(b().mpmc().capacity(1).slot_size(8)),
        ConfigError::MpmcCapacityOne
    );
    assert!(matches!(
        err(b().mpmc().capacity(1 << 31).slot_size(1 << 20)),
        ConfigError::SegmentTooLarge { .. }
    ));
    assert!(matches!(
        err(b().capacity(4).slot_size(8)),
        ConfigError::Missing(_)
    ));
    assert!(matches!(
        err(Ring::builder().spsc().capacity(4).slot_size(8)),
        ConfigError::Missing(_)
    ));
    for name in ["", "/a/b", "a\0b"] {
        assert!(matches!(
            err(Ring::builder().posix(name).spsc().capacity(4).slot_size(8)),
            ConfigError::InvalidName { .. }
        ));
    }
    assert!(matches!(
        err(Ring::builder().sysv(0).spsc().capacity(4).slot_size(8)),
        ConfigError::InvalidName { .. }
    ));
    let u = Unique::posix("huge");
    assert!(matches!(
        err(spsc(&u).huge_pages(true)),
        ConfigError::Unsupported(_)
    ));
    // Every error explains itself.
    let msg = err(b().spsc().capacity(3).slot_size(8)).to_string();
    assert!(msg.contains("power of two"), "{msg}");
}

#[test]
fn foreign_bytes_are_not_a_ring() {
    let u = Unique::posix("random");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..16384)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(u.path(), &bytes).unwrap();
    let e = u.builder().init_timeout(SHORT).open().unwrap_err();
    assert!(matches!(e, OpenError::NotShmring { .. }), "{e}");
    assert!(e.to_string().contains("not a shmring segment"));
}

#[test]
fn short_and_empty_segments_are_truncated() {
    let u = Unique::posix("empty");
    std::fs::write(u.path(), b"").unwrap();
    assert!(matches!(
        u.builder().init_timeout(SHORT).open(),
        Err(OpenError::Truncated { found: 0, .. })
    ));
    let v = Unique::posix("short");
    std::fs::write(v.path(), [0u8; 100]).unwrap();
    assert!(matches!(
        v.builder().init_timeout(SHORT).open(),
        Err(OpenError::Truncated { found: 100, .. })
    ));
    // A valid header whose slots were cut off.
    let w = Unique::posix("cut");
    drop(spsc(&w).cleanup(Cleanup::Manual).create().unwrap());
    let f = OpenOptions::new().write(true).open(w.path()).unwrap();
    f.set_len(8192 + 16).unwrap();
    let e = w.builder().open().unwrap_err();
    assert!(matches!(e, OpenError::Truncated { found: 8208, .. }), "{e}");
}

#[test]
fn an_unfinished_header_is_not_initialized() {
    let u = Unique::posix("zeros");
    std::fs::write(u.path(), [0u8; 16384]).unwrap();
    let e = u.builder().init_timeout(SHORT).open().unwrap_err();
    assert!(matches!(e, OpenError::NotInitialized { .. }), "{e}");
}

#[test]
fn other_kinds_and_versions_are_told_apart() {
    let u = Unique::posix("kind");
    let ring = u
        .builder()
        .mpmc()
        .capacity(8)
        .slot_size(32)
        .create()
        .unwrap();
    assert!(matches!(
        u.builder().spsc().open(),
        Err(OpenError::LayoutMismatch {
            field: "kind",
            expected: 1,
            found: 2
        })
    ));
    assert!(matches!(
        u.builder().capacity(16).open(),
        Err(OpenError::LayoutMismatch {
            field: "capacity",
            ..
        })
    ));
    assert!(matches!(
        ring.spsc_producer(),
        Err(AttachError::WrongKind { .. })
    ));

    poke(&u, 8, &2u32.to_le_bytes());
    let e = u.builder().open().unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::VersionMismatch {
                supported: 1,
                found: 2
            }
        ),
        "{e}"
    );
}

#[test]
fn impossible_header_fields_are_refused() {
    let cases: [(u64, u64, &str); 6] = [
        (12, 9, "kind"),             // kind
        (16, 3, "capacity"),         // not a power of two
        (16, 1 << 40, "capacity"),   // too large
        (24, 0, "slot_size"),        // zero
        (32, 24, "slot_stride"),     // disagrees with slot size
        (56, 1 << 20, "total_size"), // disagrees with the rest
    ];
    for (offset, value, field) in cases {
        let u = Unique::posix("field");
        let _ring = spsc(&u).create().unwrap();
        if offset == 12 {
            poke(&u, offset, &(value as u32).to_le_bytes());
        } else {
            poke(&u, offset, &value.to_le_bytes());
        }
        match u.builder().open() {
            Err(OpenError::CorruptHeader { field: f, .. })
            | Err(OpenError::LayoutMismatch { field: f, .. }) => {
                assert_eq!(f, field)
            }
            other => panic!("offset {offset}: {other:?}"),
        }
    }
}

/// Every identity field set to extreme values: opening must return, never panic or hang.
#[test]
fn header_fields_at_extremes_never_panic() {
    with_watchdog(Duration::from_secs(120), || {
        let values = [0u64, 1, 2, 0x7f, u64::MAX, u64::MAX - 1, 1 << 32, 1 << 63];
        // Each value whole in every 8-byte field of the identity line, on every kind, and its
        // low 4 bytes at every 4-byte offset (the 4-byte fields) of an SPSC ring. (Until a
        // review of the docs found it, only the low 4 bytes were written, so 2^32, 2^63 and
        // the top values never reached an 8-byte field.)
        let kinds = [Kind::Spsc, Kind::Mpmc, Kind::Records, Kind::RecordsMpsc];
        for offset in (0..128).step_by(4) {
            for v in values {
                let v = v.to_le_bytes();
                let whole = if offset % 8 == 0 { &kinds[..] } else { &[] };
                for (kind, bytes) in whole
                    .iter()
                    .map(|&k| (k, &v[..]))
                    .chain([(Kind::Spsc, &v[..4])])
                {
                    let u = Unique::posix("extreme");
                    let _ring = common::small(u.builder(), kind, 64).create().unwrap();
                    poke(&u, offset, bytes);
                    if let Ok(r) = u.builder().init_timeout(SHORT).open() {
                        // Whatever opened must still work within its real bounds.
                        let _ = r.status();
                        let _ = r.check();
                        if let (Ok(mut tx), Ok(mut rx)) = (r.producer(), r.consumer()) {
                            let _ = tx.try_send(&[1, 2, 3]);
                            let _ = rx.try_recv(&mut [0u8; 64]);
                        }
                    }
                }
            }
        }
    });
}

#[test]
fn corrupt_cursors_and_lengths_are_reported_not_trusted() {
    let u = Unique::posix("cursors");
    let ring = spsc(&u).create().unwrap();
    // Producer cursor far ahead of the consumer's: refused at attach.
    poke(&u, 128, &1000u64.to_le_bytes());
    assert!(matches!(
        ring.spsc_consumer(),
        Err(AttachError::Corrupt(Corruption::Cursors { head: 1000, .. }))
    ));
    poke(&u, 128, &0u64.to_le_bytes());
    let mut tx = ring.spsc_producer().unwrap();
    let mut rx = ring.spsc_consumer().unwrap();
    tx.try_send(b"one").unwrap();
    tx.try_send(b"two").unwrap();
    // A length larger than the slot: reported, consumed, and the ring moves on.
    poke(&u, 8192, &4000u32.to_le_bytes());
    let mut buf = [0u8; 64];
    assert_eq!(
        rx.try_recv(&mut buf),
        Err(TryRecvError::Corrupt(Corruption::Length {
            cursor: 0,
            len: 4000,
            max: 32
        }))
    );
    assert_eq!(rx.try_recv(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"two");
    // The consumer cursor jumped past the producer's: the producer refuses to trust it.
    for _ in 0..8 {
        let _ = tx.try_send(b"fill");
    }
    poke(&u, 256, &(u64::MAX - 5).to_le_bytes());
    assert!(matches!(
        tx.try_send(b"x"),
        Err(TrySendError::Corrupt(_, Corruption::Cursors { .. }))
    ));
    // The producer cursor jumped: the consumer never reads it (it polls the slots), so it keeps
    // receiving what was published; `len` stays within the capacity; a new consumer refuses
    // the cursors at attach.
    poke(&u, 128, &(1u64 << 40).to_le_bytes());
    let mut drained = 0;
    while rx.try_recv(&mut buf).is_ok() {
        drained += 1;
    }
    assert_eq!(drained, 8);
    assert!(ring.len() <= 8);
    drop(rx);
    assert!(matches!(
        ring.spsc_consumer(),
        Err(AttachError::Corrupt(Corruption::Cursors { .. }))
    ));
}

#[test]
fn corrupt_mpmc_sequence_words_are_reported() {
    let u = Unique::posix("seq");
    let ring = u
        .builder()
        .mpmc()
        .capacity(4)
        .slot_size(8)
        .create()
        .unwrap();
    let mut tx = ring.mpmc_producer().unwrap();
    let mut rx = ring.mpmc_consumer().unwrap();
    // Slot 0's sequence word set to something no protocol step writes.
    poke(&u, 8192, &12345u64.to_le_bytes());
    assert!(matches!(
        tx.try_send(b"x"),
        Err(TrySendError::Corrupt(_, Corruption::Sequence { .. }))
    ));
    assert!(matches!(
        rx.try_read(),
        Err(TryRecvError::Corrupt(Corruption::Sequence { .. }))
    ));
    // A forged "committed" word with a huge length: consumed and reported, never read.
    poke(&u, 8192, &1u64.to_le_bytes());
    poke(&u, 8200, &1_000_000u32.to_le_bytes());
    poke(&u, 128, &1u64.to_le_bytes());
    assert!(matches!(
        rx.try_read(),
        Err(TryRecvError::Corrupt(Corruption::Length {
            len: 1_000_000,
            ..
        }))
    ));
}

#[test]
fn spsc_takes_one_producer_and_one_consumer() {
    let u = Unique::posix("roles");
    let ring = spsc(&u).create().unwrap();
    let tx = ring.spsc_producer().unwrap();
    let e = ring.spsc_producer().unwrap_err();
    assert_eq!(
        e,
        AttachError::RoleTaken {
            role: Role::Producer,
            pid: std::process::id()
        }
    );
    assert!(e.to_string().contains("already has a producer"));
    let rx = ring.spsc_consumer().unwrap();
    assert!(matches!(
        ring.spsc_consumer(),
        Err(AttachError::RoleTaken {
            role: Role::Consumer,
            ..
        })
    ));
    let eps = ring.endpoints();
    assert_eq!(eps.len(), 2);
    assert!(eps.iter().all(|e| e.alive && e.pid == std::process::id()));
    drop((tx, rx));
    assert!(ring.endpoints().is_empty());
    assert!(ring.spsc_producer().is_ok());
}

#[test]
fn a_dead_holder_is_replaced_and_a_live_one_is_not() {
    let u = Unique::posix("dead");
    let ring = spsc(&u).create().unwrap();
    // A process that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let word = |pid: u32| (u64::from(pid) | 1 << 32 | 12345 << 34).to_le_bytes();
    poke(&u, 512, &word(dead));
    assert!(ring.endpoints()[0].pid == dead && !ring.endpoints()[0].alive);
    let tx = ring.spsc_producer().unwrap();
    drop(tx);
    // A live process (our parent) with a start tag of 0 ("unknown"): kept.
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    poke(&u, 512, &(u64::from(parent) | 1 << 32).to_le_bytes());
    assert_eq!(
        ring.spsc_producer().unwrap_err(),
        AttachError::RoleTaken {
            role: Role::Producer,
            pid: parent
        }
    );
    // The same pid with another start time is a reused pid: replaced.
    poke(&u, 512, &word(parent));
    assert!(ring.spsc_producer().is_ok());
}

#[test]
fn open_or_create_is_race_free() {
    with_watchdog(Duration::from_secs(60), || {
        for _ in 0..20 {
            let u = Unique::posix("race");
            let b = u.builder().spsc().capacity(16).slot_size(64);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let b = b.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        b.open_or_create().unwrap()
                    })
                })
                .collect();
            let rings: Vec<Ring> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(rings.iter().filter(|r| r.created()).count(), 1);
            assert!(
                rings
                    .iter()
                    .all(|r| r.capacity() == 16 && r.slot_size() == 64)
            );
        }
    });
}

#[test]
fn open_or_create_checks_an_existing_ring_against_the_request() {
    let u = Unique::posix("ooc");
    let _a = spsc(&u).create().unwrap();
    let e = u
        .builder()
        .spsc()
        .capacity(16)
        .slot_size(32)
        .open_or_create()
        .unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::LayoutMismatch {
                field: "capacity",
                expected: 16,
                found: 8
            }
        ),
        "{e}"
    );
}

/// Shrinks a POSIX segment to `len` bytes behind the ring's back, as a hostile or careless
/// process with write access could.
fn shrink(u: &Unique, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(u.path())
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_segment_shrunk_after_attach_is_reported_not_fatal() {
    with_watchdog(Duration::from_secs(60), || {
        for (kind, shrink_to) in [
            (shmring::Kind::Spsc, 0),
            (shmring::Kind::Spsc, 8192),
            (shmring::Kind::Mpmc, 0),
            (shmring::Kind::Mpmc, 8192),
        ] {
            let u = Unique::posix("shrunk");
            let ring = u
                .builder()
                .kind(kind)
                .capacity(8)
                .slot_size(32)
                .create()
                .unwrap();
            let shrunk = Err(TryRecvError::Corrupt(Corruption::Shrunk));
            let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
            let mut send = |m: &[u8]| tx.try_send(m).map_err(|e| e.to_string());
            let mut recv = |b: &mut [u8]| rx.try_recv(b);
            send(b"before").unwrap();
            shrink(&u, shrink_to);
            // The message in the ring went with the truncated pages: the consumer is told.
            let mut buf = [0u8; 32];
            assert_eq!(recv(&mut buf), shrunk, "{kind:?} shrunk to {shrink_to}");
            // The producer is told at the latest when its view of the ring fills up.
            let refused = (0..=8).find_map(|_| send(b"after").err());
            assert!(
                refused.as_deref().is_some_and(|e| e.contains("truncated")),
                "{kind:?} shrunk to {shrink_to}: {refused:?}"
            );
            assert!(
                ring.check()
                    .iter()
                    .any(|f| f.error && f.message.contains("truncated")),
                "{:?}",
                ring.check()
            );
        }
    });
}

#[test]
fn a_sigbus_outside_any_ring_still_kills() {
    // The guard passes faults that are not in a ring's mapping on to the default action.
    let u = Unique::posix("not-a-ring");
    let _ring = spsc(&Unique::posix("guarded")).create().unwrap(); // installs the handler
    // SAFETY: the child maps a file of its own, shrinks it and touches it, then `_exit`s if it
    // survives; no locks are held across the fork in this single-threaded section.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(u.path())
            .unwrap();
        f.set_len(8192).unwrap();
        // SAFETY: a fresh shared mapping of our own file.
        let p = unsafe {
            use std::os::fd::AsRawFd;
            libc::mmap(
                core::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        f.set_len(0).unwrap();
        // SAFETY: in bounds of the mapping; past the file's end, so this raises SIGBUS.
        unsafe { core::ptr::write_volatile(p.cast::<u8>().add(4096), 1) };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let codes = common::reap(&[pid], Duration::from_secs(30));
    assert_eq!(codes, [-libc::SIGBUS]);
}
