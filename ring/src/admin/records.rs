//! The check of a record ring: walk the records between the cursors.

use super::Finding;
use crate::kind::Kind;
use crate::layout::RingMem;
use crate::records::{Survey, survey};
use crate::registry::EndpointWord;
use crate::sync::Ordering;

/// Adds the findings about a record ring's cursors and records to `out`.
pub(super) fn check(mem: &RingMem, out: &mut Vec<Finding>) {
    let mut push = |error: bool, message: String| out.push(Finding { error, message });
    let geo = mem.geometry();
    let cap = geo.capacity;
    // Relaxed (both): a snapshot.
    let tail = mem.tail().load(Ordering::Relaxed);
    let head = mem.head().load(Ordering::Relaxed);
    if !(head | tail).is_multiple_of(8) {
        push(
            true,
            format!("cursors: head {head} or tail {tail} is not a multiple of 8"),
        );
        return;
    }
    let many = geo.kind == Kind::RecordsMpsc;
    let lag = head.wrapping_sub(tail);
    // With one producer `head` is a hint stored after each commit: it may lag behind `tail`
    // (a producer killed between the two), by less than a lap.
    if lag > cap && (many || tail.wrapping_sub(head) > cap) {
        push(
            true,
            format!("cursors: head {head} - tail {tail} = {lag} exceeds the capacity {cap}"),
        );
        return;
    }
    let Survey {
        messages,
        message_bytes,
        skips,
        reserved,
        end,
        corrupt,
    } = survey(mem);
    if let Some((at, word)) = corrupt {
        push(
            true,
            format!("record at byte {at}: header {word:#018x} is no state a producer writes"),
        );
    }
    push(
        false,
        format!(
            "{messages} message(s) of {message_bytes} bytes waiting, {skips} padding record(s)"
        ),
    );
    if many {
        if corrupt.is_none() && end != head && reserved.is_empty() {
            push(
                false,
                format!(
                    "bytes {end}..{head} are reserved and the record at {end} not announced yet \
                     (a producer between its reservation and its header, or dead there)"
                ),
            );
        }
        for at in reserved {
            let holders: Vec<_> = (0..crate::layout::MAX_ENDPOINTS)
                .filter(|&e| mem.claim(e).load(Ordering::Relaxed) == at.wrapping_add(1))
                .map(|e| EndpointWord(mem.header().endpoints[e].owner.load(Ordering::Relaxed)))
                .collect();
            let dead = !holders.is_empty() && holders.iter().all(|w| !w.is_alive());
            push(
                false,
                format!(
                    "record at byte {at}: being written{}",
                    if dead {
                        " by a dead producer: the consumer reports it abandoned"
                    } else {
                        ""
                    }
                ),
            );
        }
    } else if corrupt.is_none() && end != head {
        push(
            false,
            format!(
                "head {head} differs from the end of the committed records, {end}: a producer \
                 died between committing and storing head, or while writing; the next producer \
                 continues at {end}"
            ),
        );
    }
}
