//! Errors of moving messages: sending, claiming, receiving, and the corruption a segment can
//! show at any step.

use core::fmt;

/// A ring invariant that the shared memory no longer satisfies: another process wrote garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The cursors are further apart than the capacity allows.
    Cursors {
        /// The producer cursor.
        head: u64,
        /// The consumer cursor.
        tail: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A committed length larger than the slot.
    Length {
        /// The cursor of the message.
        cursor: u64,
        /// The length found.
        len: u32,
        /// The slot size.
        max: usize,
    },
    /// A record ring's header word no producer could have written (an unknown state, a length
    /// past the largest message, a record or padding running past the end of the data area).
    Record {
        /// The cursor (byte position) of the record.
        cursor: u64,
        /// The header word found.
        word: u64,
    },
    /// An MPMC sequence word no protocol step could have written.
    Sequence {
        /// The cursor being claimed.
        cursor: u64,
        /// The sequence word found.
        seq: u64,
    },
    /// The POSIX object was truncated after this process mapped it: the pages past its new
    /// end, and what they held, are gone (this process now sees zeroes there instead of dying of
    /// `SIGBUS`; see `docs/safety.md`).
    Shrunk,
    /// A page of the ring could not be allocated: the filesystem behind the POSIX object
    /// (`/dev/shm`, a tmpfs) is full, or the memory cgroup's limit was hit. It happens only to
    /// rings whose pages were not reserved when they were made (shmring reserves them; an older
    /// or a foreign creator may not have). What was written to that page is lost; this process
    /// sees zeroes there from then on, as for [`Shrunk`](Self::Shrunk).
    OutOfSpace,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Cursors {
                head,
                tail,
                capacity,
            } if head.wrapping_sub(*tail) <= *capacity => write!(
                // Within the capacity: what is wrong is the unit (record rings count bytes in
                // records of 8-byte multiples).
                f,
                "ring corrupted: producer cursor {head} and consumer cursor {tail} are not both multiples of 8 bytes"
            ),
            Corruption::Cursors {
                head,
                tail,
                capacity,
            } => write!(
                f,
                "ring corrupted: producer cursor {head} and consumer cursor {tail} are more than the capacity {capacity} apart"
            ),
            Corruption::Length { cursor, len, max } => write!(
                f,
                "ring corrupted: message {cursor} claims {len} bytes in a slot of {max}"
            ),
            Corruption::Record { cursor, word } => write!(
                f,
                "ring corrupted: the record header at byte {cursor} holds {word:#018x}, which no producer writes"
            ),
            Corruption::Sequence { cursor, seq } => write!(
                f,
                "ring corrupted: slot sequence {seq} is impossible at cursor {cursor}"
            ),
            Corruption::Shrunk => f.write_str(
                "ring destroyed: the shared-memory object was truncated after this process mapped it",
            ),
            Corruption::OutOfSpace => f.write_str(
                "ring unusable: a page of it could not be allocated (the shared-memory \
                 filesystem, /dev/shm, is full, or the memory limit was hit); the message on \
                 that page was not sent (`shmring doctor` shows the space)",
            ),
        }
    }
}

impl std::error::Error for Corruption {}

/// Why a message was not sent. The message is handed back.
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The ring is full: every slot holds a message no consumer has taken.
    Full(T),
    /// MPMC: the ring is not full, but the next slot is still being read: a consumer took its
    /// previous message and has not released it (a receive guard is alive, or the copy is in
    /// progress). The slots after it wait behind it. Try again; the blocking calls wait through
    /// it. If that consumer died, the producers take the slot back (`Status::reclaimed`).
    Pending(T),
    /// The ring is full and every consumer that attached is gone (detached, or its process
    /// died). A consumer that attaches later would receive what the ring holds.
    Disconnected(T),
    /// The message is larger than a slot.
    TooLarge {
        /// The message.
        msg: T,
        /// Its length in bytes.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The shared cursors are corrupt.
    Corrupt(T, Corruption),
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(m)
            | TrySendError::Pending(m)
            | TrySendError::Disconnected(m)
            | TrySendError::TooLarge { msg: m, .. } => m,
            TrySendError::Corrupt(m, _) => m,
        }
    }

    /// Whether the ring was full (the send may succeed later).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// Whether the send may succeed later: [`Full`](Self::Full) or
    /// [`Pending`](Self::Pending), the outcomes the blocking calls wait through.
    pub fn would_block(&self) -> bool {
        matches!(self, TrySendError::Full(_) | TrySendError::Pending(_))
    }

    /// Whether the consumers are gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TrySendError::Disconnected(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Pending(_) => f.write_str("Pending(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            TrySendError::TooLarge { len, max, .. } => f
                .debug_struct("TooLarge")
                .field("len", len)
                .field("max", max)
                .finish_non_exhaustive(),
            TrySendError::Corrupt(_, c) => f.debug_tuple("Corrupt").field(c).finish(),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full ring"),
            TrySendError::Pending(_) => f.write_str(
                "sending while a consumer still reads the next slot (the ring is not full)",
            ),
            TrySendError::Disconnected(_) => {
                f.write_str("sending on a full ring whose consumers are gone")
            }
            TrySendError::TooLarge { len, max, .. } => write!(
                f,
                "message of {len} bytes does not fit a slot of {max} bytes"
            ),
            TrySendError::Corrupt(_, c) => c.fmt(f),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// Why no slot could be claimed for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryClaimError {
    /// The ring is full.
    Full,
    /// MPMC: the next slot is still being read by a consumer (see [`TrySendError::Pending`]).
    Pending,
    /// The ring is full and every consumer that attached is gone.
    Disconnected,
    /// The shared cursors are corrupt.
    Corrupt(Corruption),
    /// A record ring: the length asked for is above the largest message.
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The largest message.
        max: usize,
    },
}

impl TryClaimError {
    /// The matching send error, handing `msg` back.
    pub(crate) fn with_msg<T>(self, msg: T) -> TrySendError<T> {
        match self {
            TryClaimError::Full => TrySendError::Full(msg),
            TryClaimError::Pending => TrySendError::Pending(msg),
            TryClaimError::Disconnected => TrySendError::Disconnected(msg),
            TryClaimError::Corrupt(c) => TrySendError::Corrupt(msg, c),
            TryClaimError::TooLarge { len, max } => TrySendError::TooLarge { msg, len, max },
        }
    }
}

impl fmt::Display for TryClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryClaimError::Full => f.write_str("claiming a slot on a full ring"),
            TryClaimError::Pending => {
                f.write_str("claiming a slot a consumer still reads (the ring is not full)")
            }
            TryClaimError::Disconnected => {
                f.write_str("claiming a slot on a full ring whose consumers are gone")
            }
            TryClaimError::Corrupt(c) => c.fmt(f),
            TryClaimError::TooLarge { len, max } => write!(
                f,
                "claiming a record of {len} bytes, above the largest message ({max} bytes)"
            ),
        }
    }
}

impl TryClaimError {
    /// Whether a claim may succeed later: [`Full`](Self::Full) or [`Pending`](Self::Pending).
    pub fn would_block(&self) -> bool {
        matches!(self, TryClaimError::Full | TryClaimError::Pending)
    }
}

impl std::error::Error for TryClaimError {}

/// Why no message was received. The message, if there is one, stays in the ring unless the
/// variant says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// The ring is empty: no producer has claimed a slot the consumers have not taken.
    Empty,
    /// MPMC: the ring is not empty, but the next message is still being written: its producer
    /// claimed the slot and has not committed it. The messages after it wait behind it. Try
    /// again; the blocking calls wait through it. If that producer died, the slot is recovered
    /// and reported as [`Abandoned`](Self::Abandoned) (`docs/crash-recovery.md`).
    Pending,
    /// The ring is empty and every producer that attached is gone (detached, or its process
    /// died): nothing more will arrive unless a new producer attaches.
    Disconnected,
    /// The next message is longer than the buffer; it stays in the ring.
    BufferTooSmall {
        /// The message's length.
        needed: usize,
        /// The buffer's length.
        available: usize,
    },
    /// A typed receive found a message of another size; it stays in the ring.
    SizeMismatch {
        /// `size_of` the type asked for.
        expected: usize,
        /// The message's length.
        found: usize,
    },
    /// The shared memory is corrupt. For a [`Corruption::Length`], the broken slot has been
    /// consumed so the ring can move on; for cursor corruption nothing changed.
    Corrupt(Corruption),
    /// MPMC: the message at `cursor` was lost: its producer died between claiming the slot and
    /// committing it, and the slot was recovered (see `docs/crash-recovery.md`). The slot has
    /// been consumed; the next call returns the next message.
    Abandoned {
        /// The cursor of the lost message.
        cursor: u64,
    },
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty ring"),
            TryRecvError::Pending => f.write_str(
                "receiving while a producer still writes the next message (the ring is not empty)",
            ),
            TryRecvError::Disconnected => {
                f.write_str("receiving on an empty ring whose producers are gone")
            }
            TryRecvError::BufferTooSmall { needed, available } => write!(
                f,
                "the next message has {needed} bytes, the buffer holds {available}; it stays in the ring"
            ),
            TryRecvError::SizeMismatch { expected, found } => write!(
                f,
                "the next message has {found} bytes, the type needs {expected}; it stays in the ring"
            ),
            TryRecvError::Corrupt(c) => c.fmt(f),
            TryRecvError::Abandoned { cursor } => write!(
                f,
                "message {cursor} was lost: its producer died before committing it"
            ),
        }
    }
}

impl TryRecvError {
    /// Whether a message may arrive later: [`Empty`](Self::Empty) or
    /// [`Pending`](Self::Pending), the outcomes the blocking calls wait through.
    pub fn would_block(&self) -> bool {
        matches!(self, TryRecvError::Empty | TryRecvError::Pending)
    }
}

impl std::error::Error for TryRecvError {}

/// Why a commit sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitError {
    /// The length exceeds the slot. The claim was dropped: nothing was sent.
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The message could not be made visible: the ring's memory was lost under it (see
    /// [`Corruption::Shrunk`] and [`Corruption::OutOfSpace`]).
    Corrupt(Corruption),
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitError::TooLarge { len, max } => write!(
                f,
                "commit of {len} bytes exceeds the slot size of {max} bytes; nothing was sent"
            ),
            CommitError::Corrupt(c) => write!(f, "{c}; nothing was sent"),
        }
    }
}

impl std::error::Error for CommitError {}

/// Why a blocking send did not send. The message is handed back.
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError<T> {
    /// The ring stayed full until the timeout.
    Timeout(T),
    /// The ring is full and every consumer that attached is gone (detached, or its process
    /// died, as found by the liveness check).
    Disconnected(T),
    /// The message is larger than a slot.
    TooLarge {
        /// The message.
        msg: T,
        /// Its length in bytes.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The shared cursors are corrupt.
    Corrupt(T, Corruption),
}

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Timeout(m)
            | SendError::Disconnected(m)
            | SendError::TooLarge { msg: m, .. }
            | SendError::Corrupt(m, _) => m,
        }
    }

    /// Whether the consumers are gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendError::Disconnected(_))
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Timeout(_))
    }

    /// The blocking form of a non-blocking outcome; `Full` and `Pending` only ever arrive at a
    /// deadline.
    pub(crate) fn from_try(e: TrySendError<T>) -> SendError<T> {
        match e {
            TrySendError::Full(m) | TrySendError::Pending(m) => SendError::Timeout(m),
            TrySendError::Disconnected(m) => SendError::Disconnected(m),
            TrySendError::TooLarge { msg, len, max } => SendError::TooLarge { msg, len, max },
            TrySendError::Corrupt(m, c) => SendError::Corrupt(m, c),
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Timeout(_) => f.write_str("Timeout(..)"),
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::TooLarge { len, max, .. } => f
                .debug_struct("TooLarge")
                .field("len", len)
                .field("max", max)
                .finish_non_exhaustive(),
            SendError::Corrupt(_, c) => f.debug_tuple("Corrupt").field(c).finish(),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Timeout(_) => f.write_str("timed out sending on a full ring"),
            SendError::Disconnected(_) => {
                f.write_str("sending on a full ring whose consumers are gone")
            }
            SendError::TooLarge { len, max, .. } => write!(
                f,
                "message of {len} bytes does not fit a slot of {max} bytes"
            ),
            SendError::Corrupt(_, c) => c.fmt(f),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why a blocking claim got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimError {
    /// The ring stayed full until the timeout.
    Timeout,
    /// The ring is full and every consumer that attached is gone.
    Disconnected,
    /// The shared cursors are corrupt.
    Corrupt(Corruption),
    /// A record ring: the length asked for is above the largest message.
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The largest message.
        max: usize,
    },
}

impl ClaimError {
    pub(crate) fn from_try(e: TryClaimError) -> ClaimError {
        match e {
            TryClaimError::Full | TryClaimError::Pending => ClaimError::Timeout,
            TryClaimError::Disconnected => ClaimError::Disconnected,
            TryClaimError::Corrupt(c) => ClaimError::Corrupt(c),
            TryClaimError::TooLarge { len, max } => ClaimError::TooLarge { len, max },
        }
    }
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Timeout => f.write_str("timed out claiming a slot on a full ring"),
            ClaimError::Disconnected => {
                f.write_str("claiming a slot on a full ring whose consumers are gone")
            }
            ClaimError::Corrupt(c) => c.fmt(f),
            ClaimError::TooLarge { len, max } => write!(
                f,
                "claiming a record of {len} bytes, above the largest message ({max} bytes)"
            ),
        }
    }
}

impl std::error::Error for ClaimError {}

/// Why a blocking receive got no message. As for [`TryRecvError`], a message that does not
/// fit stays in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The ring stayed empty until the timeout.
    Timeout,
    /// The ring is empty and every producer that attached is gone (detached, or its process
    /// died, as found by the liveness check).
    Disconnected,
    /// The next message is longer than the buffer; it stays in the ring.
    BufferTooSmall {
        /// The message's length.
        needed: usize,
        /// The buffer's length.
        available: usize,
    },
    /// A typed receive found a message of another size; it stays in the ring.
    SizeMismatch {
        /// `size_of` the type asked for.
        expected: usize,
        /// The message's length.
        found: usize,
    },
    /// The shared memory is corrupt (see [`TryRecvError::Corrupt`]).
    Corrupt(Corruption),
    /// A message was lost to a producer that died (see [`TryRecvError::Abandoned`]).
    Abandoned {
        /// The cursor of the lost message.
        cursor: u64,
    },
}

impl RecvError {
    /// Whether the producers are gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvError::Disconnected)
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvError::Timeout)
    }

    /// The blocking form of a non-blocking outcome; `Empty` and `Pending` only ever arrive at
    /// a deadline.
    pub(crate) fn from_try(e: TryRecvError) -> RecvError {
        match e {
            TryRecvError::Empty | TryRecvError::Pending => RecvError::Timeout,
            TryRecvError::Disconnected => RecvError::Disconnected,
            TryRecvError::BufferTooSmall { needed, available } => {
                RecvError::BufferTooSmall { needed, available }
            }
            TryRecvError::SizeMismatch { expected, found } => {
                RecvError::SizeMismatch { expected, found }
            }
            TryRecvError::Corrupt(c) => RecvError::Corrupt(c),
            TryRecvError::Abandoned { cursor } => RecvError::Abandoned { cursor },
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Timeout => f.write_str("timed out receiving on an empty ring"),
            RecvError::Disconnected => {
                f.write_str("receiving on an empty ring whose producers are gone")
            }
            RecvError::BufferTooSmall { needed, available } => TryRecvError::BufferTooSmall {
                needed: *needed,
                available: *available,
            }
            .fmt(f),
            RecvError::SizeMismatch { expected, found } => TryRecvError::SizeMismatch {
                expected: *expected,
                found: *found,
            }
            .fmt(f),
            RecvError::Corrupt(c) => c.fmt(f),
            RecvError::Abandoned { cursor } => TryRecvError::Abandoned { cursor: *cursor }.fmt(f),
        }
    }
}

impl std::error::Error for RecvError {}
