//! Crash recovery for record rings with many producers: the consumer settles a reservation
//! whose producer provably died before committing it.
//!
//! Every producer records the reservation it is about to make (its position and size, in its
//! registry entry) before its compare-and-swap on `head`, and right after a successful one
//! stores a `RESERVED` header carrying the length. When the record at `tail` stays uncommitted
//! for a liveness interval, the consumer looks at the claim records naming that position: if
//! every endpoint that recorded it is provably dead (pid and start time; never a timeout
//! alone), the record is turned into `ABANDONED` (its length from the `RESERVED` header) and
//! reported as lost ([`TryRecvError::Abandoned`](crate::TryRecvError::Abandoned), counted in
//! `abandoned`). A producer that is alive, however slow or stopped, is never robbed.
//!
//! The one delicate case is a producer that died between its compare-and-swap and its
//! `RESERVED` header: the header says nothing, and a claim record names the position but so
//! may the record of a producer whose compare-and-swap lost the race there and that died before
//! it could try again (their sizes may differ). Such a winner wrote nothing (the header goes to
//! memory before any payload byte), so its bytes hold no word of the current lap, and no
//! reservation starts inside them. Of the sizes the dead recorders name, exactly one fits that:
//! its bytes hold no current-lap word and no claim record names a position inside them, and it
//! ends where something does start (`head`, a current-lap header, or a position another claim
//! record names). A loser's size either ends inside the winner's untouched bytes (nothing
//! starts there) or covers the start of the reservation after the winner's. If no size is
//! the only one that fits yet (the next producer has not announced itself), nothing is done
//! and the next look tries again.

use super::producer::PAD_FLAG;
use super::{ABANDONED, Look, PADDING, look, offset, record_size, used, word};
use crate::kind::Role;
use crate::layout::{MAX_ENDPOINTS, RECORD_ALIGN, RingMem};
use crate::registry::EndpointWord;
use crate::sync::{Ordering, Step, crash_point};

/// The registry's question about a dead producer's entry (`registry::Placement::Any`): does
/// its claim record name a position not yet consumed? Then a recovery may need it.
pub(super) fn evidence(mem: &RingMem) -> impl Fn(Role, u64) -> bool + '_ {
    move |role, pos| {
        // Relaxed (both): a hint; `settle` decides from fresh loads.
        let tail = mem.tail().load(Ordering::Relaxed);
        let head = mem.head().load(Ordering::Relaxed);
        role == Role::Producer && pos.wrapping_sub(tail) < head.wrapping_sub(tail)
    }
}

/// Settles the reservation at `pos` (= the consumer's `tail`, which only the caller moves) if
/// every producer that recorded a claim there is provably dead. Returns whether it did; the
/// header at `pos` then reads `ABANDONED` (or `PADDING`, for padding a producer died
/// reserving), for the consumer to step over and report.
#[cold]
pub(super) fn settle(mem: &RingMem, pos: u64) -> bool {
    let header = mem.header();
    // Acquire: the producers' claim records are stored before their head CAS; `head` past
    // `pos` synchronises with the CAS that moved it there and the ones before it.
    let head = mem.head().load(Ordering::Acquire);
    if used(head, pos, mem.geometry().capacity).is_err() || head == pos {
        return false;
    }
    let wanted = pos.wrapping_add(1);
    let mut claims = [0u64; MAX_ENDPOINTS];
    let mut sizes = [0u64; MAX_ENDPOINTS];
    let mut owners = [0usize; MAX_ENDPOINTS];
    let mut n = 0;
    for (entry, e) in header.endpoints.iter().enumerate() {
        // Acquire: pairs with the Release store of the record in `Producer::reserve`: the
        // length beside it, and the recorder's earlier headers, are visible. (The winner's
        // record is visible at all through `head`, above.) A stale record of a live endpoint
        // only delays recovery.
        claims[entry] = mem.claim(entry).load(Ordering::Acquire);
        if claims[entry] != wanted {
            continue;
        }
        // Acquire: pairs with the registrant's CAS.
        let owner = EndpointWord(e.owner.load(Ordering::Acquire));
        if owner.role() != Some(Role::Producer) {
            continue;
        }
        if owner.is_alive() {
            return false; // alive: slow or stopped, never robbed
        }
        // Relaxed: stored before the claim, as the claim.
        sizes[n] = mem.claim_len(entry).load(Ordering::Relaxed);
        owners[n] = entry;
        n += 1;
    }
    if n == 0 {
        return false; // unattributed: leave it (and the stall) visible
    }
    let at = mem.record_word(offset(mem, pos));
    // Acquire: for a header the winner published (MESSAGE, PADDING), pairs with its Release
    // store. A RESERVED header is stored Relaxed *before* a Release fence, so reading it is no
    // synchronises-with edge: what the settler relies on there is pair 20, the fence keeping
    // the header ahead of any payload byte in the hardware's store order (the recorders are
    // dead: nothing they wrote is still to come).
    let found = at.load(Ordering::Acquire);
    let (size, state) = match Look::of(mem, pos, found) {
        Look::Reserved(len) => (record_size(len) as u64, ABANDONED),
        Look::Empty => match only_fit(mem, pos, head, &sizes[..n], &claims) {
            Some(flagged) if flagged & PAD_FLAG != 0 => (flagged & !PAD_FLAG, PADDING),
            Some(size) => (size, ABANDONED),
            None => return false,
        },
        // Committed after all, or corrupt (the consumer's read reports it).
        _ => return false,
    };
    if size > head.wrapping_sub(pos) {
        return false; // a RESERVED header running past `head`: corrupt, reported by the read
    }
    let settled = word(mem, pos, state, size as usize - RECORD_ALIGN);
    // AcqRel: the recorders are dead, so the compare-and-swap only proves the word is what we
    // decided on; our successor (if we die) sees the settled word.
    if at
        .compare_exchange(found, settled, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    crash_point(Step::Settled);
    for &entry in &owners[..n] {
        // Relaxed: the record is evidence only; the reservation is settled.
        let _ = mem
            .claim(entry)
            .compare_exchange(wanted, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
    if state == ABANDONED {
        // Relaxed: a statistic.
        header.wait.abandoned.fetch_add(1, Ordering::Relaxed);
    }
    true
}

/// Of the (flagged) sizes the dead recorders of `pos` name, the only one that fits what the
/// ring holds (module docs), if exactly one does.
fn only_fit(mem: &RingMem, pos: u64, head: u64, sizes: &[u64], claims: &[u64]) -> Option<u64> {
    let mut fit = None;
    for &flagged in sizes {
        let size = flagged & !PAD_FLAG;
        if fit.is_some_and(|f: u64| f & !PAD_FLAG == size) {
            continue;
        }
        if fits(mem, pos, size, head, claims) {
            if fit.is_some() {
                return None; // two fit: wait until the ring says more
            }
            fit = Some(flagged);
        }
    }
    fit
}

/// Whether a reservation of `size` bytes at `pos` is consistent with the ring: inside the data
/// area and before `head`; no current-lap word and no claimed position inside; and something
/// starts where it ends.
fn fits(mem: &RingMem, pos: u64, size: u64, head: u64, claims: &[u64]) -> bool {
    let geo = mem.geometry();
    if size < RECORD_ALIGN as u64
        || !size.is_multiple_of(RECORD_ALIGN as u64)
        || offset(mem, pos) as u64 + size > geo.capacity
        || size > head.wrapping_sub(pos)
    {
        return false;
    }
    let end = pos.wrapping_add(size);
    let inside = |p: u64| p.wrapping_sub(pos).wrapping_sub(1) < size - 1;
    if claims.iter().any(|&c| c != 0 && inside(c.wrapping_sub(1))) {
        return false;
    }
    let mut p = pos.wrapping_add(RECORD_ALIGN as u64);
    while p != end {
        // Relaxed: only tells "written this lap" from "not"; a word being written by a live
        // producer reads either way, and either answer rejects or defers, never settles wrong.
        let w = mem.record_word(offset(mem, p)).load(Ordering::Relaxed);
        if Look::of(mem, p, w) != Look::Empty {
            return false;
        }
        p = p.wrapping_add(RECORD_ALIGN as u64);
    }
    end == head || look(mem, end) != Look::Empty || claims.iter().any(|&c| c == end.wrapping_add(1))
}
