//! Fault-injection hooks for tests: places where a test can stop a process at an exact step
//! (to kill it there). Not part of the API; each costs one Relaxed load on a cold path.

use crate::sync::Ordering;
use crate::sync::raw::AtomicUsize;

/// The hook run by a creator after it has written the whole header except the ready word
/// (`layout::init`), as a `fn()` address; 0 when none.
static BEFORE_READY: AtomicUsize = AtomicUsize::new(0);

/// Makes this process run `hook` when it has built a new ring's header and not yet stored the
/// ready word: a test parks there and gets killed, leaving a sized, unready segment behind.
pub fn set_before_ready(hook: Option<fn()>) {
    // Relaxed: set and read by the same thread in the tests that use it.
    BEFORE_READY.store(hook.map_or(0, |f| f as usize), Ordering::Relaxed);
}

/// Runs the before-ready hook, if set.
pub(crate) fn before_ready() {
    // Relaxed: as above.
    let hook = BEFORE_READY.load(Ordering::Relaxed);
    if hook != 0 {
        // SAFETY: a non-zero value was stored from a `fn()` by `set_before_ready`.
        let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
}
