//! The async rows, on tokio current-thread runtimes in both processes: shmring's async
//! endpoints (the doorbell's helper thread rings an `eventfd` when a ring's wait word moves),
//! a prototype of the other design (the *sender* rings the waiter's `eventfd` directly: an
//! `eventfd` inherited across `fork` and an "armed" word in shared memory), and tokio's
//! `UnixStream`; plus the CPU an awaiting consumer burns.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use shmring::aio::{AsyncConsumer, AsyncProducer};
use shmring::{Kind, Ring, WaitOptions};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};

use crate::check::{Window, stamp, verify};
use crate::config::Config;
use crate::proc::{self, Buf, ControlMap};
use crate::shm;
use crate::transport::{CHILD_LIMIT, Transport, child_cpu};

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// A 64-slot SPSC ring for `size`-byte messages.
fn ring(tag: &str, size: usize, cfg: &Config) -> Result<Ring, String> {
    shm::sized_ring(tag, Kind::Spsc, 64, size, WaitOptions::default(), cfg)
}

const REPLY: Duration = Duration::from_secs(20);

/// Round trips of `t` (`shmring-async`, `shmring-async-direct`, `tokio-unix-stream`), in ns.
pub(crate) fn latency(
    t: Transport,
    size: usize,
    iters: usize,
    warmup: usize,
    cfg: &Config,
) -> Result<Vec<u64>, String> {
    match t {
        Transport::ShmringAsync => shmring_latency(size, iters, warmup, cfg),
        Transport::ShmringAsyncDirect => direct_latency(size, iters, warmup, cfg),
        Transport::TokioUnixStream => unix_latency(size, iters, warmup),
        _ => Err(format!("{} is not an async row", t.name())),
    }
}

/// Messages per second received by an async consumer from an async producer process.
pub(crate) fn throughput(
    t: Transport,
    size: usize,
    window: Duration,
    cfg: &Config,
) -> Result<f64, String> {
    match t {
        Transport::ShmringAsync => shmring_throughput(size, window, cfg),
        Transport::TokioUnixStream => unix_throughput(size, window),
        _ => Err(format!("{}: latency only", t.name())),
    }
}

fn shmring_latency(
    size: usize,
    iters: usize,
    warmup: usize,
    cfg: &Config,
) -> Result<Vec<u64>, String> {
    let ping = ring("aping", size, cfg)?;
    let pong = ring("apong", size, cfg)?;
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), || {
        runtime()?.block_on(async {
            let e = |e: std::io::Error| e.to_string();
            let mut rx =
                AsyncConsumer::new(ping.consumer().map_err(|e| e.to_string())?).map_err(e)?;
            let mut tx =
                AsyncProducer::new(pong.producer().map_err(|e| e.to_string())?).map_err(e)?;
            let mut buf = Buf::new(size);
            for _ in 0..total {
                let n = rx
                    .recv_timeout(&mut buf, REPLY)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.send_timeout(&buf[..n], REPLY)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    });
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let e = |e: std::io::Error| e.to_string();
            let mut rx =
                AsyncConsumer::new(pong.consumer().map_err(|e| e.to_string())?).map_err(e)?;
            let mut tx =
                AsyncProducer::new(ping.producer().map_err(|e| e.to_string())?).map_err(e)?;
            let mut buf = Buf::new(size);
            let mut out = Vec::with_capacity(iters);
            for i in 0..total {
                stamp(&mut buf, i);
                let t0 = Instant::now();
                tx.send_timeout(&buf, REPLY)
                    .await
                    .map_err(|e| e.to_string())?;
                let n = rx
                    .recv_timeout(&mut buf, REPLY)
                    .await
                    .map_err(|e| e.to_string())?;
                let rtt = t0.elapsed().as_nanos() as u64;
                verify(&buf[..n], i)?;
                if i as usize >= warmup {
                    out.push(rtt);
                }
            }
            Ok(out)
        })
    });
    let reaped = proc::reap(child, CHILD_LIMIT);
    drop((ping, pong));
    let out = result?;
    reaped?;
    Ok(out)
}

fn shmring_throughput(size: usize, window: Duration, cfg: &Config) -> Result<f64, String> {
    let ring = shm::sized_ring(
        "atput",
        Kind::Spsc,
        shm::capacity_for(Kind::Spsc, size),
        size,
        WaitOptions::default(),
        cfg,
    )?;
    let ctl = ControlMap::new();
    let child = proc::spawn(child_cpu(), || {
        runtime()?.block_on(async {
            let running = || ctl.get().stop.load(Ordering::Relaxed) == 0;
            let mut tx = AsyncProducer::new(ring.producer().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let mut buf = Buf::new(size);
            let mut seq = 0u64;
            while running() {
                stamp(&mut buf, seq);
                match tx.send_timeout(&buf, Duration::from_millis(50)).await {
                    Ok(()) => seq += 1,
                    Err(shmring::SendError::Timeout(_)) => {}
                    Err(e) if e.is_disconnected() => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        })
    });
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut rx = AsyncConsumer::new(ring.consumer().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let mut meter = Window::new(window, 64);
            let mut buf = Buf::new(size);
            let mut seq = 0u64;
            loop {
                let n = rx
                    .recv_timeout(&mut buf, REPLY)
                    .await
                    .map_err(|e| e.to_string())?;
                verify(&buf[..n], seq)?;
                seq += 1;
                if let Some(rate) = meter.tick(seq) {
                    return Ok(rate);
                }
            }
        })
    });
    ctl.get().stop.store(1, Ordering::Relaxed);
    let reaped = proc::reap(child, CHILD_LIMIT);
    drop(ring);
    let rate = result?;
    reaped?;
    Ok(rate)
}

/// The other design, as a prototype: each side's wait is an `eventfd` (made before the fork,
/// so both processes hold it) and an "armed" word in shared memory; a waiter arms, fences,
/// polls once more, then awaits its `eventfd`; a sender, after each send, fences and rings the
/// peer's `eventfd` if it is armed. No helper thread: the sender's write is what wakes the
/// waiter's reactor. (A full fence per send on the sender, where the library uses an
/// asymmetric barrier: this prototype measures the wake-up path, not the send path.)
struct Direct {
    armed: *const AtomicU32,
    fd: OwnedFd,
}

// SAFETY: the pointer is into a shared mapping that lives for the whole measurement.
unsafe impl Send for Direct {}

impl AsRawFd for Direct {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

fn eventfd() -> Result<OwnedFd, String> {
    // SAFETY: plain system call; the result is checked before it is owned.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A descriptor of our own for `fd` (which this process holds).
fn dup(fd: std::os::fd::RawFd) -> Result<OwnedFd, String> {
    // SAFETY: `dup` has no memory preconditions; the result is checked.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn ring_fd(fd: std::os::fd::RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64.
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

fn drain_fd(fd: std::os::fd::RawFd) {
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into a live u64.
    unsafe { libc::read(fd, (&raw mut n).cast(), 8) };
}

/// One side of the direct prototype: receive on `rx` waiting on `mine`, send on `tx` ringing
/// `theirs`.
async fn direct_side(
    rx: &mut shmring::Consumer,
    tx: &mut shmring::Producer,
    mine: &AsyncFd<Direct>,
    theirs: (&AtomicU32, std::os::fd::RawFd),
    buf: &mut [u8],
    send: Option<&[u8]>,
) -> Result<usize, String> {
    if let Some(msg) = send {
        tx.try_send(msg).map_err(|e| e.to_string())?;
        // SeqCst: the store of the message before the load of the flag (Dekker).
        fence(Ordering::SeqCst);
        if theirs.0.load(Ordering::Relaxed) != 0 {
            ring_fd(theirs.1);
        }
    }
    // SAFETY: the armed word lives in the measurement's shared mapping.
    let armed = unsafe { &*mine.get_ref().armed };
    loop {
        match rx.try_recv(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.would_block() => {}
            Err(e) => return Err(e.to_string()),
        }
        armed.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if let Ok(n) = rx.try_recv(buf) {
            armed.store(0, Ordering::Relaxed);
            return Ok(n);
        }
        let mut guard = tokio::time::timeout(REPLY, mine.readable())
            .await
            .map_err(|_| "direct: no reply within 20 s".to_owned())?
            .map_err(|e| e.to_string())?;
        drain_fd(mine.get_ref().as_raw_fd());
        guard.clear_ready();
        armed.store(0, Ordering::Relaxed);
    }
}

/// A side's own "armed" word and a copy of its eventfd, registered with the runtime (the
/// direct prototype).
fn direct_end(armed: *const AtomicU32, fd: std::os::fd::RawFd) -> Result<AsyncFd<Direct>, String> {
    let mine = Direct {
        armed,
        fd: dup(fd)?,
    };
    // SAFETY: the descriptor stays open and the same while the `AsyncFd` lives.
    unsafe { AsyncFd::register_with_interest(mine, Interest::READABLE) }.map_err(|e| e.to_string())
}

fn direct_latency(
    size: usize,
    iters: usize,
    warmup: usize,
    cfg: &Config,
) -> Result<Vec<u64>, String> {
    let ping = ring("dping", size, cfg)?;
    let pong = ring("dpong", size, cfg)?;
    // [0]: the parent is armed, [1]: the child is.
    let flags = ControlMap::new();
    let (parent_fd, child_fd) = (eventfd()?, eventfd()?);
    let words = |i: usize| -> *const AtomicU32 {
        if i == 0 {
            &flags.get().stop
        } else {
            &flags.get().spare
        }
    };
    let total = (iters + warmup) as u64;
    let (pfd, cfd) = (parent_fd.as_raw_fd(), child_fd.as_raw_fd());
    let child = proc::spawn(child_cpu(), || {
        runtime()?.block_on(async {
            let mut rx = ping.consumer().map_err(|e| e.to_string())?;
            let mut tx = pong.producer().map_err(|e| e.to_string())?;
            let mine = direct_end(words(1), cfd)?;
            // SAFETY: in the shared control mapping, which outlives the measurement.
            let theirs = (unsafe { &*words(0) }, pfd);
            let mut buf = Buf::new(size);
            let mut n = direct_side(&mut rx, &mut tx, &mine, theirs, &mut buf, None).await?;
            for _ in 1..total {
                let msg = buf[..n].to_vec();
                n = direct_side(&mut rx, &mut tx, &mine, theirs, &mut buf, Some(&msg)).await?;
            }
            tx.try_send(&buf[..n]).map_err(|e| e.to_string())?;
            fence(Ordering::SeqCst);
            ring_fd(pfd);
            Ok(())
        })
    });
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut rx = pong.consumer().map_err(|e| e.to_string())?;
            let mut tx = ping.producer().map_err(|e| e.to_string())?;
            let mine = direct_end(words(0), pfd)?;
            // SAFETY: as in the child.
            let theirs = (unsafe { &*words(1) }, cfd);
            let mut buf = Buf::new(size);
            let mut out = Vec::with_capacity(iters);
            for i in 0..total {
                stamp(&mut buf, i);
                let msg = buf.to_vec();
                let t0 = Instant::now();
                let n = direct_side(&mut rx, &mut tx, &mine, theirs, &mut buf, Some(&msg)).await?;
                let rtt = t0.elapsed().as_nanos() as u64;
                verify(&buf[..n], i)?;
                if i as usize >= warmup {
                    out.push(rtt);
                }
            }
            Ok(out)
        })
    });
    let reaped = proc::reap(child, CHILD_LIMIT);
    drop((ping, pong, parent_fd, child_fd));
    let out = result?;
    reaped?;
    Ok(out)
}

fn unix_pair() -> Result<
    (
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ),
    String,
> {
    let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    a.set_nonblocking(true).map_err(|e| e.to_string())?;
    b.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok((a, b))
}

fn unix_latency(size: usize, iters: usize, warmup: usize) -> Result<Vec<u64>, String> {
    let (a, b) = unix_pair()?;
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), move || {
        runtime()?.block_on(async move {
            let mut s = tokio::net::UnixStream::from_std(b).map_err(|e| e.to_string())?;
            let mut buf = Buf::new(size);
            for _ in 0..total {
                s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                s.write_all(&buf).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    });
    let result = runtime().and_then(|rt| {
        rt.block_on(async move {
            let mut s = tokio::net::UnixStream::from_std(a).map_err(|e| e.to_string())?;
            let mut buf = Buf::new(size);
            let mut out = Vec::with_capacity(iters);
            for i in 0..total {
                stamp(&mut buf, i);
                let t0 = Instant::now();
                s.write_all(&buf).await.map_err(|e| e.to_string())?;
                s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                let rtt = t0.elapsed().as_nanos() as u64;
                verify(&buf, i)?;
                if i as usize >= warmup {
                    out.push(rtt);
                }
            }
            Ok(out)
        })
    });
    let reaped = proc::reap(child, CHILD_LIMIT);
    let out = result?;
    reaped?;
    Ok(out)
}

fn unix_throughput(size: usize, window: Duration) -> Result<f64, String> {
    let (a, b) = unix_pair()?;
    let ctl = ControlMap::new();
    let stop = &ctl.get().stop;
    let parent_end = a.as_raw_fd();
    let child = proc::spawn(child_cpu(), move || {
        // The child inherited the parent's end too: close it, so that the parent closing its
        // own ends the child's writes.
        // SAFETY: a descriptor this (child) process holds and never uses otherwise.
        unsafe { libc::close(parent_end) };
        runtime()?.block_on(async move {
            let mut s = tokio::net::UnixStream::from_std(b).map_err(|e| e.to_string())?;
            let mut buf = Buf::new(size);
            let mut seq = 0u64;
            while stop.load(Ordering::Relaxed) == 0 {
                stamp(&mut buf, seq);
                if s.write_all(&buf).await.is_err() {
                    break;
                }
                seq += 1;
            }
            Ok(())
        })
    });
    let result = runtime().and_then(|rt| {
        rt.block_on(async move {
            let mut s = tokio::net::UnixStream::from_std(a).map_err(|e| e.to_string())?;
            let mut meter = Window::new(window, 16);
            let mut buf = Buf::new(size);
            for seq in 0.. {
                s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                verify(&buf, seq)?;
                if let Some(rate) = meter.tick(seq + 1) {
                    return Ok(rate);
                }
            }
            unreachable!("the window closes long before 2^64 messages")
        })
    });
    ctl.get().stop.store(1, Ordering::Relaxed);
    // The parent's end closed (dropped with the runtime's task): the child's writes fail.
    let reaped = proc::reap(child, CHILD_LIMIT);
    let rate = result?;
    reaped?;
    Ok(rate)
}

/// The CPU an async consumer awaiting `recv` on an empty ring uses over `idle`, percent.
pub(crate) fn idle_cpu(idle: Duration, cfg: &Config) -> Result<f64, String> {
    let ring = ring("aidle", 8, cfg)?;
    let _tx = ring.producer().map_err(|e| e.to_string())?;
    let child = proc::spawn(child_cpu(), || {
        runtime()?.block_on(async {
            let mut rx = AsyncConsumer::new(ring.consumer().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 8];
            match rx.recv_timeout(&mut buf, idle).await {
                Err(shmring::RecvError::Timeout) => Ok(()),
                other => Err(format!("idle: expected a timeout, got {other:?}")),
            }
        })
    });
    proc::reap(child, CHILD_LIMIT + idle)?;
    let cpu = proc::LAST_CHILD_CPU_NS.load(Ordering::Relaxed);
    Ok(100.0 * cpu as f64 / idle.as_nanos() as f64)
}
