//! Async endpoints for tokio (feature `async`): await a message, or room, from another process.
//!
//! [`AsyncConsumer`] and [`AsyncProducer`] wrap the kind-erased [`Consumer`] and [`Producer`]
//! (so every kind: SPSC, MPMC, records) and wait through a [`Doorbell`] registered with tokio's
//! reactor: `recv`, `read`, `send`, `claim` and their `_timeout` forms, `Stream` for consumers
//! and `Sink` for producers. The sync API, and the cost of a send when nobody waits (one load),
//! are unchanged; sync and async peers mix in any combination.
//!
//! # Cancellation
//!
//! Every future here is cancellation safe in tokio's sense:
//! - `recv`, `recv_vec`, `recv_timeout`: a message is consumed only in the poll that returns
//!   it; dropping the future before that leaves it in the ring.
//! - `read`: the message is taken only in the poll that returns the guard.
//! - `send`, `send_timeout`: the message is copied and published in one poll, or not at all;
//!   dropping the future never publishes part of it (and never publishes it later).
//! - `claim`: a claim is made only in the poll that returns its guard; dropping the guard
//!   sends nothing (as in the sync API).
//!
//! A future dropped while waiting disarms its doorbell, so the waker stops paying a system call
//! per message.
//!
//! # Examples
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmring::aio::{AsyncConsumer, AsyncProducer};
//!
//! let ring = shmring::Ring::builder().spsc().capacity(8).slot_size(64).heap().create()?;
//! let mut rx = AsyncConsumer::new(ring.consumer()?)?;
//! let mut tx = AsyncProducer::new(ring.producer()?)?;
//! let sender = tokio::spawn(async move {
//!     for i in 0..100u8 {
//!         tx.send(&[i]).await.unwrap(); // waits while the ring is full
//!     }
//! });
//! let mut buf = [0u8; 64];
//! for i in 0..100u8 {
//!     assert_eq!(rx.recv(&mut buf).await?, 1); // waits while the ring is empty
//!     assert_eq!(buf[0], i);
//! }
//! sender.await?;
//! # Ok(()) }
//! ```

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::channel::{Consumer, Producer, ReadSlot, WriteSlot};
use crate::doorbell::Doorbell;
use crate::endpoint::Endpoint;
use crate::error::{ClaimError, RecvError, SendError, TryClaimError, TryRecvError, TrySendError};
use crate::layout::Side;

/// A waiting endpoint's doorbell, registered with tokio's reactor.
#[derive(Debug)]
struct Bell(AsyncFd<Doorbell>);

impl Bell {
    fn new() -> io::Result<Bell> {
        // Registering without a reactor would panic: say so instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "shmring::aio needs a tokio runtime with IO enabled (Runtime::enable_io)",
            ));
        }
        // SAFETY: the doorbell owns its eventfd and never changes or closes it while it lives,
        // and the `AsyncFd` owns the doorbell (only `get_mut` reaches it, to arm and disarm).
        unsafe { AsyncFd::register_with_interest(Doorbell::new()?, Interest::READABLE) }
            .map(Bell)
            .map_err(|e| e.into_parts().1)
    }

    /// One step of a wait for `ep` on `side`, after a poll of the ring that would block: arm
    /// the doorbell (then the caller polls the ring again: what arrived before the arm is not
    /// rung for), or wait for it to ring (`Pending`), or — rung — disarm, so the caller polls
    /// again. `Ready` means: poll the ring now.
    fn poll_wait(&mut self, cx: &mut Context<'_>, ep: &mut dyn Endpoint, side: Side) -> Poll<()> {
        if !self.0.get_ref().is_armed() {
            // (Arming runs a due liveness check, so the poll that follows answers
            // `Disconnected` once every peer is dead.)
            if self.0.get_mut().arm(ep, side).is_err() {
                // The helper thread could not start: poll again at the next turn of the
                // runtime instead of sleeping (never a lost message; a busy wait).
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(());
        }
        match self.0.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
            // The reactor failed: as above, poll again at the next turn.
            Poll::Ready(Err(_)) => cx.waker().wake_by_ref(),
        }
        self.0.get_mut().disarm();
        Poll::Ready(())
    }

    fn disarm(&mut self) {
        self.0.get_mut().disarm();
    }
}

/// Disarms a bell when the future holding it completes or is dropped (cancelled), so a waker
/// stops paying a system call per message for a waiter that is gone.
struct Disarm<'a>(&'a mut Bell);

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        self.0.disarm();
    }
}

/// Polls `op` on `ep` until it stops saying "would block", waiting for `bell` between.
fn poll_until<E: Endpoint, T, X>(
    ep: &mut E,
    bell: &mut Bell,
    side: Side,
    cx: &mut Context<'_>,
    would_block: impl Fn(&X) -> bool,
    mut op: impl FnMut(&mut E) -> Result<T, X>,
) -> Poll<Result<T, X>> {
    loop {
        match op(ep) {
            Err(e) if would_block(&e) => {}
            done => {
                bell.disarm();
                return Poll::Ready(done);
            }
        }
        ready!(bell.poll_wait(cx, ep, side));
    }
}

/// A consumer whose waits are futures: [`recv`](Self::recv), [`read`](Self::read), a
/// `Stream` of messages, and the doorbell's descriptor ([`AsFd`]).
///
/// Needs a tokio runtime with IO enabled (`Runtime::enable_io`, or `#[tokio::main]`).
#[derive(Debug)]
pub struct AsyncConsumer {
    inner: Consumer,
    bell: Bell,
}

impl AsyncConsumer {
    /// Wraps a consumer.
    ///
    /// # Errors
    /// No tokio reactor in this context, or no descriptor left for the doorbell.
    pub fn new(inner: Consumer) -> io::Result<AsyncConsumer> {
        Ok(AsyncConsumer {
            inner,
            bell: Bell::new()?,
        })
    }

    /// The consumer.
    pub fn get_ref(&self) -> &Consumer {
        &self.inner
    }

    /// The consumer, for its non-blocking calls.
    pub fn get_mut(&mut self) -> &mut Consumer {
        &mut self.inner
    }

    /// The consumer back.
    pub fn into_inner(mut self) -> Consumer {
        self.bell.disarm();
        self.inner
    }

    /// Waits until `op` stops saying "would block"; disarms when done or dropped.
    async fn until<T>(
        &mut self,
        mut op: impl FnMut(&mut Consumer) -> Result<T, TryRecvError>,
    ) -> Result<T, RecvError> {
        let AsyncConsumer { inner, bell } = self;
        let bell = Disarm(bell);
        poll_fn(|cx| {
            poll_until(
                inner,
                bell.0,
                Side::Data,
                cx,
                TryRecvError::would_block,
                &mut op,
            )
        })
        .await
        .map_err(RecvError::from_try)
    }

    /// Receives the next message into `buf`, waiting while the ring is empty; returns its
    /// length. Cancellation safe: the message is consumed only in the poll that returns it.
    ///
    /// # Errors
    /// As the sync [`Consumer::recv`]: `Disconnected` once the ring is empty and every
    /// producer gone (a killed one is noticed within the liveness interval), `BufferTooSmall`
    /// (the message stays), `Abandoned`, `Corrupt`.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.until(|c| c.try_recv(buf)).await
    }

    /// As [`recv`](Self::recv), giving up after `timeout` with [`RecvError::Timeout`].
    ///
    /// # Errors
    /// As [`recv`](Self::recv), plus `Timeout`.
    pub async fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        tokio::time::timeout(timeout, self.recv(buf))
            .await
            .unwrap_or(Err(RecvError::Timeout))
    }

    /// Replaces the contents of `buf` with the next message (any length) and returns its
    /// length.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub async fn recv_vec(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        let msg = self.read().await?;
        buf.clear();
        buf.extend_from_slice(&msg);
        Ok(buf.len())
    }

    /// Borrows the next message in place, waiting while the ring is empty; it is consumed when
    /// the guard drops. Cancellation safe: the message is taken only in the poll that returns
    /// the guard.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), without `BufferTooSmall`.
    pub async fn read(&mut self) -> Result<ReadSlot<'_>, RecvError> {
        let taken = self.until(Consumer::try_take).await?;
        Ok(self.inner.guard(taken))
    }

    /// As [`read`](Self::read), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`read`](Self::read), plus `Timeout`.
    pub async fn read_timeout(&mut self, timeout: Duration) -> Result<ReadSlot<'_>, RecvError> {
        let taken = tokio::time::timeout(timeout, self.until(Consumer::try_take))
            .await
            .unwrap_or(Err(RecvError::Timeout))?;
        Ok(self.inner.guard(taken))
    }
}

impl futures_core::Stream for AsyncConsumer {
    /// Each message, owned; the stream ends once every producer is gone and the ring drained.
    type Item = Result<Vec<u8>, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let AsyncConsumer { inner, bell } = &mut *self;
        let r = ready!(poll_until(
            inner,
            bell,
            Side::Data,
            cx,
            TryRecvError::would_block,
            Consumer::try_take
        ));
        Poll::Ready(match r {
            Ok(taken) => Some(Ok(inner.guard(taken).to_vec())),
            Err(TryRecvError::Disconnected) => None,
            Err(e) => Some(Err(RecvError::from_try(e))),
        })
    }
}

impl AsFd for AsyncConsumer {
    /// The doorbell's descriptor (`doorbell`): readable while a wait is armed and rung.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell.0.get_ref().as_fd()
    }
}

impl AsRawFd for AsyncConsumer {
    fn as_raw_fd(&self) -> RawFd {
        self.bell.0.get_ref().as_raw_fd()
    }
}

/// A producer whose waits are futures: [`send`](Self::send), [`claim`](Self::claim), a `Sink`
/// of messages, and the doorbell's descriptor ([`AsFd`]).
///
/// Needs a tokio runtime with IO enabled.
#[derive(Debug)]
pub struct AsyncProducer {
    inner: Producer,
    bell: Bell,
    /// The message `Sink::start_send` accepted and `poll_flush` has not sent yet.
    pending: Option<Vec<u8>>,
}

impl AsyncProducer {
    /// Wraps a producer.
    ///
    /// # Errors
    /// No tokio reactor in this context, or no descriptor left for the doorbell.
    pub fn new(inner: Producer) -> io::Result<AsyncProducer> {
        Ok(AsyncProducer {
            inner,
            bell: Bell::new()?,
            pending: None,
        })
    }

    /// The producer.
    pub fn get_ref(&self) -> &Producer {
        &self.inner
    }

    /// The producer, for its non-blocking calls.
    pub fn get_mut(&mut self) -> &mut Producer {
        &mut self.inner
    }

    /// The producer back (a message the `Sink` accepted and did not send yet is dropped:
    /// flush first).
    pub fn into_inner(mut self) -> Producer {
        self.bell.disarm();
        self.inner
    }

    /// Copies `msg` into the ring, waiting while it is full. Cancellation safe: the message
    /// is published whole in the poll that returns, or not at all.
    ///
    /// # Errors
    /// As the sync [`Producer::send`]: `Disconnected` (full, and every consumer gone),
    /// `TooLarge`, `Corrupt`; each hands `msg` back.
    pub async fn send<'m>(&mut self, msg: &'m [u8]) -> Result<(), SendError<&'m [u8]>> {
        let AsyncProducer { inner, bell, .. } = self;
        let bell = Disarm(bell);
        poll_fn(|cx| {
            poll_until(
                inner,
                bell.0,
                Side::Space,
                cx,
                TrySendError::would_block,
                |p| p.try_send(msg),
            )
        })
        .await
        .map_err(SendError::from_try)
    }

    /// As [`send`](Self::send), giving up after `timeout` with [`SendError::Timeout`].
    ///
    /// # Errors
    /// As [`send`](Self::send), plus `Timeout`.
    pub async fn send_timeout<'m>(
        &mut self,
        msg: &'m [u8],
        timeout: Duration,
    ) -> Result<(), SendError<&'m [u8]>> {
        tokio::time::timeout(timeout, self.send(msg))
            .await
            .unwrap_or(Err(SendError::Timeout(msg)))
    }

    /// Claims room to write a message in place, waiting while the ring is full (a record
    /// ring: room for its largest message; commit the bytes written). Cancellation safe: the
    /// claim is made only in the poll that returns the guard.
    ///
    /// # Errors
    /// As the sync [`Producer::claim`].
    pub async fn claim(&mut self) -> Result<WriteSlot<'_>, ClaimError> {
        let reserved = {
            let AsyncProducer { inner, bell, .. } = &mut *self;
            let bell = Disarm(bell);
            poll_fn(|cx| {
                poll_until(
                    inner,
                    bell.0,
                    Side::Space,
                    cx,
                    TryClaimError::would_block,
                    Producer::try_reserve,
                )
            })
            .await
            .map_err(ClaimError::from_try)?
        };
        self.inner.slot(reserved).map_err(ClaimError::from_try)
    }
}

/// A send error without its message (the `Sink` owns a copy).
fn unsent<T>(e: TrySendError<T>) -> SendError<()> {
    match SendError::from_try(e) {
        SendError::Timeout(_) => SendError::Timeout(()),
        SendError::Disconnected(_) => SendError::Disconnected(()),
        SendError::TooLarge { len, max, .. } => SendError::TooLarge { msg: (), len, max },
        SendError::Corrupt(_, c) => SendError::Corrupt((), c),
    }
}

impl<M: AsRef<[u8]>> futures_sink::Sink<M> for AsyncProducer {
    type Error = SendError<()>;

    /// Ready once the message accepted before is sent.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Self as futures_sink::Sink<M>>::poll_flush(self, cx)
    }

    /// Accepts a message (copied), sent by the next flush.
    fn start_send(mut self: Pin<&mut Self>, item: M) -> Result<(), Self::Error> {
        self.pending = Some(item.as_ref().to_vec());
        Ok(())
    }

    /// Sends the accepted message, waiting while the ring is full.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let AsyncProducer {
            inner,
            bell,
            pending,
        } = &mut *self;
        let Some(msg) = pending.as_deref() else {
            return Poll::Ready(Ok(()));
        };
        let r = ready!(poll_until(
            inner,
            bell,
            Side::Space,
            cx,
            TrySendError::would_block,
            |p| p.try_send(msg)
        ));
        let r = r.map_err(unsent);
        *pending = None;
        Poll::Ready(r)
    }

    /// Flushes; the producer stays attached until dropped.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Self as futures_sink::Sink<M>>::poll_flush(self, cx)
    }
}

impl AsFd for AsyncProducer {
    /// The doorbell's descriptor (`doorbell`): readable while a wait is armed and rung.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell.0.get_ref().as_fd()
    }
}

impl AsRawFd for AsyncProducer {
    fn as_raw_fd(&self) -> RawFd {
        self.bell.0.get_ref().as_raw_fd()
    }
}
