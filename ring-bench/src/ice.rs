//! iceoryx2 publish-subscribe between two processes (busy-polling subscribers), the strongest
//! peer in the comparison. Built only with `--features iceoryx2`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;

use crate::check::{Window, stamp, verify};
use crate::proc::{self, ControlMap};
use crate::transport::{BenchError, child_cpu};

const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn err(e: impl std::fmt::Display) -> String {
    format!("iceoryx2: {e}")
}

fn service_name(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "ring-bench/{}/{tag}/{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

type Node = iceoryx2::node::Node<ipc::Service>;

fn open<const N: usize>(
    node: &Node,
    name: &str,
) -> Result<
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8; N], ()>,
    String,
> {
    node.service_builder(&name.try_into().map_err(err)?)
        .publish_subscribe::<[u8; N]>()
        // No loss: a full subscriber queue makes the publisher retry.
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(16)
        .open_or_create()
        .map_err(err)
}

fn new_node() -> Result<Node, String> {
    NodeBuilder::new().create::<ipc::Service>().map_err(err)
}

/// Messages per second, child publisher → parent subscriber.
///
/// Not reported yet: with `enable_safe_overflow(false)` and `RetryUntilDelivered`, iceoryx2 0.10
/// still dropped the message after a full subscriber buffer in this harness (message 256 of a
/// 256-deep buffer, message 16 of a 16-deep one), which the receiver's sequence check refuses.
/// `ICEORYX2_THROUGHPUT=1` runs it anyway, to reproduce that.
pub(crate) fn throughput(size: usize, window: Duration) -> Result<f64, BenchError> {
    if std::env::var_os("ICEORYX2_THROUGHPUT").is_none() {
        return Err(BenchError::Skip(
            "not measured: under backpressure iceoryx2 dropped messages in this harness (docs/benchmarks.md)"
                .into(),
        ));
    }
    match size {
        8 => Ok(tput::<8>(window)?),
        64 => Ok(tput::<64>(window)?),
        1024 => Ok(tput::<1024>(window)?),
        _ => Err(BenchError::Skip(
            "measured at 8 B, 64 B and 1 KiB only".into(),
        )),
    }
}

fn tput<const N: usize>(window: Duration) -> Result<f64, String> {
    let name = service_name("tput");
    let node = new_node()?;
    let service = open::<N>(&node, &name)?;
    let sub = service.subscriber_builder().create().map_err(err)?;
    let ctl = ControlMap::new();
    let stop = &ctl.get().stop;
    let child = proc::spawn(child_cpu(), || {
        let node = new_node()?;
        let service = open::<N>(&node, &name)?;
        let publisher = service
            .publisher_builder()
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(err)?;
        let mut seq = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            let mut m = [0u8; N];
            stamp(&mut m, seq);
            publisher.send_copy(m).map_err(err)?;
            seq += 1;
        }
        Ok(())
    });
    let result = (|| -> Result<f64, String> {
        let mut seq = 0u64;
        let mut meter = Window::new(window, 64);
        let deadline = Instant::now() + window + Duration::from_secs(10);
        loop {
            match sub.receive().map_err(err)? {
                Some(sample) => {
                    verify(sample.payload(), seq)?;
                    seq += 1;
                    if let Some(rate) = meter.tick(seq) {
                        return Ok(rate);
                    }
                }
                None if Instant::now() > deadline => return Err("iceoryx2: no progress".into()),
                None => core::hint::spin_loop(),
            }
        }
    })();
    stop.store(1, Ordering::Relaxed);
    // Keep receiving so a publisher retrying on a full queue sees the flag.
    let drain_until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < drain_until {
        let _ = sub.receive();
    }
    let reaped = proc::reap(child, CHILD_LIMIT);
    let rate = result?;
    reaped?;
    Ok(rate)
}

/// Round trips, parent publishes on "ping", child echoes on "pong".
pub(crate) fn latency(size: usize, iters: usize) -> Result<Vec<u64>, BenchError> {
    let warmup = (iters / 10).max(100);
    match size {
        8 => Ok(lat::<8>(iters, warmup)?),
        64 => Ok(lat::<64>(iters, warmup)?),
        1024 => Ok(lat::<1024>(iters, warmup)?),
        _ => Err(BenchError::Skip(
            "measured at 8 B, 64 B and 1 KiB only".into(),
        )),
    }
}

fn lat<const N: usize>(iters: usize, warmup: usize) -> Result<Vec<u64>, String> {
    let (ping, pong) = (service_name("ping"), service_name("pong"));
    let node = new_node()?;
    let ping_service = open::<N>(&node, &ping)?;
    let pong_service = open::<N>(&node, &pong)?;
    let from_child = pong_service.subscriber_builder().create().map_err(err)?;
    let ctl = ControlMap::new();
    let ready = &ctl.get().spin;
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), || {
        let node = new_node()?;
        let inbox = open::<N>(&node, &ping)?
            .subscriber_builder()
            .create()
            .map_err(err)?;
        let outbox = open::<N>(&node, &pong)?
            .publisher_builder()
            .create()
            .map_err(err)?;
        ready.store(1, Ordering::Release);
        let start = Instant::now();
        let mut done = 0;
        while done < total {
            match inbox.receive().map_err(err)? {
                Some(s) => {
                    outbox.send_copy(*s.payload()).map_err(err)?;
                    done += 1;
                }
                None if start.elapsed() > CHILD_LIMIT => {
                    return Err("iceoryx2 echo: timeout".into());
                }
                None => core::hint::spin_loop(),
            }
        }
        Ok(())
    });
    let result = (|| -> Result<Vec<u64>, String> {
        let to_child = ping_service.publisher_builder().create().map_err(err)?;
        let wait = Instant::now();
        while ready.load(Ordering::Acquire) == 0 {
            if wait.elapsed() > Duration::from_secs(10) {
                return Err("iceoryx2: echo process did not start".into());
            }
            std::thread::yield_now();
        }
        let mut out = Vec::with_capacity(iters);
        let mut m = [0u8; N];
        for i in 0..total {
            stamp(&mut m, i);
            let t0 = Instant::now();
            to_child.send_copy(m).map_err(err)?;
            let reply = loop {
                if let Some(s) = from_child.receive().map_err(err)? {
                    break *s.payload();
                }
                if t0.elapsed() > Duration::from_secs(20) {
                    return Err("iceoryx2: no reply within 20 s".into());
                }
                core::hint::spin_loop();
            };
            let rtt = t0.elapsed().as_nanos() as u64;
            verify(&reply, i)?;
            if i as usize >= warmup {
                out.push(rtt);
            }
        }
        Ok(out)
    })();
    let reaped = proc::reap(child, CHILD_LIMIT);
    let out = result?;
    reaped?;
    Ok(out)
}
