//! The MPMC consumer's path: observe a committed slot (Acquire of its sequence word) and take
//! it (CAS on `tail`), read, release (Release store of the sequence word for the next lap).

use core::ops::Deref;
use std::sync::Arc;

use std::time::Instant;

use super::recovery::{leaked, recover, uncommitted};
use super::{Consumer, evidence, len, passed};
use crate::endpoint::{
    self, Attached, ClaimRecord, Endpoint, Receiving, STALL_POLLS, Shared, Stall, consumer_api,
};
use crate::error::{AttachError, Corruption, RecvError, TryRecvError};
use crate::kind::Role;
use crate::layout::{ABANDONED, RingMem, SKIP, Side};
use crate::plain::Plain;
use crate::registry::Placement;
use crate::sync::{AccessToken, Ordering, Step, crash_point, dying};
use crate::wait;

impl Endpoint for Consumer {
    fn attached(&self) -> &Attached {
        &self.ep
    }

    fn attached_mut(&mut self) -> &mut Attached {
        &mut self.ep
    }

    /// A liveness check just ran: look at a stuck slot on the next "empty" poll.
    fn liveness_tick(&mut self) {
        self.stall.polls = self.stall.polls.max(STALL_POLLS);
    }

    fn len(&self) -> usize {
        len(self.mem())
    }
}

impl Receiving for Consumer {
    type Read<'a> = ReadSlot<'a>;

    fn try_recv_msg(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        self.try_recv(buf)
    }

    fn read_until(&mut self, deadline: Option<Instant>) -> Result<ReadSlot<'_>, RecvError> {
        let (pos, idx, len) = endpoint::block_on(self, Side::Data, deadline, |c| {
            match c.observe_checked(|_| Ok(())) {
                Err(e) if e.would_block() => None,
                done => Some(done),
            }
        })
        .unwrap_or(Err(TryRecvError::Empty))
        .map_err(RecvError::from_try)?;
        Ok(self.guard(pos, idx, len))
    }
}

consumer_api!(Consumer, ReadSlot);

impl Drop for Consumer {
    /// A receive guard leaked with `mem::forget` still holds its slot (as a leaked claim does,
    /// see [`Producer`](super::Producer)): release it as its drop would have, so the producers
    /// are not stalled for good. Its message went to this consumer, which never released it: it
    /// counts as reclaimed, as a slot taken back from a dead consumer does.
    fn drop(&mut self) {
        if dying() {
            return; // a loom model killed this "process": it does nothing more
        }
        if let Some(pos) = leaked(self.mem(), &self.record, Role::Consumer) {
            let idx = (pos & self.mem().geometry().mask()) as usize;
            self.release(pos, idx);
            // Relaxed: a statistic.
            self.mem()
                .header()
                .wait
                .reclaimed
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Consumer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Consumer, AttachError> {
        let evidence = evidence(&shared.mem);
        let ep = Attached::new(
            Arc::clone(&shared),
            Role::Consumer,
            Placement::Any {
                evidence: &evidence,
                first: 0,
            },
        )?;
        let record = ClaimRecord::new(ep.mem(), ep.entry());
        Ok(Consumer {
            ep,
            record,
            stall: Stall::default(),
        })
    }

    #[inline(always)]
    fn mem(&self) -> &RingMem {
        self.ep.mem()
    }

    /// [`observe`](Self::observe), turning `Empty` into `Disconnected` when the producers are
    /// gone and nothing they sent is left.
    #[inline(always)]
    pub(crate) fn observe_checked(
        &mut self,
        accept: impl Fn(usize) -> Result<(), TryRecvError>,
    ) -> Result<(u64, usize, usize), TryRecvError> {
        match self.observe::<true>(&accept) {
            Err(e) if e.would_block() => self.empty(&accept, e),
            other => other,
        }
    }

    /// The ring looked empty (`first`: `Empty` or `Pending`): that, or `Disconnected` if the
    /// producers are gone and nothing they sent is left.
    #[cold]
    #[inline(never)]
    fn empty(
        &mut self,
        accept: &dyn Fn(usize) -> Result<(), TryRecvError>,
        first: TryRecvError,
    ) -> Result<(u64, usize, usize), TryRecvError> {
        let shared = Arc::clone(self.ep.shared());
        if let Some(c) = shared.lost() {
            return Err(TryRecvError::Corrupt(c));
        }
        let mem = &shared.mem;
        let mut forged = None;
        if self.stall.due(shared.wait.liveness(), || {
            forged = super::apart(mem);
            uncommitted(mem)
        }) && recover(mem, self.ep.word(), self.stall.pos, Role::Producer)
        {
            // The stuck slot now reads "abandoned": report it (or whatever is there now).
            return self.observe::<true>(accept);
        }
        if let Some(c) = forged {
            return Err(TryRecvError::Corrupt(shared.diagnose(c)));
        }
        if !self.ep.peers_gone() {
            return Err(first);
        }
        // The producers left; what they published before leaving is visible now (the Acquire
        // in `gone`), so drain it first.
        match self.observe::<true>(accept) {
            Err(e) if e.would_block() => {}
            other => return other,
        }
        // Nothing more will come. A slot a dead producer claimed and never committed must be
        // reported as lost before the disconnect, never hidden behind it: recover it now (its
        // claimers are dead, so no stall time is needed).
        if let Some(pos) = uncommitted(mem)
            && recover(mem, self.ep.word(), pos, Role::Producer)
        {
            return self.observe::<true>(accept);
        }
        Err(TryRecvError::Disconnected)
    }

    /// The receive guard over taken cursor `pos` in slot `idx`, holding `len` bytes.
    #[inline(always)]
    pub(crate) fn guard(&mut self, pos: u64, idx: usize, len: usize) -> ReadSlot<'_> {
        let token = Some(self.mem().cells().read(idx));
        ReadSlot {
            consumer: self,
            pos,
            idx,
            len,
            token,
        }
    }

    /// Observes the next committed message whose length `accept` approves, and takes it (the
    /// tail CAS): nobody else reads it until [`release`](Self::release). Skip markers are
    /// stepped over; a refused message is left in place. With `MARKERS`, an abandoned marker or
    /// a corrupt length is taken too and reported; without, it is left in place and reported as
    /// `Empty`, for the next call to take (a batch ends before it). On success this consumer's
    /// claim record names the message until it is released.
    #[inline(always)]
    fn observe<const MARKERS: bool>(
        &self,
        accept: impl Fn(usize) -> Result<(), TryRecvError>,
    ) -> Result<(u64, usize, usize), TryRecvError> {
        let mut recorded = false;
        let claimed = self.observe_recorded::<MARKERS>(accept, &mut recorded);
        if recorded && claimed.is_err() {
            // Relaxed: withdraws an intent that named a cursor another consumer took (a stale
            // record would only delay a recovery of that cursor).
            self.set_record(0, Ordering::Relaxed);
        }
        claimed
    }

    /// [`observe`](Self::observe); sets `recorded` once it has stored a claim record.
    #[inline(always)]
    fn observe_recorded<const MARKERS: bool>(
        &self,
        accept: impl Fn(usize) -> Result<(), TryRecvError>,
        recorded: &mut bool,
    ) -> Result<(u64, usize, usize), TryRecvError> {
        let mem = self.mem();
        let geo = mem.geometry();
        let capacity = geo.capacity as i64;
        // Acquire: pairs with the AcqRel CAS of the consumer that set this value, so the slot
        // states of every earlier claim are visible (see the module docs).
        let mut pos = mem.tail().load(Ordering::Acquire);
        loop {
            let idx = (pos & geo.mask()) as usize;
            // Acquire: pairs with the Release store in `WriteSlot::publish_in_place`: the
            // payload and length of message `pos` are visible once we see `pos + 1`.
            let seq = mem.seq(idx).load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos.wrapping_add(1)) as i64;
            if dif == 0 {
                // Relaxed: ordered by the Acquire above. Read once, then bounded. It cannot
                // change before we release the slot, if the CAS below succeeds.
                let len = mem.len(idx).load(Ordering::Relaxed);
                let verdict = if len == SKIP {
                    Ok(false)
                } else if len == ABANDONED {
                    Err(None)
                } else if len as usize > geo.slot_size {
                    Err(Some(self.ep.shared().diagnose(Corruption::Length {
                        cursor: pos,
                        len,
                        max: geo.slot_size,
                    })))
                } else {
                    accept(len as usize)?;
                    Ok(true)
                };
                if !MARKERS && verdict.is_err() {
                    return Err(TryRecvError::Empty);
                }
                // Record the intent before the claim, so that whoever sees `pos` claimed can
                // find who holds it (crash recovery). Relaxed: published by the AcqRel CAS just
                // below to anyone who Acquires `tail` past `pos`.
                self.set_record(pos.wrapping_add(1), Ordering::Relaxed);
                *recorded = true;
                crash_point(Step::ClaimRecorded);
                // AcqRel on success, Acquire on failure: as the head CAS in
                // `Producer::claim_pos` (pair 6).
                match mem.tail().compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => match verdict {
                        Ok(true) => return Ok((pos, idx, len as usize)),
                        Ok(false) => {
                            self.release(pos, idx);
                            pos = pos.wrapping_add(1);
                        }
                        Err(Some(c)) => {
                            self.release(pos, idx);
                            return Err(TryRecvError::Corrupt(c));
                        }
                        Err(None) => {
                            self.release(pos, idx);
                            return Err(TryRecvError::Abandoned { cursor: pos });
                        }
                    },
                    Err(current) => pos = current,
                }
            } else if dif < 0 {
                // seq == pos + 1 - capacity (-capacity): a consumer of the previous lap still
                // reads it, so no producer can have claimed `pos`: empty. seq == pos (-1): free
                // for the producer of `pos`: empty unless that producer has claimed it and not
                // committed yet (pending).
                if dif == -capacity {
                    return Err(TryRecvError::Empty);
                }
                if dif == -1 {
                    return Err(if passed(mem.head(), pos) {
                        TryRecvError::Pending
                    } else {
                        TryRecvError::Empty
                    });
                }
                return Err(TryRecvError::Corrupt(
                    self.ep
                        .shared()
                        .diagnose(Corruption::Sequence { cursor: pos, seq }),
                ));
            } else {
                // Another consumer took `pos`; as in `Producer::try_claim`, `tail` must have
                // moved on. Acquire: as for the first load.
                let current = mem.tail().load(Ordering::Acquire);
                if current == pos {
                    return Err(TryRecvError::Corrupt(
                        self.ep
                            .shared()
                            .diagnose(Corruption::Sequence { cursor: pos, seq }),
                    ));
                }
                pos = current;
            }
        }
    }

    /// Hands slot `idx` (holding cursor `pos`) to the producer of the next lap.
    #[inline(always)]
    fn release(&self, pos: u64, idx: usize) {
        let mem = self.mem();
        // Release: pairs with the Acquire load of `seq` in `Producer::claim_pos`: our reads of
        // the slot happen before the next lap's write.
        mem.seq(idx)
            .store(pos.wrapping_add(mem.geometry().capacity), Ordering::Release);
        crash_point(Step::Released);
        // The record still names `pos` and is left so, as after a producer's commit.
        wait::notify(mem, Side::Space);
    }

    /// Stores this consumer's claim record (see `sync::recording` for loom).
    #[inline(always)]
    fn set_record(&self, value: u64, order: Ordering) {
        if crate::sync::recording() {
            self.record.claim().store(value, order);
        }
    }

    /// Borrows the next message in place (zero-copy); it is released when the [`ReadSlot`]
    /// drops.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::Pending`] (a producer still writes the next
    /// message), [`TryRecvError::Disconnected`], [`TryRecvError::Abandoned`] or
    /// [`TryRecvError::Corrupt`].
    #[inline(always)]
    pub fn try_read(&mut self) -> Result<ReadSlot<'_>, TryRecvError> {
        let (pos, idx, len) = self.observe_checked(|_| Ok(()))?;
        Ok(self.guard(pos, idx, len))
    }

    /// Copies the next message into `buf` and returns its length.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::Pending`]; [`TryRecvError::BufferTooSmall`] if
    /// the message is longer than `buf` (it stays in the ring); [`TryRecvError::Disconnected`],
    /// [`TryRecvError::Abandoned`], [`TryRecvError::Corrupt`].
    #[inline(always)]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        let available = buf.len();
        let (pos, idx, len) = self.observe_checked(|needed| {
            if needed > available {
                Err(TryRecvError::BufferTooSmall { needed, available })
            } else {
                Ok(())
            }
        })?;
        let mem = self.mem();
        let token = mem.cells().read(idx);
        // SAFETY: we claimed `pos` and have not released it; `len <= buf.len()` and
        // `len <= slot_size` were checked in `claim`.
        unsafe { mem.read_payload(idx, &mut buf[..len]) };
        token.end();
        self.release(pos, idx);
        Ok(len)
    }

    /// Reads a plain-data value.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`]; [`TryRecvError::SizeMismatch`] if the next message is not
    /// `size_of::<T>()` bytes (it stays in the ring); [`TryRecvError::Corrupt`].
    #[inline(always)]
    pub fn try_recv_value<T: Plain>(&mut self) -> Result<T, TryRecvError> {
        let (pos, idx, _) = self.observe_checked(crate::plain::check_size::<T>)?;
        let mem = self.mem();
        let token = mem.cells().read(idx);
        // SAFETY: claimed and unreleased; the message is exactly size_of::<T>() <= slot_size
        // bytes, and `T: Plain` accepts any bytes.
        let value = unsafe { mem.read_value::<T>(idx) };
        token.end();
        self.release(pos, idx);
        Ok(value)
    }

    /// Calls `f` on up to `max` messages in place and returns how many it was given; 0 if the
    /// ring is empty. Each message is taken and released on its own (MPMC has no cheaper
    /// batch: other consumers take messages in between); if `f` panics, the message it was
    /// given is released before the panic goes on.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv) when the first message cannot be received. A lost
    /// (abandoned) or corrupt message after the first ends the batch before it, to be reported
    /// by the next call; nothing is skipped unreported.
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        let mut n = 0;
        while n < max {
            let taken = if n == 0 {
                match self.observe_checked(|_| Ok(())) {
                    Err(e) if e.would_block() => return Ok(0),
                    other => other?,
                }
            } else {
                match self.observe::<false>(|_| Ok(())) {
                    Ok(taken) => taken,
                    Err(_) => break,
                }
            };
            let (pos, idx, len) = taken;
            f(&self.guard(pos, idx, len));
            n += 1;
        }
        Ok(n)
    }
}

/// A message borrowed in place; its slot is released when this drops.
#[derive(Debug)]
pub struct ReadSlot<'a> {
    consumer: &'a mut Consumer,
    pos: u64,
    idx: usize,
    len: usize,
    token: Option<AccessToken>,
}

impl Deref for ReadSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: taken and unreleased until this guard drops; `len` was bounded by
        // `slot_size` in `Consumer::observe`.
        unsafe { self.consumer.mem().payload_slice(self.idx, self.len) }
    }
}

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        if dying() {
            return; // a loom model killed this "process" holding the guard
        }
        // End the read access before the Release store that hands the slot back.
        self.token.take();
        self.consumer.release(self.pos, self.idx);
    }
}
