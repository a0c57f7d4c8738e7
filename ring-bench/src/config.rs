//! What a run measures with, decided once from the command line and passed down explicitly.

/// Shared memory for the shmring rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backend {
    /// A POSIX shared-memory object (`shm_open`).
    #[default]
    Posix,
    /// A System V segment (`shmget`).
    Sysv,
    /// An anonymous shared mapping inherited across `fork`.
    Anon,
}

/// Knobs for layout experiments (see `docs/benchmarks.md`); the defaults measure the product.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Config {
    /// Slot size of the shmring rings, if not the message size.
    pub(crate) slot_size: Option<usize>,
    /// Byte offset of the `memcpy` row's destination from a page boundary.
    pub(crate) memcpy_offset: usize,
    /// Where the shmring rings live.
    pub(crate) backend: Backend,
}
