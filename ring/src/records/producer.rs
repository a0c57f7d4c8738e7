//! The record-ring producer's path: reserve (one producer: a local cursor; many: a
//! compare-and-swap on `head`), write, commit (a Release store of the header word).

use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use super::{
    MESSAGE, PADDING, RESERVED, committed_end, offset, placement, record_size, used, word,
};
use crate::endpoint::{
    self, Attached, ClaimRecord, Endpoint, Sending, Shared, common_api, send_api,
};
use crate::error::{AttachError, ClaimError, CommitError, Corruption, TryClaimError, TrySendError};
use crate::kind::{Kind, Role};
use crate::layout::{RECORD_ALIGN, RingMem, Side};
use crate::plain::Plain;
use crate::sync::{Ordering, RangeToken, Step, crash_point, dying, fence};
use crate::wait;

/// A claim record's length word flags a reservation of padding (the end of the data area), so
/// that a recoverer settles it as padding, not as a lost message.
pub(super) const PAD_FLAG: u64 = 1 << 63;

/// The sending end of a record ring: one per ring ([`Kind::Records`]), or any number from any
/// processes ([`Kind::RecordsMpsc`]).
///
/// # Examples
/// ```
/// let ring = shmring::Ring::builder().records().capacity(4096).heap().create()?;
/// let mut tx = ring.records_producer()?;
/// let mut rx = ring.records_consumer()?;
/// tx.try_send(b"short")?;
/// tx.try_send(&[7u8; 300])?; // a message takes the bytes it needs
/// let mut buf = Vec::new();
/// assert_eq!(rx.try_recv_vec(&mut buf)?, 5);
/// assert_eq!(buf, b"short");
/// assert_eq!(rx.try_recv_vec(&mut buf)?, 300);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Producer {
    /// The ring, the registry entry, the consumer as last seen.
    ep: Attached,
    /// This endpoint's claim record (many producers), resolved once.
    record: ClaimRecord,
    /// Many producers (a compare-and-swap on `head`), or one (a local cursor).
    many: bool,
    /// One producer: the next position to reserve. Only this producer moves it, so the local
    /// copy is exact. (Many: unused.)
    head: u64,
    /// The consumer cursor as last loaded; reloaded when the ring looks full.
    cached_tail: u64,
    /// A claim made and neither committed nor aborted (position, length): set while a
    /// [`WriteRecord`] lives, and left set if one was leaked with `mem::forget`, for the next
    /// claim or the drop to turn into padding so the consumer is not stuck behind it.
    pending: Option<(u64, usize)>,
}

impl Endpoint for Producer {
    fn attached(&self) -> &Attached {
        &self.ep
    }

    fn attached_mut(&mut self) -> &mut Attached {
        &mut self.ep
    }

    /// Bytes reserved and not yet released (headers and padding included): with one producer
    /// as it last loaded the consumer cursor, with many as the cursors read now.
    fn len(&self) -> usize {
        let (head, tail) = if self.many {
            let mem = self.mem();
            // Relaxed (both): a snapshot. Tail first: it never passes head.
            let tail = mem.tail().load(Ordering::Relaxed);
            (mem.head().load(Ordering::Relaxed), tail)
        } else {
            (self.head, self.cached_tail)
        };
        head.wrapping_sub(tail).min(self.capacity()) as usize
    }
}

impl Sending for Producer {
    type Slot<'a> = WriteRecord<'a>;

    fn try_send_msg<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        self.try_send(msg)
    }

    /// A claim of the largest message (the kind-erased endpoint's claim, which does not know
    /// the length yet: commit the bytes written with [`WriteRecord::commit_prefix`]).
    fn claim_until(&mut self, deadline: Option<Instant>) -> Result<WriteRecord<'_>, ClaimError> {
        self.claim_len_until(self.slot_size(), deadline)
    }
}

common_api!(Producer);
send_api!(Producer);

impl Drop for Producer {
    fn drop(&mut self) {
        if dying() {
            return; // a loom model killed this "process": it does nothing more
        }
        if let Some((pos, len)) = self.pending.take() {
            // A leaked claim: give its bytes up as padding.
            self.abort(pos, len);
        }
    }
}

impl Producer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Producer, AttachError> {
        let kind = shared.mem.geometry().kind;
        let evidence = super::recovery::evidence(&shared.mem);
        let ep = Attached::new(
            Arc::clone(&shared),
            Role::Producer,
            placement(kind, true, &evidence),
        )?;
        let record = ClaimRecord::new(ep.mem(), ep.entry());
        let many = kind == Kind::RecordsMpsc;
        let mem = ep.mem();
        let (head, tail) = if many {
            // Acquire (both): as in `reserve`.
            let tail = mem.tail().load(Ordering::Acquire);
            let head = mem.head().load(Ordering::Acquire);
            super::check_cursors(mem, head, tail).map_err(AttachError::Corrupt)?;
            (head, tail)
        } else {
            // Whatever a dead predecessor half-wrote after `end` is never read as a header:
            // every record start is cleared before the record before it is committed
            // (`clear_next`), and we continue at `end`.
            let (end, tail) = committed_end(mem).map_err(AttachError::Corrupt)?;
            // Relaxed: a hint for observers (`committed_end` does not trust it).
            mem.head().store(end, Ordering::Relaxed);
            (end, tail)
        };
        Ok(Producer {
            ep,
            record,
            many,
            head,
            cached_tail: tail,
            pending: None,
        })
    }

    #[inline(always)]
    fn mem(&self) -> &RingMem {
        self.ep.mem()
    }

    /// `TooLarge` if a message of `len` bytes is above the largest.
    #[inline(always)]
    fn check_max(&self, len: usize) -> Result<(), TryClaimError> {
        let max = self.slot_size();
        if len > max {
            return Err(TryClaimError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Whether `size` bytes from `pos` are free: released by the consumer (`tail + capacity`
    /// reaches past them). Reloads the consumer cursor when the cached one says no.
    #[inline(always)]
    fn fits(&mut self, pos: u64, size: u64) -> bool {
        let capacity = self.capacity();
        if pos.wrapping_add(size).wrapping_sub(self.cached_tail) <= capacity {
            return true;
        }
        // Acquire: pairs with the consumer's Release store of `tail` in
        // `Consumer::publish_tail`: its reads and zeroing of these bytes happen before our
        // writes.
        self.cached_tail = self.mem().tail().load(Ordering::Acquire);
        pos.wrapping_add(size).wrapping_sub(self.cached_tail) <= capacity
    }

    /// Reserves a record of `len` bytes (`len <= slot_size`) and returns its position. At the
    /// end of the data area, a record that does not fit is preceded by padding to the end (a
    /// reservation of its own), so records never wrap.
    #[inline(always)]
    fn reserve(&mut self, len: usize) -> Result<u64, TryClaimError> {
        let need = record_size(len) as u64;
        // One producer, nothing pending, the record fits before the end and in the free space
        // as last seen: the common case, one local store.
        if !self.many && self.pending.is_none() {
            let pos = self.head;
            let capacity = self.capacity();
            if need <= capacity - (pos & (capacity - 1))
                && pos.wrapping_add(need).wrapping_sub(self.cached_tail) <= capacity
            {
                self.head = pos.wrapping_add(need);
                return Ok(pos);
            }
        }
        self.reserve_slow(len)
    }

    /// [`reserve`](Self::reserve), every case.
    #[inline(never)]
    fn reserve_slow(&mut self, len: usize) -> Result<u64, TryClaimError> {
        if let Some((pos, len)) = self.pending.take() {
            self.abort(pos, len); // a leaked claim
        }
        let need = record_size(len) as u64;
        let capacity = self.capacity();
        loop {
            let pos = if self.many {
                // Acquire: pairs with the AcqRel CAS of the producer that set it (their
                // reservations, and claim records, are ordered before ours).
                self.mem().head().load(Ordering::Acquire)
            } else {
                self.head
            };
            let room = capacity - (pos & (capacity - 1));
            let size = need.min(room);
            if !pos.is_multiple_of(RECORD_ALIGN as u64) {
                return Err(self.corrupt(pos));
            }
            if !self.fits(pos, size) {
                // Acquire: as the load at the top of the loop (pair 18).
                if self.many && self.mem().head().load(Ordering::Acquire) != pos {
                    continue; // `pos` went stale while we looked: not full
                }
                return Err(self.full(pos, size));
            }
            if self.many {
                let flag = if size < need { PAD_FLAG } else { 0 };
                // The length first, Relaxed: published with the position. Release (the
                // position): pairs with the Acquire load of the records in
                // `recovery::settle`: a recoverer that sees this record sees the length and
                // our earlier headers (which tell it where our last record ended).
                if crate::sync::recording() {
                    self.record.len().store(size | flag, Ordering::Relaxed);
                    self.record.claim().store(pos + 1, Ordering::Release);
                    crash_point(Step::ClaimRecorded);
                }
                // AcqRel on success, Acquire on failure: the payload is published by the
                // header word, not by the cursor; these keep the cursor and the claim records
                // consistent for a recoverer.
                if self
                    .mem()
                    .head()
                    .compare_exchange_weak(
                        pos,
                        pos.wrapping_add(size),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
                {
                    continue;
                }
                crash_point(Step::Reserved);
            } else {
                self.head = pos.wrapping_add(size);
            }
            let mem = self.mem();
            let at = mem.record_word(offset(mem, pos));
            if size < need {
                self.clear_next();
                let mem = self.mem();
                let at = mem.record_word(offset(mem, pos));
                // Release: pairs with the consumer's Acquire in `look`.
                at.store(
                    word(mem, pos, PADDING, size as usize - RECORD_ALIGN),
                    Ordering::Release,
                );
                if !self.many {
                    // Relaxed: a hint for observers.
                    mem.head().store(self.head, Ordering::Relaxed);
                }
                // The consumer must step over it before we can reuse the start of the ring:
                // wake it if it sleeps.
                wait::notify(mem, Side::Data);
                continue;
            }
            if self.many {
                // Relaxed, then a Release fence before the payload is written: the header is
                // in memory before any payload byte, so a recoverer that finds no header knows
                // nothing was written (`recovery::settle`). On x86 the fence is free.
                at.store(word(mem, pos, RESERVED, len), Ordering::Relaxed);
                fence(Ordering::Release);
                crash_point(Step::Announced);
            }
            return Ok(pos);
        }
    }

    /// The ring looked full for `size` bytes at `pos`: `Full`, `Corrupt` if the cursors are
    /// impossible, `Disconnected` if the consumer is gone too.
    #[cold]
    #[inline(never)]
    fn full(&mut self, pos: u64, size: u64) -> TryClaimError {
        if let Err(c) = used(pos, self.cached_tail, self.capacity()) {
            return TryClaimError::Corrupt(self.ep.shared().diagnose(c));
        }
        if let Some(c) = self.ep.shared().lost() {
            return TryClaimError::Corrupt(c);
        }
        if !self.ep.peers_gone() {
            return TryClaimError::Full;
        }
        // The consumer left; what it released before leaving is visible now (the Acquire in
        // `gone`): look once more.
        if self.fits(pos, size) {
            return TryClaimError::Full; // room after all: the next call takes it
        }
        TryClaimError::Disconnected
    }

    /// A cursor no producer stores (not 8-byte aligned).
    #[cold]
    fn corrupt(&self, head: u64) -> TryClaimError {
        TryClaimError::Corrupt(self.ep.shared().diagnose(Corruption::Cursors {
            head,
            tail: self.cached_tail,
            capacity: self.capacity(),
        }))
    }

    /// Reserves for a message of `len` bytes, checking the largest.
    #[inline]
    pub(crate) fn reserve_checked(&mut self, len: usize) -> Result<u64, TryClaimError> {
        self.check_max(len)?;
        self.reserve(len)
    }

    /// The write guard over the record reserved at `pos`.
    #[inline]
    pub(crate) fn guard(&mut self, pos: u64, len: usize) -> WriteRecord<'_> {
        self.pending = Some((pos, len));
        let off = offset(self.mem(), pos);
        let token = Some(
            self.mem()
                .cells()
                .write_range(off / RECORD_ALIGN, record_size(len) / RECORD_ALIGN),
        );
        WriteRecord {
            producer: self,
            pos,
            len,
            token,
        }
    }

    /// Claims a record of exactly `len` bytes to write in place; it is sent by
    /// [`commit`](WriteRecord::commit), and its bytes become padding if the guard is dropped.
    ///
    /// # Errors
    /// [`TryClaimError::TooLarge`] if `len` is above the largest message; `Full`,
    /// `Disconnected` (full, and the consumer gone), `Corrupt`.
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().records().capacity(1024).heap().create()?;
    /// let (mut tx, mut rx) = (ring.records_producer()?, ring.records_consumer()?);
    /// let mut rec = tx.try_claim(5)?;
    /// rec.copy_from_slice(b"hello");
    /// rec.commit()?;
    /// drop(tx.try_claim(3)?); // aborted: nothing is sent
    /// assert_eq!(&*rx.try_read()?, b"hello");
    /// assert!(rx.try_read().unwrap_err().would_block());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_claim(&mut self, len: usize) -> Result<WriteRecord<'_>, TryClaimError> {
        let pos = self.reserve_checked(len)?;
        Ok(self.guard(pos, len))
    }

    /// As [`try_claim`](Self::try_claim), waiting while the ring is full.
    ///
    /// # Errors
    /// `TooLarge`, `Disconnected` or `Corrupt`, as for `try_claim`.
    pub fn claim(&mut self, len: usize) -> Result<WriteRecord<'_>, ClaimError> {
        self.claim_len_until(len, None)
    }

    /// As [`claim`](Self::claim), giving up after `timeout` with [`ClaimError::Timeout`].
    ///
    /// # Errors
    /// As [`claim`](Self::claim), plus `Timeout`.
    pub fn claim_timeout(
        &mut self,
        len: usize,
        timeout: std::time::Duration,
    ) -> Result<WriteRecord<'_>, ClaimError> {
        self.claim_len_until(len, endpoint::deadline(timeout))
    }

    fn claim_len_until(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<WriteRecord<'_>, ClaimError> {
        let pos = endpoint::block_on(self, Side::Space, deadline, |p| {
            match p.reserve_checked(len) {
                Err(e) if e.would_block() => None,
                done => Some(done),
            }
        })
        .unwrap_or(Err(TryClaimError::Full))
        .map_err(ClaimError::from_try)?;
        Ok(self.guard(pos, len))
    }

    /// Copies `msg` into the ring as one record.
    ///
    /// # Errors
    /// [`TrySendError::TooLarge`] if `msg` is above the largest message; `Full`;
    /// `Disconnected` (full, and the consumer gone); `Corrupt`. Each hands `msg` back.
    #[inline]
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        endpoint::check_len(msg, self.slot_size())?;
        let pos = self.reserve(msg.len()).map_err(|e| e.with_msg(msg))?;
        let mem = self.mem();
        let off = offset(mem, pos);
        let token = mem
            .cells()
            .write_range(off / RECORD_ALIGN, record_size(msg.len()) / RECORD_ALIGN);
        // SAFETY: reserved by us (`reserve`) and uncommitted: nobody else accesses it; the
        // record fits before the end of the data area (`reserve` padded otherwise).
        unsafe { mem.write_record(off + RECORD_ALIGN, msg) };
        self.publish(pos, msg.len(), token)
            .map_err(|c| TrySendError::Corrupt(msg, c))
    }

    /// Copies a plain-data value into the ring, as a record of `size_of::<T>()` bytes.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send).
    #[inline]
    pub fn try_send_value<T: Plain>(&mut self, value: T) -> Result<(), TrySendError<T>> {
        crate::plain::check_fits(&value, self.slot_size())?;
        let len = size_of::<T>();
        let pos = self.reserve(len).map_err(|e| e.with_msg(value))?;
        let mem = self.mem();
        let off = offset(mem, pos);
        let token = mem
            .cells()
            .write_range(off / RECORD_ALIGN, record_size(len) / RECORD_ALIGN);
        // SAFETY: reserved by us and uncommitted, `len` bytes inside the data area (as in
        // `try_send`); an unaligned write of a `T` into exactly those bytes.
        unsafe {
            mem.record_bytes_mut(off + RECORD_ALIGN, len)
                .as_mut_ptr()
                .cast::<T>()
                .write_unaligned(value);
        }
        self.publish(pos, len, token)
            .map_err(|c| TrySendError::Corrupt(value, c))
    }

    /// Sends messages from `msgs` while they fit; returns how many were sent (0 if the ring
    /// is full).
    ///
    /// # Errors
    /// [`TrySendError::TooLarge`] naming (in `msg`) the index of a message above the largest;
    /// the messages before it were sent. `Corrupt` naming the message that could not be sent;
    /// `Disconnected` (index 0) if the ring is full and the consumer gone before any was sent.
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().records().capacity(64).heap().create()?;
    /// let (mut tx, mut rx) = (ring.records_producer()?, ring.records_consumer()?);
    /// // 64 bytes hold four 8-byte messages (each takes a header and its payload).
    /// let msgs: [&[u8]; 5] = [b"one", b"two", b"three", b"four", b"five"];
    /// assert_eq!(tx.try_send_batch(&msgs)?, 4);
    /// let mut got = Vec::new();
    /// assert_eq!(rx.try_recv_batch(10, |m| got.push(m.to_vec()))?, 4);
    /// assert_eq!(got, &msgs[..4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
    ) -> Result<usize, TrySendError<usize>> {
        for (i, msg) in msgs.iter().enumerate() {
            match self.try_send(msg.as_ref()) {
                Ok(()) => {}
                Err(e) if e.would_block() => return Ok(i),
                Err(TrySendError::TooLarge { len, max, .. }) => {
                    return Err(TrySendError::TooLarge { msg: i, len, max });
                }
                Err(TrySendError::Corrupt(_, c)) => return Err(TrySendError::Corrupt(i, c)),
                Err(_) if i > 0 => return Ok(i),
                Err(_) => return Err(TrySendError::Disconnected(0)),
            }
        }
        Ok(msgs.len())
    }

    /// Commits the record at `pos` as a message of `len` bytes; the loss, if the write landed
    /// on a page the `SIGBUS` guard had to replace (then the record is padding: nothing sent).
    #[inline(always)]
    fn publish(&mut self, pos: u64, len: usize, token: RangeToken) -> Result<(), Corruption> {
        // End the write access before the Release store that publishes it.
        token.end();
        self.pending = None;
        if self.mem().faulted() {
            self.abort(pos, len);
            return Err(self.ep.shared().fault());
        }
        self.clear_next();
        let mem = self.mem();
        // Release: pairs with the consumer's Acquire in `look`: the payload (and the cleared
        // word after the record) is visible to the consumer that sees this header.
        mem.record_word(offset(mem, pos))
            .store(word(mem, pos, MESSAGE, len), Ordering::Release);
        crash_point(Step::Published);
        if !self.many {
            // Relaxed: a hint for observers (a successor derives the position from the
            // records, `committed_end`).
            mem.head().store(self.head, Ordering::Relaxed);
        }
        wait::notify(mem, Side::Data);
        Ok(())
    }

    /// One producer: makes the word where the next record will start (`head`, the end of the
    /// reservation being committed) read as "nothing yet" before the commit exposes it to the
    /// consumer. The word may hold an old payload's bytes, which could look like a header of
    /// the next lap: it is zeroed if the consumer has released it; if not, it is the header of
    /// the unconsumed record one lap back (the reservation ends exactly at `tail + capacity`),
    /// which reads as "nothing yet" already. So the consumer never writes to the data area, as
    /// an SPSC consumer never writes to a slot. (Many producers cannot: the next start may be
    /// another producer's header already. Their consumer zeroes what it consumed instead.)
    #[inline(always)]
    fn clear_next(&mut self) {
        if self.many {
            return;
        }
        let next = self.head;
        let capacity = self.capacity();
        if next.wrapping_sub(self.cached_tail) >= capacity {
            // Acquire: as in `fits`: the consumer is done with the bytes it released.
            self.cached_tail = self.mem().tail().load(Ordering::Acquire);
            if next.wrapping_sub(self.cached_tail) >= capacity {
                return; // the lap-old header of the record at `tail`
            }
        }
        let mem = self.mem();
        // Relaxed: published by the Release store of the header before it, which the consumer
        // acquires before it ever looks here.
        mem.record_word(offset(mem, next))
            .store(0, Ordering::Relaxed);
    }

    /// Gives up the record reserved at `pos`: its bytes become padding, for the consumer to
    /// step over.
    #[cold]
    fn abort(&mut self, pos: u64, len: usize) {
        self.pending = None;
        self.clear_next();
        let mem = self.mem();
        // Release: as in `publish`.
        mem.record_word(offset(mem, pos)).store(
            word(mem, pos, PADDING, record_size(len) - RECORD_ALIGN),
            Ordering::Release,
        );
        if !self.many {
            // Relaxed: a hint for observers.
            mem.head().store(self.head, Ordering::Relaxed);
        }
        wait::notify(mem, Side::Data);
    }
}

/// A claimed record of exactly the length asked for: write it in place (it dereferences to
/// its bytes, which hold whatever was there), then [`commit`](Self::commit). Dropping it
/// sends nothing: its bytes become padding.
#[derive(Debug)]
#[must_use = "a claimed record sends nothing unless committed"]
pub struct WriteRecord<'a> {
    producer: &'a mut Producer,
    pos: u64,
    len: usize,
    token: Option<RangeToken>,
}

impl WriteRecord<'_> {
    /// Sends the record.
    ///
    /// # Errors
    /// [`CommitError::Corrupt`] if the ring's memory was lost under the write (nothing sent).
    #[inline]
    pub fn commit(mut self) -> Result<(), CommitError> {
        // The token is there until this guard is consumed; taking it tells `drop` the record
        // is settled.
        match self.token.take() {
            Some(token) => self
                .producer
                .publish(self.pos, self.len, token)
                .map_err(CommitError::Corrupt),
            None => Ok(()),
        }
    }

    /// Sends the first `n` bytes as the message; the rest of the claim becomes padding (for a
    /// writer that claimed the largest it might need).
    ///
    /// # Errors
    /// [`CommitError::TooLarge`] if `n` is above the claimed length (the claim is aborted);
    /// [`CommitError::Corrupt`] as for [`commit`](Self::commit).
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().records().capacity(1024).heap().create()?;
    /// let (mut tx, mut rx) = (ring.records_producer()?, ring.records_consumer()?);
    /// let mut rec = tx.try_claim(100)?;
    /// rec[..2].copy_from_slice(b"ok");
    /// rec.commit_prefix(2)?;
    /// assert_eq!(&*rx.try_read()?, b"ok");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_prefix(mut self, n: usize) -> Result<(), CommitError> {
        if n > self.len {
            return Err(CommitError::TooLarge {
                len: n,
                max: self.len,
            });
        }
        let (used, claimed) = (record_size(n), record_size(self.len));
        if used < claimed {
            let mem = self.producer.mem();
            let rest = self.pos.wrapping_add(used as u64);
            // Relaxed: published by the Release store of our header in `publish`; the
            // consumer reaches this word only after that one.
            mem.record_word(offset(mem, rest)).store(
                word(mem, rest, PADDING, claimed - used - RECORD_ALIGN),
                Ordering::Relaxed,
            );
        }
        self.len = n;
        self.commit()
    }

    /// The claimed length.
    #[allow(clippy::len_without_is_empty)] // a record of 0 bytes is a message like any other
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for WriteRecord<'_> {
    fn drop(&mut self) {
        if dying() {
            return; // a loom model killed this "process" mid-write: it does nothing more
        }
        // Not committed (`commit` took the token): abort.
        if let Some(token) = self.token.take() {
            token.end();
            self.producer.abort(self.pos, self.len);
        }
    }
}

impl Deref for WriteRecord<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let mem = self.producer.mem();
        // SAFETY: reserved by this producer and uncommitted: nobody else accesses it; it ends
        // inside the data area (`reserve`).
        unsafe { mem.record_bytes(offset(mem, self.pos) + RECORD_ALIGN, self.len) }
    }
}

impl DerefMut for WriteRecord<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let mem = self.producer.mem();
        // SAFETY: as for Deref; `&mut self` makes this the only reference.
        unsafe { mem.record_bytes_mut(offset(mem, self.pos) + RECORD_ALIGN, self.len) }
    }
}
