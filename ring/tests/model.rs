//! Property tests: random sequences of operations on SPSC and MPMC rings, compared step by step
//! against a `VecDeque` model. Small capacities make the cursors wrap many times per case.

use std::collections::VecDeque;

use proptest::prelude::*;
use shmring::{Kind, Ring, TryClaimError, TryRecvError, TrySendError};

#[derive(Debug, Clone)]
enum Op {
    Send(Vec<u8>),
    Recv { buf: usize },
    ClaimCommit(Vec<u8>),
    ClaimAbort,
    Read,
    SendBatch(Vec<Vec<u8>>),
    RecvBatch { max: usize },
    SendValue(u64),
    RecvValue,
}

fn op(slot_size: usize) -> impl Strategy<Value = Op> {
    let msg = move || prop::collection::vec(any::<u8>(), 0..=slot_size + 2);
    prop_oneof![
        4 => msg().prop_map(Op::Send),
        4 => (0..=slot_size + 2).prop_map(|buf| Op::Recv { buf }),
        2 => msg().prop_map(Op::ClaimCommit),
        1 => Just(Op::ClaimAbort),
        2 => Just(Op::Read),
        1 => prop::collection::vec(msg(), 0..6).prop_map(Op::SendBatch),
        1 => (0usize..6).prop_map(|max| Op::RecvBatch { max }),
        1 => any::<u64>().prop_map(Op::SendValue),
        1 => Just(Op::RecvValue),
    ]
}

/// What the ring should hold: messages, and (MPMC) skip markers left by aborted claims, which
/// occupy a slot until a consumer steps over them.
#[derive(Default)]
struct Model {
    q: VecDeque<Option<Vec<u8>>>,
    capacity: usize,
    slot_size: usize,
}

impl Model {
    fn full(&self) -> bool {
        self.q.len() == self.capacity
    }

    /// Consumers step over skip markers before looking at a message.
    fn drop_skips(&mut self) {
        while let Some(None) = self.q.front() {
            self.q.pop_front();
        }
    }
}

fn run(kind: Kind, capacity: u64, slot_size: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let ring = Ring::builder()
        .kind(kind)
        .capacity(capacity)
        .slot_size(slot_size)
        .heap()
        .create()
        .unwrap();
    // The kind-erased endpoints, so one model drives both kinds.
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let mut m = Model {
        capacity: capacity as usize,
        slot_size,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Send(msg) => {
                let r = tx.try_send(&msg);
                if msg.len() > m.slot_size {
                    prop_assert!(
                        matches!(r, Err(TrySendError::TooLarge { len, .. }) if len == msg.len()),
                        "{:?}",
                        r
                    );
                } else if m.full() {
                    prop_assert!(
                        matches!(r, Err(TrySendError::Full(b)) if b == &msg[..]),
                        "{:?}",
                        r
                    );
                } else {
                    prop_assert!(r.is_ok());
                    m.q.push_back(Some(msg));
                }
            }
            Op::Recv { buf } => {
                let mut b = vec![0u8; buf];
                let r = rx.try_recv(&mut b);
                m.drop_skips();
                match m.q.front() {
                    None => prop_assert_eq!(r, Err(TryRecvError::Empty)),
                    Some(Some(front)) if front.len() > buf => prop_assert_eq!(
                        r,
                        Err(TryRecvError::BufferTooSmall {
                            needed: front.len(),
                            available: buf
                        })
                    ),
                    Some(_) => {
                        let front = m.q.pop_front().unwrap().unwrap();
                        prop_assert_eq!(r, Ok(front.len()));
                        prop_assert_eq!(&b[..front.len()], &front[..]);
                    }
                }
            }
            Op::ClaimCommit(data) => {
                let full = m.full();
                let r = tx.try_claim().map(|mut slot| {
                    let n = data.len().min(slot.len());
                    slot[..n].copy_from_slice(&data[..n]);
                    slot.commit(data.len())
                });
                match r {
                    Err(e) => {
                        prop_assert!(full);
                        prop_assert_eq!(e, TryClaimError::Full);
                    }
                    Ok(Ok(())) => {
                        prop_assert!(!full && data.len() <= m.slot_size);
                        m.q.push_back(Some(data));
                    }
                    Ok(Err(e)) => {
                        prop_assert!(!full && data.len() > m.slot_size);
                        prop_assert_eq!(
                            e,
                            shmring::CommitError::TooLarge {
                                len: data.len(),
                                max: m.slot_size
                            }
                        );
                        if kind == Kind::Mpmc {
                            m.q.push_back(None); // the dropped claim leaves a skip marker
                        }
                    }
                }
            }
            Op::ClaimAbort => {
                let full = m.full();
                let claimed = tx.try_claim().is_ok();
                prop_assert_eq!(claimed, !full);
                if claimed && kind == Kind::Mpmc {
                    m.q.push_back(None);
                }
            }
            Op::Read => {
                let got = rx.try_read().map(|s| s.to_vec());
                m.drop_skips();
                match m.q.pop_front() {
                    None => prop_assert_eq!(got, Err(TryRecvError::Empty)),
                    Some(expect) => prop_assert_eq!(got, Ok(expect.unwrap())),
                }
            }
            Op::SendBatch(msgs) => {
                let r = tx.try_send_batch(&msgs);
                let free = m.capacity - m.q.len();
                let fit = msgs.len().min(free);
                // SPSC checks the lengths of what fits; MPMC sends one by one, so it also looks
                // at the first message that does not fit (its length is checked before room).
                let examined = match kind {
                    Kind::Spsc => fit,
                    _ => (fit + 1).min(msgs.len()),
                };
                let bad = msgs[..examined].iter().position(|x| x.len() > m.slot_size);
                match bad {
                    Some(i) => prop_assert!(
                        matches!(r, Err(TrySendError::TooLarge { msg, .. }) if msg == i),
                        "{:?}",
                        r
                    ),
                    None => prop_assert_eq!(r.ok(), Some(fit)),
                }
                for msg in &msgs[..bad.unwrap_or(fit)] {
                    m.q.push_back(Some(msg.clone()));
                }
            }
            Op::RecvBatch { max } => {
                let mut got = Vec::new();
                let n = rx
                    .try_recv_batch(max, |msg| got.push(msg.to_vec()))
                    .unwrap();
                let messages = m.q.iter().filter(|x| x.is_some()).count();
                prop_assert_eq!(n, max.min(messages));
                for g in got {
                    m.drop_skips();
                    prop_assert_eq!(g, m.q.pop_front().unwrap().unwrap());
                }
                if max > messages {
                    m.drop_skips(); // the look that found nothing more stepped over them
                }
            }
            Op::SendValue(v) => {
                let r = tx.try_send_value(v);
                if m.slot_size < 8 {
                    prop_assert!(
                        matches!(r, Err(TrySendError::TooLarge { msg, len: 8, .. }) if msg == v),
                        "{:?}",
                        r
                    );
                } else if m.full() {
                    prop_assert!(matches!(r, Err(TrySendError::Full(x)) if x == v), "{:?}", r);
                } else {
                    prop_assert!(r.is_ok());
                    m.q.push_back(Some(v.to_ne_bytes().to_vec()));
                }
            }
            Op::RecvValue => {
                let r = rx.try_recv_value::<u64>();
                m.drop_skips();
                match m.q.front() {
                    None => prop_assert_eq!(r, Err(TryRecvError::Empty)),
                    Some(Some(front)) if front.len() != 8 => prop_assert_eq!(
                        r,
                        Err(TryRecvError::SizeMismatch {
                            expected: 8,
                            found: front.len()
                        })
                    ),
                    Some(_) => {
                        let front = m.q.pop_front().unwrap().unwrap();
                        prop_assert_eq!(r, Ok(u64::from_ne_bytes(front.try_into().unwrap())));
                    }
                }
            }
        }
        prop_assert_eq!(ring.len(), m.q.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn spsc_matches_model(
        cap_log in 0u32..4,
        slot_size in prop_oneof![1usize..=16, 250usize..=300],
        ops in prop::collection::vec(op(300), 1..300),
    ) {
        run(Kind::Spsc, 1 << cap_log, slot_size, ops)?;
    }

    #[test]
    fn mpmc_matches_model(
        cap_log in 1u32..4,
        slot_size in prop_oneof![1usize..=16, 250usize..=300],
        ops in prop::collection::vec(op(300), 1..300),
    ) {
        run(Kind::Mpmc, 1 << cap_log, slot_size, ops)?;
    }
}
