//! The `shmring` binary against real segments: every command, its output, its exit status,
//! and clear errors for bad arguments and foreign segments. Every child process runs under a
//! deadline.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shmring");
const DEADLINE: Duration = Duration::from_secs(30);

/// A unique POSIX name, removed on drop.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmring-cli-{tag}-{}-{n}", std::process::id()))
    }
    fn path(&self) -> String {
        format!("/dev/shm{}", self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// Runs the binary with `args` and `stdin`, killing it past the deadline.
fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("watchdog: shmring {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: &[u8]) -> String {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "shmring {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with `code` and say why in exactly one line on stderr.
fn fails(args: &[&str], code: i32) -> String {
    let out = run(args, b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "shmring {args:?}: {}{err}",
        String::from_utf8_lossy(&out.stdout),
    );
    assert_eq!(
        err.lines().count(),
        1,
        "shmring {args:?}: not one line: {err}"
    );
    err
}

#[test]
fn create_send_recv_inspect_check_rm() {
    let name = Name::new("life");
    let n = name.0.as_str();
    let created = ok(&["create", n, "--capacity", "8", "--slot-size", "32"], b"");
    assert!(
        created.contains("SPSC, capacity 8, slot size 32 B"),
        "{created}"
    );
    ok(&["send", n], b"alpha\nbeta\n\ngamma");
    let listed = ok(&["ls"], b"");
    let line = listed.lines().find(|l| l.starts_with(n)).expect("listed");
    assert!(line.contains("4/8"), "{line}");
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", n, "--json"], b"")).unwrap();
    assert_eq!(inspected["kind"], "SPSC");
    assert_eq!(inspected["capacity"], 8);
    assert_eq!(inspected["len"], 4);
    assert_eq!(inspected["head"], 4);
    assert!(ok(&["inspect", n], b"").contains("lag 4 (50.0% full)"));
    assert!(ok(&["check", n], b"").contains("consistent"));
    // The sender left, so recv drains and ends by itself.
    assert_eq!(ok(&["recv", n], b""), "alpha\nbeta\n\ngamma\n");
    ok(&["send", n], b"one\ntwo\nthree\n");
    assert_eq!(ok(&["recv", n, "--count", "2"], b""), "one\ntwo\n");
    assert!(ok(&["rm", n], b"").contains("removed"));
    assert!(fails(&["inspect", n], 2).contains("no segment with that name"));
}

#[test]
fn raw_frames_and_mpmc() {
    let name = Name::new("raw");
    let n = name.0.as_str();
    ok(
        &["create", n, "--capacity", "4", "--slot-size", "8", "--mpmc"],
        b"",
    );
    let mut frames = Vec::new();
    for m in [&b"\x00\n\xff"[..], b"", b"12345678"] {
        frames.extend_from_slice(&(m.len() as u32).to_le_bytes());
        frames.extend_from_slice(m);
    }
    ok(&["send", n, "--raw"], &frames);
    let out = run(&["recv", n, "--raw"], b"");
    assert!(out.status.success());
    assert_eq!(
        out.stdout, frames,
        "framed records round-trip byte for byte"
    );
    // Found by a black-box test of the docs: input that ended inside a length was dropped
    // without a word (exit 0). The record before it is sent; the fragment is an error.
    for cut in 1..4 {
        let mut input = 1u32.to_le_bytes().to_vec();
        input.push(b'a');
        input.extend_from_slice(&5u32.to_le_bytes()[..cut]);
        let out = run(&["send", n, "--raw"], &input);
        assert_eq!(out.status.code(), Some(1), "{cut} bytes of a length");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ends inside a 4-byte length"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        let got = run(&["recv", n, "--raw", "--count", "1"], b"");
        assert_eq!(got.stdout, input[..5], "the whole record before it arrived");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", n, "--json"], b"")).unwrap();
    assert_eq!(json["lag"], 0, "the JSON has the lag the help promises");
}

#[test]
fn nothing_is_silently_dropped() {
    let name = Name::new("long");
    let n = name.0.as_str();
    ok(&["create", n, "--capacity", "4", "--slot-size", "4"], b"");
    let out = run(&["send", n], b"ok\ntoo long\nnever\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2 (8 bytes)") && err.contains("does not fit"),
        "{err}"
    );
    // What came before the bad line was sent; nothing after it was.
    assert_eq!(ok(&["recv", n], b""), "ok\n");
    // A full ring whose consumer has left: the unsent line is reported.
    let out = run(&["send", n, "--timeout", "0.1"], b"1\n2\n3\n4\n5\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 5"));
    // The producers are gone: recv drains what is there and ends, short of the count.
    assert_eq!(ok(&["recv", n, "--count", "9"], b""), "1\n2\n3\n4\n");
    // A ring no producer ever attached to: recv waits, and times out when told to.
    let fresh = Name::new("fresh");
    ok(
        &["create", &fresh.0, "--capacity", "4", "--slot-size", "4"],
        b"",
    );
    let out = run(&["recv", &fresh.0, "--timeout", "0.1"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no message within"));
}

#[test]
fn check_and_inspect_report_corruption_and_foreign_segments() {
    use std::os::unix::fs::FileExt;
    let name = Name::new("bad");
    let n = name.0.as_str();
    ok(
        &["create", n, "--capacity", "4", "--slot-size", "8", "--mpmc"],
        b"",
    );
    ok(&["send", n], b"x\n");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    // Slot 1's MPMC sequence word (offset 0 of the slot at 8192 + 24) set to a foreign value.
    f.write_all_at(&7u64.to_le_bytes(), 8192 + 24).unwrap();
    let out = run(&["check", n], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("slot 1: sequence 7"));
    // A header field no shmring writes.
    f.write_all_at(&3u64.to_le_bytes(), 16).unwrap(); // capacity 3
    let err = fails(&["check", n], 2);
    assert!(err.contains("capacity"), "{err}");
    // Not a ring at all.
    let foreign = Name::new("foreign");
    std::fs::write(foreign.path(), vec![0x42u8; 16384]).unwrap();
    let err = fails(&["inspect", &foreign.0], 2);
    assert!(err.contains("not a shmring segment"), "{err}");
    assert!(
        !ok(&["ls"], b"").contains(&foreign.0),
        "foreign objects are not listed"
    );
}

#[test]
fn gc_is_a_dry_run_unless_forced() {
    let name = Name::new("gc");
    let n = name.0.as_str();
    // Created by a process that has exited, never attached: stale.
    ok(&["create", n, "--capacity", "2", "--slot-size", "8"], b"");
    let prefix = format!("shmring-cli-gc-{}-", std::process::id());
    let dry = ok(&["gc", "--prefix", &prefix], b"");
    assert!(
        dry.contains(&format!("stale        {n}: no endpoints; creator")),
        "{dry}"
    );
    assert!(std::path::Path::new(&name.path()).exists());
    let forced = ok(&["gc", "--force", "--prefix", &prefix], b"");
    assert!(forced.contains(&format!("removed      {n}")), "{forced}");
    assert!(!std::path::Path::new(&name.path()).exists());
}

#[test]
fn bad_arguments_get_clear_errors() {
    let name = Name::new("args");
    let n = name.0.as_str();
    assert!(
        fails(&["create", n, "--capacity", "3", "--slot-size", "8"], 2)
            .contains("capacity 3 is not a power of two")
    );
    assert!(fails(&["create", n, "--capacity", "4", "--slot-size", "0"], 2).contains("slot size"));
    assert!(
        fails(
            &[
                "create",
                n,
                "--capacity",
                "4",
                "--slot-size",
                "8",
                "--mode",
                "999"
            ],
            2
        )
        .contains("octal mode")
    );
    assert!(fails(&["inspect", "a/b"], 2).contains("name"));
    assert!(fails(&["inspect", "--sysv", "0"], 2).contains("IPC_PRIVATE"));
    assert!(fails(&["inspect"], 2).contains("required"));
    assert!(fails(&["send", n, "--timeout=-1"], 2).contains("--timeout"));
    // Issue 12: argument errors from the parser are one line with a hint, too.
    for args in [
        &["create", n, "--capacity", "4"][..],
        &["frobnicate"][..],
        &["inspect", "--sysv", "0"][..],
        &["ls", "--bogus"][..],
    ] {
        assert!(fails(args, 2).contains("try 'shmring --help'"), "{args:?}");
    }
    ok(&["create", n, "--capacity", "4", "--slot-size", "8"], b"");
    assert!(
        fails(&["create", n, "--capacity", "4", "--slot-size", "8"], 1).contains("already exists")
    );
    let help = ok(&["--help"], b"");
    assert!(help.contains("Examples:"));
}

#[test]
fn sysv_rings_by_key() {
    let key = format!("{:#x}", 0x5300_0000u32 | (std::process::id() & 0xFF_FFFF));
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = run(&["rm", "--sysv", &self.0], b"");
        }
    }
    let _guard = Rm(key.clone());
    ok(
        &[
            "create",
            "--sysv",
            &key,
            "--capacity",
            "4",
            "--slot-size",
            "8",
        ],
        b"",
    );
    ok(&["send", "--sysv", &key], b"via sysv\n");
    assert!(ok(&["inspect", "--sysv", &key], b"").contains(&format!("sysv:{key}")));
    assert!(ok(&["ls"], b"").contains(&format!("sysv:{key}")));
    assert_eq!(ok(&["recv", "--sysv", &key], b""), "via sysv\n");
    ok(&["rm", "--sysv", &key], b"");
    assert!(fails(&["inspect", "--sysv", &key], 2).contains("no segment"));
}

/// Issue 10, defect 4: an MPMC producer that died holding a claim, while another producer's
/// messages wait behind it. `recv` reports the loss on stderr, goes on to deliver everything
/// else, ends as documented (every producer gone, ring drained), and says by its exit status (3)
/// that messages were lost. The crash state is crafted at the offsets `docs/layout.md` gives.
#[test]
fn recv_reports_a_lost_mpmc_message_and_goes_on() {
    use std::os::unix::fs::FileExt;
    let name = Name::new("lost");
    let n = name.0.as_str();
    ok(
        &[
            "create",
            n,
            "--capacity",
            "8",
            "--slot-size",
            "16",
            "--mpmc",
        ],
        b"",
    );
    // A process that has exited: its pid names nobody now.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    let put = |at: u64, bytes: &[u8]| f.write_all_at(bytes, at).unwrap();
    // Registry entry 0: the dead producer (role bits 1, start tag unknown), claiming cursor 0.
    put(512, &(u64::from(dead) | 1 << 32).to_le_bytes());
    put(512 + 8, &1u64.to_le_bytes());
    // It took cursor 0 (head = 1) and never committed it (slot 0's sequence word stays 0).
    put(128, &1u64.to_le_bytes());
    put(396, &1u32.to_le_bytes()); // seen: a producer attached
    put(400, &1u32.to_le_bytes()); // attached[producers] = 1
    // A live producer sends two lines behind the stuck slot, and leaves.
    ok(&["send", n], b"after-1\nafter-2\n");
    let out = run(&["recv", n, "--timeout", "20"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "after-1\nafter-2\n",
        "{err}"
    );
    assert!(err.contains("message 0 was lost"), "{err}");
    assert!(err.contains("1 lost"), "{err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
}

/// Issue 10, defect 1, as the issue reproduced it with the command alone: the state a producer
/// killed before its last `head` store leaves (three lines published, `head` = 2). After the
/// consumer drains them, a new producer attaches and sends, and `check` agrees.
#[test]
fn a_head_left_behind_by_a_dead_producer_does_not_brick_the_ring() {
    use std::os::unix::fs::FileExt;
    let name = Name::new("head");
    let n = name.0.as_str();
    ok(&["create", n, "--capacity", "8", "--slot-size", "16"], b"");
    ok(&["send", n], b"l1\nl2\nl3\n");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    f.write_all_at(&2u64.to_le_bytes(), 128).unwrap();
    let inspected = ok(&["inspect", n], b"");
    assert!(inspected.contains("stored head 2"), "{inspected}");
    assert_eq!(ok(&["recv", n], b""), "l1\nl2\nl3\n");
    ok(&["check", n], b"");
    ok(&["send", n], b"l4\n");
    assert_eq!(ok(&["recv", n], b""), "l4\n");
    let checked = ok(&["check", n], b"");
    assert!(checked.contains("consistent"), "{checked}");
}

/// Runs the binary with its standard output on a pipe whose reader is already gone.
fn to_closed_pipe(args: &[&str]) -> Output {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are ours; the read end is closed before the child starts.
    let write_end = unsafe {
        libc::close(fds[0]);
        std::os::fd::OwnedFd::from_raw_fd(fds[1])
    };
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_deadline(child, args)
}

/// Runs the binary with its standard output on `/dev/full` (every write fails with ENOSPC).
fn to_dev_full(args: &[&str]) -> Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_deadline(child, args)
}

fn wait_with_deadline(mut child: std::process::Child, args: &[&str]) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("watchdog: shmring {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Issue 12: a closed pipe (`shmring ls | true`) or a full disk (`> /dev/full`) ends every
/// command without a panic: quietly with 141 for the pipe, as coreutils die of SIGPIPE; with
/// one line and status 1 for the disk.
#[test]
fn a_closed_or_full_stdout_never_panics() {
    let name = Name::new("pipe");
    let n = name.0.as_str();
    ok(&["create", n, "--capacity", "4", "--slot-size", "8"], b"");
    for args in [
        &["ls"][..],
        &["ls", "--json"][..],
        &["inspect", n][..],
        &["inspect", n, "--json"][..],
        &["check", n][..],
        &["gc"][..],
        &["doctor"][..],
        &["--help"][..],
    ] {
        let out = to_closed_pipe(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if args != ["--help"] {
            assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
            assert!(
                err.is_empty(),
                "{args:?}: a closed pipe ends quietly: {err}"
            );
        }
        let out = to_dev_full(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if args != ["--help"] {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.contains("No space left"), "{args:?}: {err}");
        }
    }
}

/// Issue 12: `recv` consumes a message only once it was written out. With nobody to write to,
/// nothing is taken: every message is still there for the next reader (SPSC, which can put a
/// message back; MPMC, which looks at standard output before taking one).
#[test]
fn recv_never_consumes_what_it_cannot_write() {
    for kind in [&[][..], &["--mpmc"][..]] {
        let name = Name::new("undelivered");
        let n = name.0.as_str();
        let mut create = vec!["create", n, "--capacity", "8", "--slot-size", "8"];
        create.extend_from_slice(kind);
        ok(&create, b"");
        ok(&["send", n], b"1\n2\n3\n");
        let out = to_closed_pipe(&["recv", n, "--count", "3"]);
        assert_eq!(out.status.code(), Some(141), "{kind:?}");
        let out = to_dev_full(&["recv", n, "--count", "3"]);
        assert_eq!(out.status.code(), Some(1), "{kind:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        if kind.is_empty() {
            assert_eq!(err.lines().count(), 1, "{err}");
            assert_eq!(ok(&["recv", n, "--count", "3"], b""), "1\n2\n3\n");
        } else {
            // MPMC cannot put back the one message it took before the write failed: it says so.
            assert!(err.contains("is lost"), "{err}");
            assert_eq!(ok(&["recv", n, "--count", "2"], b""), "2\n3\n");
        }
    }
}

/// Issue 12: `send` holds at most a slot's worth of a line: a 256 MiB line without a newline,
/// under a 200 MiB address-space limit, is reported as not fitting (and counted), not an abort.
#[test]
fn send_keeps_memory_bounded_whatever_the_input() {
    use std::os::unix::process::CommandExt;
    let name = Name::new("huge");
    let n = name.0.as_str();
    ok(&["create", n, "--capacity", "4", "--slot-size", "16"], b"");
    let mut cmd = Command::new(BIN);
    cmd.args(["send", n])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 200 << 20,
                rlim_max: 200 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            if input.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let out = wait_with_deadline(child, &["send", n]);
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 1 (268435456 bytes)") && err.contains("does not fit"),
        "{err}"
    );
}

/// Issue 12: a ring shared with another user through its group (mode 660, the group of that
/// user) carries that user's messages; `rm` of a segment another user owns says whose it is.
#[test]
fn another_user_shares_a_ring_through_its_group() {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to another user needs root");
        return;
    }
    let name = Name::new("group");
    let n = name.0.as_str();
    ok(
        &[
            "create",
            n,
            "--capacity",
            "8",
            "--slot-size",
            "16",
            "--mode",
            "660",
        ],
        b"",
    );
    // Give the group to `nogroup` (65534), the group of `nobody`.
    let path = std::ffi::CString::new(name.path()).unwrap();
    // SAFETY: a NUL-terminated path; -1 leaves the owner as it is.
    assert_eq!(unsafe { libc::chown(path.as_ptr(), u32::MAX, 65534) }, 0);
    let as_nobody = |args: &[&str], stdin: &[u8]| -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        wait_with_deadline(child, args)
    };
    let out = as_nobody(&["send", n], b"from nobody\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ok(&["recv", n, "--count", "1"], b""), "from nobody\n");
    let out = as_nobody(&["rm", n], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("belongs to root (uid 0)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Issue 12: `shmring doctor` on a host like this one reports each check on its own line; in
/// a container-like `/dev/shm` of 1 MiB (a private mount namespace, where `unshare` is allowed)
/// it says what is wrong and exits 1.
#[test]
fn doctor_reports_each_check_and_a_small_dev_shm() {
    let out = run(&["doctor"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .all(|l| l.starts_with("ok ") || l.starts_with("note ") || l.starts_with("PROBLEM ")),
        "{text}"
    );
    for topic in ["/dev/shm", "sysv", "futex", "membarrier", "stale"] {
        assert!(text.contains(topic), "{topic}: {text}");
    }
    let script = format!("mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {BIN} doctor");
    let Ok(child) = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("skipped: no unshare(1) here");
        return;
    };
    let out = wait_with_deadline(child, &["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if text.is_empty() {
        eprintln!("skipped: cannot make a private /dev/shm here: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("PROBLEM /dev/shm") && l.contains("--shm-size")),
        "{text}"
    );
    assert!(err.contains("problem(s) found"), "{err}");
}

#[test]
fn record_rings_carry_lines_of_any_length_up_to_the_largest() {
    let name = Name::new("records");
    let n = name.0.as_str();
    let created = ok(
        &[
            "create",
            n,
            "--records",
            "--capacity-bytes",
            "4096",
            "--max-message",
            "1000",
        ],
        b"",
    );
    assert!(
        created.contains("RECORDS, 4096 bytes of data, messages up to 1000 B, 12288 bytes"),
        "{created}"
    );
    // Lines of 0 to 1000 bytes: each takes its own length, rounded up to 8, plus 8.
    let lines: Vec<String> = [0usize, 1, 7, 8, 9, 300, 1000]
        .iter()
        .map(|&len| "x".repeat(len))
        .collect();
    let input = lines.join("\n") + "\n";
    ok(&["send", n], input.as_bytes());
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", n, "--json"], b"")).unwrap();
    assert_eq!(inspected["kind"], "RECORDS");
    assert_eq!(inspected["len"], 8 + 16 + 16 + 16 + 24 + 312 + 1008);
    let text = ok(&["inspect", n], b"");
    assert!(
        text.contains("capacity 4096 bytes   largest message 1000 B"),
        "{text}"
    );
    assert!(ok(&["check", n], b"").contains("consistent"));
    assert!(
        ok(&["ls"], b"")
            .lines()
            .any(|l| l.starts_with(n) && l.contains("RECORDS"))
    );
    assert_eq!(ok(&["recv", n], b""), input);
    // A line over the largest message is refused with its number and length; nothing after it
    // is sent, nothing before it lost.
    let long = format!("ok\n{}\nafter\n", "y".repeat(1001));
    let out = run(&["send", n], long.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2 (1001 bytes)"), "{err}");
    assert_eq!(ok(&["recv", n], b""), "ok\n");
    // Many producers, raw frames.
    let mpsc = Name::new("records-mpsc");
    let m = mpsc.0.as_str();
    assert!(
        ok(
            &[
                "create",
                m,
                "--records",
                "--mpsc",
                "--capacity-bytes",
                "1024"
            ],
            b""
        )
        .contains("RECORDS-MPSC, 1024 bytes of data, messages up to 128 B")
    );
    let mut frames = Vec::new();
    for msg in [&b""[..], b"\x00\n", &[7u8; 128]] {
        frames.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        frames.extend_from_slice(msg);
    }
    ok(&["send", m, "--raw"], &frames);
    assert_eq!(run(&["recv", m, "--raw"], b"").stdout, frames);
}

#[test]
fn record_ring_arguments_get_clear_errors() {
    let name = Name::new("records-args");
    let n = name.0.as_str();
    for (args, says) in [
        (vec!["--records"], "--capacity-bytes"),
        (
            vec!["--records", "--capacity-bytes", "1000"],
            "power of two",
        ),
        (vec!["--records", "--capacity-bytes", "32"], "minimum"),
        (
            vec!["--records", "--capacity-bytes", "64", "--max-message", "57"],
            "56",
        ),
        (vec!["--capacity-bytes", "64"], "--records"),
        (
            vec!["--mpsc", "--capacity", "4", "--slot-size", "8"],
            "--records",
        ),
        (
            vec!["--records", "--capacity-bytes", "64", "--capacity", "4"],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["create", n];
        all.extend(args.iter().copied());
        let err = fails(&all, 2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
