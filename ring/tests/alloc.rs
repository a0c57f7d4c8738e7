//! The send/receive hot path allocates nothing: a counting global allocator watches 100,000
//! messages through every API of both ring kinds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use shmring::Ring;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts the allocations made by this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

const MESSAGES: u64 = 100_000;

#[test]
fn spsc_hot_path_allocates_nothing() {
    let ring = Ring::builder()
        .spsc()
        .capacity(64)
        .slot_size(64)
        .heap()
        .create()
        .unwrap();
    let mut tx = ring.spsc_producer().unwrap();
    let mut rx = ring.spsc_consumer().unwrap();
    let mut buf = [0u8; 64];
    let n = allocations_in(|| {
        for i in 0..MESSAGES {
            let bytes = i.to_le_bytes();
            match i % 4 {
                0 => {
                    tx.try_send(&bytes).unwrap();
                    assert_eq!(rx.try_recv(&mut buf).unwrap(), 8);
                }
                1 => {
                    let mut s = tx.try_claim().unwrap();
                    s[..8].copy_from_slice(&bytes);
                    s.commit(8).unwrap();
                    assert_eq!(&*rx.try_read().unwrap(), &bytes);
                }
                2 => {
                    tx.try_send_value(i).unwrap();
                    assert_eq!(rx.try_recv_value::<u64>().unwrap(), i);
                }
                _ => {
                    assert_eq!(tx.try_send_batch(&[bytes, bytes]).unwrap(), 2);
                    assert_eq!(rx.try_recv_batch(8, |m| assert_eq!(m, bytes)).unwrap(), 2);
                }
            }
        }
        // Full and empty are errors without allocation too.
        assert!(rx.try_recv(&mut buf).is_err());
    });
    assert_eq!(n, 0, "the SPSC hot path allocated {n} times");
}

#[test]
fn mpmc_hot_path_allocates_nothing() {
    let ring = Ring::builder()
        .mpmc()
        .capacity(64)
        .slot_size(64)
        .heap()
        .create()
        .unwrap();
    let mut tx = ring.mpmc_producer().unwrap();
    let mut rx = ring.mpmc_consumer().unwrap();
    let mut buf = [0u8; 64];
    let n = allocations_in(|| {
        for i in 0..MESSAGES {
            let bytes = i.to_le_bytes();
            match i % 3 {
                0 => {
                    tx.try_send(&bytes).unwrap();
                    assert_eq!(rx.try_recv(&mut buf).unwrap(), 8);
                }
                1 => {
                    let mut s = tx.try_claim().unwrap();
                    s[..8].copy_from_slice(&bytes);
                    s.commit(8).unwrap();
                    assert_eq!(&*rx.try_read().unwrap(), &bytes);
                }
                _ => {
                    tx.try_send_value(i).unwrap();
                    assert_eq!(rx.try_recv_value::<u64>().unwrap(), i);
                }
            }
        }
        assert!(rx.try_recv(&mut buf).is_err());
    });
    assert_eq!(n, 0, "the MPMC hot path allocated {n} times");
}

#[test]
fn footprint_is_the_segment_size() {
    let b = Ring::builder().mpmc().capacity(1024).slot_size(100).heap();
    let predicted = b.segment_size().unwrap();
    let ring = b.create().unwrap();
    assert_eq!(ring.segment_size(), predicted);
    // Header (8 KiB) plus 1024 slots of 16 control bytes + 100 payload bytes, rounded to 8.
    assert_eq!(predicted, 8192 + 1024 * 120);
}
