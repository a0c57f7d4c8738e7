//! A validated ring in memory: typed accessors for every word the algorithms touch, and the
//! payload copies. Under loom the words the algorithms synchronise on live in a process-local
//! shadow instead.

use core::mem::size_of;
use core::ptr::{self, NonNull};

#[cfg(loom)]
use super::MAX_ENDPOINTS;
#[cfg(loom)]
use super::build::{SPSC_NEVER_WRITTEN, spsc_initial_seq};
use super::{Geometry, HEADER_SIZE, Header, RECORD_ALIGN};
use crate::kind::{Kind, Role};
use crate::sync::{AtomicU32, AtomicU64, Cells, Futex, raw};

/// Which side of the wait line a waiter waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Consumers waiting for a message.
    Data,
    /// Producers waiting for a free slot.
    Space,
}

/// One side's futex word and sleeper count (`WaitPair` in the header), as the wait protocol
/// uses them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair<'a> {
    /// Bumped by a waker before it wakes; sleepers sleep on the value they loaded.
    pub(crate) epoch: Futex<'a>,
    /// Endpoints between announcing a sleep and returning from it.
    pub(crate) sleepers: &'a AtomicU32,
}

/// A side's futex word, sleeper count and wait queue in the loom model's shadow.
#[cfg(loom)]
#[derive(Debug)]
struct ShadowPair {
    epoch: AtomicU32,
    sleepers: AtomicU32,
    queue: crate::sync::FutexQueue,
}

#[cfg(loom)]
impl ShadowPair {
    fn new() -> ShadowPair {
        ShadowPair {
            epoch: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            queue: crate::sync::FutexQueue::new(),
        }
    }

    fn pair(&self) -> Pair<'_> {
        Pair {
            epoch: Futex::new(&self.epoch, &self.queue),
            sleepers: &self.sleepers,
        }
    }
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
    data: ShadowPair,
    space: ShadowPair,
    attached: [AtomicU32; 2],
    claims: Box<[AtomicU64]>,
    claim_lens: Box<[AtomicU64]>,
    recovery: AtomicU64,
    /// A record ring's data area, one word per 8 bytes: the record headers.
    words: Box<[AtomicU64]>,
}

/// A validated ring in memory: the base address plus its geometry, with typed accessors for
/// every word the algorithms touch. It does not own the memory; `Shared` keeps it mapped.
#[derive(Debug)]
pub(crate) struct RingMem {
    base: NonNull<u8>,
    geo: Geometry,
    /// This process is a registered target of sleepers' `membarrier` calls, so its wakers'
    /// light barrier may be a compiler fence (`sync::barrier`). Kept here, beside the geometry
    /// the hot path reads anyway, rather than in a global; the ring handle registers the
    /// process and says whether it could.
    pub(crate) asymmetric: bool,
    /// Set by the `SIGBUS` guard when a page of this mapping was lost (`segment::guard`): a
    /// process-local flag, so checking it before a send reports success is one load.
    #[cfg_attr(loom, allow(dead_code))] // heap memory is never guarded
    fault: &'static raw::AtomicBool,
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
    /// A second view of the same memory, for an endpoint to keep beside the `Arc<Shared>` that
    /// keeps the mapping alive: the hot path then reads the geometry from the endpoint itself,
    /// which the compiler may keep in registers across the ring's atomics, instead of through
    /// the shared handle after every one of them. (Not under loom, whose view carries the
    /// shadowed words and access tokens and must stay one.)
    ///
    /// # Safety
    /// The copy must not outlive the memory: its owner holds the `Shared` this view belongs to.
    #[cfg(not(loom))]
    pub(crate) unsafe fn endpoint_view(&self) -> RingMem {
        RingMem {
            base: self.base,
            geo: self.geo,
            asymmetric: self.asymmetric,
            fault: self.fault,
            cells: Cells,
        }
    }

    /// # Safety
    /// `base` points at a header built by `init` or accepted by `validate` for `geo`, valid for
    /// `geo.total_size` bytes for as long as this value lives.
    pub(crate) unsafe fn new(
        base: NonNull<u8>,
        geo: Geometry,
        asymmetric: bool,
        fault: &'static raw::AtomicBool,
    ) -> RingMem {
        // Slot rings track payload accesses per slot; record rings per 8-byte word.
        let (slots, words) = if geo.kind.is_records() {
            (0, geo.capacity as usize / RECORD_ALIGN)
        } else {
            (geo.capacity as usize, 0)
        };
        RingMem {
            base,
            geo,
            asymmetric,
            fault,
            cells: Cells::new(slots.max(words)),
            #[cfg(loom)]
            shadow: Shadow {
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                seqs: (0..slots as u64).map(AtomicU64::new).collect(),
                // As `init` lays them (MPMC lengths start at 0).
                lens: (0..slots)
                    .map(|_| {
                        AtomicU32::new(if geo.kind == Kind::Spsc {
                            SPSC_NEVER_WRITTEN
                        } else {
                            0
                        })
                    })
                    .collect(),
                seq32s: (0..slots)
                    .map(|i| AtomicU32::new(spsc_initial_seq(i)))
                    .collect(),
                data: ShadowPair::new(),
                space: ShadowPair::new(),
                attached: [AtomicU32::new(0), AtomicU32::new(0)],
                claims: (0..MAX_ENDPOINTS).map(|_| AtomicU64::new(0)).collect(),
                claim_lens: (0..MAX_ENDPOINTS).map(|_| AtomicU64::new(0)).collect(),
                recovery: AtomicU64::new(0),
                words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            },
        }
    }

    #[inline]
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Whether the `SIGBUS` guard replaced part of this mapping with zero pages: what this
    /// process wrote since may never reach the segment. Checked by a producer after it publishes
    /// and before it reports success. (Never under loom: heap memory is not guarded.)
    #[inline(always)]
    pub(crate) fn faulted(&self) -> bool {
        #[cfg(loom)]
        return false;
        #[cfg(not(loom))]
        {
            // The flag is set by a signal handler running in this very thread, in the middle of
            // one of the writes above: keep the compiler from moving the load before them.
            crate::sync::compiler_fence(crate::sync::Ordering::SeqCst);
            // Relaxed: set in this thread by the handler before the faulting write resumes;
            // the fence orders the load after that write.
            self.fault.load(crate::sync::Ordering::Relaxed)
        }
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `new`'s contract: the header is mapped for our lifetime, and every field of
        // `Header` is atomic, so a shared reference stays sound whatever other processes write.
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
    pub(crate) fn wait_pair(&self, side: Side) -> Pair<'_> {
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
            Pair {
                epoch: Futex::new(&pair.epoch),
                sleepers: &pair.sleepers,
            }
        }
    }

    /// The count of attached endpoints of `role` (`WaitLine::attached`). Its Release decrement
    /// when an endpoint leaves is what publishes that endpoint's last messages to a peer that
    /// reads 0 and decides it is gone, so loom models it.
    #[inline]
    pub(crate) fn attached(&self, role: Role) -> &AtomicU32 {
        let i = match role {
            Role::Producer => 0,
            Role::Consumer => 1,
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

    /// The reservation length beside the claim record of registry entry `entry`
    /// (`EndpointEntry::claim_len`, record rings with many producers).
    #[inline(always)]
    pub(crate) fn claim_len(&self, entry: usize) -> &AtomicU64 {
        #[cfg(loom)]
        return &self.shadow.claim_lens[entry];
        #[cfg(not(loom))]
        &self.header().endpoints[entry].claim_len
    }

    /// The sleeper evidence of registry entry `entry` (`EndpointEntry::asleep`): a plain atomic
    /// outside the loom models (it only heals a dead sleeper's count).
    #[inline]
    pub(crate) fn asleep(&self, entry: usize) -> &raw::AtomicU64 {
        &self.header().endpoints[entry].asleep
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

/// The data area of a record ring: the header word of a record at an offset, and its bytes.
/// Offsets are from the start of the data area; callers bound them first (`records::Look`).
impl RingMem {
    /// Address `off` bytes into the data area (`off <= capacity`: one past the end is the
    /// address of an empty payload at the very end).
    #[inline(always)]
    fn data(&self, off: usize) -> *mut u8 {
        debug_assert!((off as u64) <= self.geo.capacity);
        // SAFETY: off <= capacity, so the address lies within, or one past, the `total_size`
        // bytes `new` vouches for (`HEADER_SIZE + capacity`).
        unsafe { self.base.as_ptr().add(HEADER_SIZE + off) }
    }

    /// The header word of a record at `off` (8-byte aligned, `off < capacity`: callers derive
    /// it from positions they validated; anything else is folded into range, never trusted).
    #[inline(always)]
    pub(crate) fn record_word(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(RECORD_ALIGN) && (off as u64) < self.geo.capacity);
        // Two ANDs that are no-ops for every valid offset, and make an invalid one harmless.
        let off = off & (self.geo.capacity as usize - 1) & !(RECORD_ALIGN - 1);
        #[cfg(loom)]
        return &self.shadow.words[off / RECORD_ALIGN];
        // SAFETY: `off < capacity` and a multiple of 8 (the masks above), so the word lies
        // inside the data area and is 8-byte aligned (HEADER_SIZE is a multiple of 8); a header
        // word is only ever accessed atomically while it is one.
        #[cfg(not(loom))]
        unsafe {
            &*self.data(off).cast::<AtomicU64>()
        }
    }

    /// `len` bytes from `off` (`off + len <= capacity`).
    ///
    /// # Safety
    /// The caller owns the range for reading for all of `'a` (a committed, unreleased record).
    #[inline(always)]
    pub(crate) unsafe fn record_bytes<'a>(&self, off: usize, len: usize) -> &'a [u8] {
        debug_assert!(off as u64 + len as u64 <= self.geo.capacity);
        // SAFETY: in bounds (caller's duty); nobody writes the range while it is borrowed.
        unsafe { core::slice::from_raw_parts(self.data(off), len) }
    }

    /// `len` writable bytes from `off` (`off + len <= capacity`).
    ///
    /// # Safety
    /// The caller owns the range for writing, exclusively, for all of `'a` (a reserved,
    /// uncommitted record).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)] // the ring protocol, not `&self`, grants the exclusivity
    pub(crate) unsafe fn record_bytes_mut<'a>(&self, off: usize, len: usize) -> &'a mut [u8] {
        debug_assert!(off as u64 + len as u64 <= self.geo.capacity);
        // SAFETY: in bounds (caller's duty); nobody else accesses the range while borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.data(off), len) }
    }

    /// Copies `msg` to `off` (`off + msg.len() <= capacity`).
    ///
    /// # Safety
    /// The caller owns the range for writing (a reserved, uncommitted record).
    #[inline(always)]
    pub(crate) unsafe fn write_record(&self, off: usize, msg: &[u8]) {
        debug_assert!(off as u64 + msg.len() as u64 <= self.geo.capacity);
        // SAFETY: in bounds and owned (caller's duty); `msg` is process-local, so the ranges
        // do not overlap.
        unsafe { copy(msg.as_ptr(), self.data(off), msg.len()) }
    }

    /// Copies `buf.len()` bytes from `off` into `buf` (`off + buf.len() <= capacity`).
    ///
    /// # Safety
    /// The caller owns the range for reading (a committed, unreleased record).
    #[inline(always)]
    pub(crate) unsafe fn read_record(&self, off: usize, buf: &mut [u8]) {
        debug_assert!(off as u64 + buf.len() as u64 <= self.geo.capacity);
        // SAFETY: as for `write_record`.
        unsafe { copy(self.data(off), buf.as_mut_ptr(), buf.len()) }
    }

    /// Zeroes `len` bytes from `off` (both multiples of 8, `off + len <= capacity`): what a
    /// consumed record leaves for the next lap.
    ///
    /// # Safety
    /// The caller owns the range (a record it consumed and has not released, or bytes a dead
    /// producer reserved), and no word in it is read as a header meanwhile.
    #[inline]
    pub(crate) unsafe fn zero_record(&self, off: usize, len: usize) {
        debug_assert!(off as u64 + len as u64 <= self.geo.capacity);
        debug_assert!(off.is_multiple_of(RECORD_ALIGN) && len.is_multiple_of(RECORD_ALIGN));
        #[cfg(loom)]
        for w in off / RECORD_ALIGN..(off + len) / RECORD_ALIGN {
            // Relaxed: published by the consumer's Release store of `tail`.
            self.shadow.words[w].store(0, crate::sync::Ordering::Relaxed);
        }
        // SAFETY: in bounds, and owned by the caller (caller's duty); plain bytes.
        unsafe { ptr::write_bytes(self.data(off), 0, len) };
    }
}

/// Copies `len` bytes. Up to 128 bytes it copies inline with two possibly overlapping
/// unaligned loads and stores of `N` bytes, the power of two with `N <= len <= 2 * N` (8 bytes
/// for 8..=16, 32 for 33..=64, ...), instead of calling `memcpy` through a length the compiler cannot see:
/// for 8-byte messages that call was the largest single cost of a send+receive, and at 64 bytes
/// it was a sixth of a throughput run's samples (`docs/benchmarks.md`).
///
/// # Safety
/// `src` is valid for reads and `dst` for writes of `len` bytes, and the ranges do not overlap.
#[inline(always)]
unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    /// Copies `len` bytes (`N <= len <= 2 * N`) as the first `N` and the last `N`.
    ///
    /// # Safety
    /// As for `copy`, with `N <= len <= 2 * N`.
    #[inline(always)]
    unsafe fn two<const N: usize>(src: *const u8, dst: *mut u8, len: usize) {
        debug_assert!(N <= len && len <= 2 * N);
        // SAFETY: offsets 0 and `len - N` with `N <= len` keep each `N`-byte access within the
        // first `len` bytes of `src` and `dst` (the caller's duty); unaligned accesses need no
        // alignment. Both loads come before both stores, and the ranges do not overlap, so an
        // overlap of the two halves copies the same bytes twice.
        unsafe {
            let a = ptr::read_unaligned(src.cast::<[u8; N]>());
            let b = ptr::read_unaligned(src.add(len - N).cast::<[u8; N]>());
            ptr::write_unaligned(dst.cast::<[u8; N]>(), a);
            ptr::write_unaligned(dst.add(len - N).cast::<[u8; N]>(), b);
        }
    }
    // SAFETY: each branch meets `two`'s bound on `len`; the rest is the caller's duty. Branches
    // with the small sizes first, not a `match` on the ranges: the `match` cost the 8-byte copy
    // path a fifth of its rate (criterion, one-thread send+recv, six alternating runs); this
    // order runs within the spread of the former 8..=16-only inline copy.
    unsafe {
        if len <= 16 {
            if len >= 8 {
                two::<8>(src, dst, len);
            } else if len >= 4 {
                two::<4>(src, dst, len);
            } else {
                ptr::copy_nonoverlapping(src, dst, len);
            }
        } else if len <= 32 {
            two::<16>(src, dst, len);
        } else if len <= 64 {
            two::<32>(src, dst, len);
        } else if len <= 128 {
            two::<64>(src, dst, len);
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
    pub(crate) unsafe fn write_value<T: crate::plain::Plain>(&self, idx: usize, value: T) {
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
    pub(crate) unsafe fn read_value<T: crate::plain::Plain>(&self, idx: usize) -> T {
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
    fn small_copies_copy_exactly_len_bytes() {
        let src: Vec<u8> = (1..=200).collect();
        for len in 0..=200 {
            let mut dst = [0u8; 208];
            // SAFETY: both buffers hold at least `len` bytes and do not overlap.
            unsafe { copy(src.as_ptr(), dst.as_mut_ptr(), len) };
            assert_eq!(&dst[..len], &src[..len], "len {len}");
            assert!(
                dst[len..].iter().all(|&b| b == 0),
                "len {len} wrote past the end"
            );
        }
    }
}
