//! The transports, each measured across two processes, every message checked by its receiver.
//!
//! Check: the producer stamps the first 8 bytes of every 64-byte line of every message with
//! `seq ^ line * K`; the receiver verifies every stamp and that sequence numbers arrive in order.
//! So every cache line of every message really crossed, and nothing can be faster by skipping
//! data. (A full checksum of every byte would make 1 MiB messages measure the checksum.)

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::{Ring, TryRecvError};

use crate::proc::{self, Buf, ControlMap};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Knobs for layout experiments (see `docs/benchmarks.md`); the defaults measure the product.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tuning {
    /// Slot size of the shmring rings, if not the message size.
    pub(crate) slot_size: Option<usize>,
    /// Byte offset of the `memcpy` row's destination from a page boundary.
    pub(crate) memcpy_offset: usize,
}

pub(crate) static TUNING: std::sync::OnceLock<Tuning> = std::sync::OnceLock::new();

fn tuning() -> Tuning {
    TUNING.get().copied().unwrap_or_default()
}
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// A transport of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// shmring SPSC ring, copy API (`try_send` / `try_recv`).
    ShmringSpsc,
    /// shmring SPSC ring, zero-copy API (`try_claim` → commit / `try_read`).
    ShmringSpscZc,
    /// shmring MPMC ring with one producer and one consumer, copy API.
    ShmringMpmc,
    /// An anonymous pipe.
    Pipe,
    /// A Unix-domain stream socket pair.
    UnixStream,
    /// TCP over loopback with TCP_NODELAY.
    Tcp,
    /// Reference: one atomic word bounced between the processes (latency only).
    RawSpin,
    /// Reference: one-thread memcpy bandwidth (throughput only).
    Memcpy,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::ShmringSpsc => "shmring-spsc",
            Transport::ShmringSpscZc => "shmring-spsc-zc",
            Transport::ShmringMpmc => "shmring-mpmc",
            Transport::Pipe => "pipe",
            Transport::UnixStream => "unix-stream",
            Transport::Tcp => "tcp",
            Transport::RawSpin => "raw-spin",
            Transport::Memcpy => "memcpy",
        }
    }

    pub(crate) fn api(self) -> &'static str {
        match self {
            Transport::ShmringSpsc | Transport::ShmringMpmc => "copy",
            Transport::ShmringSpscZc => "zero-copy",
            _ => "-",
        }
    }

    pub(crate) fn throughput(self) -> bool {
        self != Transport::RawSpin
    }

    pub(crate) fn latency(self) -> bool {
        !matches!(self, Transport::Memcpy | Transport::ShmringSpscZc)
    }
}

/// Stamps message `seq` into `msg`.
#[inline]
fn stamp(msg: &mut [u8], seq: u64) {
    for (line, chunk) in msg.chunks_mut(64).enumerate() {
        if chunk.len() >= 8 {
            chunk[..8].copy_from_slice(&(seq ^ (line as u64).wrapping_mul(K)).to_le_bytes());
        }
    }
}

/// Checks message `seq`'s stamps.
#[inline]
fn verify(msg: &[u8], seq: u64) -> Result<(), String> {
    for (line, chunk) in msg.chunks(64).enumerate() {
        if chunk.len() >= 8 {
            let got = u64::from_le_bytes(chunk[..8].try_into().unwrap_or_default());
            if got != seq ^ (line as u64).wrapping_mul(K) {
                return Err(format!(
                    "message {seq}: line {line} holds a stamp of another message"
                ));
            }
        }
    }
    Ok(())
}

/// Slots for a ring carrying `size`-byte messages: about 4 MiB of payload, 8 to 4096 slots.
fn capacity_for(size: usize) -> u64 {
    ((4 << 20) / size.max(1))
        .clamp(8, 4096)
        .next_power_of_two()
        .min(4096) as u64
}

fn ring(name: &str, kind: shmring::Kind, size: usize) -> Result<Ring, String> {
    let _ = shmring::remove(&shmring::Backing::Posix(name.into()));
    let slot = tuning().slot_size.unwrap_or(size).max(size);
    Ring::builder()
        .kind(kind)
        .capacity(capacity_for(slot))
        .slot_size(slot)
        .posix(name)
        .populate(true)
        .create()
        .map_err(|e| format!("creating {name}: {e}"))
}

fn segment_name(tag: &str) -> String {
    format!("/ring-bench-{}-{tag}", std::process::id())
}

/// Two connected stream fds: (parent end, child end) or a pipe's (read, write).
fn stream_pair(t: Transport) -> Result<(std::fs::File, std::fs::File), String> {
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    let mut fds = [0i32; 2];
    match t {
        Transport::Pipe => {
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(err("pipe2"));
            }
        }
        Transport::UnixStream => {
            // SAFETY: as above, for socketpair.
            if unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    fds.as_mut_ptr(),
                )
            } != 0
            {
                return Err(err("socketpair"));
            }
        }
        Transport::Tcp => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let a = std::net::TcpStream::connect(listener.local_addr().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let (b, _) = listener.accept().map_err(|e| e.to_string())?;
            a.set_nodelay(true).map_err(|e| e.to_string())?;
            b.set_nodelay(true).map_err(|e| e.to_string())?;
            return Ok((OwnedFd::from(a).into(), OwnedFd::from(b).into()));
        }
        _ => return Err(format!("{} is not a stream", t.name())),
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

/// One throughput measurement: messages per second, received by the parent from a child
/// producer during `window` (after the first message).
pub(crate) fn throughput(t: Transport, size: usize, window: Duration) -> Result<f64, String> {
    match t {
        Transport::Memcpy => Ok(memcpy(size, window)),
        Transport::ShmringSpsc | Transport::ShmringSpscZc | Transport::ShmringMpmc => {
            shm_throughput(t, size, window)
        }
        Transport::Pipe | Transport::UnixStream | Transport::Tcp => {
            stream_throughput(t, size, window)
        }
        Transport::RawSpin => Err("raw-spin has no throughput mode".into()),
    }
}

fn memcpy(size: usize, window: Duration) -> f64 {
    let src = {
        let mut b = Buf::new(size);
        stamp(&mut b, 1);
        b
    };
    let offset = tuning().memcpy_offset;
    let mut dst_buf = Buf::new(size + offset);
    let dst = &mut dst_buf[offset..];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        for _ in 0..16 {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut *dst);
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn shm_throughput(t: Transport, size: usize, window: Duration) -> Result<f64, String> {
    let name = segment_name("tput");
    let kind = if t == Transport::ShmringMpmc {
        shmring::Kind::Mpmc
    } else {
        shmring::Kind::Spsc
    };
    let ring = ring(&name, kind, size)?;
    let ctl = ControlMap::new();
    let child = proc::spawn(child_cpu(), || {
        let stop = &ctl.get().stop;
        let mut buf = Buf::new(size);
        let mut seq = 0u64;
        let running = || stop.load(Ordering::Relaxed) == 0;
        if t == Transport::ShmringSpscZc {
            let mut tx = ring.spsc_producer().map_err(|e| e.to_string())?;
            while running() {
                if let Ok(mut slot) = tx.try_claim() {
                    stamp(&mut slot[..size], seq);
                    slot.commit(size).map_err(|e| e.to_string())?;
                    seq += 1;
                }
            }
            return Ok(());
        }
        let mut tx = if t == Transport::ShmringMpmc {
            ShmTx::Mpmc(ring.mpmc_producer().map_err(|e| e.to_string())?)
        } else {
            ShmTx::Spsc(ring.spsc_producer().map_err(|e| e.to_string())?)
        };
        while running() {
            stamp(&mut buf, seq);
            while !tx.try_send(&buf) {
                if !running() {
                    return Ok(());
                }
            }
            seq += 1;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut buf = Buf::new(size);
        let mut seq = 0u64;
        let mut start = None;
        let deadline = Instant::now() + window + Duration::from_secs(10);
        let mut rx = ShmRx::attach(t, &ring)?;
        loop {
            let got = rx.poll(&mut buf, seq)?;
            if got {
                seq += 1;
                match start {
                    None => start = Some((Instant::now(), seq)),
                    Some((t0, s0)) if seq % 64 == 0 => {
                        let el = t0.elapsed();
                        if el >= window {
                            return Ok((seq - s0) as f64 / el.as_secs_f64());
                        }
                    }
                    _ => {}
                }
            } else if Instant::now() > deadline {
                return Err(format!("{}: no progress", t.name()));
            }
        }
    })();
    ctl.get().stop.store(1, Ordering::Relaxed);
    let reaped = proc::reap(child, CHILD_LIMIT);
    let _ = shmring::remove(&shmring::Backing::Posix(name));
    let rate = result?;
    reaped?;
    Ok(rate)
}

fn stream_throughput(t: Transport, size: usize, window: Duration) -> Result<f64, String> {
    let (mut rx, tx) = stream_pair(t)?;
    let ctl = ControlMap::new();
    let stop = &ctl.get().stop;
    // The closure owns `tx`: the parent's copy closes when `spawn` returns, so the parent sees
    // end-of-file once the child stops writing.
    let child = proc::spawn(child_cpu(), move || {
        let mut tx = tx;
        let mut buf = Buf::new(size);
        let mut seq = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            stamp(&mut buf, seq);
            if tx.write_all(&buf).is_err() {
                break;
            }
            seq += 1;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut buf = Buf::new(size);
        let mut seq = 0u64;
        rx.read_exact(&mut buf).map_err(|e| e.to_string())?;
        verify(&buf, seq)?;
        seq += 1;
        let t0 = Instant::now();
        let s0 = seq;
        loop {
            rx.read_exact(&mut buf).map_err(|e| e.to_string())?;
            verify(&buf, seq)?;
            seq += 1;
            if seq % 16 == 0 {
                let el = t0.elapsed();
                if el >= window {
                    return Ok((seq - s0) as f64 / el.as_secs_f64());
                }
            }
        }
    })();
    ctl.get().stop.store(1, Ordering::Relaxed);
    // Unblock a writer stuck on a full pipe: drain until it closes its end.
    let mut sink = Buf::new(size.max(65536));
    while matches!(rx.read(&mut sink), Ok(n) if n > 0) {}
    let reaped = proc::reap(child, CHILD_LIMIT);
    let rate = result?;
    reaped?;
    Ok(rate)
}

/// The child's CPU when the machine has two or more.
pub(crate) fn child_cpu() -> Option<usize> {
    (proc::cpus() >= 2).then_some(1)
}

/// Round-trip times of `iters` ping-pongs of `size`-byte messages, in nanoseconds, after a
/// warm-up. The parent sends, the child echoes.
pub(crate) fn latency(t: Transport, size: usize, iters: usize) -> Result<Vec<u64>, String> {
    let warmup = (iters / 10).max(100);
    match t {
        Transport::RawSpin => raw_spin(iters, warmup),
        Transport::ShmringSpsc | Transport::ShmringMpmc => shm_latency(t, size, iters, warmup),
        Transport::Pipe | Transport::UnixStream | Transport::Tcp => {
            stream_latency(t, size, iters, warmup)
        }
        _ => Err(format!("{} has no latency mode", t.name())),
    }
}

fn raw_spin(iters: usize, warmup: usize) -> Result<Vec<u64>, String> {
    let ctl = ControlMap::new();
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), || {
        let w = &ctl.get().spin;
        for i in 0..total {
            while w.load(Ordering::Acquire) != 2 * i + 1 {
                core::hint::spin_loop();
            }
            w.store(2 * i + 2, Ordering::Release);
        }
        Ok(())
    });
    let w = &ctl.get().spin;
    let mut out = Vec::with_capacity(iters);
    for i in 0..total {
        let t0 = Instant::now();
        w.store(2 * i + 1, Ordering::Release);
        let mut spins = 0u32;
        while w.load(Ordering::Acquire) != 2 * i + 2 {
            core::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 65536 == 0 && t0.elapsed() > Duration::from_secs(20) {
                let _ = proc::reap(child, Duration::ZERO);
                return Err("raw-spin: no reply within 20 s".into());
            }
        }
        if i as usize >= warmup {
            out.push(t0.elapsed().as_nanos() as u64);
        }
    }
    proc::reap(child, CHILD_LIMIT)?;
    Ok(out)
}

fn shm_latency(t: Transport, size: usize, iters: usize, warmup: usize) -> Result<Vec<u64>, String> {
    let kind = if t == Transport::ShmringMpmc {
        shmring::Kind::Mpmc
    } else {
        shmring::Kind::Spsc
    };
    let (na, nb) = (segment_name("ping"), segment_name("pong"));
    let (ping, pong) = (ring(&na, kind, size)?, ring(&nb, kind, size)?);
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), || {
        let mut buf = Buf::new(size);
        let mut ep = Endpoints::new(kind, &ping, &pong)?;
        for _ in 0..total {
            let n = ep.recv(&mut buf)?;
            ep.send(&buf[..n])?;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut ep = Endpoints::new(kind, &pong, &ping)?;
        let mut buf = Buf::new(size);
        let mut out = Vec::with_capacity(iters);
        for i in 0..total {
            stamp(&mut buf, i);
            let t0 = Instant::now();
            ep.send(&buf)?;
            let n = ep.recv(&mut buf)?;
            let rtt = t0.elapsed().as_nanos() as u64;
            verify(&buf[..n], i)?;
            if i as usize >= warmup {
                out.push(rtt);
            }
        }
        Ok(out)
    })();
    let reaped = proc::reap(child, CHILD_LIMIT);
    let _ = shmring::remove(&shmring::Backing::Posix(na));
    let _ = shmring::remove(&shmring::Backing::Posix(nb));
    let out = result?;
    reaped?;
    Ok(out)
}

/// The copying sender of a throughput run.
enum ShmTx {
    Spsc(shmring::spsc::Producer),
    Mpmc(shmring::mpmc::Producer),
}

impl ShmTx {
    /// Whether `msg` was sent (false: the ring was full).
    #[inline]
    fn try_send(&mut self, msg: &[u8]) -> bool {
        match self {
            ShmTx::Spsc(tx) => tx.try_send(msg).is_ok(),
            ShmTx::Mpmc(tx) => tx.try_send(msg).is_ok(),
        }
    }
}

/// The receiving side of a throughput run, one variant per API measured.
enum ShmRx {
    ZeroCopy(shmring::spsc::Consumer),
    Spsc(shmring::spsc::Consumer),
    Mpmc(shmring::mpmc::Consumer),
}

impl ShmRx {
    fn attach(t: Transport, ring: &Ring) -> Result<ShmRx, String> {
        let e = |e: shmring::AttachError| e.to_string();
        Ok(match t {
            Transport::ShmringSpscZc => ShmRx::ZeroCopy(ring.spsc_consumer().map_err(e)?),
            Transport::ShmringSpsc => ShmRx::Spsc(ring.spsc_consumer().map_err(e)?),
            _ => ShmRx::Mpmc(ring.mpmc_consumer().map_err(e)?),
        })
    }

    /// Receives and checks message `seq` if one is there.
    #[inline]
    fn poll(&mut self, buf: &mut [u8], seq: u64) -> Result<bool, String> {
        let r = match self {
            ShmRx::ZeroCopy(rx) => rx.try_read().map(|m| verify(&m, seq)),
            ShmRx::Spsc(rx) => rx.try_recv(buf).map(|n| verify(&buf[..n], seq)),
            ShmRx::Mpmc(rx) => rx.try_recv(buf).map(|n| verify(&buf[..n], seq)),
        };
        match r {
            Ok(checked) => checked.map(|()| true),
            Err(TryRecvError::Empty) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A process's side of a ping-pong: receive on one ring, send on the other, spinning.
enum Endpoints {
    Spsc(shmring::spsc::Consumer, shmring::spsc::Producer),
    Mpmc(shmring::mpmc::Consumer, shmring::mpmc::Producer),
}

impl Endpoints {
    /// Receives from `inbound`, sends on `outbound`.
    fn new(kind: shmring::Kind, inbound: &Ring, outbound: &Ring) -> Result<Endpoints, String> {
        let e = |e: shmring::AttachError| e.to_string();
        Ok(match kind {
            shmring::Kind::Spsc => Endpoints::Spsc(
                inbound.spsc_consumer().map_err(e)?,
                outbound.spsc_producer().map_err(e)?,
            ),
            shmring::Kind::Mpmc => Endpoints::Mpmc(
                inbound.mpmc_consumer().map_err(e)?,
                outbound.mpmc_producer().map_err(e)?,
            ),
        })
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let r = match self {
                Endpoints::Spsc(rx, _) => rx.try_recv(buf),
                Endpoints::Mpmc(rx, _) => rx.try_recv(buf),
            };
            match r {
                Ok(n) => return Ok(n),
                Err(TryRecvError::Empty) => {
                    core::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins % 65536 == 0 && start.elapsed() > Duration::from_secs(20) {
                        return Err("ping-pong: no reply within 20 s".into());
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        loop {
            let r = match self {
                Endpoints::Spsc(_, tx) => {
                    tx.try_send(msg).map_err(|e| (e.is_full(), e.to_string()))
                }
                Endpoints::Mpmc(_, tx) => {
                    tx.try_send(msg).map_err(|e| (e.is_full(), e.to_string()))
                }
            };
            match r {
                Ok(()) => return Ok(()),
                Err((true, _)) => core::hint::spin_loop(),
                Err((false, e)) => return Err(e),
            }
        }
    }
}

fn stream_latency(
    t: Transport,
    size: usize,
    iters: usize,
    warmup: usize,
) -> Result<Vec<u64>, String> {
    let total = (iters + warmup) as u64;
    // Two one-way channels: for a pipe they are two pipes; sockets are bidirectional, but two
    // pairs keep the code the same.
    let (mut a_rx, a_tx) = stream_pair(t)?;
    let (b_rx, mut b_tx) = stream_pair(t)?;
    let child = proc::spawn(child_cpu(), move || {
        let (mut rx, mut tx) = (b_rx, a_tx);
        let mut buf = Buf::new(size);
        for _ in 0..total {
            rx.read_exact(&mut buf).map_err(|e| e.to_string())?;
            tx.write_all(&buf).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut buf = Buf::new(size);
        let mut out = Vec::with_capacity(iters);
        for i in 0..total {
            stamp(&mut buf, i);
            let t0 = Instant::now();
            b_tx.write_all(&buf).map_err(|e| e.to_string())?;
            a_rx.read_exact(&mut buf).map_err(|e| e.to_string())?;
            let rtt = t0.elapsed().as_nanos() as u64;
            verify(&buf, i)?;
            if i as usize >= warmup {
                out.push(rtt);
            }
        }
        Ok(out)
    })();
    drop((a_rx, b_tx));
    let reaped = proc::reap(child, CHILD_LIMIT);
    let out = result?;
    reaped?;
    Ok(out)
}
