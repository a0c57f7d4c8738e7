//! The hardware's limits, measured the same way as the transports: a one-thread `memcpy` and a
//! cache-line ping-pong between the two processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::check::stamp;
use crate::config::Config;
use crate::proc::{self, Buf, ControlMap};
use crate::transport::{CHILD_LIMIT, child_cpu};

/// One-thread `memcpy` bandwidth, messages per second: the ceiling of any copy.
pub(crate) fn memcpy(size: usize, window: Duration, cfg: &Config) -> f64 {
    let src = {
        let mut b = Buf::new(size);
        stamp(&mut b, 1);
        b
    };
    let offset = cfg.memcpy_offset;
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

/// Round trips of one atomic word bounced between the two processes: the ceiling of any
/// ping-pong, and the probe every round starts with. With `pair`, the reply goes back on a
/// second word on a line of its own (`raw-spin-pair`): the floor of a ping-pong over two rings,
/// where each direction has its own line.
pub(crate) fn raw_spin(iters: usize, warmup: usize, pair: bool) -> Result<Vec<u64>, String> {
    let ctl = ControlMap::new();
    let total = (iters + warmup) as u64;
    fn words(c: &ControlMap, pair: bool) -> (&AtomicU64, &AtomicU64) {
        let c = c.get();
        (&c.spin, if pair { &c.spin_back } else { &c.spin })
    }
    let child = proc::spawn(child_cpu(), || {
        let (w, back) = words(&ctl, pair);
        for i in 0..total {
            while w.load(Ordering::Acquire) != 2 * i + 1 {
                core::hint::spin_loop();
            }
            back.store(2 * i + 2, Ordering::Release);
        }
        Ok(())
    });
    let (w, back) = words(&ctl, pair);
    let mut out = Vec::with_capacity(iters);
    for i in 0..total {
        let t0 = Instant::now();
        w.store(2 * i + 1, Ordering::Release);
        let mut spins = 0u32;
        while back.load(Ordering::Acquire) != 2 * i + 2 {
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
