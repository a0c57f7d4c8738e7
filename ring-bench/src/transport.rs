//! The transports of the comparison, what each can measure, and why a figure can be missing.

use std::time::Duration;

use crate::proc;

/// How long a child process may take before it is killed and the figure fails.
pub(crate) const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// A transport of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// shmring SPSC ring, copy API (`try_send` / `try_recv`).
    ShmringSpsc,
    /// shmring SPSC ring, zero-copy API (`try_claim` → commit / `try_read`); its round trip
    /// stamps every 64-byte line in the claimed slot and checks it in place, on both sides.
    ShmringSpscZc,
    /// shmring SPSC ring, batches of 32 (`try_send_batch` / `try_recv_batch`).
    ShmringSpscBatch,
    /// shmring MPMC ring with one producer and one consumer, copy API.
    ShmringMpmc,
    /// shmring MPMC ring, two producer processes and two consumer processes, copy API
    /// (throughput only).
    #[value(name = "shmring-mpmc-2x2")]
    ShmringMpmc2x2,
    /// shmring record ring (one producer), copy API: each message takes the bytes it needs.
    ShmringRecords,
    /// shmring SPSC ring, blocking `send` / `recv` with the default wait (spin 50 µs, yield
    /// 50 µs, then sleep on a futex; latency only).
    ShmringSpscBlocking,
    /// shmring SPSC ring, blocking calls that sleep at once (no spin, no yield): the cost of a
    /// futex wake-up each way (latency only).
    ShmringSpscSleep,
    /// shmring's async endpoints (`shmring::aio`) on tokio current-thread runtimes in both
    /// processes: the doorbell's helper thread wakes the awaiting task.
    ShmringAsync,
    /// A prototype of the other async design (latency only): the sender rings the waiter's
    /// `eventfd` directly, no helper thread.
    ShmringAsyncDirect,
    /// tokio's `UnixStream` on current-thread runtimes in both processes.
    TokioUnixStream,
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
    /// Reference, in-process: crossbeam `ArrayQueue`, two producer threads and two consumer
    /// threads (8 B, 64 B, 1 KiB; throughput only).
    #[value(name = "crossbeam-arrayqueue-2x2")]
    CrossbeamArrayqueue2x2,
    /// iceoryx2 publish-subscribe between two processes (8 B, 64 B, 1 KiB; needs the
    /// `iceoryx2` feature).
    Iceoryx2,
    /// Reference: one atomic word bounced between the processes (latency only).
    RawSpin,
    /// Reference: a word each way, on two cache lines (latency only): the floor of a ping-pong
    /// over two rings, where each direction has its own line.
    RawSpinPair,
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
            Transport::ShmringMpmc2x2 => "shmring-mpmc-2x2",
            Transport::ShmringRecords => "shmring-records",
            Transport::ShmringSpscBlocking => "shmring-spsc-blocking",
            Transport::ShmringSpscSleep => "shmring-spsc-sleep",
            Transport::ShmringAsync => "shmring-async",
            Transport::ShmringAsyncDirect => "shmring-async-direct",
            Transport::TokioUnixStream => "tokio-unix-stream",
            Transport::Pipe => "pipe",
            Transport::UnixStream => "unix-stream",
            Transport::UnixSeqpacket => "unix-seqpacket",
            Transport::Tcp => "tcp",
            Transport::PosixMq => "posix-mq",
            Transport::Rtrb => "rtrb",
            Transport::CrossbeamArrayqueue => "crossbeam-arrayqueue",
            Transport::CrossbeamArrayqueue2x2 => "crossbeam-arrayqueue-2x2",
            Transport::Iceoryx2 => "iceoryx2",
            Transport::RawSpin => "raw-spin",
            Transport::RawSpinPair => "raw-spin-pair",
            Transport::Memcpy => "memcpy",
        }
    }

    pub(crate) fn api(self) -> &'static str {
        match self {
            Transport::ShmringSpsc
            | Transport::ShmringMpmc
            | Transport::ShmringMpmc2x2
            | Transport::ShmringRecords => "copy",
            Transport::ShmringSpscZc => "zero-copy",
            Transport::ShmringSpscBatch => "batch",
            Transport::ShmringSpscBlocking => "blocking",
            Transport::ShmringSpscSleep => "blocking, no spin",
            Transport::ShmringAsync | Transport::ShmringAsyncDirect => "async",
            _ => "-",
        }
    }

    pub(crate) fn throughput(self) -> bool {
        !matches!(
            self,
            Transport::RawSpin
                | Transport::RawSpinPair
                | Transport::ShmringSpscBlocking
                | Transport::ShmringSpscSleep
                | Transport::ShmringAsyncDirect
        )
    }

    pub(crate) fn latency(self) -> bool {
        !matches!(
            self,
            Transport::Memcpy
                | Transport::ShmringSpscBatch
                | Transport::Rtrb
                | Transport::CrossbeamArrayqueue
                | Transport::ShmringMpmc2x2
                | Transport::CrossbeamArrayqueue2x2
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

/// The child's CPU when the machine has two or more.
pub(crate) fn child_cpu() -> Option<usize> {
    (proc::cpus() >= 2).then_some(1)
}
