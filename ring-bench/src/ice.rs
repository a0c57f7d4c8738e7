//! iceoryx2 publish-subscribe between two processes (busy-polling subscribers), the strongest
//! peer in the comparison. Built only with `--features iceoryx2`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;

use crate::check::{Window, stamp, verify};
use crate::proc::{self, ControlMap};
use crate::transport::{BenchError, child_cpu};

const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// The subscriber's buffer for `N`-byte samples in the throughput rows: as deep as shmring's
/// ring for that size (`shm.rs`: 4 MiB of payload, at most 4096 slots), so backpressure costs
/// both alike. A ping-pong has one sample in flight and uses a small buffer.
const fn depth(n: usize) -> usize {
    let d = (4 << 20) / n;
    if d > 4096 { 4096 } else { d }
}

/// The subscriber's buffer in the round-trip rows.
const PING_PONG_DEPTH: usize = 16;

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
    depth: usize,
) -> Result<
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8; N], ()>,
    String,
> {
    node.service_builder(&name.try_into().map_err(err)?)
        .publish_subscribe::<[u8; N]>()
        // No loss: a full subscriber queue makes the publisher retry.
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(depth)
        .open_or_create()
        .map_err(err)
}

fn new_node() -> Result<Node, String> {
    NodeBuilder::new().create::<ipc::Service>().map_err(err)
}

/// Messages per second, child publisher → parent subscriber.
///
/// The two sides shake hands before the first message: the child creates its publisher and
/// says so, the parent's subscriber then attaches to it (a `receive`), and only then does the
/// child send. Without that, iceoryx2 0.10 drops the message that first fills the subscriber's
/// buffer even with safe overflow off and `RetryUntilDelivered`: a subscriber attaches to a new
/// publisher lazily, in `receive`, and a blocking send to a receiver not yet attached gives up
/// when the buffer is full ("to prevent a deadlock on sender side",
/// `iceoryx2-cal` `zero_copy_connection/common.rs`, `NoConnectedReceiverAndBufferIsFull`), which
/// the publisher treats as delivered to nobody: `send_copy` returns `Ok(0)`. The child also
/// fails the figure if any send reaches no subscriber.
pub(crate) fn throughput(size: usize, window: Duration) -> Result<f64, BenchError> {
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
    let service = open::<N>(&node, &name, depth(N))?;
    let sub = service.subscriber_builder().create().map_err(err)?;
    let ctl = ControlMap::new();
    let stop = &ctl.get().stop;
    let child = proc::spawn(child_cpu(), || {
        let node = new_node()?;
        let service = open::<N>(&node, &name, depth(N))?;
        let publisher = service
            .publisher_builder()
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(err)?;
        // Release / Acquire: the handshake of the doc comment (the publisher exists; the
        // subscriber has attached to it).
        ctl.get().spin.store(1, Ordering::Release);
        while ctl.get().spare.load(Ordering::Acquire) == 0 {
            if stop.load(Ordering::Relaxed) != 0 {
                return Ok(());
            }
            std::thread::yield_now();
        }
        let mut seq = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            let mut m = [0u8; N];
            stamp(&mut m, seq);
            if publisher.send_copy(m).map_err(err)? == 0 {
                return Err(format!("iceoryx2: message {seq} reached no subscriber"));
            }
            seq += 1;
        }
        Ok(())
    });
    let started = Instant::now();
    // Acquire: pairs with the child's Release: its publisher exists. (A child that failed
    // never says so: give up after 10 s; the reap below reports its failure.)
    while ctl.get().spin.load(Ordering::Acquire) == 0 && started.elapsed() < Duration::from_secs(10)
    {
        std::thread::yield_now();
    }
    // Attaches the subscriber to the new publisher (nothing has been sent yet).
    let _ = sub.receive().map_err(err);
    // Release: pairs with the child's Acquire: send now.
    ctl.get().spare.store(1, Ordering::Release);
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

/// Round trips, parent publishes on "ping", child echoes on "pong", zero-copy on both sides as
/// the `shmring-spsc-zc` row: each side loans a sample, stamps every 64-byte line of it in
/// place and sends it; the receiver checks the stamps where the sample lies.
pub(crate) fn latency(size: usize, iters: usize) -> Result<Vec<u64>, BenchError> {
    let warmup = (iters / 10).max(100);
    match size {
        8 => Ok(lat::<8>(iters, warmup)?),
        64 => Ok(lat::<64>(iters, warmup)?),
        1024 => Ok(lat::<1024>(iters, warmup)?),
        65536 => Ok(lat::<65536>(iters, warmup)?),
        1048576 => Ok(lat::<1048576>(iters, warmup)?),
        _ => Err(BenchError::Skip(
            "measured at 8 B, 64 B, 1 KiB, 64 KiB and 1 MiB only".into(),
        )),
    }
}

type Publisher<const N: usize> = iceoryx2::port::publisher::Publisher<ipc::Service, [u8; N], ()>;

/// Loans a sample, stamps message `seq` into it in place, sends it.
fn send_stamped<const N: usize>(publisher: &Publisher<N>, seq: u64) -> Result<(), String> {
    let mut sample = publisher.loan_uninit().map_err(err)?;
    let p = sample.payload_mut().as_mut_ptr().cast::<u8>();
    for line in 0..N / 64 + usize::from(N % 64 >= 8) {
        // SAFETY: the sample is ours until sent and holds N bytes; line `line` starts at
        // `64 * line` and has at least 8 bytes (the loop's bound), written unaligned.
        unsafe {
            p.add(64 * line)
                .cast::<[u8; 8]>()
                .write_unaligned(crate::check::stamp_word(seq, line).to_le_bytes());
        }
    }
    // SAFETY: the bytes the stamps did not write are still bytes of mapped shared memory
    // (zero-filled by the kernel, or left by an earlier sample): initialised as far as the
    // hardware is concerned, though the compiler cannot see that; only the stamps are read.
    // This is what the `shmring-spsc-zc` row does with a claimed slot, which shmring exposes as
    // initialised bytes for the same reason.
    let sample = unsafe { sample.assume_init() };
    if sample.send().map_err(err)? == 0 {
        return Err(format!("iceoryx2: message {seq} reached no subscriber"));
    }
    Ok(())
}

/// The sequence number a received sample's first stamp names, once all its stamps are checked.
fn check_stamped(payload: &[u8]) -> Result<u64, String> {
    let seq = u64::from_le_bytes(payload[..8].try_into().map_err(err)?);
    verify(payload, seq)?;
    Ok(seq)
}

fn lat<const N: usize>(iters: usize, warmup: usize) -> Result<Vec<u64>, String> {
    let (ping, pong) = (service_name("ping"), service_name("pong"));
    let node = new_node()?;
    let ping_service = open::<N>(&node, &ping, PING_PONG_DEPTH)?;
    let pong_service = open::<N>(&node, &pong, PING_PONG_DEPTH)?;
    let from_child = pong_service.subscriber_builder().create().map_err(err)?;
    let ctl = ControlMap::new();
    let ready = &ctl.get().spin;
    let total = (iters + warmup) as u64;
    let child = proc::spawn(child_cpu(), || {
        let node = new_node()?;
        let inbox = open::<N>(&node, &ping, PING_PONG_DEPTH)?
            .subscriber_builder()
            .create()
            .map_err(err)?;
        let outbox: Publisher<N> = open::<N>(&node, &pong, PING_PONG_DEPTH)?
            .publisher_builder()
            .create()
            .map_err(err)?;
        ready.store(1, Ordering::Release);
        let start = Instant::now();
        let mut done = 0;
        while done < total {
            match inbox.receive().map_err(err)? {
                Some(s) => {
                    let seq = check_stamped(s.payload())?;
                    drop(s);
                    send_stamped(&outbox, seq)?;
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
        let to_child: Publisher<N> = ping_service.publisher_builder().create().map_err(err)?;
        let wait = Instant::now();
        while ready.load(Ordering::Acquire) == 0 {
            if wait.elapsed() > Duration::from_secs(10) {
                return Err("iceoryx2: echo process did not start".into());
            }
            std::thread::yield_now();
        }
        let mut out = Vec::with_capacity(iters);
        for i in 0..total {
            let t0 = Instant::now();
            send_stamped(&to_child, i)?;
            let seq = loop {
                if let Some(s) = from_child.receive().map_err(err)? {
                    break check_stamped(s.payload())?;
                }
                if t0.elapsed() > Duration::from_secs(20) {
                    return Err("iceoryx2: no reply within 20 s".into());
                }
                core::hint::spin_loop();
            };
            let rtt = t0.elapsed().as_nanos() as u64;
            if seq != i {
                return Err(format!("iceoryx2: reply {seq} to message {i}"));
            }
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
