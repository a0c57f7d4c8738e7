//! Receives and checks the messages `producer` sends, then removes the ring.
//!
//! ```text
//! cargo run --example consumer -- /demo 100000
//! ```

use std::time::{Duration, Instant};

use shmring::{Cleanup, Ring, TryRecvError};

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
    let mut rx = ring.spsc_consumer()?;
    let mut buf = [0u8; 64];
    let mut last_progress = Instant::now();
    let mut seq = 0;
    while seq < count {
        match rx.try_recv(&mut buf) {
            Ok(16) => {
                let got = u64::from_le_bytes(buf[..8].try_into()?);
                let check = u64::from_le_bytes(buf[8..16].try_into()?);
                if got != seq || check != seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) {
                    return Err(
                        format!("expected message {seq}, got {got} (check {check:#x})").into(),
                    );
                }
                seq += 1;
                last_progress = Instant::now();
            }
            Ok(n) => return Err(format!("message {seq} has {n} bytes, expected 16").into()),
            Err(TryRecvError::Empty) => {
                if last_progress.elapsed() > Duration::from_secs(30) {
                    return Err(format!("no message for 30 s after {seq}").into());
                }
                std::thread::yield_now();
            }
            Err(e) => return Err(e.into()),
        }
    }
    drop(rx);
    shmring::remove(ring.backing())?;
    eprintln!("consumer: received and checked {count} messages on {name}");
    Ok(())
}
