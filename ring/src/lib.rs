//! Lock-free message rings in shared memory, for processes on one Linux machine.
//!
//! # The data path
//!
//! A message travels through five layers (the fifth only when a side waits), and the modules follow it in that order:
//!
//! 1. **segment** — memory both processes can see: a POSIX object (`shm_open` + `mmap`), a
//!    System V segment (`shmget` + `shmat`), an anonymous mapping inherited across `fork`, or
//!    process-local heap memory (for threads, tests and the loom model checker).
//! 2. **layout** — a self-describing header at the start of the segment: magic, layout version,
//!    kind, capacity and slot geometry, the producer and consumer cursors each on its own
//!    128-byte line, and a registry of attached endpoints. The creator stores the ready word
//!    last; an opener validates every field against the mapping before it touches a slot.
//! 3. **endpoint** — each producer and consumer registers (pid, role, process start time), so
//!    an SPSC ring refuses a second producer and dead processes can be told from live ones.
//! 4. **spsc** / **mpmc** — the algorithms. A producer *claims* a slot, *writes* the payload,
//!    and *commits* it with a Release store of the slot's sequence word; a consumer *observes*
//!    that store with Acquire, *reads* the payload, and *releases* the slot with a Release store
//!    (of the consumer cursor in SPSC, of the sequence word in MPMC) that the producer acquires
//!    before reusing the slot. Nothing on this path makes a system call, allocates, or takes a
//!    lock, and no reader can see a half-written message.
//! 5. **wait** — the blocking calls (`send`, `recv`, `claim`, `read`, with `_timeout` forms):
//!    spin, yield, then sleep on a futex word in the segment. After each publish or release the
//!    other side checks one word and makes a system call only if someone sleeps. Sleeps are
//!    bounded by a liveness check, so a peer that died is reported as `Disconnected`, and an
//!    MPMC slot whose producer died mid-claim is recovered and reported as `Abandoned`.
//!
//! Beside the path, [`admin`] lists, inspects, checks and garbage-collects segments (the
//! `shmring` command is built on it).
//!
//! The copy calls (`try_send`, `try_recv`) are built on the two-phase ones (`try_claim` →
//! [`commit`](spsc::WriteSlot::commit); `try_read` → a guard that releases on drop).
//!
//! # Example
//!
//! ```
//! use shmring::Ring;
//!
//! // One process creates the ring; another opens it by name (here, the same process).
//! let name = format!("/shmring-example-{}", std::process::id());
//! let ring = Ring::builder().spsc().capacity(1024).slot_size(64).posix(&name).create()?;
//! let mut tx = ring.spsc_producer()?;
//! let mut rx = Ring::builder().posix(&name).open()?.spsc_consumer()?;
//!
//! tx.try_send(b"tick 1")?;
//! let mut buf = [0u8; 64];
//! let n = rx.try_recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"tick 1");
//!
//! // Zero-copy: claim a slot, write in place, commit; read in place, released on drop.
//! let mut slot = tx.try_claim()?;
//! slot[..6].copy_from_slice(b"tick 2");
//! slot.commit(6)?;
//! assert_eq!(&*rx.try_read()?, b"tick 2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Shared memory is untrusted
//!
//! Another process can write anything into a segment. Every value read from it (magic,
//! version, sizes, cursors, sequence words, lengths) is read once, into a local, and checked
//! before use; a foreign or corrupt segment gives an [`OpenError`], an [`AttachError`] or a
//! [`Corruption`], never a panic or an out-of-bounds access. See `docs/safety.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod sync;

pub mod segment;

mod layout;

mod endpoint;

mod ring;

pub mod spsc;

pub mod mpmc;

mod wait;

pub mod admin;

mod error;
mod plain;

pub use admin::gc;
pub use endpoint::EndpointInfo;
pub use error::{
    AttachError, ClaimError, CommitError, ConfigError, Corruption, OpenError, RecvError, Role,
    SendError, TryClaimError, TryRecvError, TrySendError,
};
pub use layout::{Kind, LAYOUT_VERSION, MAX_CAPACITY, MAX_SEGMENT_SIZE, MAX_SLOT_SIZE};
pub use plain::Plain;
pub use ring::{DEFAULT_INIT_TIMEOUT, Ring, RingBuilder};
pub use segment::{Backing, Cleanup, SysvKey, remove};
pub use wait::{FALLBACK_SLICE, WaitOptions};

/// The README's example, compiled and run as a doctest so it cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[doc(hidden)]
pub mod hooks;

/// Hooks for the loom models of crash recovery (`tests/loom.rs`); not part of the API.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::Step;
    pub use crate::sync::death::{Died, crash_at, die_here, record_claims};
}
