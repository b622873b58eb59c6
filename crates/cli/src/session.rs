//! One side of a session as the files show it: its store (summary, holder), its
//! shared-memory file (inspection), read without a lock.

use crate::render;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tcpshm_connection::SessionFiles;
use tcpshm_persist::{Holder, SessionWord, Store, Summary};
use tcpshm_proto::Name;
use tcpshm_transport_shm::{Direction, ShmDir, ShmError, ShmFile, ShmInspection, Side};

/// A session's store and shared-memory file, as read now.
pub(crate) struct Session {
    pub(crate) local: Name,
    pub(crate) remote: Name,
    pub(crate) files: SessionFiles,
    /// The store's header and words (or why it cannot be read).
    pub(crate) summary: Result<Summary, String>,
    pub(crate) holder: Holder,
    pub(crate) modified: Option<SystemTime>,
    /// The shared-memory file: `None` if there is none.
    pub(crate) shm: Option<Result<ShmInspection, String>>,
}

impl Session {
    /// Reads the session whose store is `local@remote` in `dir`.
    pub(crate) fn read(dir: &Path, local: Name, remote: Name, shm_dir: &ShmDir) -> Session {
        let store = dir.join(tcpshm_persist::file_name(&local, &remote));
        let summary = Store::summary(&store).map_err(|e| e.to_string());
        let epoch = summary.as_ref().ok().and_then(|s| s.header.epoch);
        let files = SessionFiles::of_store(dir, local, remote, epoch, shm_dir);
        let holder = Store::holder(&store).unwrap_or(Holder::Nobody);
        let modified = std::fs::symlink_metadata(&store).and_then(|m| m.modified()).ok();
        let shm = files.shm.as_ref().and_then(|p| match ShmFile::inspect(p) {
            Ok(i) => Some(Ok(i)),
            Err(ShmError::NotFound(_)) => None,
            Err(e) => Some(Err(e.to_string())),
        });
        Session { local, remote, files, summary, holder, modified, shm }
    }

    /// Every session in `dir`, by store file name, sorted.
    pub(crate) fn all(dir: &Path, shm_dir: &ShmDir) -> Result<Vec<Session>> {
        let stores = Store::list(dir).with_context(|| format!("{}: cannot list the sessions", dir.display()))?;
        let mut all: Vec<Session> =
            stores.into_iter().map(|e| Session::read(dir, e.local, e.remote, shm_dir)).collect();
        all.sort_by(|a, b| a.files.store.cmp(&b.files.store));
        Ok(all)
    }

    /// This side: a store with an epoch is a client's.
    pub(crate) fn side(&self) -> Option<Side> {
        let s = self.summary.as_ref().ok()?;
        Some(if s.header.epoch.is_some() { Side::Client } else { Side::Server })
    }

    /// The process holding the session: the store's lock holder, or the pid
    /// recorded by this side in the shared-memory file if its lock is held.
    pub(crate) fn live_pid(&self) -> Option<u32> {
        if let Holder::Process(p) = self.holder {
            return Some(p);
        }
        let side = self.side()?;
        match &self.shm {
            Some(Ok(i)) if i.is_attached(side) => Some(i.pid(side).unwrap_or(0)),
            _ => None,
        }
    }

    /// Whether any process holds the session (store lock or either side of its
    /// shared-memory file).
    pub(crate) fn in_use(&self) -> Option<String> {
        if let Holder::Process(p) = self.holder {
            return Some(format!("in use: its store is held by pid {p}"));
        }
        if let Some(Ok(i)) = &self.shm {
            for side in [Side::Server, Side::Client] {
                if i.is_attached(side) {
                    let pid = i.pid(side).map_or_else(String::new, |p| format!(" (pid {p})"));
                    return Some(format!("in use: the {side} side of {} is attached{pid}", i.path.display()));
                }
            }
        }
        None
    }

    /// The ring this side sends on, if it has a shared-memory file.
    fn outbound(&self) -> Option<&tcpshm_transport_shm::RingInspection> {
        let i = self.shm.as_ref()?.as_ref().ok()?;
        Some(i.ring(match self.side()? {
            Side::Server => Direction::ServerToClient,
            Side::Client => Direction::ClientToServer,
        }))
    }

    /// Messages this side pushed that the peer has not consumed: the session's numbers
    /// are the larger of the store's and the ring's records of each (as a login
    /// computes them), so a message held in both is counted once.
    pub(crate) fn queued(&self) -> Option<u64> {
        let s = self.summary.as_ref().ok()?;
        let (mut next, mut acked) = (s.live.next_seq_hint, s.live.acked);
        if let Some(r) = self.outbound() {
            acked = acked.max(r.consumed);
            next = next.max(r.frames.last().map_or(r.consumed, |f| f.seq + 1));
        }
        Some(next.saturating_sub(acked))
    }

    /// Bytes this side's queues hold (the store's ring and the outbound shared ring).
    pub(crate) fn queued_bytes(&self) -> Option<u64> {
        let s = self.summary.as_ref().ok()?;
        Some(s.queued_bytes() + self.outbound().map_or(0, |r| r.used()))
    }

    /// The peer's messages this side consumed (the larger record).
    pub(crate) fn consumed(&self) -> Option<u64> {
        let s = self.summary.as_ref().ok()?;
        let inbound = self.shm.as_ref().and_then(|i| i.as_ref().ok()).zip(self.side()).map(|(i, side)| {
            i.ring(match side {
                Side::Server => Direction::ClientToServer,
                Side::Client => Direction::ServerToClient,
            })
            .consumed
        });
        Some(s.live.consumed.max(inbound.unwrap_or(0)))
    }

    /// The transport the files show: shared memory if the session has its file; none
    /// (`-`) for a session that never carried anything (no login recorded, no message
    /// either way: a fresh or reset store); otherwise TCP.
    pub(crate) fn transport(&self) -> &'static str {
        if matches!(self.shm, Some(Ok(_))) {
            return "shm";
        }
        match &self.summary {
            Ok(s)
                if s.session_word(SessionWord::LastLogin) == 0 && s.live.next_seq_hint == 0 && s.live.consumed == 0 =>
            {
                "-"
            }
            _ => "tcp",
        }
    }

    pub(crate) fn json(&self) -> Value {
        let s = self.summary.as_ref().ok();
        json!({
            "store": self.files.store,
            "local": self.local.as_str(),
            "remote": self.remote.as_str(),
            "side": self.side().map(|s| s.to_string()),
            "epoch": s.and_then(|s| s.header.epoch).map(|e| e.to_string()),
            "error": self.summary.as_ref().err(),
            "capacity": s.map(|s| s.header.capacity),
            "transport": Some(self.transport()).filter(|t| *t != "-"),
            "queued": self.queued(),
            "queued_bytes": self.queued_bytes(),
            "consumed": self.consumed(),
            "next_seq": s.map(|s| s.live.next_seq_hint),
            "acked": s.map(|s| s.live.acked),
            "last_login": s.map(|s| s.session_word(SessionWord::LastLogin)),
            "created": s.map(|s| s.header.created_unix_ns),
            "modified_unix_ms": render::unix_ms(self.modified),
            "holder_pid": self.live_pid(),
            "in_use": self.in_use(),
            "shm": match &self.shm {
                None => Value::Null,
                Some(Err(e)) => json!({ "path": self.files.shm, "error": e }),
                Some(Ok(i)) => shm_json(i, false),
            },
        })
    }
}

/// A shared-memory inspection as JSON (with every message if `frames`).
pub(crate) fn shm_json(i: &ShmInspection, frames: bool) -> Value {
    let rings: Vec<Value> = i
        .rings
        .iter()
        .map(|r| {
            let mut v = json!({
                "direction": r.direction.to_string(),
                "capacity": r.capacity,
                "read": r.read,
                "write": r.write,
                "used": r.used(),
                "consumed": r.consumed,
                "unconsumed": r.unconsumed(),
                "fault": r.fault,
            });
            if frames {
                v["messages"] = r
                    .frames
                    .iter()
                    .map(|f| json!({"seq": f.seq, "ack": f.ack, "type": f.msg_type, "len": f.payload.len(), "preview": render::preview(&f.payload)}))
                    .collect();
            }
            v
        })
        .collect();
    json!({
        "path": i.path,
        "server": i.server.as_str(),
        "client": i.client.as_str(),
        "file_id": format!("{:016x}", i.file_id),
        "len": i.len,
        "logins": i.epoch,
        "server_pid": i.pid(Side::Server),
        "client_pid": i.pid(Side::Client),
        "server_attached": i.is_attached(Side::Server),
        "client_attached": i.is_attached(Side::Client),
        "rings": rings,
    })
}

/// The session named by a store path or by `--dir/--local/--remote`.
pub(crate) fn resolve(arg: &crate::SessionArg) -> Result<(PathBuf, Name, Name)> {
    if let Some(store) = &arg.store {
        let file = store.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let Some((local, remote)) = tcpshm_persist::parse_file_name(file) else {
            bail!("{}: not a store file name (<local>@<remote>{})", store.display(), tcpshm_persist::FILE_SUFFIX);
        };
        let dir = match store.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        return Ok((dir, local, remote));
    }
    let (Some(dir), Some(l), Some(r)) = (&arg.dir, &arg.local, &arg.remote) else {
        bail!("name the session: a store file, or --dir, --local and --remote");
    };
    let name = |s: &str, what| Name::new(s).with_context(|| format!("{what} {s:?} is not a valid name"));
    Ok((dir.clone(), name(l, "--local")?, name(r, "--remote")?))
}
