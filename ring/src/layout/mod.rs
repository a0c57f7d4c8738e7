//! The self-describing header and the slot array: how a ring is laid into a segment, how the
//! creator builds it, and how an opener validates it before trusting a single byte.
//!
//! ```text
//! offset  size  what
//!      0   128  identity line: magic, ready/version word, kind, capacity, slot geometry, sizes
//!    128   128  producer cursor line (`head`)
//!    256   128  consumer cursor line (`tail`)
//!    384   128  wait line: futex words and sleeper counts for blocking calls, registry generation
//!    512  7680  endpoint registry: 60 entries of 128 bytes
//!   8192   ...  capacity × stride bytes of slots
//! ```
//!
//! `docs/layout.md` documents every byte. The header is `#[repr(C)]`, uses fixed-width integers
//! and no pointers, and every line is 128 bytes whatever the architecture, so 32- and 64-bit,
//! x86_64 and aarch64 processes all agree on it.

mod build;
mod mem;

pub(crate) use build::{
    IdentityFields, half_built, identity_line, init, read_ready, spsc_initial_seq, validate,
};
pub(crate) use mem::{Pair, RingMem, Side};

use core::mem::{offset_of, size_of};

use crate::error::ConfigError;
use crate::kind::Kind;
use crate::sync::raw;

/// `b"SHMRING\0"` read as a little-endian `u64`: the first word of every shmring segment.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\0");

/// The layout version this build writes and accepts; it is also the value of the ready word.
pub const LAYOUT_VERSION: u32 = 1;

/// The padding unit. Fixed at 128 bytes (two 64-byte lines, which also defeats the adjacent-line
/// prefetcher) rather than per-architecture, so every process agrees on the layout.
pub(crate) const LINE: usize = 128;

/// Bytes from the segment start to slot 0.
pub(crate) const HEADER_SIZE: usize = 8192;

/// Entries in the endpoint registry.
pub(crate) const MAX_ENDPOINTS: usize = 60;

/// The largest capacity (slots per ring) a ring may have.
pub const MAX_CAPACITY: u64 = 1 << 31;

/// The largest payload size per slot, in bytes (and the largest record).
pub const MAX_SLOT_SIZE: usize = 1 << 30;

/// The smallest data area of a record ring, in bytes.
pub const MIN_RECORD_CAPACITY: u64 = 64;

/// The largest data area of a record ring, in bytes (512 GiB).
pub const MAX_RECORD_CAPACITY: u64 = 1 << 39;

/// A record ring's records start on this boundary, and each begins with a header this long
/// (`records`).
pub(crate) const RECORD_ALIGN: usize = 8;

/// The largest segment a ring may occupy, in bytes (1 TiB).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// Slots whose payload is at least this large put it on a 64-byte boundary (see `stride_for`).
pub(crate) const LARGE_SLOT: usize = 256;

/// A committed length meaning "no message here": written when an MPMC claim is dropped without a
/// commit, so consumers step over the slot instead of waiting for it forever.
pub(crate) const SKIP: u32 = u32::MAX;

/// A committed length meaning "lost": written by a consumer that recovered an MPMC slot whose
/// producer died between claim and commit. Consumers step over it and report the loss.
pub(crate) const ABANDONED: u32 = u32::MAX - 1;

/// Which algorithm a ring runs. Stored in the header, so an opener learns it from the segment.
/// Line 0: what the ring is. Written by the creator before the ready word, read-only after.
#[repr(C)]
pub(crate) struct Identity {
    /// [`MAGIC`].
    pub(crate) magic: raw::AtomicU64,
    /// 0 while the creator builds the header; [`LAYOUT_VERSION`] once it is complete. Stored last,
    /// with Release; openers load it with Acquire before reading anything else.
    pub(crate) ready: raw::AtomicU32,
    /// [`Kind::code`].
    pub(crate) kind: raw::AtomicU32,
    /// Slots in the ring; a power of two in `1..=MAX_CAPACITY` (2^31, so that SPSC's 32-bit
    /// sequence words never confuse two laps).
    pub(crate) capacity: raw::AtomicU64,
    /// Largest payload per slot, bytes.
    pub(crate) slot_size: raw::AtomicU64,
    /// Bytes between the starts of consecutive slots.
    pub(crate) slot_stride: raw::AtomicU64,
    /// Offset of the payload inside a slot.
    pub(crate) payload_offset: raw::AtomicU64,
    /// Offset of slot 0 from the segment start ([`HEADER_SIZE`]).
    pub(crate) slots_offset: raw::AtomicU64,
    /// Bytes the ring occupies: `slots_offset + capacity * slot_stride`.
    pub(crate) total_size: raw::AtomicU64,
    /// Entries in the endpoint registry ([`MAX_ENDPOINTS`]).
    pub(crate) max_endpoints: raw::AtomicU32,
    /// Reserved, zero.
    pub(crate) flags: raw::AtomicU32,
    /// The creating process (an endpoint word, see `registry`, with the producer role bits),
    /// written with the rest of the line before anything else, so a segment whose creator died
    /// before the ready word can be attributed.
    pub(crate) creator: raw::AtomicU64,
    _reserved: Pad<48>,
}

/// A line holding one cursor and nothing else, so producer and consumer never share a line.
#[repr(C, align(128))]
pub(crate) struct CursorLine {
    pub(crate) value: raw::AtomicU64,
    _pad: Pad<{ LINE - 8 }>,
}

/// One registry entry on its own line. `owner` is 0 when free, otherwise an endpoint word
/// (`registry::EndpointWord`: pid, role and process start time packed in 64 bits).
#[repr(C, align(128))]
pub(crate) struct EndpointEntry {
    pub(crate) owner: raw::AtomicU64,
    /// MPMC: `pos + 1` of the cursor this endpoint is claiming, holds (a producer: claimed and
    /// not yet committed; a consumer: claimed and not yet released) or last held; 0 when none.
    /// Written only by the entry's owner (and cleared by a recoverer once the owner is proven
    /// dead, or by the next owner once the claim is settled), so a stuck slot can be attributed
    /// (`docs/crash-recovery.md`).
    pub(crate) claim: raw::AtomicU64,
    /// Record rings with many producers: the bytes the claim reserved, from `claim - 1` (its
    /// padding at the wrap included), so a recoverer knows what a dead producer held
    /// (`records`). Zero, and unused, in every other kind.
    pub(crate) claim_len: raw::AtomicU64,
    /// The owner's endpoint word while it is counted in a `sleepers` word (its role says which:
    /// consumers sleep on `data`, producers on `space`); 0 otherwise. Only evidence: a sleeper
    /// killed while counted leaves it behind, and whoever finds its owner dead takes the count
    /// back (`registry::heal`), so a dead sleeper does not make every waker call the kernel.
    pub(crate) asleep: raw::AtomicU64,
    _reserved: Pad<{ LINE - 32 }>,
}

/// A futex word and the count of processes sleeping on it (see `wait`).
#[repr(C)]
pub(crate) struct WaitPair {
    /// Bumped by a waker before `FUTEX_WAKE`; sleepers `FUTEX_WAIT` on the value they loaded.
    pub(crate) epoch: raw::AtomicU32,
    /// Endpoints between announcing a sleep and returning from it. Wakers make a system call
    /// only when this is non-zero.
    pub(crate) sleepers: raw::AtomicU32,
}

/// Line 3: what blocking calls and disconnect detection share. Written only when an endpoint
/// sleeps, wakes, attaches or detaches: the message path only reads it.
#[repr(C, align(128))]
pub(crate) struct WaitLine {
    /// Consumers sleep here for messages; producers wake them after publishing.
    pub(crate) data: WaitPair,
    /// Bumped whenever a registry entry changes hands, so endpoints re-scan the registry only
    /// when it changed.
    pub(crate) registry_gen: raw::AtomicU32,
    /// Sticky bits: 1 once a producer has attached, 2 once a consumer has. "Disconnected" means
    /// a peer was here and is gone, never "not yet arrived".
    pub(crate) seen: raw::AtomicU32,
    /// Registry entries held by producers and by consumers (`[producers, consumers]`). A
    /// process killed without detaching leaves its count behind; the liveness check covers
    /// that. Read as "zero or not" only, so a forged value can only delay disconnect detection.
    pub(crate) attached: [raw::AtomicU32; 2],
    /// The endpoint word of the process recovering an abandoned MPMC slot, 0 when none: a lock
    /// that a dead holder loses (`mpmc::recovery`).
    pub(crate) recovery: raw::AtomicU64,
    /// MPMC slots recovered from producers that died between claim and commit, ever.
    pub(crate) abandoned: raw::AtomicU64,
    /// MPMC slots taken back from consumers that died holding them unreleased (a read guard),
    /// ever. Their messages had been delivered to the dead consumer.
    pub(crate) reclaimed: raw::AtomicU64,
    _pad0: Pad<{ 64 - 48 }>,
    /// Producers sleep here for free slots; consumers wake them after releasing.
    pub(crate) space: WaitPair,
    _pad1: Pad<{ 64 - 8 }>,
}

/// The whole header, exactly [`HEADER_SIZE`] bytes.
#[repr(C, align(128))]
pub(crate) struct Header {
    pub(crate) id: Identity,
    /// Producer cursor: messages ever claimed (MPMC) or published (SPSC). Monotonic `u64`;
    /// written by producers, read by consumers and by `len`.
    pub(crate) head: CursorLine,
    /// Consumer cursor: messages ever claimed (MPMC) or released (SPSC). Monotonic `u64`;
    /// written by consumers, read by producers and by `len`.
    pub(crate) tail: CursorLine,
    /// Futex words, sleeper counts, the registry generation.
    pub(crate) wait: WaitLine,
    pub(crate) endpoints: [EndpointEntry; MAX_ENDPOINTS],
    _reserved: Pad<{ HEADER_SIZE - 4 * LINE - MAX_ENDPOINTS * LINE }>,
}

/// Reserved bytes: never read or written by this build, but another process (a newer version,
/// or a hostile one) may write them, so they are atomics too. Every field of [`Header`] is,
/// which is what makes a shared reference to it sound while other processes write the
/// segment.
#[repr(transparent)]
pub(crate) struct Pad<const N: usize>([raw::AtomicU8; N]);

const _: () = {
    assert!(size_of::<Identity>() == LINE);
    assert!(offset_of!(Identity, magic) == 0);
    assert!(offset_of!(Identity, ready) == 8);
    assert!(offset_of!(Identity, kind) == 12);
    assert!(offset_of!(Identity, capacity) == 16);
    assert!(offset_of!(Identity, slot_size) == 24);
    assert!(offset_of!(Identity, slot_stride) == 32);
    assert!(offset_of!(Identity, payload_offset) == 40);
    assert!(offset_of!(Identity, slots_offset) == 48);
    assert!(offset_of!(Identity, total_size) == 56);
    assert!(offset_of!(Identity, max_endpoints) == 64);
    assert!(offset_of!(Identity, flags) == 68);
    assert!(offset_of!(Identity, creator) == 72);
    assert!(size_of::<CursorLine>() == LINE);
    assert!(size_of::<EndpointEntry>() == LINE);
    assert!(offset_of!(Header, head) == 128);
    assert!(offset_of!(Header, tail) == 256);
    assert!(offset_of!(Header, wait) == 384);
    assert!(size_of::<WaitLine>() == LINE);
    assert!(offset_of!(WaitLine, data) == 0);
    assert!(offset_of!(WaitLine, registry_gen) == 8);
    assert!(offset_of!(WaitLine, seen) == 12);
    assert!(offset_of!(WaitLine, attached) == 16);
    assert!(offset_of!(WaitLine, recovery) == 24);
    assert!(offset_of!(WaitLine, abandoned) == 32);
    assert!(offset_of!(WaitLine, reclaimed) == 40);
    assert!(offset_of!(EndpointEntry, claim) == 8);
    assert!(offset_of!(EndpointEntry, claim_len) == 16);
    assert!(offset_of!(EndpointEntry, asleep) == 24);
    assert!(offset_of!(WaitLine, space) == 64);
    assert!(offset_of!(Header, endpoints) == 512);
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(HEADER_SIZE.is_multiple_of(4096));
};

/// Where things are inside one slot, and how far apart slots are. Derived from the kind and the
/// slot size alone, so creator and opener compute the same numbers.
///
/// The rule, measured (see `docs/layout.md`): a slot starts with its control words (the length,
/// and for MPMC the sequence word before it), then the payload.
/// - Small payloads (< 256 bytes) pack densely: stride = control + payload rounded up to 8, so
///   8-byte messages take 16 (SPSC) or 24 (MPMC) bytes and several share a cache line.
/// - Larger payloads start on a 64-byte boundary with a 64-byte stride multiple, because glibc's
///   `rep movsb` copies run 10–25× slower when source and destination are a few bytes apart
///   modulo 4 KiB; an aligned destination keeps page-aligned sources out of that trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) kind: Kind,
    pub(crate) capacity: u64,
    pub(crate) slot_size: usize,
    pub(crate) stride: usize,
    pub(crate) len_offset: usize,
    pub(crate) payload_offset: usize,
    pub(crate) total_size: usize,
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl Geometry {
    /// Validates a requested configuration and derives the layout from it.
    pub(crate) fn new(
        kind: Kind,
        capacity: u64,
        slot_size: usize,
    ) -> Result<Geometry, ConfigError> {
        if kind.is_records() {
            return Geometry::records(kind, capacity, slot_size);
        }
        if capacity == 0 || !capacity.is_power_of_two() {
            return Err(ConfigError::CapacityNotPowerOfTwo(capacity));
        }
        if capacity > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge {
                requested: capacity,
                max: MAX_CAPACITY,
            });
        }
        if kind == Kind::Mpmc && capacity == 1 {
            return Err(ConfigError::MpmcCapacityOne);
        }
        if slot_size == 0 {
            return Err(ConfigError::SlotSizeZero);
        }
        if slot_size > MAX_SLOT_SIZE {
            return Err(ConfigError::SlotSizeTooLarge {
                requested: slot_size,
                max: MAX_SLOT_SIZE,
            });
        }
        let (len_offset, control) = match kind {
            Kind::Spsc => (0, 8), // len u32, seq u32
            _ => (8, 16),         // MPMC: seq u64, len u32, pad u32
        };
        let (payload_offset, stride) = if slot_size < LARGE_SLOT {
            (control, round_up(control + slot_size, 8))
        } else {
            (64, round_up(64 + slot_size, 64))
        };
        let total = (stride as u64)
            .checked_mul(capacity)
            .and_then(|slots| slots.checked_add(HEADER_SIZE as u64))
            .filter(|&t| t <= MAX_SEGMENT_SIZE && usize::try_from(t).is_ok())
            .ok_or(ConfigError::SegmentTooLarge {
                capacity,
                slot_size,
                max: MAX_SEGMENT_SIZE,
            })?;
        Ok(Geometry {
            kind,
            capacity,
            slot_size,
            stride,
            len_offset,
            payload_offset,
            // Checked to fit a usize above.
            total_size: total as usize,
        })
    }

    /// A record ring: `capacity` bytes of data (a power of two, `MIN_RECORD_CAPACITY` to
    /// `MAX_RECORD_CAPACITY`) right after the header, records of at most `max` bytes (`slot_size`,
    /// at most `capacity - 8`: a record and its header must fit whole). Stride and payload
    /// offset are the record alignment and header size.
    fn records(kind: Kind, capacity: u64, max: usize) -> Result<Geometry, ConfigError> {
        if capacity == 0 || !capacity.is_power_of_two() {
            return Err(ConfigError::CapacityNotPowerOfTwo(capacity));
        }
        if capacity < MIN_RECORD_CAPACITY {
            return Err(ConfigError::CapacityTooSmall {
                requested: capacity,
                min: MIN_RECORD_CAPACITY,
            });
        }
        if capacity > MAX_RECORD_CAPACITY || usize::try_from(capacity).is_err() {
            return Err(ConfigError::CapacityTooLarge {
                requested: capacity,
                max: MAX_RECORD_CAPACITY,
            });
        }
        if max == 0 {
            return Err(ConfigError::SlotSizeZero);
        }
        let limit = (capacity as usize - RECORD_ALIGN).min(MAX_SLOT_SIZE);
        if max > limit {
            return Err(ConfigError::SlotSizeTooLarge {
                requested: max,
                max: limit,
            });
        }
        Ok(Geometry {
            kind,
            capacity,
            slot_size: max,
            stride: RECORD_ALIGN,
            len_offset: 0,
            payload_offset: RECORD_ALIGN,
            total_size: HEADER_SIZE + capacity as usize,
        })
    }

    /// `capacity - 1`: a cursor's slot index is `cursor & mask`.
    #[inline]
    pub(crate) fn mask(&self) -> u64 {
        self.capacity - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_slots_pack_densely() {
        let g = Geometry::new(Kind::Spsc, 1024, 8).unwrap();
        assert_eq!((g.payload_offset, g.stride), (8, 16));
        let g = Geometry::new(Kind::Mpmc, 1024, 8).unwrap();
        assert_eq!((g.len_offset, g.payload_offset, g.stride), (8, 16, 24));
        let g = Geometry::new(Kind::Spsc, 4, 1).unwrap();
        assert_eq!(g.stride, 16);
        assert_eq!(g.total_size, HEADER_SIZE + 64);
    }

    #[test]
    fn large_slots_are_64_byte_aligned() {
        for size in [256, 1000, 1024, 65536, 1 << 20] {
            let g = Geometry::new(Kind::Spsc, 8, size).unwrap();
            assert_eq!(g.payload_offset, 64);
            assert_eq!(g.stride % 64, 0);
            assert!(g.stride >= 64 + size);
            assert_eq!((HEADER_SIZE + g.payload_offset) % 64, 0);
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        assert_eq!(
            Geometry::new(Kind::Spsc, 0, 8),
            Err(ConfigError::CapacityNotPowerOfTwo(0))
        );
        assert_eq!(
            Geometry::new(Kind::Spsc, 3, 8),
            Err(ConfigError::CapacityNotPowerOfTwo(3))
        );
        assert!(matches!(
            Geometry::new(Kind::Spsc, 1 << 33, 8),
            Err(ConfigError::CapacityTooLarge { .. })
        ));
        assert_eq!(
            Geometry::new(Kind::Mpmc, 4, 0),
            Err(ConfigError::SlotSizeZero)
        );
        assert!(matches!(
            Geometry::new(Kind::Mpmc, 4, MAX_SLOT_SIZE + 1),
            Err(ConfigError::SlotSizeTooLarge { .. })
        ));
        assert!(matches!(
            Geometry::new(Kind::Mpmc, 1 << 31, 1 << 20),
            Err(ConfigError::SegmentTooLarge { .. })
        ));
    }
}
