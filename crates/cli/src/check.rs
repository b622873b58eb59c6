//! `tcpshm check DIR|FILE`: validate files as opening them would; exit status 3 on damage.

use crate::inspect::{kind, Kind};
use crate::render;
use crate::session::Session;
use crate::Common;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tcpshm_persist::Store;
use tcpshm_stats::StatsReader;
use tcpshm_transport_shm::{ShmError, ShmFile};

/// The exit status of a check that found damage.
pub(crate) const DAMAGE: u8 = 3;

/// What one file's check found.
struct Report {
    path: PathBuf,
    kind: &'static str,
    /// `Ok(verdict)` or `Err(damage)`.
    verdict: Result<String, String>,
    findings: Vec<String>,
}

pub(crate) fn run(c: &Common, path: &Path) -> Result<ExitCode> {
    let reports = if path.is_dir() {
        let shm = c.shm()?;
        let mut out = Vec::new();
        for s in Session::all(path, &shm)? {
            out.push(store(&s.files.store));
            if let Some(p) = &s.files.shm {
                if let Some(r) = shm_file(p, true) {
                    out.push(r);
                }
            }
        }
        out
    } else {
        std::fs::symlink_metadata(path).with_context(|| format!("{}: cannot check it", path.display()))?;
        match kind(path)? {
            Kind::Store => vec![store(path)],
            Kind::Shm => shm_file(path, false).into_iter().collect(),
            Kind::Stats => vec![stats(path)],
        }
    };
    let damaged = reports.iter().filter(|r| r.verdict.is_err()).count();
    if c.json {
        let files: Vec<Value> = reports
            .iter()
            .map(|r| {
                json!({
                    "path": r.path,
                    "kind": r.kind,
                    "ok": r.verdict.is_ok(),
                    "verdict": match &r.verdict { Ok(v) | Err(v) => v },
                    "findings": r.findings,
                })
            })
            .collect();
        render::json(&json!({ "path": path, "files": files, "damaged": damaged }));
    } else {
        for r in &reports {
            match &r.verdict {
                Ok(v) => println!("ok       {} {}: {v}", r.kind, r.path.display()),
                Err(e) => println!("DAMAGED  {} {}: {e}", r.kind, r.path.display()),
            }
            for f in &r.findings {
                println!("         - {f}");
            }
        }
        println!("{} file{} checked, {damaged} damaged", reports.len(), if reports.len() == 1 { "" } else { "s" });
    }
    Ok(if damaged > 0 { ExitCode::from(DAMAGE) } else { ExitCode::SUCCESS })
}

/// An error's text without the path it starts with (the report names the file).
fn reason(path: &Path, e: impl ToString) -> String {
    let e = e.to_string();
    let p = format!("{}: ", path.display());
    e.strip_prefix(&p).map(str::to_owned).unwrap_or(e)
}

fn store(path: &Path) -> Report {
    let (verdict, findings) = match Store::check(path) {
        Ok(r) if r.verdict.is_damaged() => (Err(r.verdict.to_string()), r.findings),
        Ok(r) => (Ok(r.verdict.to_string()), r.findings),
        Err(e) => (Err(reason(path, e)), Vec::new()),
    };
    Report {
        path: path.to_path_buf(),
        kind: "store",
        verdict,
        findings: findings.iter().map(ToString::to_string).collect(),
    }
}

/// `None` if the file does not exist and `optional`.
fn shm_file(path: &Path, optional: bool) -> Option<Report> {
    let verdict = match ShmFile::inspect(path) {
        Err(ShmError::NotFound(_)) if optional => return None,
        Err(e) => Err(reason(path, e)),
        Ok(i) => {
            let faults: Vec<String> =
                i.rings.iter().filter_map(|r| r.fault.as_ref().map(|f| format!("{} ring: {f}", r.direction))).collect();
            if faults.is_empty() {
                Ok(format!("valid, {} login{}", i.epoch, if i.epoch == 1 { "" } else { "s" }))
            } else {
                Err(faults.join("; "))
            }
        }
    };
    Some(Report { path: path.to_path_buf(), kind: "shm", verdict, findings: Vec::new() })
}

fn stats(path: &Path) -> Report {
    let verdict =
        StatsReader::open(path).map(|r| format!("counters of server {} (pid {})", r.header().server, r.header().pid));
    Report {
        path: path.to_path_buf(),
        kind: "stats",
        verdict: verdict.map_err(|e| e.to_string()),
        findings: Vec::new(),
    }
}
