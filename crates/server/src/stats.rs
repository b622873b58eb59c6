//! The server's live counters: each group publishes its sessions' records into the
//! server's counters file (`tcpshm-stats`), the control thread its own counts.
//!
//! Publishing is off the message path: a group checks one comparison per poll and,
//! once per [`StatsSettings::interval`], writes the records of a slice of its
//! sessions (at most [`SLICE`] per poll, so a group of thousands spreads the work)
//! with plain stores; a login and a disconnect publish their session at once. No
//! system call, no lock, no allocation per message.

use crate::config::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use tcpshm_connection::Connection;
use tcpshm_proto::close::CloseCode;
use tcpshm_proto::{CloseReason, Name, Nanos, Transport};
use tcpshm_stats::{
    LastClose, RecordSlot, ServerRecord, ServerSlot, SessionRecord, SessionState, ShortText, StatsFile,
};
use tcpshm_transport_tcp::ByteStream;

/// Records a group publishes per poll at most, when its records are due.
pub const SLICE: usize = 16;

/// Where and how often a server publishes its live counters (`tcpshm stat` reads
/// them), with documented defaults.
///
/// ```
/// let s = tcpshm_server::StatsSettings::default();
/// assert!(s.enabled);
/// assert_eq!((s.dir.to_str(), s.prefix.as_str(), s.records, s.interval), (Some("/dev/shm"), "tcpshm-stats-", 1024, 1_000_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSettings {
    /// Publish the counters. Default true.
    pub enabled: bool,
    /// Directory of the counters file. Default `/dev/shm` (memory: no disk writeback).
    pub dir: PathBuf,
    /// Prefix of its name (`<prefix><server>.<pid>.<n>.stats`). Default `tcpshm-stats-`.
    pub prefix: String,
    /// Sessions the file has room for (512 bytes each); sessions beyond are counted,
    /// not shown. Default 1024.
    pub records: usize,
    /// How often each session's record is refreshed. Default 1 ms.
    pub interval: Nanos,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            enabled: true,
            dir: PathBuf::from(tcpshm_stats::StatsDir::DEFAULT_DIR),
            prefix: tcpshm_stats::StatsDir::DEFAULT_PREFIX.to_owned(),
            records: 1024,
            interval: 1_000_000,
        }
    }
}

/// The server's counters file, if enabled: shared by the groups, and the control
/// thread's block. The storage directory is recorded as an absolute path (for
/// `tcpshm gc`, which asks which live server serves a directory).
pub(crate) fn create_file(
    cfg: &ServerConfig,
) -> Result<(Option<StatsFile>, Option<ServerSlot>), tcpshm_stats::StatsError> {
    if !cfg.stats.enabled {
        return Ok((None, None));
    }
    let dir = tcpshm_stats::StatsDir::new(&cfg.stats.dir, &cfg.stats.prefix)?;
    let storage = std::fs::canonicalize(&cfg.storage_dir).unwrap_or_else(|_| cfg.storage_dir.clone());
    let (file, slot) = StatsFile::create(&dir, cfg.name, &storage, cfg.stats.records)?;
    Ok((Some(file), Some(slot)))
}

/// A group's publisher: the file and when its records are next due.
pub(crate) struct GroupStats {
    file: Option<StatsFile>,
    interval: Nanos,
    next: Nanos,
    cursor: usize,
    /// The `now` of the group's last poll.
    now: Nanos,
}

/// One session's part: its record and what the connection does not count.
pub(crate) struct EntryStats {
    slot: Option<RecordSlot>,
    logins: u64,
    logged_in_at: Nanos,
    peer: ShortText<{ tcpshm_stats::layout::MAX_PEER_TEXT }>,
    last_close: Option<LastClose>,
    /// Messages and heartbeats that moved either way, as of the last record, and when
    /// that count last changed: a shared-memory session's messages do not touch its
    /// liveness clock (only its control stream does), so activity is seen here.
    moved: u64,
    active: Nanos,
}

impl GroupStats {
    pub(crate) fn new(file: Option<StatsFile>, cfg: &ServerConfig) -> GroupStats {
        GroupStats { file, interval: cfg.stats.interval, next: 0, cursor: 0, now: 0 }
    }

    /// The `now` of the group's last poll (for a record written outside `poll`'s
    /// flow, e.g. at a disconnect).
    pub(crate) fn now(&self) -> Nanos {
        self.now
    }

    /// A new session's part (a record, if the file has room).
    pub(crate) fn entry(&self) -> EntryStats {
        EntryStats {
            slot: self.file.as_ref().and_then(StatsFile::claim),
            logins: 0,
            logged_in_at: 0,
            peer: ShortText::default(),
            last_close: None,
            moved: 0,
            active: 0,
        }
    }

    /// The entries whose records to publish in this poll, out of `n` (none until due;
    /// a slice of at most [`SLICE`] from where the last poll stopped).
    #[inline]
    pub(crate) fn due(&mut self, now: Nanos, n: usize) -> std::ops::Range<usize> {
        self.now = now;
        if self.file.is_none() || now < self.next && self.next - now <= self.interval || n == 0 {
            return 0..0;
        }
        let from = self.cursor.min(n);
        let to = (from + SLICE).min(n);
        self.cursor = to;
        if to == n {
            self.cursor = 0;
            self.next = now.saturating_add(self.interval);
        }
        from..to
    }
}

impl EntryStats {
    /// A login completed.
    pub(crate) fn on_login(&mut self, now: Nanos, peer: SocketAddr) {
        self.logins += 1;
        self.logged_in_at = now;
        self.peer = ShortText::new(&peer.to_string());
    }

    /// The session went down for `reason`.
    pub(crate) fn on_close(&mut self, reason: &CloseReason) {
        self.last_close =
            Some(LastClose { code: CloseCode::for_reason(reason).0, text: ShortText::new(&reason.to_string()) });
    }

    /// Writes the session's record (nothing if it has none).
    #[inline]
    pub(crate) fn publish<S: ByteStream>(&mut self, client: Name, group: usize, conn: &Connection<S>, now: Nanos) {
        let Some(slot) = &mut self.slot else { return };
        let c = conn.counters();
        let mut r = SessionRecord::new(client);
        r.state = if conn.is_connected() { SessionState::Up } else { SessionState::Down };
        r.transport = (self.logins > 0).then(|| conn.medium());
        r.group = group as u32;
        r.peer = self.peer;
        r.now = now;
        let moved = c.sent + c.resent + c.received + c.heartbeats_received;
        if moved != self.moved {
            (self.moved, self.active) = (moved, now);
        }
        r.last_activity = conn.session().liveness().last_received().max(self.active);
        r.logged_in_at = self.logged_in_at;
        r.logins = self.logins;
        (r.pushed, r.sent, r.resent, r.acked, r.received, r.popped) =
            (c.pushed, c.sent, c.resent, c.acked, c.received, c.popped);
        (r.heartbeats_sent, r.heartbeats_received) = (c.heartbeats_sent, c.heartbeats_received);
        (r.next_seq, r.consumed, r.peer_consumed, r.queued) = (c.next_seq, c.consumed, c.peer_consumed, c.queued());
        let ring =
            conn.rings().map_or(0, |r| (r.capacities().server_to_client as u64).saturating_sub(r.tx.free_bytes()));
        r.queued_bytes = conn.store().queued_bytes() + ring;
        r.last_close = self.last_close;
        slot.publish(&r);
    }
}

/// The control thread's publisher.
pub(crate) struct ControlStatsWriter {
    slot: Option<ServerSlot>,
    interval: Nanos,
    next: Nanos,
}

impl ControlStatsWriter {
    pub(crate) fn new(slot: Option<ServerSlot>, cfg: &ServerConfig) -> ControlStatsWriter {
        ControlStatsWriter { slot, interval: cfg.stats.interval, next: 0 }
    }

    /// Whether the server block is due (or `force`); if so, counts it as written.
    #[inline]
    pub(crate) fn due(&mut self, now: Nanos, force: bool) -> bool {
        if self.slot.is_none() || (!force && now < self.next && self.next - now <= self.interval) {
            return false;
        }
        self.next = now.saturating_add(self.interval);
        true
    }

    /// Writes the server block.
    pub(crate) fn write(&mut self, r: &ServerRecord) {
        if let Some(slot) = &mut self.slot {
            slot.publish(r);
        }
    }
}
