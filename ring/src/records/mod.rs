//! Variable-length records: a byte ring where a message takes the bytes it needs.
//!
//! Two kinds share this module: [`Kind::Records`] (one producer) and
//! [`Kind::RecordsMpsc`] (many producers); both have one consumer.
//!
//! The data area is `capacity` bytes (a power of two) right after the header. Each record
//! starts on an 8-byte boundary with an 8-byte **header word**, followed by its payload rounded
//! up to 8 bytes, so a record of `len` bytes takes `8 + round_up(len, 8)`:
//!
//! ```text
//! header word (u64, little-endian, accessed atomically):
//!   bits  0..32  length: the payload (MESSAGE, RESERVED), or the bytes after the header
//!                (PADDING, CONSUMED, ABANDONED); the record takes 8 + round_up(length, 8)
//!   bits 32..40  state: 1 MESSAGE    committed; the consumer may read it
//!                       2 PADDING    nothing to read: the end of the data area where a record
//!                                    did not fit, an aborted claim, a commit's unused tail
//!                       3 RESERVED   many producers: claimed, being written
//!                       4 CONSUMED   the consumer read it and is zeroing it
//!                       5 ABANDONED  many producers: its producer died before committing
//!   bits 40..64  lap: (position / capacity) mod 2^24, of the position the record starts at
//! ```
//!
//! `head` and `tail` (the header's cursor lines) are byte positions: producers reserve from
//! `head`, the consumer releases at `tail`, and a record never wraps: a producer that finds too
//! little room before the end reserves the rest as padding and starts again at offset 0.
//!
//! - **One producer** keeps `head` in a local (no read-modify-write anywhere): it writes the
//!   payload, clears the word where the next record will start, then commits with one
//!   **Release** store of the header word, then stores `head` (Relaxed) for observers.
//! - **Many producers** reserve with a compare-and-swap on `head`, store a `RESERVED` header
//!   (so a consumer can tell "being written" from "not yet claimed", and recovery knows the
//!   length), write the payload, and commit with one **Release** store of the header word.
//! - **The consumer** loads the header word at `tail` with **Acquire**: a committed header *of
//!   the current lap* makes the payload visible; zero, or a header of the previous lap, means
//!   nothing yet. After reading it stores `tail` with **Release** (once per batch), which the
//!   producers acquire before reusing those bytes.
//!
//! The hazard every byte ring must close: the next lap's records start anywhere, so the word
//! where one starts may hold an old payload's bytes, which could look like a header of the new
//! lap, and the consumer may look there (the record before it is committed) before that record's
//! producer has written its header. Which word that is, only a producer knows:
//!
//! - With **one producer**, it clears that word before committing the record before it
//!   (`Producer::clear_next`): zero if the consumer has released it; if not, the reservation
//!   ends exactly at `tail + capacity` and the word is the header of the unconsumed record one
//!   lap back, which reads as "nothing yet" already. The consumer then writes nothing to the data
//!   area, as an SPSC consumer writes nothing to a slot, and a consumer that dies mid-read
//!   leaves the record to its successor (at-least-once, as SPSC).
//! - With **many producers** the word may already be another producer's header by then, so the
//!   consumer makes the bytes safe instead, as Agrona's does: it marks a record it read
//!   `CONSUMED`, **zeroes the rest of it**, and only then stores `tail`. A consumer that dies
//!   while zeroing leaves `CONSUMED`, so its successor finishes the zeroing instead of
//!   delivering a half-zeroed message. (Zeroed bytes also let recovery reason about a dead
//!   producer's untouched reservation: `recovery`.)
//!
//! Either way a header left in place carries its lap, so it is never taken for a record of the
//! next one; every record start is rewritten each lap (cleared, or written as a header), so a
//! left-over header there is at most one lap old and 24 bits of lap cannot wrap onto it.
//!
//! One consumer: many would need to claim records (a compare-and-swap on `tail`) and agree on
//! who zeroes what before `tail` may pass it, which costs the one consumer's simple path; one
//! consumer per ring is the design, as in Agrona's many-to-one ring buffer. Several consumers can
//! share one ring by taking turns (the registry lets one attach after another leaves).
//!
//! Every header word read from the segment is checked before use: the lap, the state, the
//! length against the largest message, and that the record ends inside the data area. A
//! current-lap word that fails is [`Corruption::Record`], never an
//! out-of-bounds access.
//!
//! Crash recovery is in `recovery`: with many producers the consumer settles a reservation whose
//! producer provably died; with one producer, a successor continues after the last committed
//! record (`committed_end`): what its dead predecessor half-wrote beyond it is never read,
//! because every record start is cleared before the record before it is committed.

mod consumer;
mod producer;
mod recovery;

pub use consumer::{Consumer, ReadRecord};
pub use producer::{Producer, WriteRecord};

use crate::error::Corruption;
use crate::kind::Kind;
use crate::layout::{RECORD_ALIGN, RingMem};
use crate::registry::Placement;
use crate::sync::Ordering;

/// The fields of a header word.
pub(crate) const STATE_SHIFT: u32 = 32;
const LAP_SHIFT: u32 = 40;
const LAP_MASK: u64 = (1 << 24) - 1;
pub(crate) const LEN_MASK: u64 = u32::MAX as u64;
pub(crate) const MESSAGE: u64 = 1;
pub(crate) const PADDING: u64 = 2;
pub(crate) const RESERVED: u64 = 3;
pub(crate) const CONSUMED: u64 = 4;
pub(crate) const ABANDONED: u64 = 5;

/// The registry entry of the consumer with many producers (the producers take the others).
const MPSC_CONSUMER_ENTRY: usize = 0;

/// The entry a role takes on a ring of `kind`: one producer and one consumer take fixed entries
/// (as SPSC), many producers any entry but the consumer's.
fn placement<'a>(
    kind: Kind,
    producer: bool,
    evidence: &'a dyn Fn(crate::Role, u64) -> bool,
) -> Placement<'a> {
    match (kind, producer) {
        (Kind::RecordsMpsc, true) => Placement::Any {
            evidence,
            first: MPSC_CONSUMER_ENTRY + 1,
        },
        (Kind::RecordsMpsc, false) => Placement::Fixed(MPSC_CONSUMER_ENTRY),
        (_, true) => Placement::Fixed(0),
        (_, false) => Placement::Fixed(1),
    }
}

/// The lap of `pos` as a header word carries it.
#[inline(always)]
fn lap(mem: &RingMem, pos: u64) -> u64 {
    (pos >> mem.geometry().capacity.trailing_zeros()) & LAP_MASK
}

/// The header word of a record at `pos` saying `state` over `len` bytes.
#[inline(always)]
fn word(mem: &RingMem, pos: u64, state: u64, len: usize) -> u64 {
    lap(mem, pos) << LAP_SHIFT | state << STATE_SHIFT | len as u64
}

/// `w` with its state replaced by `state`.
#[inline(always)]
fn restate(w: u64, state: u64) -> u64 {
    (w & !(0xFF << STATE_SHIFT)) | state << STATE_SHIFT
}

/// The data offset of `pos`.
#[inline(always)]
fn offset(mem: &RingMem, pos: u64) -> usize {
    (pos & mem.geometry().mask()) as usize
}

/// The bytes a record of `len` payload bytes takes: the header, and the payload rounded up to
/// 8 bytes.
#[inline(always)]
pub(crate) const fn record_size(len: usize) -> usize {
    RECORD_ALIGN + len.next_multiple_of(RECORD_ALIGN)
}

/// What the header word of a record at some position says, once checked against the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// Nothing there yet (zero, or a header of the previous lap).
    Empty,
    /// A committed message of this many bytes.
    Message(usize),
    /// Many producers: a reservation for a message of this many bytes, being written.
    Reserved(usize),
    /// Bytes to step over, the header included: padding, or a record the consumer finished
    /// with (`state` says which).
    Skip {
        /// The bytes the record takes.
        size: usize,
        /// PADDING, CONSUMED or ABANDONED.
        state: u64,
    },
    /// A current-lap word no producer writes ([`Corruption::Record`]).
    Corrupt(u64),
}

impl Look {
    /// Reads and checks the header word `w` of a record at `pos`.
    #[inline(always)]
    fn of(mem: &RingMem, pos: u64, w: u64) -> Look {
        if w >> LAP_SHIFT != lap(mem, pos) || w == 0 {
            return Look::Empty;
        }
        let geo = mem.geometry();
        let len = (w & LEN_MASK) as usize;
        let room = geo.capacity as usize - offset(mem, pos);
        if record_size(len) > room {
            return Look::Corrupt(w);
        }
        match (w >> STATE_SHIFT) & 0xFF {
            MESSAGE if len <= geo.slot_size => Look::Message(len),
            RESERVED if len <= geo.slot_size => Look::Reserved(len),
            // CONSUMED and ABANDONED are written only in rings with many producers (their
            // consumer marks what it releases; their recovery settles dead reservations).
            state @ (PADDING | CONSUMED | ABANDONED)
                if state == PADDING || geo.kind == Kind::RecordsMpsc =>
            {
                Look::Skip {
                    size: record_size(len),
                    state,
                }
            }
            _ => Look::Corrupt(w),
        }
    }
}

/// Reads and checks the header word of the record at `pos`.
#[inline(always)]
pub(crate) fn look(mem: &RingMem, pos: u64) -> Look {
    // Acquire: pairs with the producer's Release store of the header in `Producer::publish`
    // (or of padding in `Producer::reserve_slow` and `abort`): the payload is visible once the
    // word is.
    let w = mem.record_word(offset(mem, pos)).load(Ordering::Acquire);
    Look::of(mem, pos, w)
}

/// The header word at `pos`, as found (for a corruption report).
#[cold]
fn raw_word(mem: &RingMem, pos: u64) -> u64 {
    // Relaxed: only reported.
    mem.record_word(offset(mem, pos)).load(Ordering::Relaxed)
}

/// `head - tail`, checked: at most the capacity.
pub(crate) fn used(head: u64, tail: u64, capacity: u64) -> Result<u64, Corruption> {
    let used = head.wrapping_sub(tail);
    if used > capacity {
        return Err(Corruption::Cursors {
            head,
            tail,
            capacity,
        });
    }
    Ok(used)
}

/// Checks cursors loaded from the segment: 8-byte aligned, `head - tail` at most the capacity.
pub(crate) fn check_cursors(mem: &RingMem, head: u64, tail: u64) -> Result<(), Corruption> {
    let capacity = mem.geometry().capacity;
    if !(head | tail).is_multiple_of(RECORD_ALIGN as u64) {
        return Err(Corruption::Cursors {
            head,
            tail,
            capacity,
        });
    }
    used(head, tail, capacity).map(drop)
}

/// Where a ring with one producer continues: from `tail`, step over every committed record of
/// the current lap, and stop at the first word nothing was committed to. `head` is only a hint
/// there (the producer stores it after committing, so a producer that died between the two left
/// it behind), so it is not trusted. Returns `(position, tail)`.
pub(crate) fn committed_end(mem: &RingMem) -> Result<(u64, u64), Corruption> {
    let capacity = mem.geometry().capacity;
    // Acquire: pairs with the consumer's Release store of `tail`: the records before it are
    // zeroed, and the producer role's hand-over (the registry) orders the rest.
    let tail = mem.tail().load(Ordering::Acquire);
    check_cursors(mem, tail, tail)?;
    let mut at = tail;
    while at.wrapping_sub(tail) < capacity {
        let size = match look(mem, at) {
            Look::Message(len) => record_size(len),
            Look::Skip { size, .. } => size,
            Look::Empty => break,
            // One producer never writes RESERVED.
            Look::Reserved(_) | Look::Corrupt(_) => {
                return Err(Corruption::Record {
                    cursor: at,
                    word: raw_word(mem, at),
                });
            }
        };
        at = at.wrapping_add(size as u64);
    }
    used(at, tail, capacity)?;
    Ok((at, tail))
}

/// What the records between the cursors say, for `admin`'s check and inspect.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// Committed messages not yet consumed, and their payload bytes.
    pub(crate) messages: u64,
    pub(crate) message_bytes: u64,
    /// Padding records (and records a consumer died releasing, or abandoned ones).
    pub(crate) skips: u64,
    /// Reservations being written (many producers), by position.
    pub(crate) reserved: Vec<u64>,
    /// Where the walk stopped: the producer position (one producer: the end of the committed
    /// records; many: the first reservation not announced yet, or `head`).
    pub(crate) end: u64,
    /// A header word no producer writes, and where.
    pub(crate) corrupt: Option<(u64, u64)>,
}

/// Walks the records from `tail`: to `head` with many producers, to the first word nothing was
/// committed to with one. A snapshot, exact on a quiescent ring.
pub(crate) fn survey(mem: &RingMem) -> Survey {
    let capacity = mem.geometry().capacity;
    let many = mem.geometry().kind == Kind::RecordsMpsc;
    // Relaxed (both): a snapshot; the headers are loaded with Acquire.
    let tail = mem.tail().load(Ordering::Relaxed);
    let head = mem.head().load(Ordering::Relaxed);
    let mut out = Survey::default();
    let limit = if many && used(head, tail, capacity).is_ok() {
        head.wrapping_sub(tail)
    } else {
        capacity
    };
    let mut at = tail;
    while at.wrapping_sub(tail) < limit && at.is_multiple_of(RECORD_ALIGN as u64) {
        let size = match look(mem, at) {
            Look::Message(len) => {
                out.messages += 1;
                out.message_bytes += len as u64;
                record_size(len)
            }
            Look::Skip { size, .. } => {
                out.skips += 1;
                size
            }
            Look::Reserved(len) if many => {
                out.reserved.push(at);
                record_size(len)
            }
            Look::Empty => break,
            Look::Reserved(_) | Look::Corrupt(_) => {
                out.corrupt = Some((at, raw_word(mem, at)));
                break;
            }
        };
        at = at.wrapping_add(size as u64);
    }
    // With many producers the walk stops at `head`. No record starts there yet (a producer
    // writes its header only after its CAS moved `head` past it), so the word holds zeros, a
    // stale lap, or a racing producer's header — never a word no producer writes.
    if many
        && out.corrupt.is_none()
        && at == head
        && at.is_multiple_of(RECORD_ALIGN as u64)
        && let Look::Corrupt(w) = look(mem, at)
    {
        out.corrupt = Some((at, w));
    }
    out.end = at;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_round_up_to_words() {
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
        assert_eq!(MESSAGE << STATE_SHIFT | 5, (1 << 32) | 5);
        assert_eq!(
            restate(7 << LAP_SHIFT | MESSAGE << STATE_SHIFT | 9, CONSUMED),
            7 << LAP_SHIFT | CONSUMED << STATE_SHIFT | 9
        );
    }
}
