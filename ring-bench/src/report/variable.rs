//! The variable-size table, the memory each shmring ring needs for 1,024 such messages, and the
//! record ring's round trip over SPSC's.

use serde_json::{Value, json};

use super::{Percentiles, Results, nan_null, summary};
use crate::mix::Mix;
use crate::transport::Transport;
use crate::units::{bytes, bytes_per_s, count, ratio};

impl Results {
    fn mix_index(&mut self, m: &Mix) -> usize {
        match self.mixes.iter().position(|x| x == m) {
            Some(i) => i,
            None => {
                self.mixes.push(*m);
                self.mixes.len() - 1
            }
        }
    }

    /// A variable-size throughput figure.
    pub(crate) fn mix(&mut self, round: usize, m: &Mix, t: Transport, rate: f64) {
        let i = self.mix_index(m);
        self.mix_tput
            .entry((i, t.name()))
            .or_default()
            .insert(round, rate);
    }

    pub(crate) fn mix_skip(&mut self, m: &Mix, t: Transport, why: String) {
        let i = self.mix_index(m);
        self.mix_skipped.insert((i, t.name()), why);
    }

    /// The median of the per-round ratios of `t` to `base` for mix `i`.
    fn mix_ratio(&self, i: usize, t: &'static str, base: &'static str) -> f64 {
        let (Some(a), Some(b)) = (self.mix_tput.get(&(i, t)), self.mix_tput.get(&(i, base))) else {
            return f64::NAN;
        };
        let r: Vec<f64> = a
            .iter()
            .filter_map(|(round, x)| b.get(round).map(|y| x / y))
            .collect();
        if r.is_empty() {
            f64::NAN
        } else {
            summary(&r).0
        }
    }

    pub(super) fn mix_json(&self) -> Value {
        let mut out = Vec::new();
        for (i, m) in self.mixes.iter().enumerate() {
            let mean = m.mean_size();
            let (slot, records, need) = crate::mix::memory_for_1024(m);
            let rows: Vec<Value> = crate::mix::TRANSPORTS
                .iter()
                .map(|t| {
                    let per = self.mix_tput.get(&(i, t.name()));
                    let rates: Vec<f64> = per.map(|p| p.values().copied().collect()).unwrap_or_default();
                    let (md, lo, hi) = if rates.is_empty() { (f64::NAN, f64::NAN, f64::NAN) } else { summary(&rates) };
                    json!({
                        "transport": t.name(),
                        "msgs_per_sec": {"median": nan_null(md), "min": nan_null(lo), "max": nan_null(hi)},
                        "bytes_per_sec_median": nan_null(md * mean),
                        "ratio_vs_pipe": nan_null(self.mix_ratio(i, t.name(), "pipe")),
                        "ratio_vs_spsc": nan_null(self.mix_ratio(i, t.name(), "shmring-spsc")),
                        "per_round": per.map(|p| p.iter().map(|(r, x)| json!({"round": r, "msgs_per_sec": x})).collect::<Vec<_>>()),
                        "skipped": self.mix_skipped.get(&(i, t.name())),
                    })
                })
                .collect();
            out.push(json!({
                "mix": m.to_string(),
                "log_uniform": m.log,
                "lo": m.lo,
                "hi": m.hi,
                "mean_size": mean,
                "memory_for_1024": {"slot_ring_bytes": slot, "record_ring_bytes": records, "records_take_bytes": need},
                "throughput": rows,
            }));
        }
        Value::Array(out)
    }

    /// The record ring's round trip over the SPSC slot ring's, per size: medians of the
    /// per-round ratios of p50 and p99.9.
    pub(super) fn print_records_vs_spsc(&self) {
        let pair = |size: usize, pick: fn(&Percentiles) -> f64| {
            let (Some(a), Some(b)) = (
                self.lat.get(&(size, "shmring-records")),
                self.lat.get(&(size, "shmring-spsc")),
            ) else {
                return f64::NAN;
            };
            let r: Vec<f64> = a
                .iter()
                .filter_map(|(round, x)| b.get(round).map(|y| pick(x) / pick(y)))
                .collect();
            if r.is_empty() {
                f64::NAN
            } else {
                summary(&r).0
            }
        };
        let sizes: Vec<usize> = self
            .lat
            .keys()
            .filter(|k| k.1 == "shmring-records")
            .map(|k| k.0)
            .collect();
        if sizes.is_empty() || !self.lat.keys().any(|k| k.1 == "shmring-spsc") {
            return;
        }
        print!("shmring-records round trip ÷ shmring-spsc's (per-round medians):");
        for size in sizes {
            print!(
                "  {}: p50 {}, p99.9 {}",
                bytes(size as f64),
                ratio(pair(size, |p| p.p50)),
                ratio(pair(size, |p| p.p999))
            );
        }
        println!();
        println!();
    }

    pub(super) fn print_mixes(&self) {
        if self.mixes.is_empty() {
            return;
        }
        println!(
            "Variable sizes: a size drawn per message; medians of {} rounds; × = median of per-round ratios",
            self.rounds()
        );
        println!(
            "{:<26} {:<17} {:>10} {:>12} {:>8} {:>9}",
            "mix (mean size)", "transport", "msgs/s", "bytes/s", "× pipe", "× spsc"
        );
        for (i, m) in self.mixes.iter().enumerate() {
            let label = format!("{m} ({})", bytes(m.mean_size()));
            for t in crate::mix::TRANSPORTS {
                let Some(per) = self.mix_tput.get(&(i, t.name())) else {
                    if let Some(why) = self.mix_skipped.get(&(i, t.name())) {
                        println!("{label:<26} {:<17} {why}", t.name());
                    }
                    continue;
                };
                let md = summary(&per.values().copied().collect::<Vec<_>>()).0;
                println!(
                    "{label:<26} {:<17} {:>10} {:>12} {:>8} {:>9}",
                    t.name(),
                    count(md),
                    bytes_per_s(md * m.mean_size()),
                    ratio(self.mix_ratio(i, t.name(), "pipe")),
                    ratio(self.mix_ratio(i, t.name(), "shmring-spsc")),
                );
            }
        }
        println!();
        println!(
            "Memory to hold 1,024 messages of the mix: the slot ring needs 1,024 slots of the largest"
        );
        println!(
            "message; the record ring the power of two at or above what 1,024 records of the mean take"
        );
        println!(
            "{:<26} {:>14} {:>14} {:>9} {:>22}",
            "mix", "slot ring", "record ring", "ratio", "1,024 records take"
        );
        for m in &self.mixes {
            let (slot, records, need) = crate::mix::memory_for_1024(m);
            println!(
                "{:<26} {:>14} {:>14} {:>9} {:>22}",
                m.to_string(),
                bytes(slot as f64),
                bytes(records as f64),
                format!("{:.2}×", records as f64 / slot as f64),
                bytes(need),
            );
        }
        println!();
    }
}
