//! `ring-bench`: shmring side by side with pipes, sockets and the hardware's limits, measured
//! across two processes in one run, every message checked by its receiver.
//!
//! Each round measures every selected transport once (rounds interleave transports, so a
//! virtual machine's slow and fast minutes hit them all alike) and starts with a short
//! `raw-spin` probe. Ratios are computed per round (against `pipe` for throughput, against the
//! round's `raw-spin` for latency) and the table reports their median, with min–max of the raw
//! figures.
//!
//! The modules are declared in layers, each using only those before it
//! (`scripts/check-layers.sh`): process plumbing, the run's configuration, the transport list,
//! the checks that keep figures honest, the rows of each kind (hardware limits, kernel
//! channels, shmring, in-process references, iceoryx2), the dispatch from a transport to its
//! row, and the report.

mod proc;

mod config;

mod transport;

mod check;

mod limits;

mod kernel;

mod shm;

mod tokio_rows;

mod inproc;

mod many;

#[cfg(feature = "iceoryx2")]
mod ice;

mod measure;

mod units;

mod mix;

mod plot;

mod report;

use std::time::Duration;

use clap::Parser;
use config::{Backend, Config};
use transport::{BenchError, Transport};

/// Compare shmring with pipes, Unix sockets and TCP loopback across two processes.
///
/// Examples:
///   ring-bench                       # the default comparison (about 2½ minutes)
///   ring-bench --quick               # a few seconds, for smoke tests
///   ring-bench --transports shmring-spsc,pipe --sizes 8,1024 --rounds 7
///   ring-bench --format json > results.json
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Transports to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = default_transports())]
    transports: Vec<Transport>,

    /// Message sizes in bytes for throughput (comma-separated, each at least 8).
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 64, 1024, 65536, 1 << 20])]
    sizes: Vec<usize>,

    /// Message sizes in bytes for latency (comma-separated, each at least 8).
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 64, 1024])]
    latency_sizes: Vec<usize>,

    /// Rounds; every figure is the median over rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,

    /// Measuring window of one throughput figure, in milliseconds.
    #[arg(long, default_value_t = 200)]
    duration: u64,

    /// Round trips per latency figure.
    #[arg(long, default_value_t = 6_000)]
    iters: usize,

    /// A run of a few seconds: 3 rounds, short windows, fewer round trips.
    #[arg(long)]
    quick: bool,

    /// Slot size of the shmring rings (default: each message size). For layout experiments:
    /// 8-byte messages in 56-byte slots take one 64-byte stride each instead of 16 bytes.
    #[arg(long)]
    slot_size: Option<usize>,

    /// Destination offset of the memcpy reference from a page boundary (default 0). For the
    /// 4 KiB aliasing experiment behind the slot alignment rule.
    #[arg(long, default_value_t = 0)]
    memcpy_offset: usize,

    /// Output format.
    #[arg(long, value_enum, default_value_t = report::Format::Table)]
    format: report::Format,

    /// Also write the JSON document to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,

    /// Write SVG charts (throughput by size, round-trip latency) into this folder.
    #[arg(long, value_name = "DIR")]
    plot: Option<std::path::PathBuf>,

    /// How long the idle-CPU measurement watches a blocked consumer, in ms (0: skip it).
    #[arg(long, default_value_t = 1000)]
    idle_ms: u64,

    /// Shared memory of the shmring rows.
    #[arg(long, value_enum, default_value_t = Backend::Posix)]
    backend: Backend,

    /// Mixes of message sizes for the variable-size table (comma-separated `LO-HI`, uniform,
    /// or `log:LO-HI`, log-uniform; `none` skips the table): the record ring against the slot
    /// ring sized for the largest message, a seqpacket socket and a pipe.
    #[arg(long, value_delimiter = ',', default_values_t = ["16-1024".to_owned(), "16-65536".to_owned(), "log:16-65536".to_owned()])]
    mixes: Vec<String>,
}

fn default_transports() -> Vec<Transport> {
    vec![
        Transport::ShmringSpsc,
        Transport::ShmringSpscZc,
        Transport::ShmringSpscBatch,
        Transport::ShmringMpmc,
        Transport::ShmringMpmc2x2,
        Transport::ShmringRecords,
        Transport::ShmringSpscBlocking,
        Transport::ShmringSpscSleep,
        Transport::ShmringAsync,
        Transport::TokioUnixStream,
        Transport::Pipe,
        Transport::UnixStream,
        Transport::UnixSeqpacket,
        Transport::Tcp,
        Transport::PosixMq,
        Transport::RawSpin,
        Transport::RawSpinPair,
        Transport::Memcpy,
        Transport::Rtrb,
        Transport::CrossbeamArrayqueue,
        Transport::CrossbeamArrayqueue2x2,
    ]
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.rounds = args.rounds.min(3);
        args.duration = args.duration.min(40);
        args.iters = args.iters.min(2_000);
        args.idle_ms = args.idle_ms.min(200);
    }
    if let Some(bad) = args
        .sizes
        .iter()
        .chain(&args.latency_sizes)
        .find(|&&s| s < 8)
    {
        eprintln!("ring-bench: message size {bad} is below the minimum of 8 bytes");
        std::process::exit(2);
    }
    if args.rounds == 0 || args.iters == 0 || args.duration == 0 {
        eprintln!("ring-bench: --rounds, --iters and --duration must be at least 1");
        std::process::exit(2);
    }
    // Pipes and sockets are measured against: keep them in, and the probe.
    for t in [Transport::Pipe, Transport::RawSpin] {
        if !args.transports.contains(&t) {
            args.transports.push(t);
        }
    }
    let mixes: Vec<mix::Mix> = if args.mixes.iter().any(|m| m == "none") {
        Vec::new()
    } else {
        match args.mixes.iter().map(|m| m.parse()).collect() {
            Ok(m) => m,
            Err(e) => {
                eprintln!("ring-bench: --mixes {e}");
                std::process::exit(2);
            }
        }
    };
    let cfg = Config {
        slot_size: args.slot_size,
        memcpy_offset: args.memcpy_offset,
        backend: args.backend,
    };
    remove_stale_segments();
    let pinned = transport::child_cpu().is_some() && proc::pin(0);
    let window = Duration::from_millis(args.duration);
    let mut results = report::Results::new(pinned);
    for round in 0..args.rounds {
        match measure::latency(Transport::RawSpin, 8, (args.iters / 4).max(500), &cfg) {
            Ok(rtts) => results.probe(round, &rtts),
            Err(BenchError::Skip(e) | BenchError::Fail(e)) => fail(&format!("raw-spin probe: {e}")),
        }
        for &t in args.transports.iter().filter(|t| t.throughput()) {
            for &size in &args.sizes {
                progress(round, args.rounds, t, "throughput", size);
                proc::reset_peak();
                proc::LAST_CHILD_PEAK_KIB.store(0, std::sync::atomic::Ordering::Relaxed);
                match measure::throughput(t, size, window, &cfg) {
                    Ok(rate) => {
                        results.throughput(round, t, size, rate);
                        let child =
                            proc::LAST_CHILD_PEAK_KIB.load(std::sync::atomic::Ordering::Relaxed);
                        let segment = shm::segment_bytes(t, size, &cfg);
                        results.memory(t, size, proc::peak_kib(), child, segment);
                    }
                    Err(BenchError::Skip(why)) => results.skip(t, "throughput", size, why),
                    Err(BenchError::Fail(e)) => fail(&format!("{} {size} B: {e}", t.name())),
                }
            }
        }
        for m in &mixes {
            for t in mix::TRANSPORTS {
                eprint!(
                    "\r{:79}\rround {}/{}: {} {m}",
                    "",
                    round + 1,
                    args.rounds,
                    t.name()
                );
                match mix::throughput(t, m, window, &cfg) {
                    Ok(rate) => results.mix(round, m, t, rate),
                    Err(BenchError::Skip(why)) => results.mix_skip(m, t, why),
                    Err(BenchError::Fail(e)) => fail(&format!("{} {m}: {e}", t.name())),
                }
            }
        }
        for &t in args.transports.iter().filter(|t| t.latency()) {
            for &size in &args.latency_sizes {
                progress(round, args.rounds, t, "latency", size);
                match measure::latency(t, size, args.iters, &cfg) {
                    Ok(rtts) => results.latency(round, t, size, &rtts),
                    Err(BenchError::Skip(why)) => results.skip(t, "latency", size, why),
                    Err(BenchError::Fail(e)) => fail(&format!("{} {size} B: {e}", t.name())),
                }
            }
        }
    }
    if args.idle_ms > 0 {
        let idle = Duration::from_millis(args.idle_ms);
        for spin in [false, true] {
            eprint!(
                "\r{:79}\ridle consumer CPU ({})",
                "",
                if spin { "spinning" } else { "blocking" }
            );
            match shm::idle_cpu(idle, spin, &cfg) {
                Ok(pct) => results.idle(spin, pct, idle),
                Err(e) => fail(&format!("idle CPU: {e}")),
            }
        }
        eprint!("\r{:79}\ridle consumer CPU (async)", "");
        match tokio_rows::idle_cpu(idle, &cfg) {
            Ok(pct) => results.idle_async(pct),
            Err(e) => fail(&format!("idle CPU (async): {e}")),
        }
    }
    eprint!("\r{:79}\r", "");
    results.print(args.format);
    if let Some(path) = &args.json {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let written = dir.map_or(Ok(()), std::fs::create_dir_all);
        if let Err(e) = written.and_then(|()| std::fs::write(path, results.json_string())) {
            fail(&format!("writing {}: {e}", path.display()));
        }
    }
    if let Some(dir) = &args.plot {
        match results.plot(dir) {
            Ok(files) => eprintln!("plots: {}", files.join(", ")),
            Err(e) => fail(&format!("writing plots to {}: {e}", dir.display())),
        }
    }
}

/// Removes `/dev/shm/ring-bench-PID-*` objects left by runs that were killed (PID gone).
fn remove_stale_segments() {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ring-bench-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = shmring::remove(&shmring::Backing::Posix(format!("/{name}")));
        }
    }
}

fn progress(round: usize, rounds: usize, t: Transport, mode: &str, size: usize) {
    eprint!(
        "\r{:79}\rround {}/{rounds}: {} {mode} {size} B",
        "",
        round + 1,
        t.name()
    );
}

fn fail(e: &str) -> ! {
    eprintln!("\nring-bench: {e}");
    std::process::exit(1);
}
