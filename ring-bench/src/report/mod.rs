//! Collecting per-round figures and printing them: table, JSON or CSV.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::mix::Mix;
mod variable;

use crate::plot;
use crate::transport::Transport;
use crate::units::{bytes, bytes_per_s, count, mib, ns, ratio};

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Human-readable tables.
    Table,
    /// One JSON document.
    Json,
    /// One CSV row per figure.
    Csv,
}

#[derive(Clone, Copy, Debug)]
struct Percentiles {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn percentiles(rtts: &[u64]) -> Percentiles {
    // 1 ns to 100 s at 3 significant digits.
    let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    for &r in rtts {
        h.saturating_record(r.max(1));
    }
    Percentiles {
        p50: h.value_at_quantile(0.5) as f64,
        p99: h.value_at_quantile(0.99) as f64,
        p999: h.value_at_quantile(0.999) as f64,
        max: h.max() as f64,
    }
}

/// Median, min and max of a list.
fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    let median = if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    };
    (median, s[0], s[s.len() - 1])
}

type Key = (usize, &'static str);

/// The message sizes a table keyed by (size, transport) holds, ascending, each once.
fn sizes_of<V>(table: &BTreeMap<Key, V>) -> Vec<usize> {
    let mut sizes: Vec<usize> = table.keys().map(|k| k.0).collect();
    sizes.dedup(); // keys are sorted by size first
    sizes
}

pub(crate) struct Results {
    pinned: bool,
    order: Vec<Transport>,
    /// Per round: the raw-spin probe's percentiles.
    probes: BTreeMap<usize, Percentiles>,
    /// (size, transport) → per round msgs/s.
    tput: BTreeMap<Key, BTreeMap<usize, f64>>,
    /// (size, transport) → per round percentiles.
    lat: BTreeMap<Key, BTreeMap<usize, Percentiles>>,
    /// (size, transport) → largest (parent peak KiB, child peak KiB) seen, and the segment size.
    mem: BTreeMap<Key, (u64, u64, Option<usize>)>,
    /// (mode, size, transport) → why there is no figure.
    skipped: BTreeMap<(&'static str, usize, &'static str), String>,
    /// CPU use of an idle consumer, percent of one CPU: (blocking `recv`, spinning `try_recv`),
    /// and the time watched.
    idle: (Option<f64>, Option<f64>, Duration),
    /// CPU use of an async consumer awaiting `recv` on an empty ring, percent.
    idle_async: Option<f64>,
    /// Variable sizes: (mix, transport) → per round msgs/s, or why there is none.
    mixes: Vec<Mix>,
    mix_tput: BTreeMap<(usize, &'static str), BTreeMap<usize, f64>>,
    mix_skipped: BTreeMap<(usize, &'static str), String>,
}

impl Results {
    pub(crate) fn new(pinned: bool) -> Results {
        Results {
            pinned,
            order: Vec::new(),
            probes: BTreeMap::new(),
            tput: BTreeMap::new(),
            lat: BTreeMap::new(),
            skipped: BTreeMap::new(),
            mem: BTreeMap::new(),
            idle: (None, None, Duration::ZERO),
            idle_async: None,
            mixes: Vec::new(),
            mix_tput: BTreeMap::new(),
            mix_skipped: BTreeMap::new(),
        }
    }

    pub(crate) fn idle_async(&mut self, percent: f64) {
        self.idle_async = Some(percent);
    }

    pub(crate) fn idle(&mut self, spinning: bool, percent: f64, over: Duration) {
        if spinning {
            self.idle.1 = Some(percent);
        } else {
            self.idle.0 = Some(percent);
        }
        self.idle.2 = over;
    }

    pub(crate) fn memory(
        &mut self,
        t: Transport,
        size: usize,
        parent: u64,
        child: u64,
        segment: Option<usize>,
    ) {
        let e = self.mem.entry((size, t.name())).or_insert((0, 0, segment));
        e.0 = e.0.max(parent);
        e.1 = e.1.max(child);
    }

    pub(crate) fn skip(&mut self, t: Transport, mode: &'static str, size: usize, why: String) {
        self.note(t);
        self.skipped.insert((mode, size, t.name()), why);
    }

    fn note(&mut self, t: Transport) {
        if !self.order.contains(&t) {
            self.order.push(t);
        }
    }

    pub(crate) fn probe(&mut self, round: usize, rtts: &[u64]) {
        self.probes.insert(round, percentiles(rtts));
    }

    pub(crate) fn throughput(&mut self, round: usize, t: Transport, size: usize, rate: f64) {
        self.note(t);
        self.tput
            .entry((size, t.name()))
            .or_default()
            .insert(round, rate);
    }

    pub(crate) fn latency(&mut self, round: usize, t: Transport, size: usize, rtts: &[u64]) {
        self.note(t);
        self.lat
            .entry((size, t.name()))
            .or_default()
            .insert(round, percentiles(rtts));
    }

    /// Per-round ratio of `t` against `base` at `size`, median over rounds.
    fn tput_ratio(&self, size: usize, t: &'static str, base: &'static str) -> f64 {
        let (Some(a), Some(b)) = (self.tput.get(&(size, t)), self.tput.get(&(size, base))) else {
            return f64::NAN;
        };
        let ratios: Vec<f64> = a
            .iter()
            .filter_map(|(r, x)| b.get(r).map(|y| x / y))
            .collect();
        summary(&ratios).0
    }

    fn tput_bytes_ratio_memcpy(&self, size: usize, t: &'static str) -> f64 {
        self.tput_ratio(size, t, "memcpy")
    }

    /// Per-round ratio of a latency percentile against the round's raw-spin probe.
    fn lat_ratio(&self, size: usize, t: &'static str, pick: fn(&Percentiles) -> f64) -> f64 {
        let Some(a) = self.lat.get(&(size, t)) else {
            return f64::NAN;
        };
        let ratios: Vec<f64> = a
            .iter()
            .filter_map(|(r, p)| self.probes.get(r).map(|q| pick(p) / pick(q)))
            .collect();
        summary(&ratios).0
    }

    fn machine() -> Value {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or("unknown".to_owned(), |s| s.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".to_owned(), |s| s.trim().to_owned());
        json!({
            "cpu": model,
            "cpus": crate::proc::cpus(),
            "kernel": kernel,
            "arch": std::env::consts::ARCH,
        })
    }

    pub(crate) fn print(&self, format: Format) {
        match format {
            Format::Table => self.print_table(),
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(&self.json()).unwrap_or_default()
            ),
            Format::Csv => self.print_csv(),
        }
    }

    /// The JSON document, pretty-printed.
    pub(crate) fn json_string(&self) -> String {
        serde_json::to_string_pretty(&self.json()).unwrap_or_default()
    }

    /// Writes `throughput.svg` and `latency.svg` into `dir`; returns their paths.
    pub(crate) fn plot(&self, dir: &std::path::Path) -> Result<Vec<String>, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let tput = self.series(&self.tput, |size, per| {
            summary(&per.values().copied().collect::<Vec<_>>()).0 * size as f64
        });
        let lat = self.series(&self.lat, |_, per| {
            summary(&per.values().map(|p| p.p50).collect::<Vec<_>>()).0
        });
        let charts = [
            (
                "throughput.svg",
                "Throughput between two processes (median)",
                "bytes/s",
                tput,
                bytes_per_s as fn(f64) -> String,
            ),
            (
                "latency.svg",
                "Round-trip latency p50 (median over rounds)",
                "round trip",
                lat,
                ns,
            ),
        ];
        let mut files = Vec::new();
        for (file, title, y_label, series, fmt) in charts {
            let path = dir.join(file);
            plot::line_chart(&path, title, y_label, &series, fmt)?;
            files.push(path.display().to_string());
        }
        Ok(files)
    }

    /// One (size, value) line per transport, in the order transports were measured.
    fn series<V>(
        &self,
        figures: &BTreeMap<Key, BTreeMap<usize, V>>,
        value: impl Fn(usize, &BTreeMap<usize, V>) -> f64,
    ) -> Vec<plot::Series> {
        self.order
            .iter()
            .filter_map(|t| {
                let pts: Vec<(usize, f64)> = figures
                    .iter()
                    .filter(|((_, n), _)| *n == t.name())
                    .map(|((s, _), per)| (*s, value(*s, per)))
                    .collect();
                (!pts.is_empty()).then_some((t.name(), pts))
            })
            .collect()
    }

    fn rounds(&self) -> usize {
        self.probes.len()
    }

    fn json(&self) -> Value {
        let mut results = Vec::new();
        for ((size, name), per) in &self.tput {
            let rates: Vec<f64> = per.values().copied().collect();
            let (m, lo, hi) = summary(&rates);
            let t = self.order.iter().find(|t| t.name() == *name).copied();
            let per_round: Vec<Value> = per
                .iter()
                .map(|(r, x)| json!({"round": r, "msgs_per_sec": x, "raw_spin_p50_ns": self.probes.get(r).map(|p| p.p50)}))
                .collect();
            results.push(json!({
                "transport": name,
                "api": t.map_or("-", |t| t.api()),
                "mode": "throughput",
                "size": size,
                "rounds": rates.len(),
                "msgs_per_sec": {"median": m, "min": lo, "max": hi},
                "bytes_per_sec": {"median": m * *size as f64, "min": lo * *size as f64, "max": hi * *size as f64},
                "ratio_vs_pipe": nan_null(self.tput_ratio(*size, name, "pipe")),
                "peak_rss_kib": self.mem.get(&(*size, *name)).map(|m| json!({"receiver": m.0, "sender": m.1})),
                "segment_bytes": self.mem.get(&(*size, *name)).and_then(|m| m.2),
                "ratio_vs_memcpy": nan_null(self.tput_bytes_ratio_memcpy(*size, name)),
                "reference": reference(name),
                "ratio_vs_reference": reference(name).map_or(Value::Null, |r| nan_null(self.tput_ratio(*size, name, r))),
                "per_round": per_round,
            }));
        }
        for ((size, name), per) in &self.lat {
            let pick =
                |f: fn(&Percentiles) -> f64| summary(&per.values().map(f).collect::<Vec<_>>()).0;
            let t = self.order.iter().find(|t| t.name() == *name).copied();
            let per_round: Vec<Value> = per
                .iter()
                .map(|(r, p)| json!({"round": r, "rtt_ns": {"p50": p.p50, "p99": p.p99, "p999": p.p999, "max": p.max}, "raw_spin_p50_ns": self.probes.get(r).map(|q| q.p50)}))
                .collect();
            results.push(json!({
                "transport": name,
                "api": t.map_or("-", |t| t.api()),
                "mode": "latency",
                "size": size,
                "rounds": per.len(),
                "rtt_ns": {"p50": pick(|p| p.p50), "p99": pick(|p| p.p99), "p999": pick(|p| p.p999), "max": pick(|p| p.max)},
                "ratio_p50_vs_raw_spin": nan_null(self.lat_ratio(*size, name, |p| p.p50)),
                "ratio_p999_vs_raw_spin": nan_null(self.lat_ratio(*size, name, |p| p.p999)),
                "per_round": per_round,
            }));
        }
        let probes: Vec<Value> = self
            .probes
            .iter()
            .map(|(r, p)| json!({"round": r, "p50": p.p50, "p99": p.p99, "p999": p.p999}))
            .collect();
        for ((mode, size, name), why) in &self.skipped {
            results.push(
                json!({"transport": name, "mode": mode, "size": size, "not_applicable": why}),
            );
        }
        json!({
            "machine": Self::machine(),
            "pinned": self.pinned,
            "raw_spin_probe_rtt_ns": probes,
            "results": results,
            "variable_sizes": self.mix_json(),
            "idle_consumer_cpu_percent": (self.idle.0.is_some() || self.idle.1.is_some()).then(|| json!({
                "blocking_recv": self.idle.0,
                "spinning_try_recv": self.idle.1,
                "async_recv": self.idle_async,
                "window_ms": self.idle.2.as_millis() as u64,
            })),
        })
    }

    fn print_csv(&self) {
        println!(
            "transport,api,mode,size,rounds,median,min,max,unit,ratio_vs_pipe,ratio_vs_limit,reference,ratio_vs_reference"
        );
        for ((size, name), per) in &self.tput {
            let (m, lo, hi) = summary(&per.values().copied().collect::<Vec<_>>());
            // The reference's name, and the ratio (empty where the reference has no figure).
            let vs = reference(name).map_or(",".to_owned(), |r| {
                let x = self.tput_ratio(*size, name, r);
                if x.is_finite() {
                    format!("{r},{x:.3}")
                } else {
                    format!("{r},")
                }
            });
            println!(
                "{name},{},throughput,{size},{},{m:.0},{lo:.0},{hi:.0},msgs/s,{:.3},{:.3},{vs}",
                self.api(name),
                per.len(),
                self.tput_ratio(*size, name, "pipe"),
                self.tput_bytes_ratio_memcpy(*size, name)
            );
        }
        for ((size, name), per) in &self.lat {
            let (m, lo, hi) = summary(&per.values().map(|p| p.p50).collect::<Vec<_>>());
            println!(
                "{name},{},latency-p50,{size},{},{m:.0},{lo:.0},{hi:.0},ns,,{:.3},,",
                self.api(name),
                per.len(),
                self.lat_ratio(*size, name, |p| p.p50)
            );
        }
    }

    /// Peak resident memory of the receiving (parent) and sending (child) process per
    /// throughput figure, largest over rounds, and shmring's segment size.
    fn print_memory(&self) {
        let sizes = sizes_of(&self.mem);
        if sizes.is_empty() {
            return;
        }
        println!("Peak resident memory during throughput, receiver + sender (shmring: + segment)");
        print!("{:<24}", "transport");
        for s in &sizes {
            print!(" {:>22}", bytes(*s as f64));
        }
        println!();
        for t in &self.order {
            if !sizes.iter().any(|s| self.mem.contains_key(&(*s, t.name()))) {
                continue;
            }
            print!("{:<24}", t.name());
            for s in &sizes {
                let cell = self.mem.get(&(*s, t.name())).map_or("-".to_owned(), |m| {
                    let base = format!("{}+{}", mib(m.0), mib(m.1));
                    match m.2 {
                        Some(seg) => format!("{base} ({})", bytes(seg as f64)),
                        None => base,
                    }
                });
                print!(" {cell:>22}");
            }
            println!();
        }
        println!();
    }

    fn api(&self, name: &str) -> &'static str {
        self.order
            .iter()
            .find(|t| t.name() == name)
            .map_or("-", |t| t.api())
    }

    fn print_table(&self) {
        let m = Self::machine();
        println!(
            "ring-bench: {} ({} CPUs, {} {}), {} rounds, sides {}",
            m["cpu"].as_str().unwrap_or("?"),
            m["cpus"],
            m["arch"].as_str().unwrap_or("?"),
            m["kernel"].as_str().unwrap_or("?"),
            self.rounds(),
            if self.pinned {
                "pinned to CPUs 0 and 1"
            } else {
                "not pinned (one CPU)"
            }
        );
        let probe: Vec<f64> = self.probes.values().map(|p| p.p50).collect();
        let (pm, plo, phi) = summary(&probe);
        println!(
            "raw-spin probe (cache-line round trip, one clock read per trip): p50 {} (rounds: {}–{})\n",
            ns(pm),
            ns(plo),
            ns(phi)
        );
        println!(
            "Throughput, one producer process → one consumer process (-2x2: two → two; medians; ratios are per-round medians;"
        );
        println!(
            "  × ref: SPSC rows against rtrb, MPMC rows against crossbeam's ArrayQueue with as many producers and consumers)"
        );
        println!(
            "{:<24} {:>8} {:>26} {:>12} {:>9} {:>9} {:>8}",
            "transport", "size", "msgs/s (min–max)", "bytes/s", "× pipe", "× memcpy", "× ref"
        );
        let sizes = sizes_of(&self.tput);
        for size in sizes {
            for t in &self.order {
                let Some(per) = self.tput.get(&(size, t.name())) else {
                    let in_process = t.name() == "rtrb" || t.name().starts_with("crossbeam");
                    if let Some(why) = self.skipped.get(&("throughput", size, t.name()))
                        && !in_process
                    {
                        println!("{:<24} {:>8}  n/a: {why}", t.name(), bytes(size as f64));
                    }
                    continue;
                };
                let (m, lo, hi) = summary(&per.values().copied().collect::<Vec<_>>());
                let vs =
                    reference(t.name()).map_or(f64::NAN, |r| self.tput_ratio(size, t.name(), r));
                println!(
                    "{:<24} {:>8} {:>26} {:>12} {:>9} {:>9} {:>8}",
                    t.name(),
                    bytes(size as f64),
                    format!("{} ({}–{})", count(m), count(lo), count(hi)),
                    format!("{}/s", bytes(m * size as f64)),
                    ratio(self.tput_ratio(size, t.name(), "pipe")),
                    ratio(self.tput_bytes_ratio_memcpy(size, t.name())),
                    ratio(vs),
                );
            }
            println!();
        }
        self.print_memory();
        self.print_mixes();
        println!("Round-trip latency, ping-pong between two processes (medians over rounds)");
        println!(
            "{:<22} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12} {:>13}",
            "transport", "size", "p50", "p99", "p99.9", "max", "p50 × spin", "p99.9 × spin"
        );
        let sizes = sizes_of(&self.lat);
        for size in sizes {
            for t in &self.order {
                let Some(per) = self.lat.get(&(size, t.name())) else {
                    continue;
                };
                let pick = |f: fn(&Percentiles) -> f64| {
                    summary(&per.values().map(f).collect::<Vec<_>>()).0
                };
                println!(
                    "{:<22} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12} {:>13}",
                    t.name(),
                    bytes(size as f64),
                    ns(pick(|p| p.p50)),
                    ns(pick(|p| p.p99)),
                    ns(pick(|p| p.p999)),
                    ns(pick(|p| p.max)),
                    ratio(self.lat_ratio(size, t.name(), |p| p.p50)),
                    ratio(self.lat_ratio(size, t.name(), |p| p.p999)),
                );
            }
            println!();
        }
        self.print_records_vs_spsc();
        if let (Some(blocking), Some(spinning)) = (self.idle.0, self.idle.1) {
            println!(
                "Idle consumer, empty ring, live producer, {} ms: CPU use (one CPU = 100%)",
                self.idle.2.as_millis()
            );
            println!(
                "{:<44} {:>8.2}%",
                "shmring-spsc recv (blocking, default wait)", blocking
            );
            println!(
                "{:<44} {:>8.2}%",
                "shmring-spsc try_recv loop (spinning)", spinning
            );
            if let Some(a) = self.idle_async {
                println!("{:<44} {:>8.2}%", "shmring-async recv (tokio, awaiting)", a);
            }
            println!();
        }
    }
}

fn nan_null(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// The in-process reference a shmring row is compared with, besides the pipe: `rtrb` for the
/// SPSC rows, crossbeam's `ArrayQueue` with the same producer and consumer counts for the MPMC
/// rows.
fn reference(name: &str) -> Option<&'static str> {
    if name.starts_with("shmring-spsc") {
        Some("rtrb")
    } else if name == "shmring-mpmc" {
        Some("crossbeam-arrayqueue")
    } else if name == "shmring-mpmc-2x2" {
        Some("crossbeam-arrayqueue-2x2")
    } else {
        None
    }
}
