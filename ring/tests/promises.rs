//! Promises the README and `docs/` make, attacked from outside: through the public API only,
//! with kills at chosen and random moments, crafted bytes at the offsets `docs/layout.md`
//! gives, timeouts shorter than every internal interval, and segments that vanish or change
//! hands under us. Each test here failed on the code before the fix it guards (issue 10).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    Flags, Unique, kill, park_forever, reap, spawn, stamp, unstamp, wait_until, with_watchdog,
};
use shmring::{
    Backing, Cleanup, Kind, OpenError, RecvError, Ring, SendError, SysvKey, TryClaimError,
    TryRecvError, TrySendError,
};

const LIMIT: Duration = Duration::from_secs(120);

/// Offsets from docs/layout.md.
const HEAD: u64 = 128;
const TAIL: u64 = 256;

fn errors(ring: &Ring) -> Vec<String> {
    ring.check()
        .into_iter()
        .filter(|f| f.error)
        .map(|f| f.message)
        .collect()
}

// ---- 1. A producer killed between its sequence store and its head store ----

/// The state a producer killed before its last `head` store leaves (issue 10's CLI
/// reproduction): three messages published, `head` saying two. The consumer drains them, and
/// then the ring must stay usable: a new producer attaches and sends, `check` agrees.
#[test]
fn spsc_head_left_behind_by_a_dead_producer_does_not_brick_the_ring() {
    let unique = Unique::posix("head-behind");
    let ring = unique
        .builder()
        .spsc()
        .capacity(8)
        .slot_size(16)
        .create()
        .unwrap();
    {
        let mut tx = ring.spsc_producer().unwrap();
        for m in [b"l1", b"l2", b"l3"] {
            tx.try_send(m).unwrap();
        }
    }
    unique.poke(HEAD, &2u64.to_le_bytes());
    assert!(errors(&ring).is_empty(), "{:?}", errors(&ring));
    let mut rx = ring.spsc_consumer().unwrap();
    let mut buf = [0u8; 16];
    for m in [b"l1", b"l2", b"l3"] {
        let n = rx.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], m);
    }
    // head (2) is now behind tail (3).
    assert!(errors(&ring).is_empty(), "{:?}", errors(&ring));
    assert_eq!(ring.len(), 0);
    let opened = unique.builder().open().unwrap();
    let mut tx = opened.spsc_producer().expect("a successor attaches");
    tx.try_send(b"l4").unwrap();
    let n = rx.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"l4");
    assert_eq!(ring.status().head, 4, "the successor repaired head");
    assert!(errors(&ring).is_empty(), "{:?}", errors(&ring));
}

/// SPSC producers SIGKILLed at random moments inside batch sends, hundreds of times, while the
/// consumer drains: every successor attaches and continues, and the consumer sees, per
/// producer generation, a gap-free prefix of what it sent, generations in order.
#[test]
fn spsc_producers_killed_inside_batches_never_brick_the_ring() {
    const GENERATIONS: u64 = 300;
    with_watchdog(LIMIT, || {
        let ring = Ring::builder()
            .spsc()
            .capacity(16)
            .slot_size(16)
            .anonymous()
            .create()
            .unwrap();
        let flags = Flags::new(); // [g] = 1: generation g attached; 2: its attach failed
        let consumer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut rx = ring.spsc_consumer().unwrap();
                let mut buf = [0u8; 16];
                let (mut generation, mut next, mut total) = (0u64, 0u64, 0u64);
                loop {
                    match rx.recv_timeout(&mut buf, LIMIT) {
                        // Between a kill and the next generation's attach, no producer lives.
                        Err(RecvError::Disconnected) => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Ok(n) => {
                            let v = unstamp(&buf[..n]);
                            let (g, i) = (v >> 32, v & 0xFFFF_FFFF);
                            assert!(g >= generation, "generation {g} after {generation}");
                            if g > generation {
                                (generation, next) = (g, 0);
                            }
                            assert_eq!(i, next, "generation {g}: gap or duplicate");
                            next += 1;
                            total += 1;
                            if g == GENERATIONS {
                                return total;
                            }
                        }
                        Err(e) => panic!("consumer: {e}"),
                    }
                }
            })
        };
        let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
        for g in 0..=GENERATIONS {
            let child = spawn(|| {
                let Ok(mut tx) = ring.spsc_producer() else {
                    flags.set(g as usize, 2);
                    return 2;
                };
                flags.set(g as usize, 1);
                let mut i = 0u64;
                let mut batch = [[0u8; 16]; 8];
                loop {
                    for (k, m) in batch.iter_mut().enumerate() {
                        *m = stamp(g << 32 | (i + k as u64));
                    }
                    match tx.try_send_batch(&batch) {
                        Ok(n) => i += n as u64,
                        Err(_) => return 3,
                    }
                    if g == GENERATIONS && i >= 8 {
                        return 0; // the last generation sends one batch and leaves
                    }
                }
            });
            assert!(wait_until(LIMIT, || flags.get(g as usize) != 0));
            assert_eq!(flags.get(g as usize), 1, "generation {g} could not attach");
            if g < GENERATIONS {
                std::thread::sleep(Duration::from_micros(common::xorshift(&mut rng) % 500));
                kill(child);
                assert_eq!(reap(&[child], LIMIT), [-libc::SIGKILL]);
            } else {
                assert_eq!(reap(&[child], LIMIT), [0]);
            }
        }
        let total = consumer.join().unwrap();
        assert!(total >= 8);
        assert!(errors(&ring).is_empty(), "{:?}", errors(&ring));
    });
}

// ---- 3. Blocking calls with timeouts shorter than the liveness interval ----

/// A ring whose other end (`peer`) lives in a child parked after attaching; the child's pid.
fn with_a_parked_peer(kind: Kind, capacity: u64, peer: shmring::Role) -> (Ring, libc::pid_t) {
    let ring = Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .slot_size(16)
        .anonymous()
        .create()
        .unwrap();
    let flags = Flags::new();
    let child = spawn(|| {
        let _endpoint: Box<dyn std::any::Any> = match peer {
            shmring::Role::Producer => Box::new(ring.producer().unwrap()),
            shmring::Role::Consumer => Box::new(ring.consumer().unwrap()),
        };
        flags.set(0, 1);
        park_forever()
    });
    assert!(wait_until(LIMIT, || flags.get(0) == 1));
    (ring, child)
}

/// Kills `child`, then repeats `call` while it times out (for at most 10 s); what it then says.
fn after_killing<T>(child: libc::pid_t, mut call: impl FnMut() -> Option<T>) -> (Option<T>, u32) {
    kill(child);
    assert_eq!(reap(&[child], LIMIT), [-libc::SIGKILL]);
    let start = Instant::now();
    let mut timeouts = 0;
    while start.elapsed() < Duration::from_secs(10) {
        match call() {
            None => timeouts += 1,
            outcome => return (outcome, timeouts),
        }
    }
    (None, timeouts)
}

/// A peer SIGKILLed while we loop on a timeout far shorter than the liveness interval (10 ms
/// against the default 100 ms): the loop must still see `Disconnected`, because the interval
/// runs across calls, not per call.
#[test]
fn short_timeouts_see_a_dead_producer() {
    for kind in [Kind::Spsc, Kind::Mpmc] {
        with_watchdog(LIMIT, move || {
            let (ring, child) = with_a_parked_peer(kind, 8, shmring::Role::Producer);
            let mut rx = ring.consumer().unwrap();
            let mut buf = [0u8; 16];
            let short = Duration::from_millis(10);
            assert_eq!(rx.recv_timeout(&mut buf, short), Err(RecvError::Timeout));
            let (outcome, timeouts) =
                after_killing(child, || match rx.recv_timeout(&mut buf, short) {
                    Err(RecvError::Timeout) => None,
                    other => Some(other),
                });
            assert_eq!(
                outcome,
                Some(Err(RecvError::Disconnected)),
                "{kind}: after {timeouts} timeouts"
            );
        });
    }
}

/// The same for a producer blocked on a full ring whose consumer is SIGKILLed.
#[test]
fn short_timeouts_see_a_dead_consumer() {
    for kind in [Kind::Spsc, Kind::Mpmc] {
        with_watchdog(LIMIT, move || {
            let (ring, child) = with_a_parked_peer(kind, 2, shmring::Role::Consumer);
            let mut tx = ring.producer().unwrap();
            let short = Duration::from_millis(10);
            let mut send = |m: &[u8]| tx.send_timeout(m, short).map_err(strip);
            send(b"a").unwrap();
            send(b"b").unwrap();
            assert_eq!(send(b"c"), Err(SendError::Timeout(())));
            let (outcome, timeouts) = after_killing(child, || match send(b"c") {
                Err(SendError::Timeout(())) => None,
                other => Some(other),
            });
            assert_eq!(
                outcome,
                Some(Err(SendError::Disconnected(()))),
                "{kind}: after {timeouts} timeouts"
            );
        });
    }
}

/// A send error without its message, for comparisons.
fn strip<T>(e: SendError<T>) -> SendError<()> {
    match e {
        SendError::Timeout(_) => SendError::Timeout(()),
        SendError::Disconnected(_) => SendError::Disconnected(()),
        SendError::TooLarge { len, max, .. } => SendError::TooLarge { msg: (), len, max },
        SendError::Corrupt(_, c) => SendError::Corrupt((), c),
        _ => panic!("unknown send error"),
    }
}

// ---- 2. gc never removes what it cannot prove is ours ----

/// Makes `/dev/shm/NAME` with `len` zero bytes except `text` at `at`.
fn foreign_posix(unique: &Unique, len: u64, at: u64, text: &[u8]) {
    let f = std::fs::File::create(unique.path()).unwrap();
    f.set_len(len).unwrap();
    drop(f);
    unique.poke(at, text);
}

fn gc_of(unique: &Unique, remove: bool) -> Vec<shmring::admin::Verdict> {
    shmring::admin::gc_matching(remove, |b| *b == unique.backing)
}

#[test]
fn gc_leaves_a_foreign_posix_object_alone() {
    let unique = Unique::posix("foreign");
    foreign_posix(&unique, 16 << 10, 64, b"not a ring, just 32 bytes of tx");
    for v in gc_of(&unique, true) {
        assert!(v.stale.is_none(), "{v:?}");
        assert!(v.removed.is_none(), "{v:?}");
    }
    assert!(unique.path().exists(), "gc removed a foreign object");
}

#[test]
fn gc_leaves_a_foreign_object_with_our_magic_but_no_valid_identity_alone() {
    let unique = Unique::posix("magic-only");
    foreign_posix(&unique, 16 << 10, 0, b"SHMRING\0");
    // A creator word naming a pid past any pid_max, with the consumer role bits.
    unique.poke(72, &(u64::from(u32::MAX - 5) | 2 << 32).to_le_bytes());
    for v in gc_of(&unique, true) {
        assert!(v.stale.is_none(), "{v:?}");
    }
    assert!(
        unique.path().exists(),
        "gc removed an object it cannot prove is a ring"
    );
}

#[test]
fn gc_leaves_a_foreign_sysv_segment_alone() {
    let unique = Unique::sysv();
    let Backing::SysV(SysvKey::Key(key)) = unique.backing else {
        unreachable!()
    };
    // SAFETY: plain syscalls on a segment this test owns; the mapping is written in bounds and
    // detached before returning.
    unsafe {
        let id = libc::shmget(key, 16 << 10, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
        assert!(id >= 0, "shmget");
        let p = libc::shmat(id, core::ptr::null(), 0).cast::<u8>();
        assert_ne!(p as isize, -1, "shmat");
        let text = b"someone else's data, not a ring";
        core::ptr::copy_nonoverlapping(text.as_ptr(), p.add(64), text.len());
        libc::shmdt(p.cast());
    }
    for v in gc_of(&unique, true) {
        assert!(v.stale.is_none(), "{v:?}");
    }
    assert!(
        unique
            .builder()
            .init_timeout(Duration::ZERO)
            .open()
            .is_err(),
        "still there, still not a ring"
    );
    // SAFETY: as above.
    let id = unsafe { libc::shmget(key, 0, 0) };
    assert!(id >= 0, "gc removed a foreign SysV segment");
}

// ---- 5. The creator's cleanup and a name that changed hands ----

#[test]
fn creator_cleanup_never_removes_a_name_that_now_belongs_to_someone_else() {
    let unique = Unique::posix("rehomed");
    let builder = unique.builder().spsc().capacity(8).slot_size(16);
    let first = builder.create().unwrap(); // Cleanup::Creator
    shmring::remove(&unique.backing).unwrap();
    let second = builder.clone().cleanup(Cleanup::Manual).create().unwrap();
    second.spsc_producer().unwrap().try_send(b"mine").unwrap();
    drop(first);
    assert!(
        unique.path().exists(),
        "the first creator removed the second's object"
    );
    let opened = unique.builder().open().unwrap();
    let mut buf = [0u8; 16];
    let n = opened.spsc_consumer().unwrap().try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"mine");
}

#[test]
fn sysv_creator_cleanup_never_removes_a_key_that_now_belongs_to_someone_else() {
    let unique = Unique::sysv();
    let builder = unique.builder().spsc().capacity(8).slot_size(16);
    let first = builder.create().unwrap();
    shmring::remove(&unique.backing).unwrap();
    let _second = builder.clone().cleanup(Cleanup::Manual).create().unwrap();
    drop(first);
    assert!(
        unique.builder().open().is_ok(),
        "the first creator removed the second's segment"
    );
}

// ---- 6. A SysV segment removed while it is being opened ----

/// One thread creates and removes a SysV ring over and over; another opens it. Every open
/// either attaches or says the segment is not there (or not ready): never an OS error.
#[test]
fn sysv_open_racing_a_remover_reports_not_found() {
    with_watchdog(LIMIT, || {
        let unique = Unique::sysv();
        let backing = unique.backing.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (backing, stop) = (backing.clone(), stop.clone());
            std::thread::spawn(move || {
                let b = Ring::builder()
                    .backing(backing.clone())
                    .spsc()
                    .capacity(8)
                    .slot_size(16)
                    .cleanup(Cleanup::Manual);
                while !stop.load(Ordering::Relaxed) {
                    if b.create().is_ok() {
                        let _ = shmring::remove(&backing);
                    }
                }
            })
        };
        let (mut opened, mut other) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            match Ring::builder()
                .backing(backing.clone())
                .init_timeout(Duration::from_millis(5))
                .open()
            {
                Ok(_) => opened += 1,
                Err(OpenError::NotFound | OpenError::NotInitialized { .. }) => other += 1,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    panic!("open while the segment vanishes: {e:?} ({opened} opened, {other} gone)")
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        eprintln!("{opened} opened, {other} not there");
    });
}

// ---- 7. Cursors at 2^32 − 1 and u64::MAX: no phantom message ----

#[test]
fn forged_cursors_never_show_a_phantom_message() {
    for start in [u64::from(u32::MAX), u64::MAX, (1u64 << 33) - 1] {
        for cap in [2u64, 8, 1024] {
            let unique = Unique::posix("phantom");
            let ring = unique
                .builder()
                .spsc()
                .capacity(cap)
                .slot_size(16)
                .create()
                .unwrap();
            unique.poke(HEAD, &start.to_le_bytes());
            unique.poke(TAIL, &start.to_le_bytes());
            let mut rx = ring.spsc_consumer().unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(
                rx.try_recv(&mut buf),
                Err(TryRecvError::Empty),
                "cap {cap}, cursors at {start}: a message nobody sent"
            );
            let mut tx = ring.spsc_producer().unwrap();
            for i in 0..3 * cap {
                tx.try_send(&stamp(i)).unwrap();
                let n = rx.try_recv(&mut buf).unwrap();
                assert_eq!(unstamp(&buf[..n]), i);
            }
            assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
            assert!(errors(&ring).is_empty(), "{:?}", errors(&ring));
        }
    }
}

// ---- 9. check reads no page that was never written ----

/// Blocks (512-byte units) a POSIX object occupies.
fn blocks(unique: &Unique) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(unique.path()).unwrap().blocks()
}

/// A 32 MiB ring whose slot pages were never written (as an older or lazier creator leaves
/// them: holes in tmpfs): `check` must not allocate them.
#[test]
fn check_does_not_allocate_pages_never_written() {
    let unique = Unique::posix("holes");
    let ring = unique
        .builder()
        .spsc()
        .capacity(8192)
        .slot_size(4000)
        .create()
        .unwrap();
    // Punch the slot area back to holes.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(unique.path())
        .unwrap();
    // SAFETY: fallocate on an fd we own, within the file.
    let r = unsafe {
        libc::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            8192,
            ring.segment_size() as i64 - 8192,
        )
    };
    assert_eq!(r, 0, "punch hole: {}", std::io::Error::last_os_error());
    let before = blocks(&unique);
    assert!(errors(&ring).is_empty(), "{:?}", errors(&ring));
    let after = blocks(&unique);
    assert!(
        after <= before + 64,
        "check allocated {} KiB of a ring that holds nothing",
        (after - before) / 2
    );
}

// ---- Leaked guards (mem::forget) do not stall or hide anything ----

/// An MPMC producer that leaks a claimed slot and then leaves: the claim is given up when the
/// producer drops (as a dropped claim is), so the message another producer sent after it is
/// received, never hidden behind the stuck slot.
#[test]
fn a_leaked_mpmc_claim_is_given_up_when_its_producer_drops() {
    with_watchdog(LIMIT, || {
        let ring = Ring::builder()
            .mpmc()
            .capacity(8)
            .slot_size(16)
            .heap()
            .create()
            .unwrap();
        let mut rx = ring.mpmc_consumer().unwrap();
        let mut a = ring.mpmc_producer().unwrap();
        let mut b = ring.mpmc_producer().unwrap();
        std::mem::forget(a.try_claim().unwrap());
        b.try_send(b"after").unwrap();
        drop(a);
        drop(b);
        let mut buf = [0u8; 16];
        let n = rx
            .recv_timeout(&mut buf, Duration::from_secs(5))
            .expect("the message behind the leaked claim");
        assert_eq!(&buf[..n], b"after");
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    });
}

/// An MPMC consumer that leaks a read guard and then leaves: the slot is released when the
/// consumer drops (counted as reclaimed: its message went to a consumer that never released
/// it), so the producers are not stalled for good.
#[test]
fn a_leaked_mpmc_read_guard_is_released_when_its_consumer_drops() {
    with_watchdog(LIMIT, || {
        let ring = Ring::builder()
            .mpmc()
            .capacity(2)
            .slot_size(16)
            .heap()
            .create()
            .unwrap();
        let mut tx = ring.mpmc_producer().unwrap();
        let mut keep = ring.mpmc_consumer().unwrap();
        let mut rx = ring.mpmc_consumer().unwrap();
        tx.try_send(b"0").unwrap();
        tx.try_send(b"1").unwrap();
        std::mem::forget(rx.try_read().unwrap());
        drop(rx);
        let mut buf = [0u8; 16];
        let n = keep.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"1");
        tx.send_timeout(b"2", Duration::from_secs(5))
            .expect("the slot the leaked guard held is free again");
        tx.send_timeout(b"3", Duration::from_secs(5)).unwrap();
        assert_eq!(ring.status().reclaimed, 1);
    });
}

/// An SPSC consumer that leaks a read guard leaves the message in the ring: the next consumer
/// receives it (the consumer cursor moves only on release).
#[test]
fn a_leaked_spsc_read_guard_leaves_the_message_for_the_next_consumer() {
    let ring = Ring::builder()
        .spsc()
        .capacity(4)
        .slot_size(16)
        .heap()
        .create()
        .unwrap();
    let mut tx = ring.spsc_producer().unwrap();
    tx.try_send(b"kept").unwrap();
    {
        let mut rx = ring.spsc_consumer().unwrap();
        std::mem::forget(rx.try_read().unwrap());
    }
    let mut rx = ring.spsc_consumer().unwrap();
    let mut buf = [0u8; 16];
    let n = rx.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"kept");
}

// ---- 8. What the try calls, len, is_empty and is_full say must agree ----

/// A committed message behind a producer's uncommitted claim: the ring is not empty, and
/// `try_recv` says so (`Pending`), where it used to answer `Empty`.
#[test]
fn mpmc_try_recv_behind_an_uncommitted_claim_is_pending_not_empty() {
    let ring = Ring::builder()
        .mpmc()
        .capacity(4)
        .slot_size(16)
        .heap()
        .create()
        .unwrap();
    let mut rx = ring.mpmc_consumer().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    assert!(ring.is_empty() && rx.is_empty());
    let mut a = ring.mpmc_producer().unwrap();
    let mut b = ring.mpmc_producer().unwrap();
    let mut slot = a.try_claim().unwrap();
    b.try_send(b"b").unwrap();
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Pending));
    assert!(rx.try_recv(&mut buf).unwrap_err().would_block());
    assert_eq!((ring.len(), rx.len(), ring.is_empty()), (2, 2, false));
    slot[..1].copy_from_slice(b"a");
    slot.commit(1).unwrap();
    for m in [b"a", b"b"] {
        let n = rx.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], m);
    }
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    assert!(ring.is_empty());
}

/// The oldest slot still being read by a consumer: the ring is not full, and `try_send` says
/// so (`Pending`), where it used to answer `Full`.
#[test]
fn mpmc_try_send_behind_a_slot_being_read_is_pending_not_full() {
    let ring = Ring::builder()
        .mpmc()
        .capacity(2)
        .slot_size(16)
        .heap()
        .create()
        .unwrap();
    let mut tx = ring.mpmc_producer().unwrap();
    let mut rx = ring.mpmc_consumer().unwrap();
    tx.try_send(b"0").unwrap();
    tx.try_send(b"1").unwrap();
    assert!(ring.is_full() && tx.is_full());
    assert!(matches!(tx.try_send(b"2"), Err(TrySendError::Full(_))));
    let guard = rx.try_read().unwrap();
    assert_eq!((ring.len(), ring.is_full()), (1, false));
    assert!(matches!(tx.try_send(b"2"), Err(TrySendError::Pending(_))));
    assert!(matches!(tx.try_claim(), Err(TryClaimError::Pending)));
    drop(guard);
    tx.try_send(b"2").unwrap();
    assert!(ring.is_full());
}

/// SPSC: `is_full` and `is_empty` agree with the try calls on a quiescent ring.
#[test]
fn spsc_len_agrees_with_the_try_calls() {
    let ring = Ring::builder()
        .spsc()
        .capacity(2)
        .slot_size(16)
        .heap()
        .create()
        .unwrap();
    let mut tx = ring.spsc_producer().unwrap();
    let mut rx = ring.spsc_consumer().unwrap();
    let mut buf = [0u8; 16];
    assert!(ring.is_empty() && rx.is_empty() && tx.is_empty());
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    tx.try_send(b"0").unwrap();
    tx.try_send(b"1").unwrap();
    assert!(ring.is_full() && rx.is_full() && tx.is_full());
    assert!(matches!(tx.try_send(b"2"), Err(TrySendError::Full(_))));
    let guard = rx.try_read().unwrap();
    // SPSC releases only on drop: the slot still counts.
    assert!(ring.is_full());
    drop(guard);
    assert_eq!(ring.len(), 1);
}

/// Cursors past `u64::MAX`: `len` is the wrapping difference, not 0.
#[test]
fn len_uses_the_wrapping_difference() {
    for kind in [Kind::Spsc, Kind::Mpmc] {
        let unique = Unique::posix("wrap-len");
        let ring = unique
            .builder()
            .kind(kind)
            .capacity(8)
            .slot_size(16)
            .create()
            .unwrap();
        unique.poke(HEAD, &1u64.to_le_bytes());
        unique.poke(TAIL, &(u64::MAX - 1).to_le_bytes());
        assert_eq!(ring.len(), 3, "{kind}");
        assert_eq!(ring.status().len(), 3, "{kind}");
    }
}
