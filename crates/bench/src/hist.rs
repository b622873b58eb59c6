//! Latency histograms (HdrHistogram, 3 significant digits, 1 ns .. 10 s) and their
//! summary for the report; the median of several runs.

use crate::common::{Latency, Summary};
use hdrhistogram::Histogram;

/// Largest latency a histogram holds (longer samples are clamped to it).
const MAX_NS: u64 = 10_000_000_000;

/// A fresh latency histogram in nanoseconds.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("histogram bounds")
}

/// Records `ns` (clamped into the histogram's range).
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: f64) {
    let v = (ns.round() as u64).clamp(1, MAX_NS);
    h.record(v).expect("value within bounds");
}

/// The histogram of both `a` and `b`.
pub fn merged(a: &Histogram<u64>, b: &Histogram<u64>) -> Histogram<u64> {
    let mut m = a.clone();
    m.add(b).expect("same bounds");
    m
}

/// The report's view of a histogram.
pub fn latency(h: &Histogram<u64>) -> Latency {
    let q = |x: f64| h.value_at_quantile(x) as f64;
    let curve = Latency::curve_quantiles(h.len()).into_iter().map(|x| (x, q(x))).collect();
    Latency {
        count: h.len(),
        mean: h.mean(),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p999: q(0.999),
        p9999: q(0.9999),
        max: h.max() as f64,
        curve,
    }
}

/// Of several runs' distributions, the median run by p50 (the lower middle one for
/// an even count), and a summary whose median is that run's p50 and whose best is the
/// lowest p50 (so the table and the distribution always describe the same run).
pub fn median_run(mut runs: Vec<Latency>) -> (Latency, Summary) {
    assert!(!runs.is_empty(), "at least one run");
    runs.sort_by(|a, b| a.p50.total_cmp(&b.p50));
    let best = runs[0].p50;
    let mid = (runs.len() - 1) / 2;
    let run = runs.swap_remove(mid);
    let summary = Summary { median: run.p50, best };
    (run, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_and_clamping() {
        let mut a = new_hist();
        let mut b = new_hist();
        for _ in 0..99 {
            record(&mut a, 100.0);
        }
        record(&mut b, 1e12);
        record(&mut b, 0.0);
        let m = merged(&a, &b);
        assert_eq!(m.len(), 101);
        assert_eq!(latency(&m).p50, 100.0);
        assert!(latency(&m).max >= 9.99e9 && latency(&m).max <= 1.001e10, "clamped to 10 s");
    }
}
