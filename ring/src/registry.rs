//! The endpoint registry: which processes are attached to a ring, in which role, and whether they
//! are still alive.
//!
//! Each registry entry holds one 64-bit *endpoint word*, 0 when free:
//!
//! ```text
//! bits  0..32  pid
//! bits 32..34  role (1 producer, 2 consumer)
//! bits 34..64  start tag: the process start time (clock ticks since boot, /proc/PID/stat field
//!              22) modulo 2^30 - 1, plus 1; 0 means "unknown"
//! ```
//!
//! Packing everything in one word makes claiming an entry a single compare-and-swap, and makes
//! liveness checks race-free: a checker never sees a pid paired with another process's start
//! time. The start tag is what stops a reused pid from passing for the original process.
//!
//! An SPSC ring reserves entry 0 for its producer and entry 1 for its consumer, which is how "one
//! of each" is enforced across processes. MPMC endpoints take any free entry. An entry held by a
//! provably dead process (no such pid, a zombie, or another start time) is taken over.
//!
//! Everything here is async-signal-safe and allocation-free, so a child created by `fork` may
//! attach its own endpoints before it `exec`s or `_exit`s.
//!
//! The registry knows nothing of the algorithms: whether a dead entry's claim record is still
//! evidence a peer needs is asked of the caller ([`Placement::Any`]).

use crate::error::AttachError;
use crate::kind::Role;
use crate::layout::{Header, MAX_ENDPOINTS, RingMem, Side};
use crate::os;
use crate::sync::Ordering;
use crate::wait;

const ROLE_SHIFT: u32 = 32;
const START_SHIFT: u32 = 34;
#[cfg_attr(loom, allow(dead_code))] // liveness comes from `sync::death` under loom
const START_MODULUS: u64 = (1 << 30) - 1;

/// Attempts at claiming a contended entry before giving up: only a process flipping the word
/// continuously could exhaust it.
const CLAIM_ATTEMPTS: usize = 1000;

/// A packed (pid, role, start tag), as stored in a registry entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EndpointWord(pub(crate) u64);

impl EndpointWord {
    pub(crate) fn new(pid: u32, role: Role, start_tag: u64) -> EndpointWord {
        let role = match role {
            Role::Producer => 1u64,
            Role::Consumer => 2,
        };
        EndpointWord(u64::from(pid) | role << ROLE_SHIFT | start_tag << START_SHIFT)
    }

    /// Declares the process this word names dead (loom models only; `sync::death`).
    #[cfg(loom)]
    pub(crate) fn declare_dead(self) {
        crate::sync::death::declare_dead(self.start_tag());
    }

    /// This process in `role`.
    pub(crate) fn current(role: Role) -> EndpointWord {
        let pid = os::getpid();
        // Under loom every endpoint is its own "process" (`sync::death`).
        #[cfg(loom)]
        let tag = crate::sync::death::identity();
        #[cfg(not(loom))]
        let tag = match os::proc_stat(pid) {
            os::Stat::Found { start, .. } => start_tag(start),
            _ => 0,
        };
        EndpointWord::new(pid, role, tag)
    }

    pub(crate) fn pid(self) -> u32 {
        self.0 as u32
    }

    pub(crate) fn role(self) -> Option<Role> {
        match (self.0 >> ROLE_SHIFT) & 3 {
            1 => Some(Role::Producer),
            2 => Some(Role::Consumer),
            _ => None,
        }
    }

    fn start_tag(self) -> u64 {
        self.0 >> START_SHIFT
    }

    /// Whether this can be a creator word as shmring writes it: a pid this system can have
    /// (1..=`pid_max`) and the producer role bits (creators record themselves as producers).
    /// A word read from a foreign object fails this most of the time; one that passes still
    /// needs the rest of the identity line to be believed (`layout::half_built`).
    pub(crate) fn plausible_creator(self) -> bool {
        let pid = self.pid();
        pid != 0 && pid <= os::pid_max() && (self.0 >> ROLE_SHIFT) & 3 == 1
    }

    /// Whether this word is a live endpoint: it carries a role's bits (a word without them is no
    /// endpoint, `docs/protocol.md`, and its entry is taken over like a dead one) and its
    /// process still runs.
    pub(crate) fn is_live_endpoint(self) -> bool {
        self.role().is_some() && self.is_alive()
    }

    /// Whether the process this word names still runs: same pid, same start time, not a zombie.
    /// Errs on the side of "alive" when it cannot tell, so a live endpoint is never robbed.
    pub(crate) fn is_alive(self) -> bool {
        let pid = self.pid();
        #[cfg(loom)]
        return pid != 0 && crate::sync::death::is_alive(self.start_tag());
        #[cfg(not(loom))]
        {
            if pid == 0 || pid > i32::MAX as u32 {
                return false;
            }
            match os::proc_stat(pid) {
                os::Stat::Found { state, start } => {
                    !matches!(state, b'Z' | b'X' | b'x')
                        && (self.start_tag() == 0 || self.start_tag() == start_tag(start))
                }
                os::Stat::NoSuchProcess => false,
                // No /proc: fall back to kill(pid, 0), which cannot see pid reuse.
                os::Stat::Unreadable => os::kill_probe(pid),
            }
        }
    }
}

#[cfg_attr(loom, allow(dead_code))] // liveness comes from `sync::death` under loom
fn start_tag(start: u64) -> u64 {
    start % START_MODULUS + 1
}

/// Where an endpoint may register.
#[derive(Clone, Copy)]
pub(crate) enum Placement<'a> {
    /// Only this entry (SPSC: 0 for the producer, 1 for the consumer).
    Fixed(usize),
    /// Any entry. An entry whose holder is dead is taken over unless `evidence(role, pos)` says
    /// that the claim it records (for cursor `pos`, in the dead holder's role) still matters:
    /// the caller's algorithm needs it to recover a slot (MPMC: `mpmc::recovery::stuck`).
    Any {
        /// Whether a dead holder's claim record is still evidence.
        evidence: &'a dyn Fn(Role, u64) -> bool,
        /// The first entry it may take (the ones before are another role's fixed entries).
        first: usize,
    },
}

/// An endpoint's hold on a registry entry; give it back with [`deregister`].
#[derive(Debug)]
pub(crate) struct Registration {
    entry: usize,
    word: u64,
}

impl Registration {
    /// The registry entry held.
    pub(crate) fn entry(&self) -> usize {
        self.entry
    }

    /// The endpoint word stored in it.
    pub(crate) fn word(&self) -> u64 {
        self.word
    }
}

/// The `seen` bit of a role in the wait line.
fn seen_bit(role: Role) -> u32 {
    match role {
        Role::Producer => 1,
        Role::Consumer => 2,
    }
}

/// Tells the other endpoints that the registry changed: bumps the generation, which voids
/// cached liveness verdicts.
fn announce(mem: &RingMem) {
    // Relaxed: the generation only says "look again"; what a peer acts on is the attached
    // count (Release/Acquire) and the entries themselves.
    mem.registry_gen().fetch_add(1, Ordering::Relaxed);
}

/// Claims a registry entry for this process in `role`.
pub(crate) fn register(
    mem: &RingMem,
    role: Role,
    placement: Placement,
) -> Result<Registration, AttachError> {
    let (reg, replaced) = claim_entry(mem, role, placement)?;
    // Relaxed (both counts): the increment is ordered for peers by the `seen` Release below, or
    // by a later Release decrement. The decrement for a dead holder may be the one that reaches
    // 0, and a peer's Acquire of that 0 then synchronises with nothing of the dead process's:
    // none is needed, because its messages and releases are published by their own pairs
    // (the slots' sequence words, the record headers, the cursors), which the peer re-polls
    // before it reports "gone" (`Peers::gone`, docs/memory-ordering.md).
    if let Some(dead) = EndpointWord(replaced).role().filter(|_| replaced != 0) {
        // The entry's dead holder never detached: its count goes with it, and so does its
        // sleeper count if it died asleep.
        mem.attached(dead).fetch_sub(1, Ordering::Relaxed);
        heal_entry(mem, reg.entry, replaced);
    }
    mem.attached(role).fetch_add(1, Ordering::Relaxed);
    // Release, after the increment: pairs with the Acquire in `seen` (see `Peers::gone`).
    mem.header()
        .wait
        .seen
        .fetch_or(seen_bit(role), Ordering::Release);
    announce(mem);
    Ok(reg)
}

/// Claims an entry; returns the registration and the word it replaced (0 if it was free).
fn claim_entry(
    mem: &RingMem,
    role: Role,
    placement: Placement,
) -> Result<(Registration, u64), AttachError> {
    let header = mem.header();
    let me = EndpointWord::current(role).0;
    let try_claim = |entry: usize, expected: u64| {
        // AcqRel on success: Acquire pairs with the Release CAS in `deregister` (a departed
        // holder: we see the cursors as it left them; a dead holder's writes are ordered by
        // their own pairs, the sequence words and cursors), Release for whoever takes the
        // entry from us. Failure is Relaxed: the value is only re-examined.
        header.endpoints[entry]
            .owner
            .compare_exchange(expected, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    };
    match placement {
        Placement::Fixed(entry) => {
            for _ in 0..CLAIM_ATTEMPTS {
                // Acquire: pairs with the Release half of the previous holder's CAS (its claim
                // in `claim_entry`, or its departure in `deregister`).
                let cur = header.endpoints[entry].owner.load(Ordering::Acquire);
                let word = EndpointWord(cur);
                if word.is_live_endpoint() {
                    return Err(AttachError::RoleTaken {
                        role,
                        pid: word.pid(),
                    });
                }
                if try_claim(entry, cur) {
                    return Ok((Registration { entry, word: me }, cur));
                }
            }
            Err(AttachError::RoleTaken { role, pid: 0 })
        }
        Placement::Any { evidence, first } => {
            for entry in first..MAX_ENDPOINTS {
                // Relaxed: a hint that the entry is free; the CAS decides (with its Acquire).
                if header.endpoints[entry].owner.load(Ordering::Relaxed) == 0 && try_claim(entry, 0)
                {
                    return Ok((Registration { entry, word: me }, 0));
                }
            }
            for entry in first..MAX_ENDPOINTS {
                let cur = header.endpoints[entry].owner.load(Ordering::Acquire);
                if cur == 0 || EndpointWord(cur).is_live_endpoint() {
                    continue;
                }
                // A dead entry whose claim record names a slot still stuck on it is the
                // evidence a peer needs to recover that slot: leave it until the recovery
                // clears the record. A record of a settled claim (the process died after
                // finishing it, or before its claim CAS) is debris: take the entry over and
                // erase it, or a stream of crashes would fill the registry.
                // Relaxed: a hint; the recovery re-reads under its lock.
                let claim = mem.claim(entry).load(Ordering::Relaxed);
                let held = EndpointWord(cur)
                    .role()
                    .is_some_and(|role| evidence(role, claim.wrapping_sub(1)));
                if claim != 0 && held {
                    continue;
                }
                if try_claim(entry, cur) {
                    // Relaxed: our own entry now; the record is re-written before our claims.
                    mem.claim(entry).store(0, Ordering::Relaxed);
                    return Ok((Registration { entry, word: me }, cur));
                }
            }
            Err(AttachError::RegistryFull { max: MAX_ENDPOINTS })
        }
    }
}

/// Takes back the sleeper count of entry `entry` if its `asleep` word still names `dead`, a
/// holder that died while counted in a `sleepers` word (`wait::arm`). The compare-and-swap
/// takes it back once, and never a live sleeper's (which stores its own word).
fn heal_entry(mem: &RingMem, entry: usize, dead: u64) {
    // Relaxed (both): evidence and a count that only decides whether a waker calls the kernel
    // (a missed decrement costs needless wake-ups; the liveness bound caps everything else).
    if mem
        .asleep(entry)
        .compare_exchange(dead, 0, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let side = match EndpointWord(dead).role() {
        Some(Role::Consumer) => Side::Data,
        Some(Role::Producer) => Side::Space,
        None => return,
    };
    let sleepers = mem.wait_pair(side).sleepers;
    // Relaxed: as above; never below zero (a forged `asleep` word must not wrap the count).
    let _ = sleepers.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// Takes back the sleeper counts of every entry whose `asleep` word names a dead process
/// (`heal_entry`). Run with each liveness check, so a sleeper killed while counted stops
/// costing its wakers a system call per message within a liveness interval of whichever
/// endpoint checks next.
pub(crate) fn heal(mem: &RingMem) {
    for entry in 0..MAX_ENDPOINTS {
        // Relaxed: evidence, re-checked by the compare-and-swap in `heal_entry`.
        let word = mem.asleep(entry).load(Ordering::Relaxed);
        if word != 0 && !EndpointWord(word).is_alive() {
            heal_entry(mem, entry, word);
        }
    }
}

/// Frees the entry, unless someone took it over (believing us dead), and tells the peers.
pub(crate) fn deregister(mem: &RingMem, reg: &Registration) {
    // A loom model "killed" this endpoint: a dead process detaches nothing.
    #[cfg(loom)]
    if !EndpointWord(reg.word).is_alive() {
        return;
    }
    // Relaxed: a live endpoint has no claim in flight when it detaches (a claim borrows it);
    // this only erases an intent left by a claim attempt that found the ring full.
    mem.claim(reg.entry).store(0, Ordering::Relaxed);
    // Release: pairs with the Acquire of the next registrant, publishing our last cursor writes.
    let still_ours = mem.header().endpoints[reg.entry]
        .owner
        .compare_exchange(reg.word, 0, Ordering::Release, Ordering::Relaxed)
        .is_ok();
    // (If not, whoever took the entry over also took our count.)
    if let Some(role) = EndpointWord(reg.word).role().filter(|_| still_ours) {
        // Release: pairs with the Acquire load in `Peers::gone`: a peer that reads the count
        // that reaches 0 sees every message we published and every slot we released.
        mem.attached(role).fetch_sub(1, Ordering::Release);
    }
    announce(mem);
    // Sleepers on either side may be waiting for us: wake them so they see we left. The same
    // barrier protocol as a message (`wait` module docs), with the count as the publication:
    // a sleeper either sees the new count when it re-polls, or is seen and woken here.
    wait::notify(mem, Side::Data);
    wait::notify(mem, Side::Space);
}

/// Whether an endpoint's peers (the other role) are gone, asked on the message path whenever
/// the ring looks full (producers) or empty (consumers).
///
/// "Gone" means a peer attached at some point (the sticky `seen` bit) and none is here now:
/// either the attached count of the peer role is 0 (they all detached; one load of a rarely
/// written word to find out), or the last liveness check found no live process behind the
/// peer entries (they were killed) and the registry has not changed since. A ring whose peer
/// has not arrived yet is not disconnected.
#[derive(Debug)]
pub(crate) struct Peers {
    role: Role,
    /// The registry generation when `dead` was decided.
    generation: u32,
    /// The last liveness check found every peer entry's process dead.
    dead: bool,
    /// When the last liveness check ran: the blocking calls run the next one a liveness
    /// interval later, whatever calls come in between (`wait::block`).
    checked_at: std::time::Instant,
}

impl Peers {
    /// Peers of role `role` (the opposite of the endpoint's own).
    pub(crate) fn new(mem: &RingMem, role: Role) -> Peers {
        Peers {
            role,
            generation: 0,
            dead: false,
            checked_at: std::time::Instant::now(),
        }
        .checked(mem)
    }

    fn checked(mut self, mem: &RingMem) -> Peers {
        self.rescan(mem);
        self
    }

    /// Whether the peers are gone (see the type's docs). Cheap unless a liveness verdict is
    /// cached.
    #[inline]
    pub(crate) fn gone(&mut self, mem: &RingMem) -> bool {
        // The sticky bit first: a peer that is still arriving increments its count *before*
        // setting the bit (Release), so a checker that sees the bit (Acquire) also sees that
        // increment, and a count of 0 read after it means the peers left, not "not yet here".
        if !seen(mem.header(), self.role) {
            return false;
        }
        // Acquire: pairs with the Release decrement in `deregister`: if it reads the 0 left by
        // the last peer to leave, everything the peers published or released is visible.
        if mem.attached(self.role).load(Ordering::Acquire) == 0 {
            return true;
        }
        // Relaxed: compared only; a change voids the verdict until the next check.
        self.dead && mem.registry_gen().load(Ordering::Relaxed) == self.generation
    }

    /// The liveness check: reads every registry entry and checks each peer's process.
    pub(crate) fn rescan(&mut self, mem: &RingMem) -> bool {
        self.checked_at = std::time::Instant::now();
        heal(mem);
        // Relaxed: as in `gone`.
        self.generation = mem.registry_gen().load(Ordering::Relaxed);
        let header = mem.header();
        self.dead = seen(header, self.role)
            && !header.endpoints.iter().any(|entry| {
                // Acquire: pairs with the registrant's CAS, as in `claim_entry`.
                let word = EndpointWord(entry.owner.load(Ordering::Acquire));
                word.0 != 0 && word.role() == Some(self.role) && word.is_alive()
            });
        self.gone(mem)
    }

    /// When [`rescan`](Self::rescan) last ran.
    pub(crate) fn checked_at(&self) -> std::time::Instant {
        self.checked_at
    }

    /// Every registered peer, with liveness.
    pub(crate) fn list(&self, header: &Header) -> Vec<EndpointInfo> {
        endpoints(header)
            .into_iter()
            .filter(|e| e.role == Some(self.role))
            .collect()
    }
}

/// Whether a `role` endpoint ever attached.
fn seen(header: &Header, role: Role) -> bool {
    // Acquire: pairs with the Release `fetch_or` in `register`, made after the registrant's
    // count increment (see `Peers::gone`).
    header.wait.seen.load(Ordering::Acquire) & seen_bit(role) != 0
}

/// One attached endpoint, as the registry records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The registry entry.
    pub entry: usize,
    /// The process.
    pub pid: u32,
    /// Its role, if the word is well-formed.
    pub role: Option<Role>,
    /// Whether the process still runs (same pid and start time, not a zombie).
    pub alive: bool,
}

/// Every occupied registry entry.
pub(crate) fn endpoints(header: &Header) -> Vec<EndpointInfo> {
    (0..MAX_ENDPOINTS)
        .filter_map(|entry| {
            // Relaxed: a snapshot for display; nothing is read through it.
            let w = EndpointWord(header.endpoints[entry].owner.load(Ordering::Relaxed));
            (w.0 != 0).then(|| EndpointInfo {
                entry,
                pid: w.pid(),
                role: w.role(),
                alive: w.is_alive(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_pack_and_unpack() {
        let w = EndpointWord::new(4_194_304, Role::Consumer, START_MODULUS);
        assert_eq!(w.pid(), 4_194_304);
        assert_eq!(w.role(), Some(Role::Consumer));
        assert_eq!(w.start_tag(), START_MODULUS);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_is_not() {
        let me = EndpointWord::current(Role::Producer);
        assert!(me.start_tag() != 0, "/proc should be readable in tests");
        assert!(me.is_alive());
        let other_start =
            EndpointWord::new(me.pid(), Role::Producer, me.start_tag() % START_MODULUS + 1);
        assert!(
            !other_start.is_alive(),
            "a reused pid must not pass for the original"
        );
        assert!(!EndpointWord::new(0, Role::Producer, 0).is_alive());
        // pid_max is at most 2^22 on Linux.
        assert!(!EndpointWord::new((1 << 22) + 7, Role::Producer, 0).is_alive());
    }
}
