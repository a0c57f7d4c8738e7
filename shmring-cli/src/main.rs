//! `shmring`: find, inspect, check, create, remove and garbage-collect shmring segments, and
//! pipe lines (or framed records) through rings from the shell.
//!
//! Exit status: 0 success; 1 the operation failed (or `check` found a broken invariant); 2 bad
//! arguments, or a segment that is missing, foreign, corrupt or not accessible; 3 `recv` ended
//! as documented but messages were lost to producers that died mid-send (each reported on
//! stderr).

mod show;

use std::io::{self, BufRead, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shmring::{Backing, Cleanup, CreateError, Kind, RecvError, Ring, SysvKey, TryRecvError};

const EXAMPLES: &str = "\
Examples:
  shmring create /jobs --capacity 1024 --slot-size 256      # an SPSC ring (--mpmc for MPMC)
  printf 'a\\nb\\n' | shmring send /jobs                       # one message per line
  shmring recv /jobs --count 2                              # prints a, b
  shmring ls                                                # every ring, fill level, endpoints
  shmring inspect /jobs --json                              # header, cursors, registry
  shmring check /jobs && echo consistent                    # fsck: exit 1 on a broken invariant
  shmring gc                                                # what is stale (dry run)
  shmring gc --force                                        # remove it
  shmring rm /jobs
  shmring inspect --sysv 0x5348                             # a System V ring by key";

#[derive(Parser, Debug)]
#[command(
    name = "shmring",
    version,
    about = "Inspect and manage shmring shared-memory rings",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List rings: POSIX segments that carry the shmring magic, and System V segments.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a ring's header, cursors, lag and endpoint registry.
    Inspect {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every invariant (exit 0: consistent, 1: broken, 2: cannot open).
    Check {
        #[command(flatten)]
        target: Target,
    },
    /// Remove a segment's name or key (processes that have it mapped keep using it).
    Rm {
        #[command(flatten)]
        target: Target,
    },
    /// Find segments whose every recorded process is dead; remove them with --force.
    Gc {
        /// Remove what is stale (without it, only report).
        #[arg(long)]
        force: bool,
        /// Only POSIX segments whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a ring that stays until removed (`shmring rm`).
    Create {
        #[command(flatten)]
        target: Target,
        /// Slots: a power of two.
        #[arg(long)]
        capacity: u64,
        /// Largest message in bytes.
        #[arg(long)]
        slot_size: usize,
        /// Multiple producers and consumers (default: one of each).
        #[arg(long)]
        mpmc: bool,
        /// Permission bits, octal.
        #[arg(long, default_value = "600", value_parser = parse_mode)]
        mode: u32,
    },
    /// Send stdin into a ring: one message per line (without the newline), or framed with --raw.
    Send {
        #[command(flatten)]
        target: Target,
        /// Read records framed as a little-endian u32 length and that many bytes.
        #[arg(long)]
        raw: bool,
        /// Give up after waiting this many seconds for room in a full ring.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Print messages from a ring: one per line, or framed with --raw. Ends when every producer
    /// that attached is gone and the ring is drained (exit 0), or at --count.
    ///
    /// A message lost to an MPMC producer that died between claiming and committing it is
    /// reported on stderr ("message N was lost ..."), and receiving goes on; the exit status is
    /// then 3 instead of 0.
    Recv {
        #[command(flatten)]
        target: Target,
        /// Write records framed as a little-endian u32 length and that many bytes.
        #[arg(long)]
        raw: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Give up after waiting this many seconds for a message.
        #[arg(long)]
        timeout: Option<f64>,
    },
}

/// A POSIX name, or `--sysv KEY`.
#[derive(Args, Debug)]
struct Target {
    /// POSIX segment name (`/name` or `name`).
    #[arg(required_unless_present = "sysv", conflicts_with = "sysv")]
    name: Option<String>,
    /// A System V key instead (decimal or 0x hex).
    #[arg(long, value_parser = parse_key)]
    sysv: Option<i32>,
}

impl Target {
    fn backing(&self) -> Backing {
        match (&self.name, self.sysv) {
            (_, Some(key)) => Backing::SysV(SysvKey::Key(key)),
            (Some(name), None) => Backing::Posix(name.clone()),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

fn parse_key(s: &str) -> Result<i32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).map(|k| k as i32),
        None => s.parse::<i32>(),
    };
    match parsed {
        Ok(0) => Err("key 0 is IPC_PRIVATE, which cannot be opened by key".into()),
        Ok(k) => Ok(k),
        Err(e) => Err(format!("not a key: {e}")),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode such as 600 or 660")),
    }
}

fn timeout(secs: Option<f64>) -> Result<Option<Duration>, Failure> {
    secs.map(|s| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| Failure::usage(format!("--timeout {s}: not a number of seconds")))
    })
    .transpose()
}

/// An error and the exit status it maps to.
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }

    fn failed(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }

    fn open(what: &Backing, e: impl std::fmt::Display) -> Failure {
        Failure::usage(format!("{}: {e}", show::backing(what)))
    }
}

fn open(target: &Target) -> Result<Ring, Failure> {
    let backing = target.backing();
    Ring::builder()
        .backing(backing.clone())
        .open()
        .map_err(|e| Failure::open(&backing, e))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("shmring: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Ls { json } => {
            show::list(&shmring::admin::list(), json);
            Ok(0)
        }
        Command::Inspect { target, json } => {
            let ring = open(&target)?;
            show::inspect(&target.backing(), &ring, json);
            Ok(0)
        }
        Command::Check { target } => {
            let ring = open(&target)?;
            let findings = ring.check();
            for f in &findings {
                println!("{f}");
            }
            let errors = findings.iter().filter(|f| f.error).count();
            if errors == 0 {
                let s = ring.status();
                println!(
                    "{}: consistent ({} {} slots, {} message(s) in flight)",
                    show::backing(&target.backing()),
                    s.capacity,
                    s.kind,
                    s.len()
                );
                Ok(0)
            } else {
                println!(
                    "{}: {errors} broken invariant(s)",
                    show::backing(&target.backing())
                );
                Ok(1)
            }
        }
        Command::Rm { target } => {
            let backing = target.backing();
            let live = Ring::builder()
                .backing(backing.clone())
                .init_timeout(Duration::ZERO)
                .open()
                .map(|r| r.endpoints().iter().filter(|e| e.alive).count())
                .unwrap_or(0);
            shmring::remove(&backing).map_err(|e| Failure::open(&backing, e))?;
            println!("removed {}", show::backing(&backing));
            if live > 0 {
                println!("({live} live endpoint(s) keep their mapping until they detach)");
            }
            Ok(0)
        }
        Command::Gc {
            force,
            prefix,
            json,
        } => {
            let prefix = prefix.map(|p| format!("/{}", p.trim_start_matches('/')));
            let verdicts = shmring::admin::gc_matching(force, |b| match (&prefix, b) {
                (None, _) => true,
                (Some(p), Backing::Posix(name)) => name.starts_with(p.as_str()),
                (Some(_), _) => false,
            });
            show::gc(&verdicts, force, json);
            let failed = verdicts.iter().any(|v| matches!(v.removed, Some(Err(_))));
            Ok(u8::from(failed))
        }
        Command::Create {
            target,
            capacity,
            slot_size,
            mpmc,
            mode,
        } => {
            let backing = target.backing();
            let ring = Ring::builder()
                .backing(backing.clone())
                .kind(if mpmc { Kind::Mpmc } else { Kind::Spsc })
                .capacity(capacity)
                .slot_size(slot_size)
                .mode(mode)
                .cleanup(Cleanup::Manual)
                .create()
                .map_err(|e| match e {
                    CreateError::Config(c) => Failure::usage(c.to_string()),
                    e => Failure::failed(format!("{}: {e}", show::backing(&backing))),
                })?;
            println!(
                "created {}: {}, capacity {}, slot size {} B, {} bytes",
                show::backing(&backing),
                ring.kind(),
                ring.capacity(),
                ring.slot_size(),
                ring.segment_size()
            );
            Ok(0)
        }
        Command::Send {
            target,
            raw,
            timeout: t,
        } => {
            let t = timeout(t)?;
            send(&open(&target)?, raw, t)
        }
        Command::Recv {
            target,
            raw,
            count,
            timeout: t,
        } => {
            let t = timeout(t)?;
            recv(&open(&target)?, raw, count, t)
        }
    }
}

fn send(ring: &Ring, raw: bool, timeout: Option<Duration>) -> Result<u8, Failure> {
    let mut tx = ring
        .producer()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let max = ring.slot_size();
    let mut input = io::stdin().lock();
    let mut msg = Vec::new();
    for n in 1u64.. {
        msg.clear();
        let got = if raw {
            read_frame(&mut input, &mut msg, max)
                .map_err(|e| Failure::failed(format!("record {n}: {e}")))?
        } else {
            let read = input
                .read_until(b'\n', &mut msg)
                .map_err(|e| Failure::failed(format!("reading stdin: {e}")))?;
            if msg.last() == Some(&b'\n') {
                msg.pop();
            }
            read > 0
        };
        if !got {
            return Ok(0);
        }
        let what = if raw { "record" } else { "line" };
        let sent = match timeout {
            None => tx.send(&msg),
            Some(d) => tx.send_timeout(&msg, d),
        };
        sent.map_err(|e| Failure::failed(format!("{what} {n} ({} bytes): {e}", msg.len())))?;
    }
    Ok(0)
}

/// Reads one `u32 LE length + bytes` record; false at a clean end of input.
fn read_frame(input: &mut impl Read, msg: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::other(format!(
            "length {len} exceeds the slot size {max}"
        )));
    }
    msg.resize(len, 0);
    input.read_exact(msg)?;
    Ok(true)
}

fn recv(
    ring: &Ring,
    raw: bool,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<u8, Failure> {
    let mut rx = ring
        .consumer()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let mut out = BufWriter::new(io::stdout().lock());
    let mut buf = vec![0u8; ring.slot_size()];
    let mut received = 0u64;
    let mut lost = 0u64;
    while count.is_none_or(|c| received < c) {
        // Drain without blocking; flush before every wait, so a pipeline sees each burst.
        let n = match rx.try_recv(&mut buf) {
            Ok(n) => n,
            Err(TryRecvError::Empty | TryRecvError::Pending) => {
                out.flush().map_err(write_failed)?;
                let r = match timeout {
                    None => rx.recv(&mut buf),
                    Some(d) => rx.recv_timeout(&mut buf, d),
                };
                match r {
                    Ok(n) => n,
                    Err(RecvError::Disconnected) => break,
                    Err(e @ RecvError::Abandoned { .. }) => {
                        lost += 1;
                        eprintln!("shmring: {e}");
                        continue;
                    }
                    Err(RecvError::Timeout) => {
                        out.flush().map_err(write_failed)?;
                        return Err(Failure::failed(format!(
                            "no message within {:?} ({received} received)",
                            timeout.unwrap_or_default()
                        )));
                    }
                    Err(e) => return Err(Failure::failed(e.to_string())),
                }
            }
            Err(TryRecvError::Disconnected) => break,
            // The loss is reported and the next call returns the next message.
            Err(e @ TryRecvError::Abandoned { .. }) => {
                lost += 1;
                eprintln!("shmring: {e}");
                continue;
            }
            Err(e) => return Err(Failure::failed(e.to_string())),
        };
        if raw {
            out.write_all(&(n as u32).to_le_bytes())
                .map_err(write_failed)?;
            out.write_all(&buf[..n]).map_err(write_failed)?;
        } else {
            out.write_all(&buf[..n]).map_err(write_failed)?;
            out.write_all(b"\n").map_err(write_failed)?;
        }
        received += 1;
    }
    out.flush().map_err(write_failed)?;
    if lost > 0 {
        eprintln!("shmring: {received} message(s) received, {lost} lost to dead producers");
        return Ok(3);
    }
    Ok(0)
}

fn write_failed(e: io::Error) -> Failure {
    Failure::failed(format!("writing stdout: {e}"))
}
