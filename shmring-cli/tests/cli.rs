//! The `shmring` binary against real segments: every command, its output, its exit status,
//! and clear errors for bad arguments and foreign segments. Every child process runs under a
//! deadline.

use std::io::Write;
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

fn fails(args: &[&str], code: i32) -> String {
    let out = run(args, b"");
    assert_eq!(
        out.status.code(),
        Some(code),
        "shmring {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
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
