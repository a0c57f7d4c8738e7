//! The two example programs exchange messages by segment name as separate processes.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Unique;

/// `target/<profile>/examples/NAME`, built by `cargo test` beside this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    path
}

fn wait(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("watchdog: example still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn producer_and_consumer_programs_talk_by_name() {
    for consumer_first in [false, true] {
        let u = Unique::posix("examples");
        let run = |name: &str| {
            Command::new(example(name))
                .args([u.name(), "200000"])
                .spawn()
                .unwrap()
        };
        let (first, second) = if consumer_first {
            ("consumer", "producer")
        } else {
            ("producer", "consumer")
        };
        let a = run(first);
        let b = run(second);
        let limit = Duration::from_secs(120);
        assert!(wait(a, limit).success(), "{first} failed");
        assert!(wait(b, limit).success(), "{second} failed");
    }
}
