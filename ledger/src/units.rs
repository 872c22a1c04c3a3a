//! Durations and sizes as people write them in config files: `"250ms"`, `"10s"`, `"4 MiB"`.
//!
//! One grammar for every config of the project (the gateway's and the ledger node's), so a value
//! that works in one file works in the other. Errors are messages without the key; each config
//! wraps them with the key it was reading (D255).

use std::time::Duration;

/// `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"1500us"`, `"20ns"`, `"1.5s"`: a non-negative decimal and
/// one of the units ns, us, ms, s, m, h (optionally separated by spaces); a bare `"0"` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (use e.g. \"250ms\", \"10s\", \"5m\")"))?;
    let secs = match unit.trim() {
        // Zero is zero in any unit.
        "" if n == 0.0 => 0.0,
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("{text:?}: unknown unit {u:?} (ns, us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{text:?} is not a representable duration"))
}

/// `"4 MiB"`, `"512KiB"`, `"1000000"`, `"2 MB"`: a non-negative integer and one of the units B,
/// KiB, MiB, GiB (powers of 1024), kB, MB, GB (powers of 1000), or none (bytes).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{text:?} is not a size (use e.g. \"4 MiB\")"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => return Err(format!("{text:?}: unknown unit {u:?} (B, KiB, MiB, GiB, kB, MB, GB)")),
    };
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            (" 5 m ", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1500us", Duration::from_micros(1500)),
            ("20ns", Duration::from_nanos(20)),
            ("1.5s", Duration::from_millis(1500)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "10", "s", "-1s", "1d", "1e3s", "1.2.3s", "99999999999999999999999h"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("4 MiB", 4 << 20),
            ("512KiB", 512 << 10),
            ("1000000", 1_000_000),
            ("2 MB", 2_000_000),
            ("3kB", 3_000),
            ("1 GiB", 1 << 30),
            ("7B", 7),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["", "MiB", "-1", "1.5 MiB", "4 mib", "18446744073709551615 GiB"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
