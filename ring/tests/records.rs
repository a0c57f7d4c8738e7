//! The record rings' promises, tried from outside: through the public API, over POSIX memory
//! whose words this test writes at the offsets `docs/layout.md` gives, as a hostile peer could.

mod common;

use std::time::Duration;

use common::{Unique, with_watchdog};
use shmring::records::{Consumer, Producer};
use shmring::{
    AttachError, ConfigError, Corruption, CreateError, Kind, RecvError, Ring, SendError,
    TryClaimError, TryRecvError, TrySendError, WaitOptions,
};

/// Offsets from docs/layout.md.
const HEAD: u64 = 128;
const TAIL: u64 = 256;
const DATA: u64 = 8192;

/// A header word as docs/layout.md defines it.
fn header(lap: u64, state: u64, len: u64) -> [u8; 8] {
    (lap << 40 | state << 32 | len).to_le_bytes()
}

fn pair(ring: &Ring) -> (Producer, Consumer) {
    (
        ring.records_producer().unwrap(),
        ring.records_consumer().unwrap(),
    )
}

fn heap(kind: Kind, capacity: u64, max: usize) -> Ring {
    Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .max_message(max)
        .heap()
        .create()
        .unwrap()
}

#[test]
fn sizes_are_checked_and_the_largest_message_defaults_to_an_eighth() {
    let ring = Ring::builder()
        .records()
        .capacity(4096)
        .heap()
        .create()
        .unwrap();
    assert_eq!(
        (ring.kind(), ring.capacity(), ring.slot_size()),
        (Kind::Records, 4096, 512)
    );
    assert_eq!(ring.segment_size(), 8192 + 4096);
    let refused = |b: shmring::RingBuilder| match b.heap().create() {
        Err(CreateError::Config(c)) => c,
        other => panic!("{:?}", other.map(|r| r.kind())),
    };
    assert_eq!(
        refused(Ring::builder().records().capacity(1000)),
        ConfigError::CapacityNotPowerOfTwo(1000)
    );
    assert!(matches!(
        refused(Ring::builder().records().capacity(32)),
        ConfigError::CapacityTooSmall {
            requested: 32,
            min: 64
        }
    ));
    // A record and its header must fit in the data area.
    assert!(matches!(
        refused(Ring::builder().records().capacity(64).max_message(57)),
        ConfigError::SlotSizeTooLarge {
            requested: 57,
            max: 56
        }
    ));
    assert_eq!(heap(Kind::RecordsMpsc, 64, 56).slot_size(), 56);
}

#[test]
fn a_message_takes_the_bytes_it_needs_and_zero_bytes_is_a_message() {
    for kind in [Kind::Records, Kind::RecordsMpsc] {
        let ring = heap(kind, 1024, 512);
        let (mut tx, mut rx) = pair(&ring);
        tx.try_send(b"").unwrap();
        tx.try_send(&[1; 9]).unwrap();
        tx.try_send(&[2; 512]).unwrap();
        // 8 + (8 + 16) + (8 + 512) bytes.
        assert_eq!(ring.len(), 552, "{kind}");
        let mut buf = Vec::new();
        assert_eq!(
            rx.try_recv_vec(&mut buf),
            Ok(0),
            "an empty message, not 'empty'"
        );
        assert_eq!(rx.try_recv_vec(&mut buf), Ok(9));
        assert_eq!(buf, [1; 9]);
        let mut small = [0u8; 100];
        assert_eq!(
            rx.try_recv(&mut small),
            Err(TryRecvError::BufferTooSmall {
                needed: 512,
                available: 100
            })
        );
        assert_eq!(&*rx.try_read().unwrap(), &[2; 512][..], "it stayed");
        assert_eq!(rx.try_recv_vec(&mut buf), Err(TryRecvError::Empty));
        assert!(ring.is_empty());
    }
}

#[test]
fn too_large_hands_the_message_back() {
    let ring = heap(Kind::Records, 256, 32);
    let (mut tx, _rx) = pair(&ring);
    let msg = [0u8; 33];
    match tx.try_send(&msg) {
        Err(TrySendError::TooLarge {
            msg: back,
            len,
            max,
        }) => {
            assert_eq!((back.len(), len, max), (33, 33, 32));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        tx.try_claim(33).map(|_| ()),
        Err(TryClaimError::TooLarge { len: 33, max: 32 })
    );
    assert!(matches!(
        tx.send_timeout(&msg, Duration::from_millis(1)),
        Err(SendError::TooLarge { len: 33, .. })
    ));
    assert_eq!(ring.len(), 0, "nothing was reserved");
}

#[test]
fn records_wrap_with_padding_and_one_can_fill_the_end_exactly() {
    let ring = heap(Kind::Records, 64, 56);
    let (mut tx, mut rx) = pair(&ring);
    let mut buf = Vec::new();
    // 24 + 24 bytes, then a 16-byte record fills the end exactly: no padding.
    for m in [&[1u8; 16][..], &[2; 16], &[3; 8]] {
        tx.try_send(m).unwrap();
    }
    assert!(tx.try_send(b"").unwrap_err().is_full());
    for want in [&[1u8; 16][..], &[2; 16], &[3; 8]] {
        rx.try_recv_vec(&mut buf).unwrap();
        assert_eq!(buf, want);
    }
    // Now at byte 64 (offset 0 of lap 1): a 48-byte record, then 24 bytes do not fit in the 16
    // before the end: padding (which stays), and the record waits for room at offset 0.
    tx.try_send(&[4; 40]).unwrap();
    assert!(
        tx.try_send(&[5; 16]).unwrap_err().is_full(),
        "the padding stays"
    );
    assert_eq!(ring.len(), 64);
    rx.try_recv_vec(&mut buf).unwrap();
    assert_eq!(buf, [4; 40]);
    tx.try_send(&[5; 16]).unwrap();
    rx.try_recv_vec(&mut buf).unwrap();
    assert_eq!(buf, [5; 16], "the padding was stepped over");
    assert!(ring.is_empty());
    assert_eq!(ring.status().head, 64 + 48 + 16 + 24);
}

#[test]
fn the_largest_record_takes_the_whole_ring() {
    let ring = heap(Kind::RecordsMpsc, 64, 56);
    let (mut tx, mut rx) = pair(&ring);
    let mut buf = Vec::new();
    for round in 0..5u8 {
        tx.try_send(&[round; 3]).unwrap(); // moves the start off offset 0 (then padding)
        rx.try_recv_vec(&mut buf).unwrap();
        // Padding to the end first, which the consumer must step over to make room.
        assert!(tx.try_send(&[round; 56]).unwrap_err().is_full());
        assert_eq!(rx.try_recv_vec(&mut buf), Err(TryRecvError::Empty));
        tx.try_send(&[round; 56]).unwrap();
        assert!(tx.try_send(b"").unwrap_err().is_full());
        rx.try_recv_vec(&mut buf).unwrap();
        assert_eq!(buf, [round; 56]);
    }
}

/// A payload that holds, at the offset where the next lap's record will start, a word that is
/// a valid header of that lap. The consumer zeroes what it consumed, so the next lap never
/// reads it as a record.
#[test]
fn a_payload_forging_the_next_laps_header_is_never_read_as_one() {
    for kind in [Kind::Records, Kind::RecordsMpsc] {
        let ring = heap(kind, 64, 56);
        let (mut tx, mut rx) = pair(&ring);
        let mut msg = [0u8; 56];
        // The record's payload starts at offset 8; at offset 16 of lap 1 a record of 3 bytes
        // would start after one of 8 bytes at offset 0.
        msg[8..16].copy_from_slice(&header(1, 1, 3));
        tx.try_send(&msg).unwrap();
        let mut buf = Vec::new();
        rx.try_recv_vec(&mut buf).unwrap();
        tx.try_send(&[9; 8]).unwrap(); // lap 1, offset 0..16
        rx.try_recv_vec(&mut buf).unwrap();
        assert_eq!(buf, [9; 8]);
        assert_eq!(
            rx.try_recv_vec(&mut buf),
            Err(TryRecvError::Empty),
            "{kind}: the forged header was zeroed"
        );
    }
}

#[test]
fn one_producer_and_one_consumer_per_ring_many_producers_where_asked() {
    let ring = heap(Kind::Records, 256, 32);
    let (_tx, _rx) = pair(&ring);
    assert!(matches!(
        ring.records_producer(),
        Err(AttachError::RoleTaken { .. })
    ));
    assert!(matches!(
        ring.records_consumer(),
        Err(AttachError::RoleTaken { .. })
    ));
    assert!(matches!(
        ring.spsc_producer(),
        Err(AttachError::WrongKind { .. })
    ));
    let mpsc = heap(Kind::RecordsMpsc, 256, 32);
    let (mut a, mut rx) = pair(&mpsc);
    let mut b = mpsc.records_producer().unwrap();
    let mut c = mpsc.records_producer().unwrap();
    assert!(matches!(
        mpsc.records_consumer(),
        Err(AttachError::RoleTaken { .. })
    ));
    for (i, p) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        p.try_send(&[i as u8; 5]).unwrap();
    }
    let mut got = Vec::new();
    assert_eq!(rx.try_recv_batch(10, |m| got.push(m[0])), Ok(3));
    assert_eq!(got, [0, 1, 2]);
    assert!(heap(Kind::Spsc, 4, 4).records_producer().is_err());
}

#[test]
fn a_leaked_claim_is_turned_into_padding_so_the_consumer_is_not_stuck() {
    for kind in [Kind::Records, Kind::RecordsMpsc] {
        let ring = heap(kind, 256, 32);
        let (mut tx, mut rx) = pair(&ring);
        let mut rec = tx.try_claim(10).unwrap();
        rec.fill(0xAB);
        std::mem::forget(rec);
        tx.try_send(b"after").unwrap(); // the next claim settles the leaked one
        assert_eq!(&*rx.try_read().unwrap(), b"after", "{kind}");
        std::mem::forget(tx.try_claim(3).unwrap());
        drop(tx); // and so does the drop
        assert_eq!(
            rx.try_read().map(|r| r.len()),
            Err(TryRecvError::Disconnected)
        );
    }
}

#[test]
fn the_kind_erased_endpoints_carry_records() {
    use std::io::{Read, Write};
    for kind in [Kind::Records, Kind::RecordsMpsc] {
        let ring = heap(kind, 1024, 100);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        assert_eq!((tx.kind(), rx.kind()), (kind, kind));
        tx.write_all(b"a line of any length\n").unwrap();
        let mut slot = tx.try_claim().unwrap();
        assert_eq!(slot.len(), 100, "a claim of the largest message");
        slot[..4].copy_from_slice(b"part");
        slot.commit(4).unwrap();
        tx.try_send_value(7u64).unwrap();
        let mut buf = [0u8; 100];
        let n = Read::read(&mut rx, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"a line of any length\n");
        let r = rx.try_read().unwrap();
        assert_eq!(&*r, b"part");
        r.try_unread().unwrap();
        assert_eq!(rx.try_recv(&mut buf), Ok(4));
        assert_eq!(rx.try_recv_value::<u64>(), Ok(7));
        drop(tx);
        assert_eq!(Read::read(&mut rx, &mut buf).unwrap(), 0, "{kind}: the end");
    }
}

#[test]
fn blocking_calls_wait_wake_and_see_a_departed_peer() {
    with_watchdog(Duration::from_secs(30), || {
        for kind in [Kind::Records, Kind::RecordsMpsc] {
            let ring = heap(kind, 128, 32);
            let (mut tx, mut rx) = pair(&ring);
            let r2 = ring.clone();
            let sender = std::thread::spawn(move || {
                drop(r2);
                for i in 0..1000u32 {
                    let len = (i % 33) as usize;
                    tx.send(&vec![i as u8; len]).unwrap();
                }
                tx // dropped by the joiner
            });
            let mut buf = Vec::new();
            for i in 0..1000u32 {
                assert_eq!(rx.recv_vec(&mut buf), Ok((i % 33) as usize));
                assert!(buf.iter().all(|&b| b == i as u8), "{kind}: message {i}");
            }
            assert_eq!(
                rx.recv_vec_timeout(&mut buf, Duration::from_millis(5)),
                Err(RecvError::Timeout)
            );
            drop(sender.join().unwrap());
            assert_eq!(rx.recv_vec(&mut buf), Err(RecvError::Disconnected));
            // The other way: a full ring whose consumer left.
            let mut tx = ring.records_producer().unwrap();
            drop(rx);
            while tx.try_send(&[0; 32]).is_ok() {}
            assert!(matches!(tx.send(&[0; 32]), Err(SendError::Disconnected(_))));
        }
    });
}

/// A ring whose cursors start just below `u64::MAX`: the laps wrap with them.
#[test]
fn cursors_wrap_past_u64_max() {
    for kind in [Kind::Records, Kind::RecordsMpsc] {
        let unique = Unique::posix("rec-wrap");
        let ring = unique
            .builder()
            .kind(kind)
            .capacity(128)
            .max_message(40)
            .create()
            .unwrap();
        let start = u64::MAX - 127 - 64; // an 8-byte multiple; the wrap comes within two laps
        unique.poke(HEAD, &start.to_le_bytes());
        unique.poke(TAIL, &start.to_le_bytes());
        let (mut tx, mut rx) = pair(&ring);
        let mut buf = Vec::new();
        let (mut sent, mut got) = (0u64, 0u64);
        while got < 200 {
            while sent < 200 && tx.try_send(&vec![sent as u8; (sent % 41) as usize]).is_ok() {
                sent += 1;
            }
            assert_eq!(rx.try_recv_vec(&mut buf), Ok((got % 41) as usize), "{kind}");
            assert!(buf.iter().all(|&b| b == got as u8));
            got += 1;
        }
        assert!(ring.status().head < start, "{kind}: the cursor wrapped");
        assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
    }
}

/// Hostile header words at the consumer's position: each is reported as corrupt, with the
/// position and the word, and nothing panics, reads out of bounds or hangs.
#[test]
fn impossible_header_words_are_reported_never_trusted() {
    with_watchdog(Duration::from_secs(30), || {
        let cases = [
            ("unknown state", header(0, 9, 4)),
            ("state zero", header(0, 0, 4)),
            ("a message above the largest", header(0, 1, 41)),
            ("a record past the end", header(0, 2, 200)),
            ("a huge length", header(0, 1, u32::MAX.into())),
            ("one producer never reserves", header(0, 3, 4)),
            ("one producer's consumer never marks", header(0, 4, 4)),
            ("one producer is never settled", header(0, 5, 4)),
        ];
        for kind in [Kind::Records, Kind::RecordsMpsc] {
            for (what, word) in cases {
                if kind == Kind::RecordsMpsc && what.starts_with("one producer") {
                    continue; // legal states with many producers
                }
                let unique = Unique::posix("rec-hostile");
                let ring = unique
                    .builder()
                    .kind(kind)
                    .capacity(128)
                    .max_message(40)
                    .create()
                    .unwrap();
                let mut rx = ring.records_consumer().unwrap();
                unique.poke(HEAD, &64u64.to_le_bytes());
                unique.poke(DATA, &word);
                let want = Err(TryRecvError::Corrupt(Corruption::Record {
                    cursor: 0,
                    word: u64::from_le_bytes(word),
                }));
                let mut buf = Vec::new();
                assert_eq!(rx.try_recv_vec(&mut buf), want, "{kind}: {what}");
                assert_eq!(rx.try_recv_batch(4, |_| {}), want, "{kind}: {what}");
                assert_eq!(rx.try_read().map(|r| r.len()), want, "{kind}: {what}");
                assert!(
                    ring.check().iter().any(|f| f.error),
                    "{kind}: {what}: {:?}",
                    ring.check()
                );
                if kind == Kind::Records {
                    // A producer taking over walks the records, and refuses to write past one.
                    assert!(
                        matches!(ring.records_producer(), Err(AttachError::Corrupt(_))),
                        "{what}"
                    );
                }
            }
        }
    });
}

#[test]
fn impossible_cursors_are_refused() {
    for kind in [Kind::Records, Kind::RecordsMpsc] {
        for (head, tail) in [(3u64, 0u64), (0, 5), (129 * 8, 0)] {
            let unique = Unique::posix("rec-cursors");
            let ring = unique
                .builder()
                .kind(kind)
                .capacity(128)
                .max_message(40)
                .create()
                .unwrap();
            unique.poke(HEAD, &head.to_le_bytes());
            unique.poke(TAIL, &tail.to_le_bytes());
            assert!(ring.check().iter().any(|f| f.error), "{kind} {head} {tail}");
            let tx = ring.records_producer();
            let rx = ring.records_consumer();
            if kind == Kind::RecordsMpsc || tail % 8 != 0 {
                assert!(
                    matches!(rx, Err(AttachError::Corrupt(_))),
                    "{kind} {head} {tail}: {:?}",
                    rx.map(|_| ())
                );
            }
            if let Ok(mut tx) = tx {
                // Whatever the producer attached to, it reports an error or sends: no panic.
                let _ = tx.try_send(b"x");
            }
        }
    }
}

#[test]
fn a_stuck_reservation_of_a_live_producer_is_pending_never_robbed() {
    with_watchdog(Duration::from_secs(30), || {
        let ring = Ring::builder()
            .records_mpsc()
            .capacity(256)
            .max_message(32)
            .wait(WaitOptions::default().liveness_check(Duration::from_millis(1)))
            .heap()
            .create()
            .unwrap();
        let (mut slow, mut rx) = pair(&ring);
        let mut fast = ring.records_producer().unwrap();
        let mut rec = slow.try_claim(4).unwrap();
        fast.try_send(b"behind").unwrap();
        let mut buf = Vec::new();
        for _ in 0..5000 {
            assert_eq!(rx.try_recv_vec(&mut buf), Err(TryRecvError::Pending));
            rx.check_peers();
        }
        assert_eq!(
            rx.recv_vec_timeout(&mut buf, Duration::from_millis(20)),
            Err(RecvError::Timeout)
        );
        rec.copy_from_slice(b"slow");
        rec.commit().unwrap();
        assert_eq!(rx.try_recv_vec(&mut buf), Ok(4));
        assert_eq!(buf, b"slow");
        assert_eq!(rx.try_recv_vec(&mut buf), Ok(6));
        assert_eq!(ring.status().abandoned, 0);
    });
}

/// Found by a black-box test of the docs: with many producers and `head == tail`, `check` did
/// not look at the word at `tail` and called a ring consistent that every receive reported as
/// corrupt; and an attach named the wrong fault for a cursor that is not a multiple of 8.
#[test]
fn check_and_receive_agree_on_a_word_no_producer_writes_at_an_empty_tail() {
    for kind in [Kind::Records, Kind::RecordsMpsc] {
        let unique = Unique::posix("rec-empty-tail");
        let ring = common::small(unique.builder(), kind, 64).create().unwrap();
        let word = header(0, 0, 5);
        unique.poke(DATA, &word);
        let mut rx = ring.records_consumer().unwrap();
        assert_eq!(
            rx.try_recv_vec(&mut Vec::new()),
            Err(TryRecvError::Corrupt(Corruption::Record {
                cursor: 0,
                word: u64::from_le_bytes(word),
            })),
            "{kind}"
        );
        assert!(
            ring.check().iter().any(|f| f.error),
            "{kind}: {:?}",
            ring.check()
        );
    }
    let unique = Unique::posix("rec-misaligned");
    let ring = common::small(unique.builder(), Kind::Records, 64)
        .create()
        .unwrap();
    unique.poke(TAIL, &3u64.to_le_bytes());
    let err = ring.records_consumer().map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("multiples of 8"), "{err}");
}

/// Found by a black-box test of the docs: a registry word with role bits 3 is no endpoint
/// (`docs/protocol.md`), yet it was taken for a live consumer and kept the role from everyone.
#[test]
fn a_registry_word_without_a_role_holds_no_role() {
    const ENTRY_1: u64 = 512 + 128;
    let unique = Unique::posix("rec-malformed-entry");
    let ring = common::small(unique.builder(), Kind::Records, 64)
        .create()
        .unwrap();
    // This process's pid, so "alive" whatever its start time; role bits 3.
    let word = 3u64 << 32 | u64::from(std::process::id());
    unique.poke(ENTRY_1, &word.to_le_bytes());
    let (mut tx, mut rx) = pair(&ring);
    tx.try_send(b"through").unwrap();
    assert_eq!(rx.try_recv_vec(&mut Vec::new()), Ok(7));
}

/// The same for rings whose producers take any entry: every entry holding a word without a
/// role's bits (naming a live process) is still free to take.
#[test]
fn malformed_registry_words_never_fill_the_registry() {
    for kind in [Kind::Mpmc, Kind::RecordsMpsc] {
        let unique = Unique::posix("malformed-any");
        let ring = common::small(unique.builder(), kind, 8).create().unwrap();
        let word = 3u64 << 32 | u64::from(std::process::id());
        for entry in 0..60u64 {
            unique.poke(512 + 128 * entry, &word.to_le_bytes());
        }
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        tx.try_send(b"in").unwrap();
        assert_eq!(rx.try_recv(&mut [0u8; 8]), Ok(2), "{kind}");
    }
}
