//! Back-to-back pairs: how every goal of the suites is judged on a machine whose speed
//! changes under the bench.
//!
//! The VM the benches run on switches between a fast and a slow state every few
//! minutes (the shared-memory floor's p50 is 110–130 ns in one, 540–610 ns in the
//! other). A figure of ours and a figure of its reference measured minutes apart may
//! therefore compare two machines. So ours and the reference are measured in a chain
//! of short windows, `R O R O ... O R` (a window is a fraction of a second to a couple
//! of seconds), and each `O` forms a **pair** with the `R` windows on both sides of it:
//!
//! * the **ratio is taken within the pair**: ours against the reference's two windows
//!   merged (their histograms for latencies, the mean of their rates for rates);
//! * a pair is **discarded when the reference moved** within it: its p50 (latency) or
//!   its rate in the window before and the window after differ by more than
//!   [`MOVE_LIMIT`] (latency) or [`RATE_MOVE_LIMIT`] (rate) of the smaller — the
//!   machine changed state during the pair, so the pair compares two machines. (A
//!   state change moves them by 2–4x; a rate is noisier than a p50 from window to
//!   window on a shared machine, hence its wider bound.)
//! * the verdict uses the **median over the kept pairs** of each ratio, and the
//!   report shows every pair, the medians and how many pairs were discarded.
//!
//! A goal with no kept pair is a miss (its ratio is not a number), and says why.

use crate::common::{fmt_num, Latency};
use crate::hist;
use hdrhistogram::Histogram;

/// A latency pair is discarded when its reference's p50 before and after ours differ
/// by more than this fraction of the smaller one.
pub const MOVE_LIMIT: f64 = 0.10;
/// A rate pair is discarded when its reference's rate before and after ours differ by
/// more than this fraction of the smaller one.
pub const RATE_MOVE_LIMIT: f64 = 0.20;

/// Kept pairs whose references' p50 differ by more than this belong to different
/// machine states (shown apart: the ratio depends on the state).
pub const STATE_STEP: f64 = 0.25;

/// How much the reference moved between its window before and its window after ours:
/// `|a - b| / min(a, b)` (infinite if either is not positive).
pub fn moved(before: f64, after: f64) -> f64 {
    let lo = before.min(after);
    if lo > 0.0 && lo.is_finite() {
        (before - after).abs() / lo
    } else {
        f64::INFINITY
    }
}

/// Whose window a step of a chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The reference's (`R`).
    Reference,
    /// Ours (`O`).
    Ours,
}

/// Runs the chain `R O R O ... O R` of `pairs` pairs: `window(Turn::Reference, i)` for
/// the reference windows `0..=pairs`, `window(Turn::Ours, i)` for ours `0..pairs`.
/// Returns the reference windows and ours.
pub fn chain<T>(pairs: usize, mut window: impl FnMut(Turn, usize) -> T) -> (Vec<T>, Vec<T>) {
    let mut refs = Vec::with_capacity(pairs + 1);
    let mut mine = Vec::with_capacity(pairs);
    refs.push(window(Turn::Reference, 0));
    for i in 0..pairs {
        mine.push(window(Turn::Ours, i));
        refs.push(window(Turn::Reference, i + 1));
    }
    (refs, mine)
}

/// The percentiles the latency ratios are taken at: p50, p99, p99.9, p99.99.
pub const QUANTILES: [(f64, &str, &str); 4] =
    [(0.5, "p50", "p50"), (0.99, "p99", "p99"), (0.999, "p99.9", "p99_9"), (0.9999, "p99.99", "p99_99")];

/// One latency pair, judged.
#[derive(Debug, Clone)]
pub struct LatencyPair {
    /// Ours, in this pair's window.
    pub ours: Latency,
    /// The reference's two windows merged.
    pub reference: Latency,
    /// The reference's p50 before and after ours.
    pub ref_p50: (f64, f64),
    /// Ours / reference at each of [`QUANTILES`].
    pub ratios: [f64; 4],
    /// How much the reference moved ([`moved`] of its p50s).
    pub moved: f64,
    /// Whether the pair counts (the reference moved at most [`MOVE_LIMIT`]).
    pub kept: bool,
}

/// The pairs of a latency chain, and their medians.
#[derive(Debug, Clone)]
pub struct LatencyPairs {
    /// Every pair, in order.
    pub pairs: Vec<LatencyPair>,
    /// Median over the kept pairs of each ratio in [`QUANTILES`] (NaN if none kept).
    pub median: [f64; 4],
    /// The kept pair whose p50 ratio is the median (the lower middle one), if any: its
    /// distributions are the ones shown.
    pub representative: Option<usize>,
}

impl LatencyPairs {
    /// Judges the chain: `refs` has one more window than `ours`.
    pub fn judge(refs: &[Histogram<u64>], ours: &[Histogram<u64>]) -> LatencyPairs {
        assert_eq!(refs.len(), ours.len() + 1, "a chain has one more reference window than ours");
        let mut pairs = Vec::with_capacity(ours.len());
        for (i, o) in ours.iter().enumerate() {
            let (before, after) = (&refs[i], &refs[i + 1]);
            let both = hist::merged(before, after);
            let ref_p50 = (before.value_at_quantile(0.5) as f64, after.value_at_quantile(0.5) as f64);
            let mut ratios = [f64::NAN; 4];
            for (k, (q, _, _)) in QUANTILES.iter().enumerate() {
                ratios[k] = o.value_at_quantile(*q) as f64 / both.value_at_quantile(*q) as f64;
            }
            let moved = moved(ref_p50.0, ref_p50.1);
            pairs.push(LatencyPair {
                ours: hist::latency(o),
                reference: hist::latency(&both),
                ref_p50,
                ratios,
                moved,
                kept: moved <= MOVE_LIMIT,
            });
        }
        let kept: Vec<usize> = (0..pairs.len()).filter(|&i| pairs[i].kept).collect();
        let mut median = [f64::NAN; 4];
        for (k, m) in median.iter_mut().enumerate() {
            *m = median_of(kept.iter().map(|&i| pairs[i].ratios[k]).collect());
        }
        let representative = {
            let mut by_p50 = kept.clone();
            by_p50.sort_by(|&a, &b| pairs[a].ratios[0].total_cmp(&pairs[b].ratios[0]));
            by_p50.get(by_p50.len().saturating_sub(1) / 2).copied()
        };
        LatencyPairs { pairs, median, representative }
    }

    /// Pairs discarded because the reference moved.
    pub fn discarded(&self) -> usize {
        self.pairs.iter().filter(|p| !p.kept).count()
    }

    /// The kept pairs grouped by the machine's state, as the reference's p50 tells it:
    /// sorted by it and split where two neighbours differ by more than
    /// [`STATE_STEP`]. Per state: the pairs' indices and the median of each ratio.
    pub fn states(&self) -> Vec<(Vec<usize>, [f64; 4])> {
        let ref_p50 = |i: usize| self.pairs[i].reference.p50;
        let mut kept: Vec<usize> = (0..self.pairs.len()).filter(|&i| self.pairs[i].kept).collect();
        kept.sort_by(|&a, &b| ref_p50(a).total_cmp(&ref_p50(b)));
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in kept {
            match groups.last_mut() {
                Some(g) if moved(ref_p50(*g.last().expect("non-empty")), ref_p50(i)) <= STATE_STEP => g.push(i),
                _ => groups.push(vec![i]),
            }
        }
        groups
            .into_iter()
            .map(|g| {
                let mut m = [f64::NAN; 4];
                for (k, x) in m.iter_mut().enumerate() {
                    *x = median_of(g.iter().map(|&i| self.pairs[i].ratios[k]).collect());
                }
                (g, m)
            })
            .collect()
    }

    /// One line per machine state (when there is more than one): its reference p50
    /// range, its pairs, its median ratios.
    pub fn states_markdown(&self, ref_name: &str) -> String {
        let states = self.states();
        if states.len() < 2 {
            return String::new();
        }
        let mut s = format!(
            "The kept pairs fall in {} machine states (the {ref_name}'s p50 differs by more than {:.0}% between \
             them); the ratios per state:\n\n| {ref_name} p50 (ns) | pairs | ratio p50 | p99 | p99.9 | p99.99 |\n\
             |---|---:|---:|---:|---:|---:|\n",
            states.len(),
            STATE_STEP * 100.0
        );
        for (g, m) in &states {
            let lo = g.iter().map(|&i| self.pairs[i].reference.p50).fold(f64::INFINITY, f64::min);
            let hi = g.iter().map(|&i| self.pairs[i].reference.p50).fold(0.0, f64::max);
            s.push_str(&format!(
                "| {}–{} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                fmt_num(lo),
                fmt_num(hi),
                g.len(),
                m[0],
                m[1],
                m[2],
                m[3]
            ));
        }
        s
    }

    /// Median over the kept pairs of ours' value at `QUANTILES[k]`.
    pub fn median_ours(&self, k: usize) -> f64 {
        median_of(self.pairs.iter().filter(|p| p.kept).map(|p| at(&p.ours, k)).collect())
    }

    /// Median over the kept pairs of the reference's value at `QUANTILES[k]`.
    pub fn median_reference(&self, k: usize) -> f64 {
        median_of(self.pairs.iter().filter(|p| p.kept).map(|p| at(&p.reference, k)).collect())
    }

    /// The markdown table of every pair: the reference before and after, ours, the
    /// ratios, kept or why not.
    pub fn markdown(&self, ours_name: &str, ref_name: &str) -> String {
        let mut s = format!(
            "| pair | {ref_name} p50 before / after (ns) | moved | {ours_name} p50 / p99 / p99.9 (ns) | \
             {ref_name} p50 / p99 / p99.9 (ns) | ratio p50 | p99 | p99.9 | p99.99 | kept |\n\
             |---:|---|---:|---|---|---:|---:|---:|---:|---|\n"
        );
        for (i, p) in self.pairs.iter().enumerate() {
            s.push_str(&format!(
                "| {} | {} / {} | {:.1}% | {} / {} / {} | {} / {} / {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
                i + 1,
                fmt_num(p.ref_p50.0),
                fmt_num(p.ref_p50.1),
                100.0 * p.moved,
                fmt_num(p.ours.p50),
                fmt_num(p.ours.p99),
                fmt_num(p.ours.p999),
                fmt_num(p.reference.p50),
                fmt_num(p.reference.p99),
                fmt_num(p.reference.p999),
                p.ratios[0],
                p.ratios[1],
                p.ratios[2],
                p.ratios[3],
                if p.kept { "yes".to_string() } else { format!("**no**: {ref_name} moved") }
            ));
        }
        s.push_str(&format!(
            "| **median of {} kept** | | | {} / {} / {} | {} / {} / {} | **{:.2}** | **{:.2}** | **{:.2}** | {:.2} | {} discarded |\n",
            self.pairs.len() - self.discarded(),
            fmt_num(self.median_ours(0)),
            fmt_num(self.median_ours(1)),
            fmt_num(self.median_ours(2)),
            fmt_num(self.median_reference(0)),
            fmt_num(self.median_reference(1)),
            fmt_num(self.median_reference(2)),
            self.median[0],
            self.median[1],
            self.median[2],
            self.median[3],
            self.discarded()
        ));
        s
    }

    /// The figures as JSON (stable keys).
    pub fn json(&self) -> serde_json::Value {
        let ratio_obj = |r: &[f64; 4]| {
            let mut m = serde_json::Map::new();
            for (k, (_, _, key)) in QUANTILES.iter().enumerate() {
                m.insert(key.to_string(), serde_json::json!(finite(r[k])));
            }
            serde_json::Value::Object(m)
        };
        let pct = |l: &Latency| serde_json::json!({"p50": l.p50, "p99": l.p99, "p99_9": l.p999, "p99_99": l.p9999, "count": l.count});
        serde_json::json!({
            "move_limit": MOVE_LIMIT,
            "pairs": self.pairs.iter().map(|p| serde_json::json!({
                "ref_p50_before": p.ref_p50.0,
                "ref_p50_after": p.ref_p50.1,
                "moved": finite(p.moved),
                "kept": p.kept,
                "ours": pct(&p.ours),
                "reference": pct(&p.reference),
                "ratios": ratio_obj(&p.ratios),
            })).collect::<Vec<_>>(),
            "kept": self.pairs.len() - self.discarded(),
            "discarded": self.discarded(),
            "median_ratios": ratio_obj(&self.median),
            "representative": self.representative,
            "states": self.states().iter().map(|(g, m)| serde_json::json!({
                "pairs": g,
                "ref_p50_min": g.iter().map(|&i| self.pairs[i].reference.p50).fold(f64::INFINITY, f64::min),
                "ref_p50_max": g.iter().map(|&i| self.pairs[i].reference.p50).fold(0.0, f64::max),
                "median_ratios": ratio_obj(m),
            })).collect::<Vec<_>>(),
        })
    }
}

fn at(l: &Latency, k: usize) -> f64 {
    match k {
        0 => l.p50,
        1 => l.p99,
        2 => l.p999,
        _ => l.p9999,
    }
}

/// `x` if finite, else JSON null.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The median (mean of the two middle values for an even count); NaN if empty.
pub fn median_of(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One rate pair (e.g. messages per second), judged.
#[derive(Debug, Clone, Copy)]
pub struct RatePair {
    /// Ours.
    pub ours: f64,
    /// The reference before and after ours.
    pub reference: (f64, f64),
    /// Ours / the mean of the reference's two windows.
    pub ratio: f64,
    /// How much the reference moved.
    pub moved: f64,
    /// Whether the pair counts.
    pub kept: bool,
}

/// The pairs of a rate chain, and their median.
#[derive(Debug, Clone)]
pub struct RatePairs {
    /// Every pair, in order.
    pub pairs: Vec<RatePair>,
    /// Median over the kept pairs of the ratio (NaN if none kept).
    pub median: f64,
}

impl RatePairs {
    /// Judges the chain: `refs` has one more window than `ours`.
    pub fn judge(refs: &[f64], ours: &[f64]) -> RatePairs {
        assert_eq!(refs.len(), ours.len() + 1, "a chain has one more reference window than ours");
        let pairs: Vec<RatePair> = ours
            .iter()
            .enumerate()
            .map(|(i, &o)| {
                let (b, a) = (refs[i], refs[i + 1]);
                let moved = moved(b, a);
                let kept = moved <= RATE_MOVE_LIMIT;
                RatePair { ours: o, reference: (b, a), ratio: o / ((a + b) / 2.0), moved, kept }
            })
            .collect();
        let median = median_of(pairs.iter().filter(|p| p.kept).map(|p| p.ratio).collect());
        RatePairs { pairs, median }
    }

    /// Pairs discarded because the reference moved.
    pub fn discarded(&self) -> usize {
        self.pairs.iter().filter(|p| !p.kept).count()
    }

    /// Median over the kept pairs of ours' rate.
    pub fn median_ours(&self) -> f64 {
        median_of(self.pairs.iter().filter(|p| p.kept).map(|p| p.ours).collect())
    }

    /// Median over the kept pairs of the reference's rate (mean of its two windows).
    pub fn median_reference(&self) -> f64 {
        median_of(self.pairs.iter().filter(|p| p.kept).map(|p| (p.reference.0 + p.reference.1) / 2.0).collect())
    }

    /// The per-pair ratios, compactly: `0.52 0.55 (0.31 discarded) ...`.
    pub fn compact(&self) -> String {
        self.pairs
            .iter()
            .map(|p| if p.kept { format!("{:.2}", p.ratio) } else { format!("({:.2} discarded)", p.ratio) })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The figures as JSON (stable keys).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "move_limit": RATE_MOVE_LIMIT,
            "pairs": self.pairs.iter().map(|p| serde_json::json!({
                "ours": p.ours, "ref_before": p.reference.0, "ref_after": p.reference.1,
                "ratio": finite(p.ratio), "moved": finite(p.moved), "kept": p.kept,
            })).collect::<Vec<_>>(),
            "kept": self.pairs.len() - self.discarded(),
            "discarded": self.discarded(),
            "median_ratio": finite(self.median),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(p50: u64, tail: u64) -> Histogram<u64> {
        let mut h = hist::new_hist();
        h.record_n(p50, 990).unwrap();
        h.record_n(tail, 10).unwrap();
        h
    }

    #[test]
    fn the_chain_alternates_and_ends_with_the_reference() {
        let mut order = Vec::new();
        let (r, o) = chain(3, |t, i| order.push(format!("{}{i}", if t == Turn::Ours { "O" } else { "R" })));
        assert_eq!((r.len(), o.len()), (4, 3));
        assert_eq!(order, ["R0", "O0", "R1", "O1", "R2", "O2", "R3"]);
    }

    #[test]
    fn a_pair_whose_reference_moved_is_discarded_and_the_median_is_of_the_rest() {
        // Fast machine (floor 100 ns), then a switch to slow (floor 500 ns) after pair 2.
        let refs = [hist_of(100, 200), hist_of(100, 200), hist_of(100, 200), hist_of(500, 900), hist_of(500, 900)];
        let ours = [hist_of(120, 300), hist_of(130, 300), hist_of(300, 600), hist_of(600, 1400)];
        let j = LatencyPairs::judge(&refs, &ours);
        let kept: Vec<bool> = j.pairs.iter().map(|p| p.kept).collect();
        assert_eq!(kept, [true, true, false, true], "pair 3 straddles the switch");
        assert_eq!(j.discarded(), 1);
        // p50 ratios of the kept pairs: 120/100, 130/100, 600/500.
        let r: Vec<f64> = j.pairs.iter().filter(|p| p.kept).map(|p| p.ratios[0]).collect();
        assert!((r[0] - 1.2).abs() < 0.02 && (r[1] - 1.3).abs() < 0.02 && (r[2] - 1.2).abs() < 0.02, "{r:?}");
        assert!((j.median[0] - 1.2).abs() < 0.02, "{:?}", j.median);
        assert!(j.representative.is_some());
        let md = j.markdown("ours", "floor");
        assert!(md.contains("**no**: floor moved") && md.contains("1 discarded"), "{md}");
        assert_eq!(j.json()["discarded"], 1);
        // Two states: the fast pairs (floor 100) and the slow one (floor 500).
        let states = j.states();
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].0, [0, 1]);
        assert_eq!(states[1].0, [3]);
        assert!((states[0].1[0] - 1.25).abs() < 0.02 && (states[1].1[0] - 1.2).abs() < 0.02, "{states:?}");
        assert!(j.states_markdown("floor").contains("2 machine states"));
        assert_eq!(j.json()["states"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn no_kept_pair_gives_no_number() {
        let j = LatencyPairs::judge(&[hist_of(100, 200), hist_of(300, 400)], &[hist_of(150, 300)]);
        assert_eq!(j.discarded(), 1);
        assert!(j.median[0].is_nan() && j.representative.is_none());
        let c = crate::common::Check { what: "p50".into(), value: j.median[0], limit: 1.25, at_least: false };
        assert!(!c.met(), "a goal without a kept pair is a miss");
        assert!(j.json()["median_ratios"]["p50"].is_null());
    }

    #[test]
    fn rates_pair_the_same_way() {
        let j = RatePairs::judge(&[100.0, 85.0, 50.0], &[60.0, 30.0]);
        assert!(j.pairs[0].kept && !j.pairs[1].kept);
        assert!((j.pairs[0].ratio - 60.0 / 92.5).abs() < 1e-9, "moved 17.6%: kept under the rate bound");
        assert!((j.median - 60.0 / 92.5).abs() < 1e-9);
        assert!(j.compact().contains("discarded"));
        assert_eq!(moved(100.0, 110.0), 0.1);
        assert!(moved(0.0, 1.0).is_infinite());
    }
}
