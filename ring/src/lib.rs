//! Lock-free message rings in shared memory, for processes on one Linux machine.
//!
//! # The data path, and the one rule
//!
//! The modules are declared below in the order a message's path is built, from the bottom up,
//! and **a module uses only modules declared before it** (`scripts/check-layers.sh` derives the
//! import graph from the sources and fails CI on an upward import or a cycle):
//!
//! 1. **os** — the non-memory OS calls, named after them: futex, membarrier, `pthread_atfork`,
//!    `/proc/PID/stat`, `kill(pid, 0)`.
//! 2. **sync** — the facade: atomics, fences, per-slot access tokens, the futex and the
//!    barriers of the wake-up protocol; loom's model-checked versions under `--cfg loom`.
//! 3. **kind**, **error**, **plain**, **hooks** — the vocabulary: ring kinds and roles, one
//!    small error enum per operation, the plain-data marker trait, test hooks.
//! 4. **segment** — memory both processes can see: a POSIX object (`shm_open` + `mmap`), a
//!    System V segment (`shmget` + `shmat`), an anonymous mapping inherited across `fork`, or
//!    process-local heap memory (for threads, tests and the loom model checker).
//! 5. **layout** — a self-describing header at the start of the segment: magic, layout version,
//!    kind, capacity and slot geometry, the producer and consumer cursors each on its own
//!    128-byte line, the wait line and a registry of attached endpoints. The creator stores the
//!    ready word last; an opener validates every field against the mapping before it touches a
//!    slot. `RingMem` is the typed view of it the algorithms use.
//! 6. **wait** — the sleep/wake protocol on the wait line's futex words: spin, yield, then
//!    sleep; after each publish or release the other side checks one word and makes a system
//!    call only if someone sleeps.
//! 7. **registry** — each producer and consumer registers (pid, role, process start time), so
//!    an SPSC ring refuses a second producer and dead processes can be told from live ones.
//! 8. **endpoint** — what every endpoint shares: the mapped ring, its registry entry and its
//!    peers, leaving the registry on drop, and the blocking calls built once on any algorithm's
//!    non-blocking ones.
//! 9. **spsc** / **mpmc** / **records** — the algorithms. A producer *claims* a slot, *writes* the payload,
//!    and *commits* it with a Release store of the slot's sequence word; a consumer *observes*
//!    that store with Acquire, *reads* the payload, and *releases* the slot with a Release store
//!    (of the consumer cursor in SPSC, of the sequence word in MPMC) that the producer acquires
//!    before reusing the slot. Nothing on this path makes a system call, allocates, or takes a
//!    lock, and no reader can see a half-written message. MPMC recovers slots that crashed
//!    endpoints left claimed (`mpmc::recovery`).
//!    **records** carries messages of any length in one byte area (one or many producers, one
//!    consumer).
//! 10. **channel** — the kind-erased [`Producer`] and [`Consumer`], for a ring whose kind is
//!     learnt at run time, with `std::io::Write` / `std::io::Read`; then, behind features,
//!     **doorbell** (a readiness descriptor for any event loop, rung by a helper thread) and
//!     **aio** (tokio futures, `Stream` and `Sink` on top of it).
//! 11. **ring** — the handle: [`RingBuilder`] creates or opens a ring, [`Ring`] attaches
//!     endpoints.
//! 12. **admin** — lists, inspects, checks and garbage-collects segments (the `shmring`
//!     command is built on it).
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

mod os;

mod sync;

mod kind;

mod error;

mod plain;

#[doc(hidden)]
pub mod hooks;

pub mod segment;

mod layout;

mod wait;

mod registry;

mod endpoint;

pub mod spsc;

pub mod mpmc;

pub mod records;

mod channel;

#[cfg(all(feature = "doorbell", not(loom)))]
pub mod doorbell;

#[cfg(all(feature = "async", not(loom)))]
pub mod aio;

mod ring;

pub mod admin;

pub use admin::gc;
pub use channel::{Consumer, Producer, ReadSlot, WriteSlot};
pub use error::{
    AttachError, ClaimError, CommitError, ConfigError, Corruption, CreateError, OpenError,
    RecvError, RemoveError, SendError, TryClaimError, TryRecvError, TrySendError,
};
pub use kind::{Kind, Role};
pub use layout::{
    LAYOUT_VERSION, MAX_CAPACITY, MAX_RECORD_CAPACITY, MAX_SEGMENT_SIZE, MAX_SLOT_SIZE,
    MIN_RECORD_CAPACITY,
};
pub use plain::Plain;
pub use registry::EndpointInfo;
pub use ring::{DEFAULT_INIT_TIMEOUT, Ring, RingBuilder};
pub use segment::{Backing, Cleanup, SysvKey, remove};
pub use wait::{FALLBACK_SLICE, WaitOptions};

/// The README's example, compiled and run as a doctest so it cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Hooks for the loom models of crash recovery (`tests/loom.rs`); not part of the API.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::Step;
    pub use crate::sync::death::{Died, crash_at, die_here, record_claims};

    use crate::endpoint::Endpoint;
    use crate::layout::Side;

    /// The doorbell's arm (`doorbell::Doorbell::arm`): count the consumer in as a sleeper and
    /// issue the heavy barrier; returns the epoch the helper thread waits on.
    pub fn arm(c: &crate::Consumer) -> u32 {
        let a = c.attached();
        crate::wait::arm(a.mem(), Side::Data, a.sleeper()).epoch
    }

    /// The doorbell's disarm.
    pub fn disarm(c: &crate::Consumer) {
        let a = c.attached();
        crate::wait::disarm(a.mem(), Side::Data, a.sleeper());
    }

    /// The helper thread's wait: sleep on `ring`'s data epoch while it holds `epoch`.
    pub fn helper_wait(ring: &crate::Ring, epoch: u32) {
        let pair = ring.shared().mem.wait_pair(Side::Data);
        // Acquire: as the helper's load in `doorbell::run`.
        while pair.epoch.word().load(crate::sync::Ordering::Acquire) == epoch {
            pair.epoch.wait(epoch, None);
        }
    }
}
