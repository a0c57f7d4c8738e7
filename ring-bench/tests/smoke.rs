//! The README's main command, in miniature: `ring-bench` runs a shmring row in both parts of the
//! report (throughput and round trip, copy and zero-copy) against the raw probe, the two-by-two
//! MPMC row against its crossbeam reference (each checks every message and that none is lost),
//! and prints the tables. Guards the benchmark binary itself, which no other test runs.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_short_run_prints_throughput_and_round_trip_tables() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ring-bench"))
        .args([
            "--transports",
            "shmring-spsc,shmring-spsc-zc,shmring-mpmc-2x2,crossbeam-arrayqueue-2x2,raw-spin",
            "--sizes",
            "8",
            "--latency-sizes",
            "8,4096",
            "--rounds",
            "1",
            "--duration",
            "20",
            "--iters",
            "500",
            "--mixes",
            "none",
            "--idle-ms",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ring-bench starts");
    // Watchdog: the run takes seconds; never let it hang the suite. (The output is small, so
    // the pipes cannot fill while we poll.)
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("ring-bench still running after 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ring-bench failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for want in ["Throughput, one producer process", "Round-trip latency"] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    // A row: its name, then its size (two tokens: figure and unit).
    let row = |name: &str, size: &str| {
        stdout.lines().any(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            t.len() > 3 && t[0] == name && format!("{} {}", t[1], t[2]) == size
        })
    };
    for (name, size) in [
        ("shmring-spsc-zc", "8 B"),
        ("shmring-spsc-zc", "4.0 KiB"),
        ("shmring-mpmc-2x2", "8 B"),
        ("crossbeam-arrayqueue-2x2", "8 B"),
    ] {
        assert!(row(name, size), "no {name} row at {size} in:\n{stdout}");
    }
}
