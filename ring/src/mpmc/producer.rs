//! The MPMC producer's path: claim a cursor (CAS on `head`), write, commit (Release store of
//! the slot's sequence word); a dropped claim publishes a skip marker.

use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use std::sync::Arc;

use std::time::Instant;

use super::recovery::{held, leaked, recover};
use super::{Producer, evidence, len, passed};
use crate::endpoint::{
    self, Attached, ClaimRecord, Endpoint, STALL_POLLS, Sending, Shared, Stall, producer_api,
};
use crate::error::{AttachError, ClaimError, CommitError, Corruption, TryClaimError, TrySendError};
use crate::kind::Role;
use crate::layout::{RingMem, SKIP, Side};
use crate::plain::Plain;
use crate::registry::Placement;
use crate::sync::{AccessToken, Ordering, Step, crash_point, dying};
use crate::wait;

impl Endpoint for Producer {
    fn attached(&self) -> &Attached {
        &self.ep
    }

    fn attached_mut(&mut self) -> &mut Attached {
        &mut self.ep
    }

    /// A liveness check just ran: look at a stuck slot on the next "full" poll.
    fn liveness_tick(&mut self) {
        self.stall.polls = self.stall.polls.max(STALL_POLLS);
    }

    fn len(&self) -> usize {
        len(self.mem())
    }
}

impl Sending for Producer {
    type Slot<'a> = WriteSlot<'a>;

    fn try_send_msg<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        self.try_send(msg)
    }

    fn claim_until(&mut self, deadline: Option<Instant>) -> Result<WriteSlot<'_>, ClaimError> {
        let (pos, idx) =
            endpoint::block_on(self, Side::Space, deadline, |p| match p.claim_slot() {
                Err(e) if e.would_block() => None,
                done => Some(done),
            })
            .unwrap_or(Err(TryClaimError::Full))
            .map_err(ClaimError::from_try)?;
        Ok(self.slot(pos, idx))
    }
}

producer_api!(Producer, WriteSlot);

impl Drop for Producer {
    /// A claim leaked with `mem::forget` is still this producer's (its record names it and the
    /// slot is still claimed and uncommitted: cursors never repeat, and no recoverer touches a
    /// live claimer's slot). Give it up as a dropped claim does, with a skip marker, so neither
    /// it nor the messages behind it stay stuck after we leave. (Then `ep` leaves the
    /// registry.)
    fn drop(&mut self) {
        if dying() {
            return; // a loom model killed this "process": it does nothing more
        }
        if let Some(pos) = leaked(self.mem(), &self.record, Role::Producer) {
            let idx = (pos & self.mem().geometry().mask()) as usize;
            // Dropping an uncommitted slot publishes the skip marker.
            drop(self.slot(pos, idx));
        }
    }
}

impl Producer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Producer, AttachError> {
        let evidence = evidence(&shared.mem);
        let ep = Attached::new(
            Arc::clone(&shared),
            Role::Producer,
            Placement::Any {
                evidence: &evidence,
                first: 0,
            },
        )?;
        let record = ClaimRecord::new(ep.mem(), ep.entry());
        Ok(Producer {
            ep,
            record,
            stall: Stall::default(),
        })
    }

    #[inline(always)]
    fn mem(&self) -> &RingMem {
        self.ep.mem()
    }

    /// Claims a slot: `Full` or `Pending`, or `Disconnected` if the consumers are gone too.
    #[inline(always)]
    pub(crate) fn claim_slot(&mut self) -> Result<(u64, usize), TryClaimError> {
        match self.claim_pos() {
            Err(e) if e.would_block() => self.full(e),
            other => other,
        }
    }

    /// The ring looked full (`first`: `Full` or `Pending`): that, or `Disconnected` if the
    /// consumers are gone too.
    #[cold]
    #[inline(never)]
    fn full(&mut self, first: TryClaimError) -> Result<(u64, usize), TryClaimError> {
        let shared = Arc::clone(self.ep.shared());
        if let Some(c) = shared.lost() {
            return Err(TryClaimError::Corrupt(c));
        }
        let mem = &shared.mem;
        let mut forged = None;
        if self.stall.due(shared.wait.liveness(), || {
            forged = super::apart(mem);
            held(mem)
        }) && recover(mem, self.ep.word(), self.stall.pos, Role::Consumer)
        {
            // The slot a dead consumer held is free now.
            return self.claim_pos();
        }
        if let Some(c) = forged {
            return Err(TryClaimError::Corrupt(shared.diagnose(c)));
        }
        if !self.ep.peers_gone() {
            return Err(first);
        }
        // The consumers left; the slots they released before leaving are visible now (the
        // Acquire in `gone`), so look once more.
        match self.claim_pos() {
            Err(e) if e.would_block() => Err(TryClaimError::Disconnected),
            other => other,
        }
    }

    pub(crate) fn slot(&mut self, pos: u64, idx: usize) -> WriteSlot<'_> {
        let token = Some(self.mem().cells().write(idx));
        WriteSlot {
            producer: self,
            pos,
            idx,
            token,
        }
    }

    /// Claims the next free cursor and its slot.
    ///
    /// # Errors
    /// [`TryClaimError::Full`], [`TryClaimError::Pending`] (a consumer still reads the next
    /// slot), [`TryClaimError::Disconnected`], or [`TryClaimError::Corrupt`] for an impossible
    /// sequence word.
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().mpmc().capacity(2).slot_size(8).heap().create()?;
    /// let (mut tx, mut rx) = (ring.mpmc_producer()?, ring.mpmc_consumer()?);
    /// let mut slot = tx.try_claim()?;
    /// slot[..2].copy_from_slice(b"hi");
    /// slot.commit(2)?;
    /// assert_eq!(&*rx.try_read()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline(always)]
    pub fn try_claim(&mut self) -> Result<WriteSlot<'_>, TryClaimError> {
        let (pos, idx) = self.claim_slot()?;
        Ok(self.slot(pos, idx))
    }

    /// Claims the next free cursor: its value and slot index. `Full` or `Corrupt` otherwise.
    #[inline(always)]
    fn claim_pos(&self) -> Result<(u64, usize), TryClaimError> {
        let mem = self.mem();
        let geo = mem.geometry();
        let capacity = geo.capacity as i64;
        // Acquire: pairs with the AcqRel CAS of the producer that set this value, so the slot
        // states of every earlier claim are visible (see the module docs).
        let mut pos = mem.head().load(Ordering::Acquire);
        loop {
            let idx = (pos & geo.mask()) as usize;
            // Acquire: pairs with the Release store in `Consumer::release` (the previous lap's
            // reads of this slot happen before our write); for the first lap `init` stored it
            // Relaxed, published by the Release store of `ready` (pair 1) we acquired at open.
            let seq = mem.seq(idx).load(Ordering::Acquire);
            let dif = seq.wrapping_sub(pos) as i64;
            if dif == 0 {
                // Record the intent before the claim, so that whoever sees `pos` claimed can
                // find who claimed it (crash recovery). Relaxed: published by the AcqRel CAS
                // just below to anyone who Acquires `head` past `pos`.
                self.set_record(pos.wrapping_add(1), Ordering::Relaxed);
                crash_point(Step::ClaimRecorded);
                // AcqRel on success, Acquire on failure: the payload is published by the slot's
                // sequence word, not by the cursor; these orderings only keep the cursor and the
                // sequence words we read consistent (module docs).
                match mem.head().compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Ok((pos, idx)),
                    Err(current) => pos = current,
                }
            } else if dif < 0 {
                // The slot still holds lap pos - capacity: claimed but uncommitted (-capacity:
                // the ring is full), or committed and not yet released (1 - capacity: full if
                // no consumer has taken it, pending if one is reading it).
                // Relaxed: withdraws an intent that named a cursor we did not claim.
                self.set_record(0, Ordering::Relaxed);
                if dif == -capacity {
                    return Err(TryClaimError::Full);
                }
                if dif == 1 - capacity {
                    let taken = passed(mem.tail(), pos.wrapping_sub(geo.capacity));
                    return Err(if taken {
                        TryClaimError::Pending
                    } else {
                        TryClaimError::Full
                    });
                }
                return Err(TryClaimError::Corrupt(
                    self.ep
                        .shared()
                        .diagnose(Corruption::Sequence { cursor: pos, seq }),
                ));
            } else {
                // Another producer claimed `pos`. Its claim happens-before the sequence store we
                // acquired, so `head` has moved on; if it has not, the word is forged.
                // Acquire: as for the first load.
                let current = mem.head().load(Ordering::Acquire);
                if current == pos {
                    // Relaxed: as above.
                    self.set_record(0, Ordering::Relaxed);
                    return Err(TryClaimError::Corrupt(
                        self.ep
                            .shared()
                            .diagnose(Corruption::Sequence { cursor: pos, seq }),
                    ));
                }
                pos = current;
            }
        }
    }

    /// Stores this producer's claim record (see `sync::recording` for loom).
    #[inline(always)]
    fn set_record(&self, value: u64, order: Ordering) {
        if crate::sync::recording() {
            self.record.claim().store(value, order);
        }
    }

    /// Copies `msg` into the ring: [`try_claim`](Self::try_claim), copy, commit.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Pending`], [`TrySendError::Disconnected`],
    /// [`TrySendError::TooLarge`], [`TrySendError::Corrupt`]; each hands `msg` back.
    #[inline(always)]
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        endpoint::check_len(msg, self.slot_size())?;
        let slot = self.try_claim().map_err(|e| e.with_msg(msg))?;
        // SAFETY: `msg.len() <= slot_size` was checked above.
        unsafe { slot.producer.mem().write_payload(slot.idx, msg) };
        slot.publish(msg.len() as u32)
            .map_err(|c| TrySendError::Corrupt(msg, c))
    }

    /// Copies a plain-data value into the ring.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send).
    #[inline(always)]
    pub fn try_send_value<T: Plain>(&mut self, value: T) -> Result<(), TrySendError<T>> {
        crate::plain::check_fits(&value, self.slot_size())?;
        let slot = self.try_claim().map_err(|e| e.with_msg(value))?;
        // SAFETY: `size_of::<T>() <= slot_size` was checked above.
        unsafe { slot.producer.mem().write_value(slot.idx, value) };
        slot.publish(size_of::<T>() as u32)
            .map_err(|c| TrySendError::Corrupt(value, c))
    }
}

/// A claimed slot: write the message into it (it dereferences to the whole slot), then
/// [`commit`](Self::commit). Dropping it publishes a "skip" marker that consumers step over.
#[derive(Debug)]
#[must_use = "a claimed slot sends nothing unless committed"]
pub struct WriteSlot<'a> {
    producer: &'a mut Producer,
    pos: u64,
    idx: usize,
    token: Option<AccessToken>,
}

impl WriteSlot<'_> {
    /// Publishes the first `len` bytes of the slot as one message.
    ///
    /// # Errors
    /// [`CommitError::TooLarge`] if `len` exceeds the slot size (the claim is then dropped and
    /// nothing is sent: its slot holds a skip marker, which consumers pass over, as for any
    /// dropped claim); [`CommitError::Corrupt`] if the ring's memory was
    /// lost under the write (a page that could not be allocated, or a truncated object: the
    /// message does not reach the segment).
    #[inline]
    pub fn commit(self, len: usize) -> Result<(), CommitError> {
        let max = self.producer.slot_size();
        if len > max {
            return Err(CommitError::TooLarge { len, max });
        }
        self.publish(len as u32).map_err(CommitError::Corrupt)
    }

    /// Stores the length and hands the slot to consumers; the loss, if the write landed on a
    /// page the `SIGBUS` guard had to replace (then nothing was sent).
    #[inline(always)]
    fn publish(mut self, len: u32) -> Result<(), Corruption> {
        let published = self.publish_in_place(len);
        let lost = (!published).then(|| self.producer.ep.shared().fault());
        // Published (or lost): its drop (the abort's skip marker) must not run.
        core::mem::forget(self);
        lost.map_or(Ok(()), Err)
    }

    /// [`publish`](Self::publish) without consuming the guard; whether it published (false:
    /// the write landed on a lost page, and nothing was).
    #[inline(always)]
    fn publish_in_place(&mut self, len: u32) -> bool {
        let mem = self.producer.mem();
        // End the write access before the Release store that publishes it.
        self.token.take();
        // Relaxed: published by the Release store of `seq` just below.
        mem.len(self.idx).store(len, Ordering::Relaxed);
        crash_point(Step::LengthWritten);
        // A write above may have hit a page that could not be had (see `spsc`'s
        // `publish_slot`): publish nothing, report the loss. The sequence word shares the
        // slot's first 16 bytes with the length, so its store cannot fault on its own.
        if mem.faulted() {
            return false;
        }
        // Release: pairs with the Acquire load of `seq` in `Consumer::observe_recorded`: the
        // payload and length are visible to the consumer that sees `pos + 1`.
        mem.seq(self.idx)
            .store(self.pos.wrapping_add(1), Ordering::Release);
        crash_point(Step::Published);
        // The record still names `pos` and is left so: the slot has moved on, so a recoverer
        // that reads it finds nothing stuck at `pos` (no slot is ever stuck at a settled cursor
        // again: cursors never repeat), and our next claim overwrites it. Not clearing it saves
        // a store per message.
        wait::notify(mem, Side::Data);
        true
    }
}

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        if dying() {
            return; // a loom model killed this "process" mid-publish: it does nothing more
        }
        // Aborted: publish a skip marker so the cursor is not lost to the consumers.
        // (A loss is reported by the next call: there is nobody to tell here.)
        self.publish_in_place(SKIP);
    }
}

impl Deref for WriteSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let mem = self.producer.mem();
        // SAFETY: this producer claimed the slot and has not published it: nobody else
        // accesses it.
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
