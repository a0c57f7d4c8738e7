//! Containers: a `/dev/shm` too small for the ring, a ring whose pages were never reserved
//! running out mid-stream, System V limits. Each scenario runs in a re-executed child with a
//! private mount and IPC namespace, a tiny tmpfs over `/dev/shm` (as Docker's 64 MiB default,
//! only smaller); where this machine does not allow namespaces the test says so and passes.

mod common;

use std::time::Duration;

use common::{expect_child, in_child, private_dev_shm, rerun};
use shmring::{CreateError, Kind, Ring, TryRecvError, TrySendError};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `scenario` in a child inside a private `/dev/shm` of `size`, or skips.
fn in_tiny_shm(test: &str, size: &str, scenario: impl FnOnce()) {
    if !in_child(test) {
        expect_child(test, &rerun(test, LIMIT));
        return;
    }
    if let Err(why) = private_dev_shm(size) {
        println!("skipped: cannot make a private /dev/shm here ({why})");
        return;
    }
    scenario();
}

fn dev_shm_is_empty() -> bool {
    std::fs::read_dir("/dev/shm").unwrap().next().is_none()
}

/// Issue 12: a 4 MiB ring on a 1 MiB `/dev/shm` used to be created, then lose every message
/// sent past the first megabyte. Now create refuses it, says why with the numbers, and leaves
/// nothing behind; for both kinds.
#[test]
fn a_full_dev_shm_refuses_the_ring_at_create() {
    in_tiny_shm("a_full_dev_shm_refuses_the_ring_at_create", "1m", || {
        for kind in [Kind::Spsc, Kind::Mpmc] {
            let made = Ring::builder()
                .kind(kind)
                .capacity(1024)
                .slot_size(4096)
                .posix("/full1")
                .create();
            match made {
                Err(e @ CreateError::NoSpace { .. }) => {
                    let CreateError::NoSpace {
                        needed,
                        available,
                        ref place,
                    } = e
                    else {
                        unreachable!()
                    };
                    assert!(needed > 4 << 20, "{kind}: {e}");
                    assert!(available.is_some_and(|a| a <= 1 << 20), "{kind}: {e}");
                    assert_eq!(place, "/dev/shm");
                    let text = e.to_string();
                    assert!(text.contains("--shm-size"), "{text}");
                }
                other => panic!("{kind}: expected NoSpace, got {other:?}"),
            }
            assert!(
                dev_shm_is_empty(),
                "{kind}: the half-made object was left behind"
            );
        }
        // What fits is still made.
        Ring::builder()
            .spsc()
            .capacity(64)
            .slot_size(1024)
            .posix("/fits")
            .create()
            .unwrap();
    });
}

/// Found by a black-box test of the docs: on a `/dev/shm` with no room at all, the first write
/// (the identity line) fails, and create said only "pwrite failed: No space left on device"
/// instead of the promised message with the numbers.
#[test]
fn a_dev_shm_with_no_room_at_all_refuses_with_the_numbers() {
    in_tiny_shm(
        "a_dev_shm_with_no_room_at_all_refuses_with_the_numbers",
        "1m",
        || {
            use std::io::Write;
            let mut filler = std::fs::File::create("/dev/shm/filler").unwrap();
            let page = [0u8; 4096];
            while filler.write_all(&page).is_ok() {}
            drop(filler);
            for kind in [Kind::Spsc, Kind::Mpmc, Kind::Records] {
                match common::small(Ring::builder().posix("/tiny"), kind, 8).create() {
                    Err(e @ CreateError::NoSpace { .. }) => {
                        let text = e.to_string();
                        assert!(text.contains("--shm-size"), "{kind}: {text}");
                    }
                    other => panic!("{kind}: expected NoSpace, got {other:?}"),
                }
                let left: Vec<_> = std::fs::read_dir("/dev/shm")
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(
                    left,
                    ["filler"],
                    "{kind}: the half-made object was left behind"
                );
            }
            std::fs::remove_file("/dev/shm/filler").unwrap();
        },
    );
}

/// A ring sized lazily (as an older creator, or a foreign one, leaves it: `ftruncate` only, its
/// pages holes) runs out of `/dev/shm` mid-stream. Every send that returned `Ok` is received,
/// byte for byte; the first that could not land says `OutOfSpace`, not "truncated"; the
/// consumer, after the last message, says the same.
#[test]
fn a_lazily_sized_ring_never_acknowledges_a_lost_message() {
    let test = "a_lazily_sized_ring_never_acknowledges_a_lost_message";
    if !in_child(test) {
        expect_child(test, &rerun(test, LIMIT));
        return;
    }
    // The header of a real 4 MiB ring, made where there is room.
    let name = format!("/shmring-lazy-{}", std::process::id());
    let header = {
        let ring = Ring::builder()
            .spsc()
            .capacity(1024)
            .slot_size(4000)
            .posix(&name)
            .create()
            .unwrap();
        let bytes = std::fs::read(format!("/dev/shm{name}")).unwrap();
        (bytes[..8192].to_vec(), ring.segment_size())
    };
    if let Err(why) = private_dev_shm("1m") {
        println!("skipped: cannot make a private /dev/shm here ({why})");
        return;
    }
    // The object an older creator leaves: the header written, the rest a hole.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(format!("/dev/shm{name}")).unwrap();
        f.write_all_at(&header.0, 0).unwrap();
        f.set_len(header.1 as u64).unwrap();
    }
    let ring = Ring::builder().posix(&name).open().unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let msg = |i: u32| -> Vec<u8> { (0..4000).map(|k| (i as usize * 7 + k) as u8).collect() };
    let mut sent = 0u32;
    let refused = loop {
        match tx.try_send(&msg(sent)) {
            Ok(()) => sent += 1,
            Err(e) => {
                let lost = matches!(e, TrySendError::Corrupt(_, shmring::Corruption::OutOfSpace));
                break (lost, e.to_string());
            }
        }
        assert!(
            sent < 1024,
            "1 MiB of tmpfs cannot hold 1024 messages of 4000 bytes"
        );
    };
    assert!(refused.0, "after {sent} sends: {}", refused.1);
    assert!(
        refused.1.contains("could not be allocated"),
        "{}",
        refused.1
    );
    let mut buf = vec![0u8; 4000];
    for i in 0..sent {
        let n = rx.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &msg(i)[..], "message {i} of {sent} acknowledged");
    }
    assert_eq!(
        rx.try_recv(&mut buf),
        Err(TryRecvError::Corrupt(shmring::Corruption::OutOfSpace))
    );
    println!("{sent} messages acknowledged and received before /dev/shm ran out");
}

/// System V limits name the sysctl and its value (set inside a private IPC namespace, so the
/// host's limits are untouched).
#[test]
fn a_sysv_limit_is_named() {
    in_tiny_shm("a_sysv_limit_is_named", "1m", || {
        std::fs::write("/proc/sys/kernel/shmmax", "65536").unwrap();
        let made = Ring::builder()
            .spsc()
            .capacity(1024)
            .slot_size(1024)
            .sysv(0x5EED)
            .create();
        match made {
            Err(CreateError::SysvLimit {
                sysctl: "kernel.shmmax",
                value: 65536,
                needed,
            }) => assert!(needed > 65536),
            other => panic!("expected the shmmax limit, got {other:?}"),
        }
    });
}
