//! `tcpshm inspect FILE`: one file, read-only.

use crate::render::{self, preview};
use crate::session::shm_json;
use crate::{stat, Common};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;
use tcpshm_persist::{Holder, Inspection, SessionWord, Store};
use tcpshm_stats::StatsReader;
use tcpshm_transport_shm::{ShmFile, ShmInspection, Side};

/// What kind of file a path names, by its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Store,
    Shm,
    Stats,
}

pub(crate) fn kind(path: &Path) -> Result<Kind> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(tcpshm_persist::FILE_SUFFIX) {
        Ok(Kind::Store)
    } else if name.ends_with(tcpshm_transport_shm::SUFFIX) {
        Ok(Kind::Shm)
    } else if name.ends_with(tcpshm_stats::SUFFIX) {
        Ok(Kind::Stats)
    } else {
        bail!(
            "{}: not a tcpshm file (a store ends in {}, a shared-memory file in {}, a counters file in {})",
            path.display(),
            tcpshm_persist::FILE_SUFFIX,
            tcpshm_transport_shm::SUFFIX,
            tcpshm_stats::SUFFIX
        )
    }
}

pub(crate) fn run(c: &Common, path: &Path, limit: usize) -> Result<ExitCode> {
    match kind(path)? {
        Kind::Store => {
            let i = Store::inspect(path)?;
            let holder = Store::holder(path).with_context(|| format!("{}: reading /proc/locks", path.display()))?;
            if c.json {
                render::json(&store_json(&i, holder, limit));
            } else {
                print!("{}", store_text(&i, holder, limit));
            }
        }
        Kind::Shm => {
            let i = ShmFile::inspect(path)?;
            if c.json {
                let mut v = shm_json(&i, true);
                truncate_messages(&mut v, limit);
                render::json(&v);
            } else {
                print!("{}", shm_text(&i, limit));
            }
        }
        Kind::Stats => {
            let r = StatsReader::open(path)?;
            stat::show(c, &[r], true)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn store_json(i: &Inspection, holder: Holder, limit: usize) -> Value {
    let h = &i.header;
    let l = &i.live;
    let words: serde_json::Map<String, Value> =
        SessionWord::ALL.iter().map(|w| (format!("{w:?}"), Value::from(l.session[w.index()]))).collect();
    json!({
        "kind": "store",
        "path": i.path,
        "local": h.local.as_str(),
        "remote": h.remote.as_str(),
        "epoch": h.epoch.map(|e| e.to_string()),
        "format": h.version,
        "capacity": h.capacity,
        "created": h.created_unix_ns,
        "holder_pid": match holder { Holder::Process(p) => Some(p), Holder::Nobody => None },
        "same_boot": i.same_session,
        "live": {
            "acked": l.acked, "consumed": l.consumed, "send_cursor": l.send_cursor,
            "next_seq_hint": l.next_seq_hint, "ring_read": l.ring_read, "ring_write": l.ring_write,
            "session_words": words,
        },
        "commits": i.commits.iter().map(|c| c.map(|c| json!({
            "number": c.number, "sync": c.sync, "acked": c.acked, "next_seq": c.next_seq,
            "consumed": c.consumed, "batch_bytes": c.batch_bytes,
        }))).collect::<Vec<_>>(),
        "verdict": i.check.verdict.to_string(),
        "damaged": i.check.verdict.is_damaged(),
        "findings": i.check.findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        "state": i.state.map(|s| json!({
            "first_unacked": s.first_unacked, "next_seq": s.next_seq, "consumed": s.consumed, "send_cursor": s.send_cursor,
        })),
        "queued": i.frames.len(),
        "messages": i.frames.iter().take(limit).map(|f| json!({
            "seq": f.seq, "ack": f.ack, "type": f.msg_type, "len": f.payload.len(), "preview": preview(&f.payload),
        })).collect::<Vec<_>>(),
    })
}

fn store_text(i: &Inspection, holder: Holder, limit: usize) -> String {
    let h = &i.header;
    let l = &i.live;
    let mut s = format!("store {}\n", i.path.display());
    let epoch = h.epoch.map_or("-".into(), |e| e.to_string());
    s += &format!(
        "  {}@{}  epoch {epoch}  format {}  capacity {} bytes  created {} (the owner's clock)\n",
        h.local, h.remote, h.version, h.capacity, h.created_unix_ns
    );
    s += &format!(
        "  held by: {}{}\n",
        match holder {
            Holder::Process(p) => format!("pid {p}"),
            Holder::Nobody => "nobody".into(),
        },
        if i.same_session { "" } else { " (written before the machine restarted)" }
    );
    s += &format!(
        "  words: acked {}  consumed {}  send cursor {}  next seq (hint) {}  ring read {} write {}\n",
        l.acked, l.consumed, l.send_cursor, l.next_seq_hint, l.ring_read, l.ring_write
    );
    let words: Vec<String> = SessionWord::ALL.iter().map(|w| format!("{w:?} {}", l.session[w.index()])).collect();
    s += &format!("  session words: {}\n", words.join("  "));
    for (slot, c) in i.commits.iter().enumerate() {
        match c {
            Some(c) => {
                s += &format!(
                    "  commit slot {slot}: #{} ({}) acked {} next seq {} consumed {} batch {} bytes\n",
                    c.number,
                    if c.sync { "sync" } else { "process" },
                    c.acked,
                    c.next_seq,
                    c.consumed,
                    c.batch_bytes
                )
            }
            None => s += &format!("  commit slot {slot}: none\n"),
        }
    }
    s += &format!("  check: {}\n", i.check.verdict);
    for f in &i.check.findings {
        s += &format!("    - {f}\n");
    }
    s += &format!("  queued messages: {}{}\n", i.frames.len(), shown(i.frames.len(), limit));
    for f in i.frames.iter().take(limit) {
        s += &format!(
            "    seq {:<6} type {:<5} len {:<6} ack {:<6} {}\n",
            f.seq,
            f.msg_type,
            f.payload.len(),
            f.ack,
            preview(&f.payload)
        );
    }
    s
}

fn shown(n: usize, limit: usize) -> String {
    if n > limit {
        format!(" (the first {limit} shown; --all for every one)")
    } else {
        String::new()
    }
}

fn shm_text(i: &ShmInspection, limit: usize) -> String {
    let mut s = format!("shared-memory file {}\n", i.path.display());
    s += &format!(
        "  server {}  client {}  file id {:016x}  {} bytes  logins {}\n",
        i.server, i.client, i.file_id, i.len, i.epoch
    );
    for side in [Side::Server, Side::Client] {
        let att = if i.is_attached(side) { "attached" } else { "not attached" };
        s += &format!("  {side}: {att}, recorded {}\n", render::pid(i.pid(side)));
    }
    for r in &i.rings {
        s += &format!(
            "  {} ring: capacity {}  read {} write {} ({} bytes used)  consumed {}  unconsumed {}{}\n",
            r.direction,
            r.capacity,
            r.read,
            r.write,
            r.used(),
            r.consumed,
            r.unconsumed(),
            shown(r.frames.len(), limit)
        );
        if let Some(f) = &r.fault {
            s += &format!("    DAMAGED: {f}\n");
        }
        for f in r.frames.iter().take(limit) {
            let stale = if f.seq < r.consumed { "  (consumed: a stale copy)" } else { "" };
            s += &format!(
                "    seq {:<6} type {:<5} len {:<6} ack {:<6} {}{stale}\n",
                f.seq,
                f.msg_type,
                f.payload.len(),
                f.ack,
                preview(&f.payload)
            );
        }
    }
    s
}

fn truncate_messages(v: &mut Value, limit: usize) {
    if let Some(rings) = v["rings"].as_array_mut() {
        for r in rings {
            if let Some(m) = r["messages"].as_array_mut() {
                m.truncate(limit);
            }
        }
    }
}
