//! Property tests of the record rings: random claims, commits, aborts, partial commits,
//! batches and receives with lengths 0..=max (and past it), compared step by step against a
//! model that keeps the messages in a `VecDeque<Vec<u8>>` and accounts for every byte a record,
//! its header and the padding take. Small data areas make the cursors wrap many times per case.

use std::collections::VecDeque;

use proptest::prelude::*;
use shmring::records::{Consumer, Producer};
use shmring::{Kind, Ring, TryClaimError, TryRecvError, TrySendError};

#[derive(Debug, Clone)]
enum Op {
    Send(Vec<u8>),
    Recv { buf: usize },
    RecvVec,
    ClaimCommit(Vec<u8>),
    ClaimAbort(usize),
    ClaimPrefix { claim: usize, msg: Vec<u8> },
    Read,
    ReadUnread,
    SendBatch(Vec<Vec<u8>>),
    RecvBatch { max: usize },
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    let msg = move || prop::collection::vec(any::<u8>(), 0..=max + 2);
    prop_oneof![
        4 => msg().prop_map(Op::Send),
        3 => (0..=max + 2).prop_map(|buf| Op::Recv { buf }),
        2 => Just(Op::RecvVec),
        2 => msg().prop_map(Op::ClaimCommit),
        1 => (0..=max).prop_map(Op::ClaimAbort),
        1 => (0..=max)
            .prop_flat_map(|claim| (Just(claim), prop::collection::vec(any::<u8>(), 0..=claim)))
            .prop_map(|(claim, msg)| Op::ClaimPrefix { claim, msg }),
        2 => Just(Op::Read),
        1 => Just(Op::ReadUnread),
        1 => prop::collection::vec(msg(), 0..6).prop_map(Op::SendBatch),
        1 => (0usize..6).prop_map(|max| Op::RecvBatch { max }),
    ]
}

/// The bytes a record of `len` bytes takes.
fn size(len: usize) -> u64 {
    8 + len.next_multiple_of(8) as u64
}

/// The ring as it should be: the records between the cursors (a message, or padding of some
/// bytes), and the cursors themselves.
struct Model {
    q: VecDeque<(u64, Option<Vec<u8>>)>,
    head: u64,
    tail: u64,
    capacity: u64,
    max: usize,
}

impl Model {
    fn fits(&self, bytes: u64) -> bool {
        self.head + bytes - self.tail <= self.capacity
    }

    /// Reserves a record of `len` bytes as the producer does: padding to the end first if it
    /// does not fit there (the padding stays even if the record then does not fit). Returns
    /// whether the record was reserved.
    fn reserve(&mut self, len: usize) -> bool {
        let need = size(len);
        let room = self.capacity - self.head % self.capacity;
        if need > room {
            if !self.fits(room) {
                return false;
            }
            self.push(room, None);
        }
        self.fits(need)
    }

    fn push(&mut self, bytes: u64, msg: Option<Vec<u8>>) {
        self.head += bytes;
        self.q.push_back((bytes, msg));
    }

    /// The consumer steps over padding before a message (and on an empty look).
    fn skip_padding(&mut self) {
        while let Some((bytes, None)) = self.q.front() {
            self.tail += bytes;
            self.q.pop_front();
        }
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        self.skip_padding();
        let (bytes, msg) = self.q.pop_front()?;
        self.tail += bytes;
        msg
    }

    fn front(&mut self) -> Option<&Vec<u8>> {
        self.skip_padding();
        self.q.front().and_then(|(_, m)| m.as_ref())
    }
}

fn run(kind: Kind, capacity: u64, max: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let ring = Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .max_message(max)
        .heap()
        .create()
        .unwrap();
    let mut tx: Producer = ring.records_producer().unwrap();
    let mut rx: Consumer = ring.records_consumer().unwrap();
    let mut m = Model {
        q: VecDeque::new(),
        head: 0,
        tail: 0,
        capacity,
        max,
    };
    for op in ops {
        match op {
            Op::Send(msg) => {
                let r = tx.try_send(&msg);
                if msg.len() > m.max {
                    prop_assert!(matches!(r, Err(TrySendError::TooLarge { .. })), "{r:?}");
                } else if m.reserve(msg.len()) {
                    prop_assert!(r.is_ok(), "{r:?}");
                    m.push(size(msg.len()), Some(msg));
                } else {
                    prop_assert!(matches!(r, Err(TrySendError::Full(_))), "{r:?}");
                }
            }
            Op::ClaimCommit(msg) => {
                let r = tx.try_claim(msg.len());
                if msg.len() > m.max {
                    prop_assert!(
                        matches!(r, Err(TryClaimError::TooLarge { .. })),
                        "{:?}",
                        r.map(|_| ())
                    );
                } else if m.reserve(msg.len()) {
                    let mut rec = r.unwrap();
                    prop_assert_eq!(rec.len(), msg.len());
                    rec.copy_from_slice(&msg);
                    rec.commit().unwrap();
                    m.push(size(msg.len()), Some(msg));
                } else {
                    prop_assert!(matches!(r, Err(TryClaimError::Full)), "{:?}", r.map(|_| ()));
                }
            }
            Op::ClaimAbort(len) => match tx.try_claim(len) {
                Ok(mut rec) => {
                    prop_assert!(m.reserve(len));
                    rec.fill(0xEE); // written, then abandoned: must never be read
                    drop(rec);
                    m.push(size(len), None);
                }
                Err(e) => {
                    prop_assert!(!m.reserve(len));
                    prop_assert_eq!(e, TryClaimError::Full);
                }
            },
            Op::ClaimPrefix { claim, msg } => match tx.try_claim(claim) {
                Ok(mut rec) => {
                    prop_assert!(m.reserve(claim));
                    rec.fill(0xEE);
                    rec[..msg.len()].copy_from_slice(&msg);
                    rec.commit_prefix(msg.len()).unwrap();
                    let (used, claimed) = (size(msg.len()), size(claim));
                    m.push(used, Some(msg));
                    if claimed > used {
                        m.push(claimed - used, None);
                    }
                }
                Err(e) => {
                    prop_assert!(!m.reserve(claim));
                    prop_assert_eq!(e, TryClaimError::Full);
                }
            },
            Op::Recv { buf } => {
                let mut b = vec![0u8; buf];
                let r = rx.try_recv(&mut b);
                match m.front().cloned() {
                    None => {
                        prop_assert_eq!(r, Err(TryRecvError::Empty));
                    }
                    Some(msg) if msg.len() > buf => {
                        prop_assert_eq!(
                            r,
                            Err(TryRecvError::BufferTooSmall {
                                needed: msg.len(),
                                available: buf
                            })
                        );
                    }
                    Some(msg) => {
                        prop_assert_eq!(r, Ok(msg.len()));
                        prop_assert_eq!(&b[..msg.len()], &msg[..]);
                        m.pop();
                    }
                }
            }
            Op::RecvVec => {
                let mut b = vec![1, 2, 3];
                let r = rx.try_recv_vec(&mut b);
                match m.pop() {
                    None => prop_assert_eq!(r, Err(TryRecvError::Empty)),
                    Some(msg) => {
                        prop_assert_eq!(r, Ok(msg.len()));
                        prop_assert_eq!(b, msg);
                    }
                }
            }
            Op::Read => {
                let got = rx.try_read().map(|s| s.to_vec());
                match m.pop() {
                    None => prop_assert_eq!(got, Err(TryRecvError::Empty)),
                    Some(msg) => prop_assert_eq!(got, Ok(msg)),
                }
            }
            Op::ReadUnread => {
                let got = rx.try_read().map(|s| {
                    let v = s.to_vec();
                    s.unread();
                    v
                });
                match m.front().cloned() {
                    None => prop_assert_eq!(got, Err(TryRecvError::Empty)),
                    Some(msg) => prop_assert_eq!(got, Ok(msg)),
                }
            }
            Op::SendBatch(msgs) => {
                let r = tx.try_send_batch(&msgs);
                let mut expect = Ok(msgs.len());
                for (sent, msg) in msgs.iter().enumerate() {
                    if msg.len() > m.max {
                        expect = Err(sent);
                        break;
                    }
                    if !m.reserve(msg.len()) {
                        expect = Ok(sent);
                        break;
                    }
                    m.push(size(msg.len()), Some(msg.clone()));
                }
                match expect {
                    Ok(n) => prop_assert_eq!(r.ok(), Some(n)),
                    Err(i) => prop_assert!(
                        matches!(r, Err(TrySendError::TooLarge { msg, .. }) if msg == i),
                        "{r:?}"
                    ),
                }
            }
            Op::RecvBatch { max } => {
                let mut got = Vec::new();
                let r = rx.try_recv_batch(max, |msg| got.push(msg.to_vec()));
                // The model of a batch: leading padding is stepped over, then up to `max`
                // messages, with at most one padding record stepped over between two.
                let mut want = Vec::new();
                if max > 0
                    && let Some(first) = m.pop()
                {
                    want.push(first);
                    while want.len() < max {
                        match m.q.front() {
                            Some((_, Some(_))) => want.push(m.pop().unwrap()),
                            Some((bytes, None)) => {
                                m.tail += bytes;
                                m.q.pop_front();
                                match m.q.front() {
                                    Some((_, Some(_))) => want.push(m.pop().unwrap()),
                                    _ => break,
                                }
                            }
                            None => break,
                        }
                    }
                }
                prop_assert_eq!(r, Ok(want.len()));
                prop_assert_eq!(got, want);
            }
        }
        prop_assert_eq!(ring.len() as u64, m.head - m.tail, "bytes in use");
    }
    // Drain: everything sent comes out, in order, and then the ring is empty.
    let mut buf = Vec::new();
    while let Some(msg) = m.pop() {
        prop_assert_eq!(rx.try_recv_vec(&mut buf), Ok(msg.len()));
        prop_assert_eq!(&buf, &msg);
    }
    prop_assert_eq!(rx.try_recv_vec(&mut buf), Err(TryRecvError::Empty));
    prop_assert!(ring.check().iter().all(|f| !f.error), "{:?}", ring.check());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn one_producer_matches_the_model(ops in prop::collection::vec(op(40), 1..200)) {
        run(Kind::Records, 128, 40, ops)?;
    }

    #[test]
    fn many_producer_kind_matches_the_model(ops in prop::collection::vec(op(40), 1..200)) {
        run(Kind::RecordsMpsc, 128, 40, ops)?;
    }

    #[test]
    fn largest_records_match_the_model(ops in prop::collection::vec(op(120), 1..100)) {
        // The largest message fills the whole data area with its header.
        run(Kind::Records, 128, 120, ops)?;
    }
}
