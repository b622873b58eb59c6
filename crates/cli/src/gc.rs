//! `tcpshm gc [DIR...]`: what can go, and why — a dry run unless `--yes`.
//!
//! Candidates, each removed only if no live process holds it:
//! * a counters file whose server is gone (its lock is free);
//! * in a storage directory: a session of an earlier server name (another name than
//!   the current one: `--server`, or the live server serving the directory) — its
//!   store and its shared-memory file; no client resumes it (a client that logs in
//!   to the new name drops its session with the old one);
//! * an empty session: nothing was ever pushed or consumed in it, and it has no
//!   shared-memory file (e.g. left by a refused first login) — removing it changes
//!   nothing for either side;
//! * a shared-memory file of one of the directory's names that belongs to none of its
//!   sessions (its store was removed, or its client now logs in to another server).

use crate::ls::{live_servers, orphans};
use crate::session::Session;
use crate::{render, Common};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tcpshm_persist::Store;
use tcpshm_proto::Name;
use tcpshm_stats::StatsReader;
use tcpshm_transport_shm::{ShmDir, Side};

/// What removing a candidate means.
enum Action {
    Session { dir: PathBuf, local: Name, remote: Name, shm: Option<(PathBuf, Name, Name)> },
    Shm { server: Name, client: Name },
    Stats,
}

struct Candidate {
    path: PathBuf,
    why: String,
    /// Why it cannot go now (a live process holds it).
    blocked: Option<String>,
    action: Action,
}

pub(crate) fn run(c: &Common, dirs: &[PathBuf], server: Option<&str>, apply: bool) -> Result<ExitCode> {
    let shm = c.shm()?;
    let server = match server {
        Some(s) => Some(Name::new(s).with_context(|| format!("--server {s:?} is not a valid name"))?),
        None => None,
    };
    let mut cands = Vec::new();
    let mut notes = Vec::new();
    stats_candidates(c, &mut cands)?;
    for dir in dirs {
        dir_candidates(c, dir, &shm, server, &mut cands, &mut notes)?;
    }
    if dirs.is_empty() {
        notes.push("no storage directory given: only counters files were judged".to_string());
    }
    let mut results = Vec::new();
    let mut failed = 0;
    for cand in &cands {
        let outcome = match (&cand.blocked, apply) {
            (Some(_), _) | (None, false) => Ok(false),
            (None, true) => remove(cand, &shm).map(|()| true),
        };
        if outcome.is_err() {
            failed += 1;
        }
        results.push(outcome);
    }
    if c.json {
        let list: Vec<_> = cands
            .iter()
            .zip(&results)
            .map(|(cand, r)| {
                let also = match &cand.action {
                    Action::Session { shm, .. } => shm.as_ref().map(|s| s.0.clone()),
                    _ => None,
                };
                json!({
                    "path": cand.path,
                    "also": also,
                    "why": cand.why,
                    "kept": cand.blocked,
                    "removed": matches!(r, Ok(true)),
                    "error": r.as_ref().err().map(|e| format!("{e:#}")),
                })
            })
            .collect();
        render::json(&json!({ "dry_run": !apply, "candidates": list, "notes": notes }));
    } else {
        for (cand, r) in cands.iter().zip(&results) {
            let also = match &cand.action {
                Action::Session { shm: Some((p, ..)), .. } => format!(" and {}", p.display()),
                _ => String::new(),
            };
            match (&cand.blocked, r) {
                (Some(b), _) => println!("kept {}{also}: {} — but {b}", cand.path.display(), cand.why),
                (None, Ok(true)) => println!("removed {}{also}: {}", cand.path.display(), cand.why),
                (None, Ok(false)) => println!("would remove {}{also}: {}", cand.path.display(), cand.why),
                (None, Err(e)) => eprintln!("tcpshm: {}: {e:#}", cand.path.display()),
            }
        }
        for n in &notes {
            println!("note: {n}");
        }
        let n = cands.iter().filter(|c| c.blocked.is_none()).count();
        if cands.is_empty() {
            println!("nothing to collect");
        } else if !apply && n > 0 {
            println!("dry run: {n} to remove; run again with --yes to remove them");
        }
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn stats_candidates(c: &Common, out: &mut Vec<Candidate>) -> Result<()> {
    let stats = c.stats()?;
    // No counters directory: nothing to collect there.
    let Ok(paths) = stats.list() else { return Ok(()) };
    for path in paths {
        // A file that cannot be read (being created, foreign) is not judged.
        let Ok(r) = StatsReader::open(&path) else { continue };
        if !r.is_live().unwrap_or(true) {
            let h = r.header();
            out.push(Candidate {
                why: format!("counters file of server {} (pid {}), which is no longer running", h.server, h.pid),
                path,
                blocked: None,
                action: Action::Stats,
            });
        }
    }
    Ok(())
}

fn dir_candidates(
    c: &Common,
    dir: &Path,
    shm: &ShmDir,
    server: Option<Name>,
    out: &mut Vec<Candidate>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let sessions = Session::all(dir, shm)?;
    let mut current: BTreeSet<Name> = server.into_iter().collect();
    if current.is_empty() {
        current.extend(live_servers(c, dir).iter().map(|r| r.header().server));
    }
    if current.is_empty() {
        notes.push(format!(
            "{}: no live server serves it and no --server NAME was given: sessions of other server names are not judged",
            dir.display()
        ));
    }
    let names = current.iter().map(Name::to_string).collect::<Vec<_>>().join(", ");
    for s in &sessions {
        let Ok(summary) = &s.summary else { continue };
        let why = if s.side() == Some(Side::Server) && !current.is_empty() && !current.contains(&s.local) {
            Some(format!(
                "session of an earlier server name {} (the server here is {names}): no client resumes it",
                s.local
            ))
        } else if summary.is_pristine() && s.shm.is_none() {
            Some("empty session: nothing was ever pushed or consumed in it".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            let shm_file = s.files.shm.clone().filter(|_| s.shm.is_some()).and_then(|p| {
                let (server, client) = shm.parse_file_name(p.file_name()?.to_str()?)?;
                Some((p, server, client))
            });
            out.push(Candidate {
                path: s.files.store.clone(),
                why,
                blocked: s.in_use(),
                action: Action::Session { dir: dir.to_path_buf(), local: s.local, remote: s.remote, shm: shm_file },
            });
        }
    }
    for i in orphans(&sessions, shm)? {
        let moved = sessions
            .iter()
            .find(|s| s.local == i.client && s.side() == Some(Side::Client))
            .and_then(|s| s.summary.as_ref().ok()?.header.epoch);
        let why = match moved {
            Some(e) => format!("client {}'s session in {} is with server {e} now", i.client, dir.display()),
            None => format!("no session {}@{} in {}", i.server, i.client, dir.display()),
        };
        let attached: Vec<String> = [Side::Server, Side::Client]
            .into_iter()
            .filter(|&side| i.is_attached(side))
            .map(|side| format!("the {side} side is attached ({})", render::pid(i.pid(side))))
            .collect();
        out.push(Candidate {
            path: i.path.clone(),
            why,
            blocked: (!attached.is_empty()).then(|| attached.join(", ")),
            action: Action::Shm { server: i.server, client: i.client },
        });
    }
    Ok(())
}

fn remove(cand: &Candidate, shm: &ShmDir) -> Result<()> {
    match &cand.action {
        Action::Stats => {
            if !tcpshm_stats::remove_if_dead(&cand.path)? {
                anyhow::bail!("its server came back (or it is gone already): kept");
            }
        }
        Action::Shm { server, client } => {
            shm.remove(server, client)?;
        }
        Action::Session { dir, local, remote, shm: file } => {
            // The shared-memory file first: if it is taken meanwhile, the session stays whole.
            if let Some((_, server, client)) = file {
                shm.remove(server, client)?;
            }
            Store::remove(dir, *local, *remote)?;
        }
    }
    Ok(())
}
