//! What every endpoint shares, whatever its algorithm: the mapped ring it attaches through
//! ([`Shared`]), its place in the registry and its view of its peers ([`Attached`], which
//! leaves the registry when dropped), and the blocking calls, built once on the non-blocking
//! ones of any algorithm.
//!
//! The contract between this module and an algorithm is three traits: [`Endpoint`] (give me
//! your [`Attached`]; what to do after a liveness check), [`Sending`] (a non-blocking send and a
//! blocking claim) and [`Receiving`] (a non-blocking receive and a blocking read). The public
//! methods every endpoint type has are stamped from them by [`producer_api`] and
//! [`consumer_api`], which only forward: the logic is here, in plain functions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{
    AttachError, ClaimError, Corruption, RecvError, SendError, TryRecvError, TrySendError,
};
use crate::kind::Role;
use crate::layout::{RingMem, Side};
use crate::registry::{self, EndpointInfo, Peers, Placement, Registration};
use crate::segment::{self, Backing, Segment};
use crate::sync::AtomicU64;
use crate::wait::{self, WaitOptions};

/// A mapped, validated ring and the memory that holds it. The handle and every endpoint keep
/// it alive.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) mem: RingMem,
    /// How this process's blocking calls wait (not shared: each process chooses).
    pub(crate) wait: WaitOptions,
    pub(crate) backing: Backing,
    pub(crate) created: bool,
    // Dropped last: unmaps (and maybe removes) the memory `mem` points into.
    segment: Segment,
}

impl Shared {
    pub(crate) fn new(
        mem: RingMem,
        wait: WaitOptions,
        backing: Backing,
        created: bool,
        segment: Segment,
    ) -> Shared {
        Shared {
            mem,
            wait,
            backing,
            created,
            segment,
        }
    }

    /// Whether part of the segment was lost under this process's mapping (a contained
    /// `SIGBUS`, `segment::guard`), and how: [`Corruption::Shrunk`] (truncated) or
    /// [`Corruption::OutOfSpace`] (a page could not be allocated). Endpoints report it from
    /// their slow paths, and a producer instead of success when it was its write that faulted.
    #[cold]
    pub(crate) fn lost(&self) -> Option<Corruption> {
        self.segment.lost()
    }

    /// This named segment, exactly (see `segment::Exact`).
    pub(crate) fn exact(&self) -> Option<segment::Exact> {
        self.segment.exact()
    }

    /// Which pages of the mapping hold memory (`segment::Segment::resident`).
    pub(crate) fn resident(&self) -> Option<segment::Resident> {
        self.segment.resident()
    }

    /// The corruption to report for `found`: what a contained fault means if there was one
    /// (the zero pages it left are what made `found`), else `found`.
    #[cold]
    #[inline(never)]
    pub(crate) fn diagnose(&self, found: Corruption) -> Corruption {
        self.lost().unwrap_or(found)
    }

    /// What a producer reports instead of success when [`RingMem::faulted`] says its write
    /// may have landed on a lost page.
    #[cold]
    #[inline(never)]
    pub(crate) fn fault(&self) -> Corruption {
        self.lost().unwrap_or(Corruption::Shrunk)
    }
}

/// An endpoint's hold on a ring: the mapping, its registry entry, and its peers as last seen.
/// Dropping it leaves the registry (`registry::deregister`), which tells the peers.
#[derive(Debug)]
pub(crate) struct Attached {
    /// The ring as this endpoint reads it on its hot path: a view of `shared`'s memory kept
    /// in the endpoint (`RingMem::endpoint_view`); `shared` keeps the mapping alive. Declared
    /// first, so it drops before `shared`.
    #[cfg(not(loom))]
    mem: RingMem,
    shared: Arc<Shared>,
    reg: Registration,
    /// The endpoints of the other role, as last seen in the registry.
    peers: Peers,
}

impl Attached {
    /// Registers an endpoint of `role` where `placement` allows.
    pub(crate) fn new(
        shared: Arc<Shared>,
        role: Role,
        placement: Placement<'_>,
    ) -> Result<Attached, AttachError> {
        let reg = registry::register(&shared.mem, role, placement)?;
        let peers = Peers::new(&shared.mem, role.peer());
        Ok(Attached {
            // SAFETY: the view lives in this value, beside the `Arc<Shared>` that keeps its
            // memory mapped.
            #[cfg(not(loom))]
            mem: unsafe { shared.mem.endpoint_view() },
            shared,
            reg,
            peers,
        })
    }

    #[inline(always)]
    pub(crate) fn mem(&self) -> &RingMem {
        #[cfg(not(loom))]
        return &self.mem;
        #[cfg(loom)]
        return &self.shared.mem;
    }

    #[inline(always)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The registry entry held.
    pub(crate) fn entry(&self) -> usize {
        self.reg.entry()
    }

    /// The endpoint word in it.
    pub(crate) fn word(&self) -> u64 {
        self.reg.word()
    }

    /// Whether the peers are gone (`registry::Peers::gone`); asked whenever the ring looks
    /// full (producers) or empty (consumers).
    #[inline]
    pub(crate) fn peers_gone(&mut self) -> bool {
        self.peers.gone(&self.shared.mem)
    }

    /// The liveness check (`registry::Peers::rescan`).
    pub(crate) fn rescan(&mut self) {
        self.peers.rescan(&self.shared.mem);
    }

    /// This endpoint as a sleeper (`wait::arm`), for the doorbell and the loom models.
    #[cfg(any(loom, all(feature = "doorbell", not(loom))))]
    pub(crate) fn sleeper(&self) -> wait::Sleeper<'_> {
        wait::Sleeper {
            asleep: self.mem().asleep(self.entry()),
            word: self.word(),
        }
    }

    /// When the next liveness check of the peers is due: a liveness interval after the last
    /// (`None`: never, for an interval too large for the clock).
    pub(crate) fn next_check(&self) -> Option<Instant> {
        self.peers
            .checked_at()
            .checked_add(self.shared.wait.liveness())
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.mem().geometry().capacity
    }

    pub(crate) fn slot_size(&self) -> usize {
        self.mem().geometry().slot_size
    }

    pub(crate) fn peer_list(&self) -> Vec<EndpointInfo> {
        self.peers.list(self.mem().header())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        registry::deregister(&self.shared.mem, &self.reg);
    }
}

/// Where an endpoint's claim record lives (`EndpointEntry::claim`, and the reservation length
/// beside it that record rings use), resolved at attach: the hot path stores to it once per
/// message, and indexing the registry each time (a bounds check and a multiply) cost about
/// 1.6 ns of a 29 ns one-thread MPMC send+receive. Crash recovery reads the records to attribute
/// a stuck slot or record (`docs/crash-recovery.md`).
#[derive(Debug)]
pub(crate) struct ClaimRecord {
    claim: core::ptr::NonNull<AtomicU64>,
    len: core::ptr::NonNull<AtomicU64>,
}

// SAFETY: it points at atomics in the ring's memory, which the endpoint's `Arc<Shared>` keeps
// mapped for as long as the endpoint (and so this field) lives; atomics are shared by design.
unsafe impl Send for ClaimRecord {}
// SAFETY: as for Send: only `&AtomicU64` is handed out.
unsafe impl Sync for ClaimRecord {}

impl ClaimRecord {
    /// The records of registry entry `entry`.
    pub(crate) fn new(mem: &RingMem, entry: usize) -> ClaimRecord {
        ClaimRecord {
            claim: core::ptr::NonNull::from(mem.claim(entry)),
            len: core::ptr::NonNull::from(mem.claim_len(entry)),
        }
    }

    /// `pos + 1` of the cursor being claimed (0: none).
    #[inline(always)]
    pub(crate) fn claim(&self) -> &AtomicU64 {
        // SAFETY: see the Send impl: valid while the endpoint holding this field lives, and
        // `&self` borrows that endpoint.
        unsafe { self.claim.as_ref() }
    }

    /// The bytes a record ring's claim reserves.
    #[inline(always)]
    pub(crate) fn len(&self) -> &AtomicU64 {
        // SAFETY: as for `claim`.
        unsafe { self.len.as_ref() }
    }
}

/// An endpoint's view of a stuck slot (or record) it keeps finding: a consumer's of one claimed
/// and not committed, a producer's of one read and not released.
#[derive(Debug, Default)]
pub(crate) struct Stall {
    /// The cursor of the stuck slot.
    pub(crate) pos: u64,
    /// "Empty" (or "full") polls since this endpoint last looked.
    pub(crate) polls: u32,
    /// When this endpoint first (or last) checked the slot's claimers.
    since: Option<Instant>,
}

/// Polls between two looks at a possibly stuck slot (and the clock): a claim in progress is the
/// normal state of a busy ring, and must cost nothing. (1 under loom, where paths are short.)
pub(crate) const STALL_POLLS: u32 = if cfg!(loom) { 1 } else { 1024 };

impl Stall {
    /// Whether the slot `stuck` names has stayed stuck for a liveness interval, checked at most
    /// once per interval: time to look at its claimers. `stuck` is only called every
    /// [`STALL_POLLS`] polls.
    pub(crate) fn due(&mut self, interval: Duration, stuck: impl FnOnce() -> Option<u64>) -> bool {
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

/// An attached endpoint of some algorithm.
pub(crate) trait Endpoint {
    fn attached(&self) -> &Attached;
    fn attached_mut(&mut self) -> &mut Attached;
    /// Runs after every liveness check: an algorithm that watches for stuck slots looks at
    /// once (MPMC), instead of waiting for its next look.
    fn liveness_tick(&mut self) {}
    /// Messages in the ring as this endpoint can tell (what each algorithm counts is in its
    /// `len` docs).
    fn len(&self) -> usize;

    /// The liveness check, then the algorithm's tick.
    fn check_peers(&mut self) {
        self.attached_mut().rescan();
        self.liveness_tick();
    }
}

/// A sending endpoint: what the blocking send and claim are built on.
pub(crate) trait Sending: Endpoint {
    /// The zero-copy claim guard.
    type Slot<'a>
    where
        Self: 'a;
    /// The non-blocking send.
    fn try_send_msg<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>>;
    /// The blocking claim, until `deadline` (`None`: for ever).
    fn claim_until(&mut self, deadline: Option<Instant>) -> Result<Self::Slot<'_>, ClaimError>;
}

/// A receiving endpoint: what the blocking receive and read are built on.
pub(crate) trait Receiving: Endpoint {
    /// The zero-copy read guard.
    type Read<'a>
    where
        Self: 'a;
    /// The non-blocking receive.
    fn try_recv_msg(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError>;
    /// The blocking read, until `deadline` (`None`: for ever).
    fn read_until(&mut self, deadline: Option<Instant>) -> Result<Self::Read<'_>, RecvError>;
}

/// Runs a blocking call of `ep`: one poll, and if that fails, [`wait::block`] until `poll`
/// returns `Some` or the deadline passes (then `None`), checking the peers once a liveness
/// interval after the endpoint's last check (so the interval runs across calls).
#[inline]
pub(crate) fn block_on<E: Endpoint + ?Sized, R>(
    ep: &mut E,
    side: Side,
    deadline: Option<Instant>,
    mut poll: impl FnMut(&mut E) -> Option<R>,
) -> Option<R> {
    if let Some(r) = poll(ep) {
        return Some(r);
    }
    let shared = Arc::clone(ep.attached().shared());
    let next_check = ep.attached().next_check();
    let me = wait::Sleeper {
        asleep: shared.mem.asleep(ep.attached().entry()),
        word: ep.attached().word(),
    };
    // (`Attached::sleeper` would borrow `ep`, which the poll closure needs.)
    wait::block(
        &shared.mem,
        side,
        me,
        &shared.wait,
        deadline,
        next_check,
        |check| {
            if check {
                ep.check_peers();
            }
            poll(ep)
        },
    )
}

/// The blocking send: [`Sending::try_send_msg`] until it succeeds, fails for good, or the
/// deadline passes (then `Timeout`).
pub(crate) fn send_until<'m, E: Sending + ?Sized>(
    ep: &mut E,
    msg: &'m [u8],
    deadline: Option<Instant>,
) -> Result<(), SendError<&'m [u8]>> {
    block_on(ep, Side::Space, deadline, |p| match p.try_send_msg(msg) {
        Err(e) if e.would_block() => None,
        done => Some(done),
    })
    .unwrap_or(Err(TrySendError::Full(msg)))
    .map_err(SendError::from_try)
}

/// The blocking receive, as [`send_until`].
pub(crate) fn recv_until<E: Receiving + ?Sized>(
    ep: &mut E,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> Result<usize, RecvError> {
    block_on(ep, Side::Data, deadline, |c| match c.try_recv_msg(buf) {
        Err(e) if e.would_block() => None,
        done => Some(done),
    })
    .unwrap_or(Err(TryRecvError::Empty))
    .map_err(RecvError::from_try)
}

/// The deadline of a call with `timeout` (none if too large for the clock).
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    wait::deadline(timeout)
}

/// `msg` refused as longer than a slot of `max` bytes, if it is.
#[inline(always)]
pub(crate) fn check_len(msg: &[u8], max: usize) -> Result<(), TrySendError<&[u8]>> {
    if msg.len() > max {
        return Err(TrySendError::TooLarge {
            msg,
            len: msg.len(),
            max,
        });
    }
    Ok(())
}

/// The blocking sends every sending endpoint type has, forwarded to [`Sending`].
macro_rules! send_api {
    ($t:ty) => {
        impl $t {
            /// Copies `msg` into the ring, waiting while it is full (see
            /// [`WaitOptions`](crate::WaitOptions)).
            ///
            /// # Errors
            /// [`SendError::Disconnected`](crate::SendError::Disconnected) once every consumer
            /// that attached is gone (detached, or found dead by the liveness check) and the
            /// ring is full; `TooLarge` and `Corrupt` as for `try_send`. Each hands `msg` back.
            pub fn send<'m>(&mut self, msg: &'m [u8]) -> Result<(), $crate::SendError<&'m [u8]>> {
                $crate::endpoint::send_until(self, msg, None)
            }

            /// As [`send`](Self::send), giving up after `timeout` with
            /// [`SendError::Timeout`](crate::SendError::Timeout).
            ///
            /// # Errors
            /// As [`send`](Self::send), plus `Timeout`.
            pub fn send_timeout<'m>(
                &mut self,
                msg: &'m [u8],
                timeout: std::time::Duration,
            ) -> Result<(), $crate::SendError<&'m [u8]>> {
                $crate::endpoint::send_until(self, msg, $crate::endpoint::deadline(timeout))
            }
        }
    };
}
pub(crate) use send_api;

/// The public methods every slot ring's sending endpoint type has: [`common_api`],
/// [`send_api`], and the blocking claims.
macro_rules! producer_api {
    ($t:ty, $slot:ident) => {
        $crate::endpoint::common_api!($t);
        $crate::endpoint::send_api!($t);

        impl $t {
            /// Claims a slot for writing in place, waiting while the ring is full.
            ///
            /// # Errors
            /// [`ClaimError::Disconnected`](crate::ClaimError::Disconnected) or `Corrupt`, as
            /// for [`send`](Self::send).
            pub fn claim(&mut self) -> Result<$slot<'_>, $crate::ClaimError> {
                $crate::endpoint::Sending::claim_until(self, None)
            }

            /// As [`claim`](Self::claim), giving up after `timeout`.
            ///
            /// # Errors
            /// As [`claim`](Self::claim), plus
            /// [`ClaimError::Timeout`](crate::ClaimError::Timeout).
            pub fn claim_timeout(
                &mut self,
                timeout: std::time::Duration,
            ) -> Result<$slot<'_>, $crate::ClaimError> {
                $crate::endpoint::Sending::claim_until(self, $crate::endpoint::deadline(timeout))
            }
        }
    };
}
pub(crate) use producer_api;

/// The public methods every receiving endpoint type has, forwarded to [`Endpoint`] and
/// [`Receiving`].
macro_rules! consumer_api {
    ($t:ty, $read:ident) => {
        $crate::endpoint::common_api!($t);

        impl $t {
            /// Copies the next message into `buf`, waiting while the ring is empty; returns its
            /// length.
            ///
            /// # Errors
            /// [`RecvError::Disconnected`](crate::RecvError::Disconnected) once the ring is
            /// empty and every producer that attached is gone (so everything they sent is
            /// received first); `BufferTooSmall` (the message stays), `Abandoned` (MPMC: a
            /// message lost to a producer that died; the next call goes on), `Corrupt`.
            pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, $crate::RecvError> {
                $crate::endpoint::recv_until(self, buf, None)
            }

            /// As [`recv`](Self::recv), giving up after `timeout` with
            /// [`RecvError::Timeout`](crate::RecvError::Timeout).
            ///
            /// # Errors
            /// As [`recv`](Self::recv), plus `Timeout`.
            pub fn recv_timeout(
                &mut self,
                buf: &mut [u8],
                timeout: std::time::Duration,
            ) -> Result<usize, $crate::RecvError> {
                $crate::endpoint::recv_until(self, buf, $crate::endpoint::deadline(timeout))
            }

            /// Borrows the next message in place, waiting while the ring is empty.
            ///
            /// # Errors
            /// As [`recv`](Self::recv), without `BufferTooSmall`.
            pub fn read(&mut self) -> Result<$read<'_>, $crate::RecvError> {
                $crate::endpoint::Receiving::read_until(self, None)
            }

            /// As [`read`](Self::read), giving up after `timeout`.
            ///
            /// # Errors
            /// As [`read`](Self::read), plus `Timeout`.
            pub fn read_timeout(
                &mut self,
                timeout: std::time::Duration,
            ) -> Result<$read<'_>, $crate::RecvError> {
                $crate::endpoint::Receiving::read_until(self, $crate::endpoint::deadline(timeout))
            }
        }
    };
}
pub(crate) use consumer_api;

/// The accessors every endpoint type has, forwarded to [`Endpoint`].
macro_rules! common_api {
    ($t:ty) => {
        impl $t {
            /// Number of slots in the ring.
            pub fn capacity(&self) -> u64 {
                $crate::endpoint::Endpoint::attached(self).capacity()
            }

            /// Largest message, in bytes.
            pub fn slot_size(&self) -> usize {
                $crate::endpoint::Endpoint::attached(self).slot_size()
            }

            /// Messages in the ring, approximately (the peers move on while it is read); at most
            /// the capacity. SPSC: published and not yet received (a producer counts from the
            /// consumer cursor as it last loaded it). MPMC: claimed by producers and not yet by
            /// consumers, so messages still being written count too (a consumer answers
            /// `Pending` for those).
            pub fn len(&self) -> usize {
                $crate::endpoint::Endpoint::len(self)
            }

            /// Whether [`len`](Self::len) is 0: on a quiescent ring, `try_recv` answers
            /// `Empty` (or `Disconnected`).
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Whether [`len`](Self::len) is the capacity: on a quiescent ring, `try_send`
            /// answers `Full` (or `Disconnected`).
            pub fn is_full(&self) -> bool {
                self.len() as u64 == self.capacity()
            }

            /// Whether a peer (an endpoint of the other role) is attached and its process
            /// alive. Reads the registry and checks each peer's process now.
            pub fn is_peer_alive(&self) -> bool {
                self.peers().iter().any(|p| p.alive)
            }

            /// The peers (endpoints of the other role) in the registry, with liveness.
            pub fn peers(&self) -> Vec<$crate::EndpointInfo> {
                $crate::endpoint::Endpoint::attached(self).peer_list()
            }

            /// Checks the peers' processes now, as the blocking calls do every liveness
            /// interval. Non-blocking calls never read `/proc` by themselves: a loop of `try_*`
            /// calls that should notice peers killed without detaching calls this now and then.
            /// Afterwards, if every peer is dead, the non-blocking calls report `Disconnected`
            /// (after whatever the peers sent), and an MPMC endpoint looks at once at a slot a
            /// dead peer left stuck (`docs/crash-recovery.md`).
            pub fn check_peers(&mut self) {
                $crate::endpoint::Endpoint::check_peers(self);
            }

            /// Loom models of crash recovery: this endpoint's "process" dies here (it is
            /// declared dead and detaches nothing).
            #[cfg(loom)]
            #[doc(hidden)]
            pub fn die(self) {
                $crate::registry::EndpointWord($crate::endpoint::Endpoint::attached(&self).word())
                    .declare_dead();
            }
        }
    };
}
pub(crate) use common_api;
