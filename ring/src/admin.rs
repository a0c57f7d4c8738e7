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

use std::fmt;
use std::io::Read;
use std::time::Duration;

use crate::endpoint::{EndpointInfo, EndpointWord};
use crate::error::{OpenError, Role};
use crate::layout::{ABANDONED, Kind, MAGIC, SKIP};
use crate::ring::Ring;
use crate::segment::{Backing, SysvKey};
use crate::sync::Ordering;

/// A snapshot of a ring's shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// SPSC or MPMC.
    pub kind: Kind,
    /// Slots.
    pub capacity: u64,
    /// Largest message, bytes.
    pub slot_size: usize,
    /// Bytes the ring occupies.
    pub segment_size: usize,
    /// The producer cursor (messages ever published, or claimed for MPMC).
    pub head: u64,
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
    /// Messages in the ring (`head - tail`, at most the capacity).
    pub fn len(&self) -> u64 {
        self.head.saturating_sub(self.tail).min(self.capacity)
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
        Status {
            kind: geo.kind,
            capacity: geo.capacity,
            slot_size: geo.slot_size,
            segment_size: geo.total_size,
            tail: mem.tail().load(Ordering::Relaxed),
            head: mem.head().load(Ordering::Relaxed),
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
        let mem = &self.shared().mem;
        let geo = *mem.geometry();
        let cap = geo.capacity;
        // Relaxed (all loads below): a snapshot; nothing is read through it.
        let tail = mem.tail().load(Ordering::Relaxed);
        let head = mem.head().load(Ordering::Relaxed);
        let lag = head.wrapping_sub(tail);
        if lag > cap {
            error(
                &mut out,
                format!("cursors: head {head} - tail {tail} = {lag} exceeds the capacity {cap}"),
            );
        }
        let len_ok = |len: u32| {
            len as usize <= geo.slot_size
                || (geo.kind == Kind::Mpmc && (len == SKIP || len == ABANDONED))
        };
        for idx in 0..cap as usize {
            match geo.kind {
                Kind::Spsc => {
                    let seq = mem.seq32(idx).load(Ordering::Relaxed);
                    // Written as (cursor + 1) as u32 with cursor ≡ idx (mod cap); 0 if never.
                    if seq != 0 && u64::from(seq.wrapping_sub(idx as u32 + 1)) % cap != 0 {
                        error(
                            &mut out,
                            format!("slot {idx}: sequence {seq} cannot belong to this slot"),
                        );
                    }
                }
                Kind::Mpmc => {
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
        if lag <= cap {
            for c in tail..head {
                let idx = (c & geo.mask()) as usize;
                let len = mem.len(idx).load(Ordering::Relaxed);
                let published = match geo.kind {
                    Kind::Spsc => {
                        mem.seq32(idx).load(Ordering::Relaxed) == c.wrapping_add(1) as u32
                    }
                    Kind::Mpmc => mem.seq(idx).load(Ordering::Relaxed) == c.wrapping_add(1),
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
            if geo.kind == Kind::Spsc && entry > 1 {
                error(
                    &mut out,
                    format!("registry entry {entry}: SPSC rings use entries 0 and 1 only"),
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
        if self.shared().shrunk() {
            error(&mut out, crate::error::Corruption::Shrunk.to_string());
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
    /// The ring, or why it could not be opened.
    pub ring: Result<Ring, OpenError>,
}

/// Every shmring segment on the machine that this user can see: POSIX objects in `/dev/shm`
/// starting with the magic, and System V segments with a key (opened to check the magic).
///
/// Opening does not wait for a creator still building a header: such a segment is listed with
/// [`OpenError::NotInitialized`].
pub fn list() -> Vec<Entry> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        let mut names: Vec<_> = dir
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        names.sort();
        for (name, path) in names {
            let mut magic = [0u8; 8];
            let readable = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut magic));
            // An unreadable object may be a ring of another user: list it (as denied) only if
            // it is ours to judge; skip foreign, short or unreadable ones otherwise.
            match readable {
                Ok(()) if u64::from_le_bytes(magic) == MAGIC || magic == [0; 8] => {}
                _ => continue,
            }
            let backing = Backing::Posix(format!("/{name}"));
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            if bytes == 0 {
                continue;
            }
            let ring = open_quick(&backing);
            if magic == [0; 8] && !matches!(ring, Err(OpenError::NotInitialized { .. })) {
                continue; // zeros that are not a ring being built: not ours
            }
            out.push(Entry {
                backing,
                bytes,
                attached_processes: None,
                ring,
            });
        }
    }
    for (key, bytes, nattch) in sysv_segments() {
        let backing = Backing::SysV(SysvKey::Key(key));
        let ring = open_quick(&backing);
        if matches!(ring, Err(OpenError::NotShmring { .. })) {
            continue;
        }
        if matches!(&ring, Err(OpenError::Truncated { .. })) {
            continue; // smaller than a header: not a ring
        }
        out.push(Entry {
            backing,
            bytes,
            attached_processes: Some(nattch),
            ring,
        });
    }
    out
}

/// Opens a ring without waiting for its creator.
fn open_quick(backing: &Backing) -> Result<Ring, OpenError> {
    Ring::builder()
        .backing(backing.clone())
        .init_timeout(Duration::ZERO)
        .open()
}

/// `(key, bytes, nattch)` of every keyed SysV segment, from `/proc/sysvipc/shm`.
fn sysv_segments() -> Vec<(i32, u64, u64)> {
    let Ok(text) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // key shmid perms size cpid lpid nattch ...
            let key: i32 = f.first()?.parse().ok()?;
            let bytes: u64 = f.get(3)?.parse().ok()?;
            let nattch: u64 = f.get(6)?.parse().ok()?;
            (key != 0).then_some((key, bytes, nattch))
        })
        .collect()
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
/// SysV attachment, or that cannot be read is always kept.
///
/// A process could attach between the check and the removal; it keeps its mapping, but the
/// name is gone. Each segment is checked again just before its removal to keep that window
/// small.
pub fn gc(remove: bool) -> Vec<Verdict> {
    gc_matching(remove, |_| true)
}

/// [`gc`] restricted to the segments `select` accepts (a name prefix, say).
pub fn gc_matching(remove: bool, select: impl Fn(&Backing) -> bool) -> Vec<Verdict> {
    list()
        .into_iter()
        .filter(|entry| select(&entry.backing))
        .map(|entry| {
            let judge = |entry: &Entry| -> Result<String, String> {
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
            };
            let verdict = judge(&entry);
            let backing = entry.backing.clone();
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
                        // Check again, as late as possible.
                        let again = Entry {
                            attached_processes: match &backing {
                                Backing::SysV(SysvKey::Key(k)) => {
                                    sysv_segments().into_iter().find(|s| s.0 == *k).map(|s| s.2)
                                }
                                _ => None,
                            },
                            ring: open_quick(&backing),
                            backing: backing.clone(),
                            bytes: 0,
                        };
                        match judge(&again) {
                            Ok(_) => {
                                drop(again);
                                crate::segment::remove(&backing).map_err(|e| e.to_string())
                            }
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
