//! `tcpshm ls DIR`: every session of a storage directory.

use crate::render;
use crate::session::{shm_json, Session};
use crate::Common;
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use tcpshm_stats::StatsReader;
use tcpshm_transport_shm::{ShmDir, ShmFile, ShmInspection, Side};

pub(crate) fn run(c: &Common, dir: &Path) -> Result<ExitCode> {
    let shm = c.shm()?;
    let sessions = Session::all(dir, &shm)?;
    let orphans = orphans(&sessions, &shm)?;
    let live = live_servers(c, dir);
    if c.json {
        render::json(&json!({
            "dir": dir,
            "sessions": sessions.iter().map(Session::json).collect::<Vec<_>>(),
            "orphan_shm": orphans.iter().map(|i| shm_json(i, false)).collect::<Vec<_>>(),
            "live_servers": live.iter().map(|r| json!({
                "server": r.header().server.as_str(),
                "pid": r.header().pid,
                "counters": r.path(),
            })).collect::<Vec<Value>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let num = |v: Option<u64>| v.map_or_else(|| "?".into(), |v| v.to_string());
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let epoch = s.summary.as_ref().ok().and_then(|s| s.header.epoch).map_or("-".into(), |e| e.to_string());
            let side = s.side().map_or("?".into(), |s| s.to_string());
            let held = match (&s.summary, s.live_pid()) {
                (Err(e), _) => format!("unreadable: {e}"),
                (_, p) => render::pid(p),
            };
            vec![
                format!("{}@{}", s.local, s.remote),
                side,
                epoch,
                s.transport().into(),
                num(s.queued()),
                num(s.queued_bytes()),
                num(s.consumed()),
                render::ago(s.modified),
                held,
            ]
        })
        .collect();
    println!("{}: {} session{}", dir.display(), sessions.len(), if sessions.len() == 1 { "" } else { "s" });
    if !rows.is_empty() {
        print!(
            "{}",
            render::table(
                &["SESSION", "SIDE", "EPOCH", "TRANSPORT", "QUEUED", "BYTES", "CONSUMED", "MODIFIED", "HELD BY"],
                &rows
            )
        );
    }
    for i in &orphans {
        let holders: Vec<String> = [Side::Server, Side::Client]
            .into_iter()
            .filter(|&s| i.is_attached(s))
            .map(|s| format!("{s} {}", render::pid(i.pid(s))))
            .collect();
        let held = if holders.is_empty() { "nobody attached".into() } else { holders.join(", ") };
        println!("shared-memory file without a store here: {} ({held})", i.path.display());
    }
    for r in &live {
        let h = r.header();
        println!("live server {} (pid {}), counters {}", h.server, h.pid, r.path().display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Shared-memory files of this directory's names that belong to none of its
/// sessions: a server's (named after a server store's local name) or a client's
/// (after a client store's local name).
pub(crate) fn orphans(sessions: &[Session], shm: &ShmDir) -> Result<Vec<ShmInspection>> {
    let servers: BTreeSet<_> = sessions.iter().filter(|s| s.side() == Some(Side::Server)).map(|s| s.local).collect();
    let clients: BTreeSet<_> = sessions.iter().filter(|s| s.side() == Some(Side::Client)).map(|s| s.local).collect();
    let known: BTreeSet<_> = sessions.iter().filter_map(|s| s.files.shm.clone()).collect();
    let mut out = Vec::new();
    let entries = match shm.list() {
        Ok(e) => e,
        // No shared-memory directory: no files.
        Err(_) => return Ok(out),
    };
    for e in entries {
        if known.contains(&e.path) || !(servers.contains(&e.server) || clients.contains(&e.client)) {
            continue;
        }
        if let Ok(i) = ShmFile::inspect(&e.path) {
            out.push(i);
        }
    }
    Ok(out)
}

/// The live servers whose storage directory is `dir` (from their counters files).
pub(crate) fn live_servers(c: &Common, dir: &Path) -> Vec<StatsReader> {
    let want = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Ok(stats) = c.stats() else { return Vec::new() };
    stats.live().unwrap_or_default().into_iter().filter(|r| r.header().storage_dir == want).collect()
}
