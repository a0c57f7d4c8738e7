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

use core::mem::{offset_of, size_of};
use core::ptr::{self, NonNull};

use crate::error::{ConfigError, OpenError};
use crate::sync::{AtomicU32, AtomicU64, Cells, Ordering, raw};

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

/// The largest payload size per slot, in bytes.
pub const MAX_SLOT_SIZE: usize = 1 << 30;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One producer, one consumer: Lamport's ring with cached cursors (`crate::spsc`).
    Spsc,
    /// Any number of producers and consumers: Vyukov's bounded queue (`crate::mpmc`).
    Mpmc,
}

impl Kind {
    pub(crate) const fn code(self) -> u32 {
        match self {
            Kind::Spsc => 1,
            Kind::Mpmc => 2,
        }
    }

    pub(crate) const fn from_code(code: u32) -> Option<Kind> {
        match code {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpmc),
            _ => None,
        }
    }
}

impl core::fmt::Display for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Kind::Spsc => "SPSC",
            Kind::Mpmc => "MPMC",
        })
    }
}

/// Line 0: what the ring is. Written by the creator before the ready word, read-only after.
#[repr(C)]
pub(crate) struct Identity {
    /// [`MAGIC`].
    pub(crate) magic: u64,
    /// 0 while the creator builds the header; [`LAYOUT_VERSION`] once it is complete. Stored last,
    /// with Release; openers load it with Acquire before reading anything else.
    pub(crate) ready: raw::AtomicU32,
    /// [`Kind::code`].
    pub(crate) kind: u32,
    /// Slots in the ring; a power of two in `1..=MAX_CAPACITY` (2^31, so that SPSC's 32-bit
    /// sequence words never confuse two laps).
    pub(crate) capacity: u64,
    /// Largest payload per slot, bytes.
    pub(crate) slot_size: u64,
    /// Bytes between the starts of consecutive slots.
    pub(crate) slot_stride: u64,
    /// Offset of the payload inside a slot.
    pub(crate) payload_offset: u64,
    /// Offset of slot 0 from the segment start ([`HEADER_SIZE`]).
    pub(crate) slots_offset: u64,
    /// Bytes the ring occupies: `slots_offset + capacity * slot_stride`.
    pub(crate) total_size: u64,
    /// Entries in the endpoint registry ([`MAX_ENDPOINTS`]).
    pub(crate) max_endpoints: u32,
    /// Reserved, zero.
    pub(crate) flags: u32,
    /// The creating process (an endpoint word, see `endpoint`), stored before anything else so a
    /// segment whose creator died before the ready word can be attributed.
    pub(crate) creator: raw::AtomicU64,
    _reserved: [u8; 48],
}

/// A line holding one cursor and nothing else, so producer and consumer never share a line.
#[repr(C, align(128))]
pub(crate) struct CursorLine {
    pub(crate) value: raw::AtomicU64,
    _pad: [u8; LINE - 8],
}

/// One registry entry on its own line. `owner` is 0 when free, otherwise an endpoint word
/// (`endpoint::EndpointWord`: pid, role and process start time packed in 64 bits).
#[repr(C, align(128))]
pub(crate) struct EndpointEntry {
    pub(crate) owner: raw::AtomicU64,
    /// MPMC: `pos + 1` of the cursor this endpoint is claiming, holds (a producer: claimed and
    /// not yet committed; a consumer: claimed and not yet released) or last held; 0 when none. Written only
    /// by the entry's owner (and cleared by a recoverer once the owner is proven dead, or by
    /// the next owner once the claim is settled), so a stuck slot can be attributed
    /// (`docs/crash-recovery.md`).
    pub(crate) claim: raw::AtomicU64,
    _reserved: [u8; LINE - 16],
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
    /// that a dead holder loses (`mpmc::Consumer::recover`).
    pub(crate) recovery: raw::AtomicU64,
    /// MPMC slots recovered from producers that died between claim and commit, ever.
    pub(crate) abandoned: raw::AtomicU64,
    /// MPMC slots taken back from consumers that died holding them unreleased (a read guard),
    /// ever. Their messages had been delivered to the dead consumer.
    pub(crate) reclaimed: raw::AtomicU64,
    _pad0: [u8; 64 - 48],
    /// Producers sleep here for free slots; consumers wake them after releasing.
    pub(crate) space: WaitPair,
    _pad1: [u8; 64 - 8],
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
    _reserved: [u8; HEADER_SIZE - 4 * LINE - MAX_ENDPOINTS * LINE],
}

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
            Kind::Spsc => (0, 8),  // len u32, seq u32
            Kind::Mpmc => (8, 16), // seq u64, len u32, pad u32
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

    /// `capacity - 1`: a cursor's slot index is `cursor & mask`.
    #[inline]
    pub(crate) fn mask(&self) -> u64 {
        self.capacity - 1
    }
}

/// The identity line a creator writes before anything else (the ready word still 0), so that
/// a segment of ours is recognisable from its first bytes even if its creator dies before
/// finishing it: the POSIX backend writes it before sizing the object (`segment::posix`), and
/// [`init`] writes the same bytes again in place.
pub(crate) fn identity_line(geo: &Geometry, creator: u64) -> [u8; LINE] {
    let mut line = [0u8; LINE];
    let mut put =
        |offset: usize, bytes: &[u8]| line[offset..offset + bytes.len()].copy_from_slice(bytes);
    put(offset_of!(Identity, magic), &MAGIC.to_le_bytes());
    put(offset_of!(Identity, ready), &0u32.to_le_bytes());
    put(offset_of!(Identity, kind), &geo.kind.code().to_le_bytes());
    put(offset_of!(Identity, capacity), &geo.capacity.to_le_bytes());
    put(
        offset_of!(Identity, slot_size),
        &(geo.slot_size as u64).to_le_bytes(),
    );
    put(
        offset_of!(Identity, slot_stride),
        &(geo.stride as u64).to_le_bytes(),
    );
    put(
        offset_of!(Identity, payload_offset),
        &(geo.payload_offset as u64).to_le_bytes(),
    );
    put(
        offset_of!(Identity, slots_offset),
        &(HEADER_SIZE as u64).to_le_bytes(),
    );
    put(
        offset_of!(Identity, total_size),
        &(geo.total_size as u64).to_le_bytes(),
    );
    put(
        offset_of!(Identity, max_endpoints),
        &(MAX_ENDPOINTS as u32).to_le_bytes(),
    );
    put(offset_of!(Identity, creator), &creator.to_le_bytes());
    line
}

/// The length word of an SPSC slot never written: larger than any slot, so a reader that
/// mistook such a slot for a published one reports a corrupt length instead of delivering a
/// message nobody sent.
pub(crate) const SPSC_NEVER_WRITTEN: u32 = u32::MAX;

/// The sequence word of SPSC slot `idx` never written: `idx` itself. The sequence word of
/// cursor `c` (in slot `c mod capacity`) is `(c + 1) mod 2^32`, which is `idx + 1` modulo the
/// capacity (a power of two that divides 2^32), never `idx` when the capacity is at least 2,
/// whatever the cursors start from. (With a capacity of 1 every value is someone's; then
/// [`SPSC_NEVER_WRITTEN`] catches the collision.)
pub(crate) fn spsc_initial_seq(idx: usize) -> u32 {
    idx as u32
}

/// Builds a fresh header and slot array in place, storing the ready word last.
///
/// # Safety
/// - `base` is valid for reads and writes of `geo.total_size` bytes, 128-byte aligned, and zeroed
///   (except for the [`identity_line`] the backend may have written first).
/// - No other process or thread reads the header before this returns, except through the ready
///   word (which stays 0 until the very end).
pub(crate) unsafe fn init(base: NonNull<u8>, geo: &Geometry, creator: u64) {
    let h = base.as_ptr().cast::<Header>();
    let line = identity_line(geo, creator);
    // SAFETY: `base` is valid, aligned and large enough for a `Header` (caller's duty, and
    // `total_size >= HEADER_SIZE`); nobody else writes it while we build it. The ready word
    // (bytes 8..12) is written as 0 here and stored last, below.
    unsafe {
        ptr::copy_nonoverlapping(line.as_ptr(), base.as_ptr(), LINE);
        (*h).head.value.store(0, Ordering::Relaxed);
        (*h).tail.value.store(0, Ordering::Relaxed);
    }
    for i in 0..geo.capacity as usize {
        // SAFETY: `i < capacity`, so the slot lies inside the `total_size` bytes; its first
        // word is 8-byte aligned (HEADER_SIZE and stride are multiples of 8).
        unsafe {
            let slot = base.as_ptr().add(HEADER_SIZE + i * geo.stride);
            match geo.kind {
                Kind::Mpmc => (*slot.cast::<raw::AtomicU64>()).store(i as u64, Ordering::Relaxed),
                Kind::Spsc => {
                    (*slot.cast::<raw::AtomicU32>()).store(SPSC_NEVER_WRITTEN, Ordering::Relaxed);
                    (*slot.add(4).cast::<raw::AtomicU32>())
                        .store(spsc_initial_seq(i), Ordering::Relaxed);
                }
            }
        }
    }
    crate::hooks::before_ready();
    // Release: pairs with the Acquire load in `read_ready` (openers): every field and slot word
    // written above is visible to whoever sees the version.
    // SAFETY: as above.
    unsafe { (*h).id.ready.store(LAYOUT_VERSION, Ordering::Release) };
}

/// The ready word, loaded with Acquire (pairs with the Release store that ends `init`).
///
/// # Safety
/// `base` is valid for reads of `HEADER_SIZE` bytes and 128-byte aligned.
pub(crate) unsafe fn read_ready(base: NonNull<u8>) -> u32 {
    // SAFETY: the caller guarantees the header is mapped; an atomic load is sound whatever the
    // other processes do to the word.
    unsafe {
        (*base.as_ptr().cast::<Header>())
            .id
            .ready
            .load(Ordering::Acquire)
    }
}

/// The first word of the segment, to tell "foreign bytes" from "not built yet".
///
/// # Safety
/// `base` is valid for reads of `HEADER_SIZE` bytes and 128-byte aligned.
pub(crate) unsafe fn read_magic(base: NonNull<u8>) -> u64 {
    // SAFETY: the caller guarantees the header is mapped; a volatile read of a u64 it owns.
    unsafe { ptr::read_volatile(base.as_ptr().cast::<u64>()) }
}

/// The identity line's fields as read, before any is trusted.
struct IdentityFields {
    magic: u64,
    ready: u32,
    kind: u32,
    capacity: u64,
    slot_size: u64,
    stride: u64,
    payload_offset: u64,
    slots_offset: u64,
    total: u64,
    creator: u64,
}

impl IdentityFields {
    fn parse(line: &[u8; LINE]) -> IdentityFields {
        let u64_at = |o: usize| u64::from_le_bytes(line[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_le_bytes(line[o..o + 4].try_into().unwrap_or([0; 4]));
        IdentityFields {
            magic: u64_at(offset_of!(Identity, magic)),
            ready: u32_at(offset_of!(Identity, ready)),
            kind: u32_at(offset_of!(Identity, kind)),
            capacity: u64_at(offset_of!(Identity, capacity)),
            slot_size: u64_at(offset_of!(Identity, slot_size)),
            stride: u64_at(offset_of!(Identity, slot_stride)),
            payload_offset: u64_at(offset_of!(Identity, payload_offset)),
            slots_offset: u64_at(offset_of!(Identity, slots_offset)),
            total: u64_at(offset_of!(Identity, total_size)),
            creator: u64_at(offset_of!(Identity, creator)),
        }
    }

    /// The geometry these fields describe, if they are a shmring identity line: the magic,
    /// a known kind, a valid geometry, and every derived field as derived. The ready word is
    /// the caller's business.
    fn geometry(&self) -> Result<Geometry, OpenError> {
        if self.magic != MAGIC {
            return Err(OpenError::NotShmring { found: self.magic });
        }
        let kind = Kind::from_code(self.kind).ok_or(OpenError::CorruptHeader {
            field: "kind",
            found: u64::from(self.kind),
            reason: "not 1 (SPSC) or 2 (MPMC)",
        })?;
        let slot_size = usize::try_from(self.slot_size).unwrap_or(usize::MAX);
        let geo = Geometry::new(kind, self.capacity, slot_size).map_err(|e| {
            let field = e.header_field();
            OpenError::CorruptHeader {
                field,
                found: if field == "capacity" {
                    self.capacity
                } else {
                    self.slot_size
                },
                reason: e.reason(),
            }
        })?;
        let derived = [
            ("slot_stride", geo.stride as u64, self.stride),
            (
                "payload_offset",
                geo.payload_offset as u64,
                self.payload_offset,
            ),
            ("slots_offset", HEADER_SIZE as u64, self.slots_offset),
            ("total_size", geo.total_size as u64, self.total),
        ];
        for (field, expected, found) in derived {
            if expected != found {
                return Err(OpenError::LayoutMismatch {
                    field,
                    expected,
                    found,
                });
            }
        }
        Ok(geo)
    }
}

/// Validates a header whose ready word has been seen non-zero, against the mapping length.
///
/// The identity line is copied out once (the segment may change under us) and every field is
/// checked against the others before any is used.
///
/// # Safety
/// `base` is valid for reads of `map_len` bytes, 128-byte aligned, and `map_len >= HEADER_SIZE`.
pub(crate) unsafe fn validate(base: NonNull<u8>, map_len: usize) -> Result<Geometry, OpenError> {
    debug_assert!(map_len >= HEADER_SIZE);
    // SAFETY: the header lies within the mapping (caller's duty); an atomic load.
    let ready = unsafe { read_ready(base) };
    // SAFETY: as above; volatile reads of aligned words, whatever their value, after the
    // Acquire load of the ready word (which orders them after the creator's stores).
    let line = unsafe { copy_line(base) };
    let fields = IdentityFields::parse(&line);
    if fields.magic != MAGIC {
        return Err(OpenError::NotShmring {
            found: fields.magic,
        });
    }
    if ready != LAYOUT_VERSION {
        return Err(OpenError::VersionMismatch {
            supported: LAYOUT_VERSION,
            found: ready,
        });
    }
    let geo = fields.geometry()?;
    if geo.total_size > map_len {
        return Err(OpenError::Truncated {
            needed: geo.total_size as u64,
            found: map_len as u64,
        });
    }
    Ok(geo)
}

/// The identity line, copied out of the mapping word by word.
///
/// # Safety
/// `base` is valid for reads of `LINE` bytes and 8-byte aligned.
unsafe fn copy_line(base: NonNull<u8>) -> [u8; LINE] {
    let mut line = [0u8; LINE];
    for (i, chunk) in line.chunks_exact_mut(8).enumerate() {
        // SAFETY: caller's duty; word `i` of the line is in bounds and aligned.
        let w = unsafe { ptr::read_volatile(base.as_ptr().cast::<u64>().add(i)) };
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    line
}

/// The creator of a segment that is a shmring ring under construction, judged from its first
/// bytes alone: the identity line is complete and consistent (as [`identity_line`] writes it
/// before anything else), the ready word is still 0, and the object is as long as a creator
/// leaves it (`LINE` bytes if it died before sizing it, or the whole ring). Anything else is
/// not provably ours: `None`.
pub(crate) fn half_built(line: &[u8; LINE], object_len: u64) -> Option<u64> {
    let fields = IdentityFields::parse(line);
    let geo = fields.geometry().ok()?;
    let sized = object_len == LINE as u64 || object_len == geo.total_size as u64;
    (fields.ready == 0 && sized && fields.creator != 0).then_some(fields.creator)
}

/// [`half_built`] of a mapped header.
///
/// # Safety
/// `base` is valid for reads of `HEADER_SIZE` bytes and 128-byte aligned.
pub(crate) unsafe fn half_built_at(base: NonNull<u8>, object_len: u64) -> Option<u64> {
    // SAFETY: caller's duty.
    half_built(&unsafe { copy_line(base) }, object_len)
}

/// The loom model's copy of the words the algorithms synchronise on (loom atomics cannot live in
/// raw memory). Only the heap backend is used under loom, so nothing else ever reads the raw ones.
#[cfg(loom)]
#[derive(Debug)]
struct Shadow {
    head: AtomicU64,
    tail: AtomicU64,
    seqs: Box<[AtomicU64]>,
    lens: Box<[AtomicU32]>,
    seq32s: Box<[AtomicU32]>,
    data: crate::wait::ShadowPair,
    space: crate::wait::ShadowPair,
    attached: [AtomicU32; 2],
    claims: Box<[AtomicU64]>,
    recovery: AtomicU64,
}

/// A validated ring in memory: the base address plus its geometry, with typed accessors for
/// every word the algorithms touch. It does not own the memory; `Shared` keeps it mapped.
#[derive(Debug)]
pub(crate) struct RingMem {
    base: NonNull<u8>,
    geo: Geometry,
    /// This process is a registered target of sleepers' `membarrier` calls, so its wakers'
    /// light barrier may be a compiler fence (`wait`). Kept here, beside the geometry the hot
    /// path reads anyway, rather than in a global.
    pub(crate) asymmetric: bool,
    cells: Cells,
    #[cfg(loom)]
    shadow: Shadow,
}

// SAFETY: `RingMem` is a pointer to memory shared by design between threads and processes; every
// access to it goes through atomics or through slots owned by the ring protocol.
unsafe impl Send for RingMem {}
// SAFETY: as for Send: `&RingMem` only hands out atomics and raw pointers whose use is governed by
// the protocol in `spsc`/`mpmc`.
unsafe impl Sync for RingMem {}

impl RingMem {
    /// # Safety
    /// `base` points at a header built by `init` or accepted by `validate` for `geo`, valid for
    /// `geo.total_size` bytes for as long as this value lives.
    pub(crate) unsafe fn new(base: NonNull<u8>, geo: Geometry) -> RingMem {
        let slots = geo.capacity as usize;
        RingMem {
            base,
            geo,
            asymmetric: crate::wait::register_process(),
            cells: Cells::new(slots),
            #[cfg(loom)]
            shadow: Shadow {
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                seqs: (0..slots as u64).map(AtomicU64::new).collect(),
                // As `init` lays them (MPMC lengths start at 0).
                lens: (0..slots)
                    .map(|_| {
                        AtomicU32::new(match geo.kind {
                            Kind::Spsc => SPSC_NEVER_WRITTEN,
                            Kind::Mpmc => 0,
                        })
                    })
                    .collect(),
                seq32s: (0..slots)
                    .map(|i| AtomicU32::new(spsc_initial_seq(i)))
                    .collect(),
                data: crate::wait::ShadowPair::new(),
                space: crate::wait::ShadowPair::new(),
                attached: [AtomicU32::new(0), AtomicU32::new(0)],
                claims: (0..MAX_ENDPOINTS).map(|_| AtomicU64::new(0)).collect(),
                recovery: AtomicU64::new(0),
            },
        }
    }

    #[inline]
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `new`'s contract: the header is mapped for our lifetime. Its plain fields are
        // never written after `init`; everything else in it is atomic.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    #[inline]
    pub(crate) fn cells(&self) -> &Cells {
        &self.cells
    }

    /// The producer cursor.
    #[inline]
    pub(crate) fn head(&self) -> &AtomicU64 {
        #[cfg(loom)]
        return &self.shadow.head;
        #[cfg(not(loom))]
        &self.header().head.value
    }

    /// The consumer cursor.
    #[inline]
    pub(crate) fn tail(&self) -> &AtomicU64 {
        #[cfg(loom)]
        return &self.shadow.tail;
        #[cfg(not(loom))]
        &self.header().tail.value
    }

    /// The futex word and sleeper count of one side of the wait line.
    #[inline]
    pub(crate) fn wait_pair(&self, side: crate::wait::Side) -> crate::wait::Pair<'_> {
        use crate::wait::Side;
        #[cfg(loom)]
        return match side {
            Side::Data => self.shadow.data.pair(),
            Side::Space => self.shadow.space.pair(),
        };
        #[cfg(not(loom))]
        {
            let line = &self.header().wait;
            let pair = match side {
                Side::Data => &line.data,
                Side::Space => &line.space,
            };
            crate::wait::Pair {
                epoch: &pair.epoch,
                sleepers: &pair.sleepers,
            }
        }
    }

    /// The count of attached endpoints of `role` (`WaitLine::attached`). Its Release decrement
    /// when an endpoint leaves is what publishes that endpoint's last messages to a peer that
    /// reads 0 and decides it is gone, so loom models it.
    #[inline]
    pub(crate) fn attached(&self, role: crate::error::Role) -> &AtomicU32 {
        let i = match role {
            crate::error::Role::Producer => 0,
            crate::error::Role::Consumer => 1,
        };
        #[cfg(loom)]
        return &self.shadow.attached[i];
        #[cfg(not(loom))]
        &self.header().wait.attached[i]
    }

    /// The in-flight claim record of registry entry `entry` (`EndpointEntry::claim`). Crash
    /// recovery reads it to attribute a stuck slot, so loom models it.
    #[inline(always)]
    pub(crate) fn claim(&self, entry: usize) -> &AtomicU64 {
        #[cfg(loom)]
        return &self.shadow.claims[entry];
        #[cfg(not(loom))]
        &self.header().endpoints[entry].claim
    }

    /// The MPMC recovery lock (`WaitLine::recovery`).
    #[inline]
    pub(crate) fn recovery(&self) -> &AtomicU64 {
        #[cfg(loom)]
        return &self.shadow.recovery;
        #[cfg(not(loom))]
        &self.header().wait.recovery
    }

    /// The registry generation (`WaitLine::registry_gen`): bumped on every registry change. A
    /// hint only ("look again"), so it stays out of the loom model.
    #[inline]
    pub(crate) fn registry_gen(&self) -> &raw::AtomicU32 {
        &self.header().wait.registry_gen
    }

    /// Start of slot `idx`.
    #[inline]
    fn slot(&self, idx: usize) -> *mut u8 {
        debug_assert!((idx as u64) < self.geo.capacity);
        // SAFETY: idx < capacity, so the slot lies within the `total_size` bytes `new` vouches for.
        unsafe { self.base.as_ptr().add(HEADER_SIZE + idx * self.geo.stride) }
    }

    /// The MPMC sequence word of slot `idx` (`idx < capacity`).
    #[inline]
    pub(crate) fn seq(&self, idx: usize) -> &AtomicU64 {
        debug_assert_eq!(self.geo.kind, Kind::Mpmc);
        #[cfg(loom)]
        return &self.shadow.seqs[idx];
        // SAFETY: offset 0 of an in-bounds slot, 8-byte aligned (HEADER_SIZE and stride are
        // multiples of 8); the word is only ever accessed atomically.
        #[cfg(not(loom))]
        unsafe {
            &*self.slot(idx).cast::<AtomicU64>()
        }
    }

    /// The SPSC sequence word of slot `idx` (`idx < capacity`): the low 32 bits of
    /// `cursor + 1` once message `cursor` is published in it, 0 before the first lap.
    #[inline]
    pub(crate) fn seq32(&self, idx: usize) -> &AtomicU32 {
        debug_assert_eq!(self.geo.kind, Kind::Spsc);
        #[cfg(loom)]
        return &self.shadow.seq32s[idx];
        // SAFETY: offset 4 of an in-bounds slot, 4-byte aligned; the word is only ever accessed
        // atomically.
        #[cfg(not(loom))]
        unsafe {
            &*self.slot(idx).add(4).cast::<AtomicU32>()
        }
    }

    /// The committed-length word of slot `idx` (`idx < capacity`).
    #[inline]
    pub(crate) fn len(&self, idx: usize) -> &AtomicU32 {
        #[cfg(loom)]
        return &self.shadow.lens[idx];
        // SAFETY: `len_offset` (0 or 8) of an in-bounds slot, 4-byte aligned; the word is only
        // ever accessed atomically.
        #[cfg(not(loom))]
        unsafe {
            &*self.slot(idx).add(self.geo.len_offset).cast::<AtomicU32>()
        }
    }

    /// The payload of slot `idx`: `slot_size` bytes, 8-byte aligned (64-byte for large slots).
    #[inline]
    pub(crate) fn payload(&self, idx: usize) -> *mut u8 {
        // SAFETY: the payload lies within the slot (stride >= payload_offset + slot_size).
        unsafe { self.slot(idx).add(self.geo.payload_offset) }
    }
}

/// Copies `len` bytes. Up to 16 bytes it copies inline with two possibly overlapping unaligned
/// loads and stores, instead of calling `memcpy` through a length the compiler cannot see: for
/// 8-byte messages that call was the largest single cost of a send+receive (criterion,
/// `docs/benchmarks.md`).
///
/// # Safety
/// `src` is valid for reads and `dst` for writes of `len` bytes, and the ranges do not overlap.
#[inline(always)]
unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: each access stays within the first `len` bytes of `src` or
    // `dst` (for 8..=16: offsets 0 and len - 8; for 4..8: 0 and len - 4), which the caller
    // vouches for; unaligned accesses need no alignment.
    unsafe {
        if (8..=16).contains(&len) {
            let a = ptr::read_unaligned(src.cast::<u64>());
            let b = ptr::read_unaligned(src.add(len - 8).cast::<u64>());
            ptr::write_unaligned(dst.cast::<u64>(), a);
            ptr::write_unaligned(dst.add(len - 8).cast::<u64>(), b);
        } else if (4..8).contains(&len) {
            let a = ptr::read_unaligned(src.cast::<u32>());
            let b = ptr::read_unaligned(src.add(len - 4).cast::<u32>());
            ptr::write_unaligned(dst.cast::<u32>(), a);
            ptr::write_unaligned(dst.add(len - 4).cast::<u32>(), b);
        } else {
            ptr::copy_nonoverlapping(src, dst, len);
        }
    }
}

/// Payload copies. Each is `unsafe` because only the ring protocol knows the slot is owned.
impl RingMem {
    /// Copies `msg` to the start of slot `idx`'s payload.
    ///
    /// # Safety
    /// The caller owns slot `idx` for writing (claimed, unpublished) and `msg.len() <= slot_size`.
    #[inline]
    pub(crate) unsafe fn write_payload(&self, idx: usize, msg: &[u8]) {
        debug_assert!(msg.len() <= self.geo.slot_size);
        // SAFETY: caller's duty: in bounds, and nobody else accesses the slot; `msg` is a
        // process-local buffer, so the ranges do not overlap.
        unsafe { copy(msg.as_ptr(), self.payload(idx), msg.len()) }
    }

    /// Copies `buf.len()` bytes from the start of slot `idx`'s payload into `buf`.
    ///
    /// # Safety
    /// The caller owns slot `idx` for reading (published, unreleased) and
    /// `buf.len() <= slot_size`.
    #[inline]
    pub(crate) unsafe fn read_payload(&self, idx: usize, buf: &mut [u8]) {
        debug_assert!(buf.len() <= self.geo.slot_size);
        // SAFETY: caller's duty, as for `write_payload`.
        unsafe { copy(self.payload(idx), buf.as_mut_ptr(), buf.len()) }
    }

    /// Writes a value to the start of slot `idx`'s payload (unaligned-safe).
    ///
    /// # Safety
    /// As [`write_payload`](Self::write_payload) with `size_of::<T>() <= slot_size`.
    #[inline]
    pub(crate) unsafe fn write_value<T: crate::Plain>(&self, idx: usize, value: T) {
        debug_assert!(size_of::<T>() <= self.geo.slot_size);
        // SAFETY: caller's duty; `write_unaligned` needs no alignment.
        unsafe { ptr::write_unaligned(self.payload(idx).cast::<T>(), value) }
    }

    /// Reads a value from the start of slot `idx`'s payload (unaligned-safe).
    ///
    /// # Safety
    /// As [`read_payload`](Self::read_payload) with `size_of::<T>() <= slot_size`; `T: Plain`
    /// makes any bytes a valid value.
    #[inline]
    pub(crate) unsafe fn read_value<T: crate::Plain>(&self, idx: usize) -> T {
        debug_assert!(size_of::<T>() <= self.geo.slot_size);
        // SAFETY: caller's duty; `read_unaligned` needs no alignment.
        unsafe { ptr::read_unaligned(self.payload(idx).cast::<T>()) }
    }

    /// The first `len` bytes of slot `idx`'s payload.
    ///
    /// # Safety
    /// The caller owns slot `idx` (for reading) for all of `'a` and `len <= slot_size`.
    #[inline]
    pub(crate) unsafe fn payload_slice<'a>(&self, idx: usize, len: usize) -> &'a [u8] {
        debug_assert!(len <= self.geo.slot_size);
        // SAFETY: caller's duty: in bounds and not written by anyone while borrowed.
        unsafe { core::slice::from_raw_parts(self.payload(idx), len) }
    }

    /// The first `len` bytes of slot `idx`'s payload, writable.
    ///
    /// # Safety
    /// The caller owns slot `idx` for writing, exclusively, for all of `'a`, and
    /// `len <= slot_size`.
    #[inline]
    #[allow(clippy::mut_from_ref)] // the ring protocol, not `&self`, grants the exclusivity
    pub(crate) unsafe fn payload_slice_mut<'a>(&self, idx: usize, len: usize) -> &'a mut [u8] {
        debug_assert!(len <= self.geo.slot_size);
        // SAFETY: caller's duty: in bounds and accessed by nobody else while borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.payload(idx), len) }
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

    #[test]
    fn small_copies_copy_exactly_len_bytes() {
        let src: Vec<u8> = (1..=40).collect();
        for len in 0..=40 {
            let mut dst = [0u8; 48];
            // SAFETY: both buffers hold at least `len` bytes and do not overlap.
            unsafe { copy(src.as_ptr(), dst.as_mut_ptr(), len) };
            assert_eq!(&dst[..len], &src[..len], "len {len}");
            assert!(
                dst[len..].iter().all(|&b| b == 0),
                "len {len} wrote past the end"
            );
        }
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [Kind::Spsc, Kind::Mpmc] {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(3), None);
    }
}
