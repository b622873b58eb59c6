//! Text output: tables, message previews, durations; and JSON output.

use serde_json::Value;
use std::time::{Duration, SystemTime};

/// A message preview: printable UTF-8 as a quoted string, anything else as hex; cut
/// at 40 characters or 16 bytes.
pub(crate) fn preview(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if s.chars().all(|c| !c.is_control() || c == ' ') {
            let cut: String = s.chars().take(40).collect();
            let more = if cut.len() < s.len() { "…" } else { "" };
            return format!("{cut:?}{more}");
        }
    }
    let hex: Vec<String> = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 16 { " …" } else { "" };
    format!("{}{more}", hex.join(" "))
}

/// A duration in nanoseconds, short: `850ns`, `12.3µs`, `4.1ms`, `2.5s`, `3m12s`,
/// `2h05m`, `3d04h`.
pub(crate) fn ns(n: u64) -> String {
    let f = n as f64;
    match n {
        0..1_000 => format!("{n}ns"),
        1_000..1_000_000 => format!("{:.1}µs", f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", f / 1e6),
        _ => {
            let s = n / 1_000_000_000;
            match s {
                0..60 => format!("{:.1}s", f / 1e9),
                60..3600 => format!("{}m{:02}s", s / 60, s % 60),
                3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
                _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
            }
        }
    }
}

/// How long ago `t` was (`-` if unknown or in the future).
pub(crate) fn ago(t: Option<SystemTime>) -> String {
    match t.and_then(|t| SystemTime::now().duration_since(t).ok()) {
        Some(d) => format!("{} ago", ns(d.as_nanos().min(u64::MAX as u128) as u64)),
        None => "-".into(),
    }
}

/// Milliseconds since the Unix epoch of `t` (for JSON).
pub(crate) fn unix_ms(t: Option<SystemTime>) -> Value {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => Value::from(d.as_millis() as u64),
        None => Value::Null,
    }
}

/// Now, in nanoseconds since the Unix epoch (the command reads a clock; the library
/// never does).
pub(crate) fn unix_now_ns() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as u64
}

/// Rows as a table with aligned columns (the last column is not padded).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                s.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Prints a JSON document.
pub(crate) fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("a JSON value prints"));
}

/// `Some(pid)` as text, or `-`.
pub(crate) fn pid(p: Option<u32>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("pid {p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_and_durations() {
        assert_eq!(preview(b"hello"), "\"hello\"");
        assert_eq!(preview(&[0, 1, 255]), "00 01 ff");
        assert_eq!(preview(&[7u8; 20]), "07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 …");
        assert_eq!(preview("x".repeat(50).as_bytes()), format!("{:?}…", "x".repeat(40)));
        assert_eq!(
            (ns(999), ns(1_500), ns(2_000_000), ns(3_000_000_000)),
            ("999ns".into(), "1.5µs".into(), "2.0ms".into(), "3.0s".into())
        );
        assert_eq!(
            (ns(61_000_000_000), ns(3_700_000_000_000), ns(90_000_000_000_000)),
            ("1m01s".into(), "1h01m".into(), "1d01h".into())
        );
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }
}
