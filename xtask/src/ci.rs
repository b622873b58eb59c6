//! `cargo xtask ci`: the whole gate, in order, stopping at the first failing step.

use crate::run::{cargo, probe, root, step};
use anyhow::Result;
use std::process::Command;

/// Options of `cargo xtask ci`.
#[derive(clap::Args)]
pub struct Args {
    /// Skip the miri step (it still prints that miri was NOT run).
    #[arg(long)]
    pub no_miri: bool,
    /// Skip the benchmark smoke run.
    #[arg(long)]
    pub no_bench: bool,
}

/// Every feature except `zmq` (the bench's ZeroMQ reference builds libzmq from source:
/// minutes of C++ per step, for a reference no test uses; `cargo xtask bench
/// --with-zmq` builds it when asked). The ring's features are on, so its shared-memory
/// and waiting tests run; its featureless build is linted on its own, and built and run
/// by the standalone step.
const FEATURES: &str = "tcpshm-proto/testkit,tcpshm-connection/testkit,tcpshm-ring/shm,tcpshm-ring/wait";

/// Runs the gate.
pub fn run(args: Args) -> Result<()> {
    let t = std::time::Instant::now();

    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    step("fmt", c)?;

    let mut c = cargo();
    c.args(["clippy", "--workspace", "--all-targets", "--features", FEATURES, "--", "-D", "warnings"]);
    step("clippy", c)?;

    // Tests that cannot run here record why (tcpshm-test-support's `skip`); they are
    // listed at the end, never counted as passes. `.ci/run` sets TCPSHM_REQUIRE_ALL=1
    // where everything can run, which makes a skip a failure.
    let skips = root().join("target/test-skips");
    let _ = std::fs::remove_dir_all(&skips);
    let mut c = cargo();
    c.args(["test", "--workspace", "--features", FEATURES]);
    step("test", c)?;

    let mut c = cargo();
    c.args(["clippy", "-p", "tcpshm-ring", "--all-targets", "--", "-D", "warnings"]);
    step("clippy tcpshm-ring without features", c)?;

    standalone_ring()?;
    ring_examples()?;

    let mut c = cargo();
    c.args(["doc", "--workspace", "--no-deps", "--features", FEATURES]);
    c.env("RUSTDOCFLAGS", "-D warnings");
    step("doc", c)?;

    loom()?;

    if args.no_miri {
        println!("\n==> [miri] NOT run: --no-miri was given");
    } else {
        miri()?;
    }

    if args.no_bench {
        println!("\n==> [bench smoke] NOT run: --no-bench was given");
    } else {
        println!("\n==> [bench smoke] cargo xtask bench all --quick");
        crate::bench::run(crate::bench::Args::smoke())?;
    }

    report_skips(&skips);
    println!("\nxtask ci: all steps passed in {:.0?}", t.elapsed());
    Ok(())
}

/// Lists the tests that did not run (recorded by `tcpshm_test_support::skip`).
fn report_skips(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut skipped: Vec<(String, String)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap_or_default()))
        .collect();
    if skipped.is_empty() {
        return;
    }
    skipped.sort();
    println!("\n==> {} test(s) did NOT run here (a skip is not a pass):", skipped.len());
    for (name, why) in skipped {
        println!("    {name}: {why}");
    }
}

/// Builds and runs every program in `crates/ring/README.md` in a scratch project whose
/// only dependency is `tcpshm-ring` (with the features the block's first line names,
/// `// Cargo.toml: ... features = ["shm", "wait"] }`): proof that the ring is usable
/// alone, and that the README's examples are true. Then checks each scratch project's
/// `Cargo.lock`: it must not contain any of the ring's test-only dependencies (its
/// dev-dependencies that are not also dependencies: loom, proptest, the benchmark
/// references...), and without features it must hold the two packages and nothing else.
fn standalone_ring() -> Result<()> {
    let readme = std::fs::read_to_string(root().join("crates/ring/README.md"))?;
    let programs: Vec<&str> = readme.split("```rust\n").skip(1).filter_map(|rest| rest.split("```").next()).collect();
    anyhow::ensure!(!programs.is_empty(), "crates/ring/README.md has no ```rust block");
    let test_only = ring_test_only_dependencies()?;
    anyhow::ensure!(test_only.iter().any(|d| d == "loom"), "loom is not among the ring's test-only dependencies");
    let ring = root().join("crates/ring");
    for (n, program) in programs.iter().enumerate() {
        let features = block_features(program);
        let dir = root().join(format!("target/standalone-ring/{n}"));
        std::fs::create_dir_all(dir.join("src"))?;
        let _ = std::fs::remove_file(dir.join("Cargo.lock"));
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"standalone-ring\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
                 [dependencies]\ntcpshm-ring = {{ path = {:?}, features = {features:?} }}\n\n[workspace]\n",
                ring.display().to_string()
            ),
        )?;
        std::fs::write(dir.join("src/main.rs"), program)?;
        let mut c = cargo();
        c.current_dir(&dir);
        c.args(["run", "--quiet"]);
        c.env("CARGO_TARGET_DIR", root().join("target/standalone-ring/target"));
        step(&format!("standalone tcpshm-ring, README example {} (features {features:?})", n + 1), c)?;

        let lock = std::fs::read_to_string(dir.join("Cargo.lock"))?;
        let packages = lock_packages(&lock);
        println!("==> [standalone lockfile {}] {}", n + 1, packages.join(", "));
        anyhow::ensure!(packages.iter().any(|p| p == "tcpshm-ring"), "the scratch Cargo.lock has no tcpshm-ring");
        let leaked: Vec<&String> = packages.iter().filter(|p| test_only.contains(p)).collect();
        anyhow::ensure!(
            leaked.is_empty(),
            "test-only dependencies of tcpshm-ring reached a dependent's Cargo.lock: {leaked:?}"
        );
        if features.is_empty() {
            anyhow::ensure!(
                packages == ["standalone-ring", "tcpshm-ring"],
                "without features, tcpshm-ring must bring no dependency; the lockfile has {packages:?}"
            );
        }
    }
    Ok(())
}

/// The features named on a README block's first line
/// (`// Cargo.toml: tcpshm-ring = { ..., features = ["shm", "wait"] }`), if any.
fn block_features(program: &str) -> Vec<String> {
    let first = program.lines().next().unwrap_or("");
    let Some(list) = first.strip_prefix("// Cargo.toml:").and_then(|l| l.split("features = [").nth(1)) else {
        return Vec::new();
    };
    list.split(']')
        .next()
        .unwrap_or("")
        .split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

/// The package names in a `Cargo.lock`, sorted.
fn lock_packages(lock: &str) -> Vec<String> {
    let mut names: Vec<String> =
        lock.lines().filter_map(|l| l.strip_prefix("name = \"")).map(|n| n.trim_end_matches('"').to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// The ring's dev-dependencies (any target) that are not also normal dependencies, from
/// `cargo metadata`: what a dependent must never resolve.
fn ring_test_only_dependencies() -> Result<Vec<String>> {
    let mut c = cargo();
    c.args(["metadata", "--no-deps", "--format-version", "1"]);
    let out = c.output()?;
    anyhow::ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ring = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "tcpshm-ring"))
        .ok_or_else(|| anyhow::anyhow!("cargo metadata lists no tcpshm-ring"))?;
    let deps = ring["dependencies"].as_array().cloned().unwrap_or_default();
    let names = |kind: Option<&str>| -> Vec<String> {
        deps.iter()
            .filter(|d| d["kind"].as_str() == kind)
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect()
    };
    let normal = names(None);
    Ok(names(Some("dev")).into_iter().filter(|d| !normal.contains(d)).collect())
}

/// The ring's examples, run as a user would (`cargo run --example`), with the features
/// each needs.
fn ring_examples() -> Result<()> {
    for (example, features) in [("threads", ""), ("processes", "shm,wait")] {
        let mut c = cargo();
        c.args(["run", "--quiet", "-p", "tcpshm-ring", "--example", example]);
        if !features.is_empty() {
            c.args(["--features", features]);
        }
        step(&format!("tcpshm-ring example {example}"), c)?;
    }
    Ok(())
}

/// The loom models, with `--cfg loom` in their own target dir (the cfg changes every
/// crate's build, so it must not thrash the normal one):
///
/// * every crate with a `src/loom_models/` module: its library's unit tests filtered to
///   `loom_models`, with all its features (models of optional code too; loom is then a
///   `cfg(loom)` dev-dependency, visible only to the crate's own test build, so it
///   never reaches a dependent's `Cargo.lock`);
/// * every `crates/*/tests/loom_*.rs` integration test (a crate whose loom models only
///   need its public API).
///
/// A filter that matches no test would pass vacuously, so each run must report at
/// least one passed test.
fn loom() -> Result<()> {
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    for krate in std::fs::read_dir(root().join("crates"))? {
        let krate = krate?.path();
        let pkg = format!("tcpshm-{}", krate.file_name().unwrap().to_string_lossy());
        if krate.join("src/loom_models").is_dir() {
            runs.push((pkg.clone(), vec!["--all-features".into(), "--lib".into(), "loom_models".into()]));
        }
        let Ok(files) = std::fs::read_dir(krate.join("tests")) else { continue };
        for f in files {
            let name = f?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_prefix("loom_").and_then(|s| s.strip_suffix(".rs")) {
                runs.push((pkg.clone(), vec!["--test".into(), format!("loom_{stem}")]));
            }
        }
    }
    runs.sort();
    anyhow::ensure!(!runs.is_empty(), "no loom models found (crates/*/src/loom_models/ or crates/*/tests/loom_*.rs)");
    for (pkg, target) in runs {
        let mut c = cargo();
        c.args(["test", "--release", "-p", &pkg]);
        c.args(&target);
        c.env("RUSTFLAGS", "--cfg loom");
        c.env("CARGO_TARGET_DIR", root().join("target/loom"));
        c.env("LOOM_MAX_PREEMPTIONS", "3");
        step_counting_tests(&format!("loom {pkg} {}", target.join(" ")), c)?;
    }
    Ok(())
}

/// Runs a `cargo test` step, echoing its output, and fails unless it passed at least
/// one test (a filter that matches nothing is not a pass).
fn step_counting_tests(name: &str, mut cmd: Command) -> Result<()> {
    println!("\n==> [{name}] {cmd:?}");
    let t = std::time::Instant::now();
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "step `{name}` FAILED ({}) after {:.0?}", out.status, t.elapsed());
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    anyhow::ensure!(passed > 0, "step `{name}` ran no test: its filter matched nothing");
    println!("==> [{name}] ok ({passed} tests) in {:.0?}", t.elapsed());
    Ok(())
}

/// miri on the ring crate (its unsafe code), with nightly. If nightly or miri is not
/// installed, say so loudly: the gate never skips miri silently.
fn miri() -> Result<()> {
    let mut has = Command::new("rustup");
    has.args(["run", "nightly", "cargo", "miri", "--version"]);
    if !probe(has) {
        println!(
            "\n==> [miri] NOT RUN: the nightly toolchain with the miri component is not installed \
             (`rustup toolchain install nightly --component miri,rust-src`; .ci/run does this). \
             The ring's unsafe code was NOT checked by miri in this run."
        );
        return Ok(());
    }
    // Through rustup, not `$CARGO` (which is the stable cargo binary itself and does
    // not understand `+nightly`).
    let miri = |features: &[&str], flags: &str| {
        let mut c = Command::new("rustup");
        c.current_dir(root());
        c.args(["run", "nightly", "cargo", "miri", "test", "-p", "tcpshm-ring"]);
        c.args(features);
        c.env_remove("CARGO");
        c.env_remove("RUSTC");
        c.env("MIRIFLAGS", flags);
        c
    };
    // Tests that need real threads for long, mappings of files or other processes are
    // marked `#[cfg_attr(miri, ignore)]`; everything else runs under miri.
    step("miri tcpshm-ring", miri(&[], "-Zmiri-strict-provenance -Zmiri-disable-isolation"))?;
    // The waiting helpers, through miri's futex: permissive provenance, because rustix's
    // FUTEX_WAKE passes an unused argument as an integer cast to a pointer.
    step(
        "miri tcpshm-ring waiting helpers",
        miri(&["--features", "wait", "--test", "wait"], "-Zmiri-permissive-provenance -Zmiri-disable-isolation"),
    )
}

#[cfg(test)]
mod tests {
    use super::{block_features, lock_packages};

    #[test]
    fn readme_blocks_name_their_features_on_the_first_line() {
        let block = "// Cargo.toml: tcpshm-ring = { path = \"x\", features = [\"shm\", \"wait\"] }\nfn main() {}\n";
        assert_eq!(block_features(block), ["shm", "wait"]);
        assert!(block_features("use x;\n// Cargo.toml: features = [\"shm\"]\n").is_empty(), "first line only");
        assert!(block_features("fn main() {}\n").is_empty());
        assert!(block_features("// Cargo.toml: tcpshm-ring = { features = [] }\n").is_empty());
    }

    #[test]
    fn lockfile_packages_are_read_sorted_and_deduplicated() {
        let lock = "version = 4\n\n[[package]]\nname = \"tcpshm-ring\"\nversion = \"0.1.0\"\n\n\
                    [[package]]\nname = \"bitflags\"\nversion = \"2.0.0\"\n\n[[package]]\nname = \"bitflags\"\n\
                    version = \"1.3.2\"\ndependencies = [\n \"loom\",\n]\n";
        // A name in a dependency list is not a package entry.
        assert_eq!(lock_packages(lock), ["bitflags", "tcpshm-ring"]);
    }
}
