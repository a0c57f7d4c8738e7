//! `shmring doctor`: what on this host (or in this container) would break shared-memory IPC,
//! and what to do about it.

use std::os::unix::fs::MetadataExt;

use crate::segment::posix::{SHM_DIR, free_bytes};
use crate::{Ring, os};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Fine.
    Ok,
    /// Worth knowing; nothing is broken.
    Note,
    /// Something will fail or lose data until it is fixed.
    Problem,
}

/// One check of [`doctor`]: what was looked at, and what was found (with the remedy, for a
/// problem).
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked (`/dev/shm`, `sysv`, ...).
    pub topic: &'static str,
    /// The outcome.
    pub health: Health,
    /// One line: what was found, and what to do.
    pub message: String,
}

/// Below this much free space in `/dev/shm`, rings of ordinary size no longer fit.
const LOW_SPACE: u64 = 8 << 20;

/// Checks what breaks shared-memory IPC on this host and in containers: `/dev/shm` (mounted,
/// a tmpfs, its size and free space and the largest ring that fits, mode 1777), whether this
/// process seems to be in a private IPC or mount namespace (a container without `--ipc=host`),
/// the System V limits, `futex` and `membarrier`, and stale segments `gc` would remove.
///
/// # Examples
/// ```
/// for check in shmring::admin::doctor() {
///     println!("{:?} {}: {}", check.health, check.topic, check.message);
/// }
/// ```
pub fn doctor() -> Vec<Check> {
    let mut out = Vec::new();
    dev_shm(&mut out);
    namespaces(&mut out);
    sysv(&mut out);
    wake_up(&mut out);
    stale(&mut out);
    out
}

fn push(out: &mut Vec<Check>, topic: &'static str, health: Health, message: String) {
    out.push(Check {
        topic,
        health,
        message,
    });
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The filesystem type mounted at `path`, from `/proc/self/mountinfo` (the last mount there).
fn fs_type(path: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .rev()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let fstype = right.split_whitespace().next()?;
            (mount_point == path).then(|| fstype.to_owned())
        })
        .next()
}

fn dev_shm(out: &mut Vec<Check>) {
    let topic = "/dev/shm";
    let Ok(meta) = std::fs::metadata(SHM_DIR) else {
        push(
            out,
            topic,
            Health::Problem,
            format!(
                "{SHM_DIR} does not exist: POSIX rings cannot be made or opened \
                 (mount a tmpfs there, or use SysV or anonymous rings)"
            ),
        );
        return;
    };
    match fs_type(SHM_DIR).as_deref() {
        Some("tmpfs") => {}
        Some(other) => push(
            out,
            topic,
            Health::Note,
            format!("{SHM_DIR} is a {other} mount, not tmpfs: rings live on that filesystem"),
        ),
        None => push(
            out,
            topic,
            Health::Problem,
            format!(
                "nothing is mounted at {SHM_DIR}: rings would live on the root filesystem \
                 (mount -t tmpfs tmpfs {SHM_DIR})"
            ),
        ),
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o1777 {
        push(
            out,
            topic,
            Health::Problem,
            format!(
                "{SHM_DIR} has mode {mode:o}, not 1777: other users cannot make rings there, \
                 or can remove each other's (chmod 1777 {SHM_DIR})"
            ),
        );
    }
    let total = nix::sys::statvfs::statvfs(SHM_DIR)
        .ok()
        .map(|st| st.blocks() * st.fragment_size());
    match (free_bytes(), total) {
        (Some(free), Some(total)) => {
            let largest = Ring::builder()
                .spsc()
                .capacity(1)
                .slot_size(1)
                .segment_size()
                .map_or(0, |header| free.saturating_sub(header as u64));
            let health = if free < LOW_SPACE {
                Health::Problem
            } else {
                Health::Ok
            };
            let remedy = if health == Health::Problem {
                " (docker run --shm-size=1g, or --ipc=host; Kubernetes: an emptyDir with \
                 medium: Memory mounted at /dev/shm; or `shmring gc --force`)"
            } else {
                ""
            };
            push(
                out,
                topic,
                health,
                format!(
                    "{} free of {} (the largest ring that fits: about {} of slots){remedy}",
                    mib(free),
                    mib(total),
                    mib(largest)
                ),
            );
        }
        _ => push(
            out,
            topic,
            Health::Note,
            format!("cannot tell how much space {SHM_DIR} has (statvfs failed)"),
        ),
    }
}

fn namespaces(out: &mut Vec<Check>) {
    for (ns, what) in [
        (
            "ipc",
            "System V rings of processes outside it are invisible here, and theirs to us",
        ),
        (
            "mnt",
            "its /dev/shm may be its own: POSIX rings are shared only with processes that see the same /dev/shm",
        ),
    ] {
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}"));
        let init = std::fs::read_link(format!("/proc/1/ns/{ns}"));
        let message = match (mine, init) {
            (Ok(a), Ok(b)) if a == b => continue,
            (Ok(_), Ok(_)) => format!(
                "this process is in a private {ns} namespace (a container?): {what} \
                 (Docker: --ipc=host or --ipc=container:NAME; Kubernetes: share a pod)"
            ),
            _ => format!(
                "cannot tell whether this process shares its {ns} namespace with the host \
                 (/proc/1/ns is not readable)"
            ),
        };
        push(out, "namespaces", Health::Note, message);
    }
}

fn sysv(out: &mut Vec<Check>) {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let (Some(shmmax), Some(shmall), Some(shmmni)) =
        (read("shmmax"), read("shmall"), read("shmmni"))
    else {
        push(
            out,
            "sysv",
            Health::Note,
            "cannot read the System V limits (/proc/sys/kernel/shm*)".into(),
        );
        return;
    };
    let segments = crate::segment::sysv::list_all().len() as u64;
    let mut health = Health::Ok;
    // The kernel's defaults mean "no limit" (close to 2^64).
    let limit = |v: u64, unit: &dyn Fn(u64) -> String| {
        if v >= 1 << 50 {
            "unlimited".to_owned()
        } else {
            unit(v)
        }
    };
    let mut message = format!(
        "kernel.shmmax {} per segment, kernel.shmall {}, {segments} of kernel.shmmni {shmmni} \
         segments in use",
        limit(shmmax, &mib),
        limit(shmall, &|p| format!("{p} pages")),
    );
    if segments >= shmmni {
        health = Health::Problem;
        message += " (no new System V segment fits: raise kernel.shmmni, or remove some)";
    } else if shmmax < 1 << 20 {
        health = Health::Problem;
        message += " (System V rings are limited to a few slots: raise kernel.shmmax)";
    }
    push(out, "sysv", health, message);
}

fn wake_up(out: &mut Vec<Check>) {
    let futex = os::futex_available();
    push(
        out,
        "futex",
        if futex { Health::Ok } else { Health::Problem },
        if futex {
            "available: blocking calls sleep without burning CPU".into()
        } else {
            "futex(2) is not available (a seccomp filter?): blocking calls cannot sleep".into()
        },
    );
    let mask = os::membarrier_query();
    let wanted = (libc::MEMBARRIER_CMD_GLOBAL_EXPEDITED
        | libc::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) as libc::c_long;
    let membarrier = mask >= 0 && mask & wanted == wanted;
    push(
        out,
        "membarrier",
        if membarrier { Health::Ok } else { Health::Note },
        if membarrier {
            "available: a sender pays no fence per message".into()
        } else {
            "membarrier(GLOBAL_EXPEDITED) is not available (old kernel or seccomp): senders \
             use a full fence per message, sleepers 1 ms slices (correct, a little slower)"
                .into()
        },
    );
}

fn stale(out: &mut Vec<Check>) {
    let stale: Vec<String> = super::gc(false)
        .into_iter()
        .filter(|v| v.stale.is_some())
        .map(|v| v.backing.to_string())
        .collect();
    if stale.is_empty() {
        push(out, "stale", Health::Ok, "no stale segments".into());
    } else {
        push(
            out,
            "stale",
            Health::Problem,
            format!(
                "{} stale segment(s) hold memory nobody uses ({}): `shmring gc --force` \
                 removes them",
                stale.len(),
                stale.join(", ")
            ),
        );
    }
}
