//! The shmring rows, driven through the kind-erased `shmring::Producer` / `shmring::Consumer`
//! (what a program that opens a ring by name uses): copy, zero-copy and batch throughput, the
//! spinning and blocking ping-pongs, and the CPU an idle blocked consumer burns.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::{Kind, Ring, TryRecvError, WaitOptions};

use crate::check::{Window, stamp, verify};
use crate::config::{Backend, Config};
use crate::proc::{self, Buf, ControlMap};
use crate::transport::{CHILD_LIMIT, Transport, child_cpu};

/// Messages per `try_send_batch` in the batch row.
const BATCH: usize = 32;

/// Which of shmring's APIs a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// `try_send` / `try_recv`.
    Copy,
    /// `try_claim` → commit / `try_read`.
    ZeroCopy,
    /// `try_send_batch` / `try_recv_batch`.
    Batch,
    /// `send_timeout` / `recv_timeout` (latency rows).
    Blocking,
}

/// The ring kind and API of a shmring row (`None` for the other transports).
fn row(t: Transport) -> Option<(Kind, Api)> {
    Some(match t {
        Transport::ShmringSpsc => (Kind::Spsc, Api::Copy),
        Transport::ShmringSpscZc => (Kind::Spsc, Api::ZeroCopy),
        Transport::ShmringSpscBatch => (Kind::Spsc, Api::Batch),
        Transport::ShmringMpmc | Transport::ShmringMpmc2x2 => (Kind::Mpmc, Api::Copy),
        Transport::ShmringRecords => (Kind::Records, Api::Copy),
        Transport::ShmringSpscBlocking | Transport::ShmringSpscSleep => (Kind::Spsc, Api::Blocking),
        _ => return None,
    })
}

/// The segment a shmring row uses for `size`-byte messages, in bytes.
pub(crate) fn segment_bytes(t: Transport, size: usize, cfg: &Config) -> Option<usize> {
    let (kind, _) = row(t)?;
    let slot = slot_for(size, cfg);
    Ring::builder()
        .kind(kind)
        .capacity(capacity_for(kind, slot))
        .slot_size(slot)
        .segment_size()
        .ok()
}

/// The slot size of a ring for `size`-byte messages: `--slot-size` if it is larger.
fn slot_for(size: usize, cfg: &Config) -> usize {
    cfg.slot_size.unwrap_or(size).max(size)
}

/// Slots for a ring carrying `size`-byte messages in the throughput rows: about 4 MiB of
/// payload, 8 to 4096 slots. A record ring gets the bytes that many records take (a power of
/// two).
pub(crate) fn capacity_for(kind: Kind, size: usize) -> u64 {
    capacity_holding(kind, size, 4 << 20, 8)
}

/// Slots for a ring of the round-trip rows: about 256 KiB of payload, 2 to 4096 slots. A
/// ping-pong has one message in flight, and a ring cycles through all its slots, so a larger
/// ring only spreads the trips over more memory: at 1 MiB, 8 slots (16 MiB for the two rings)
/// took 1.9× as long a trip as 1 or 2 (`docs/benchmarks.md`).
fn latency_capacity(kind: Kind, size: usize) -> u64 {
    capacity_holding(kind, size, 256 << 10, 2)
}

/// Slots (or a record ring's bytes) holding about `bytes` of `size`-byte messages, `min` to 4096
/// slots, a power of two.
fn capacity_holding(kind: Kind, size: usize, bytes: usize, min: usize) -> u64 {
    let slots = (bytes / size.max(1))
        .clamp(min, 4096)
        .next_power_of_two()
        .min(4096) as u64;
    if kind.is_records() {
        (slots * record_bytes(size)).next_power_of_two()
    } else {
        slots
    }
}

/// The bytes a record of `len` bytes takes in a record ring: its header and its payload
/// rounded up to 8 (`docs/layout.md`).
pub(crate) fn record_bytes(len: usize) -> u64 {
    8 + len.next_multiple_of(8) as u64
}

/// A fresh ring for `size`-byte messages sized as the throughput rows size it, in the configured
/// backend, with the blocking calls' wait options. Named segments are removed by their creator
/// (this process) when the last handle drops.
pub(crate) fn ring(
    tag: &str,
    kind: Kind,
    size: usize,
    wait: WaitOptions,
    cfg: &Config,
) -> Result<Ring, String> {
    let slot = slot_for(size, cfg);
    sized_ring(tag, kind, capacity_for(kind, slot), slot, wait, cfg)
}

/// A fresh ring of `capacity` (slots, or a record ring's bytes) for messages up to `max`
/// bytes, in the configured backend.
pub(crate) fn sized_ring(
    tag: &str,
    kind: Kind,
    capacity: u64,
    max: usize,
    wait: WaitOptions,
    cfg: &Config,
) -> Result<Ring, String> {
    let name = format!("/ring-bench-{}-{tag}", std::process::id());
    let backing = match cfg.backend {
        Backend::Posix => shmring::Backing::Posix(name.clone()),
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
    Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .slot_size(max)
        .backing(backing)
        .populate(true)
        .wait(wait)
        .create()
        .map_err(|e| format!("creating {name}: {e}"))
}

/// One throughput figure of a shmring row: messages per second received by this process from
/// a child producer during `window` (after the first message).
pub(crate) fn throughput(
    t: Transport,
    size: usize,
    window: Duration,
    cfg: &Config,
) -> Result<f64, String> {
    let (kind, api) = row(t).ok_or_else(|| format!("{} is not a shmring row", t.name()))?;
    let ring = ring("tput", kind, size, WaitOptions::default(), cfg)?;
    let ctl = ControlMap::new();
    let child = proc::spawn(child_cpu(), || {
        let running = || ctl.get().stop.load(Ordering::Relaxed) == 0;
        let mut tx = ring.producer().map_err(|e| e.to_string())?;
        let mut seq = 0u64;
        match api {
            Api::ZeroCopy => {
                while running() {
                    if let Ok(mut slot) = tx.try_claim() {
                        stamp(&mut slot[..size], seq);
                        slot.commit(size).map_err(|e| e.to_string())?;
                        seq += 1;
                    }
                }
            }
            Api::Batch => {
                // One contiguous buffer: BATCH page-aligned buffers would alias each other in
                // the cache and the TLB.
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
            }
            Api::Copy | Api::Blocking => {
                let mut buf = Buf::new(size);
                while running() {
                    stamp(&mut buf, seq);
                    while tx.try_send(&buf).is_err() {
                        if !running() {
                            return Ok(());
                        }
                    }
                    seq += 1;
                }
            }
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut rx = ring.consumer().map_err(|e| e.to_string())?;
        let mut meter = Window::new(window, 64);
        let deadline = Instant::now() + window + Duration::from_secs(10);
        let stalled = || Err(format!("{}: no progress", t.name()));
        let mut buf = Buf::new(size);
        let mut seq = 0u64;
        // One loop per API, so the receive path is what the loop measures.
        match api {
            Api::Batch => loop {
                let mut bad = Ok(());
                let mut next = seq;
                let n = match rx.try_recv_batch(BATCH * 2, |m| {
                    if bad.is_ok() {
                        bad = verify(m, next);
                    }
                    next += 1;
                }) {
                    // The producer finished and left: the count decides.
                    Err(TryRecvError::Disconnected) => 0,
                    r => r.map_err(|e| e.to_string())?,
                };
                bad?;
                seq += n as u64;
                if n > 0 {
                    if let Some(rate) = meter.tick(seq) {
                        return Ok(rate);
                    }
                } else if Instant::now() > deadline {
                    return stalled();
                }
            },
            Api::ZeroCopy => loop {
                match rx.try_read() {
                    Ok(m) => {
                        verify(&m, seq)?;
                        seq += 1;
                        if let Some(rate) = meter.tick(seq) {
                            return Ok(rate);
                        }
                    }
                    Err(e) if quiet(e) => {
                        if Instant::now() > deadline {
                            return stalled();
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            },
            Api::Copy | Api::Blocking => loop {
                match rx.try_recv(&mut buf) {
                    Ok(n) => {
                        verify(&buf[..n], seq)?;
                        seq += 1;
                        if let Some(rate) = meter.tick(seq) {
                            return Ok(rate);
                        }
                    }
                    Err(e) if quiet(e) => {
                        if Instant::now() > deadline {
                            return stalled();
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            },
        }
    })();
    ctl.get().stop.store(1, Ordering::Relaxed);
    let reaped = proc::reap(child, CHILD_LIMIT);
    drop(ring); // removes the segment (this process created it)
    let rate = result?;
    reaped?;
    Ok(rate)
}

/// Nothing to receive now: empty, or the producer finished its run and left (the count of
/// messages decides when the figure is done).
fn quiet(e: TryRecvError) -> bool {
    e.would_block() || e == TryRecvError::Disconnected
}

/// Round trips of a shmring row: `iters` ping-pongs after `warmup`, in nanoseconds. The parent
/// sends on one ring, the child echoes on another.
pub(crate) fn latency(
    t: Transport,
    size: usize,
    iters: usize,
    warmup: usize,
    cfg: &Config,
) -> Result<Vec<u64>, String> {
    let (kind, api) = row(t).ok_or_else(|| format!("{} is not a shmring row", t.name()))?;
    let wait = match t {
        Transport::ShmringSpscSleep => WaitOptions::default()
            .spin(Duration::ZERO)
            .yield_for(Duration::ZERO),
        _ => WaitOptions::default(),
    };
    let blocking = api == Api::Blocking;
    let in_place = api == Api::ZeroCopy;
    let slot = slot_for(size, cfg);
    let capacity = latency_capacity(kind, slot);
    let ping = sized_ring("ping", kind, capacity, slot, wait, cfg)?;
    let pong = sized_ring("pong", kind, capacity, slot, wait, cfg)?;
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), || {
        let mut buf = Buf::new(size);
        let mut ep = PingPong::new(&ping, &pong, blocking)?;
        for _ in 0..total {
            if in_place {
                let (seq, n) = ep.recv_in_place()?;
                ep.send_in_place(seq, n)?;
            } else {
                let n = ep.recv(&mut buf)?;
                ep.send(&buf[..n])?;
            }
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut ep = PingPong::new(&pong, &ping, blocking)?;
        let mut buf = Buf::new(size);
        let mut out = Vec::with_capacity(iters);
        for i in 0..total {
            let rtt = if in_place {
                // The write is part of the trip: stamped in the claimed slot, checked in place.
                let t0 = Instant::now();
                ep.send_in_place(i, size)?;
                let (seq, n) = ep.recv_in_place()?;
                let rtt = t0.elapsed().as_nanos() as u64;
                if (seq, n) != (i, size) {
                    return Err(format!(
                        "zero-copy ping-pong: sent {i} ({size} B), got {seq} ({n} B)"
                    ));
                }
                rtt
            } else {
                stamp(&mut buf, i);
                let t0 = Instant::now();
                ep.send(&buf)?;
                let n = ep.recv(&mut buf)?;
                let rtt = t0.elapsed().as_nanos() as u64;
                verify(&buf[..n], i)?;
                rtt
            };
            if i as usize >= warmup {
                out.push(rtt);
            }
        }
        Ok(out)
    })();
    let reaped = proc::reap(child, CHILD_LIMIT);
    drop((ping, pong));
    let out = result?;
    reaped?;
    Ok(out)
}

/// A process's side of a ping-pong: receive on one ring, send on the other, spinning on the
/// non-blocking calls or with the blocking ones.
struct PingPong {
    rx: shmring::Consumer,
    tx: shmring::Producer,
    blocking: bool,
}

impl PingPong {
    /// Receives from `inbound`, sends on `outbound`.
    fn new(inbound: &Ring, outbound: &Ring, blocking: bool) -> Result<PingPong, String> {
        let e = |e: shmring::AttachError| e.to_string();
        Ok(PingPong {
            rx: inbound.consumer().map_err(e)?,
            tx: outbound.producer().map_err(e)?,
            blocking,
        })
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        if self.blocking {
            return self
                .rx
                .recv_timeout(buf, Duration::from_secs(20))
                .map_err(|e| format!("ping-pong: {e}"));
        }
        spin_until(|| match self.rx.try_recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.would_block() => Ok(None),
            Err(e) => Err(e.to_string()),
        })
    }

    /// Spins until a message arrives, checks its stamps where it lies (`try_read`), releases
    /// it, and returns its number and length.
    fn recv_in_place(&mut self) -> Result<(u64, usize), String> {
        spin_until(|| match self.rx.try_read() {
            Ok(msg) => {
                let seq = msg
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .ok_or("zero-copy ping-pong: a message under 8 bytes")?;
                verify(&msg, seq)?;
                Ok(Some((seq, msg.len())))
            }
            Err(e) if e.would_block() => Ok(None),
            Err(e) => Err(e.to_string()),
        })
    }

    /// Spins until a slot is free, stamps message `seq` of `len` bytes into it and commits it.
    fn send_in_place(&mut self, seq: u64, len: usize) -> Result<(), String> {
        loop {
            match self.tx.try_claim() {
                Ok(mut slot) => {
                    stamp(&mut slot[..len], seq);
                    return slot.commit(len).map_err(|e| e.to_string());
                }
                Err(e) if e.would_block() => core::hint::spin_loop(),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        if self.blocking {
            return self
                .tx
                .send_timeout(msg, Duration::from_secs(20))
                .map_err(|e| format!("ping-pong: {e}"));
        }
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(e) if e.would_block() => core::hint::spin_loop(),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Calls `poll` until it has something (or fails), spinning between calls; gives up after
/// 20 s without a reply.
#[inline(always)]
fn spin_until<T>(mut poll: impl FnMut() -> Result<Option<T>, String>) -> Result<T, String> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if let Some(got) = poll()? {
            return Ok(got);
        }
        core::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(65536) && start.elapsed() > Duration::from_secs(20) {
            return Err("ping-pong: no reply within 20 s".into());
        }
    }
}

/// The CPU time a consumer blocked in `recv` on an empty ring uses over `idle`, as a
/// percentage of that time (from the child's rusage). With `spin`, the consumer instead polls
/// `try_recv` for the same time: the cost the blocking call avoids.
pub(crate) fn idle_cpu(idle: Duration, spin: bool, cfg: &Config) -> Result<f64, String> {
    let ring = ring("idle", Kind::Spsc, 8, WaitOptions::default(), cfg)?;
    // A live producer that sends nothing: the consumer waits, never "disconnected".
    let _tx = ring.producer().map_err(|e| e.to_string())?;
    let child = proc::spawn(child_cpu(), || {
        let mut rx = ring.consumer().map_err(|e| e.to_string())?;
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
