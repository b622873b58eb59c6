//! `cargo xtask bench`: runs the benchmark binaries of each suite, then writes
//! `target/bench/<suite>.json` (every figure, stable keys), `target/bench/<suite>.md`
//! (tables plus a description of the machine) and `target/bench/<suite>-readme.md`
//! (a compact table for the README: our figures, ratios to references, goals).
//!
//! A suite whose package does not exist yet (no `crates/<dir>/Cargo.toml`), or a bench
//! target not written yet, is skipped with a printed line, so the suite list can name
//! work in progress without breaking `cargo xtask bench` (or the CI smoke run).
//!
//! The bench binaries measure ours and the named references side by side in one run
//! and report medians of several runs with ratios; nothing here asserts a time.

use crate::run::{cargo, root, step};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::process::Command;

/// A suite: a package (in `crates/<dir>`) and its bench targets.
struct Suite {
    name: &'static str,
    package: &'static str,
    dir: &'static str,
    benches: &'static [&'static str],
}

const SUITES: &[Suite] = &[
    Suite { name: "ring", package: "tcpshm-ring", dir: "ring", benches: &["spsc", "var"] },
    Suite { name: "persist", package: "tcpshm-persist", dir: "persist", benches: &["persist"] },
];

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Suite to run: `ring`, `persist` or `all`.
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
}

impl Args {
    /// The CI smoke run: every suite, `--quick`.
    pub fn smoke() -> Args {
        Args { suite: "all".into(), quick: true, runs: None, cpus: None }
    }
}

/// Runs the chosen suites.
pub fn run(args: Args) -> Result<()> {
    let chosen: Vec<&Suite> = SUITES.iter().filter(|s| args.suite == "all" || args.suite == s.name).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
        bail!("unknown bench suite `{}` (known: all, {})", args.suite, names.join(", "));
    }
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(out_dir.join("parts"))?;
    let machine = machine();
    for suite in chosen {
        let manifest = root().join("crates").join(suite.dir).join("Cargo.toml");
        if !manifest.exists() {
            println!(
                "\n==> [bench {}] skipped: package {} does not exist yet (no crates/{}/Cargo.toml)",
                suite.name, suite.package, suite.dir
            );
            continue;
        }
        let mut parts = Vec::new();
        for bench in suite.benches {
            if !bench_declared(&root().join("crates").join(suite.dir), bench) {
                println!(
                    "\n==> [bench {}/{bench}] skipped: {} has no bench target `{bench}` yet \
                     (no crates/{}/benches/{bench}.rs nor [[bench]] name = \"{bench}\")",
                    suite.name, suite.package, suite.dir
                );
                continue;
            }
            let part = out_dir.join("parts").join(format!("{}-{bench}.json", suite.name));
            let _ = std::fs::remove_file(&part);
            let mut c = cargo();
            c.args(["bench", "-p", suite.package, "--bench", bench, "--", "--json"]);
            c.arg(&part);
            if args.quick {
                c.arg("--quick");
            }
            if let Some(r) = args.runs {
                c.args(["--runs", &r.to_string()]);
            }
            if let Some(cpus) = &args.cpus {
                c.args(["--cpus", cpus]);
            }
            step(&format!("bench {}/{bench}", suite.name), c)?;
            let text = std::fs::read_to_string(&part)
                .with_context(|| format!("bench {bench} wrote no report at {}", part.display()))?;
            parts.push(serde_json::from_str::<Value>(&text)?);
        }
        if parts.is_empty() {
            continue;
        }
        write_suite(&out_dir, suite.name, &machine, &parts, args.quick)?;
        write_readme_snippet(&out_dir, suite.name, &machine, &parts, args.quick)?;
    }
    Ok(())
}

/// Whether the package in `crate_dir` has a bench target named `bench`: cargo's
/// auto-discovered `benches/<bench>.rs` or `benches/<bench>/main.rs`, or a
/// `[[bench]]` entry with that name in its manifest.
fn bench_declared(crate_dir: &std::path::Path, bench: &str) -> bool {
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
fn write_readme_snippet(
    dir: &std::path::Path,
    name: &str,
    machine: &Value,
    parts: &[Value],
    quick: bool,
) -> Result<()> {
    let mut md = String::new();
    if quick {
        md.push_str("**Quick smoke run: figures are not meaningful.**\n\n");
    }
    md.push_str("| measurement | median | vs reference (same run) | goal |\n|---|---:|---|---|\n");
    for p in parts {
        for r in p["rows"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let ratios: Vec<String> = r["ratios"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|x| Some(format!("{:.2}x {}", x["ratio"].as_f64()?, x["to"].as_str()?)))
                .collect();
            let goal = match (r["goal"].as_str(), r["goal_met"].as_bool()) {
                (Some(g), Some(true)) => format!("met: {g}"),
                (Some(g), Some(false)) => format!("**missed**: {g}"),
                _ => String::new(),
            };
            if r["reference"].as_bool().unwrap_or(false) {
                continue;
            }
            let mut median =
                format!("{} {}", fmt_num(r["median"].as_f64().unwrap_or(f64::NAN)), r["unit"].as_str().unwrap_or(""));
            if let (Some(v), Some(u)) = (r["also_median"].as_f64(), r["also_unit"].as_str()) {
                median.push_str(&format!(" ({} {u})", fmt_num(v)));
            }
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r["label"].as_str().unwrap_or("?"),
                median,
                ratios.join(", "),
                goal
            ));
        }
    }
    md.push_str(&format!(
        "\n{} ({} cpus), {}, {}; medians of several runs of `cargo xtask bench {name}` \
         (full table: target/bench/{name}.md).\n",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["rustc"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
    ));
    std::fs::write(dir.join(format!("{name}-readme.md")), &md)?;
    println!("wrote target/bench/{name}-readme.md");
    Ok(())
}

/// A number with about three significant digits.
fn fmt_num(x: f64) -> String {
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

fn write_suite(dir: &std::path::Path, name: &str, machine: &Value, parts: &[Value], quick: bool) -> Result<()> {
    let doc = json!({ "suite": name, "quick": quick, "machine": machine, "parts": parts });
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(&doc)?)?;
    let mut md = format!("# Benchmark `{name}`\n\n");
    if quick {
        md.push_str("**Quick smoke run: figures are not meaningful.**\n\n");
    }
    md.push_str(&format!(
        "Machine: {} ({} cpus), kernel {}, {}, {}.\n",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["rustc"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
    ));
    md.push_str(
        "Each figure is the median of several runs (best run beside it); \
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
    println!("\n{md}\nwrote target/bench/{name}.json and target/bench/{name}.md");
    Ok(())
}

/// What the figures were measured on.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown cpu".into());
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
        "cpus": cpus,
        "kernel": kernel,
        "rustc": out("rustc", &["-V"]),
        "date": out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
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
