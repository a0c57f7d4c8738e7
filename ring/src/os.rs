//! The operating-system calls that are not about memory, each a thin wrapper named after the
//! call it makes: `futex(2)`, `membarrier(2)`, `pthread_atfork(3)`, `getpid(2)`, `kill(pid, 0)`,
//! and the reads of `/proc/PID/stat` and `/proc/sys/kernel/pid_max`. (Memory calls live in
//! `segment`.)
//!
//! Nothing here knows about rings. Everything that runs on a liveness check is
//! async-signal-safe and allocation-free, so a child created by `fork` may use it before it
//! `exec`s or `_exit`s. Under loom the futex and the process checks are not used: `sync`
//! emulates the futex and `sync::death` stands for process death.
#![cfg_attr(loom, allow(dead_code))]

use core::ptr;
use std::time::Duration;

/// `futex(FUTEX_WAIT)` on `word` while it holds `expected`, for at most `timeout`. Spurious
/// returns (a changed word, a signal, the timeout) are fine: callers re-check. No
/// `FUTEX_PRIVATE_FLAG`: the word may live in memory shared with other processes.
///
/// # Safety
/// `word` points at a 4-byte aligned `u32` that stays mapped for the whole call and is only
/// ever accessed atomically.
pub(crate) unsafe fn futex_wait(word: *const u32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let ts_ptr = ts.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: `word` is live and aligned (caller's duty); FUTEX_WAIT only reads it. `ts_ptr` is
    // null or points at a timespec that outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            ptr::null::<u32>(),
            0u32,
        );
    }
}

/// `futex(FUTEX_WAKE)` of every waiter on `word`.
///
/// # Safety
/// As for [`futex_wait`].
pub(crate) unsafe fn futex_wake(word: *const u32) {
    // SAFETY: as in `futex_wait`; FUTEX_WAKE does not access the word's value.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE,
            i32::MAX,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Whether `futex(2)` is there: a `FUTEX_WAKE` of a word nobody waits on fails only with
/// `ENOSYS` (no such call, or a seccomp filter that says so).
pub(crate) fn futex_available() -> bool {
    let word = 0u32;
    // SAFETY: `word` is a live, aligned u32 for the whole call; FUTEX_WAKE does not access it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            &raw const word,
            libc::FUTEX_WAKE,
            1,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        )
    };
    r >= 0 || nix::errno::Errno::last() != nix::errno::Errno::ENOSYS
}

/// `membarrier(cmd, 0, 0)`; whether it succeeded.
pub(crate) fn membarrier(cmd: libc::c_int) -> bool {
    // SAFETY: membarrier takes no pointers; the kernel checks any command value.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0u32) == 0 }
}

/// `membarrier(MEMBARRIER_CMD_QUERY)`: the mask of supported commands, negative on error.
pub(crate) fn membarrier_query() -> libc::c_long {
    // SAFETY: as in `membarrier`.
    unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_QUERY, 0u32, 0u32) }
}

/// `pthread_atfork(NULL, NULL, child)`: runs `child` in every child this process forks.
pub(crate) fn pthread_atfork_child(child: extern "C" fn()) {
    // SAFETY: registering a handler has no preconditions; the caller's handler must be
    // async-signal-safe, as a fork child handler runs where only such calls are allowed (both
    // callers' handlers make one system call and store an atomic).
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

/// `getpid(2)`.
pub(crate) fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stat {
    /// It exists: its state letter (field 3) and start time in clock ticks since boot
    /// (field 22).
    Found {
        /// `R`, `S`, `Z`, ...
        state: u8,
        /// Start time, clock ticks since boot.
        start: u64,
    },
    /// `/proc` is mounted and has no such process.
    NoSuchProcess,
    /// `/proc` cannot tell (not mounted, unreadable, malformed).
    Unreadable,
}

/// Reads `/proc/PID/stat` with raw `open`/`read`/`close` into stack buffers (async-signal-safe,
/// no allocation).
pub(crate) fn proc_stat(pid: u32) -> Stat {
    let mut path = [0u8; 32];
    let mut n = 0;
    for &b in b"/proc/" {
        path[n] = b;
        n += 1;
    }
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut p = pid;
    loop {
        digits[d] = b'0' + (p % 10) as u8;
        d += 1;
        p /= 10;
        if p == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        path[n] = digits[d];
        n += 1;
    }
    for &b in b"/stat" {
        path[n] = b;
        n += 1;
    }
    // path[n] is already the terminating NUL (at most 6 + 10 + 5 = 21 bytes used).
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return match nix::errno::Errno::last() {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH if proc_mounted() => {
                Stat::NoSuchProcess
            }
            _ => Stat::Unreadable,
        };
    }
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: writes at most `buf.len() - len` bytes into `buf[len..]`.
        let r = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if r <= 0 {
            break;
        }
        len += r as usize;
    }
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    parse_stat(&buf[..len]).map_or(Stat::Unreadable, |(state, start)| Stat::Found {
        state,
        start,
    })
}

/// Whether `/proc/self/stat` exists (`access(2)`): tells "no such process" from "no `/proc`".
fn proc_mounted() -> bool {
    // SAFETY: NUL-terminated literal path.
    unsafe { libc::access(c"/proc/self/stat".as_ptr(), libc::F_OK) == 0 }
}

/// Parses `pid (comm) S ppid ... starttime ...`; `comm` may contain spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &[u8]) -> Option<(u8, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // `state` was field 3; starttime is field 22, 19 further on.
    let start = fields.nth(18)?;
    let mut v: u64 = 0;
    for &b in start {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((state, v))
}

/// `kill(pid, 0)`: whether a process with this pid may exist (false only on `ESRCH`). Cannot
/// tell a reused pid from the original.
pub(crate) fn kill_probe(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// The largest pid of this system (`/proc/sys/kernel/pid_max`), or Linux's limit (2^22) when
/// that cannot be read.
pub(crate) fn pid_max() -> u32 {
    const PID_MAX_LIMIT: u32 = 1 << 22;
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(PID_MAX_LIMIT)
}

/// The login name of `uid`, from `/etc/passwd` (no NSS: a user known only to LDAP reads as
/// unknown).
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: the async doorbell (`doorbell`).
#[cfg(feature = "doorbell")]
pub(crate) fn eventfd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: no pointers; the result is checked before it is owned.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter, making it readable. Never blocks: a saturated counter
/// (`EAGAIN`) is readable already.
#[cfg(feature = "doorbell")]
pub(crate) fn eventfd_signal(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to a descriptor the caller keeps open.
    unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
}

/// Reads (and so clears) an eventfd's counter; `EAGAIN` (already clear) is fine.
#[cfg(feature = "doorbell")]
pub(crate) fn eventfd_drain(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into a live u64 from a descriptor the caller keeps open.
    unsafe { libc::read(fd.as_raw_fd(), (&raw mut n).cast(), 8) };
}

/// One entry of `futex_waitv(2)` (`struct futex_waitv`).
#[cfg(feature = "doorbell")]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

#[cfg(feature = "doorbell")]
impl FutexWaitv {
    /// Wait while the 32-bit `word` holds `val`; `private`: a word of this process only.
    pub(crate) fn new(word: *const u32, val: u32, private: bool) -> FutexWaitv {
        const FUTEX2_SIZE_U32: u32 = 0x02;
        const FUTEX2_PRIVATE: u32 = 128;
        FutexWaitv {
            val: u64::from(val),
            uaddr: word as u64,
            flags: FUTEX2_SIZE_U32 | if private { FUTEX2_PRIVATE } else { 0 },
            reserved: 0,
        }
    }
}

/// What `futex_waitv(2)` says.
#[cfg(feature = "doorbell")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waitv {
    /// Woken, a word differed, a signal, or the timeout: look again.
    Returned,
    /// The kernel has no `futex_waitv` (before Linux 5.16, or a seccomp filter).
    Unsupported,
}

/// `futex_waitv(waiters, 0, timeout, CLOCK_MONOTONIC)`: sleeps until any word changes from its
/// value or is woken, or `timeout` passes. The kernel only reads the words, each through its
/// fault-tolerant user access, so an address that is not (or no longer) mapped fails the call
/// with `EFAULT` (reported as `Returned`) instead of faulting this process, and nothing is ever
/// written through them: the call is safe whatever the addresses are.
#[cfg(feature = "doorbell")]
pub(crate) fn futex_waitv(waiters: &[FutexWaitv], timeout: Option<Duration>) -> Waitv {
    let deadline = timeout.map(|d| {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
        let nanos = now.tv_nsec as u64 + u64::from(d.subsec_nanos());
        libc::timespec {
            tv_sec: now
                .tv_sec
                .saturating_add(libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX))
                .saturating_add((nanos / 1_000_000_000) as libc::time_t),
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        }
    });
    let ts = deadline.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: `waiters` is a live array of `len` entries laid out as the kernel expects; the
    // words are only read by the kernel, with fault handling (above); `ts` is null or a live
    // timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            ts,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r < 0 && nix::errno::Errno::last() == nix::errno::Errno::ENOSYS {
        return Waitv::Unsupported;
    }
    Waitv::Returned
}

/// `futex(FUTEX_WAKE_PRIVATE)` of every waiter on a word of this process.
///
/// # Safety
/// As for [`futex_wait`].
#[cfg(feature = "doorbell")]
pub(crate) unsafe fn futex_wake_private(word: *const u32) {
    // SAFETY: as in `futex_wake`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_counts_from_the_last_paren() {
        let line =
            b"42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some((b'S', 987_654)));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_has_a_stat() {
        assert!(matches!(proc_stat(getpid()), Stat::Found { .. }));
        assert!(kill_probe(getpid()));
        assert!(!kill_probe(u32::MAX));
        assert!(pid_max() >= 2);
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
