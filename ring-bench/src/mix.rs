//! Messages of varying sizes: the record ring against the slot ring sized for the largest
//! message, a seqpacket socket and a pipe, in messages and bytes per second; and the memory each
//! shmring ring needs to hold 1,024 such messages.
//!
//! A mix draws each message's size from a distribution, deterministically from its sequence
//! number, so the receiver knows the size it must get (a pipe, which keeps no boundaries, reads
//! exactly that many bytes). Every message is stamped and checked as in the fixed-size rows.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::{Kind, Ring, TryRecvError, WaitOptions};

use crate::check::{Window, stamp, verify};
use crate::config::Config;
use crate::kernel;
use crate::proc::{self, Buf, ControlMap};
use crate::shm;
use crate::transport::{BenchError, CHILD_LIMIT, Transport, child_cpu};

/// A distribution of message sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mix {
    /// Uniform (`false`) or log-uniform (`true`: as many messages from 16 to 32 bytes as from
    /// 32 KiB to 64 KiB, so most are small, as in logs and market data).
    pub(crate) log: bool,
    pub(crate) lo: usize,
    pub(crate) hi: usize,
}

impl std::str::FromStr for Mix {
    type Err = String;
    /// `16-1024` (uniform) or `log:16-65536`.
    fn from_str(s: &str) -> Result<Mix, String> {
        let (log, range) = match s.strip_prefix("log:") {
            Some(r) => (true, r),
            None => (false, s.strip_prefix("uniform:").unwrap_or(s)),
        };
        let (lo, hi) = range
            .split_once('-')
            .ok_or_else(|| format!("{s}: expected LO-HI or log:LO-HI"))?;
        let parse = |x: &str| x.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo == 0 || lo > hi || hi > 1 << 24 {
            return Err(format!("{s}: need 1 <= LO <= HI <= 16 MiB"));
        }
        Ok(Mix { log, lo, hi })
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.log { "log-uniform" } else { "uniform" };
        write!(
            f,
            "{kind} {}..{}",
            crate::units::bytes(self.lo as f64),
            crate::units::bytes(self.hi as f64)
        )
    }
}

fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Mix {
    /// The size of message `seq`.
    #[inline]
    pub(crate) fn size(&self, seq: u64) -> usize {
        let r = mix64(seq ^ 0x5EED);
        if self.log {
            let u = (r >> 11) as f64 / (1u64 << 53) as f64;
            let (lo, hi) = (self.lo as f64, self.hi as f64);
            ((lo * (hi / lo).powf(u)) as usize).clamp(self.lo, self.hi)
        } else {
            self.lo + (r % (self.hi - self.lo + 1) as u64) as usize
        }
    }

    /// Mean of `f(size)` over the first 100,000 messages.
    fn mean(&self, f: impl Fn(usize) -> f64) -> f64 {
        let n = 100_000;
        (0..n).map(|s| f(self.size(s))).sum::<f64>() / n as f64
    }

    /// Mean payload bytes per message.
    pub(crate) fn mean_size(&self) -> f64 {
        self.mean(|s| s as f64)
    }
}

/// What a shmring ring needs to hold 1,024 messages of a mix: the slot ring 1,024 slots of the
/// largest message; the record ring the power of two at or above what 1,024 records of the
/// mean size take. Bytes of segment, and the bytes those 1,024 records take on average.
pub(crate) fn memory_for_1024(mix: &Mix) -> (usize, usize, f64) {
    let slot = Ring::builder()
        .spsc()
        .capacity(1024)
        .slot_size(mix.hi)
        .segment_size()
        .unwrap_or(0);
    let mean_record = mix.mean(|s| shm::record_bytes(s) as f64);
    let need = (1024.0 * mean_record).ceil() as u64;
    let records = Ring::builder()
        .records()
        .capacity(need.next_power_of_two().max(64))
        .max_message(mix.hi)
        .segment_size()
        .unwrap_or(0);
    (slot, records, 1024.0 * mean_record)
}

/// The transports of the mix table.
pub(crate) const TRANSPORTS: [Transport; 4] = [
    Transport::ShmringRecords,
    Transport::ShmringSpsc,
    Transport::UnixSeqpacket,
    Transport::Pipe,
];

/// One throughput figure for a mix: messages per second received by this process from a child
/// producer during `window`.
pub(crate) fn throughput(
    t: Transport,
    mix: &Mix,
    window: Duration,
    cfg: &Config,
) -> Result<f64, BenchError> {
    match t {
        Transport::ShmringRecords | Transport::ShmringSpsc => {
            Ok(ring_throughput(t, mix, window, cfg)?)
        }
        _ => chan_throughput(t, mix, window),
    }
}

/// The rings get the same memory: about 4 MiB, and at least 8 of the largest messages.
fn ring_throughput(t: Transport, mix: &Mix, window: Duration, cfg: &Config) -> Result<f64, String> {
    let ring = if t == Transport::ShmringRecords {
        let bytes = (4u64 << 20)
            .max(8 * shm::record_bytes(mix.hi))
            .next_power_of_two();
        shm::sized_ring(
            "mix",
            Kind::Records,
            bytes,
            mix.hi,
            WaitOptions::default(),
            cfg,
        )?
    } else {
        let slots = shm::capacity_for(Kind::Spsc, mix.hi);
        shm::sized_ring(
            "mix",
            Kind::Spsc,
            slots,
            mix.hi,
            WaitOptions::default(),
            cfg,
        )?
    };
    let ctl = ControlMap::new();
    let mix = *mix;
    let child = proc::spawn(child_cpu(), || {
        let running = || ctl.get().stop.load(Ordering::Relaxed) == 0;
        let mut tx = ring.producer().map_err(|e| e.to_string())?;
        let mut buf = Buf::new(mix.hi);
        let mut seq = 0u64;
        while running() {
            let len = mix.size(seq);
            stamp(&mut buf[..len], seq);
            while tx.try_send(&buf[..len]).is_err() {
                if !running() {
                    return Ok(());
                }
            }
            seq += 1;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut rx = ring.consumer().map_err(|e| e.to_string())?;
        let mut meter = Window::new(window, 64);
        let deadline = Instant::now() + window + Duration::from_secs(10);
        let mut buf = Buf::new(mix.hi);
        let mut seq = 0u64;
        loop {
            match rx.try_recv(&mut buf) {
                Ok(n) => {
                    if n != mix.size(seq) {
                        return Err(format!("message {seq}: {n} bytes, sent {}", mix.size(seq)));
                    }
                    verify(&buf[..n], seq)?;
                    seq += 1;
                    if let Some(rate) = meter.tick(seq) {
                        return Ok(rate);
                    }
                }
                Err(e) if e.would_block() || e == TryRecvError::Disconnected => {
                    if Instant::now() > deadline {
                        return Err(format!("{}: no progress", t.name()));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    })();
    ctl.get().stop.store(1, Ordering::Relaxed);
    let reaped = proc::reap(child, CHILD_LIMIT);
    drop(ring);
    let rate = result?;
    reaped?;
    Ok(rate)
}

fn chan_throughput(t: Transport, mix: &Mix, window: Duration) -> Result<f64, BenchError> {
    let (mut rx, tx) = kernel::chan_pair(t, mix.hi)?;
    let ctl = ControlMap::new();
    let stop = &ctl.get().stop;
    let mix = *mix;
    let child = proc::spawn(child_cpu(), move || {
        let mut tx = tx;
        let mut buf = Buf::new(mix.hi);
        let mut seq = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            let len = mix.size(seq);
            stamp(&mut buf[..len], seq);
            if tx.send(&buf[..len]).is_err() {
                break;
            }
            seq += 1;
        }
        Ok(())
    });
    let result = (|| -> Result<_, String> {
        let mut buf = Buf::new(mix.hi);
        let mut meter = Window::new(window, 16);
        for seq in 0.. {
            let len = mix.size(seq);
            rx.recv(&mut buf[..len])?;
            verify(&buf[..len], seq)?;
            if let Some(rate) = meter.tick(seq + 1) {
                return Ok(rate);
            }
        }
        unreachable!("the window closes long before 2^64 messages")
    })();
    stop.store(1, Ordering::Relaxed);
    rx.drain(mix.hi);
    let reaped = proc::reap(child, CHILD_LIMIT);
    let rate = result?;
    reaped?;
    Ok(rate)
}
