//! `cargo xtask powerloss --images N [--seed S]`: the long mode of the power-loss
//! exploration of `tcpshm-persist` (`crates/persist/tests/powerloss.rs`): random
//! scenarios (capacities, group-commit sizes, message sizes, kills, mode switches,
//! chained recoveries) until N torn images were opened and checked. The gate runs a
//! fixed set of a few thousand images; this runs as many as asked, in release mode.

use crate::run::{cargo, step};
use anyhow::Result;

/// Options of `cargo xtask powerloss`.
#[derive(clap::Args)]
pub struct Args {
    /// Torn images to generate and check.
    #[arg(long, default_value_t = 200_000)]
    pub images: u64,
    /// Seed of the scenario generator (a run is reproducible from its seed).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs the exploration; fails on the first image that opens wrong or is refused.
pub fn run(args: Args) -> Result<()> {
    let mut c = cargo();
    c.args(["test", "--release", "-p", "tcpshm-persist", "--test", "powerloss", "torn_images", "--", "--nocapture"]);
    c.env("TCPSHM_POWERLOSS_IMAGES", args.images.to_string());
    if let Some(seed) = args.seed {
        c.env("TCPSHM_POWERLOSS_SEED", seed.to_string());
    }
    step(&format!("power-loss exploration, {} images", args.images), c)
}
