//! Listing, checking and garbage-collecting segments: `gc` removes a segment only when every
//! process recorded in it is provably dead, and never one with a live user.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Unique, with_watchdog};
use shmring::admin::{self, Verdict};
use shmring::{Backing, Cleanup, OpenError};

/// Offsets from docs/layout.md.
const READY: u64 = 8;
const CREATOR: u64 = 72;
const ENTRY0: u64 = 512;
const ENTRY_STRIDE: u64 = 128;

/// An endpoint word for `pid` with start tag `tag` (role 1 = producer).
fn word(pid: u32, role: u64, tag: u64) -> u64 {
    u64::from(pid) | role << 32 | tag << 34
}

/// This process's start tag as shmring computes it (`/proc/self/stat` field 22).
fn my_tag() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let start: u64 = after.split(' ').nth(19).unwrap().parse().unwrap();
    start % ((1 << 30) - 1) + 1
}

fn poke(unique: &Unique, offset: u64, value: u64) {
    unique.poke(offset, &value.to_le_bytes());
}

/// A pid that belonged to a process now reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn verdicts(prefix: &str, remove: bool) -> Vec<Verdict> {
    admin::gc_matching(
        remove,
        |b| matches!(b, Backing::Posix(n) if n.starts_with(prefix)),
    )
}

fn manual(unique: &Unique) -> shmring::RingBuilder {
    unique
        .builder()
        .spsc()
        .capacity(8)
        .slot_size(16)
        .cleanup(Cleanup::Manual)
}

#[test]
fn gc_removes_only_segments_whose_every_process_is_dead() {
    with_watchdog(Duration::from_secs(60), || {
        let prefix = format!("/shmring-test-gc-{}-", std::process::id());
        let tag = my_tag();
        let me = std::process::id();

        // 1. Live: created here, a live producer attached.
        let live = Unique::posix(&format!("gc-{me}-live"));
        let live_ring = manual(&live).create().unwrap();
        let _tx = live_ring.spsc_producer().unwrap();

        // 2. Reused pid: the creator and the registered producer carry this process's pid but
        //    another start time, as if a new process had been given the dead one's pid.
        let reused = Unique::posix(&format!("gc-{me}-reused"));
        drop(manual(&reused).create().unwrap().spsc_producer().unwrap());
        poke(&reused, CREATOR, word(me, 1, tag % ((1 << 30) - 1) + 1));
        poke(&reused, ENTRY0, word(me, 1, tag % ((1 << 30) - 1) + 1));

        // 3. Dead: creator and a consumer that died without detaching.
        let dead = Unique::posix(&format!("gc-{me}-dead"));
        drop(manual(&dead).create().unwrap());
        let gone = dead_pid();
        poke(&dead, CREATOR, word(gone, 1, 0));
        poke(&dead, ENTRY0 + ENTRY_STRIDE, word(gone, 2, 0));

        // 4. Never initialized, creator dead: the identity line written (as a creator writes it
        //    first), sized, no ready word.
        let unready = Unique::posix(&format!("gc-{me}-unready"));
        drop(manual(&unready).create().unwrap());
        unready.poke(READY, &0u32.to_le_bytes());
        poke(&unready, CREATOR, word(gone, 1, 0));
        assert!(matches!(
            unready.builder().init_timeout(Duration::ZERO).open(),
            Err(OpenError::NotInitialized {
                creator_pid: Some(p),
                creator_alive: false,
                ..
            }) if p == gone
        ));

        // 5. Dead creator but a live endpoint: kept.
        let mixed = Unique::posix(&format!("gc-{me}-mixed"));
        let mixed_ring = manual(&mixed).create().unwrap();
        poke(&mixed, CREATOR, word(gone, 1, 0));
        let _rx = mixed_ring.spsc_consumer().unwrap();

        let dry = verdicts(&prefix, false);
        let find = |v: &[Verdict], u: &Unique| {
            v.iter()
                .find(|v| v.backing == u.backing)
                .unwrap_or_else(|| panic!("{} not listed", u.name()))
                .stale
                .clone()
        };
        assert_eq!(find(&dry, &live), None);
        assert_eq!(find(&dry, &mixed), None);
        assert!(find(&dry, &reused).is_some());
        assert!(find(&dry, &dead).is_some());
        assert!(find(&dry, &unready).is_some());
        assert!(
            dry.iter().all(|v| v.removed.is_none()),
            "dry run removes nothing"
        );
        assert!(reused.path().exists() && dead.path().exists());

        let done = verdicts(&prefix, true);
        for u in [&reused, &dead, &unready] {
            let v = done.iter().find(|v| v.backing == u.backing).unwrap();
            assert_eq!(v.removed, Some(Ok(())), "{}", u.name());
            assert!(!u.path().exists(), "{} removed", u.name());
        }
        for u in [&live, &mixed] {
            assert!(u.path().exists(), "{} kept", u.name());
        }
        // The live rings still work.
        assert!(live_ring.check().iter().all(|f| !f.error));
    });
}

#[test]
fn list_and_status_describe_rings() {
    let unique = Unique::posix("list");
    let ring = unique
        .builder()
        .mpmc()
        .capacity(16)
        .slot_size(32)
        .create()
        .unwrap();
    let mut tx = ring.mpmc_producer().unwrap();
    tx.try_send(b"one").unwrap();
    tx.try_send(b"two").unwrap();
    let listed = admin::list();
    let entry = listed
        .iter()
        .find(|e| e.backing == unique.backing)
        .expect("listed");
    let status = entry.ring.as_ref().unwrap().status();
    assert_eq!(
        (status.capacity, status.slot_size, status.len()),
        (16, 32, 2)
    );
    assert_eq!(status.attached, [1, 0]);
    assert_eq!(status.endpoints.len(), 1);
    assert!(status.endpoints[0].alive);
    assert_eq!(status.creator, Some((std::process::id(), true)));
    assert_eq!(status.stale_reason(), None);
}

#[test]
fn check_reports_broken_invariants() {
    let unique = Unique::posix("check");
    let ring = unique
        .builder()
        .spsc()
        .capacity(4)
        .slot_size(8)
        .create()
        .unwrap();
    let mut tx = ring.spsc_producer().unwrap();
    tx.try_send(b"abc").unwrap();
    assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
    // Slot 0's length word (SPSC: the u32 at offset 0 of the slot at 8192) beyond the slot
    // size.
    unique.poke(8192, &999u32.to_le_bytes());
    let findings = ring.check();
    assert!(
        findings
            .iter()
            .any(|f| f.error && f.message.contains("length 999")),
        "{findings:?}"
    );
    // Cursors further apart than the capacity.
    poke(&unique, 128, 1000);
    assert!(
        ring.check()
            .iter()
            .any(|f| f.error && f.message.contains("more than the capacity"))
    );
}
