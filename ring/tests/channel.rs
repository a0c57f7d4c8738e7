//! The kind-erased `Producer` / `Consumer`, through the public API only: the same behaviour on
//! both kinds, and `std::io::Write` / `std::io::Read` as their docs promise (one message per
//! call, nothing cut, nothing dropped, the message left in the ring when it cannot be given).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use common::with_watchdog;
use shmring::{Kind, Ring, TryRecvError, TrySendError};

const KINDS: [Kind; 2] = [Kind::Spsc, Kind::Mpmc];

fn ring(kind: Kind, capacity: u64) -> Ring {
    Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .slot_size(8)
        .heap()
        .create()
        .unwrap()
}

#[test]
fn io_write_sends_one_message_per_call_and_refuses_what_does_not_fit() {
    for kind in KINDS {
        let ring = ring(kind, 2);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        assert_eq!(tx.kind(), kind);
        assert_eq!(tx.write(b"abc").unwrap(), 3);
        let e = tx.write(b"too long!").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{kind}: {e}");
        assert_eq!(tx.write(b"").unwrap(), 0, "an empty buffer sends nothing");
        assert_eq!(tx.write(b"de").unwrap(), 2);
        // Full: non-blocking says so at once; blocking with a timeout times out.
        tx.set_nonblocking(true);
        assert_eq!(tx.write(b"x").unwrap_err().kind(), ErrorKind::WouldBlock);
        tx.set_nonblocking(false);
        tx.set_timeout(Some(Duration::from_millis(20)));
        assert_eq!(tx.write(b"x").unwrap_err().kind(), ErrorKind::TimedOut);
        let mut buf = [0u8; 8];
        assert_eq!(rx.try_recv(&mut buf), Ok(3));
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(rx.try_recv(&mut buf), Ok(2));
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty), "{kind}");
        // Every consumer gone and the ring full: a broken pipe.
        drop(rx);
        tx.write_all(b"1").unwrap();
        tx.write_all(b"2").unwrap();
        assert_eq!(tx.write(b"3").unwrap_err().kind(), ErrorKind::BrokenPipe);
    }
}

#[test]
fn io_read_gives_whole_messages_and_leaves_what_it_cannot_give() {
    with_watchdog(Duration::from_secs(60), || {
        for kind in KINDS {
            let ring = ring(kind, 4);
            let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
            tx.try_send(b"hello").unwrap();
            tx.try_send(b"").unwrap();
            tx.try_send(b"end").unwrap();
            let mut small = [0u8; 2];
            let e = Read::read(&mut rx, &mut small).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{kind}: {e}");
            let mut buf = [0u8; 8];
            assert_eq!(
                Read::read(&mut rx, &mut buf).unwrap(),
                5,
                "the message stayed"
            );
            assert_eq!(&buf[..5], b"hello");
            // A zero-length message is received and reported, not taken for the end.
            let e = Read::read(&mut rx, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{kind}: {e}");
            assert_eq!(Read::read(&mut rx, &mut buf).unwrap(), 3);
            rx.set_nonblocking(true);
            assert_eq!(
                Read::read(&mut rx, &mut buf).unwrap_err().kind(),
                ErrorKind::WouldBlock
            );
            rx.set_nonblocking(false);
            rx.set_timeout(Some(Duration::from_millis(20)));
            assert_eq!(
                Read::read(&mut rx, &mut buf).unwrap_err().kind(),
                ErrorKind::TimedOut
            );
            // The producer leaves: the end of the stream, after what it sent.
            tx.try_send(b"last").unwrap();
            drop(tx);
            rx.set_timeout(None);
            let mut all = Vec::new();
            rx.read_to_end(&mut all).unwrap();
            assert_eq!(all, b"last", "{kind}");
        }
    });
}

#[test]
fn the_whole_api_behaves_alike_on_both_kinds() {
    with_watchdog(Duration::from_secs(60), || {
        for kind in KINDS {
            let ring = ring(kind, 4);
            let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
            assert_eq!((tx.capacity(), rx.slot_size()), (4, 8));
            assert!(tx.is_peer_alive() && rx.is_peer_alive());
            assert_eq!(tx.try_send_batch(&[b"a", b"b", b"c"]).unwrap(), 3);
            assert_eq!((rx.len(), ring.len()), (3, 3));
            let mut got = Vec::new();
            assert_eq!(rx.try_recv_batch(2, |m| got.push(m.to_vec())), Ok(2));
            assert_eq!(got, [b"a", b"b"]);
            let mut slot = tx.claim_timeout(Duration::from_secs(5)).unwrap();
            slot[..2].copy_from_slice(b"zc");
            slot.commit(2).unwrap();
            tx.try_send_value(7u32).unwrap();
            assert_eq!(&*rx.read_timeout(Duration::from_secs(5)).unwrap(), b"c");
            assert_eq!(&*rx.try_read().unwrap(), b"zc");
            assert_eq!(rx.try_recv_value::<u32>(), Ok(7));
            assert!(rx.is_empty() && !rx.is_full());
            let too_long = [0u8; 9];
            assert!(matches!(
                tx.try_send_batch(&[&b"ok"[..], &too_long[..]]),
                Err(TrySendError::TooLarge { msg: 1, len: 9, .. })
            ));
            let mut buf = [0u8; 8];
            assert_eq!(
                rx.recv(&mut buf),
                Ok(2),
                "{kind}: the one before it was sent"
            );
        }
    });
}

/// A batch never hides a loss: an MPMC batch that meets an abandoned slot after its first
/// message ends before it, and the next call reports it. (The marker is crafted at the offsets
/// `docs/layout.md` gives: slot 1's length word, 16-byte slots of a 32-byte stride.)
#[test]
fn a_batch_ends_before_a_lost_message_and_the_next_call_reports_it() {
    let unique = common::Unique::posix("batch-loss");
    let ring = unique
        .builder()
        .mpmc()
        .capacity(4)
        .slot_size(16)
        .create()
        .unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    for m in [b"a", b"x", b"b"] {
        tx.try_send(m).unwrap();
    }
    unique.poke(8192 + 32 + 8, &0xFFFF_FFFEu32.to_le_bytes()); // slot 1: abandoned
    let mut got = Vec::new();
    assert_eq!(rx.try_recv_batch(10, |m| got.push(m.to_vec())), Ok(1));
    assert_eq!(got, [b"a"]);
    assert_eq!(
        rx.try_recv_batch(10, |m| got.push(m.to_vec())),
        Err(TryRecvError::Abandoned { cursor: 1 })
    );
    assert_eq!(rx.try_recv_batch(10, |m| got.push(m.to_vec())), Ok(1));
    assert_eq!(got, [b"a", b"b"]);
}

/// Found by a black-box test of the docs: if the callback of `try_recv_batch` panicked, SPSC
/// and the record rings kept the message it panicked on (handing it to the handler again)
/// while MPMC released it. Now every kind releases every message it gave, that one included.
#[test]
fn a_panic_in_the_batch_callback_releases_what_it_was_given_on_every_kind() {
    for kind in [Kind::Spsc, Kind::Mpmc, Kind::Records, Kind::RecordsMpsc] {
        let ring = common::small(Ring::builder().heap(), kind, 8)
            .create()
            .unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        for m in [b"a", b"b", b"c", b"d"] {
            tx.try_send(m).unwrap();
        }
        let mut seen = Vec::new();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rx.try_recv_batch(10, |m| {
                seen.push(m.to_vec());
                assert_ne!(m, b"b", "the handler fails on b");
            })
        }));
        assert!(panicked.is_err(), "{kind}");
        assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()], "{kind}");
        let mut buf = [0u8; 8];
        assert_eq!(rx.try_recv(&mut buf), Ok(1), "{kind}");
        assert_eq!(
            &buf[..1],
            b"c",
            "{kind}: b was handed out once, and released"
        );
        // One message left: one slot, or one record of 8 + 8 bytes.
        let left = if kind.is_records() { 16 } else { 1 };
        assert_eq!(ring.status().len(), left, "{kind}");
    }
}
