//! `tcpshm reset` and `tcpshm rm`: one session's files, refused while in use.

use crate::session::{resolve, Session};
use crate::{render, Common, SessionArg};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tcpshm_persist::Store;

/// What to do with the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum What {
    /// Empty the store (epoch kept), remove the shared-memory file.
    Reset,
    /// Remove both.
    Remove,
}

pub(crate) fn run(c: &Common, arg: &SessionArg, what: What) -> Result<ExitCode> {
    let shm = c.shm()?;
    let (dir, local, remote) = resolve(arg)?;
    let s = Session::read(&dir, local, remote, &shm);
    let store = s.files.store.clone();
    let store_exists = std::fs::symlink_metadata(&store).is_ok();
    let shm_path = s.files.shm.clone().filter(|p| std::fs::symlink_metadata(p).is_ok());
    if !store_exists && shm_path.is_none() {
        bail!("{}: no such session (no store, no shared-memory file)", store.display());
    }
    if let Some(why) = s.in_use() {
        bail!("{}: refused: the session is {why}; stop that process first", store.display());
    }
    if what == What::Reset && store_exists {
        // A store that does not open cannot be emptied: say so before touching anything.
        if let Err(e) = &s.summary {
            bail!("{e} (cannot reset it; `tcpshm rm` removes it)");
        }
        if let Ok(r) = Store::check(&store) {
            if r.verdict.is_damaged() {
                bail!("{}: {} (cannot reset it; `tcpshm rm` removes it)", store.display(), r.verdict);
            }
        }
    }
    // What the session held, as its files say (the store and the shared-memory rings).
    let (queued, consumed) = (s.queued(), s.consumed());
    let mut shm_removed: Option<PathBuf> = None;
    if let Some(p) = &shm_path {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some((server, client)) = shm.parse_file_name(name) else {
            bail!("{}: not a shared-memory file name of prefix {:?}", p.display(), shm.prefix());
        };
        if shm.remove(&server, &client)? {
            shm_removed = Some(p.clone());
        }
    }
    let mut dropped = None;
    if store_exists {
        match what {
            What::Reset => {
                if let Some(info) = Store::reset(&dir, local, remote, render::unix_now_ns())? {
                    dropped = Some(info);
                }
            }
            What::Remove => {
                Store::remove(&dir, local, remote)?;
            }
        }
    }
    let verb = match what {
        What::Reset => "reset",
        What::Remove => "removed",
    };
    if c.json {
        render::json(&json!({
            "action": match what { What::Reset => "reset", What::Remove => "rm" },
            "store": store,
            "store_existed": store_exists,
            "shm_removed": shm_removed,
            "dropped": queued,
            "consumed_before": consumed,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if store_exists {
        match (what, dropped, queued) {
            (What::Reset, Some(_), Some(q)) => println!(
                "reset {}: {q} queued message{} dropped; its numbers start again at 0",
                store.display(),
                if q == 1 { "" } else { "s" },
            ),
            _ => println!("{verb} {}", store.display()),
        }
    }
    if let Some(p) = shm_removed {
        println!("removed {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
