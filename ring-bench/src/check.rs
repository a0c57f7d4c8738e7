//! What makes a figure honest: every message is stamped by its sender and checked by its
//! receiver, and a throughput figure is measured over a window that opens at the first message.
//!
//! The producer stamps the first 8 bytes of every 64-byte line of every message with
//! `seq ^ line * K`; the receiver verifies every stamp and that sequence numbers arrive in order.
//! So every cache line of every message really crossed, and nothing can be faster by skipping
//! data. (A full checksum of every byte would make 1 MiB messages measure the checksum.)

use std::time::{Duration, Instant};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// The measuring window of one throughput figure: it opens at the first message received and
/// closes at the first check after `len` has passed; the clock is read every `every` messages.
pub(crate) struct Window {
    len: Duration,
    every: u64,
    start: Option<(Instant, u64)>,
    next_check: u64,
}

impl Window {
    pub(crate) fn new(len: Duration, every: u64) -> Window {
        Window {
            len,
            every,
            start: None,
            next_check: 0,
        }
    }

    /// Notes that `received` messages have arrived so far; once the window has passed, the
    /// rate (messages per second) over it.
    #[inline]
    pub(crate) fn tick(&mut self, received: u64) -> Option<f64> {
        match self.start {
            None => {
                self.start = Some((Instant::now(), received));
                self.next_check = received + self.every;
                None
            }
            Some((t0, s0)) if received >= self.next_check => {
                self.next_check = received + self.every;
                let el = t0.elapsed();
                (el >= self.len).then(|| (received - s0) as f64 / el.as_secs_f64())
            }
            Some(_) => None,
        }
    }
}

/// The stamp of message `seq` in its 64-byte line `line`.
#[inline]
pub(crate) fn stamp_word(seq: u64, line: usize) -> u64 {
    seq ^ (line as u64).wrapping_mul(K)
}

/// Stamps message `seq` into `msg`.
#[inline]
pub(crate) fn stamp(msg: &mut [u8], seq: u64) {
    for (line, chunk) in msg.chunks_mut(64).enumerate() {
        if chunk.len() >= 8 {
            chunk[..8].copy_from_slice(&stamp_word(seq, line).to_le_bytes());
        }
    }
}

/// Checks message `seq`'s stamps.
#[inline]
pub(crate) fn verify(msg: &[u8], seq: u64) -> Result<(), String> {
    for (line, chunk) in msg.chunks(64).enumerate() {
        if chunk.len() >= 8 {
            let got = u64::from_le_bytes(chunk[..8].try_into().unwrap_or_default());
            if got != stamp_word(seq, line) {
                return Err(format!(
                    "message {seq}: line {line} holds a stamp of another message"
                ));
            }
        }
    }
    Ok(())
}
