//! One figure of any transport: the dispatch from a [`Transport`] to the module that measures
//! it.

use std::time::Duration;

use crate::config::Config;
use crate::inproc::{self, Queue};
use crate::transport::{BenchError, Transport};
use crate::{kernel, limits, many, shm, tokio_rows};

/// One throughput measurement: messages per second, received by the parent from a child
/// producer during `window` (after the first message).
pub(crate) fn throughput(
    t: Transport,
    size: usize,
    window: Duration,
    cfg: &Config,
) -> Result<f64, BenchError> {
    match t {
        Transport::Memcpy => Ok(limits::memcpy(size, window, cfg)),
        Transport::ShmringSpsc
        | Transport::ShmringSpscZc
        | Transport::ShmringSpscBatch
        | Transport::ShmringMpmc
        | Transport::ShmringRecords => Ok(shm::throughput(t, size, window, cfg)?),
        Transport::Rtrb | Transport::CrossbeamArrayqueue => {
            let q = if t == Transport::Rtrb {
                Queue::Rtrb
            } else {
                Queue::ArrayQueue
            };
            match inproc::throughput(q, size, window) {
                Some(r) => Ok(r?),
                None => Err(BenchError::Skip(
                    "measured at 8 B, 64 B and 1 KiB only".into(),
                )),
            }
        }
        Transport::ShmringMpmc2x2 => Ok(many::shmring(size, window, cfg)?),
        Transport::CrossbeamArrayqueue2x2 => match many::crossbeam(size, window) {
            Some(r) => Ok(r?),
            None => Err(BenchError::Skip(
                "measured at 8 B, 64 B and 1 KiB only".into(),
            )),
        },
        Transport::ShmringAsync | Transport::TokioUnixStream => {
            Ok(tokio_rows::throughput(t, size, window, cfg)?)
        }
        Transport::RawSpin | Transport::RawSpinPair | Transport::ShmringAsyncDirect => {
            Err(BenchError::Skip("latency only".into()))
        }
        Transport::Iceoryx2 => iceoryx2_throughput(size, window),
        _ => kernel::chan_throughput(t, size, window),
    }
}

/// Round-trip times of `iters` ping-pongs of `size`-byte messages, in nanoseconds, after a
/// warm-up. The parent sends, the child echoes.
pub(crate) fn latency(
    t: Transport,
    size: usize,
    iters: usize,
    cfg: &Config,
) -> Result<Vec<u64>, BenchError> {
    let warmup = (iters / 10).max(100);
    match t {
        Transport::RawSpin => Ok(limits::raw_spin(iters, warmup, false)?),
        Transport::RawSpinPair => Ok(limits::raw_spin(iters, warmup, true)?),
        Transport::ShmringSpsc
        | Transport::ShmringSpscZc
        | Transport::ShmringMpmc
        | Transport::ShmringRecords
        | Transport::ShmringSpscBlocking
        | Transport::ShmringSpscSleep => Ok(shm::latency(t, size, iters, warmup, cfg)?),
        Transport::ShmringAsync | Transport::ShmringAsyncDirect | Transport::TokioUnixStream => {
            Ok(tokio_rows::latency(t, size, iters, warmup, cfg)?)
        }
        Transport::Iceoryx2 => iceoryx2_latency(size, iters),
        _ if t.latency() => kernel::chan_latency(t, size, iters, warmup),
        _ => Err(BenchError::Skip("throughput only".into())),
    }
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
