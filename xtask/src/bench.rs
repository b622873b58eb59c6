//! `cargo xtask bench [all|echo|stream|scale|stats|rpc|producers|persist|ring] [--quick] [--runs N]
//! [--cpus A,B] [--with-zmq] [--trace-tail]`: runs the benchmark binaries of the chosen
//! suites, shows a live progress line, then writes
//!
//! * `target/bench/report.json` — every figure of this invocation, stable keys (see
//!   `report.rs` for the schema);
//! * `target/bench/report.md` — the machine, the goals (met / **missed**), the tables;
//! * plots as SVG and PNG: `echo-latency`, `stream-throughput`, `scale-latency`,
//!   `scale-throughput` (`report_plot.rs`);
//! * per suite, `target/bench/<suite>.{json,md}` and `<suite>-readme.md` (a compact
//!   table for the README);
//!
//! and prints a compact table of tcpshm's figures and the goals.
//!
//! A suite whose package or bench target does not exist is skipped with a printed
//! line. The bench binaries measure ours and the references side by side in one run
//! — echo, stream and scale (the `tcpshm-bench` package) in back-to-back pairs, the
//! ring and persist crates' own benches in interleaved rounds — and report medians
//! with ratios; nothing here asserts a time. A `--quick` run exercises every code
//! path but judges no goal (its figures mean nothing).

mod report;
mod report_plot;

use crate::run::{cargo, root};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A suite: a package (`crates/<dir>`) and its bench targets.
struct Suite {
    name: &'static str,
    package: &'static str,
    dir: &'static str,
    benches: &'static [&'static str],
    /// Features the bench targets require (`--features`), or "".
    features: &'static str,
}

/// The package of the echo, stream, scale and rpc suites.
const BENCH_PACKAGE: &str = "tcpshm-bench";

const SUITES: &[Suite] = &[
    Suite { name: "echo", package: BENCH_PACKAGE, dir: "bench", benches: &["echo"], features: "" },
    Suite { name: "stream", package: BENCH_PACKAGE, dir: "bench", benches: &["stream"], features: "" },
    Suite { name: "scale", package: BENCH_PACKAGE, dir: "bench", benches: &["scale"], features: "" },
    Suite { name: "stats", package: BENCH_PACKAGE, dir: "bench", benches: &["stats"], features: "" },
    Suite { name: "rpc", package: BENCH_PACKAGE, dir: "bench", benches: &["rpc"], features: "" },
    Suite { name: "producers", package: BENCH_PACKAGE, dir: "bench", benches: &["producers"], features: "" },
    Suite { name: "persist", package: "tcpshm-persist", dir: "persist", benches: &["persist"], features: "" },
    // The ring's benches measure its waiting helpers too.
    Suite { name: "ring", package: "tcpshm-ring", dir: "ring", benches: &["spsc", "var"], features: "wait" },
];

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Suite to run: `all`, `echo`, `stream`, `scale`, `stats`, `rpc`, `producers`, `persist` or `ring`.
    #[arg(default_value = "all")]
    pub suite: String,
    /// Short smoke run (seconds); the figures are not meaningful.
    #[arg(long)]
    pub quick: bool,
    /// Repeated runs per measurement (the median run is reported).
    #[arg(long)]
    pub runs: Option<usize>,
    /// The two cpus to pin the two sides to, e.g. `0,1`.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Also measure ZeroMQ REQ/REP (tcp:// and ipc://) in the echo suite: builds the
    /// `tcpshm-bench` package's `zmq` feature (libzmq compiled from source by the `zmq`
    /// crate).
    #[arg(long)]
    pub with_zmq: bool,
    /// Echo: record what ran in the slowest round trips on each side and name their
    /// causes (always done, briefly, by `--quick`).
    #[arg(long)]
    pub trace_tail: bool,
}

impl Args {
    /// The CI smoke run: every suite, `--quick`.
    pub fn smoke() -> Args {
        Args { suite: "all".into(), quick: true, runs: None, cpus: None, with_zmq: false, trace_tail: false }
    }

    fn command_line(&self) -> String {
        let mut s = format!("cargo xtask bench {}", self.suite);
        if self.quick {
            s.push_str(" --quick");
        }
        if let Some(r) = self.runs {
            s.push_str(&format!(" --runs {r}"));
        }
        if let Some(c) = &self.cpus {
            s.push_str(&format!(" --cpus {c}"));
        }
        if self.with_zmq {
            s.push_str(" --with-zmq");
        }
        if self.trace_tail {
            s.push_str(" --trace-tail");
        }
        s
    }
}

/// Runs the chosen suites and writes the report.
pub fn run(args: Args) -> Result<()> {
    let chosen: Vec<&Suite> = SUITES.iter().filter(|s| args.suite == "all" || args.suite == s.name).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
        bail!("unknown bench suite `{}` (known: all, {})", args.suite, names.join(", "));
    }
    let t = Instant::now();
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(out_dir.join("parts"))?;
    std::fs::create_dir_all(out_dir.join("log"))?;
    let mut machine = machine();
    let mut suites_done: Vec<(String, Vec<Value>)> = Vec::new();
    let mut skipped: Vec<Value> = Vec::new();
    let zmq = if args.with_zmq && chosen.iter().any(|s| s.name == "echo") { Some(zmq_build(&out_dir)?) } else { None };

    for suite in chosen {
        let crate_dir = root().join("crates").join(suite.dir);
        if !crate_dir.join("Cargo.toml").exists() {
            let why = format!("package {} does not exist yet (no {}/Cargo.toml)", suite.package, crate_dir.display());
            println!("\n==> [bench {}] skipped: {why}", suite.name);
            skipped.push(json!({"suite": suite.name, "what": format!("suite {}", suite.name), "why": why}));
            continue;
        }
        let mut parts = Vec::new();
        for bench in suite.benches {
            if !bench_declared(&crate_dir, bench) {
                let why = format!("{} has no bench target `{bench}` yet", suite.package);
                println!("\n==> [bench {}/{bench}] skipped: {why}", suite.name);
                skipped.push(json!({"suite": suite.name, "what": format!("{}/{bench}", suite.name), "why": why}));
                continue;
            }
            let part = out_dir.join("parts").join(format!("{}-{bench}.json", suite.name));
            let _ = std::fs::remove_file(&part);
            let mut c = cargo();
            c.args(["bench", "-p", suite.package, "--bench", bench]);
            if !suite.features.is_empty() {
                c.args(["--features", suite.features]);
            }
            let mut extra: Vec<String> = vec!["--json".into(), part.display().to_string()];
            if suite.name == "echo" {
                match &zmq {
                    Some(Ok(())) => {
                        c.args(["--features", "zmq"]);
                        extra.push("--with-zmq".into());
                    }
                    Some(Err(why)) => extra.extend(["--zmq-skip".into(), why.clone()]),
                    None => {}
                }
            }
            c.arg("--");
            c.args(&extra);
            if args.quick {
                c.arg("--quick");
            }
            if let Some(r) = args.runs {
                c.args(["--runs", &r.to_string()]);
            }
            if let Some(cpus) = &args.cpus {
                c.args(["--cpus", cpus]);
            }
            if args.trace_tail && suite.name == "echo" {
                c.arg("--trace-tail");
            }
            let log = out_dir.join("log").join(format!("{}-{bench}.log", suite.name));
            run_with_progress(&format!("bench {}/{bench}", suite.name), c, &log)?;
            let text = std::fs::read_to_string(&part)
                .with_context(|| format!("bench {bench} wrote no report at {}", part.display()))?;
            parts.push(serde_json::from_str::<Value>(&text)?);
        }
        if parts.is_empty() {
            continue;
        }
        write_suite(&out_dir, suite.name, &machine, &parts, args.quick)?;
        write_readme_snippet(&out_dir, suite.name, &machine, &parts, args.quick)?;
        suites_done.push((suite.name.to_string(), parts));
    }

    machine["load_after"] = json!(loadavg());
    let mut doc = report::build(&args.command_line(), args.quick, machine, &suites_done, skipped);
    let plots = report_plot::write_all(&doc, &out_dir).context("drawing the plots")?;
    doc["plots"] = json!(plots);
    std::fs::write(out_dir.join("report.json"), serde_json::to_string_pretty(&doc)?)?;
    std::fs::write(out_dir.join("report.md"), report::markdown(&doc))?;
    println!("\n{}", report::terminal(&doc));
    println!(
        "wrote target/bench/report.md, target/bench/report.json{} in {:.0?}",
        plots.iter().map(|p| format!(", target/bench/{p}")).collect::<String>(),
        t.elapsed()
    );
    Ok(())
}

/// Builds the echo bench with the `zmq` feature first: `Ok` if it built, or why not
/// (the report says so; the suite then runs without ZeroMQ).
fn zmq_build(out_dir: &Path) -> Result<std::result::Result<(), String>> {
    let log = out_dir.join("log").join("zmq-build.log");
    let mut c = cargo();
    c.args(["bench", "-p", BENCH_PACKAGE, "--bench", "echo", "--features", "zmq", "--no-run"]);
    println!("\n==> [bench echo] building with the `zmq` feature (libzmq from source; the first build takes minutes)");
    match run_with_progress("build echo --features zmq", c, &log) {
        Ok(()) => Ok(Ok(())),
        Err(_) => Ok(Err(format!(
            "building the `zmq` feature failed (the `zmq` crate compiles libzmq from source and needs a C++ \
             compiler); see {}",
            log.strip_prefix(root()).unwrap_or(&log).display()
        ))),
    }
}

/// Runs `cmd` with a live progress line: the bench binaries print
/// `@@progress DONE TOTAL WHAT` on stderr; cargo's own lines become the line's
/// message; other stderr lines are printed above it. Stdout goes to `log`.
fn run_with_progress(name: &str, mut cmd: Command, log: &Path) -> Result<()> {
    let t = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix:.bold} {bar:24} {pos}/{len} {wide_msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_prefix(name.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    if !tty {
        println!("\n==> [{name}] started");
    }
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    cmd.stdout(Stdio::from(out)).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("{name}: could not start cargo"))?;
    let stderr = child.stderr.take().expect("piped");
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap_or_default();
        if let Some(p) = line.strip_prefix("@@progress ") {
            let mut it = p.splitn(3, ' ');
            let done: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let total: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let what = it.next().unwrap_or("").to_string();
            pb.set_length(total);
            pb.set_position(done);
            if !tty && done < total {
                println!("    [{name}] {}/{total} {what}", done + 1);
            }
            pb.set_message(what);
            continue;
        }
        let trimmed = line.trim_start();
        let is_cargo = ["Compiling ", "Finished ", "Running ", "Downloaded ", "Downloading ", "Updating ", "Locking "]
            .iter()
            .any(|p| trimmed.starts_with(p));
        if is_cargo {
            pb.set_message(trimmed.to_string());
        } else {
            pb.suspend(|| eprintln!("{line}"));
        }
        tail.push(line);
        if tail.len() > 40 {
            tail.remove(0);
        }
    }
    let status = child.wait()?;
    pb.finish_and_clear();
    if !status.success() {
        eprintln!("{}", tail.join("\n"));
        bail!("step `{name}` FAILED ({status}) after {:.0?}; its output is in {}", t.elapsed(), log.display());
    }
    println!("==> [{name}] ok in {:.0?}", t.elapsed());
    Ok(())
}

/// Whether the package in `crate_dir` has a bench target named `bench`: cargo's
/// auto-discovered `benches/<bench>.rs` or `benches/<bench>/main.rs`, or a
/// `[[bench]]` entry with that name in its manifest.
fn bench_declared(crate_dir: &Path, bench: &str) -> bool {
    if crate_dir.join(format!("benches/{bench}.rs")).exists()
        || crate_dir.join(format!("benches/{bench}/main.rs")).exists()
    {
        return true;
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap_or_default();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "name" && v.trim().trim_matches('"') == bench {
                    return true;
                }
            }
        }
    }
    false
}

/// `target/bench/<suite>-readme.md`: a compact table for the README's performance
/// section: tcpshm's rows (not the references'), with the median, the ratios to the
/// references measured in the same run and whether the goal was met.
fn write_readme_snippet(dir: &Path, name: &str, machine: &Value, parts: &[Value], quick: bool) -> Result<()> {
    let mut md = String::new();
    if quick {
        md.push_str("**Quick smoke run: figures are not meaningful.**\n\n");
    }
    md.push_str(&report::ours_table(parts, !quick));
    md.push_str(&format!(
        "\n{} ({} cpus), {}, {}; medians of several runs of `cargo xtask bench {name}` \
         (full table: target/bench/{name}.md).\n",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["rustc"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
    ));
    std::fs::write(dir.join(format!("{name}-readme.md")), &md)?;
    Ok(())
}

fn write_suite(dir: &Path, name: &str, machine: &Value, parts: &[Value], quick: bool) -> Result<()> {
    let doc = json!({ "suite": name, "quick": quick, "machine": machine, "parts": parts });
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(&doc)?)?;
    let mut md = format!("# Benchmark `{name}`\n\n");
    if quick {
        md.push_str("**Quick smoke run: figures are not meaningful.**\n\n");
    }
    md.push_str(&report::machine_line(machine));
    md.push_str(
        "\nEach figure is the median of several runs (best run beside it); \
         ratios are of medians, measured in the same run.\n",
    );
    for p in parts {
        md.push_str(&format!(
            "\n## {}\n\n{}",
            p["report"].as_str().unwrap_or("?"),
            p["markdown"].as_str().unwrap_or("")
        ));
    }
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    Ok(())
}

/// The load average now (`/proc/loadavg`'s first three fields): how busy the shared
/// machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What the figures were measured on.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
    };
    let cpu = field("model name").unwrap_or_else(|| "unknown cpu".into());
    let mhz = field("cpu MHz").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let out = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "cpu": cpu,
        "cpu_mhz": mhz,
        "cpus": cpus,
        "kernel": kernel,
        "rustc": out("rustc", &["-V"]),
        "date": out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "load_before": loadavg(),
    })
}

#[cfg(test)]
mod tests {
    use super::bench_declared;

    fn temp_crate(name: &str, manifest: &str, files: &[&str]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("benches/sub")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "fn main() {}").unwrap();
        }
        dir
    }

    #[test]
    fn bench_found_by_file_or_manifest_entry() {
        let d = temp_crate("file", "[package]\nname = \"x\"\n", &["benches/a.rs", "benches/sub/main.rs"]);
        assert!(bench_declared(&d, "a"));
        assert!(bench_declared(&d, "sub"));
        assert!(!bench_declared(&d, "b"));
        let _ = std::fs::remove_dir_all(&d);
        let d = temp_crate(
            "manifest",
            "[package]\nname = \"pkg\"\n\n[[bench]]\nname = \"b\"\npath = \"elsewhere/b.rs\"\nharness = false\n",
            &[],
        );
        assert!(bench_declared(&d, "b"));
        // A `name` outside a `[[bench]]` table is the package's, not a bench's.
        assert!(!bench_declared(&d, "pkg"));
        let _ = std::fs::remove_dir_all(&d);
        let d = temp_crate("other-table", "[package]\nname = \"c\"\n[[test]]\nname = \"c2\"\n", &[]);
        assert!(!bench_declared(&d, "c"));
        assert!(!bench_declared(&d, "c2"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
