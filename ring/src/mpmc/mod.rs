//! Multiple producers, multiple consumers: Dmitry Vyukov's bounded queue.
//!
//! Producers claim a cursor by compare-and-swap on `head`, consumers on `tail`. Each slot carries
//! a sequence word saying whose turn it is; for the message at cursor `pos`:
//!
//! | `seq` | meaning |
//! |---|---|
//! | `pos` | free for the producer of `pos` (written by the consumer of `pos - capacity`) |
//! | `pos + 1` | holds message `pos`, committed (written by its producer) |
//! | `pos + capacity` | read and released: free for the producer of `pos + capacity` |
//!
//! A consumer only reads a slot after seeing `seq == pos + 1` with Acquire, which pairs with the
//! producer's Release store made after the payload: this is the torn-read guard. A producer only
//! writes after seeing `seq == pos` with Acquire, which pairs with the previous consumer's Release
//! store made after its reads.
//!
//! The cursors themselves publish no payload. They are still read with Acquire and advanced with
//! AcqRel CASes, for one reason: so that the cursor value a thread starts from implies a lower
//! bound on the sequence word it then loads. Without it, a thread could read a cursor value far
//! ahead of the sequence word's value (both loads Relaxed) and could not tell a stale word from a
//! forged one. With it, any word outside the window in the table above is provably corrupt and
//! reported. On x86 this costs nothing (locked RMWs and plain loads already have these
//! semantics); on aarch64 it selects `casal`/`ldar` over `cas`/`ldr`. (The loom model found the
//! stale read when the cursors were Relaxed.)
//!
//! A claim dropped without a commit still publishes its slot, marked with a length of
//! `u32::MAX` ("skip"), so consumers step over it instead of waiting forever.
//!
//! Crash recovery: every endpoint records the cursor it is claiming in its registry entry
//! before its claim CAS, and clears it once the slot is handed on. A slot that stays stuck on a
//! claim whose every recorder is provably dead is settled by a peer: a consumer marks a dead
//! producer's slot abandoned (consumers then report the loss), a producer releases a slot a dead
//! consumer held (counted as reclaimed). See `recovery` and `docs/crash-recovery.md`.
//!
//! Every sequence word and length read from the segment is checked against the states above;
//! anything else is reported as [`Corruption`], never trusted.

mod consumer;
mod producer;
mod recovery;

pub use consumer::ReadSlot;
pub use producer::WriteSlot;
pub(crate) use recovery::stuck;

use crate::endpoint::Attached;
use crate::endpoint::{ClaimRecord, Stall};
use crate::error::Corruption;
use crate::kind::Role;
use crate::layout::RingMem;
use crate::sync::{AtomicU64, Ordering};

/// A sending end of an MPMC ring; any number may attach, from any processes.
///
/// # Examples
/// ```
/// let ring = shmring::Ring::builder().mpmc().capacity(8).slot_size(16).heap().create()?;
/// let mut a = ring.mpmc_producer()?;
/// let mut b = ring.mpmc_producer()?;
/// let mut rx = ring.mpmc_consumer()?;
/// a.try_send(b"from a")?;
/// b.try_send(b"from b")?;
/// let mut buf = [0u8; 16];
/// let n = rx.try_recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"from a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Producer {
    /// The ring, the registry entry, the consumers as last seen.
    ep: Attached,
    /// This endpoint's claim record, resolved once.
    record: ClaimRecord,
    /// How long the slot at `head` has been held by a consumer, as seen by this producer
    /// (crash recovery).
    stall: Stall,
}

/// A receiving end of an MPMC ring; any number may attach, from any processes.
#[derive(Debug)]
pub struct Consumer {
    /// The ring, the registry entry, the producers as last seen.
    ep: Attached,
    /// This endpoint's claim record, resolved once.
    record: ClaimRecord,
    /// How long the slot at `tail` has been claimed and not committed, as seen by this
    /// consumer (crash recovery).
    stall: Stall,
}

/// `head - tail` (wrapping, as the layout defines), at most the capacity.
fn len(mem: &RingMem) -> usize {
    // Relaxed (both): a snapshot; nothing is read through it. Tail first: it never passes
    // head, so a head read after it is at least as far.
    let tail = mem.tail().load(Ordering::Relaxed);
    let head = mem.head().load(Ordering::Relaxed);
    head.wrapping_sub(tail).min(mem.geometry().capacity) as usize
}

/// The registry's question about a dead entry (`registry::Placement::Any`): is its claim
/// record still evidence a recovery needs?
fn evidence(mem: &RingMem) -> impl Fn(Role, u64) -> bool + '_ {
    move |role, pos| stuck(mem, role, pos)
}

/// [`Corruption::Cursors`] if `head` is more than a capacity past `tail`, a state no run of the
/// protocol reaches (a forged or corrupt cursor line): producers would see every slot "full"
/// and consumers every slot "pending", for ever. Checked on the slow paths, every
/// [`STALL_POLLS`](crate::endpoint::STALL_POLLS) full or empty polls.
fn apart(mem: &RingMem) -> Option<Corruption> {
    // No model forges a cursor, and two more loads per poll of the crash models' spinning
    // threads would multiply their paths (as `passed`); `ring/tests/hostile.rs` tests this.
    if cfg!(loom) {
        return None;
    }
    let capacity = mem.geometry().capacity;
    // Acquire: pairs with the producers' AcqRel head CAS. The producer that moved `head` to h
    // had seen the slot of h - 1 released, so the consumer CAS that moved `tail` to
    // h - capacity or past happens before this load, and the load of `tail` after it
    // (Relaxed: ordered by this Acquire) sees that much: a live ring never shows more.
    let head = mem.head().load(Ordering::Acquire);
    let tail = mem.tail().load(Ordering::Relaxed);
    // (Signed: `tail` may have passed the `head` we loaded since; that is not a fault.)
    (head.wrapping_sub(tail) as i64 > capacity as i64).then_some(Corruption::Cursors {
        head,
        tail,
        capacity,
    })
}

/// Whether `cursor` has moved past `pos`: a peer has claimed the slot of `pos`. Only chooses
/// between two "not now" answers (`Full`/`Pending`, `Empty`/`Pending`), which every caller
/// (the blocking calls included) treats alike, and no memory access depends on it: so it is
/// left out of the loom models, where this extra load on every empty or full poll of the
/// spinning threads made the largest model 3.4 times slower (122 s → 418 s); it answers
/// `false` there. `ring/tests/promises.rs` tests the answers themselves.
#[inline]
fn passed(cursor: &AtomicU64, pos: u64) -> bool {
    if cfg!(loom) {
        return false;
    }
    // Relaxed: a snapshot that only picks the answer (above).
    cursor.load(Ordering::Relaxed).wrapping_sub(pos) as i64 > 0
}
