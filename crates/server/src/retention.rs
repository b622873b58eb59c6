//! What happens to the sessions of a server's earlier names: the retention policy,
//! applied by the control thread at its first poll and then periodically.
//!
//! A server named per trading day (`Server20180714`) leaves yesterday's sessions in
//! its storage directory — stores `Server20180713@<client>.tcpshm`, possibly with
//! messages no client will ever fetch, and shared-memory files of 2 × the ring size
//! each. No client resumes them: a client that logs in to today's server drops its
//! session with yesterday's (the epoch rule). The policy decides when they go.
//!
//! Only sessions of **other names** than the server's are ever removed: removing one of
//! its own sessions would make that client's next login a lost state
//! (`SeqMismatch`), since the client keeps its side. Sessions held by a live process
//! (a store's lock, a shared-memory file's locks) are never touched, and a file that
//! cannot be read as a store is left for `tcpshm check`.
//!
//! **Age** is measured in the clock of the `now` given to [`Control::poll`](crate::Control::poll):
//! from the last login recorded in the store (`SessionWord::LastLogin`), or, for a
//! session that never had one, from the store's creation time (also the server's
//! `now`). Both were recorded by earlier server processes, so `RemoveAfter` needs a
//! clock that keeps counting across restarts — Unix time, e.g.
//! `SystemTime::now().duration_since(UNIX_EPOCH)` in nanoseconds, not the time since
//! this process started. A recorded time later than `now` counts as age 0 (kept).

use crate::config::ServerConfig;
use std::path::{Path, PathBuf};
use tcpshm_connection::SessionFiles;
use tcpshm_persist::{Holder, SessionWord, Store};
use tcpshm_proto::{Name, Nanos};
use tcpshm_transport_shm::{ShmDir, ShmError, ShmFile, Side};

/// What a server does with the sessions of its earlier names (see the module
/// documentation of `retention` in the crate source, and [`ServerConfig::retention`]).
///
/// ```
/// use tcpshm_server::{Retention, ServerConfig};
/// let mut cfg = ServerConfig::new("Server20180714".parse().unwrap(), "/var/lib/gw");
/// assert_eq!(cfg.retention, Retention::Keep);
/// // Yesterday's sessions go once nothing is left in them...
/// cfg.retention = Retention::RemoveDrained;
/// // ...or, undelivered messages included, a week after their last login.
/// cfg.retention = Retention::RemoveAfter { age: 7 * 86_400 * 1_000_000_000 };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Keep every session (the default): an operator removes them (`tcpshm gc`).
    #[default]
    Keep,
    /// Remove a session of an earlier name once it is drained: no message queued in
    /// its store and none unconsumed in its shared-memory rings.
    RemoveDrained,
    /// Remove a session of an earlier name whose last login is at least `age` old
    /// (in the clock of `now`), whatever it still holds.
    RemoveAfter {
        /// Nanoseconds since the last login.
        age: Nanos,
    },
}

/// Why a session was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// Nothing was left in it ([`Retention::RemoveDrained`]).
    Drained,
    /// Its last login was this long ago ([`Retention::RemoveAfter`]).
    Aged {
        /// Nanoseconds since its last login (or its creation).
        age: Nanos,
    },
}

/// A session the retention policy removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemovedSession {
    /// The server name it was with.
    pub server: Name,
    /// The client.
    pub client: Name,
    /// Its store (removed).
    pub store: PathBuf,
    /// Its shared-memory file, if it had one (removed).
    pub shm: Option<PathBuf>,
    /// Why.
    pub why: Removal,
}

/// The facts the policy decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) drained: bool,
    /// When the age counts from (the server's clock).
    pub(crate) since: Nanos,
}

impl Retention {
    /// The decision for an old session (a pure function: the tests pin it).
    pub(crate) fn decide(self, facts: Facts, now: Nanos) -> Option<Removal> {
        match self {
            Retention::Keep => None,
            Retention::RemoveDrained => facts.drained.then_some(Removal::Drained),
            Retention::RemoveAfter { age } => {
                let elapsed = now.saturating_sub(facts.since);
                (elapsed >= age).then_some(Removal::Aged { age: elapsed })
            }
        }
    }
}

/// The control thread's sweeper: when the next sweep is due, and what it removed.
pub(crate) struct Sweeper {
    policy: Retention,
    interval: Nanos,
    next: Nanos,
    pub(crate) removed: u64,
    pub(crate) sweeps: u64,
}

impl Sweeper {
    pub(crate) fn new(cfg: &ServerConfig) -> Sweeper {
        Sweeper { policy: cfg.retention, interval: cfg.retention_interval, next: 0, removed: 0, sweeps: 0 }
    }

    /// Sweeps if one is due (the first poll, then every interval).
    pub(crate) fn maybe_sweep(&mut self, cfg: &ServerConfig, now: Nanos) -> bool {
        if self.policy == Retention::Keep || (now < self.next && self.next - now <= self.interval) {
            return false;
        }
        self.sweep(cfg, now);
        true
    }

    /// Applies the policy to every old session now.
    pub(crate) fn sweep(&mut self, cfg: &ServerConfig, now: Nanos) -> Vec<RemovedSession> {
        self.next = now.saturating_add(self.interval);
        self.sweeps += 1;
        let removed = sweep(self.policy, cfg, now);
        self.removed += removed.len() as u64;
        removed
    }
}

/// One sweep of `cfg.storage_dir`.
fn sweep(policy: Retention, cfg: &ServerConfig, now: Nanos) -> Vec<RemovedSession> {
    let mut out = Vec::new();
    if policy == Retention::Keep {
        return out;
    }
    let Ok(stores) = Store::list(&cfg.storage_dir) else { return out };
    let Ok(shm) = ShmDir::new(cfg.connection.shm.dir.clone(), &cfg.connection.shm.prefix) else { return out };
    for entry in stores {
        if entry.local == cfg.name {
            continue;
        }
        if let Some(r) = consider(policy, &cfg.storage_dir, &shm, entry.local, entry.remote, now) {
            out.push(r);
        }
    }
    out
}

/// Decides on one old session and removes it if the policy says so and nobody holds
/// it. `None`: kept.
fn consider(
    policy: Retention,
    dir: &Path,
    shm: &ShmDir,
    server: Name,
    client: Name,
    now: Nanos,
) -> Option<RemovedSession> {
    let files = SessionFiles::new(dir, server, client, Side::Server, None, shm);
    let summary = Store::summary(&files.store).ok()?;
    // A store with an epoch is a client's (a server's has none): not ours to judge.
    if summary.header.epoch.is_some() || Store::holder(&files.store).ok()? != Holder::Nobody {
        return None;
    }
    let rings = match ShmFile::inspect(files.shm.as_deref()?) {
        Ok(i) => Some(i),
        Err(ShmError::NotFound(_)) => None,
        Err(_) => return None,
    };
    if rings.as_ref().is_some_and(|i| i.attached.iter().any(|&a| a)) {
        return None;
    }
    let store_drained = summary.queued() == 0
        && (summary.queued_bytes() == 0 || Store::inspect(&files.store).is_ok_and(|i| i.frames.is_empty()));
    let drained = store_drained && rings.as_ref().is_none_or(|i| i.is_drained());
    let since = match summary.session_word(SessionWord::LastLogin) {
        0 => summary.header.created_unix_ns,
        t => t,
    };
    let why = policy.decide(Facts { drained, since }, now)?;
    // The shared-memory file first: if it is taken meanwhile, the session stays whole.
    let shm_removed = match shm.remove(&server, &client) {
        Ok(true) => files.shm.clone(),
        Ok(false) => None,
        Err(_) => return None,
    };
    match Store::remove(dir, server, client) {
        Ok(true) => Some(RemovedSession { server, client, store: files.store, shm: shm_removed, why }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_decides_on_drained_and_age() {
        let drained = Facts { drained: true, since: 100 };
        let full = Facts { drained: false, since: 100 };
        assert_eq!(Retention::Keep.decide(drained, u64::MAX), None);
        assert_eq!(Retention::RemoveDrained.decide(drained, 0), Some(Removal::Drained));
        assert_eq!(Retention::RemoveDrained.decide(full, u64::MAX), None);
        let after = Retention::RemoveAfter { age: 50 };
        assert_eq!(after.decide(full, 149), None);
        assert_eq!(after.decide(full, 150), Some(Removal::Aged { age: 50 }));
        // A time recorded after `now` (another clock, or a clock that went back) is age 0.
        assert_eq!(after.decide(full, 10), None);
        assert_eq!(Retention::RemoveAfter { age: 0 }.decide(full, 10), Some(Removal::Aged { age: 0 }));
    }
}
