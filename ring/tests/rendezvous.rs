//! Race-free rendezvous: eight processes call `open_or_create` on one name at the same instant,
//! a hundred times over. Exactly one creates; every other one attaches to a fully initialized
//! ring (validated header, usable endpoints), never to a half-built one.
//!
//! The racers are this test binary re-executed (so each is a clean single-threaded process, not
//! a fork of the multi-threaded harness), running only `racer`, which does nothing unless the
//! environment names a ring.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Unique, with_watchdog};

const RACERS: usize = 8;
const ROUNDS: usize = 100;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One racer: wait for the common start instant, open-or-create, prove the ring usable, and
/// print `created` or `opened`.
#[test]
fn racer() {
    let (Ok(name), Ok(start)) = (
        std::env::var("SHMRING_RACE_NAME"),
        std::env::var("SHMRING_RACE_START"),
    ) else {
        return;
    };
    let start: u128 = start.parse().unwrap();
    while now_ns() < start {
        std::hint::spin_loop();
    }
    let ring = shmring::Ring::builder()
        .mpmc()
        .capacity(64)
        .slot_size(32)
        .posix(&name)
        .cleanup(shmring::Cleanup::Manual)
        .open_or_create()
        .expect("open_or_create");
    assert_eq!((ring.capacity(), ring.slot_size()), (64, 32));
    let mut tx = ring.mpmc_producer().expect("attach");
    tx.try_send(&std::process::id().to_le_bytes())
        .expect("send");
    println!("{}", if ring.created() { "created" } else { "opened" });
}

#[test]
fn eight_processes_race_open_or_create_a_hundred_times() {
    with_watchdog(Duration::from_secs(300), || {
        let exe = std::env::current_exe().unwrap();
        for round in 0..ROUNDS {
            let unique = Unique::posix("race");
            let start = now_ns() + 30_000_000; // 30 ms: every racer is spawned and spinning
            let children: Vec<_> = (0..RACERS)
                .map(|_| {
                    Command::new(&exe)
                        .args(["--exact", "racer", "--nocapture", "--test-threads=1"])
                        .env("SHMRING_RACE_NAME", unique.name())
                        .env("SHMRING_RACE_START", start.to_string())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let mut created = 0;
            for child in children {
                let out = child.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "round {round}: racer failed: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                match (stdout.contains("created"), stdout.contains("opened")) {
                    (true, false) => created += 1,
                    (false, true) => {}
                    _ => panic!("round {round}: racer said {stdout:?}"),
                }
            }
            assert_eq!(created, 1, "round {round}: exactly one creator");
            let ring = unique.builder().open().unwrap();
            assert_eq!(ring.len(), RACERS, "round {round}: every racer sent once");
        }
    });
}
