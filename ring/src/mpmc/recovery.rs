//! MPMC crash recovery: who holds a claim (each endpoint's claim record), when a stuck slot is
//! worth a look (a stall seen for a liveness interval), and settling it once every recorded
//! claimer is proven dead (`recover`). The hot path only stores a claim record before each
//! claim; everything else here runs on the "full" and "empty" paths. See
//! `docs/crash-recovery.md`.

use crate::endpoint::ClaimRecord;
use crate::kind::Role;
use crate::layout::{ABANDONED, RingMem, Side};
use crate::registry::EndpointWord;
use crate::sync::{Ordering, Step, crash_point};
use crate::wait;

/// The cursor `record` names, if the slot is still stuck on a claim of `role` there: a claim
/// its endpoint made and never finished, which with no call in progress means a leaked guard.
pub(super) fn leaked(mem: &RingMem, record: &ClaimRecord, role: Role) -> Option<u64> {
    if !crate::sync::recording() {
        return None;
    }
    // Relaxed: our own record, written by this thread.
    let pos = record.claim().load(Ordering::Relaxed).checked_sub(1)?;
    stuck(mem, role, pos).then_some(pos)
}

/// Whether the slot of cursor `pos` is stuck on a claim by an endpoint of `role`: claimed (the
/// role's cursor is past `pos`) and not yet committed (a producer's: `seq == pos`) or not yet
/// released (a consumer's: `seq == pos + 1`). A snapshot; `recover` re-checks under its lock.
pub(crate) fn stuck(mem: &RingMem, role: Role, pos: u64) -> bool {
    let (cursor, stuck_seq) = match role {
        Role::Producer => (mem.head(), pos),
        Role::Consumer => (mem.tail(), pos.wrapping_add(1)),
    };
    let idx = (pos & mem.geometry().mask()) as usize;
    // Acquire (both): as in `Producer::claim_pos` and `Consumer::observe`.
    cursor.load(Ordering::Acquire).wrapping_sub(pos) as i64 > 0
        && mem.seq(idx).load(Ordering::Acquire) == stuck_seq
}

/// The cursor at `tail` if a producer claimed its slot and has not committed it.
pub(super) fn uncommitted(mem: &RingMem) -> Option<u64> {
    // Acquire: as in `Consumer::observe`.
    let pos = mem.tail().load(Ordering::Acquire);
    stuck(mem, Role::Producer, pos).then_some(pos)
}

/// The cursor of the previous lap's message in the slot at `head`, if a consumer claimed it
/// and has not released it (the ring is full behind it).
pub(super) fn held(mem: &RingMem) -> Option<u64> {
    // Acquire: as in `Producer::claim_pos`.
    let head = mem.head().load(Ordering::Acquire);
    let pos = head.wrapping_sub(mem.geometry().capacity);
    stuck(mem, Role::Consumer, pos).then_some(pos)
}

/// Settles the slot of cursor `pos`, stuck on a claim by endpoints of `role`, if every
/// endpoint of that role that recorded the claim is provably dead (pid and start time). Returns
/// whether it did. A live claimer (slow, or stopped with SIGSTOP) is never robbed.
///
/// - `Role::Producer`: the slot was claimed and never committed. It is marked abandoned and
///   published, so consumers step over it and report the loss (`TryRecvError::Abandoned`).
/// - `Role::Consumer`: the slot was claimed for reading and never released. It is released to
///   the producers; its message had been delivered to the dead consumer (counted as reclaimed).
///
/// `me` is the caller's endpoint word, which holds the recovery lock meanwhile (a lock that a
/// dead holder loses; the work is idempotent, so a successor redoes it). See
/// `docs/crash-recovery.md`.
#[cold]
pub(super) fn recover(mem: &RingMem, me: u64, pos: u64, role: Role) -> bool {
    let lock = mem.recovery();
    // Acquire: pairs with the Release that ends a previous recovery, so we see its writes.
    let holder = lock.load(Ordering::Acquire);
    if holder != 0 && EndpointWord(holder).is_alive() {
        return false; // someone else is at it
    }
    // AcqRel: as above, and a dead holder's partial work is redone below (it is idempotent).
    // Failure Relaxed: someone else took the lock; we leave without reading anything.
    if lock
        .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    crash_point(Step::RecoveryLocked);
    let done = recover_locked(mem, pos, role);
    // Release: pairs with the Acquire of the next recoverer.
    lock.store(0, Ordering::Release);
    if done {
        wait::notify(
            mem,
            match role {
                Role::Producer => Side::Data,
                Role::Consumer => Side::Space,
            },
        );
    }
    done
}

fn recover_locked(mem: &RingMem, pos: u64, role: Role) -> bool {
    let header = mem.header();
    let idx = (pos & mem.geometry().mask()) as usize;
    let cursor = match role {
        Role::Producer => mem.head(),
        Role::Consumer => mem.tail(),
    };
    // Acquire: the cursor past `pos` synchronises with the winning claimer's CAS (every later
    // CAS continues its release sequence), so its claim record, stored before that CAS, is
    // visible.
    if cursor.load(Ordering::Acquire).wrapping_sub(pos) as i64 <= 0 {
        return false;
    }
    let wanted = pos.wrapping_add(1);
    let mut owners = [0usize; crate::layout::MAX_ENDPOINTS];
    let mut n = 0;
    for (entry, e) in header.endpoints.iter().enumerate() {
        // Relaxed: see above for why the winner's record is visible; a stale record of a live
        // endpoint only delays recovery.
        if mem.claim(entry).load(Ordering::Relaxed) != wanted {
            continue;
        }
        // Acquire: pairs with the registrant's CAS.
        let owner = EndpointWord(e.owner.load(Ordering::Acquire));
        if owner.role() != Some(role) {
            continue; // the other side's record of the same cursor
        }
        if owner.is_alive() {
            return false; // alive: slow or stopped, never robbed
        }
        owners[n] = entry;
        n += 1;
    }
    if n == 0 {
        return false; // unattributed: leave it (and the stall) visible
    }
    // The claimers are dead, so only we can write this slot now, provided it is still stuck.
    // A compare-and-swap reads the latest value, so a claimer that finished before dying makes
    // it fail. AcqRel/Acquire: as for the endpoints' own loads and stores of the word.
    let seq = mem.seq(idx);
    let settled = match role {
        Role::Producer => {
            // Still uncommitted: a no-op CAS proves it, then the marker is published.
            if seq
                .compare_exchange(pos, pos, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return false;
            }
            // Relaxed: published by the Release store of the sequence word just below.
            mem.len(idx).store(ABANDONED, Ordering::Relaxed);
            crash_point(Step::MarkerWritten);
            // Release: pairs with the consumers' Acquire load of `seq` in `observe`.
            seq.store(wanted, Ordering::Release);
            &header.wait.abandoned
        }
        Role::Consumer => {
            // Still unreleased: release it as the dead consumer would have. Release pairs with
            // the producers' Acquire load in `claim_pos`; the dead reader's accesses are over.
            let free = pos.wrapping_add(mem.geometry().capacity);
            if seq
                .compare_exchange(wanted, free, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return false;
            }
            &header.wait.reclaimed
        }
    };
    crash_point(Step::Settled);
    for &entry in &owners[..n] {
        // Relaxed: the record is evidence only; the slot is settled.
        let _ = mem
            .claim(entry)
            .compare_exchange(wanted, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
    // Relaxed: a statistic.
    settled.fetch_add(1, Ordering::Relaxed);
    true
}
