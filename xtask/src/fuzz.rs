//! `cargo xtask fuzz`: each cargo-fuzz target for a bounded time.

use crate::run::{probe, root, step};
use anyhow::{Context, Result};
use std::process::Command;

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Only this target (default: all targets of every fuzz package).
    pub target: Option<String>,
}

/// Fuzz packages: `crates/*/fuzz` directories.
fn fuzz_dirs() -> Result<Vec<std::path::PathBuf>> {
    let mut v = Vec::new();
    for krate in std::fs::read_dir(root().join("crates"))? {
        let dir = krate?.path().join("fuzz");
        if dir.join("Cargo.toml").exists() {
            v.push(dir);
        }
    }
    v.sort();
    Ok(v)
}

/// Runs the fuzzers.
pub fn run(args: Args) -> Result<()> {
    let mut has = Command::new("cargo");
    has.args(["+nightly", "fuzz", "--version"]);
    if !probe(has) {
        anyhow::bail!(
            "cargo-fuzz with a nightly toolchain is needed: \
             `rustup toolchain install nightly` and `cargo install cargo-fuzz`"
        );
    }
    let mut ran = 0;
    for dir in fuzz_dirs()? {
        let out = Command::new("cargo")
            .args(["+nightly", "fuzz", "list"])
            .current_dir(&dir)
            .output()
            .context("cargo fuzz list")?;
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(out.status.success(), "`cargo fuzz list` failed in {}", dir.display());
        for target in list.lines().map(str::trim).filter(|t| !t.is_empty()) {
            if args.target.as_deref().is_some_and(|t| t != target) {
                continue;
            }
            // The working corpus (written to, git-ignored) first, then the checked-in
            // seeds (`fuzz/seeds/<target>`: valid inputs that get the fuzzer past the
            // magic numbers at once), read only.
            let corpus = dir.join("corpus").join(target);
            std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
            let mut c = Command::new("cargo");
            c.current_dir(&dir).args(["+nightly", "fuzz", "run", target]).arg(&corpus);
            let seeds = dir.join("seeds").join(target);
            if seeds.is_dir() {
                c.arg(&seeds);
            }
            c.args(["--", &format!("-max_total_time={}", args.seconds)]);
            step(&format!("fuzz {target} ({}s)", args.seconds), c)?;
            ran += 1;
        }
    }
    anyhow::ensure!(ran > 0, "no fuzz target matched (targets come from `cargo fuzz list` in crates/*/fuzz)");
    Ok(())
}
