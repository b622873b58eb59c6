//! `tcpshm stat`: a running server's live counters, refreshed in place like `top`.

use crate::{render, Common};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tcpshm_proto::close::CloseCode;
use tcpshm_proto::Name;
use tcpshm_stats::{SessionRecord, SessionState, StatsReader};

pub(crate) fn run(
    c: &Common,
    file: Option<&Path>,
    server: Option<&str>,
    once: bool,
    interval_ms: u64,
) -> Result<ExitCode> {
    let server = match server {
        Some(s) => Some(Name::new(s).with_context(|| format!("--server {s:?} is not a valid name"))?),
        None => None,
    };
    let tty = std::io::stdout().is_terminal();
    loop {
        let readers = sources(c, file, server)?;
        if !once && tty && !c.json {
            // Home and clear: the next table replaces this one, like top.
            print!("\x1b[H\x1b[2J");
        }
        show(c, &readers, once)?;
        std::io::stdout().flush()?;
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(interval_ms.max(10)));
    }
}

/// The counters files to show: the one given, or every live server's (of `server`).
fn sources(c: &Common, file: Option<&Path>, server: Option<Name>) -> Result<Vec<StatsReader>> {
    if let Some(f) = file {
        return Ok(vec![StatsReader::open(f)?]);
    }
    let dir = c.stats()?;
    let live: Vec<StatsReader> = dir
        .live()
        .with_context(|| format!("{}: cannot list the counters files", dir.dir().display()))?
        .into_iter()
        .filter(|r| server.is_none_or(|s| r.header().server == s))
        .collect();
    if live.is_empty() {
        let which = server.map_or_else(String::new, |s| format!(" named {s}"));
        bail!(
            "{}: no running tcpshm server{which} publishes counters here (prefix {:?}; see --stats-dir, --stats-prefix)",
            dir.dir().display(),
            dir.prefix()
        );
    }
    Ok(live)
}

/// Prints one refresh of `readers` (`once`: a JSON document; else JSON lines).
pub(crate) fn show(c: &Common, readers: &[StatsReader], once: bool) -> Result<()> {
    if c.json {
        let servers: Vec<Value> = readers.iter().map(server_json).collect();
        let doc = json!({ "servers": servers });
        if once {
            render::json(&doc);
        } else {
            println!("{doc}");
        }
        return Ok(());
    }
    for (k, r) in readers.iter().enumerate() {
        if k > 0 {
            println!();
        }
        let h = r.header();
        let snap = r.read();
        let live = if r.is_live().unwrap_or(false) { "running" } else { "NOT RUNNING" };
        println!("server {}  pid {}  {live}  storage {}", h.server, h.pid, h.storage_dir.display());
        let s = &snap.server;
        println!(
            "  connections accepted {}  logins admitted {}  refused {}  timed out {}  pending {}  live {}  old sessions removed {}",
            s.accepted, s.admitted, s.refused, s.timed_out, s.pending, s.live, s.sessions_removed
        );
        if snap.without_record > 0 {
            println!("  ({} sessions not shown: the counters file is full)", snap.without_record);
        }
        let rows: Vec<Vec<String>> = snap.sessions.iter().map(row).collect();
        print!(
            "{}",
            render::table(
                &[
                    "CLIENT",
                    "STATE",
                    "TRANSPORT",
                    "QUEUED",
                    "BYTES",
                    "SENT",
                    "ACKED",
                    "RESENT",
                    "RECEIVED",
                    "POPPED",
                    "HEARTBEATS",
                    "IDLE",
                    "LOGINS",
                    "LAST CLOSE",
                ],
                &rows
            )
        );
    }
    Ok(())
}

fn transport(r: &SessionRecord) -> String {
    r.transport.map_or_else(|| "-".into(), |t| t.to_string())
}

/// How long nothing moved either way (messages, heartbeats), in the server's clock.
fn idle(r: &SessionRecord) -> Option<u64> {
    (r.last_activity > 0).then(|| r.now.saturating_sub(r.last_activity))
}

fn close(r: &SessionRecord) -> String {
    match &r.last_close {
        None => "-".into(),
        Some(c) => {
            let code = CloseCode(c.code);
            if c.text.is_empty() {
                code.to_string()
            } else {
                format!("{code}: {}", c.text)
            }
        }
    }
}

fn row(r: &SessionRecord) -> Vec<String> {
    vec![
        r.client.to_string(),
        r.state.to_string(),
        transport(r),
        r.queued.to_string(),
        r.queued_bytes.to_string(),
        r.sent.to_string(),
        r.acked.to_string(),
        r.resent.to_string(),
        r.received.to_string(),
        r.popped.to_string(),
        format!("{}/{}", r.heartbeats_sent, r.heartbeats_received),
        idle(r).filter(|_| r.state == SessionState::Up).map_or_else(|| "-".into(), render::ns),
        r.logins.to_string(),
        close(r),
    ]
}

fn server_json(r: &StatsReader) -> Value {
    let h = r.header();
    let snap = r.read();
    let s = &snap.server;
    let sessions: Vec<Value> = snap
        .sessions
        .iter()
        .map(|r| {
            json!({
                "client": r.client.as_str(),
                "state": r.state.to_string(),
                "transport": r.transport.map(|t| t.to_string()),
                "group": r.group,
                "peer": r.peer.as_str(),
                "now": r.now,
                "last_activity": r.last_activity,
                "idle_ns": idle(r),
                "logged_in_at": r.logged_in_at,
                "logins": r.logins,
                "pushed": r.pushed,
                "sent": r.sent,
                "resent": r.resent,
                "acked": r.acked,
                "received": r.received,
                "popped": r.popped,
                "heartbeats_sent": r.heartbeats_sent,
                "heartbeats_received": r.heartbeats_received,
                "next_seq": r.next_seq,
                "consumed": r.consumed,
                "peer_consumed": r.peer_consumed,
                "queued": r.queued,
                "queued_bytes": r.queued_bytes,
                "last_close": r.last_close.map(|c| json!({ "code": c.code, "name": CloseCode(c.code).to_string(), "text": c.text.as_str() })),
            })
        })
        .collect();
    json!({
        "counters": r.path(),
        "server": h.server.as_str(),
        "pid": h.pid,
        "storage_dir": h.storage_dir,
        "live": r.is_live().unwrap_or(false),
        "control": {
            "now": s.now, "accepted": s.accepted, "admitted": s.admitted, "refused": s.refused,
            "timed_out": s.timed_out, "pending": s.pending, "live": s.live,
            "sessions_removed": s.sessions_removed, "sweeps": s.sweeps,
        },
        "without_record": snap.without_record,
        "unreadable": snap.unreadable,
        "sessions": sessions,
    })
}
