//! Finding, inspecting, checking and collecting rings: what the `shmring` command is built on.
//!
//! - [`list`] finds every POSIX segment in `/dev/shm` that starts with the shmring magic (it
//!   reads 8 bytes before mapping anything) and every System V segment with a key, and opens
//!   each with full header validation.
//! - [`Ring::status`] snapshots a ring: cursors, fill level, registry, creator, sleepers.
//! - [`Ring::check`] verifies every invariant that holds at any instant (fsck style).
//! - [`gc`] finds segments whose every known user is provably dead and, if asked, removes them.
//!
//! # What "provably dead" means
//! A registry entry or creator word names a process by pid *and* start time: it is dead when no
//! process has that pid, the process is a zombie, or it started at another time (the pid was
//! reused). When `/proc` cannot say, the process counts as alive. A segment is stale when at
//! least one process is recorded in it (creator or endpoint) and all of them are dead; a SysV
//! segment that some process still has attached (`nattch > 0`) never is.

mod doctor;
mod records;

pub use doctor::{Check, Health, doctor};

use std::fmt;
use std::time::Duration;

use crate::error::OpenError;
use crate::kind::{Kind, Role};
use crate::layout::{self, ABANDONED, HEADER_SIZE, IdentityFields, LINE, MAGIC, SKIP};
use crate::registry::{EndpointInfo, EndpointWord};
use crate::ring::{Cursors, Ring, unready};
use crate::segment::{self, Backing, Exact, SysvKey};
use crate::sync::Ordering;

/// A snapshot of a ring's shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The ring's kind.
    pub kind: Kind,
    /// Slots (a record ring: bytes of data).
    pub capacity: u64,
    /// Largest message, bytes.
    pub slot_size: usize,
    /// Bytes the ring occupies.
    pub segment_size: usize,
    /// The producer cursor: messages ever published (SPSC) or claimed (MPMC). For SPSC this is
    /// where the producer continues, derived from the slots: the stored word ([`head_hint`]) is
    /// only a hint, which a producer killed between publishing and storing it leaves behind.
    ///
    /// [`head_hint`]: Self::head_hint
    pub head: u64,
    /// The producer cursor word as stored in the segment (equal to `head` but after a crash).
    pub head_hint: u64,
    /// The consumer cursor (messages ever released, or claimed for MPMC).
    pub tail: u64,
    /// Registered endpoints, with liveness.
    pub endpoints: Vec<EndpointInfo>,
    /// The creating process and whether it is alive, if recorded.
    pub creator: Option<(u32, bool)>,
    /// Consumers and producers asleep in blocking calls (`[data, space]` sleeper counts).
    pub sleepers: [u32; 2],
    /// Attached producer and consumer counts (`[producers, consumers]`), as the segment
    /// records them (a killed process's count stays until its entry is taken over).
    pub attached: [u32; 2],
    /// MPMC: messages lost to producers that died between claim and commit (recovered slots).
    pub abandoned: u64,
    /// MPMC: slots taken back from consumers that died holding them unreleased (a read
    /// guard); their messages had been delivered to the dead consumer.
    pub reclaimed: u64,
}

impl Status {
    /// Messages in the ring no consumer has taken (`head - tail` with the wrapping difference
    /// `docs/layout.md` defines, at most the capacity; a record ring: bytes); see
    /// [`Ring::len`].
    pub fn len(&self) -> u64 {
        self.head.wrapping_sub(self.tail).min(self.capacity)
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why the ring is garbage, if it is: every recorded process is dead.
    pub fn stale_reason(&self) -> Option<String> {
        let creator_dead = self.creator.is_none_or(|(_, alive)| !alive);
        let known = self.endpoints.len() + usize::from(self.creator.is_some());
        if known == 0 || !creator_dead || self.endpoints.iter().any(|e| e.alive) {
            return None;
        }
        let who = match (self.creator, self.endpoints.len()) {
            (Some((pid, _)), 0) => format!("no endpoints; creator {pid} is dead"),
            (_, n) => format!("all {n} registered endpoint(s) and the creator are dead"),
        };
        Some(match self.len() {
            0 => who,
            n => format!("{who}; {n} unread message(s) would be lost"),
        })
    }
}

/// One invariant a ring breaks, found by [`Ring::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `true` for a broken invariant; `false` for something worth knowing that a crashed
    /// process explains (a dead endpoint still registered).
    pub error: bool,
    /// What was found, in words.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = if self.error { "error" } else { "note" };
        write!(f, "{tag}: {}", self.message)
    }
}

impl Ring {
    /// A snapshot of the ring's shared state (cursors are read one after the other, so on a
    /// busy ring they are approximate).
    pub fn status(&self) -> Status {
        let mem = &self.shared().mem;
        let geo = mem.geometry();
        let wait = &mem.header().wait;
        // Relaxed (all): a snapshot for display; nothing is read through it.
        let creator = EndpointWord(mem.header().id.creator.load(Ordering::Relaxed));
        let cursors = Cursors::of(mem);
        Status {
            kind: geo.kind,
            capacity: geo.capacity,
            slot_size: geo.slot_size,
            segment_size: geo.total_size,
            tail: cursors.tail,
            head: cursors.head,
            head_hint: cursors.head_hint,
            endpoints: self.endpoints(),
            creator: (creator.0 != 0).then(|| (creator.pid(), creator.is_alive())),
            sleepers: [
                wait.data.sleepers.load(Ordering::Relaxed),
                wait.space.sleepers.load(Ordering::Relaxed),
            ],
            attached: [
                mem.attached(Role::Producer).load(Ordering::Relaxed),
                mem.attached(Role::Consumer).load(Ordering::Relaxed),
            ],
            abandoned: wait.abandoned.load(Ordering::Relaxed),
            reclaimed: wait.reclaimed.load(Ordering::Relaxed),
        }
    }

    /// Checks every invariant of the cursors, slots and registry, fsck style. Exact on a
    /// quiescent ring; on a busy one a message in flight can show as a transient finding.
    ///
    /// # Examples
    /// ```
    /// let ring = shmring::Ring::builder().mpmc().capacity(4).slot_size(8).heap().create()?;
    /// ring.mpmc_producer()?.try_send(b"x")?;
    /// assert!(ring.check().iter().all(|f| !f.error));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let error = |out: &mut Vec<Finding>, message: String| {
            out.push(Finding {
                error: true,
                message,
            })
        };
        let note = |out: &mut Vec<Finding>, message: String| {
            out.push(Finding {
                error: false,
                message,
            })
        };
        let mem = &self.shared().mem;
        let geo = *mem.geometry();
        let cap = geo.capacity;
        // Slots on pages never written (holes of a lazily sized object) are not read: reading
        // them through the mapping would allocate them. They hold zeros, which the algorithms
        // treat as hostile input anyway.
        let resident = self.shared().resident();
        let readable = |idx: usize| {
            resident
                .as_ref()
                .is_none_or(|r| r.at(HEADER_SIZE + idx * geo.stride))
        };
        if geo.kind.is_records() {
            records::check(mem, &mut out);
        } else {
            let mut holes = 0u64;
            // Relaxed (all loads below): a snapshot; nothing is read through it.
            let tail = mem.tail().load(Ordering::Relaxed);
            let hint = mem.head().load(Ordering::Relaxed);
            // The messages that must be published: [tail, head) as the cursors say.
            let mut inside = None;
            match geo.kind {
                Kind::Spsc => match crate::spsc::cursors(mem) {
                    Ok((head, tail)) => {
                        if head != hint {
                            note(
                                &mut out,
                                format!(
                                    "head {hint} is behind the slots, which are published up to {head}: \
                                     a producer died between publishing and storing head; the next \
                                     producer continues at {head}"
                                ),
                            );
                        }
                        if hint.wrapping_sub(tail) <= cap {
                            inside = Some((tail, hint)); // stepped over by `cursors`, so check them
                        }
                    }
                    Err(_) => error(
                        &mut out,
                        format!(
                            "cursors: head {hint} and tail {tail} are more than the capacity {cap} apart"
                        ),
                    ),
                },
                _ => {
                    let lag = hint.wrapping_sub(tail);
                    if lag > cap {
                        error(
                            &mut out,
                            format!(
                                "cursors: head {hint} - tail {tail} = {lag} exceeds the capacity {cap}"
                            ),
                        );
                    } else {
                        inside = Some((tail, hint));
                    }
                }
            }
            let len_ok = |len: u32| {
                len as usize <= geo.slot_size
                    || (geo.kind == Kind::Mpmc && (len == SKIP || len == ABANDONED))
            };
            for idx in 0..cap as usize {
                if !readable(idx) {
                    holes += 1;
                    continue;
                }
                match geo.kind {
                    Kind::Spsc => {
                        let seq = mem.seq32(idx).load(Ordering::Relaxed);
                        // Written as (cursor + 1) as u32 with cursor ≡ idx (mod cap); never written:
                        // idx (`layout::spsc_initial_seq`), or 0 in rings made before that rule.
                        let written = u64::from(seq.wrapping_sub(idx as u32 + 1)) % cap == 0;
                        if !written && seq != layout::spsc_initial_seq(idx) && seq != 0 {
                            error(
                                &mut out,
                                format!("slot {idx}: sequence {seq} cannot belong to this slot"),
                            );
                        }
                    }
                    _ => {
                        let seq = mem.seq(idx).load(Ordering::Relaxed);
                        // pos, pos + 1 or pos + cap, with pos ≡ idx (mod cap).
                        let r = seq.wrapping_sub(idx as u64) % cap;
                        if r != 0 && r != 1 % cap {
                            error(
                                &mut out,
                                format!("slot {idx}: sequence {seq} cannot belong to this slot"),
                            );
                        }
                    }
                }
            }
            if let Some((from, to)) = inside {
                let mut c = from;
                while c != to {
                    let idx = (c & geo.mask()) as usize;
                    if readable(idx) {
                        let len = mem.len(idx).load(Ordering::Relaxed);
                        let published = match geo.kind {
                            Kind::Spsc => {
                                mem.seq32(idx).load(Ordering::Relaxed) == c.wrapping_add(1) as u32
                            }
                            _ => mem.seq(idx).load(Ordering::Relaxed) == c.wrapping_add(1),
                        };
                        if geo.kind == Kind::Spsc && !published {
                            error(
                                &mut out,
                                format!("message {c}: inside the cursors but not published"),
                            );
                        }
                        if published && !len_ok(len) {
                            error(
                                &mut out,
                                format!(
                                    "message {c}: length {len} exceeds the slot size {}",
                                    geo.slot_size
                                ),
                            );
                        }
                    } else if geo.kind == Kind::Spsc {
                        error(
                            &mut out,
                            format!("message {c}: inside the cursors, on a page never written"),
                        );
                    }
                    c = c.wrapping_add(1);
                }
            }
            if holes > 0 {
                note(
                    &mut out,
                    format!(
                        "{holes} slot(s) lie on pages never written (holes): not read, so as not to \
                         allocate them"
                    ),
                );
            }
        }
        let header = mem.header();
        let mut counts = [0u32; 2];
        for (entry, e) in header.endpoints.iter().enumerate() {
            let word = EndpointWord(e.owner.load(Ordering::Relaxed));
            if word.0 == 0 {
                continue;
            }
            match word.role() {
                Some(Role::Producer) => counts[0] += 1,
                Some(Role::Consumer) => counts[1] += 1,
                None => error(
                    &mut out,
                    format!("registry entry {entry}: malformed word {:#x}", word.0),
                ),
            }
            if matches!(geo.kind, Kind::Spsc | Kind::Records) && entry > 1 {
                error(
                    &mut out,
                    format!(
                        "registry entry {entry}: {} rings use entries 0 and 1 only",
                        geo.kind
                    ),
                );
            }
            if !word.is_alive() {
                out.push(Finding {
                    error: false,
                    message: format!(
                        "registry entry {entry}: process {} is dead (crashed without detaching)",
                        word.pid()
                    ),
                });
            }
        }
        for (i, role) in [Role::Producer, Role::Consumer].into_iter().enumerate() {
            let recorded = mem.attached(role).load(Ordering::Relaxed);
            if recorded != counts[i] {
                out.push(Finding {
                    error: true,
                    message: format!(
                        "attached {role} count is {recorded}, the registry holds {}",
                        counts[i]
                    ),
                });
            }
        }
        // Last: the reads above are what trips the guard if the object was shrunk meanwhile.
        if let Some(c) = self.shared().lost() {
            error(&mut out, c.to_string());
        }
        out
    }
}

/// A segment found by [`list`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Entry {
    /// Where it lives (POSIX name or SysV key).
    pub backing: Backing,
    /// Its size as the OS reports it.
    pub bytes: u64,
    /// SysV only: how many processes have it attached.
    pub attached_processes: Option<u64>,
    /// The ring, or why it could not be opened. A ring still being built, or whose creator died
    /// building it, is [`OpenError::NotInitialized`], naming the creator only when the
    /// segment's identity line proves it is a shmring ring (`docs/layout.md`).
    pub ring: Result<Ring, OpenError>,
    /// This very segment (device and inode, or SysV id), so that removing it never removes
    /// another that took its name meanwhile.
    exact: Option<Exact>,
}

/// Every shmring segment on the machine that this user can see: POSIX objects in `/dev/shm`
/// and keyed System V segments whose first bytes are the shmring magic (read without mapping a
/// POSIX object). Segments without the magic are someone else's, or cannot be told from
/// someone else's, and are not listed.
///
/// Opening does not wait for a creator still building a header: such a segment is listed with
/// [`OpenError::NotInitialized`].
pub fn list() -> Vec<Entry> {
    let mut out = Vec::new();
    for name in segment::posix::names() {
        // An object we cannot read may be a ring of another user: not ours to judge.
        let Ok((line, got, bytes, id)) = segment::posix::peek::<LINE>(&name) else {
            continue;
        };
        if got < 8 || !starts_with_magic(&line) || bytes == 0 {
            continue;
        }
        let backing = Backing::Posix(name.clone());
        let ring = match open_quick(&backing) {
            // A creator that died after writing its identity line, before sizing the object.
            Err(OpenError::Truncated { .. }) if bytes == LINE as u64 => Err(unready(
                &IdentityFields::parse(&line),
                bytes,
                Duration::ZERO,
            )),
            other => other,
        };
        out.push(Entry {
            backing,
            bytes,
            attached_processes: None,
            ring,
            exact: Some(Exact::Posix { name, id }),
        });
    }
    for listed in segment::sysv::list() {
        let Ok((line, got)) = segment::sysv::peek::<LINE>(listed.id) else {
            continue;
        };
        if got < LINE || !starts_with_magic(&line) {
            continue;
        }
        let backing = Backing::SysV(SysvKey::Key(listed.key));
        let ring = open_quick(&backing);
        let exact = match &ring {
            Ok(r) => r.shared().exact(),
            Err(_) => Some(Exact::SysV { id: listed.id }),
        };
        if exact != Some(Exact::SysV { id: listed.id }) {
            continue; // removed and re-created between the listing and the open: look again later
        }
        out.push(Entry {
            backing,
            bytes: listed.bytes,
            attached_processes: Some(listed.attached),
            ring,
            exact,
        });
    }
    out
}

fn starts_with_magic(line: &[u8; LINE]) -> bool {
    line[..8] == MAGIC.to_le_bytes()
}

/// Opens a ring without waiting for its creator.
fn open_quick(backing: &Backing) -> Result<Ring, OpenError> {
    Ring::builder()
        .backing(backing.clone())
        .init_timeout(Duration::ZERO)
        .open()
}

/// What [`gc`] decided about one segment.
#[derive(Debug)]
#[non_exhaustive]
pub struct Verdict {
    /// The segment.
    pub backing: Backing,
    /// Why it is garbage, or `None` if it is kept.
    pub stale: Option<String>,
    /// Why it is kept, if it is.
    pub kept: Option<String>,
    /// For a stale segment when removing: the outcome of the removal.
    pub removed: Option<Result<(), String>>,
}

/// Finds shmring segments whose every recorded process is provably dead (module docs) and,
/// with `remove`, removes them. A segment with a live endpoint, a live or unknown creator, a
/// SysV attachment, or that cannot be read is always kept; so is anything [`list`] cannot
/// prove is a shmring segment (it is not even listed).
///
/// Each stale segment is judged again just before its removal, and the removal acts on that
/// very segment (its device and inode, or its SysV id), never on another that took the name
/// meanwhile. A process could still attach between that last check and the removal; it keeps
/// its mapping, but the name is gone.
pub fn gc(remove: bool) -> Vec<Verdict> {
    gc_matching(remove, |_| true)
}

/// Why `entry` is garbage (`Ok`), or why it is kept (`Err`).
fn judge(entry: &Entry) -> Result<String, String> {
    if let Some(n) = entry.attached_processes.filter(|&n| n > 0) {
        return Err(format!("attached by {n} process(es)"));
    }
    match &entry.ring {
        Ok(ring) => ring
            .status()
            .stale_reason()
            .ok_or_else(|| "a recorded process is alive".to_owned()),
        Err(OpenError::NotInitialized {
            creator_pid: Some(pid),
            creator_alive: false,
            ..
        }) => Ok(format!("never initialized; creator {pid} is dead")),
        Err(e) => Err(e.to_string()),
    }
}

/// The entry [`list`] would make of the segment `exact` now, if it is still that segment.
fn again(exact: &Exact) -> Option<Entry> {
    list().into_iter().find(|e| e.exact.as_ref() == Some(exact))
}

/// [`gc`] restricted to the segments `select` accepts (a name prefix, say).
pub fn gc_matching(remove: bool, select: impl Fn(&Backing) -> bool) -> Vec<Verdict> {
    list()
        .into_iter()
        .filter(|entry| select(&entry.backing))
        .map(|entry| {
            let verdict = judge(&entry);
            let (backing, exact) = (entry.backing.clone(), entry.exact.clone());
            drop(entry);
            match verdict {
                Err(kept) => Verdict {
                    backing,
                    stale: None,
                    kept: Some(kept),
                    removed: None,
                },
                Ok(reason) => {
                    let removed = remove.then(|| {
                        // Judge again, as late as possible, and remove exactly that segment
                        // (keeping its mapping until then, so a POSIX inode cannot be reused).
                        let Some(exact) = exact else {
                            return Err("has no name to remove".to_owned());
                        };
                        let Some(now) = again(&exact) else {
                            return Err("no longer there (removed or replaced meanwhile)".into());
                        };
                        match judge(&now) {
                            Ok(_) => match exact.remove() {
                                Ok(true) => Ok(()),
                                Ok(false) => {
                                    Err("no longer there (removed or replaced meanwhile)".into())
                                }
                                Err(e) => Err(e.to_string()),
                            },
                            Err(kept) => Err(format!("no longer stale: {kept}")),
                        }
                    });
                    Verdict {
                        backing,
                        stale: Some(reason),
                        kept: None,
                        removed,
                    }
                }
            }
        })
        .collect()
}
