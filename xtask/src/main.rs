//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! * `cargo xtask ci` — the whole test gate, in order, stopping at the first failure.
//! * `cargo xtask bench [echo|stream|scale|producers|persist|ring|all] [--quick]` — benchmarks, report and plots.
//! * `cargo xtask fuzz [--seconds N]` — bounded cargo-fuzz runs (nightly).
//! * `cargo xtask powerloss [--images N] [--seed S]` — the long power-loss exploration.

mod bench;
mod ci;
mod fuzz;
mod powerloss;
mod run;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tcpshm project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The whole test gate: fmt, clippy, tests, docs, loom, miri, bench smoke run.
    Ci(ci::Args),
    /// Run benchmarks and write `target/bench/report.{md,json}` and plots.
    Bench(bench::Args),
    /// Run each cargo-fuzz target for a bounded time (needs nightly and cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Open N torn images of the persist store (random power-loss scenarios).
    Powerloss(powerloss::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Ci(a) => ci::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Fuzz(a) => fuzz::run(a),
        Cmd::Powerloss(a) => powerloss::run(a),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
