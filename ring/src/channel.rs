//! The kind-erased endpoints: a [`Producer`] and a [`Consumer`] for a ring of any kind, for
//! callers that learn the kind at run time (a ring opened by name). They dispatch once per call
//! to the algorithm's own endpoint (crossbeam-channel's `Sender { flavor }`), and offer the
//! whole API: copy, zero-copy, batches, plain-data values, blocking calls with timeouts, and
//! `std::io::Write` / `std::io::Read` (one message per call).

use core::ops::{Deref, DerefMut};
use std::io;
use std::time::{Duration, Instant};

use crate::endpoint::{self, Attached, Endpoint, Receiving, Sending, consumer_api, producer_api};
use crate::error::{
    ClaimError, CommitError, RecvError, SendError, TryClaimError, TryRecvError, TrySendError,
};
use crate::kind::Kind;
use crate::plain::Plain;
use crate::{mpmc, records, spsc};

/// A sending end of a ring of either kind, as [`Ring::producer`](crate::Ring::producer)
/// attaches it.
///
/// `std::io::Write` sends one message per `write` call (the whole buffer, or an error: a
/// buffer longer than a slot is `InvalidInput` and nothing is sent). It waits for room
/// ([`set_timeout`](Self::set_timeout) bounds the wait, then `TimedOut`), or answers
/// `WouldBlock` at once after [`set_nonblocking(true)`](Self::set_nonblocking). A write that
/// finds the ring full with every consumer gone is `BrokenPipe` (while there is room, messages
/// go in for a later consumer, as with `send`). An empty buffer sends nothing (`Ok(0)`, as `Write` requires); send an
/// empty message with [`try_send`](Self::try_send).
///
/// # Examples
/// ```
/// use std::io::{Read, Write};
///
/// let ring = shmring::Ring::builder().mpmc().capacity(8).slot_size(64).heap().create()?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.write_all(b"one message")?;
/// tx.try_send(b"another")?;
/// let mut buf = [0u8; 64];
/// let n = Read::read(&mut rx, &mut buf)?; // (`rx.read()` is the zero-copy blocking read)
/// assert_eq!(&buf[..n], b"one message");
/// assert_eq!(rx.try_recv(&mut buf)?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Producer {
    flavor: ProducerFlavor,
    io: IoMode,
}

#[derive(Debug)]
enum ProducerFlavor {
    Spsc(spsc::Producer),
    Mpmc(mpmc::Producer),
    Records(records::Producer),
}

/// A receiving end of a ring of either kind, as [`Ring::consumer`](crate::Ring::consumer)
/// attaches it.
///
/// `std::io::Read` receives one message per `read` call and returns its length (call it as
/// `io::Read::read(&mut consumer, buf)`, or through a `BufReader` or `read_to_end`:
/// `consumer.read()` is the zero-copy blocking read). A buffer
/// shorter than the message is `InvalidInput`, and the message stays in the ring. It waits for
/// a message ([`set_timeout`](Self::set_timeout) bounds the wait, then `TimedOut`), or answers
/// `WouldBlock` at once after [`set_nonblocking(true)`](Self::set_nonblocking). `Ok(0)` means
/// the end: every producer gone and the ring drained. A zero-length message cannot be told
/// from that, so `read` receives it and answers `InvalidData` instead (use
/// [`try_recv`](Self::try_recv) where messages may be empty). A message lost to a producer that
/// died (MPMC) is an error of kind `Other` wrapping [`RecvError::Abandoned`]; the next call
/// goes on.
///
/// # Examples
/// ```
/// let ring = shmring::Ring::builder().spsc().capacity(8).slot_size(16).heap().create()?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// assert_eq!(rx.kind(), shmring::Kind::Spsc);
/// let mut slot = tx.try_claim()?;
/// slot[..2].copy_from_slice(b"hi");
/// slot.commit(2)?;
/// assert_eq!(&*rx.try_read()?, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Consumer {
    flavor: ConsumerFlavor,
    io: IoMode,
}

#[derive(Debug)]
enum ConsumerFlavor {
    Spsc(spsc::Consumer),
    Mpmc(mpmc::Consumer),
    Records(records::Consumer),
}

/// How the `std::io` calls wait.
#[derive(Debug, Clone, Copy, Default)]
struct IoMode {
    nonblocking: bool,
    timeout: Option<Duration>,
}

impl IoMode {
    fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(endpoint::deadline)
    }
}

/// Runs `$body` on the flavor's endpoint, bound to `$e`, whatever the kind.
macro_rules! dispatch {
    ($self:expr, $flavor:ident, $e:ident => $body:expr) => {
        match $self {
            $flavor::Spsc($e) => $body,
            $flavor::Mpmc($e) => $body,
            $flavor::Records($e) => $body,
        }
    };
}

impl From<spsc::Producer> for Producer {
    fn from(p: spsc::Producer) -> Producer {
        Producer::new(ProducerFlavor::Spsc(p))
    }
}

impl From<mpmc::Producer> for Producer {
    fn from(p: mpmc::Producer) -> Producer {
        Producer::new(ProducerFlavor::Mpmc(p))
    }
}

impl From<records::Producer> for Producer {
    fn from(p: records::Producer) -> Producer {
        Producer::new(ProducerFlavor::Records(p))
    }
}

impl Producer {
    fn new(flavor: ProducerFlavor) -> Producer {
        Producer {
            flavor,
            io: IoMode::default(),
        }
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        match &self.flavor {
            ProducerFlavor::Spsc(_) => Kind::Spsc,
            ProducerFlavor::Mpmc(_) => Kind::Mpmc,
            ProducerFlavor::Records(p) => p.attached().mem().geometry().kind,
        }
    }

    /// Copies `msg` into the ring.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Pending`] (MPMC), [`TrySendError::Disconnected`],
    /// [`TrySendError::TooLarge`], [`TrySendError::Corrupt`]; each hands `msg` back.
    #[inline(always)]
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        dispatch!(&mut self.flavor, ProducerFlavor, p => p.try_send(msg))
    }

    /// Claims the next slot for writing in place; see [`spsc::Producer::try_claim`].
    ///
    /// # Errors
    /// [`TryClaimError`].
    #[inline(always)]
    pub fn try_claim(&mut self) -> Result<WriteSlot<'_>, TryClaimError> {
        Ok(match &mut self.flavor {
            ProducerFlavor::Spsc(p) => WriteSlot(WriteFlavor::Spsc(p.try_claim()?)),
            ProducerFlavor::Mpmc(p) => WriteSlot(WriteFlavor::Mpmc(p.try_claim()?)),
            ProducerFlavor::Records(p) => {
                WriteSlot(WriteFlavor::Records(p.try_claim(p.slot_size())?))
            }
        })
    }

    /// Copies a plain-data value into the ring.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send).
    #[inline]
    pub fn try_send_value<T: Plain>(&mut self, value: T) -> Result<(), TrySendError<T>> {
        dispatch!(&mut self.flavor, ProducerFlavor, p => p.try_send_value(value))
    }

    /// Copies as many of `msgs` as fit; returns how many were sent (the first that many).
    /// SPSC checks for room once and wakes a sleeping consumer once
    /// ([`spsc::Producer::try_send_batch`]); MPMC claims each message on its own.
    ///
    /// # Errors
    /// [`TrySendError::TooLarge`] naming the index of a message longer than a slot (the ones
    /// before it were sent); [`TrySendError::Disconnected`] or [`TrySendError::Corrupt`] with
    /// index 0 when nothing was sent (after a partial batch they are reported by the next call).
    pub fn try_send_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
    ) -> Result<usize, TrySendError<usize>> {
        let p = match &mut self.flavor {
            ProducerFlavor::Spsc(p) => return p.try_send_batch(msgs),
            ProducerFlavor::Records(p) => return p.try_send_batch(msgs),
            ProducerFlavor::Mpmc(p) => p,
        };
        for (i, msg) in msgs.iter().enumerate() {
            match p.try_send(msg.as_ref()) {
                Ok(()) => {}
                Err(e) if e.would_block() => return Ok(i),
                Err(TrySendError::TooLarge { len, max, .. }) => {
                    return Err(TrySendError::TooLarge { msg: i, len, max });
                }
                Err(_) if i > 0 => return Ok(i),
                Err(TrySendError::Disconnected(_)) => return Err(TrySendError::Disconnected(0)),
                Err(TrySendError::Corrupt(_, c)) => return Err(TrySendError::Corrupt(0, c)),
                Err(_) => return Ok(i),
            }
        }
        Ok(msgs.len())
    }

    /// Makes `std::io::Write` answer `WouldBlock` instead of waiting for room.
    pub fn set_nonblocking(&mut self, nonblocking: bool) {
        self.io.nonblocking = nonblocking;
    }

    /// Bounds how long a blocking `std::io::Write` call waits for room (`None`: for ever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.io.timeout = timeout;
    }
}

impl Endpoint for Producer {
    fn attached(&self) -> &Attached {
        dispatch!(&self.flavor, ProducerFlavor, p => p.attached())
    }

    fn attached_mut(&mut self) -> &mut Attached {
        dispatch!(&mut self.flavor, ProducerFlavor, p => p.attached_mut())
    }

    fn liveness_tick(&mut self) {
        dispatch!(&mut self.flavor, ProducerFlavor, p => p.liveness_tick())
    }

    fn len(&self) -> usize {
        dispatch!(&self.flavor, ProducerFlavor, p => Endpoint::len(p))
    }
}

impl Sending for Producer {
    type Slot<'a> = WriteSlot<'a>;

    fn try_send_msg<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        self.try_send(msg)
    }

    fn claim_until(&mut self, deadline: Option<Instant>) -> Result<WriteSlot<'_>, ClaimError> {
        Ok(match &mut self.flavor {
            ProducerFlavor::Spsc(p) => WriteSlot(WriteFlavor::Spsc(p.claim_until(deadline)?)),
            ProducerFlavor::Mpmc(p) => WriteSlot(WriteFlavor::Mpmc(p.claim_until(deadline)?)),
            ProducerFlavor::Records(p) => WriteSlot(WriteFlavor::Records(p.claim_until(deadline)?)),
        })
    }
}

producer_api!(Producer, WriteSlot);

impl io::Write for Producer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let sent = if self.io.nonblocking {
            self.try_send(buf).map_err(|e| match e {
                e if e.would_block() => io::Error::from(io::ErrorKind::WouldBlock),
                e => send_error(SendError::from_try(e)),
            })
        } else {
            endpoint::send_until(self, buf, self.io.deadline()).map_err(send_error)
        };
        sent.map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A send error as `std::io` reports it.
fn send_error(e: SendError<&[u8]>) -> io::Error {
    let kind = match &e {
        SendError::Timeout(_) => io::ErrorKind::TimedOut,
        SendError::Disconnected(_) => io::ErrorKind::BrokenPipe,
        SendError::TooLarge { .. } => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e.to_string())
}

/// A slot claimed through a kind-erased [`Producer`]: write the message into it (it
/// dereferences to the whole slot), then [`commit`](Self::commit). Dropping it sends nothing
/// (MPMC: its slot carries a skip marker consumers step over).
#[derive(Debug)]
#[must_use = "a claimed slot sends nothing unless committed"]
pub struct WriteSlot<'a>(WriteFlavor<'a>);

#[derive(Debug)]
enum WriteFlavor<'a> {
    Spsc(spsc::WriteSlot<'a>),
    Mpmc(mpmc::WriteSlot<'a>),
    Records(records::WriteRecord<'a>),
}

impl WriteSlot<'_> {
    /// Publishes the first `len` bytes of the slot as one message.
    ///
    /// # Errors
    /// [`CommitError`] if `len` exceeds the slot size; nothing is sent.
    #[inline]
    pub fn commit(self, len: usize) -> Result<(), CommitError> {
        match self.0 {
            WriteFlavor::Spsc(s) => s.commit(len),
            WriteFlavor::Mpmc(s) => s.commit(len),
            // A record claim is of the largest message: the rest becomes padding.
            WriteFlavor::Records(s) => s.commit_prefix(len),
        }
    }
}

impl Deref for WriteSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        dispatch!(&self.0, WriteFlavor, s => s)
    }
}

impl DerefMut for WriteSlot<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        dispatch!(&mut self.0, WriteFlavor, s => s)
    }
}

impl From<spsc::Consumer> for Consumer {
    fn from(c: spsc::Consumer) -> Consumer {
        Consumer::new(ConsumerFlavor::Spsc(c))
    }
}

impl From<mpmc::Consumer> for Consumer {
    fn from(c: mpmc::Consumer) -> Consumer {
        Consumer::new(ConsumerFlavor::Mpmc(c))
    }
}

impl From<records::Consumer> for Consumer {
    fn from(c: records::Consumer) -> Consumer {
        Consumer::new(ConsumerFlavor::Records(c))
    }
}

impl Consumer {
    fn new(flavor: ConsumerFlavor) -> Consumer {
        Consumer {
            flavor,
            io: IoMode::default(),
        }
    }

    /// The ring's kind.
    pub fn kind(&self) -> Kind {
        match &self.flavor {
            ConsumerFlavor::Spsc(_) => Kind::Spsc,
            ConsumerFlavor::Mpmc(_) => Kind::Mpmc,
            ConsumerFlavor::Records(c) => c.attached().mem().geometry().kind,
        }
    }

    /// Copies the next message into `buf` and returns its length.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::Pending`] (MPMC), [`TryRecvError::Disconnected`],
    /// [`TryRecvError::BufferTooSmall`] (the message stays), [`TryRecvError::Abandoned`] (MPMC),
    /// [`TryRecvError::Corrupt`].
    #[inline(always)]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        dispatch!(&mut self.flavor, ConsumerFlavor, c => c.try_recv(buf))
    }

    /// Borrows the next message in place; it is released when the guard drops.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv), without `BufferTooSmall`.
    #[inline(always)]
    pub fn try_read(&mut self) -> Result<ReadSlot<'_>, TryRecvError> {
        Ok(match &mut self.flavor {
            ConsumerFlavor::Spsc(c) => ReadSlot(ReadFlavor::Spsc(c.try_read()?)),
            ConsumerFlavor::Mpmc(c) => ReadSlot(ReadFlavor::Mpmc(c.try_read()?)),
            ConsumerFlavor::Records(c) => ReadSlot(ReadFlavor::Records(c.try_read()?)),
        })
    }

    /// Reads a plain-data value.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv); `SizeMismatch` if the next message is not exactly one
    /// `T` (it stays in the ring).
    #[inline]
    pub fn try_recv_value<T: Plain>(&mut self) -> Result<T, TryRecvError> {
        dispatch!(&mut self.flavor, ConsumerFlavor, c => c.try_recv_value())
    }

    /// Calls `f` on up to `max` messages in place and returns how many it was given, 0 if there
    /// is nothing to give (`Empty` or `Pending`): SPSC and the record rings release them with
    /// one cursor store ([`spsc::Consumer::try_recv_batch`]), MPMC takes and releases each on
    /// its own ([`mpmc::Consumer::try_recv_batch`]). If `f` panics, every message it was given,
    /// the one it panicked on included, is released before the panic goes on, whatever the kind.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv) when the first message cannot be received (but never
    /// `Empty` or `Pending`); a corrupt or lost message after the first ends the batch before
    /// it, to be reported by the next call.
    pub fn try_recv_batch(
        &mut self,
        max: usize,
        f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        dispatch!(&mut self.flavor, ConsumerFlavor, c => c.try_recv_batch(max, f))
    }

    /// Makes `std::io::Read` answer `WouldBlock` instead of waiting for a message.
    pub fn set_nonblocking(&mut self, nonblocking: bool) {
        self.io.nonblocking = nonblocking;
    }

    /// Bounds how long a blocking `std::io::Read` call waits (`None`: for ever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.io.timeout = timeout;
    }
}

impl Endpoint for Consumer {
    fn attached(&self) -> &Attached {
        dispatch!(&self.flavor, ConsumerFlavor, c => c.attached())
    }

    fn attached_mut(&mut self) -> &mut Attached {
        dispatch!(&mut self.flavor, ConsumerFlavor, c => c.attached_mut())
    }

    fn liveness_tick(&mut self) {
        dispatch!(&mut self.flavor, ConsumerFlavor, c => c.liveness_tick())
    }

    fn len(&self) -> usize {
        dispatch!(&self.flavor, ConsumerFlavor, c => Endpoint::len(c))
    }
}

impl Receiving for Consumer {
    type Read<'a> = ReadSlot<'a>;

    fn try_recv_msg(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        self.try_recv(buf)
    }

    fn read_until(&mut self, deadline: Option<Instant>) -> Result<ReadSlot<'_>, RecvError> {
        Ok(match &mut self.flavor {
            ConsumerFlavor::Spsc(c) => ReadSlot(ReadFlavor::Spsc(c.read_until(deadline)?)),
            ConsumerFlavor::Mpmc(c) => ReadSlot(ReadFlavor::Mpmc(c.read_until(deadline)?)),
            ConsumerFlavor::Records(c) => ReadSlot(ReadFlavor::Records(c.read_until(deadline)?)),
        })
    }
}

consumer_api!(Consumer, ReadSlot);

impl io::Read for Consumer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = if self.io.nonblocking {
            match self.try_recv(buf) {
                Err(e) if e.would_block() => {
                    return Err(io::Error::from(io::ErrorKind::WouldBlock));
                }
                other => other.map_err(RecvError::from_try),
            }
        } else {
            endpoint::recv_until(self, buf, self.io.deadline())
        };
        match got {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "received a zero-length message, which std::io::Read cannot return without \
                 signalling the end (use try_recv)",
            )),
            Ok(n) => Ok(n),
            Err(RecvError::Disconnected) => Ok(0),
            Err(e) => {
                let kind = match e {
                    RecvError::Timeout => io::ErrorKind::TimedOut,
                    RecvError::BufferTooSmall { .. } => io::ErrorKind::InvalidInput,
                    RecvError::Abandoned { .. } => io::ErrorKind::Other,
                    _ => io::ErrorKind::InvalidData,
                };
                Err(io::Error::new(kind, e))
            }
        }
    }
}

/// A message taken for reading and not yet borrowed: what [`Consumer::try_take`] found, for
/// [`Consumer::guard`] to borrow (the async read, which must not hold a borrow across a poll).
#[cfg(feature = "async")]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Taken {
    Spsc(usize, usize),
    Mpmc(u64, usize, usize),
    Records(usize, usize),
}

#[cfg(feature = "async")]
impl Consumer {
    /// The next message, taken but not borrowed: SPSC and records only looked (nothing
    /// changes until the guard drops); MPMC claimed it (the guard must follow at once).
    pub(crate) fn try_take(&mut self) -> Result<Taken, TryRecvError> {
        Ok(match &mut self.flavor {
            ConsumerFlavor::Spsc(c) => {
                let (idx, len) = c.peek()?;
                Taken::Spsc(idx, len)
            }
            ConsumerFlavor::Mpmc(c) => {
                let (pos, idx, len) = c.observe_checked(|_| Ok(()))?;
                Taken::Mpmc(pos, idx, len)
            }
            ConsumerFlavor::Records(c) => {
                let (off, len) = c.next()?;
                Taken::Records(off, len)
            }
        })
    }

    /// The guard over what [`try_take`](Self::try_take) returned (of this consumer).
    pub(crate) fn guard(&mut self, taken: Taken) -> ReadSlot<'_> {
        ReadSlot(match (&mut self.flavor, taken) {
            (ConsumerFlavor::Spsc(c), Taken::Spsc(idx, len)) => ReadFlavor::Spsc(c.guard(idx, len)),
            (ConsumerFlavor::Mpmc(c), Taken::Mpmc(pos, idx, len)) => {
                ReadFlavor::Mpmc(c.guard(pos, idx, len))
            }
            (ConsumerFlavor::Records(c), Taken::Records(off, len)) => {
                ReadFlavor::Records(c.guard(off, len))
            }
            _ => unreachable!("a take is guarded by the consumer that made it"),
        })
    }
}

/// A claim made and not yet borrowed: what [`Producer::try_reserve`] found.
#[cfg(feature = "async")]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reserved {
    Spsc,
    Mpmc(u64, usize),
    Records(u64, usize),
}

#[cfg(feature = "async")]
impl Producer {
    /// Room for the next claim: SPSC only looked (nobody else claims), MPMC and records
    /// claimed (the slot must follow at once). A record claim is of the largest message.
    pub(crate) fn try_reserve(&mut self) -> Result<Reserved, TryClaimError> {
        Ok(match &mut self.flavor {
            ProducerFlavor::Spsc(p) => {
                p.has_space()?;
                Reserved::Spsc
            }
            ProducerFlavor::Mpmc(p) => {
                let (pos, idx) = p.claim_slot()?;
                Reserved::Mpmc(pos, idx)
            }
            ProducerFlavor::Records(p) => {
                let len = p.slot_size();
                Reserved::Records(p.reserve_checked(len)?, len)
            }
        })
    }

    /// The write guard over what [`try_reserve`](Self::try_reserve) returned.
    pub(crate) fn slot(&mut self, reserved: Reserved) -> Result<WriteSlot<'_>, TryClaimError> {
        Ok(WriteSlot(match (&mut self.flavor, reserved) {
            // Room was seen and only this producer takes it.
            (ProducerFlavor::Spsc(p), Reserved::Spsc) => WriteFlavor::Spsc(p.try_claim()?),
            (ProducerFlavor::Mpmc(p), Reserved::Mpmc(pos, idx)) => {
                WriteFlavor::Mpmc(p.slot(pos, idx))
            }
            (ProducerFlavor::Records(p), Reserved::Records(pos, len)) => {
                WriteFlavor::Records(p.guard(pos, len))
            }
            _ => unreachable!("a reservation is used by the producer that made it"),
        }))
    }
}

/// A message borrowed in place through a kind-erased [`Consumer`]; released when it drops.
#[derive(Debug)]
pub struct ReadSlot<'a>(ReadFlavor<'a>);

#[derive(Debug)]
enum ReadFlavor<'a> {
    Spsc(spsc::ReadSlot<'a>),
    Mpmc(mpmc::ReadSlot<'a>),
    Records(records::ReadRecord<'a>),
}

impl Deref for ReadSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        dispatch!(&self.0, ReadFlavor, s => s)
    }
}

impl<'a> ReadSlot<'a> {
    /// Puts the message back if the ring can: SPSC can (the next receive returns it again,
    /// [`spsc::ReadSlot::unread`]); MPMC cannot (other consumers have moved past it), and hands
    /// the guard back, to be dropped (the message is then consumed) or kept.
    ///
    /// # Errors
    /// The guard itself, on an MPMC ring.
    pub fn try_unread(self) -> Result<(), ReadSlot<'a>> {
        match self.0 {
            ReadFlavor::Spsc(s) => {
                s.unread();
                Ok(())
            }
            ReadFlavor::Records(s) => {
                s.unread();
                Ok(())
            }
            mpmc => Err(ReadSlot(mpmc)),
        }
    }
}
