//! Shared plumbing of every benchmark binary of the workspace: argument parsing, cpu
//! pinning, two pinned threads started together, repeated runs summarised as median
//! and best, latency distributions, progress lines, and the report rows (with their
//! goals, checked at several percentiles) and sections that `cargo xtask bench`
//! collects into `target/bench/report.{json,md}`.
//!
//! The suites of `tcpshm-bench` use it as `tcpshm_bench::common`; the ring and
//! persist crates' benches take it as a dev-dependency. It depends only on `std`,
//! `rustix` (affinity) and `serde_json` (the report), so a crate low in the stack can
//! use it without building the rest of the workspace.
//!
//! Benchmarks never assert a time: they measure, compare against references measured
//! in the same run, and report ratios. They do check that every item arrived intact
//! (a benchmark of a queue that loses data would measure nothing).

use std::io::Write;
use std::sync::Barrier;

/// Command-line options every bench binary accepts.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Short smoke run (CI proves the harness works; figures are meaningless).
    pub quick: bool,
    /// Number of repeated runs of each measurement (median and best are reported).
    pub runs: usize,
    /// Where to write the JSON report.
    pub json: Option<std::path::PathBuf>,
    /// The two cpus producer and consumer are pinned to.
    pub cpus: (usize, usize),
    /// Print every run's result to stderr (`--verbose`), to see the spread.
    pub verbose: bool,
    /// Run only the measurements whose key contains this (a bare argument, as with
    /// `cargo bench -- FILTER`).
    pub filter: Option<String>,
    /// Measure the ZeroMQ references (`--with-zmq`; the root echo bench, built with
    /// the `zmq` feature).
    pub with_zmq: bool,
    /// Why the ZeroMQ references are not measured, as decided by `cargo xtask bench`
    /// (`--zmq-skip REASON`), printed in the report.
    pub zmq_skip: Option<String>,
    /// `--runs N` as given (`None`: the default); suites measured in pairs use it as
    /// their number of pairs and choose their own default.
    pub runs_given: Option<usize>,
    /// Record what ran in the slowest round trips on each side (`--trace-tail`).
    pub trace_tail: bool,
}

impl Opts {
    /// Parses `--quick`, `--runs N`, `--json PATH`, `--cpus A,B`, `--verbose`,
    /// `--with-zmq`, `--zmq-skip REASON`, `--trace-tail` and an optional bare `FILTER`;
    /// ignores the `--bench` flag cargo passes.
    pub fn from_args() -> Opts {
        let mut o = Opts {
            quick: false,
            runs: 5,
            json: None,
            cpus: (0, 1),
            verbose: false,
            filter: None,
            with_zmq: false,
            zmq_skip: None,
            runs_given: None,
            trace_tail: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--verbose" => o.verbose = true,
                "--with-zmq" => o.with_zmq = true,
                "--zmq-skip" => o.zmq_skip = args.next(),
                "--trace-tail" => o.trace_tail = true,
                "--runs" => {
                    o.runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N");
                    o.runs_given = Some(o.runs);
                }
                "--json" => o.json = args.next().map(Into::into),
                "--cpus" => {
                    let v = args.next().expect("--cpus A,B");
                    let (a, b) = v.split_once(',').expect("--cpus A,B");
                    o.cpus = (a.parse().expect("cpu"), b.parse().expect("cpu"));
                }
                "--bench" => {}
                f if !f.starts_with('-') => o.filter = Some(f.to_string()),
                _ => {}
            }
        }
        if o.quick {
            o.runs = o.runs.min(2);
        }
        o.runs = o.runs.max(1);
        o
    }

    /// Whether the measurement with key `key` (or key prefix) is selected.
    pub fn wants(&self, key: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| key.contains(f) || f.contains(key))
    }

    /// `full` in a full run, `full / 20` (at least `min`) in a quick one.
    pub fn scale(&self, full: u64, min: u64) -> u64 {
        if self.quick {
            (full / 20).max(min)
        } else {
            full
        }
    }
}

/// Pins the calling thread to `cpu`; returns false (and the bench goes on unpinned)
/// when the machine has no such cpu or the call is refused.
pub fn pin_to_cpu(cpu: usize) -> bool {
    let mut set = rustix::thread::CpuSet::new();
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return false;
    }
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).is_ok()
}

fn pin_or_warn(cpu: usize) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !pin_to_cpu(cpu) && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!("warning: could not pin a thread to cpu {cpu}; running unpinned");
    }
}

/// Runs `a` on a thread pinned to `opts.cpus.0` and `b` on one pinned to `opts.cpus.1`,
/// both starting right after a barrier (so neither measures the other's spawn), and
/// returns both results.
pub fn pair<A, B, RA, RB>(opts: &Opts, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let barrier = Barrier::new(2);
    let (ca, cb) = opts.cpus;
    std::thread::scope(|s| {
        let barrier = &barrier;
        let ha = s.spawn(move || {
            pin_or_warn(ca);
            barrier.wait();
            a()
        });
        let hb = s.spawn(move || {
            pin_or_warn(cb);
            barrier.wait();
            b()
        });
        (ha.join().expect("bench thread panicked"), hb.join().expect("bench thread panicked"))
    })
}

/// Runs `f` on a thread pinned to `cpu` (single-threaded references such as memcpy).
pub fn pinned<R: Send>(cpu: usize, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(move || {
            pin_or_warn(cpu);
            f()
        })
        .join()
        .expect("bench thread panicked")
    })
}

/// Runs each contender once per round, `opts.runs` rounds, and returns each one's
/// results in contender order. Interleaving (rather than all runs of one, then all of
/// the next) spreads the noise of a shared machine evenly over the contenders.
pub fn rounds<T: std::fmt::Debug>(opts: &Opts, what: &str, contenders: &mut [&mut dyn FnMut() -> T]) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = contenders.iter().map(|_| Vec::with_capacity(opts.runs)).collect();
    for run in 0..opts.runs {
        for (i, (f, o)) in contenders.iter_mut().zip(out.iter_mut()).enumerate() {
            let r = f();
            if opts.verbose {
                eprintln!("{what} #{i} run {run}: {r:?}");
            }
            o.push(r);
        }
    }
    out
}

/// Median and best of repeated measurements.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// The median run.
    pub median: f64,
    /// The best run (lowest for latencies, highest for throughputs).
    pub best: f64,
}

impl Summary {
    /// Summary of a lower-is-better measurement (latency).
    pub fn of_lower_is_better(mut v: Vec<f64>) -> Summary {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Summary { median: median_sorted(&v), best: v[0] }
    }
    /// Summary of a higher-is-better measurement (throughput).
    pub fn of_higher_is_better(mut v: Vec<f64>) -> Summary {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Summary { median: median_sorted(&v), best: v[v.len() - 1] }
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `f` `runs` times and summarises.
pub fn repeat(runs: usize, higher_is_better: bool, mut f: impl FnMut() -> f64) -> Summary {
    let v: Vec<f64> = (0..runs.max(1)).map(|_| f()).collect();
    if higher_is_better {
        Summary::of_higher_is_better(v)
    } else {
        Summary::of_lower_is_better(v)
    }
}

/// One line of a report.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stable key, e.g. `spsc.u64.single.ours`.
    pub key: String,
    /// Human label, e.g. `u64 one at a time — tcpshm-ring`.
    pub label: String,
    /// Unit of `median`/`best`, e.g. `Mitems/s`, `ns`.
    pub unit: &'static str,
    /// The measurement.
    pub value: Summary,
    /// A second view of the same runs in another unit (e.g. GB/s beside msgs/s).
    pub also: Option<(Summary, &'static str)>,
    /// Ratios to references measured in the same run, with the reference's name
    /// (`this / reference`, on medians). The first is the main one.
    pub ratios: Vec<(String, f64)>,
    /// The goal this row is judged against, in words, and whether it was met.
    pub goal: Option<(String, bool)>,
    /// Whether the row measures a reference (another crate, a floor, the clock), not
    /// tcpshm; the README snippet lists only tcpshm's rows.
    pub reference: bool,
    /// The latency distribution of the median run, for latency rows.
    pub latency: Option<Latency>,
    /// Free-form numbers for plots and tables, e.g. `("bytes", 64.0)`; stable keys.
    pub params: Vec<(&'static str, f64)>,
    /// The goal as separate checks (e.g. one per percentile); the row's goal is met
    /// when every check is (a miss at any one is a miss).
    pub checks: Vec<Check>,
}

/// One check of a goal: `value` against `limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What is checked, e.g. `p99 ratio to the SHM floor`.
    pub what: String,
    /// The measured value (a ratio, usually).
    pub value: f64,
    /// The bound.
    pub limit: f64,
    /// `value >= limit` is the goal (else `value <= limit`).
    pub at_least: bool,
}

impl Check {
    /// Whether the value is within the bound (a value that is not a number is a miss).
    pub fn met(&self) -> bool {
        if self.at_least {
            self.value >= self.limit
        } else {
            self.value <= self.limit
        }
    }

    /// `<=` or `>=`.
    pub fn op(&self) -> &'static str {
        if self.at_least {
            ">="
        } else {
            "<="
        }
    }
}

impl Row {
    /// A row without ratio or goal.
    pub fn new(key: &str, label: &str, unit: &'static str, value: Summary) -> Row {
        Row {
            key: key.to_string(),
            label: label.to_string(),
            unit,
            value,
            also: None,
            ratios: Vec::new(),
            goal: None,
            reference: false,
            latency: None,
            params: Vec::new(),
            checks: Vec::new(),
        }
    }
    /// A row measuring a reference, not tcpshm.
    pub fn reference(key: &str, label: &str, unit: &'static str, value: Summary) -> Row {
        Row { reference: true, ..Row::new(key, label, unit, value) }
    }
    /// Adds a ratio `this / reference` of medians.
    pub fn ratio(mut self, reference: &str, x: f64) -> Row {
        self.ratios.push((reference.to_string(), x));
        self
    }
    /// Sets the goal and whether it was met.
    pub fn goal(mut self, goal: &str, met: bool) -> Row {
        self.goal = Some((goal.to_string(), met));
        self
    }
    /// Adds the same runs expressed in another unit.
    pub fn also(mut self, value: Summary, unit: &'static str) -> Row {
        self.also = Some((value, unit));
        self
    }
    /// Attaches the latency distribution of the median run.
    pub fn latency(mut self, l: Latency) -> Row {
        self.latency = Some(l);
        self
    }
    /// Adds a named number (e.g. the message size) for plots.
    pub fn param(mut self, name: &'static str, x: f64) -> Row {
        self.params.push((name, x));
        self
    }
    /// Adds a check of the goal: `value <= limit` (or `>=` if `at_least`).
    pub fn check(mut self, what: &str, value: f64, limit: f64, at_least: bool) -> Row {
        self.checks.push(Check { what: what.to_string(), value, limit, at_least });
        self
    }
    /// The goal in words and whether it was met: the explicit goal, else the checks.
    pub fn verdict(&self) -> Option<(String, bool)> {
        if let Some(g) = &self.goal {
            return Some(g.clone());
        }
        if self.checks.is_empty() {
            return None;
        }
        let text: Vec<String> =
            self.checks.iter().map(|c| format!("{} {} {}", c.what, c.op(), fmt_num(c.limit))).collect();
        Some((text.join(", "), self.checks.iter().all(Check::met)))
    }
}

/// A latency distribution (one run), in nanoseconds: the figures users choose a
/// messaging library by, and the percentile curve for plots.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// 99.99th percentile.
    pub p9999: f64,
    /// Largest sample.
    pub max: f64,
    /// `(quantile, ns)` points from 0 to 1, denser towards the tail.
    pub curve: Vec<(f64, f64)>,
}

impl Latency {
    /// The quantiles the curve is sampled at: 0.5 and then 1 - 10^(-k/8), up to the
    /// resolution the sample count supports.
    pub fn curve_quantiles(count: u64) -> Vec<f64> {
        let mut q = vec![0.0, 0.25, 0.5];
        let max_k = ((count.max(1) as f64).log10() * 8.0).floor() as i32;
        for k in 9..=max_k.min(48) {
            q.push(1.0 - 10f64.powf(-f64::from(k) / 8.0));
        }
        q.push(1.0);
        q
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "p99_9": self.p999,
            "p99_99": self.p9999,
            "max": self.max,
            "unit": "ns",
            "curve": self.curve.iter().map(|(q, v)| serde_json::json!([q, v])).collect::<Vec<_>>(),
        })
    }
}

/// A progress line for `cargo xtask bench` (which shows it as a live bar): `done` of
/// `total` steps, now doing `what`. Printed to stderr as `@@progress done total what`.
pub fn progress(done: usize, total: usize, what: &str) {
    eprintln!("@@progress {done} {total} {what}");
}

/// A bench binary's report: rows printed as a markdown table and written as JSON.
#[derive(Debug, Default)]
pub struct Report {
    /// Report name, e.g. `ring.spsc`.
    pub name: String,
    /// Rows in print order.
    pub rows: Vec<Row>,
    /// How the figures were measured (printed under the table).
    pub notes: Vec<String>,
    /// What was not measured, and why: `(what, why)`.
    pub skipped: Vec<(String, String)>,
    /// Further markdown sections after the table: `(title, markdown)`.
    pub sections: Vec<(String, String)>,
    /// Further figures under stable keys (the part's `data` in the JSON report).
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// A new empty report.
    pub fn new(name: &str) -> Report {
        Report {
            name: name.to_string(),
            rows: Vec::new(),
            notes: Vec::new(),
            skipped: Vec::new(),
            sections: Vec::new(),
            data: serde_json::Map::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Appends a methodology note.
    pub fn note(&mut self, note: &str) {
        self.notes.push(note.to_string());
    }

    /// Appends a markdown section (shown after the table).
    pub fn section(&mut self, title: &str, markdown: String) {
        self.sections.push((title.to_string(), markdown));
    }

    /// Records figures under a stable key of the part's `data`.
    pub fn data(&mut self, key: &str, value: serde_json::Value) {
        self.data.insert(key.to_string(), value);
    }

    /// Records that `what` was not measured, and why (the report says so plainly).
    pub fn skip(&mut self, what: &str, why: &str) {
        eprintln!("skipped: {what}: {why}");
        self.skipped.push((what.to_string(), why.to_string()));
    }

    /// The markdown table of all rows, then the sections and notes; goals shown with
    /// their verdicts.
    pub fn markdown(&self) -> String {
        self.markdown_judged(true)
    }

    /// [`markdown`](Self::markdown), with the goals' verdicts only if `judged` (a quick
    /// run's figures mean nothing: its goals are shown as not judged).
    pub fn markdown_judged(&self, judged: bool) -> String {
        let with_also = self.rows.iter().any(|r| r.also.is_some());
        let mut s = String::from("| measurement | median | best | unit |");
        s.push_str(if with_also { " also (median) |" } else { "" });
        s.push_str(" ratio (median) | goal |\n|---|---:|---:|---|");
        s.push_str(if with_also { "---:|" } else { "" });
        s.push_str("---|---|\n");
        for r in &self.rows {
            let ratio: Vec<String> = r.ratios.iter().map(|(n, x)| format!("{x:.2}x {n}")).collect();
            let goal = r
                .verdict()
                .map(|(g, ok)| match (judged, ok) {
                    (false, _) => format!("not judged ({g})"),
                    (true, true) => format!("met ({g})"),
                    (true, false) => format!("**missed** ({g})"),
                })
                .unwrap_or_default();
            s.push_str(&format!(
                "| {} | {} | {} | {} |",
                r.label,
                fmt_num(r.value.median),
                fmt_num(r.value.best),
                r.unit
            ));
            if with_also {
                let also = r.also.as_ref().map(|(v, u)| format!("{} {u}", fmt_num(v.median))).unwrap_or_default();
                s.push_str(&format!(" {also} |"));
            }
            s.push_str(&format!(" {} | {} |\n", ratio.join(", "), goal));
        }
        let lat: Vec<&Row> = self.rows.iter().filter(|r| r.latency.is_some()).collect();
        if !lat.is_empty() {
            s.push_str(
                "\nLatency distribution of the median run (ns):\n\n\
                 | measurement | count | mean | p50 | p90 | p99 | p99.9 | p99.99 | max |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for r in lat {
                let l = r.latency.as_ref().expect("filtered");
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    r.label,
                    l.count,
                    fmt_num(l.mean),
                    fmt_num(l.p50),
                    fmt_num(l.p90),
                    fmt_num(l.p99),
                    fmt_num(l.p999),
                    fmt_num(l.p9999),
                    fmt_num(l.max)
                ));
            }
        }
        for (title, md) in &self.sections {
            s.push_str(&format!("\n#### {title}\n\n{md}"));
            if !md.ends_with('\n') {
                s.push('\n');
            }
        }
        if !self.skipped.is_empty() {
            s.push_str("\nNot measured:\n\n");
            for (what, why) in &self.skipped {
                s.push_str(&format!("- **{what}**: skipped: {why}\n"));
            }
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }

    /// Prints the table and writes the JSON file if asked.
    pub fn finish(&self, opts: &Opts) {
        let markdown = self.markdown_judged(!opts.quick);
        println!("\n## {}\n\n{markdown}", self.name);
        if let Some(path) = &opts.json {
            let rows: Vec<serde_json::Value> = self
                .rows
                .iter()
                .map(|r| {
                    let first = r.ratios.first();
                    let ratios: Vec<serde_json::Value> =
                        r.ratios.iter().map(|(n, x)| serde_json::json!({"to": n, "ratio": x})).collect();
                    let verdict = r.verdict();
                    let checks: Vec<serde_json::Value> = r
                        .checks
                        .iter()
                        .map(|c| {
                            serde_json::json!({"what": c.what, "value": c.value, "limit": c.limit, "op": c.op(),
                                               "met": c.met()})
                        })
                        .collect();
                    serde_json::json!({
                        "key": r.key,
                        "label": r.label,
                        "unit": r.unit,
                        "median": r.value.median,
                        "best": r.value.best,
                        "also_unit": r.also.as_ref().map(|(_, u)| *u),
                        "also_median": r.also.as_ref().map(|(v, _)| v.median),
                        "also_best": r.also.as_ref().map(|(v, _)| v.best),
                        "ratio_to": first.map(|(n, _)| n.clone()),
                        "ratio": first.map(|(_, x)| *x),
                        "ratios": ratios,
                        "goal": verdict.as_ref().map(|(g, _)| g.clone()),
                        "goal_met": verdict.as_ref().map(|(_, ok)| *ok),
                        "checks": checks,
                        "reference": r.reference,
                        "latency": r.latency.as_ref().map(Latency::json),
                        "params": r.params.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "report": self.name,
                "quick": opts.quick,
                "runs": opts.runs,
                "cpus": [opts.cpus.0, opts.cpus.1],
                "markdown": markdown,
                "notes": self.notes,
                "skipped": self.skipped.iter().map(|(w, y)| serde_json::json!({"what": w, "why": y})).collect::<Vec<_>>(),
                "sections": self.sections.iter().map(|(t, m)| serde_json::json!({"title": t, "markdown": m})).collect::<Vec<_>>(),
                "data": self.data,
                "rows": rows,
            });
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("create report dir");
            }
            let mut f = std::fs::File::create(path).expect("create report file");
            f.write_all(serde_json::to_string_pretty(&doc).unwrap().as_bytes()).expect("write report");
        }
    }
}

/// A number with about three significant digits.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "?".into();
    }
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
