//! A guard against a POSIX segment shrunk (`ftruncate`) after this process mapped it.
//!
//! Touching a page of a shared file mapping past the file's end raises `SIGBUS`, and any
//! process with write access to a POSIX object can shrink it at any time. A library cannot make
//! that impossible (memfd seals do not apply to `shm_open` objects), so it contains it, the way
//! Wayland compositors guard client buffers: a `SIGBUS` handler that, when the faulting address
//! lies in a guarded mapping, maps private zero pages over the rest of that mapping and returns.
//! The faulting access then completes on a zero page, the mapping is marked *tripped*, a send or
//! commit that wrote onto it reports the loss instead of success, and every endpoint's next
//! slow-path call (a full or empty ring, a liveness check) reports
//! [`Corruption::Shrunk`](crate::Corruption::Shrunk), or
//! [`Corruption::OutOfSpace`](crate::Corruption::OutOfSpace) when the object still has its size
//! (a page could not be allocated: the filesystem is full). Zeroes are values the algorithms
//! already validate as hostile input, so nothing between the fault and that report can go out of
//! bounds.
//!
//! A fault outside every guarded mapping is passed to the handler that was installed before
//! ours, or, if that was the default, re-raised with the default action: the process dies of
//! it as it would have without us.
//!
//! The table is a fixed array of atomics, so the handler reads it without locks or allocation
//! (async-signal-safe); at most [`SLOTS`] mappings are guarded at a time, later ones are not
//! (`Segment::tripped` then always says no).

use crate::sync::Ordering;
use crate::sync::raw::{AtomicBool, AtomicUsize};
use core::ptr::{self, NonNull};
use std::sync::OnceLock;

/// Mappings guarded at once.
pub(crate) const SLOTS: usize = 64;

struct Entry {
    /// Start address; 0 when the entry is free (or being filled).
    start: AtomicUsize,
    /// Length in bytes; non-zero while the entry is taken.
    len: AtomicUsize,
    /// A fault in this mapping was contained.
    tripped: AtomicBool,
}

static TABLE: [Entry; SLOTS] = [const {
    Entry {
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        tripped: AtomicBool::new(false),
    }
}; SLOTS];

/// The `SIGBUS` action before ours (read by the handler: `OnceLock::get` is one atomic load).
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// The system page size, read once before the handler is installed.
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// A guarded mapping; unguarded when dropped.
#[derive(Debug)]
pub(crate) struct Guard(usize);

/// Guards `len` bytes at `base` (a whole `MAP_SHARED` mapping of a POSIX object). `None` if the
/// table is full or the handler could not be installed.
pub(crate) fn guard(base: NonNull<u8>, len: usize) -> Option<Guard> {
    if len == 0 || !install() {
        return None;
    }
    for (i, e) in TABLE.iter().enumerate() {
        // AcqRel/Relaxed: `len` is the ownership flag; its taker alone fills the entry. Acquire
        // pairs with the Release store of `len` in `Drop` (the previous owner is done with
        // the entry); failure Relaxed: the entry is taken, try the next.
        if e.len
            .compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: published with `start` by the Release store just below.
            e.tripped.store(false, Ordering::Relaxed);
            // Release: pairs with the handler's Acquire load: a non-zero start comes with its
            // length and a cleared flag.
            e.start.store(base.as_ptr() as usize, Ordering::Release);
            return Some(Guard(i));
        }
    }
    None
}

impl Guard {
    /// Whether a fault in this mapping was contained: the object was shrunk under us, or a
    /// page of it could not be allocated.
    pub(crate) fn tripped(&self) -> bool {
        // Acquire: pairs with the handler's Release store.
        TABLE[self.0].tripped.load(Ordering::Acquire)
    }

    /// The flag [`tripped`](Self::tripped) reads, for a hot path that checks it with one load.
    /// Valid while this guard lives (the entry is reused after).
    pub(crate) fn flag(&self) -> &'static AtomicBool {
        &TABLE[self.0].tripped
    }
}

/// The flag of an unguarded mapping: never set.
pub(crate) static NEVER: AtomicBool = AtomicBool::new(false);

impl Drop for Guard {
    fn drop(&mut self) {
        let e = &TABLE[self.0];
        // Release (both): `start` pairs with the handler's Acquire load of it (a zero start
        // stops it matching the range), `len` with the Acquire of the next taker's CAS in
        // `guard` (the entry is reused only after this). The owner unmaps only after this, so
        // a late fault there is a plain SIGSEGV, not ours.
        e.start.store(0, Ordering::Release);
        e.len.store(0, Ordering::Release);
    }
}

/// Installs the handler once; whether it is in place.
fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            // Relaxed: stored before the handler is installed (`sigaction` below), which is what
            // orders it before any read in the handler.
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: a zeroed sigaction is a valid "no handler, empty mask" value; we fill in the
        // handler and flags, and sigaction copies both structs.
        unsafe {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut old: libc::sigaction = core::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut old) != 0 {
                return false;
            }
            let _ = PREVIOUS.set(old);
        }
        true
    })
}

/// The `SIGBUS` handler. Async-signal-safe: atomics, `mmap`, `sigaction` and `raise` only.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler; for SIGBUS `si_addr`
    // is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    // Relaxed: set before this handler was installed (`install`).
    let page = PAGE.load(Ordering::Relaxed);
    for e in &TABLE {
        // Acquire: pairs with the Release in `guard`.
        let start = e.start.load(Ordering::Acquire);
        // Relaxed: ordered after `start` by its Acquire, which pairs with the Release store of
        // `start` made after `len` was set.
        let len = e.len.load(Ordering::Relaxed);
        if start == 0 || addr < start || addr - start >= len {
            continue;
        }
        let from = addr & !(page - 1);
        let rest = start + len - from;
        // SAFETY: [from, start + len) lies inside a mapping this process made and still holds
        // (the owner unguards before unmapping); replacing it with private zero pages changes
        // what it reads, never its validity. MAP_FIXED over our own range is the point.
        let p = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                rest,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            // Release: pairs with the Acquire in `Guard::tripped`.
            e.tripped.store(true, Ordering::Release);
            return; // the faulting access is retried on a zero page
        }
        break;
    }
    forward(sig, info, ctx);
}

/// Hands a fault that is not ours to the previous handler, or dies of it as if unhandled.
fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if let Some(old) = PREVIOUS.get() {
        let h = old.sa_sigaction;
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed as an SA_SIGINFO handler with this
                // signature; we call it as the kernel would have.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { core::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: as above, for a plain handler.
                let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(h) };
                f(sig);
            }
            return;
        }
    }
    // Default action: restore it and return; the access faults again and the process dies of
    // SIGBUS (with its core dump), as without this handler.
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; sigaction is async-signal-safe.
    unsafe {
        let mut dfl: libc::sigaction = core::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, ptr::null_mut());
    }
}
