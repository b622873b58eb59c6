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
/// --with-zmq` builds it when asked).
const FEATURES: &str = "tcpshm-proto/testkit";

/// Runs the gate.
pub fn run(args: Args) -> Result<()> {
    let t = std::time::Instant::now();

    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    step("fmt", c)?;

    let mut c = cargo();
    c.args(["clippy", "--workspace", "--all-targets", "--features", FEATURES, "--", "-D", "warnings"]);
    step("clippy", c)?;

    let mut c = cargo();
    c.args(["test", "--workspace", "--features", FEATURES]);
    step("test", c)?;

    standalone_ring()?;

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

    println!("\nxtask ci: all steps passed in {:.0?}", t.elapsed());
    Ok(())
}

/// Builds and runs the program in `crates/ring/README.md` in a scratch project whose
/// only dependency is `tcpshm-ring`: proof that the ring is usable alone, and that the
/// README's example is true.
fn standalone_ring() -> Result<()> {
    let readme = std::fs::read_to_string(root().join("crates/ring/README.md"))?;
    let program = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .ok_or_else(|| anyhow::anyhow!("crates/ring/README.md has no ```rust block"))?;
    let dir = root().join("target/standalone-ring");
    std::fs::create_dir_all(dir.join("src"))?;
    let ring = root().join("crates/ring");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"standalone-ring\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\ntcpshm-ring = {{ path = {:?} }}\n\n[workspace]\n",
            ring.display().to_string()
        ),
    )?;
    std::fs::write(dir.join("src/main.rs"), program)?;
    let mut c = cargo();
    c.current_dir(&dir);
    c.args(["run", "--quiet"]);
    c.env("CARGO_TARGET_DIR", root().join("target/standalone-ring/target"));
    step("standalone tcpshm-ring (crates/ring/README.md example)", c)
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
    let mut c = Command::new("rustup");
    c.current_dir(root());
    c.args(["run", "nightly", "cargo", "miri", "test", "-p", "tcpshm-ring"]);
    c.env_remove("CARGO");
    c.env_remove("RUSTC");
    // Tests that need real threads for long or other processes are marked
    // `#[cfg_attr(miri, ignore)]`; everything else runs under miri.
    c.env("MIRIFLAGS", "-Zmiri-strict-provenance -Zmiri-disable-isolation");
    step("miri tcpshm-ring", c)
}
