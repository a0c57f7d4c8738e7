//! Processes: fork a child with a job, pin it to a core, reap it with a deadline, and the small
//! shared control area the two sides use to stop each other.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

/// Memory shared by parent and child, mapped before the fork.
#[repr(C, align(128))]
pub(crate) struct Control {
    /// Set by the parent when the child should stop producing.
    pub(crate) stop: AtomicU32,
    _pad: [u8; 124],
    /// The word bounced between the two processes by the `raw-spin` reference.
    pub(crate) spin: AtomicU64,
    _pad2: [u8; 120],
    /// A second flag on its own line (the direct-doorbell prototype's "armed" word).
    pub(crate) spare: AtomicU32,
    _pad3: [u8; 124],
    /// The reply word of the `raw-spin-pair` reference, on a line of its own.
    pub(crate) spin_back: AtomicU64,
    _pad4: [u8; 120],
    /// Messages each producer of the 2→2 rows sent (final once `done` counts it).
    pub(crate) sent: [Line; 2],
    /// Messages each consumer of the 2→2 rows received so far.
    pub(crate) received: [Line; 2],
    /// Producers of the 2→2 rows that have stopped.
    pub(crate) done: Line,
    /// Per consumer and producer (`c * 2 + p`) of the 2→2 rows: messages received, and the
    /// sum of their numbers, once the consumer has drained.
    pub(crate) tally_count: [Line; 4],
    pub(crate) tally_sum: [Line; 4],
}

/// A counter on a cache line (pair) of its own.
#[repr(C, align(128))]
pub(crate) struct Line(pub(crate) AtomicU64);

/// An anonymous shared mapping holding one [`Control`], zeroed.
pub(crate) struct ControlMap(*mut Control);

impl ControlMap {
    pub(crate) fn new() -> ControlMap {
        // SAFETY: a fresh anonymous shared mapping; it aliases nothing.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size_of::<Control>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of the control area failed");
        ControlMap(p.cast())
    }

    pub(crate) fn get(&self) -> &Control {
        // SAFETY: mapped, zeroed (a valid Control: all atomics), and only accessed atomically.
        unsafe { &*self.0 }
    }
}

impl Drop for ControlMap {
    fn drop(&mut self) {
        // SAFETY: our mapping, no longer referenced.
        unsafe { libc::munmap(self.0.cast(), size_of::<Control>()) };
    }
}

/// Pins the calling process to one CPU; returns whether it worked.
pub(crate) fn pin(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPUs this process may run on, as first seen (before `pin` narrows the affinity mask that
/// `available_parallelism` reads).
pub(crate) fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Forks a child that pins itself to `cpu` (if given), runs `job`, and exits with 0 (or 1 if
/// the job failed or panicked). The parent must be single-threaded, which the benchmark is.
pub(crate) fn spawn(cpu: Option<usize>, job: impl FnOnce() -> Result<(), String>) -> libc::pid_t {
    // SAFETY: the benchmark has one thread, so the child may run ordinary Rust code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        if let Some(cpu) = cpu {
            pin(cpu);
        }
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                eprintln!("ring-bench child: {e}");
                1
            }
            Err(_) => 1,
        };
        // SAFETY: leaves without running the parent's destructors a second time.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Peak resident memory (KiB) of the last child reaped, from `wait4`'s rusage.
pub(crate) static LAST_CHILD_PEAK_KIB: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// CPU time (user + system, ns) of the last child reaped, from `wait4`'s rusage.
pub(crate) static LAST_CHILD_CPU_NS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Whether the child has exited (reaping it), with its status.
pub(crate) fn try_reap(pid: libc::pid_t) -> Option<bool> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid for wait4 to fill.
    let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: our own child; WNOHANG does not block; both out-pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    (r == pid).then(|| {
        LAST_CHILD_PEAK_KIB.store(usage.ru_maxrss as u64, std::sync::atomic::Ordering::Relaxed);
        let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
        LAST_CHILD_CPU_NS.store(
            ns(usage.ru_utime) + ns(usage.ru_stime),
            std::sync::atomic::Ordering::Relaxed,
        );
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    })
}

/// Resets this process's peak resident set (`VmHWM`), so the next reading covers one figure.
pub(crate) fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident set since the last reset, in KiB.
pub(crate) fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits for the child; kills it after `limit`.
pub(crate) fn reap(pid: libc::pid_t, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Some(ok) = try_reap(pid) {
            return if ok {
                Ok(())
            } else {
                Err("child failed".into())
            };
        }
        if start.elapsed() > limit {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, core::ptr::null_mut(), 0);
            }
            return Err(format!("child still running after {limit:?}: killed"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A page-aligned buffer (kernel and glibc copies are slow when source and destination are a
/// few bytes apart modulo 4 KiB; page alignment keeps every transport out of that trap).
pub(crate) struct Buf {
    ptr: *mut u8,
    len: usize,
}

impl Buf {
    pub(crate) fn new(len: usize) -> Buf {
        let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).expect("buffer layout");
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Buf { ptr, len }
    }
}

impl core::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: our allocation of `len` bytes.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl core::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: our allocation of `len` bytes, borrowed mutably once.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(1), 4096).expect("layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}
