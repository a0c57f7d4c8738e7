//! Single producer, single consumer: Lamport's ring, with the "message ready" signal moved into
//! the slot.
//!
//! The producer owns `head`, the consumer owns `tail`; both are monotonic `u64` message counts
//! and a message's slot is `cursor & (capacity - 1)`. Each slot starts with its length and a
//! 32-bit sequence word, on the same cache line as the payload's first bytes.
//!
//! - The producer writes payload and length, then stores the slot's sequence word
//!   (`cursor + 1`, low 32 bits) with Release. The consumer polls the *slot's* sequence word with
//!   Acquire: seeing `tail + 1` makes payload and length visible, so a consumer never sees a torn
//!   message, and a hand-off moves one cache line (the slot's) instead of two (a cursor's and the
//!   slot's). The producer also stores `head` (Relaxed), for observers and a successor only.
//! - The consumer reads, then stores `tail` with Release. The producer keeps a cached copy of
//!   `tail` and reloads it with Acquire only when the ring looks full, so in steady state it
//!   touches the consumer's line once per lap, not once per message. No read-modify-write.
//!
//! Values read from the segment are checked before use: `head - tail <= capacity` when a cursor
//! is loaded, `len <= slot_size` for every message. A corrupt segment yields [`Corruption`],
//! never an out-of-bounds access. Sequence words are only ever compared for equality.

use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use crate::endpoint::{
    self, Attached, Endpoint, Receiving, Sending, Shared, consumer_api, producer_api,
};
use crate::error::{
    AttachError, ClaimError, CommitError, Corruption, RecvError, TryClaimError, TryRecvError,
    TrySendError,
};
use crate::kind::Role;
use crate::layout::{RingMem, Side};
use crate::plain::Plain;
use crate::registry::Placement;
use crate::sync::{AccessToken, Ordering};
use crate::wait;

/// The sending end of an SPSC ring. One per ring, across all processes.
///
/// # Examples
/// ```
/// let ring = shmring::Ring::builder().spsc().capacity(4).slot_size(8).heap().create()?;
/// let mut tx = ring.spsc_producer()?;
/// let mut rx = ring.spsc_consumer()?;
/// for i in 0..4u64 {
///     tx.try_send_value(i)?;
/// }
/// assert!(tx.try_send_value(4u64).unwrap_err().is_full());
/// assert_eq!(rx.try_recv_value::<u64>()?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Producer {
    /// The ring, the registry entry (0), the consumer as last seen.
    ep: Attached,
    /// Next cursor to publish. Only this producer stores `head`, so the local copy is exact.
    head: u64,
    /// The consumer cursor as last loaded; reloaded when the ring looks full.
    cached_tail: u64,
}

/// The receiving end of an SPSC ring. One per ring, across all processes.
#[derive(Debug)]
pub struct Consumer {
    /// The ring, the registry entry (1), the producer as last seen.
    ep: Attached,
    /// Next cursor to read. Only this consumer stores `tail`, so the local copy is exact.
    tail: u64,
}

/// The cursors as an attaching endpoint (or an observer) must take them: `tail` exactly, and
/// the producer's position derived from the slots.
///
/// `tail` is exact: the consumer stores it after every release. `head` is only a hint: the
/// producer stores it (Relaxed) after publishing, so a producer killed between the two leaves
/// it behind the slots it published — by at most one batch, at most the capacity, because a
/// successor stores the position it derived as soon as it attaches. The consumer may then have
/// received those slots too, leaving `head` up to a capacity *behind* `tail`. The sequence
/// words say exactly: from `max(head, tail)`, every slot holding the sequence word of its
/// cursor is published, and the first that does not is where the producer continues.
///
/// Returns `(position, tail)`, or [`Corruption::Cursors`] if `head` is more than the capacity
/// away from `tail` in either direction (no crash leaves that).
pub(crate) fn cursors(mem: &RingMem) -> Result<(u64, u64), Corruption> {
    // Relaxed: `head` is a hint, stored Relaxed; what a predecessor producer did is ordered
    // for us by the registry hand-over (pair 7), and the slots are read through their own
    // sequence words below.
    let hint = mem.head().load(Ordering::Relaxed);
    // Acquire: pairs with the Release store of `tail` in `Consumer::release`: the slots the
    // consumer released were read before we overwrite them.
    let tail = mem.tail().load(Ordering::Acquire);
    let capacity = mem.geometry().capacity;
    let ahead = hint.wrapping_sub(tail);
    let mut head = if ahead <= capacity {
        hint
    } else if tail.wrapping_sub(hint) <= capacity {
        tail
    } else {
        return Err(Corruption::Cursors {
            head: hint,
            tail,
            capacity,
        });
    };
    while head.wrapping_sub(tail) < capacity {
        let idx = (head & mem.geometry().mask()) as usize;
        // Relaxed: only compared; the consumer's Acquire is what reads the slot.
        if mem.seq32(idx).load(Ordering::Relaxed) != head.wrapping_add(1) as u32 {
            break;
        }
        head = head.wrapping_add(1);
    }
    Ok((head, tail))
}

impl Endpoint for Producer {
    fn attached(&self) -> &Attached {
        &self.ep
    }

    fn attached_mut(&mut self) -> &mut Attached {
        &mut self.ep
    }

    /// Messages published and not yet released, as this producer last loaded the consumer
    /// cursor (the consumer may have received more since).
    fn len(&self) -> usize {
        self.head.wrapping_sub(self.cached_tail) as usize
    }
}

impl Sending for Producer {
    type Slot<'a> = WriteSlot<'a>;

    fn try_send_msg<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        self.try_send(msg)
    }

    /// Waits for a free slot, then claims it (nobody else can take it).
    fn claim_until(&mut self, deadline: Option<Instant>) -> Result<WriteSlot<'_>, ClaimError> {
        endpoint::block_on(self, Side::Space, deadline, |p| match p.has_space() {
            Err(TryClaimError::Full) => None,
            done => Some(done),
        })
        .unwrap_or(Err(TryClaimError::Full))
        .map_err(ClaimError::from_try)?;
        self.try_claim().map_err(ClaimError::from_try)
    }
}

producer_api!(Producer, WriteSlot);

impl Endpoint for Consumer {
    fn attached(&self) -> &Attached {
        &self.ep
    }

    fn attached_mut(&mut self) -> &mut Attached {
        &mut self.ep
    }

    /// Messages published and not yet received, from our own exact cursor to the producer's
    /// position as the slots say ([`cursors`]).
    fn len(&self) -> usize {
        let published = cursors(self.mem()).map_or(self.tail, |(head, _)| head);
        published.wrapping_sub(self.tail).min(self.capacity()) as usize
    }
}

impl Receiving for Consumer {
    type Read<'a> = ReadSlot<'a>;

    fn try_recv_msg(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        self.try_recv(buf)
    }

    /// Waits for a message, then borrows it.
    fn read_until(&mut self, deadline: Option<Instant>) -> Result<ReadSlot<'_>, RecvError> {
        endpoint::block_on(self, Side::Data, deadline, |c| match c.peek() {
            Err(TryRecvError::Empty) => None,
            done => Some(done.map(|_| ())),
        })
        .unwrap_or(Err(TryRecvError::Empty))
        .map_err(RecvError::from_try)?;
        self.try_read().map_err(RecvError::from_try)
    }
}

consumer_api!(Consumer, ReadSlot);

impl Producer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Producer, AttachError> {
        let ep = Attached::new(shared, Role::Producer, Placement::Fixed(0))?;
        let (head, tail) = cursors(ep.mem()).map_err(AttachError::Corrupt)?;
        // A predecessor that died between publishing slots and storing `head` left it behind;
        // `cursors` stepped over what it published. Store the repaired value at once, so the
        // hint never lags by more than this producer's next batch.
        // Relaxed: as in `advance`.
        ep.mem().head().store(head, Ordering::Relaxed);
        Ok(Producer {
            ep,
            head,
            cached_tail: tail,
        })
    }

    #[inline(always)]
    fn mem(&self) -> &RingMem {
        self.ep.mem()
    }

    /// Free slots, reloading the consumer cursor only if fewer than `want` look free.
    #[inline(always)]
    fn free(&mut self, want: u64) -> Result<u64, Corruption> {
        let capacity = self.mem().geometry().capacity;
        // Invariant: head - cached_tail <= capacity (checked whenever cached_tail is loaded).
        let mut used = self.head.wrapping_sub(self.cached_tail);
        if capacity - used < want {
            // Acquire: pairs with the Release store of `tail` in `Consumer::release`: the
            // consumer's reads of the slots it released happen before we overwrite them.
            let tail = self.mem().tail().load(Ordering::Acquire);
            used = self.head.wrapping_sub(tail);
            if used > capacity {
                // Not cached: the invariant above must keep holding.
                return Err(self.ep.shared().diagnose(Corruption::Cursors {
                    head: self.head,
                    tail,
                    capacity,
                }));
            }
            self.cached_tail = tail;
        }
        Ok(capacity - used)
    }

    /// Whether a slot is free: `Full` if not, or `Disconnected` if the consumer is gone too.
    #[inline(always)]
    pub(crate) fn has_space(&mut self) -> Result<(), TryClaimError> {
        if self.free(1).map_err(TryClaimError::Corrupt)? > 0 {
            return Ok(());
        }
        self.full()
    }

    /// The ring looked full: `Full`, or `Disconnected` if the consumer is gone too. Out of line,
    /// as `Consumer::empty`.
    #[cold]
    #[inline(never)]
    fn full(&mut self) -> Result<(), TryClaimError> {
        if let Some(c) = self.ep.shared().lost() {
            return Err(TryClaimError::Corrupt(c));
        }
        if !self.ep.peers_gone() {
            return Err(TryClaimError::Full);
        }
        // The consumer left; the slots it released before leaving are visible now (the
        // Acquire in `gone`), so look once more.
        match self.free(1).map_err(TryClaimError::Corrupt)? {
            0 => Err(TryClaimError::Disconnected),
            _ => Ok(()),
        }
    }

    /// Publishes the slot of cursor `head + offset`, whose payload is written: stores its
    /// length, then its sequence word.
    #[inline(always)]
    fn publish_slot(&self, offset: u64, len: usize) -> Result<(), Corruption> {
        let mem = self.mem();
        let cursor = self.head.wrapping_add(offset);
        let idx = (cursor & mem.geometry().mask()) as usize;
        // Relaxed: published by the Release store of the sequence word just below.
        mem.len(idx).store(len as u32, Ordering::Relaxed);
        // A write above may have hit a page that could not be had, which the `SIGBUS` guard
        // replaced with a private zero page: then publish nothing (another process would never
        // see it; a consumer in this process would) and report the loss. The sequence word
        // shares its 8 bytes with the length, so its store cannot fault on a page of its own.
        if mem.faulted() {
            return Err(self.ep.shared().fault());
        }
        // Release: pairs with the Acquire load in `Consumer::ready`: the payload and length of
        // this slot are visible to a consumer that sees `cursor + 1`.
        mem.seq32(idx)
            .store(cursor.wrapping_add(1) as u32, Ordering::Release);
        Ok(())
    }

    /// Advances past `count` published slots.
    #[inline(always)]
    fn advance(&mut self, count: u64) {
        crate::sync::crash_point(crate::sync::Step::BeforeHead);
        self.head = self.head.wrapping_add(count);
        // Relaxed: `head` publishes nothing (the slots' sequence words do); it is read by `len`
        // and by a successor producer, which re-checks the sequence words anyway.
        self.mem().head().store(self.head, Ordering::Relaxed);
        wait::notify(self.mem(), Side::Data);
    }

    /// Writes `msg` into the slot of cursor `head + offset` and publishes it.
    #[inline]
    fn write(&self, offset: u64, msg: &[u8]) -> Result<(), Corruption> {
        let mem = self.mem();
        let idx = (self.head.wrapping_add(offset) & mem.geometry().mask()) as usize;
        let token = mem.cells().write(idx);
        // SAFETY: `msg.len() <= slot_size` (callers check), the slot is free (`free` said so)
        // and unpublished, so only this producer accesses it.
        unsafe { mem.write_payload(idx, msg) };
        token.end();
        self.publish_slot(offset, msg.len())
    }

    /// Claims the next slot for writing in place (zero-copy). Write into the returned
    /// [`WriteSlot`], then [`commit`](WriteSlot::commit) the length; dropping it instead sends
    /// nothing.
    ///
    /// # Errors
    /// [`TryClaimError::Full`], or [`TryClaimError::Corrupt`] if the consumer cursor in the
    /// segment is impossible.
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().spsc().capacity(8).slot_size(64).heap().create()?;
    /// let (mut tx, mut rx) = (ring.spsc_producer()?, ring.spsc_consumer()?);
    /// let mut slot = tx.try_claim()?;
    /// slot[..5].copy_from_slice(b"hello");
    /// slot.commit(5)?;
    /// assert_eq!(&*rx.try_read()?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline(always)]
    pub fn try_claim(&mut self) -> Result<WriteSlot<'_>, TryClaimError> {
        self.has_space()?;
        let idx = (self.head & self.mem().geometry().mask()) as usize;
        let token = self.mem().cells().write(idx);
        Ok(WriteSlot {
            producer: self,
            idx,
            token,
        })
    }

    /// Copies `msg` into the ring: [`try_claim`](Self::try_claim), copy, commit.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::TooLarge`] if `msg` is longer than a slot, or
    /// [`TrySendError::Corrupt`]; each hands `msg` back.
    #[inline(always)]
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        endpoint::check_len(msg, self.slot_size())?;
        let mut slot = self.try_claim().map_err(|e| e.with_msg(msg))?;
        // SAFETY: `msg.len() <= slot_size` was checked above.
        unsafe { slot.fill(msg) };
        slot.publish(msg.len())
            .map_err(|c| TrySendError::Corrupt(msg, c))
    }

    /// Copies as many of `msgs` as there are free slots, checking for free space once and
    /// waking a sleeping consumer once. Returns how many were sent: the first that many; the
    /// rest did not fit (0 if the ring is full).
    ///
    /// # Errors
    /// [`TrySendError::TooLarge`] naming (in `msg`) the index of a message longer than a slot;
    /// the messages before it were sent. [`TrySendError::Corrupt`] or
    /// [`TrySendError::Disconnected`] (the ring is full and the consumer gone), with index 0:
    /// nothing sent.
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().spsc().capacity(4).slot_size(8).heap().create()?;
    /// let (mut tx, mut rx) = (ring.spsc_producer()?, ring.spsc_consumer()?);
    /// assert_eq!(tx.try_send_batch(&[b"a", b"b", b"c", b"d", b"e"])?, 4);
    /// let mut got = Vec::new();
    /// assert_eq!(rx.try_recv_batch(10, |m| got.push(m.to_vec()))?, 4);
    /// assert_eq!(got, [b"a", b"b", b"c", b"d"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
    ) -> Result<usize, TrySendError<usize>> {
        let mut free = self
            .free(msgs.len() as u64)
            .map_err(|c| TrySendError::Corrupt(0, c))?;
        if free == 0 && !msgs.is_empty() {
            match self.has_space() {
                Ok(()) => free = 1,
                Err(TryClaimError::Full) => return Ok(0),
                Err(e) => return Err(e.with_msg(0)),
            }
        }
        let n = msgs.len().min(free as usize);
        let max = self.slot_size();
        let mut sent = 0;
        let mut result = Ok(n);
        for msg in &msgs[..n] {
            let msg = msg.as_ref();
            if msg.len() > max {
                result = Err(TrySendError::TooLarge {
                    msg: sent,
                    len: msg.len(),
                    max,
                });
                break;
            }
            if let Err(c) = self.write(sent as u64, msg) {
                // This message's write hit a lost page: it and the rest are not sent.
                result = Err(TrySendError::Corrupt(sent, c));
                break;
            }
            sent += 1;
        }
        if sent > 0 {
            self.advance(sent as u64);
        }
        result
    }

    /// Copies a plain-data value into the ring.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send); `TooLarge` if `size_of::<T>()` exceeds the slot size.
    #[inline(always)]
    pub fn try_send_value<T: Plain>(&mut self, value: T) -> Result<(), TrySendError<T>> {
        crate::plain::check_fits(&value, self.slot_size())?;
        let mut slot = self.try_claim().map_err(|e| e.with_msg(value))?;
        // SAFETY: `size_of::<T>() <= slot_size` was checked above.
        unsafe { slot.fill_value(value) };
        slot.publish(size_of::<T>())
            .map_err(|c| TrySendError::Corrupt(value, c))
    }
}

/// A claimed slot: write the message into it (it dereferences to the whole slot, `slot_size`
/// bytes, holding stale bytes), then [`commit`](Self::commit). Dropping it sends nothing.
#[derive(Debug)]
#[must_use = "a claimed slot sends nothing unless committed"]
pub struct WriteSlot<'a> {
    producer: &'a mut Producer,
    idx: usize,
    token: AccessToken,
}

impl WriteSlot<'_> {
    /// Publishes the first `len` bytes of the slot as one message.
    ///
    /// # Errors
    /// [`CommitError::TooLarge`] if `len` exceeds the slot size (the claim is then dropped, as
    /// if never made, and nothing is sent); [`CommitError::Corrupt`] if the ring's memory was
    /// lost under the write (a page that could not be allocated, or a truncated object: the
    /// message does not reach the segment).
    #[inline]
    pub fn commit(self, len: usize) -> Result<(), CommitError> {
        let max = self.producer.slot_size();
        if len > max {
            return Err(CommitError::TooLarge { len, max });
        }
        self.publish(len).map_err(CommitError::Corrupt)
    }

    /// Copies `msg` to the start of the slot.
    ///
    /// # Safety
    /// `msg.len() <= slot_size`.
    #[inline]
    unsafe fn fill(&mut self, msg: &[u8]) {
        // SAFETY: the slot is claimed and unpublished (only we access it); the length is the
        // caller's duty.
        unsafe { self.producer.mem().write_payload(self.idx, msg) }
    }

    /// Writes `value` to the start of the slot.
    ///
    /// # Safety
    /// `size_of::<T>() <= slot_size`.
    #[inline]
    unsafe fn fill_value<T: Plain>(&mut self, value: T) {
        // SAFETY: as for `fill`.
        unsafe { self.producer.mem().write_value(self.idx, value) }
    }

    /// Stores the length and publishes the slot (`len <= slot_size`); the loss, if the write
    /// landed on a page the `SIGBUS` guard had to replace (then nothing was sent).
    #[inline]
    fn publish(self, len: usize) -> Result<(), Corruption> {
        let WriteSlot {
            producer, token, ..
        } = self;
        // End the write access before the Release store that publishes it.
        token.end();
        producer.publish_slot(0, len)?;
        producer.advance(1);
        Ok(())
    }
}

impl Deref for WriteSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let mem = self.producer.mem();
        // SAFETY: the slot is claimed by this producer and unpublished: nobody else accesses it.
        unsafe { mem.payload_slice(self.idx, mem.geometry().slot_size) }
    }
}

impl DerefMut for WriteSlot<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let mem = self.producer.mem();
        // SAFETY: as for Deref; `&mut self` makes this the only reference.
        unsafe { mem.payload_slice_mut(self.idx, mem.geometry().slot_size) }
    }
}

impl Consumer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Consumer, AttachError> {
        let ep = Attached::new(shared, Role::Consumer, Placement::Fixed(1))?;
        let (_, tail) = cursors(ep.mem()).map_err(AttachError::Corrupt)?;
        Ok(Consumer { ep, tail })
    }

    #[inline(always)]
    fn mem(&self) -> &RingMem {
        self.ep.mem()
    }

    /// The slot and validated length of message `tail + offset`, if it is published.
    #[inline(always)]
    fn ready(&self, offset: u64) -> Result<Option<(usize, usize)>, Corruption> {
        let mem = self.mem();
        let cursor = self.tail.wrapping_add(offset);
        let idx = (cursor & mem.geometry().mask()) as usize;
        // Acquire: pairs with the Release store in `Producer::publish_slot`: once we see
        // `cursor + 1`, the payload and length of message `cursor` are visible.
        if mem.seq32(idx).load(Ordering::Acquire) != cursor.wrapping_add(1) as u32 {
            return Ok(None);
        }
        // Relaxed: made visible by the Acquire above. Read once, then bounded before any use.
        let len = mem.len(idx).load(Ordering::Relaxed);
        let max = mem.geometry().slot_size;
        if len as usize > max {
            return Err(self
                .ep
                .shared()
                .diagnose(Corruption::Length { cursor, len, max }));
        }
        Ok(Some((idx, len as usize)))
    }

    /// The next message's slot and length, not yet consumed. A slot with a corrupt length is
    /// consumed (so the ring moves on) and reported.
    #[inline(always)]
    pub(crate) fn peek(&mut self) -> Result<(usize, usize), TryRecvError> {
        match self.ready(0) {
            Ok(Some(found)) => Ok(found),
            Ok(None) => self.empty(),
            Err(c) => {
                self.release(1);
                Err(TryRecvError::Corrupt(c))
            }
        }
    }

    /// The ring looked empty: `Empty`, or `Disconnected` if the producer is gone and nothing
    /// it sent is left. Out of line: it keeps `peek` small enough to inline into every receive.
    #[cold]
    #[inline(never)]
    fn empty(&mut self) -> Result<(usize, usize), TryRecvError> {
        if let Some(c) = self.ep.shared().lost() {
            return Err(TryRecvError::Corrupt(c));
        }
        if !self.ep.peers_gone() {
            return Err(TryRecvError::Empty);
        }
        // The producer left; what it published before leaving is visible now (the Acquire in
        // `gone`), so drain it first.
        match self.ready(0) {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(TryRecvError::Disconnected),
            Err(c) => {
                self.release(1);
                Err(TryRecvError::Corrupt(c))
            }
        }
    }

    /// Gives the next `count` slots back to the producer.
    #[inline(always)]
    fn release(&mut self, count: u64) {
        self.tail = self.tail.wrapping_add(count);
        // Release: pairs with the Acquire load of `tail` in `Producer::free`: our reads of these
        // slots happen before the producer overwrites them.
        self.mem().tail().store(self.tail, Ordering::Release);
        wait::notify(self.mem(), Side::Space);
    }

    /// Borrows the next message in place (zero-copy); it is consumed when the [`ReadSlot`]
    /// drops.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], or [`TryRecvError::Corrupt`].
    #[inline(always)]
    pub fn try_read(&mut self) -> Result<ReadSlot<'_>, TryRecvError> {
        let (idx, len) = self.peek()?;
        Ok(self.guard(idx, len))
    }

    /// The read guard over the published slot `idx` holding `len` bytes ([`peek`](Self::peek)).
    #[inline(always)]
    pub(crate) fn guard(&mut self, idx: usize, len: usize) -> ReadSlot<'_> {
        let token = Some(self.mem().cells().read(idx));
        ReadSlot {
            consumer: self,
            idx,
            len,
            token,
        }
    }

    /// Copies the next message into `buf` and returns its length.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`]; [`TryRecvError::BufferTooSmall`] if the message is longer than
    /// `buf` (it stays in the ring); [`TryRecvError::Corrupt`].
    #[inline(always)]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        let (idx, len) = self.peek()?;
        if len > buf.len() {
            return Err(TryRecvError::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        }
        let mem = self.mem();
        let token = mem.cells().read(idx);
        // SAFETY: the slot is published (`ready` saw its sequence word) and not yet released,
        // so the producer does not touch it; `len <= slot_size` and `len <= buf.len()`.
        unsafe { mem.read_payload(idx, &mut buf[..len]) };
        token.end();
        self.release(1);
        Ok(len)
    }

    /// Reads a plain-data value.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`]; [`TryRecvError::SizeMismatch`] if the next message is not
    /// `size_of::<T>()` bytes (it stays in the ring); [`TryRecvError::Corrupt`].
    #[inline(always)]
    pub fn try_recv_value<T: Plain>(&mut self) -> Result<T, TryRecvError> {
        let (idx, len) = self.peek()?;
        crate::plain::check_size::<T>(len)?;
        let mem = self.mem();
        let token = mem.cells().read(idx);
        // SAFETY: as in `try_recv`; the message holds exactly size_of::<T>() bytes and every bit
        // pattern is a valid `T` (the `Plain` contract).
        let value = unsafe { mem.read_value::<T>(idx) };
        token.end();
        self.release(1);
        Ok(value)
    }

    /// Calls `f` on up to `max` messages in place, then releases them with one cursor store
    /// (and wakes a sleeping producer once). Returns how many were processed; 0 if the ring is
    /// empty.
    ///
    /// If `f` panics, the messages it was given — the one it panicked on included — are
    /// released before the panic goes on (so a message that panics its handler is not handed
    /// to it again; as with every kind).
    ///
    /// # Errors
    /// [`TryRecvError::Corrupt`] if the first message is corrupt (it is consumed); a corrupt
    /// message after the first ends the batch before it, to be reported by the next call.
    /// [`TryRecvError::Disconnected`] if the ring is empty and the producer gone.
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        struct Release<'c> {
            consumer: &'c mut Consumer,
            done: u64,
        }
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.done > 0 {
                    self.consumer.release(self.done);
                }
            }
        }
        let mut batch = Release {
            consumer: self,
            done: 0,
        };
        while (batch.done as usize) < max {
            let (idx, len) = match batch.consumer.ready(batch.done) {
                Ok(Some(found)) => found,
                Ok(None) if batch.done == 0 => match batch.consumer.empty() {
                    Ok(found) => found,
                    Err(TryRecvError::Empty) => break,
                    Err(e) => {
                        if matches!(e, TryRecvError::Corrupt(_)) {
                            // `empty` consumed the corrupt slot.
                            batch.done = 0;
                        }
                        return Err(e);
                    }
                },
                Ok(None) => break,
                Err(c) if batch.done == 0 => {
                    batch.done = 1;
                    return Err(TryRecvError::Corrupt(c));
                }
                Err(_) => break,
            };
            let mem = batch.consumer.mem();
            let token = mem.cells().read(idx);
            // Counted before `f` sees it: if `f` panics on it, it is released with the others
            // (a message that panics its handler is not handed to it again; as MPMC).
            batch.done += 1;
            // SAFETY: published (`ready` saw its sequence word) and unreleased; `len <=
            // slot_size`.
            f(unsafe { mem.payload_slice(idx, len) });
            token.end();
        }
        Ok(batch.done as usize)
    }
}

/// A message borrowed in place; it is consumed (its slot released) when this drops.
#[derive(Debug)]
pub struct ReadSlot<'a> {
    consumer: &'a mut Consumer,
    idx: usize,
    len: usize,
    token: Option<AccessToken>,
}

impl Deref for ReadSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: published and unreleased until this guard drops; `len` was bounded by
        // `slot_size` in `Consumer::ready`.
        unsafe { self.consumer.mem().payload_slice(self.idx, self.len) }
    }
}

impl ReadSlot<'_> {
    /// Puts the message back instead of consuming it: the next receive returns it again (the
    /// consumer cursor did not move). For a reader that could not deliver what it read.
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().spsc().capacity(4).slot_size(8).heap().create()?;
    /// let (mut tx, mut rx) = (ring.spsc_producer()?, ring.spsc_consumer()?);
    /// tx.try_send(b"again")?;
    /// rx.try_read()?.unread();
    /// assert_eq!(&*rx.try_read()?, b"again");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unread(mut self) {
        // End the read access; nothing is released.
        self.token.take();
        core::mem::forget(self);
    }
}

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        // End the read access before the Release store that hands the slot back.
        self.token.take();
        self.consumer.release(1);
    }
}
