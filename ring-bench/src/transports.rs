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
    /// Where the shmring rings live.
    pub(crate) backend: Backend,
}

/// Shared memory for the shmring rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backend {
    /// A POSIX shared-memory object (`shm_open`).
    #[default]
    Posix,
    /// A System V segment (`shmget`).
    Sysv,
    /// An anonymous shared mapping inherited across `fork`.
    Anon,
}

pub(crate) static TUNING: std::sync::OnceLock<Tuning> = std::sync::OnceLock::new();

fn tuning() -> Tuning {
    TUNING.get().copied().unwrap_or_default()
}
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// Messages per `try_send_batch` in the batch row.
const BATCH: usize = 32;

/// A transport of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// shmring SPSC ring, copy API (`try_send` / `try_recv`).
    ShmringSpsc,
    /// shmring SPSC ring, zero-copy API (`try_claim` → commit / `try_read`).
    ShmringSpscZc,
    /// shmring SPSC ring, batches of 32 (`try_send_batch` / `try_recv_batch`).
    ShmringSpscBatch,
    /// shmring MPMC ring with one producer and one consumer, copy API.
    ShmringMpmc,
    /// shmring SPSC ring, blocking `send` / `recv` with the default wait (spin 50 µs, yield
    /// 50 µs, then sleep on a futex; latency only).
    ShmringSpscBlocking,
    /// shmring SPSC ring, blocking calls that sleep at once (no spin, no yield): the cost of a
    /// futex wake-up each way (latency only).
    ShmringSpscSleep,
    /// An anonymous pipe.
    Pipe,
    /// A Unix-domain stream socket pair.
    UnixStream,
    /// A Unix-domain seqpacket socket pair (message boundaries kept).
    UnixSeqpacket,
    /// TCP over loopback with TCP_NODELAY.
    Tcp,
    /// A POSIX message queue (`mq_send` / `mq_receive`).
    PosixMq,
    /// Reference, in-process: `rtrb` between two threads (8 B, 64 B, 1 KiB).
    Rtrb,
    /// Reference, in-process: crossbeam `ArrayQueue` between two threads (8 B, 64 B, 1 KiB).
    CrossbeamArrayqueue,
    /// iceoryx2 publish-subscribe between two processes (8 B, 64 B, 1 KiB; needs the
    /// `iceoryx2` feature).
    Iceoryx2,
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
            Transport::ShmringSpscBatch => "shmring-spsc-batch",
            Transport::ShmringMpmc => "shmring-mpmc",
            Transport::ShmringSpscBlocking => "shmring-spsc-blocking",
            Transport::ShmringSpscSleep => "shmring-spsc-sleep",
            Transport::Pipe => "pipe",
            Transport::UnixStream => "unix-stream",
            Transport::UnixSeqpacket => "unix-seqpacket",
            Transport::Tcp => "tcp",
            Transport::PosixMq => "posix-mq",
            Transport::Rtrb => "rtrb",
            Transport::CrossbeamArrayqueue => "crossbeam-arrayqueue",
            Transport::Iceoryx2 => "iceoryx2",
            Transport::RawSpin => "raw-spin",
            Transport::Memcpy => "memcpy",
        }
    }

    pub(crate) fn api(self) -> &'static str {
        match self {
            Transport::ShmringSpsc | Transport::ShmringMpmc => "copy",
            Transport::ShmringSpscZc => "zero-copy",
            Transport::ShmringSpscBatch => "batch",
            Transport::ShmringSpscBlocking => "blocking",
            Transport::ShmringSpscSleep => "blocking, no spin",
            _ => "-",
        }
    }

    pub(crate) fn throughput(self) -> bool {
        !matches!(
            self,
            Transport::RawSpin | Transport::ShmringSpscBlocking | Transport::ShmringSpscSleep
        )
    }

    pub(crate) fn latency(self) -> bool {
        !matches!(
            self,
            Transport::Memcpy
                | Transport::ShmringSpscZc
                | Transport::ShmringSpscBatch
                | Transport::Rtrb
                | Transport::CrossbeamArrayqueue
        )
    }
}

/// Why a figure is missing.
#[derive(Debug)]
pub(crate) enum BenchError {
    /// The transport cannot carry this size here; the reason is reported, the run goes on.
    Skip(String),
    /// Something broke: the run stops.
    Fail(String),
}

impl From<String> for BenchError {
    fn from(e: String) -> Self {
        BenchError::Fail(e)
    }
}

/// The measuring window of one throughput figure: it opens at the first message received and
/// closes at the first check after `len` has passed; the clock is read every `every` messages.
pub(crate) struct Window {
    len: Duration,
    every: u64,
    start: Option<(Instant, u64)>,
    next_check: u64,
}

impl Window {
    pub(crate) fn new(len: Duration, every: u64) -> Window {
        Window {
            len,
            every,
            start: None,
            next_check: 0,
        }
    }

    /// Notes that `received` messages have arrived so far; once the window has passed, the
    /// rate (messages per second) over it.
    #[inline]
    pub(crate) fn tick(&mut self, received: u64) -> Option<f64> {
        match self.start {
            None => {
                self.start = Some((Instant::now(), received));
                self.next_check = received + self.every;
                None
            }
            Some((t0, s0)) if received >= self.next_check => {
                self.next_check = received + self.every;
                let el = t0.elapsed();
                (el >= self.len).then(|| (received - s0) as f64 / el.as_secs_f64())
            }
            Some(_) => None,
        }
    }
}

/// Stamps message `seq` into `msg`.
#[inline]
pub(crate) fn stamp(msg: &mut [u8], seq: u64) {
    for (line, chunk) in msg.chunks_mut(64).enumerate() {
        if chunk.len() >= 8 {
            chunk[..8].copy_from_slice(&(seq ^ (line as u64).wrapping_mul(K)).to_le_bytes());
        }
    }
}

/// Checks message `seq`'s stamps.
#[inline]
pub(crate) fn verify(msg: &[u8], seq: u64) -> Result<(), String> {
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

#[cfg(feature = "iceoryx2")]
fn iceoryx2_throughput(size: usize, window: Duration) -> Result<f64, BenchError> {
    crate::ice::throughput(size, window)
}

#[cfg(not(feature = "iceoryx2"))]
fn iceoryx2_throughput(_: usize, _: Duration) -> Result<f64, BenchError> {
    Err(BenchError::Skip(
        "built without the iceoryx2 feature".into(),
    ))
}

#[cfg(feature = "iceoryx2")]
fn iceoryx2_latency(size: usize, iters: usize) -> Result<Vec<u64>, BenchError> {
    crate::ice::latency(size, iters)
}

#[cfg(not(feature = "iceoryx2"))]
fn iceoryx2_latency(_: usize, _: usize) -> Result<Vec<u64>, BenchError> {
    Err(BenchError::Skip(
        "built without the iceoryx2 feature".into(),
    ))
}

/// The segment a shmring row uses for `size`-byte messages, in bytes.
pub(crate) fn segment_bytes(t: Transport, size: usize) -> Option<usize> {
    let kind = match t {
        Transport::ShmringMpmc => shmring::Kind::Mpmc,
        Transport::ShmringSpsc | Transport::ShmringSpscZc | Transport::ShmringSpscBatch => {
            shmring::Kind::Spsc
        }
        _ => return None,
    };
    let slot = tuning().slot_size.unwrap_or(size).max(size);
    Ring::builder()
        .kind(kind)
        .capacity(capacity_for(slot))
        .slot_size(slot)
        .segment_size()
        .ok()
}

/// Slots for a ring carrying `size`-byte messages: about 4 MiB of payload, 8 to 4096 slots.
fn capacity_for(size: usize) -> u64 {
    ((4 << 20) / size.max(1))
        .clamp(8, 4096)
        .next_power_of_two()
        .min(4096) as u64
}

/// A fresh ring for `size`-byte messages in the chosen backend. Named segments are removed by
/// their creator (this process) when the last handle drops.
fn ring(name: &str, kind: shmring::Kind, size: usize) -> Result<Ring, String> {
    ring_with(name, kind, size, shmring::WaitOptions::default())
}

/// As [`ring`], with the blocking calls' wait options.
fn ring_with(
    name: &str,
    kind: shmring::Kind,
    size: usize,
    wait: shmring::WaitOptions,
) -> Result<Ring, String> {
    let backing = match tuning().backend {
        Backend::Posix => shmring::Backing::Posix(name.into()),
        Backend::Sysv => {
            // A key from the pid and the name's hash: unique per run and ring.
            let h = name
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let key = 0x5200_0000 | ((std::process::id() & 0xFFFF) << 8) as i32 | (h & 0xFF) as i32;
            shmring::Backing::SysV(shmring::SysvKey::Key(key))
        }
        Backend::Anon => shmring::Backing::Anonymous,
    };
    let _ = shmring::remove(&backing);
    let slot = tuning().slot_size.unwrap_or(size).max(size);
    Ring::builder()
        .kind(kind)
        .capacity(capacity_for(slot))
        .slot_size(slot)
        .backing(backing)
        .populate(true)
        .wait(wait)
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
pub(crate) fn throughput(t: Transport, size: usize, window: Duration) -> Result<f64, BenchError> {
    match t {
        Transport::Memcpy => Ok(memcpy(size, window)),
        Transport::ShmringSpsc
        | Transport::ShmringSpscZc
        | Transport::ShmringSpscBatch
        | Transport::ShmringMpmc => Ok(shm_throughput(t, size, window)?),
        Transport::Rtrb | Transport::CrossbeamArrayqueue => {
            let q = if t == Transport::Rtrb {
                crate::inproc::Queue::Rtrb
            } else {
                crate::inproc::Queue::ArrayQueue
            };
            match crate::inproc::throughput(q, size, window) {
                Some(r) => Ok(r?),
                None => Err(BenchError::Skip(
                    "measured at 8 B, 64 B and 1 KiB only".into(),
                )),
            }
        }
        Transport::RawSpin => Err(BenchError::Skip("latency only".into())),
        Transport::Iceoryx2 => iceoryx2_throughput(size, window),
        _ => chan_throughput(t, size, window),
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
        if t == Transport::ShmringSpscBatch {
            let mut tx = ring.spsc_producer().map_err(|e| e.to_string())?;
            // One contiguous buffer: BATCH page-aligned buffers would alias each other in the
            // cache and the TLB.
            let mut batch = Buf::new(BATCH * size);
            while running() {
                for (i, m) in batch.chunks_mut(size).enumerate() {
                    stamp(m, seq + i as u64);
                }
                let msgs: Vec<&[u8]> = batch.chunks(size).collect();
                let mut sent = 0;
                while sent < msgs.len() {
                    sent += match tx.try_send_batch(&msgs[sent..]) {
                        Ok(n) => n,
                        // The consumer finished its window and left.
                        Err(e) if e.is_disconnected() => return Ok(()),
                        Err(e) => return Err(e.to_string()),
                    };
                    if !running() {
                        return Ok(());
                    }
                }
                seq += BATCH as u64;
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
        let mut meter = Window::new(window, 64);
        let deadline = Instant::now() + window + Duration::from_secs(10);
        let mut rx = ShmRx::attach(t, &ring)?;
        loop {
            if rx.poll(&mut buf, &mut seq)? {
                if let Some(rate) = meter.tick(seq) {
                    return Ok(rate);
                }
            } else if Instant::now() > deadline {
                return Err(format!("{}: no progress", t.name()));
            }
        }
    })();
    ctl.get().stop.store(1, Ordering::Relaxed);
    let reaped = proc::reap(child, CHILD_LIMIT);
    drop(ring); // removes the segment (this process created it)
    let rate = result?;
    reaped?;
    Ok(rate)
}

/// One end of a kernel channel carrying fixed-size messages.
enum Chan {
    /// A byte stream (pipe, Unix stream, TCP): `write_all` / `read_exact`.
    Stream(std::fs::File),
    /// A seqpacket socket: one `write`, one `read` per message.
    Packet(std::fs::File),
    /// A POSIX message queue.
    Mq(nix::mqueue::MqdT),
}

impl Chan {
    fn send(&mut self, m: &[u8]) -> Result<(), String> {
        match self {
            Chan::Stream(f) => f.write_all(m).map_err(|e| e.to_string()),
            Chan::Packet(f) => match f.write(m) {
                Ok(n) if n == m.len() => Ok(()),
                Ok(n) => Err(format!("short packet write: {n} of {} bytes", m.len())),
                Err(e) => Err(e.to_string()),
            },
            Chan::Mq(q) => nix::mqueue::mq_send(q, m, 0).map_err(|e| e.to_string()),
        }
    }

    fn recv(&mut self, b: &mut [u8]) -> Result<(), String> {
        let n = match self {
            Chan::Stream(f) => return f.read_exact(b).map_err(|e| e.to_string()),
            Chan::Packet(f) => f.read(b).map_err(|e| e.to_string())?,
            Chan::Mq(q) => nix::mqueue::mq_receive(q, b, &mut 0).map_err(|e| e.to_string())?,
        };
        if n == b.len() {
            Ok(())
        } else {
            Err(format!("received {n} bytes, expected {}", b.len()))
        }
    }

    /// After the child was told to stop: take what it still sends, so a child blocked on a full
    /// channel can see the flag and exit.
    fn drain(&mut self, size: usize) {
        let mut sink = Buf::new(size.max(65536));
        match self {
            // End of file once the child has closed its end.
            Chan::Stream(f) | Chan::Packet(f) => {
                while matches!(f.read(&mut sink), Ok(n) if n > 0) {}
            }
            // No end of file for a queue: drain until it stays empty for 20 ms.
            Chan::Mq(q) => {
                let _ = nix::mqueue::mq_set_nonblock(q);
                let mut idle = Instant::now();
                while idle.elapsed() < Duration::from_millis(20) {
                    if nix::mqueue::mq_receive(q, &mut sink[..size], &mut 0).is_ok() {
                        idle = Instant::now();
                    }
                }
            }
        }
    }
}

/// The largest POSIX message queue message and queue depth this machine allows.
fn mq_limits() -> (usize, i64) {
    let read = |f: &str, d: i64| {
        std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{f}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(d)
    };
    (read("msgsize_max", 8192) as usize, read("msg_max", 10))
}

/// (receiving end, sending end) of a channel for `size`-byte messages.
fn chan_pair(t: Transport, size: usize) -> Result<(Chan, Chan), BenchError> {
    match t {
        Transport::PosixMq => {
            use nix::mqueue::{MQ_OFlag, MqAttr, mq_open, mq_unlink};
            let (max_size, max_depth) = mq_limits();
            if size > max_size {
                return Err(BenchError::Skip(format!(
                    "above this machine's msgsize_max ({max_size} B)"
                )));
            }
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let name = format!(
                "/ring-bench-{}-mq{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let attr = MqAttr::new(0, max_depth.min(10), size as _, 0);
            let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
            let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR;
            let a = mq_open(name.as_str(), flags, mode, Some(&attr))
                .map_err(|e| format!("mq_open: {e}"))?;
            let b = mq_open(name.as_str(), MQ_OFlag::O_RDWR, mode, None)
                .map_err(|e| format!("mq_open: {e}"))?;
            let _ = mq_unlink(name.as_str());
            Ok((Chan::Mq(a), Chan::Mq(b)))
        }
        Transport::UnixSeqpacket => {
            let mut fds = [0i32; 2];
            // SAFETY: `fds` has room for the two descriptors socketpair writes.
            let r = unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                    0,
                    fds.as_mut_ptr(),
                )
            };
            if r != 0 {
                return Err(BenchError::Fail(format!(
                    "socketpair: {}",
                    std::io::Error::last_os_error()
                )));
            }
            // SAFETY: both descriptors were just created and are owned by nobody else.
            let (mut rx, mut tx) = unsafe {
                (
                    std::fs::File::from_raw_fd(fds[0]),
                    std::fs::File::from_raw_fd(fds[1]),
                )
            };
            // One probe message: a seqpacket message must fit the socket buffer whole.
            let mut probe = Buf::new(size);
            match tx.write(&probe) {
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Err(BenchError::Skip(
                        "larger than the socket buffer (EMSGSIZE)".into(),
                    ));
                }
                Err(e) => return Err(BenchError::Fail(e.to_string())),
                Ok(_) => {}
            }
            rx.read(&mut probe).map_err(|e| e.to_string())?;
            Ok((Chan::Packet(rx), Chan::Packet(tx)))
        }
        _ => {
            let (rx, tx) = stream_pair(t)?;
            Ok((Chan::Stream(rx), Chan::Stream(tx)))
        }
    }
}

fn chan_throughput(t: Transport, size: usize, window: Duration) -> Result<f64, BenchError> {
    let (mut rx, tx) = chan_pair(t, size)?;
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
            if tx.send(&buf).is_err() {
                break;
            }
            seq += 1;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut buf = Buf::new(size);
        let mut meter = Window::new(window, 16);
        for seq in 0.. {
            rx.recv(&mut buf)?;
            verify(&buf, seq)?;
            if let Some(rate) = meter.tick(seq + 1) {
                return Ok(rate);
            }
        }
        unreachable!("the window closes long before 2^64 messages")
    })();
    stop.store(1, Ordering::Relaxed);
    rx.drain(size);
    let reaped = proc::reap(child, CHILD_LIMIT);
    let rate = result?;
    reaped?;
    Ok(rate)
}

/// The CPU time a consumer blocked in `recv` on an empty ring uses over `idle`, as a
/// percentage of that time (from the child's rusage). With `spin`, the consumer instead polls
/// `try_recv` for the same time: the cost the blocking call avoids.
pub(crate) fn idle_cpu(idle: Duration, spin: bool) -> Result<f64, String> {
    let name = segment_name("idle");
    let ring = ring(&name, shmring::Kind::Spsc, 8)?;
    // A live producer that sends nothing: the consumer waits, never "disconnected".
    let _tx = ring.spsc_producer().map_err(|e| e.to_string())?;
    let child = proc::spawn(child_cpu(), || {
        let mut rx = ring.spsc_consumer().map_err(|e| e.to_string())?;
        let mut buf = [0u8; 8];
        if spin {
            let start = Instant::now();
            while start.elapsed() < idle {
                if rx.try_recv(&mut buf).is_ok() {
                    return Err("idle: a message arrived".into());
                }
            }
            return Ok(());
        }
        match rx.recv_timeout(&mut buf, idle) {
            Err(shmring::RecvError::Timeout) => Ok(()),
            other => Err(format!("idle: expected a timeout, got {other:?}")),
        }
    });
    proc::reap(child, CHILD_LIMIT + idle)?;
    let cpu = proc::LAST_CHILD_CPU_NS.load(Ordering::Relaxed);
    Ok(100.0 * cpu as f64 / idle.as_nanos() as f64)
}

/// The child's CPU when the machine has two or more.
pub(crate) fn child_cpu() -> Option<usize> {
    (proc::cpus() >= 2).then_some(1)
}

/// Round-trip times of `iters` ping-pongs of `size`-byte messages, in nanoseconds, after a
/// warm-up. The parent sends, the child echoes.
pub(crate) fn latency(t: Transport, size: usize, iters: usize) -> Result<Vec<u64>, BenchError> {
    let warmup = (iters / 10).max(100);
    match t {
        Transport::RawSpin => Ok(raw_spin(iters, warmup)?),
        Transport::ShmringSpsc
        | Transport::ShmringMpmc
        | Transport::ShmringSpscBlocking
        | Transport::ShmringSpscSleep => Ok(shm_latency(t, size, iters, warmup)?),
        Transport::Iceoryx2 => iceoryx2_latency(size, iters),
        _ if t.latency() => chan_latency(t, size, iters, warmup),
        _ => Err(BenchError::Skip("throughput only".into())),
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
            if spins.is_multiple_of(65536) && t0.elapsed() > Duration::from_secs(20) {
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
    let wait = match t {
        Transport::ShmringSpscSleep => shmring::WaitOptions::default()
            .spin(Duration::ZERO)
            .yield_for(Duration::ZERO),
        _ => shmring::WaitOptions::default(),
    };
    let blocking = matches!(
        t,
        Transport::ShmringSpscBlocking | Transport::ShmringSpscSleep
    );
    let (ping, pong) = (
        ring_with(&na, kind, size, wait)?,
        ring_with(&nb, kind, size, wait)?,
    );
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), || {
        let mut buf = Buf::new(size);
        let mut ep = Endpoints::new(kind, &ping, &pong, blocking)?;
        for _ in 0..total {
            let n = ep.recv(&mut buf)?;
            ep.send(&buf[..n])?;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut ep = Endpoints::new(kind, &pong, &ping, blocking)?;
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
    drop((ping, pong, na, nb));
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
    Batch(shmring::spsc::Consumer),
    ZeroCopy(shmring::spsc::Consumer),
    Spsc(shmring::spsc::Consumer),
    Mpmc(shmring::mpmc::Consumer),
}

impl ShmRx {
    fn attach(t: Transport, ring: &Ring) -> Result<ShmRx, String> {
        let e = |e: shmring::AttachError| e.to_string();
        Ok(match t {
            Transport::ShmringSpscZc => ShmRx::ZeroCopy(ring.spsc_consumer().map_err(e)?),
            Transport::ShmringSpscBatch => ShmRx::Batch(ring.spsc_consumer().map_err(e)?),
            Transport::ShmringSpsc => ShmRx::Spsc(ring.spsc_consumer().map_err(e)?),
            _ => ShmRx::Mpmc(ring.mpmc_consumer().map_err(e)?),
        })
    }

    /// Receives and checks what is there (one message, or a batch), advancing `seq`; whether
    /// anything was.
    #[inline]
    fn poll(&mut self, buf: &mut [u8], seq: &mut u64) -> Result<bool, String> {
        let s = *seq;
        let r = match self {
            ShmRx::Batch(rx) => {
                let mut bad = Ok(());
                let mut next = s;
                let n = match rx.try_recv_batch(BATCH * 2, |m| {
                    if bad.is_ok() {
                        bad = verify(m, next);
                    }
                    next += 1;
                }) {
                    // The producer finished and left: the caller's count decides.
                    Err(TryRecvError::Disconnected) => 0,
                    r => r.map_err(|e| e.to_string())?,
                };
                bad?;
                *seq += n as u64;
                return Ok(n > 0);
            }
            ShmRx::ZeroCopy(rx) => rx.try_read().map(|m| verify(&m, s)),
            ShmRx::Spsc(rx) => rx.try_recv(buf).map(|n| verify(&buf[..n], s)),
            ShmRx::Mpmc(rx) => rx.try_recv(buf).map(|n| verify(&buf[..n], s)),
        };
        match r {
            Ok(checked) => {
                checked?;
                *seq += 1;
                Ok(true)
            }
            // Disconnected: the producer finished and left; the caller's count decides.
            Err(TryRecvError::Empty | TryRecvError::Pending | TryRecvError::Disconnected) => {
                Ok(false)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A process's side of a ping-pong: receive on one ring, send on the other, spinning (or
/// with the blocking calls).
enum Endpoints {
    Spsc(shmring::spsc::Consumer, shmring::spsc::Producer),
    Mpmc(shmring::mpmc::Consumer, shmring::mpmc::Producer),
    Blocking(shmring::spsc::Consumer, shmring::spsc::Producer),
}

impl Endpoints {
    /// Receives from `inbound`, sends on `outbound`.
    fn new(
        kind: shmring::Kind,
        inbound: &Ring,
        outbound: &Ring,
        blocking: bool,
    ) -> Result<Endpoints, String> {
        let e = |e: shmring::AttachError| e.to_string();
        Ok(match kind {
            shmring::Kind::Spsc if blocking => Endpoints::Blocking(
                inbound.spsc_consumer().map_err(e)?,
                outbound.spsc_producer().map_err(e)?,
            ),
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
                Endpoints::Blocking(rx, _) => {
                    return rx
                        .recv_timeout(buf, Duration::from_secs(20))
                        .map_err(|e| format!("ping-pong: {e}"));
                }
            };
            match r {
                Ok(n) => return Ok(n),
                Err(TryRecvError::Empty | TryRecvError::Pending) => {
                    core::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(65536) && start.elapsed() > Duration::from_secs(20) {
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
                Endpoints::Spsc(_, tx) => tx
                    .try_send(msg)
                    .map_err(|e| (e.would_block(), e.to_string())),
                Endpoints::Mpmc(_, tx) => tx
                    .try_send(msg)
                    .map_err(|e| (e.would_block(), e.to_string())),
                Endpoints::Blocking(_, tx) => {
                    return tx
                        .send_timeout(msg, Duration::from_secs(20))
                        .map_err(|e| format!("ping-pong: {e}"));
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

fn chan_latency(
    t: Transport,
    size: usize,
    iters: usize,
    warmup: usize,
) -> Result<Vec<u64>, BenchError> {
    let total = (iters + warmup) as u64;
    // Two one-way channels, parent → child (b) and child → parent (a).
    let (mut a_rx, a_tx) = chan_pair(t, size)?;
    let (b_rx, mut b_tx) = chan_pair(t, size)?;
    let child = proc::spawn(child_cpu(), move || {
        let (mut rx, mut tx) = (b_rx, a_tx);
        let mut buf = Buf::new(size);
        for _ in 0..total {
            rx.recv(&mut buf)?;
            tx.send(&buf)?;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut buf = Buf::new(size);
        let mut out = Vec::with_capacity(iters);
        for i in 0..total {
            stamp(&mut buf, i);
            let t0 = Instant::now();
            b_tx.send(&buf)?;
            a_rx.recv(&mut buf)?;
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
