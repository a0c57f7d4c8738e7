//! Helpers shared by the integration tests: unique segment names that are removed even when a
//! test fails, and a watchdog for anything that could block.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmring::{Backing, SysvKey};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A segment name or key unique to this process and call, removed when dropped.
pub struct Unique {
    pub backing: Backing,
}

impl Unique {
    pub fn posix(tag: &str) -> Unique {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Unique {
            backing: Backing::Posix(format!("/shmring-test-{tag}-{}-{n}", std::process::id())),
        }
    }

    pub fn sysv() -> Unique {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // pid (< 2^22) in the high bits, the counter in the low ones: unique per process and call.
        let key = 0x4000_0000 | ((std::process::id() as i32 & 0x3F_FFFF) << 8) | (n as i32 & 0xFF);
        Unique {
            backing: Backing::SysV(SysvKey::Key(key)),
        }
    }

    pub fn name(&self) -> &str {
        match &self.backing {
            Backing::Posix(n) => n,
            _ => panic!("not a POSIX name"),
        }
    }

    /// `/dev/shm/NAME` for a POSIX name.
    pub fn path(&self) -> std::path::PathBuf {
        format!("/dev/shm{}", self.name()).into()
    }

    /// Writes `bytes` at `offset` of a POSIX segment, as another process could.
    pub fn poke(&self, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path())
            .unwrap();
        f.write_all_at(bytes, offset).unwrap();
    }

    pub fn builder(&self) -> shmring::RingBuilder {
        shmring::Ring::builder().backing(self.backing.clone())
    }
}

impl Drop for Unique {
    fn drop(&mut self) {
        let _ = shmring::remove(&self.backing);
    }
}

/// `b` as a small ring of `kind` whose messages go up to `max` bytes: 8 slots, or a record
/// ring of 1 KiB.
pub fn small(b: shmring::RingBuilder, kind: shmring::Kind, max: usize) -> shmring::RingBuilder {
    let b = b.kind(kind);
    if kind.is_records() {
        b.capacity(1024).max_message(max)
    } else {
        b.capacity(8).slot_size(max)
    }
}

/// Runs `f` on a thread and fails the test if it has not finished within `limit`.
pub fn with_watchdog<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: test still running after {limit:?}")
        }
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// Forks `f` as a child process that `_exit`s with its return value.
pub fn spawn(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `f`, which touches memory made before the fork and makes
    // async-signal-safe calls, then `_exit`s without running destructors or atexit handlers.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for every child; past the deadline kills them all and fails.
pub fn reap(pids: &[libc::pid_t], deadline: Duration) -> Vec<i32> {
    let start = Instant::now();
    let mut codes = vec![None; pids.len()];
    while codes.iter().any(Option::is_none) {
        for (i, &pid) in pids.iter().enumerate() {
            if codes[i].is_none() {
                let mut status = 0;
                // SAFETY: our own child; WNOHANG does not block.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    codes[i] = Some(if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        -libc::WTERMSIG(status)
                    });
                }
            }
        }
        if start.elapsed() > deadline {
            for &pid in pids {
                // SAFETY: killing and reaping our own children.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, core::ptr::null_mut(), 0);
                }
            }
            panic!("watchdog: children still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    codes.into_iter().map(Option::unwrap).collect()
}

/// Kills a child with SIGKILL (and leaves the reaping to `reap`).
pub fn kill(pid: libc::pid_t) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A 16-byte message numbered `i`: the number, then its complement (a torn message shows).
pub fn stamp(i: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m[8..].copy_from_slice(&(!i).to_le_bytes());
    m
}

/// The number of a [`stamp`]ed message, checking that it is whole.
pub fn unstamp(m: &[u8]) -> u64 {
    assert_eq!(m.len(), 16, "torn length");
    let i = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(
        u64::from_le_bytes(m[8..].try_into().unwrap()),
        !i,
        "torn message"
    );
    i
}

/// Parks a forked child until it is killed.
pub fn park_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// Types made only of atomics: all-zero bytes are a valid value, and sharing them between
/// processes through a mapping is sound.
///
/// # Safety
/// Implement only for such types.
pub unsafe trait ZeroIsValid {}
// SAFETY: atomics of integers.
unsafe impl ZeroIsValid for std::sync::atomic::AtomicU8 {}
// SAFETY: as above.
unsafe impl ZeroIsValid for AtomicU32 {}
// SAFETY: as above.
unsafe impl ZeroIsValid for std::sync::atomic::AtomicU64 {}

/// An anonymous shared mapping, zero-filled, made before forking: memory the parent and its
/// children share (ledgers, flags), accessed only through atomics. Unmapped on drop.
pub struct SharedMap {
    base: *mut u8,
    len: usize,
}

// SAFETY: shared memory accessed only through atomics.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    pub fn new(len: usize) -> SharedMap {
        // SAFETY: a fresh anonymous shared mapping at an address of the kernel's choosing;
        // no Rust object aliases it. NORESERVE: large ledgers are touched sparsely.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap of {len} shared bytes");
        SharedMap {
            base: p.cast(),
            len,
        }
    }

    /// The atomic of type `A` at byte `offset` (aligned for `A`, within the mapping).
    pub fn at<A: ZeroIsValid>(&self, offset: usize) -> &A {
        assert!(
            offset + size_of::<A>() <= self.len,
            "offset {offset} out of bounds"
        );
        assert_eq!(offset % align_of::<A>(), 0, "misaligned offset {offset}");
        // SAFETY: in bounds and aligned (checked); the mapping is zero-filled and lives as long
        // as `self`; `A: ZeroIsValid` is only implemented for types made of atomics, for which
        // all-zero bytes are a valid value and shared access is sound.
        unsafe { &*self.base.add(offset).cast::<A>() }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer referenced.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A pseudo-random sequence (xorshift64), so kill points and delays differ every run.
pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Words shared with forked children (flags, counters), in an anonymous mapping made before
/// the fork; index `i` is the `i`-th `u64`.
pub struct Flags(SharedMap);

impl Flags {
    pub fn new() -> Flags {
        Flags(SharedMap::new(4096))
    }
    pub fn set(&self, i: usize, v: u64) {
        self.0.at::<AtomicU64>(i * 8).store(v, Ordering::SeqCst);
    }
    pub fn get(&self, i: usize) -> u64 {
        self.0.at::<AtomicU64>(i * 8).load(Ordering::SeqCst)
    }
}

/// The environment variable that marks a re-executed test binary (`rerun`).
const CHILD: &str = "SHMRING_TEST_CHILD";

/// Whether this process is the child `rerun` started for `test`.
pub fn in_child(test: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(test)
}

/// Runs the test `test` again in a child: this test binary, re-executed with `--exact test`
/// and [`in_child`] true there, killed after `limit`. Returns its exit status and output. For
/// tests that must change what a process cannot undo (namespaces, mounts, users).
pub fn rerun(test: &str, limit: Duration) -> std::process::Output {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("watchdog: the child of {test} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// In a child: this thread gets a private mount namespace whose `/dev/shm` is a fresh tmpfs of
/// `size` (a mount option, such as `1m`), and a private IPC namespace. `Err` says why not (not
/// root, or no namespaces here), for the test to skip with.
pub fn private_dev_shm(size: &str) -> Result<(), String> {
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain system calls with valid, NUL-terminated arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC) != 0 {
            return Err(err("unshare(CLONE_NEWNS | CLONE_NEWIPC)"));
        }
        // Nothing mounted here may propagate back to the host.
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            core::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            core::ptr::null(),
        ) != 0
        {
            return Err(err("mount --make-rprivate /"));
        }
        let opts = std::ffi::CString::new(format!("size={size},mode=1777")).unwrap();
        if libc::mount(
            c"tmpfs".as_ptr(),
            c"/dev/shm".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            opts.as_ptr().cast(),
        ) != 0
        {
            return Err(err("mount tmpfs on /dev/shm"));
        }
    }
    Ok(())
}

/// The parent's side of a namespace test: passes if the child passed or skipped (printing
/// why), fails with the child's output otherwise.
pub fn expect_child(test: &str, out: &std::process::Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{test} (child): {text}");
    if let Some(line) = text.lines().find(|l| l.starts_with("skipped:")) {
        eprintln!("{test}: {line}");
    }
}
