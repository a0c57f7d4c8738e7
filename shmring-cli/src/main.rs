//! `shmring`: find, inspect, check, create, remove and garbage-collect shmring segments, and
//! pipe lines (or framed records) through rings from the shell.
//!
//! Exit status: 0 success; 1 the operation failed (or `check` found a broken invariant, or
//! `doctor` a problem); 2 bad arguments, or a segment that is missing, foreign, corrupt or not
//! accessible; 3 `recv` ended as documented but messages were lost to producers that died
//! mid-send (each reported on stderr); 141 the reader of standard output went away (a closed
//! pipe ends the command quietly, as it ends coreutils).
//!
//! Every error is one line on standard error. Nothing panics on a closed or full standard
//! output, and `recv` consumes a message only once it was written out (SPSC and record rings
//! put back one they could not write; MPMC cannot, so it looks at the pipe before it takes
//! one, and reports on stderr one taken as the reader left).

mod show;

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shmring::{Backing, Cleanup, CreateError, Kind, RecvError, Ring, SysvKey, TrySendError};

const EXAMPLES: &str = "\
Examples:
  shmring create /jobs --capacity 1024 --slot-size 256      # an SPSC ring (--mpmc for MPMC)
  shmring create /logs --records --capacity-bytes 1048576   # lines of any length (--mpsc)
  printf 'a\\nb\\n' | shmring send /jobs                       # one message per line
  shmring recv /jobs --count 2                              # prints a, b
  shmring ls                                                # every ring, fill level, endpoints
  shmring inspect /jobs --json                              # header, cursors, registry
  shmring check /jobs && echo consistent                    # fsck: exit 1 on a broken invariant
  shmring gc                                                # what is stale (dry run)
  shmring gc --force                                        # remove it
  shmring rm /jobs
  shmring inspect --sysv 0x5348                             # a System V ring by key
  shmring doctor                                            # what would break shared memory here

Exit status:
  0    success
  1    the operation failed (check: a broken invariant; doctor: a problem)
  2    bad arguments, or a segment that is missing, foreign, corrupt or not accessible
  3    recv ended, but messages were lost to producers that died mid-send (each on stderr)
  141  the reader of standard output went away (quietly, as coreutils)";

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
    /// Check what breaks shared-memory IPC on this host or in this container, and say what to
    /// do: /dev/shm (size, free space, mode), namespaces, System V limits, futex, membarrier,
    /// stale segments. Exit 0 when healthy, 1 with one line per problem.
    Doctor,
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
    /// Create a ring that stays until removed (`shmring rm`): a slot ring (--capacity slots of
    /// --slot-size bytes) or a record ring (--records: --capacity-bytes of data, messages of any
    /// length up to --max-message).
    Create {
        #[command(flatten)]
        target: Target,
        /// Slots: a power of two.
        #[arg(long, required_unless_present = "records", conflicts_with = "records")]
        capacity: Option<u64>,
        /// Largest message in bytes.
        #[arg(long, required_unless_present = "records", conflicts_with = "records")]
        slot_size: Option<usize>,
        /// Multiple producers and consumers (default: one of each).
        #[arg(long, conflicts_with = "records")]
        mpmc: bool,
        /// A record ring: each message takes the bytes it needs (default: one producer).
        #[arg(long)]
        records: bool,
        /// With --records: bytes of data, a power of two (at least 64).
        #[arg(long, requires = "records", required_if_eq("records", "true"))]
        capacity_bytes: Option<u64>,
        /// With --records: the largest message in bytes (default: an eighth of the capacity).
        #[arg(long, requires = "records")]
        max_message: Option<usize>,
        /// With --records: any number of producers (one consumer).
        #[arg(long, requires = "records")]
        mpsc: bool,
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
    /// then 3 instead of 0. A message is consumed only once it was written out: if standard
    /// output fails, an SPSC ring keeps it for the next reader (MPMC cannot put a message back:
    /// it is reported lost).
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
    /// One line, or none (a closed standard output ends the command quietly).
    message: Option<String>,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: Some(message.into()),
            code: 2,
        }
    }

    fn failed(message: impl Into<String>) -> Failure {
        Failure {
            message: Some(message.into()),
            code: 1,
        }
    }

    fn open(what: &Backing, e: impl std::fmt::Display) -> Failure {
        Failure::usage(format!("{what}: {e}"))
    }

    /// A write to standard output failed: quietly for a reader that went away, one line else.
    fn output(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure {
                message: None,
                code: 128 + libc::SIGPIPE as u8,
            }
        } else {
            Failure::failed(format!("writing standard output: {e}"))
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::output(e)
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(cli.command, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if let Some(message) = f.message {
                eprintln!("shmring: {message}");
            }
            ExitCode::from(f.code)
        }
    }
}

/// A command line clap refused, in one line with a hint (help and version are printed whole).
fn usage(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    let text = e.render().to_string();
    // The error and its context, up to the first blank line (usage and tips follow it).
    let line = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    eprintln!("shmring: {line}; try 'shmring --help'");
    ExitCode::from(2)
}

fn run(command: Command, out: &mut dyn Write) -> Result<u8, Failure> {
    match command {
        Command::Doctor => doctor(out),
        Command::Ls { json } => {
            show::list(out, &shmring::admin::list(), json)?;
            Ok(0)
        }
        Command::Inspect { target, json } => {
            let ring = open(&target)?;
            show::inspect(out, &target.backing(), &ring, json)?;
            Ok(0)
        }
        Command::Check { target } => {
            let ring = open(&target)?;
            let findings = ring.check();
            for f in &findings {
                writeln!(out, "{f}")?;
            }
            let errors = findings.iter().filter(|f| f.error).count();
            if errors == 0 {
                let s = ring.status();
                // Record rings count bytes: their capacity, and what is in flight.
                let (unit, in_flight) = if s.kind.is_records() {
                    ("bytes", "byte(s) of records")
                } else {
                    ("slots", "message(s)")
                };
                writeln!(
                    out,
                    "{}: consistent ({}, {} {unit}, {} {in_flight} in flight)",
                    target.backing(),
                    s.kind,
                    s.capacity,
                    s.len()
                )?;
                Ok(0)
            } else {
                writeln!(out, "{}: {errors} broken invariant(s)", target.backing())?;
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
            writeln!(out, "removed {backing}")?;
            if live > 0 {
                writeln!(
                    out,
                    "({live} live endpoint(s) keep their mapping until they detach)"
                )?;
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
            show::gc(out, &verdicts, force, json)?;
            let failed = verdicts.iter().any(|v| matches!(v.removed, Some(Err(_))));
            Ok(u8::from(failed))
        }
        Command::Create {
            target,
            capacity,
            slot_size,
            mpmc,
            records,
            capacity_bytes,
            max_message,
            mpsc,
            mode,
        } => {
            let backing = target.backing();
            if !records && (mpsc || capacity_bytes.is_some() || max_message.is_some()) {
                return Err(Failure::usage(
                    "--mpsc, --capacity-bytes and --max-message make a record ring: add --records"
                        .to_owned(),
                ));
            }
            let kind = match (records, mpsc, mpmc) {
                (true, true, _) => Kind::RecordsMpsc,
                (true, false, _) => Kind::Records,
                (false, _, true) => Kind::Mpmc,
                (false, _, false) => Kind::Spsc,
            };
            // clap has required what each kind needs.
            let (capacity, size) = if records {
                (capacity_bytes.unwrap_or_default(), max_message)
            } else {
                (capacity.unwrap_or_default(), slot_size)
            };
            let mut builder = Ring::builder()
                .backing(backing.clone())
                .kind(kind)
                .capacity(capacity);
            if let Some(size) = size {
                builder = builder.slot_size(size);
            }
            let ring = builder
                .mode(mode)
                .cleanup(Cleanup::Manual)
                .create()
                .map_err(|e| match e {
                    CreateError::Config(c) => Failure::usage(c.to_string()),
                    e => Failure::failed(format!("{backing}: {e}")),
                })?;
            if records {
                writeln!(
                    out,
                    "created {backing}: {}, {} bytes of data, messages up to {} B, {} bytes",
                    ring.kind(),
                    ring.capacity(),
                    ring.slot_size(),
                    ring.segment_size()
                )?;
            } else {
                writeln!(
                    out,
                    "created {backing}: {}, capacity {}, slot size {} B, {} bytes",
                    ring.kind(),
                    ring.capacity(),
                    ring.slot_size(),
                    ring.segment_size()
                )?;
            }
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
            recv(&open(&target)?, out, raw, count, t)
        }
    }
}

fn doctor(out: &mut dyn Write) -> Result<u8, Failure> {
    use shmring::admin::Health;
    let checks = shmring::admin::doctor();
    let mut problems = 0;
    for c in &checks {
        let tag = match c.health {
            Health::Ok => "ok     ",
            Health::Note => "note   ",
            Health::Problem => {
                problems += 1;
                "PROBLEM"
            }
        };
        writeln!(out, "{tag} {}: {}", c.topic, c.message)?;
    }
    if problems > 0 {
        return Err(Failure::failed(format!(
            "{problems} problem(s) found (the lines marked PROBLEM say what to do)"
        )));
    }
    Ok(0)
}

/// What one read of an input line found.
enum Line {
    /// The end of the input.
    End,
    /// A line (without its newline) in the buffer.
    Got,
    /// A line longer than the limit, this many bytes long (counted, not kept).
    TooLong(u64),
}

/// Reads one line into `msg`, keeping at most `max` bytes: a longer line is counted to its end
/// without being held, so memory stays bounded whatever the input.
fn read_line(input: &mut impl BufRead, msg: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    msg.clear();
    let mut seen = false;
    let mut long: Option<u64> = None;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(match (long, seen) {
                (Some(n), _) => Line::TooLong(n),
                (None, true) => Line::Got,
                (None, false) => Line::End,
            });
        }
        seen = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(buf.len());
        match &mut long {
            Some(n) => *n += take as u64,
            None if msg.len() + take > max => long = Some((msg.len() + take) as u64),
            None => msg.extend_from_slice(&buf[..take]),
        }
        let used = take + usize::from(newline.is_some());
        input.consume(used);
        if newline.is_some() {
            return Ok(long.map_or(Line::Got, Line::TooLong));
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
    let what = if raw { "record" } else { "line" };
    for n in 1u64.. {
        let got = if raw {
            read_frame(&mut input, &mut msg, max)
                .map_err(|e| Failure::failed(format!("record {n}: {e}")))?
        } else {
            match read_line(&mut input, &mut msg, max)
                .map_err(|e| Failure::failed(format!("reading standard input: {e}")))?
            {
                Line::End => false,
                Line::Got => true,
                Line::TooLong(len) => {
                    let e = TrySendError::TooLarge {
                        msg: (),
                        len: len as usize,
                        max,
                    };
                    return Err(Failure::failed(format!("{what} {n} ({len} bytes): {e}")));
                }
            }
        };
        if !got {
            return Ok(0);
        }
        let sent = match timeout {
            None => tx.send(&msg),
            Some(d) => tx.send_timeout(&msg, d),
        };
        sent.map_err(|e| Failure::failed(format!("{what} {n} ({} bytes): {e}", msg.len())))?;
    }
    Ok(0)
}

/// Reads one `u32 LE length + bytes` record; false at a clean end of input (before the first
/// byte of a length). Input that ends inside a length is an error, never a quiet end.
fn read_frame(input: &mut impl Read, msg: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the input ends inside a 4-byte length ({got} of its bytes)"),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::other(format!(
            "length {len} exceeds the largest message, {max} bytes"
        )));
    }
    msg.resize(len, 0);
    input.read_exact(msg)?;
    Ok(true)
}

/// Whether standard output is a pipe or socket whose reader has gone (`poll` says `POLLERR`
/// or `POLLHUP`): an MPMC `recv` looks before it takes a message it could not put back.
fn stdout_gone() -> bool {
    let mut fds = [libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    n > 0 && fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn recv(
    ring: &Ring,
    out: &mut dyn Write,
    raw: bool,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<u8, Failure> {
    let mut rx = ring
        .consumer()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let mpmc = rx.kind() == Kind::Mpmc;
    let (mut received, mut lost) = (0u64, 0u64);
    while count.is_none_or(|c| received < c) {
        if mpmc && stdout_gone() {
            return Err(Failure::output(io::ErrorKind::BrokenPipe.into()));
        }
        let read = match timeout {
            None => rx.read(),
            Some(d) => rx.read_timeout(d),
        };
        let message = match read {
            Ok(m) => m,
            Err(RecvError::Disconnected) => break,
            // The loss is reported and the next call returns the next message.
            Err(e @ RecvError::Abandoned { .. }) => {
                lost += 1;
                eprintln!("shmring: {e}");
                continue;
            }
            Err(RecvError::Timeout) => {
                return Err(Failure::failed(format!(
                    "no message within {:?} ({received} received)",
                    timeout.unwrap_or_default()
                )));
            }
            Err(e) => return Err(Failure::failed(e.to_string())),
        };
        // Written out (and flushed) before it is released: a message is consumed only once it
        // reached standard output.
        let written = if raw {
            out.write_all(&(message.len() as u32).to_le_bytes())
                .and_then(|()| out.write_all(&message))
        } else {
            out.write_all(&message).and_then(|()| out.write_all(b"\n"))
        }
        .and_then(|()| out.flush());
        if let Err(e) = written {
            if message.try_unread().is_err() {
                eprintln!(
                    "shmring: message {} was taken from the ring but could not be written out; \
                     it is lost (an MPMC ring cannot take a message back)",
                    received + lost + 1
                );
            }
            return Err(Failure::output(e));
        }
        drop(message);
        received += 1;
    }
    if lost > 0 {
        eprintln!("shmring: {received} message(s) received, {lost} lost to dead producers");
        return Ok(3);
    }
    Ok(0)
}
