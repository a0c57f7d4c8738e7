//! Numbers as the tables and charts print them.

/// A ratio, `1.23×`, or `-` if there is none.
pub(crate) fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}×")
    } else {
        "-".into()
    }
}

/// Nanoseconds, scaled to ns, µs or ms.
pub(crate) fn ns(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 1e6 {
        format!("{:.2} ms", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} µs", x / 1e3)
    } else {
        format!("{x:.0} ns")
    }
}

/// A count, scaled to k or M.
pub(crate) fn count(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Bytes, scaled to KiB, MiB or GiB.
pub(crate) fn bytes(x: f64) -> String {
    if x >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", x / (1u64 << 30) as f64)
    } else if x >= (1 << 20) as f64 {
        format!("{:.1} MiB", x / (1 << 20) as f64)
    } else if x >= 1024.0 {
        format!("{:.1} KiB", x / 1024.0)
    } else {
        format!("{x:.0} B")
    }
}

/// Bytes per second.
pub(crate) fn bytes_per_s(x: f64) -> String {
    format!("{}/s", bytes(x))
}

/// KiB as MiB with one decimal.
pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale() {
        assert_eq!(ns(1500.0), "1.50 µs");
        assert_eq!(count(2.5e6), "2.5 M");
        assert_eq!(bytes(1024.0), "1.0 KiB");
        assert_eq!(ratio(f64::NAN), "-");
    }
}
