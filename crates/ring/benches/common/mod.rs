//! Shared plumbing of the ring benchmarks: argument parsing, cpu pinning, repeated
//! runs summarised as median and min, and the report rows that `cargo xtask bench`
//! collects into `target/bench/ring.{json,md}`.
//!
//! Benchmarks never assert a time: they measure, compare against references measured
//! in the same run, and report ratios.
#![allow(dead_code)]

use std::io::Write;

/// Command-line options every ring bench binary accepts.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Short smoke run (CI proves the harness works; figures are meaningless).
    pub quick: bool,
    /// Number of repeated runs of each measurement (median and min are reported).
    pub runs: usize,
    /// Where to write the JSON report.
    pub json: Option<std::path::PathBuf>,
    /// The two cpus producer and consumer are pinned to.
    pub cpus: (usize, usize),
}

impl Opts {
    /// Parses `--quick`, `--runs N`, `--json PATH`, `--cpus A,B`; ignores the
    /// `--bench` flag cargo passes.
    pub fn from_args() -> Opts {
        let mut o = Opts { quick: false, runs: 5, json: None, cpus: (0, 1) };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--runs" => o.runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
                "--json" => o.json = args.next().map(Into::into),
                "--cpus" => {
                    let v = args.next().expect("--cpus A,B");
                    let (a, b) = v.split_once(',').expect("--cpus A,B");
                    o.cpus = (a.parse().expect("cpu"), b.parse().expect("cpu"));
                }
                _ => {}
            }
        }
        if o.quick {
            o.runs = o.runs.min(2);
        }
        o
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

/// Median and minimum of repeated measurements.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// The median run.
    pub median: f64,
    /// The best run (lowest for latencies, see [`Summary::of_higher_is_better`]).
    pub best: f64,
}

impl Summary {
    /// Summary of a lower-is-better measurement (latency).
    pub fn of_lower_is_better(mut v: Vec<f64>) -> Summary {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Summary { median: v[v.len() / 2], best: v[0] }
    }
    /// Summary of a higher-is-better measurement (throughput).
    pub fn of_higher_is_better(mut v: Vec<f64>) -> Summary {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Summary { median: v[v.len() / 2], best: v[v.len() - 1] }
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
    /// Ratio to a reference measured in the same run, with the reference's name
    /// (`ours / reference`, on medians).
    pub ratio: Option<(String, f64)>,
    /// The goal this row is judged against, in words, and whether it was met.
    pub goal: Option<(String, bool)>,
}

/// A bench binary's report: rows printed as a markdown table and written as JSON.
#[derive(Debug, Default)]
pub struct Report {
    /// Report name, e.g. `ring.spsc`.
    pub name: String,
    /// Rows in print order.
    pub rows: Vec<Row>,
}

impl Report {
    /// A new empty report.
    pub fn new(name: &str) -> Report {
        Report { name: name.to_string(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// The markdown table of all rows.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| measurement | median | best | unit | ratio (median) | goal |\n|---|---:|---:|---|---|---|\n",
        );
        for r in &self.rows {
            let ratio = r
                .ratio
                .as_ref()
                .map(|(n, x)| format!("{x:.2}x {n}"))
                .unwrap_or_default();
            let goal = r
                .goal
                .as_ref()
                .map(|(g, ok)| format!("{} ({g})", if *ok { "met" } else { "**missed**" }))
                .unwrap_or_default();
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.label,
                fmt_num(r.value.median),
                fmt_num(r.value.best),
                r.unit,
                ratio,
                goal
            ));
        }
        s
    }

    /// Prints the table and writes the JSON file if asked.
    pub fn finish(&self, opts: &Opts) {
        println!("\n## {}\n\n{}", self.name, self.markdown());
        if let Some(path) = &opts.json {
            let rows: Vec<serde_json::Value> = self
                .rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "key": r.key,
                        "label": r.label,
                        "unit": r.unit,
                        "median": r.value.median,
                        "best": r.value.best,
                        "ratio_to": r.ratio.as_ref().map(|(n, _)| n.clone()),
                        "ratio": r.ratio.as_ref().map(|(_, x)| *x),
                        "goal": r.goal.as_ref().map(|(g, _)| g.clone()),
                        "goal_met": r.goal.as_ref().map(|(_, ok)| *ok),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "report": self.name,
                "quick": opts.quick,
                "runs": opts.runs,
                "markdown": self.markdown(),
                "rows": rows,
            });
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("create report dir");
            }
            let mut f = std::fs::File::create(path).expect("create report file");
            f.write_all(serde_json::to_string_pretty(&doc).unwrap().as_bytes())
                .expect("write report");
        }
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
