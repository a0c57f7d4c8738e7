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
//! consumer held (counted as reclaimed). See `recover` and `docs/crash-recovery.md`.
//!
//! Every sequence word and length read from the segment is checked against the states above;
//! anything else is reported as [`Corruption`], never trusted.

use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::endpoint::EndpointWord;
use crate::endpoint::{self, Peers, Placement, Registration};
use crate::error::{
    AttachError, ClaimError, CommitError, Corruption, RecvError, Role, TryClaimError, TryRecvError,
    TrySendError,
};
use crate::layout::{ABANDONED, RingMem, SKIP};
use crate::plain::Plain;
use crate::ring::Shared;
use crate::spsc::{blocking_api, endpoint_common};
use crate::sync::{AccessToken, AtomicU64, Ordering, Step, crash_point, dying};
use crate::wait::{self, Side};

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
    shared: Arc<Shared>,
    reg: Registration,
    /// This endpoint's claim record, resolved once.
    record: Record,
    /// The consumers, as last seen in the registry.
    peers: Peers,
    /// How long the slot at `head` has been held by a consumer, as seen by this producer
    /// (crash recovery).
    stall: Stall,
}

/// A receiving end of an MPMC ring; any number may attach, from any processes.
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<Shared>,
    reg: Registration,
    /// This endpoint's claim record, resolved once.
    record: Record,
    /// The producers, as last seen in the registry.
    peers: Peers,
    /// How long the slot at `tail` has been claimed and not committed, as seen by this
    /// consumer (crash recovery).
    stall: Stall,
}

/// Where an endpoint's claim record (`EndpointEntry::claim`) lives, resolved at attach: the
/// hot path stores to it once per message, and indexing the registry each time (a bounds
/// check and a multiply) cost about 1.6 ns of a 29 ns one-thread send+receive.
#[derive(Debug)]
struct Record(core::ptr::NonNull<AtomicU64>);

// SAFETY: it points at an atomic in the ring's memory, which the endpoint's `Arc<Shared>` keeps
// mapped for as long as the endpoint (and so this field) lives; atomics are shared by design.
unsafe impl Send for Record {}
// SAFETY: as for Send: only `&AtomicU64` is handed out.
unsafe impl Sync for Record {}

impl Record {
    fn new(mem: &RingMem, entry: usize) -> Record {
        Record(core::ptr::NonNull::from(mem.claim(entry)))
    }

    #[inline(always)]
    fn get(&self) -> &AtomicU64 {
        // SAFETY: see the Send impl: valid while the endpoint holding this field lives, and
        // `&self` borrows that endpoint.
        unsafe { self.0.as_ref() }
    }
}

/// An endpoint's view of a stuck slot it keeps finding: a consumer's of a slot claimed and not
/// committed, a producer's of a slot read and not released.
#[derive(Debug, Default)]
struct Stall {
    /// The cursor of the stuck slot.
    pos: u64,
    /// "Empty" (or "full") polls since this endpoint last looked.
    polls: u32,
    /// When this endpoint first (or last) checked the slot's claimers.
    since: Option<Instant>,
}

/// Polls between two looks at a possibly stuck slot (and the clock): a claim in progress is the
/// normal state of a busy ring, and must cost nothing. (1 under loom, where paths are short.)
const STALL_POLLS: u32 = if cfg!(loom) { 1 } else { 1024 };

impl Stall {
    /// Whether the slot `stuck` names has stayed stuck for a liveness interval, checked at most
    /// once per interval: time to look at its claimers. `stuck` is only called every
    /// [`STALL_POLLS`] polls.
    fn due(&mut self, interval: Duration, stuck: impl FnOnce() -> Option<u64>) -> bool {
        if !crate::sync::recording() {
            return false; // a loom model without crashes: nothing can be stuck for good
        }
        self.polls = self.polls.saturating_add(1);
        if self.polls < STALL_POLLS {
            return false;
        }
        self.polls = 0;
        let Some(pos) = stuck() else {
            self.since = None;
            return false;
        };
        let now = Instant::now();
        match self.since {
            Some(since) if pos == self.pos => {
                // Under loom the clock is not part of the model: a second look is enough.
                if !cfg!(loom) && now.duration_since(since) < interval {
                    return false;
                }
                self.since = Some(now);
                true
            }
            _ => {
                // A new stuck slot: start its clock.
                self.pos = pos;
                self.since = Some(now);
                false
            }
        }
    }
}

endpoint_common!(Producer);
endpoint_common!(Consumer);
blocking_api!(Producer, Consumer);

impl Producer {
    /// A sleeping blocking call polls rarely: let its liveness checks count as enough polls
    /// to consult the clock about a stuck slot.
    fn liveness_tick(&mut self) {
        self.stall.polls = self.stall.polls.max(STALL_POLLS);
    }

    /// A claim leaked with `mem::forget` is still this producer's (its record names it and the
    /// slot is still claimed and uncommitted: cursors never repeat, and no recoverer touches a
    /// live claimer's slot). Give it up as a dropped claim does, with a skip marker, so neither
    /// it nor the messages behind it stay stuck after we leave.
    fn before_detach(&mut self) {
        if let Some(pos) = self.leaked(Role::Producer) {
            let idx = (pos & self.mem().geometry().mask()) as usize;
            // Dropping an uncommitted slot publishes the skip marker.
            drop(self.slot(pos, idx));
        }
    }

    /// Messages claimed by producers and not yet taken by consumers (including messages still
    /// being written: a consumer answers `Pending` for those), approximately.
    pub fn len(&self) -> usize {
        len(self.mem())
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`len`](Self::len) is the capacity: `try_send` answers `Full`.
    pub fn is_full(&self) -> bool {
        self.len() as u64 == self.capacity()
    }
}

impl Consumer {
    /// As for [`Producer::liveness_tick`].
    fn liveness_tick(&mut self) {
        self.stall.polls = self.stall.polls.max(STALL_POLLS);
    }

    /// A receive guard leaked with `mem::forget` still holds its slot (see
    /// [`Producer::before_detach`]): release it as its drop would have, so the producers are
    /// not stalled for good. Its message went to this consumer, which never released it: it
    /// counts as reclaimed, as a slot taken back from a dead consumer does.
    fn before_detach(&mut self) {
        if let Some(pos) = self.leaked(Role::Consumer) {
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

    /// As [`Producer::len`].
    pub fn len(&self) -> usize {
        len(self.mem())
    }

    /// Whether [`len`](Self::len) is 0: `try_recv` answers `Empty` (or `Disconnected`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`len`](Self::len) is the capacity.
    pub fn is_full(&self) -> bool {
        self.len() as u64 == self.capacity()
    }
}

/// `head - tail` (wrapping, as the layout defines), at most the capacity.
fn len(mem: &RingMem) -> usize {
    // Relaxed (both): a snapshot; nothing is read through it. Tail first: it never passes
    // head, so a head read after it is at least as far.
    let tail = mem.tail().load(Ordering::Relaxed);
    let head = mem.head().load(Ordering::Relaxed);
    head.wrapping_sub(tail).min(mem.geometry().capacity) as usize
}

/// The leak check of both endpoint kinds, as a method on each.
macro_rules! leaked {
    ($t:ty) => {
        impl $t {
            /// The cursor this endpoint's record names, if the slot is still stuck on a claim
            /// of `role` there: a claim it made and never finished, which with no call in
            /// progress means a leaked guard.
            fn leaked(&self, role: Role) -> Option<u64> {
                if !crate::sync::recording() {
                    return None;
                }
                // Relaxed: our own record, written by this thread.
                let record = self.record.get().load(Ordering::Relaxed);
                let pos = record.checked_sub(1)?;
                stuck(self.mem(), role, pos).then_some(pos)
            }
        }
    };
}
leaked!(Producer);
leaked!(Consumer);

impl Producer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Producer, AttachError> {
        let reg = endpoint::register(&shared.mem, Role::Producer, Placement::Any)?;
        let peers = Peers::new(&shared.mem, Role::Consumer);
        let record = Record::new(&shared.mem, reg.entry());
        Ok(Producer {
            shared,
            reg,
            record,
            peers,
            stall: Stall::default(),
        })
    }

    /// Claims a slot: `Full` or `Pending`, or `Disconnected` if the consumers are gone too.
    #[inline]
    fn claim_slot(&mut self) -> Result<(u64, usize), TryClaimError> {
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
        if self.shared.shrunk() {
            return Err(TryClaimError::Corrupt(Corruption::Shrunk));
        }
        let interval = self.shared.wait.liveness();
        let mem = &self.shared.mem;
        if self.stall.due(interval, || held(mem))
            && recover(mem, self.reg.word(), self.stall.pos, Role::Consumer)
        {
            // The slot a dead consumer held is free now.
            return self.claim_pos();
        }
        if !self.peers.gone(&self.shared.mem) {
            return Err(first);
        }
        // The consumers left; the slots they released before leaving are visible now (the
        // Acquire in `gone`), so look once more.
        match self.claim_pos() {
            Err(e) if e.would_block() => Err(TryClaimError::Disconnected),
            other => other,
        }
    }

    fn slot(&mut self, pos: u64, idx: usize) -> WriteSlot<'_> {
        let token = Some(self.mem().cells().write(idx));
        WriteSlot {
            producer: self,
            pos,
            idx,
            token,
        }
    }

    /// The blocking claim.
    fn claim_until(&mut self, deadline: Option<Instant>) -> Result<WriteSlot<'_>, ClaimError> {
        let (pos, idx) = wait::block_on(self, Side::Space, deadline, |p| match p.claim_slot() {
            Err(e) if e.would_block() => None,
            done => Some(done),
        })
        .unwrap_or(Err(TryClaimError::Full))
        .map_err(ClaimError::from_try)?;
        Ok(self.slot(pos, idx))
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
    #[inline]
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
            // reads of this slot happen before our write) or, for the first lap, with `init`.
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
                    self.shared
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
                        self.shared
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
            self.record.get().store(value, order);
        }
    }

    /// Copies `msg` into the ring: [`try_claim`](Self::try_claim), copy, commit.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Pending`], [`TrySendError::Disconnected`],
    /// [`TrySendError::TooLarge`], [`TrySendError::Corrupt`]; each hands `msg` back.
    #[inline(always)]
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        let max = self.slot_size();
        if msg.len() > max {
            return Err(TrySendError::TooLarge {
                msg,
                len: msg.len(),
                max,
            });
        }
        let slot = self.try_claim().map_err(|e| e.with_msg(msg))?;
        // SAFETY: `msg.len() <= slot_size` was checked above.
        unsafe { slot.producer.mem().write_payload(slot.idx, msg) };
        slot.publish(msg.len() as u32);
        Ok(())
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
        slot.publish(size_of::<T>() as u32);
        Ok(())
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
    /// [`CommitError`] if `len` exceeds the slot size; the claim is then dropped, as if never
    /// made, and nothing is sent.
    #[inline]
    pub fn commit(self, len: usize) -> Result<(), CommitError> {
        let max = self.producer.slot_size();
        if len > max {
            return Err(CommitError { len, max });
        }
        self.publish(len as u32);
        Ok(())
    }

    /// Stores the length and hands the slot to consumers.
    #[inline]
    fn publish(mut self, len: u32) {
        self.publish_in_place(len);
        core::mem::forget(self);
    }

    #[inline]
    fn publish_in_place(&mut self, len: u32) {
        let mem = self.producer.mem();
        // End the write access before the Release store that publishes it.
        self.token.take();
        // Relaxed: published by the Release store of `seq` just below.
        mem.len(self.idx).store(len, Ordering::Relaxed);
        crash_point(Step::LengthWritten);
        // Release: pairs with the Acquire load of `seq` in `Consumer::claim`: the payload and
        // length are visible to the consumer that sees `pos + 1`.
        mem.seq(self.idx)
            .store(self.pos.wrapping_add(1), Ordering::Release);
        crash_point(Step::Published);
        // The record still names `pos` and is left so: the slot has moved on, so a recoverer
        // that reads it finds nothing stuck at `pos` (no slot is ever stuck at a settled cursor
        // again: cursors never repeat), and our next claim overwrites it. Not clearing it saves
        // a store per message.
        wait::notify(mem, Side::Data);
    }
}

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        if dying() {
            return; // a loom model killed this "process" mid-publish: it does nothing more
        }
        // Aborted: publish a skip marker so the cursor is not lost to the consumers.
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

impl Consumer {
    pub(crate) fn attach(shared: Arc<Shared>) -> Result<Consumer, AttachError> {
        let reg = endpoint::register(&shared.mem, Role::Consumer, Placement::Any)?;
        let peers = Peers::new(&shared.mem, Role::Producer);
        let record = Record::new(&shared.mem, reg.entry());
        Ok(Consumer {
            shared,
            reg,
            record,
            peers,
            stall: Stall::default(),
        })
    }

    /// [`claim`](Self::claim), turning `Empty` into `Disconnected` when the producers are gone
    /// and nothing they sent is left.
    #[inline]
    fn claim_checked(
        &mut self,
        accept: impl Fn(usize) -> Result<(), TryRecvError>,
    ) -> Result<(u64, usize, usize), TryRecvError> {
        match self.claim(&accept) {
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
        if self.shared.shrunk() {
            return Err(TryRecvError::Corrupt(Corruption::Shrunk));
        }
        let interval = self.shared.wait.liveness();
        let mem = &self.shared.mem;
        if self.stall.due(interval, || uncommitted(mem))
            && recover(mem, self.reg.word(), self.stall.pos, Role::Producer)
        {
            // The stuck slot now reads "abandoned": report it (or whatever is there now).
            return self.claim(accept);
        }
        if !self.peers.gone(&self.shared.mem) {
            return Err(first);
        }
        // The producers left; what they published before leaving is visible now (the Acquire
        // in `gone`), so drain it first.
        match self.claim(accept) {
            Err(e) if e.would_block() => {}
            other => return other,
        }
        // Nothing more will come. A slot a dead producer claimed and never committed must be
        // reported as lost before the disconnect, never hidden behind it: recover it now (its
        // claimers are dead, so no stall time is needed).
        if let Some(pos) = uncommitted(&self.shared.mem)
            && recover(&self.shared.mem, self.reg.word(), pos, Role::Producer)
        {
            return self.claim(accept);
        }
        Err(TryRecvError::Disconnected)
    }

    /// The blocking read.
    fn read_until(&mut self, deadline: Option<Instant>) -> Result<ReadSlot<'_>, RecvError> {
        let (pos, idx, len) = wait::block_on(self, Side::Data, deadline, |c| {
            match c.claim_checked(|_| Ok(())) {
                Err(e) if e.would_block() => None,
                done => Some(done),
            }
        })
        .unwrap_or(Err(TryRecvError::Empty))
        .map_err(RecvError::from_try)?;
        Ok(self.guard(pos, idx, len))
    }

    /// The receive guard over claimed cursor `pos` in slot `idx`, holding `len` bytes.
    #[inline(always)]
    fn guard(&mut self, pos: u64, idx: usize, len: usize) -> ReadSlot<'_> {
        let token = Some(self.mem().cells().read(idx));
        ReadSlot {
            consumer: self,
            pos,
            idx,
            len,
            token,
        }
    }

    /// Claims the next committed message whose length `accept` approves. Skip markers and
    /// corrupt lengths are consumed (the latter reported); a refused message is left in place.
    /// On success this consumer's claim record names the message until [`release`](Self::release).
    #[inline]
    fn claim(
        &self,
        accept: impl Fn(usize) -> Result<(), TryRecvError>,
    ) -> Result<(u64, usize, usize), TryRecvError> {
        let mut recorded = false;
        let claimed = self.claim_recorded(accept, &mut recorded);
        if recorded && claimed.is_err() {
            // Relaxed: withdraws an intent that named a cursor another consumer took (a stale
            // record would only delay a recovery of that cursor).
            self.set_record(0, Ordering::Relaxed);
        }
        claimed
    }

    /// [`claim`](Self::claim); sets `recorded` once it has stored a claim record.
    #[inline(always)]
    fn claim_recorded(
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
                    Err(Some(self.shared.diagnose(Corruption::Length {
                        cursor: pos,
                        len,
                        max: geo.slot_size,
                    })))
                } else {
                    accept(len as usize)?;
                    Ok(true)
                };
                // Record the intent before the claim, so that whoever sees `pos` claimed can
                // find who holds it (crash recovery). Relaxed: published by the AcqRel CAS just
                // below to anyone who Acquires `tail` past `pos`.
                self.set_record(pos.wrapping_add(1), Ordering::Relaxed);
                *recorded = true;
                crash_point(Step::ClaimRecorded);
                // AcqRel on success, Acquire on failure: as in `Producer::try_claim`.
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
                    self.shared
                        .diagnose(Corruption::Sequence { cursor: pos, seq }),
                ));
            } else {
                // Another consumer took `pos`; as in `Producer::try_claim`, `tail` must have
                // moved on. Acquire: as for the first load.
                let current = mem.tail().load(Ordering::Acquire);
                if current == pos {
                    return Err(TryRecvError::Corrupt(
                        self.shared
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
        // Release: pairs with the Acquire load of `seq` in `Producer::try_claim`: our reads of
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
            self.record.get().store(value, order);
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
        let (pos, idx, len) = self.claim_checked(|_| Ok(()))?;
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
        let (pos, idx, len) = self.claim_checked(|needed| {
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
        let (pos, idx, _) = self.claim_checked(crate::plain::check_size::<T>)?;
        let mem = self.mem();
        let token = mem.cells().read(idx);
        // SAFETY: claimed and unreleased; the message is exactly size_of::<T>() <= slot_size
        // bytes, and `T: Plain` accepts any bytes.
        let value = unsafe { mem.read_value::<T>(idx) };
        token.end();
        self.release(pos, idx);
        Ok(value)
    }
}

/// Whether the slot of cursor `pos` is stuck on a claim by an endpoint of `role`: claimed (the
/// role's cursor is past `pos`) and not yet committed (a producer's: `seq == pos`) or not yet
/// released (a consumer's: `seq == pos + 1`). A snapshot; `recover` re-checks under its lock.
pub(crate) fn stuck(mem: &RingMem, role: Role, pos: u64) -> bool {
    let (cursor, stuck_seq) = match role {
        Role::Producer => (mem.head(), pos),
        Role::Consumer => (mem.tail(), pos.wrapping_add(1)),
    };
    let idx = (pos & mem.geometry().mask()) as usize;
    // Acquire (both): as in `claim_pos` and `Consumer::claim`.
    cursor.load(Ordering::Acquire).wrapping_sub(pos) as i64 > 0
        && mem.seq(idx).load(Ordering::Acquire) == stuck_seq
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

/// The cursor at `tail` if a producer claimed its slot and has not committed it.
fn uncommitted(mem: &RingMem) -> Option<u64> {
    // Acquire: as in `Consumer::claim`.
    let pos = mem.tail().load(Ordering::Acquire);
    stuck(mem, Role::Producer, pos).then_some(pos)
}

/// The cursor of the previous lap's message in the slot at `head`, if a consumer claimed it
/// and has not released it (the ring is full behind it).
fn held(mem: &RingMem) -> Option<u64> {
    // Acquire: as in `Producer::claim_pos`.
    let head = mem.head().load(Ordering::Acquire);
    let pos = head.wrapping_sub(mem.geometry().capacity);
    stuck(mem, Role::Consumer, pos).then_some(pos)
}

/// Settles the slot of cursor `pos`, stuck on a claim by endpoints of `role`, if every
/// endpoint of that role that recorded the claim is provably dead (pid and start time). Returns
/// whether it did. A live claimer (slow, or stopped with SIGSTOP) is never robbed.
///
/// - `Role::Producer`: the slot was claimed and never committed. It is marked abandoned and
///   published, so consumers step over it and report the loss (`TryRecvError::Abandoned`).
/// - `Role::Consumer`: the slot was claimed for reading and never released. It is released to
///   the producers; its message had been delivered to the dead consumer (counted as reclaimed).
///
/// `me` is the caller's endpoint word, which holds the recovery lock meanwhile (a lock that a
/// dead holder loses; the work is idempotent, so a successor redoes it). See
/// `docs/crash-recovery.md`.
#[cold]
pub(crate) fn recover(mem: &RingMem, me: u64, pos: u64, role: Role) -> bool {
    let lock = mem.recovery();
    // Acquire: pairs with the Release that ends a previous recovery, so we see its writes.
    let holder = lock.load(Ordering::Acquire);
    if holder != 0 && EndpointWord(holder).is_alive() {
        return false; // someone else is at it
    }
    // AcqRel: as above, and a dead holder's partial work is redone below (it is idempotent).
    if lock
        .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    crash_point(Step::RecoveryLocked);
    let done = recover_locked(mem, pos, role);
    // Release: pairs with the Acquire of the next recoverer.
    lock.store(0, Ordering::Release);
    if done {
        wait::notify(
            mem,
            match role {
                Role::Producer => Side::Data,
                Role::Consumer => Side::Space,
            },
        );
    }
    done
}

fn recover_locked(mem: &RingMem, pos: u64, role: Role) -> bool {
    let header = mem.header();
    let idx = (pos & mem.geometry().mask()) as usize;
    let cursor = match role {
        Role::Producer => mem.head(),
        Role::Consumer => mem.tail(),
    };
    // Acquire: the cursor past `pos` synchronises with the winning claimer's CAS (every later
    // CAS continues its release sequence), so its claim record, stored before that CAS, is
    // visible.
    if cursor.load(Ordering::Acquire).wrapping_sub(pos) as i64 <= 0 {
        return false;
    }
    let wanted = pos.wrapping_add(1);
    let mut owners = [0usize; crate::layout::MAX_ENDPOINTS];
    let mut n = 0;
    for (entry, e) in header.endpoints.iter().enumerate() {
        // Relaxed: see above for why the winner's record is visible; a stale record of a live
        // endpoint only delays recovery.
        if mem.claim(entry).load(Ordering::Relaxed) != wanted {
            continue;
        }
        // Acquire: pairs with the registrant's CAS.
        let owner = EndpointWord(e.owner.load(Ordering::Acquire));
        if owner.role() != Some(role) {
            continue; // the other side's record of the same cursor
        }
        if owner.is_alive() {
            return false; // alive: slow or stopped, never robbed
        }
        owners[n] = entry;
        n += 1;
    }
    if n == 0 {
        return false; // unattributed: leave it (and the stall) visible
    }
    // The claimers are dead, so only we can write this slot now, provided it is still stuck.
    // A compare-and-swap reads the latest value, so a claimer that finished before dying makes
    // it fail. AcqRel/Acquire: as for the endpoints' own loads and stores of the word.
    let seq = mem.seq(idx);
    let settled = match role {
        Role::Producer => {
            // Still uncommitted: a no-op CAS proves it, then the marker is published.
            if seq
                .compare_exchange(pos, pos, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return false;
            }
            // Relaxed: published by the Release store of the sequence word just below.
            mem.len(idx).store(ABANDONED, Ordering::Relaxed);
            crash_point(Step::MarkerWritten);
            // Release: pairs with the consumers' Acquire load of `seq` in `claim`.
            seq.store(wanted, Ordering::Release);
            &header.wait.abandoned
        }
        Role::Consumer => {
            // Still unreleased: release it as the dead consumer would have. Release pairs with
            // the producers' Acquire load in `claim_pos`; the dead reader's accesses are over.
            let free = pos.wrapping_add(mem.geometry().capacity);
            if seq
                .compare_exchange(wanted, free, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return false;
            }
            &header.wait.reclaimed
        }
    };
    crash_point(Step::Settled);
    for &entry in &owners[..n] {
        // Relaxed: the record is evidence only; the slot is settled.
        let _ = mem
            .claim(entry)
            .compare_exchange(wanted, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
    // Relaxed: a statistic.
    settled.fetch_add(1, Ordering::Relaxed);
    true
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
        // SAFETY: claimed and unreleased until this guard drops; `len` was bounded by
        // `slot_size` in `claim`.
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
