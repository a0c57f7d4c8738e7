//! The kernel's channels: pipes, Unix stream and seqpacket sockets, TCP over loopback, POSIX
//! message queues. Each carries fixed-size messages from a child process to the parent.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::check::{Window, stamp, verify};
use crate::proc::{self, Buf, ControlMap};
use crate::transport::{BenchError, CHILD_LIMIT, Transport, child_cpu};

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

/// One end of a kernel channel carrying messages whose sizes both ends know.
pub(crate) enum Chan {
    /// A byte stream (pipe, Unix stream, TCP): `write_all` / `read_exact`.
    Stream(std::fs::File),
    /// A seqpacket socket: one `write`, one `read` per message.
    Packet(std::fs::File),
    /// A POSIX message queue.
    Mq(nix::mqueue::MqdT),
}

impl Chan {
    pub(crate) fn send(&mut self, m: &[u8]) -> Result<(), String> {
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

    /// Receives one message of exactly `b.len()` bytes.
    pub(crate) fn recv(&mut self, b: &mut [u8]) -> Result<(), String> {
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
    pub(crate) fn drain(&mut self, size: usize) {
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

/// (receiving end, sending end) of a channel for messages of up to `size` bytes.
pub(crate) fn chan_pair(t: Transport, size: usize) -> Result<(Chan, Chan), BenchError> {
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

pub(crate) fn chan_throughput(
    t: Transport,
    size: usize,
    window: Duration,
) -> Result<f64, BenchError> {
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

pub(crate) fn chan_latency(
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
