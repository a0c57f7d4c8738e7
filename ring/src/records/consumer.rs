//! The record-ring consumer's path: observe the header at `tail` (Acquire), read the record,
//! mark it consumed and zero it, release (a Release store of `tail`, once per batch).

use core::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use super::{
    ABANDONED, CONSUMED, Look, PADDING, check_cursors, look, offset, placement, record_size,
    restate,
};
use crate::endpoint::{
    self, Attached, Endpoint, Receiving, STALL_POLLS, Shared, Stall, consumer_api,
};
use crate::error::{AttachError, Corruption, RecvError, TryRecvError};
use crate::kind::{Kind, Role};
use crate::layout::{RECORD_ALIGN, RingMem, Side};
use crate::plain::Plain;
use crate::sync::{Ordering, RangeToken, Step, crash_point};
use crate::wait;

/// The receiving end of a record ring; one per ring, across all processes.
#[derive(Debug)]
pub struct Consumer {
    /// The ring, the registry entry, the producers as last seen.
    ep: Attached,
    /// Many producers (reservations can be stuck on a dead one).
    many: bool,
    /// The next position to read. Only this consumer stores `tail`, so the local copy is exact
    /// (it runs ahead of the stored one only inside a batch).
    tail: u64,
    /// How long the reservation at `tail` has stayed uncommitted, as seen by this consumer
    /// (crash recovery, many producers).
    stall: Stall,
}

impl Endpoint for Consumer {
    fn attached(&self) -> &Attached {
        &self.ep
    }

    fn attached_mut(&mut self) -> &mut Attached {
        &mut self.ep
    }

    /// A liveness check just ran: look at a stuck reservation on the next "empty" poll.
    fn liveness_tick(&mut self) {
        self.stall.polls = self.stall.polls.max(STALL_POLLS);
    }

    /// Bytes reserved by producers and not yet released (headers and padding included).
    fn len(&self) -> usize {
        // Relaxed: a snapshot; our own cursor is exact.
        let head = self.mem().head().load(Ordering::Relaxed);
        head.wrapping_sub(self.tail).min(self.capacity()) as usize
    }
}

impl Receiving for Consumer {
    type Read<'a> = ReadRecord<'a>;

    fn try_recv_msg(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        self.try_recv(buf)
    }

    fn read_until(&mut self, deadline: Option<Instant>) -> Result<ReadRecord<'_>, RecvError> {
        let (off, len) = endpoint::block_on(self, Side::Data, deadline, |c| match c.next() {
            Err(e) if e.would_block() => None,
            done => Some(done),
        })
        .unwrap_or(Err(TryRecvError::Empty))
        .map_err(RecvError::from_try)?;
        Ok(self.guard(off, len))
    }
}

consumer_api!(Consumer, ReadRecord);

impl Consumer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Consumer, AttachError> {
        let kind = shared.mem.geometry().kind;
        let evidence = super::recovery::evidence(&shared.mem);
        let ep = Attached::new(
            Arc::clone(&shared),
            Role::Consumer,
            placement(kind, false, &evidence),
        )?;
        let mem = ep.mem();
        // Acquire: pairs with the Release store of the consumer that held the role before.
        let tail = mem.tail().load(Ordering::Acquire);
        // With one producer `head` is a hint that may lag behind `tail` (it is stored after
        // the commit); only alignment is checked. With many it is exact.
        // Acquire: with many producers, pairs with their AcqRel head CAS (the reservations
        // below `head` are announced); with one, `head` is a hint stored Relaxed, and the
        // Acquire pairs with nothing (harmless: only its alignment is used).
        let head = mem.head().load(Ordering::Acquire);
        let checked = if kind == Kind::RecordsMpsc {
            check_cursors(mem, head, tail)
        } else {
            check_cursors(mem, tail, tail)
        };
        checked.map_err(AttachError::Corrupt)?;
        Ok(Consumer {
            ep,
            many: kind == Kind::RecordsMpsc,
            tail,
            stall: Stall::default(),
        })
    }

    #[inline(always)]
    fn mem(&self) -> &RingMem {
        self.ep.mem()
    }

    /// The next message, not consumed: its payload offset and length. Padding, and records a
    /// previous consumer finished with, are stepped over; an abandoned reservation is consumed
    /// and reported.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> Result<(usize, usize), TryRecvError> {
        let mem = self.mem();
        let geo = mem.geometry();
        let off = offset(mem, self.tail);
        // Acquire: as in `look`.
        let w = mem.record_word(off).load(Ordering::Acquire);
        // The common case, with one comparison for lap and state: a message of this lap that
        // fits (`Look::of` decides every other case).
        let len = (w & super::LEN_MASK) as usize;
        if w >> super::STATE_SHIFT == super::lap(mem, self.tail) << 8 | super::MESSAGE
            && len <= geo.slot_size
            && record_size(len) <= geo.capacity as usize - off
        {
            return Ok((off + RECORD_ALIGN, len));
        }
        self.slow(Look::of(mem, self.tail, w))
    }

    /// [`next`](Self::next) when the header at `tail` is not a message (`first`).
    #[cold]
    #[inline(never)]
    fn slow(&mut self, first: Look) -> Result<(usize, usize), TryRecvError> {
        let mut found = first;
        let mut retried = false;
        loop {
            match found {
                Look::Message(len) => {
                    return Ok((offset(self.mem(), self.tail) + RECORD_ALIGN, len));
                }
                Look::Skip { size, state } => {
                    let at = self.tail;
                    self.consume(size, state);
                    self.publish_tail();
                    match state {
                        ABANDONED => return Err(TryRecvError::Abandoned { cursor: at }),
                        CONSUMED => {
                            // A consumer died while releasing it: its message went to that
                            // consumer. Counted as MPMC counts a slot taken back from one.
                            // Relaxed: a statistic.
                            self.mem()
                                .header()
                                .wait
                                .reclaimed
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                Look::Corrupt(w) => {
                    return Err(TryRecvError::Corrupt(self.ep.shared().diagnose(
                        Corruption::Record {
                            cursor: self.tail,
                            word: w,
                        },
                    )));
                }
                Look::Reserved(_) if !self.many => {
                    // One producer never reserves: not a word it writes.
                    return Err(TryRecvError::Corrupt(self.ep.shared().diagnose(
                        Corruption::Record {
                            cursor: self.tail,
                            word: super::raw_word(self.mem(), self.tail),
                        },
                    )));
                }
                Look::Empty | Look::Reserved(_) => {
                    if retried {
                        return Err(self.nothing(found));
                    }
                    retried = true;
                    if !self.empty(found)? {
                        return Err(self.nothing(found));
                    }
                }
            }
            found = look(self.mem(), self.tail);
        }
    }

    /// What "nothing to read" is, for `found` at `tail`.
    fn nothing(&self, found: Look) -> TryRecvError {
        match found {
            Look::Reserved(_) => TryRecvError::Pending,
            // (Only chooses between two "not now" answers; left out of the loom models, where
            // a load on every empty poll multiplies the paths, as `mpmc::passed` is.)
            _ if self.many
                && !cfg!(loom)
                && self.mem().head().load(Ordering::Relaxed) != self.tail =>
            {
                TryRecvError::Pending
            }
            _ => TryRecvError::Empty,
        }
    }

    /// The header at `tail` says nothing to read (`found`). Looks at what may change that: a
    /// lost page (`Corrupt`), a reservation stuck on a dead producer (settled: look again), the
    /// producers gone (look again once, then `Disconnected`). Returns whether to look again.
    #[cold]
    fn empty(&mut self, found: Look) -> Result<bool, TryRecvError> {
        let shared = Arc::clone(self.ep.shared());
        if let Some(c) = shared.lost() {
            return Err(TryRecvError::Corrupt(c));
        }
        let mem = &shared.mem;
        let tail = self.tail;
        let stuck = self.many && {
            // Acquire: pairs with the producers' head CAS, so the claim records stored before
            // it are visible to the recovery.
            let head = mem.head().load(Ordering::Acquire);
            if let Err(c) = check_cursors(mem, head, tail) {
                return Err(TryRecvError::Corrupt(shared.diagnose(c)));
            }
            head != tail
        };
        if stuck
            && self.stall.due(shared.wait.liveness(), || Some(tail))
            && super::recovery::settle(mem, tail)
        {
            return Ok(true);
        }
        if !self.ep.peers_gone() {
            return Err(self.nothing(found));
        }
        // The producers left; what they committed before leaving is visible now (the Acquire
        // in `gone`), so look again. A reservation a dead producer never committed must be
        // reported as lost before the disconnect, never hidden behind it: settle it now (its
        // claimers are dead, so no stall time is needed).
        if let Look::Empty | Look::Reserved(_) = look(mem, tail) {
            if stuck && super::recovery::settle(mem, tail) {
                return Ok(true);
            }
            return Err(TryRecvError::Disconnected);
        }
        Ok(true)
    }

    /// Consumes the record at `tail` (`size` bytes, in `state`) and moves the local cursor past
    /// it (stored by `publish_tail`). With many producers a message is marked consumed first (so
    /// a successor never delivers it half-zeroed) and everything after the header is zeroed,
    /// so no old payload is read as a header next lap; with one, the producer clears each
    /// record start instead (`Producer::clear_next`) and the consumer writes nothing here.
    #[inline(always)]
    fn consume(&mut self, size: usize, state: u64) {
        if self.many {
            self.zero(size, state);
        }
        self.tail = self.tail.wrapping_add(size as u64);
    }

    /// Many producers: marks the record at `tail` consumed and zeroes it after its header.
    #[inline(always)]
    fn zero(&self, size: usize, state: u64) {
        let mem = self.mem();
        let off = offset(mem, self.tail);
        let header = mem.record_word(off);
        if state != PADDING && state != CONSUMED {
            // Relaxed (load and store): our own record to settle; a successor consumer reads it
            // after the registry hand-over, and a producer never before `tail` passes it.
            let w = header.load(Ordering::Relaxed);
            header.store(restate(w, CONSUMED), Ordering::Relaxed);
            crash_point(Step::Consumed);
        }
        let token = mem
            .cells()
            .write_range(off / RECORD_ALIGN, size / RECORD_ALIGN);
        // SAFETY: the record at `tail` is committed (or a dead producer's, settled) and not
        // released: the producers stay out of it until `tail` passes it; `size` was checked
        // against the end of the data area (`Look::of`).
        unsafe { mem.zero_record(off + RECORD_ALIGN, size - RECORD_ALIGN) };
        token.end();
    }

    /// Hands the consumed bytes back to the producers.
    #[inline(always)]
    fn publish_tail(&mut self) {
        let mem = self.mem();
        // Release: pairs with the producers' Acquire load of `tail` in `Producer::fits`: our
        // reads and zeroing of the released bytes happen before their writes.
        mem.tail().store(self.tail, Ordering::Release);
        crash_point(Step::Released);
        wait::notify(mem, Side::Space);
    }

    /// Consumes the message at `tail` (`len` bytes) and releases it.
    #[inline(always)]
    fn release(&mut self, len: usize) {
        self.consume(record_size(len), super::MESSAGE);
        self.publish_tail();
    }

    pub(crate) fn guard(&mut self, off: usize, len: usize) -> ReadRecord<'_> {
        let token = Some(self.read_token(off, len));
        ReadRecord {
            consumer: self,
            off,
            len,
            token,
        }
    }

    /// The read access to the message at payload offset `off`.
    #[inline(always)]
    fn read_token(&self, off: usize, len: usize) -> RangeToken {
        self.mem()
            .cells()
            .read_range(off / RECORD_ALIGN - 1, record_size(len) / RECORD_ALIGN)
    }

    /// Borrows the next message in place (zero-copy); it is consumed when the [`ReadRecord`]
    /// drops.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`]; `Pending` (many producers: the next record is still being
    /// written); `Disconnected` (empty, and every producer gone); `Abandoned` (its producer
    /// died before committing it; the next call goes on); `Corrupt`.
    #[inline]
    pub fn try_read(&mut self) -> Result<ReadRecord<'_>, TryRecvError> {
        let (off, len) = self.next()?;
        Ok(self.guard(off, len))
    }

    /// Copies the next message into `buf` and returns its length.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read), plus [`TryRecvError::BufferTooSmall`] if the message
    /// is longer than `buf` (it stays in the ring).
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        let (off, len) = self.next()?;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(TryRecvError::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        };
        let token = self.read_token(off, len);
        // SAFETY: committed (`look` saw its header with Acquire) and not released; it ends
        // inside the data area (`Look::of`).
        unsafe { self.mem().read_record(off, dst) };
        token.end();
        self.release(len);
        Ok(len)
    }

    /// Reads a plain-data value.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read), plus [`TryRecvError::SizeMismatch`] if the next
    /// message is not `size_of::<T>()` bytes (it stays in the ring).
    #[inline]
    pub fn try_recv_value<T: Plain>(&mut self) -> Result<T, TryRecvError> {
        let (off, len) = self.next()?;
        crate::plain::check_size::<T>(len)?;
        let token = self.read_token(off, len);
        // SAFETY: as in `try_recv`; the message holds exactly size_of::<T>() bytes and every
        // bit pattern is a valid `T` (the `Plain` contract); an unaligned read.
        let value = unsafe {
            self.mem()
                .record_bytes(off, len)
                .as_ptr()
                .cast::<T>()
                .read_unaligned()
        };
        token.end();
        self.release(len);
        Ok(value)
    }

    /// Replaces the contents of `buf` with the next message and returns its length: any
    /// length fits.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read).
    pub fn try_recv_vec(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        let (off, len) = self.next()?;
        buf.clear();
        buf.reserve(len);
        let token = self.read_token(off, len);
        // SAFETY: as in `try_recv`.
        buf.extend_from_slice(unsafe { self.mem().record_bytes(off, len) });
        token.end();
        self.release(len);
        Ok(len)
    }

    /// As [`try_recv_vec`](Self::try_recv_vec), waiting while the ring is empty.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), without `BufferTooSmall`.
    pub fn recv_vec(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.recv_vec_until(buf, None)
    }

    /// As [`recv_vec`](Self::recv_vec), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`recv_vec`](Self::recv_vec), plus `Timeout`.
    pub fn recv_vec_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<usize, RecvError> {
        self.recv_vec_until(buf, endpoint::deadline(timeout))
    }

    fn recv_vec_until(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        endpoint::block_on(self, Side::Data, deadline, |c| match c.try_recv_vec(buf) {
            Err(e) if e.would_block() => None,
            done => Some(done),
        })
        .unwrap_or(Err(TryRecvError::Empty))
        .map_err(RecvError::from_try)
    }

    /// Calls `f` on up to `max` messages in place, then releases them all with one cursor
    /// store (and wakes a sleeping producer once). Returns how many were processed; 0 if the
    /// ring is empty.
    ///
    /// If `f` panics, the messages it was given — the one it panicked on included — are
    /// released before the panic goes on (so a message that panics its handler is not handed
    /// to it again; as with every kind).
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read) for the first message; anything but a message after the
    /// first ends the batch before it, for the next call.
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        struct Release<'c> {
            consumer: &'c mut Consumer,
            done: usize,
            start: u64,
            /// The size of the record `f` is being given (0: none): consumed here if `f`
            /// panics on it.
            giving: usize,
        }
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.giving != 0 {
                    self.consumer.consume(self.giving, super::MESSAGE);
                }
                if self.consumer.tail != self.start {
                    self.consumer.publish_tail();
                }
            }
        }
        if max == 0 {
            return Ok(0);
        }
        let (mut off, mut len) = match self.next() {
            Ok(found) => found,
            Err(TryRecvError::Empty | TryRecvError::Pending) => return Ok(0),
            Err(e) => return Err(e),
        };
        let start = self.tail;
        let mut batch = Release {
            consumer: self,
            done: 0,
            start,
            giving: 0,
        };
        loop {
            let token = batch.consumer.read_token(off, len);
            let size = record_size(len);
            batch.giving = size;
            // SAFETY: as in `try_recv`.
            f(unsafe { batch.consumer.mem().record_bytes(off, len) });
            // (If `f` panicked, the read access ended when `token` dropped, before `batch`
            // consumes the record.)
            token.end();
            batch.giving = 0;
            batch.consumer.consume(size, super::MESSAGE);
            batch.done += 1;
            if batch.done == max {
                break;
            }
            // Padding is stepped over inside the batch; anything else but a message ends it.
            let mem = batch.consumer.mem();
            match look(mem, batch.consumer.tail) {
                Look::Message(l) => {
                    (off, len) = (offset(mem, batch.consumer.tail) + RECORD_ALIGN, l);
                }
                Look::Skip {
                    size,
                    state: PADDING,
                } => {
                    batch.consumer.consume(size, PADDING);
                    match look(batch.consumer.mem(), batch.consumer.tail) {
                        Look::Message(l) => {
                            let mem = batch.consumer.mem();
                            (off, len) = (offset(mem, batch.consumer.tail) + RECORD_ALIGN, l);
                        }
                        _ => break,
                    }
                }
                _ => break,
            }
        }
        Ok(batch.done)
    }
}

/// A message borrowed in place; it is consumed (zeroed and released) when this drops.
#[derive(Debug)]
pub struct ReadRecord<'a> {
    consumer: &'a mut Consumer,
    off: usize,
    len: usize,
    token: Option<RangeToken>,
}

impl Deref for ReadRecord<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: committed and unreleased until this guard drops; it ends inside the data area
        // (`Look::of`).
        unsafe { self.consumer.mem().record_bytes(self.off, self.len) }
    }
}

impl ReadRecord<'_> {
    /// Puts the message back instead of consuming it: the next receive returns it again.
    pub fn unread(mut self) {
        if let Some(token) = self.token.take() {
            token.end();
        }
        core::mem::forget(self);
    }
}

impl Drop for ReadRecord<'_> {
    fn drop(&mut self) {
        // End the read access before the bytes are zeroed and handed back.
        if let Some(token) = self.token.take() {
            token.end();
        }
        self.consumer.release(self.len);
    }
}
