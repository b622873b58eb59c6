//! Running commands from the workspace root, with a clear line for each step.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The workspace root (the parent of this crate's manifest directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// A `cargo` command run from the workspace root.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs one named step; on failure the error says which step failed.
pub fn step(name: &str, mut cmd: Command) -> Result<()> {
    println!("\n==> [{name}] {}", describe(&cmd));
    let t = Instant::now();
    let status = cmd.status().with_context(|| format!("step `{name}`: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("step `{name}` FAILED ({status}) after {:.0?}", t.elapsed());
    }
    println!("==> [{name}] ok in {:.0?}", t.elapsed());
    Ok(())
}

/// Whether a command exits successfully (used for probing tools).
pub fn probe(mut cmd: Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn describe(cmd: &Command) -> String {
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())))
        .collect();
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let prog = cmd.get_program().to_string_lossy();
    let prog = if prog.ends_with("cargo") { "cargo".into() } else { prog };
    format!("{} {} {}", envs.join(" "), prog, args.join(" ")).trim().to_string()
}
