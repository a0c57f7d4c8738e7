//! Text and JSON renderings of what the library reports.

use std::io::{self, Write};

use serde_json::{Value, json};
use shmring::admin::{Entry, Status, Verdict};
use shmring::{Backing, EndpointInfo, Ring};

/// `/name` or `sysv:0x…` (the library's `Display` of a backing).
pub(crate) fn backing(b: &Backing) -> String {
    b.to_string()
}

fn role(e: &EndpointInfo) -> &'static str {
    match e.role {
        Some(shmring::Role::Producer) => "producer",
        Some(shmring::Role::Consumer) => "consumer",
        None => "malformed",
    }
}

fn endpoints_json(s: &Status) -> Value {
    s.endpoints
        .iter()
        .map(|e| json!({"entry": e.entry, "pid": e.pid, "role": role(e), "alive": e.alive}))
        .collect()
}

fn status_json(b: &Backing, s: &Status) -> Value {
    json!({
        "name": backing(b),
        "kind": s.kind.to_string(),
        "capacity": s.capacity,
        "slot_size": s.slot_size,
        "segment_size": s.segment_size,
        "head": s.head,
        "head_hint": s.head_hint,
        "tail": s.tail,
        "len": s.len(),
        "lag": s.head.wrapping_sub(s.tail),
        "creator": s.creator.map(|(pid, alive)| json!({"pid": pid, "alive": alive})),
        "sleepers": {"consumers": s.sleepers[0], "producers": s.sleepers[1]},
        "attached": {"producers": s.attached[0], "consumers": s.attached[1]},
        "abandoned": s.abandoned,
        "reclaimed": s.reclaimed,
        "endpoints": endpoints_json(s),
    })
}

fn endpoints_text(s: &Status) -> String {
    if s.endpoints.is_empty() {
        return "-".into();
    }
    s.endpoints
        .iter()
        .map(|e| {
            format!(
                "{} {}{}",
                role(e),
                e.pid,
                if e.alive { "" } else { " (dead)" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn list(out: &mut dyn Write, entries: &[Entry], as_json: bool) -> io::Result<()> {
    if as_json {
        let rows: Vec<Value> = entries
            .iter()
            .map(|e| match &e.ring {
                Ok(r) => status_json(&e.backing, &r.status()),
                Err(err) => {
                    json!({"name": backing(&e.backing), "bytes": e.bytes, "error": err.to_string()})
                }
            })
            .collect();
        writeln!(out, "{}", Value::Array(rows))?;
        return Ok(());
    }
    if entries.is_empty() {
        writeln!(out, "no shmring segments")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:<12} {:>10} {:>9} {:>16}  endpoints",
        "name", "kind", "capacity", "slot", "fill"
    )?;
    for e in entries {
        match &e.ring {
            Ok(r) => {
                let s = r.status();
                let fill = format!(
                    "{}/{} ({:.0}%)",
                    s.len(),
                    s.capacity,
                    100.0 * s.len() as f64 / s.capacity as f64
                );
                writeln!(
                    out,
                    "{:<32} {:<12} {:>10} {:>9} {:>16}  {}",
                    backing(&e.backing),
                    s.kind.to_string(),
                    s.capacity,
                    format!("{} B", s.slot_size),
                    fill,
                    endpoints_text(&s)
                )?;
            }
            Err(err) => writeln!(out, "{:<32} ({err})", backing(&e.backing))?,
        }
    }
    Ok(())
}

pub(crate) fn inspect(
    out: &mut dyn Write,
    b: &Backing,
    ring: &Ring,
    as_json: bool,
) -> io::Result<()> {
    let s = ring.status();
    if as_json {
        writeln!(out, "{}", status_json(b, &s))?;
        return Ok(());
    }
    writeln!(out, "name       {}", backing(b))?;
    let records = s.kind.is_records();
    if records {
        writeln!(
            out,
            "kind       {}   capacity {} bytes   largest message {} B   segment {} bytes",
            s.kind, s.capacity, s.slot_size, s.segment_size
        )?;
    } else {
        writeln!(
            out,
            "kind       {}   capacity {}   slot size {} B   segment {} bytes",
            s.kind, s.capacity, s.slot_size, s.segment_size
        )?;
    }
    writeln!(
        out,
        "cursors    head {}   tail {}   lag {}{} ({:.1}% full)",
        s.head,
        s.tail,
        s.head.wrapping_sub(s.tail),
        if records { " bytes" } else { "" },
        100.0 * s.len() as f64 / s.capacity as f64
    )?;
    if s.head_hint != s.head {
        writeln!(
            out,
            "           (stored head {}: a producer died before storing it; the {} say {})",
            s.head_hint,
            if records { "records" } else { "slots" },
            s.head
        )?;
    }
    match s.creator {
        Some((pid, alive)) => writeln!(
            out,
            "creator    process {pid} ({})",
            if alive { "alive" } else { "dead" }
        )?,
        None => writeln!(out, "creator    unknown")?,
    }
    writeln!(
        out,
        "attached   {} producer(s), {} consumer(s)   asleep: {} consumer(s), {} producer(s)",
        s.attached[0], s.attached[1], s.sleepers[0], s.sleepers[1]
    )?;
    if s.abandoned > 0 {
        writeln!(
            out,
            "abandoned  {} message(s) lost to producers that died mid-claim (slots recovered)",
            s.abandoned
        )?;
    }
    if s.reclaimed > 0 {
        writeln!(
            out,
            "reclaimed  {} slot(s) taken back from consumers that died holding a message",
            s.reclaimed
        )?;
    }
    if s.endpoints.is_empty() {
        writeln!(out, "endpoints  none")?;
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        writeln!(
            out,
            "{}#{:<2} {} process {} ({})",
            if i == 0 { "endpoints  " } else { "           " },
            e.entry,
            role(e),
            e.pid,
            if e.alive { "alive" } else { "dead" }
        )?;
    }
    if let Some(reason) = s.stale_reason() {
        writeln!(out, "stale      {reason} (`shmring gc --force` removes it)")?;
    }
    Ok(())
}

pub(crate) fn gc(
    out: &mut dyn Write,
    verdicts: &[Verdict],
    force: bool,
    as_json: bool,
) -> io::Result<()> {
    if as_json {
        let rows: Vec<Value> = verdicts
            .iter()
            .map(|v| {
                json!({
                    "name": backing(&v.backing),
                    "stale": v.stale,
                    "kept": v.kept,
                    "removed": v.removed.as_ref().map(|r| r.is_ok()),
                    "error": v.removed.as_ref().and_then(|r| r.as_ref().err()),
                })
            })
            .collect();
        writeln!(out, "{}", Value::Array(rows))?;
        return Ok(());
    }
    let mut stale = 0;
    for v in verdicts {
        match (&v.stale, &v.removed) {
            (Some(reason), Some(Ok(()))) => {
                writeln!(out, "removed      {}: {reason}", backing(&v.backing))?
            }
            (Some(reason), Some(Err(e))) => {
                writeln!(out, "not removed  {}: {reason}; {e}", backing(&v.backing))?
            }
            (Some(reason), None) => {
                writeln!(out, "stale        {}: {reason}", backing(&v.backing))?
            }
            (None, _) => writeln!(
                out,
                "kept         {}: {}",
                backing(&v.backing),
                v.kept.as_deref().unwrap_or("")
            )?,
        }
        stale += usize::from(v.stale.is_some());
    }
    if !force && stale > 0 {
        writeln!(
            out,
            "{stale} stale segment(s); run `shmring gc --force` to remove them"
        )?;
    } else if verdicts.is_empty() {
        writeln!(out, "no shmring segments")?;
    }
    Ok(())
}
