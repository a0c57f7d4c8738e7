//! Sends numbered, checksummed messages into a named ring.
//!
//! ```text
//! cargo run --example producer -- /demo 100000
//! cargo run --example consumer -- /demo 100000   # in another terminal
//! ```
//!
//! Either program may start first: both use `open_or_create`, so exactly one creates the ring.
//! The producer waits (up to 30 s) for the consumer to drain the ring before it exits.

use std::time::{Duration, Instant};

use shmring::{Cleanup, Ring};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "/shmring-demo".into());
    let count: u64 = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let ring = Ring::builder()
        .spsc()
        .capacity(1024)
        .slot_size(64)
        .posix(&name)
        .cleanup(Cleanup::Manual)
        .open_or_create()?;
    let mut tx = ring.spsc_producer()?;
    let mut msg = [0u8; 16];
    for seq in 0..count {
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        msg[8..].copy_from_slice(&(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
        while let Err(e) = tx.try_send(&msg) {
            if !e.is_full() {
                return Err(e.to_string().into());
            }
            std::thread::yield_now();
        }
    }
    let start = Instant::now();
    while !ring.is_empty() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the consumer did not drain the ring within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("producer: sent {count} messages on {name}");
    Ok(())
}
