//! The control part: accepts connections, reads and checks logins, asks the user's
//! login handler, and hands admitted logins to their group's thread.

use crate::config::ServerConfig;
use crate::directory::Directory;
use crate::handler::{LoginHandler, LoginInfo};
use crate::handoff::Handoff;
use crate::pending::{Failure, OwnedLogin, Pending, Progress};
use crate::policy::{GroupId, ShardPolicy};
use crate::retention::{RemovedSession, Sweeper};
use crate::slot::{Counts, Load, Shared, Slot};
use crate::stats::ControlStatsWriter;
use crate::sync::Ordering;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use std::sync::Arc;
use std::time::Duration;
use tcpshm_connection::write_refusal;
use tcpshm_proto::handshake::Refusal;
use tcpshm_proto::login::LoginStatus;
use tcpshm_proto::Nanos;
use tcpshm_ring::spsc;
use tcpshm_stats::{ServerRecord, ServerSlot};

/// Tokens below this are listeners; pending logins use `LISTENER_TOKENS + slot`.
const LISTENER_TOKENS: usize = 64;

/// A group as control sees it: where to send logins, and its load.
pub(crate) struct GroupLink {
    pub(crate) outbox: spsc::Producer<Handoff>,
    pub(crate) load: Load,
}

/// Counters of the control part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Logins admitted and handed to a group.
    pub admitted: u64,
    /// Logins refused (any reason).
    pub refused: u64,
    /// Pending logins dropped by the login timeout.
    pub timed_out: u64,
    /// Sessions of earlier server names removed by the retention policy.
    pub sessions_removed: u64,
}

/// The control part of a server: accept, login, admission. Poll it from one thread
/// (it may be the same thread as some or all groups).
pub struct Control<L, P> {
    cfg: Arc<ServerConfig>,
    poller: Poll,
    events: Events,
    /// Tokens of this poll's events (reused: no allocation per poll).
    tokens: Vec<usize>,
    listeners: Vec<TcpListener>,
    pending: Vec<Option<Pending>>,
    free: Vec<usize>,
    pending_count: usize,
    /// Every client seen in this process: its home group (sticky, so its session
    /// object is found again) and its slot; shared with the groups.
    dir: Arc<Directory>,
    groups: Vec<GroupLink>,
    loads: Vec<usize>,
    counts: Arc<Counts>,
    login: L,
    policy: P,
    stats: ControlStats,
    /// When the listeners and pending logins are next checked for readiness.
    next_check: Nanos,
    sweeper: Sweeper,
    published: ControlStatsWriter,
}

fn refusal(status: LoginStatus, text: impl Into<String>) -> Refusal {
    Refusal { status, text: text.into() }
}

impl<L: LoginHandler, P: ShardPolicy> Control<L, P> {
    pub(crate) fn new(
        shared: Shared,
        listeners: Vec<TcpListener>,
        groups: Vec<GroupLink>,
        login: L,
        policy: P,
        stats: Option<ServerSlot>,
    ) -> std::io::Result<Control<L, P>> {
        let Shared { cfg, counts, dir } = shared;
        let poller = Poll::new()?;
        let mut listeners = listeners;
        for (k, l) in listeners.iter_mut().enumerate() {
            poller.registry().register(l, Token(k), Interest::READABLE)?;
        }
        let n = groups.len();
        let (sweeper, published) = (Sweeper::new(&cfg), ControlStatsWriter::new(stats, &cfg));
        Ok(Control {
            cfg,
            poller,
            events: Events::with_capacity(256),
            tokens: Vec::new(),
            listeners,
            pending: Vec::new(),
            free: Vec::new(),
            pending_count: 0,
            dir,
            groups,
            loads: vec![0; n],
            counts,
            login,
            policy,
            stats: ControlStats::default(),
            next_check: 0,
            sweeper,
            published,
        })
    }

    /// The addresses the server listens on (with the ports the OS chose for port 0).
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Counters.
    pub fn stats(&self) -> ControlStats {
        ControlStats { sessions_removed: self.sweeper.removed, ..self.stats }
    }

    /// Applies [`ServerConfig::retention`](crate::ServerConfig::retention) now (the
    /// control thread also does at its first poll and every
    /// [`retention_interval`](crate::ServerConfig::retention_interval)) and returns
    /// the sessions it removed (e.g. to log them: the library never prints).
    pub fn sweep_sessions(&mut self, now: Nanos) -> Vec<RemovedSession> {
        self.sweeper.sweep(&self.cfg, now)
    }

    /// Logins waiting for their request.
    pub fn pending(&self) -> usize {
        self.pending_count
    }

    /// The user's login handler.
    pub fn login_handler(&mut self) -> &mut L {
        &mut self.login
    }

    /// Accepts, reads logins, admits or refuses them, and drops logins older than the
    /// login timeout. Never blocks. Readiness is checked (one `epoll_wait`) at most once
    /// per [`ServerConfig::readiness_interval`](crate::ServerConfig::readiness_interval)
    /// while a login is pending, and once per
    /// [`ServerConfig::accept_interval`](crate::ServerConfig::accept_interval)
    /// otherwise: a poll in between costs a comparison, so control can share a
    /// busy-polling thread with groups.
    pub fn poll(&mut self, now: Nanos) {
        let interval = self.check_interval();
        // Not due yet — unless the clock went backwards past a whole interval.
        if now < self.next_check && self.next_check - now <= interval {
            return;
        }
        self.check(now);
        self.next_check = now.saturating_add(self.check_interval());
    }

    /// The period of readiness checks: short while a login is in progress.
    fn check_interval(&self) -> Nanos {
        if self.pending_count > 0 {
            self.cfg.readiness_interval
        } else {
            self.cfg.accept_interval
        }
    }

    #[inline(never)]
    fn check(&mut self, now: Nanos) {
        if let Err(e) = self.poller.poll(&mut self.events, Some(Duration::ZERO)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.clear();
        tokens.extend(self.events.iter().map(|e| e.token().0));
        for &t in &tokens {
            if t < LISTENER_TOKENS {
                self.accept(t, now);
            } else {
                self.read(t - LISTENER_TOKENS, now);
            }
        }
        self.tokens = tokens;
        self.expire(now);
        let swept = self.sweeper.maybe_sweep(&self.cfg, now);
        if self.published.due(now, swept) {
            let r = self.server_record(now);
            self.published.write(&r);
        }
    }

    fn accept(&mut self, k: usize, now: Nanos) {
        loop {
            let Some(listener) = self.listeners.get(k) else { return };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    self.stats.accepted += 1;
                    let _ = stream.set_nodelay(true);
                    let live = self.counts.live.load(Ordering::Relaxed) + self.pending_count;
                    if live >= self.cfg.max_connections {
                        self.stats.refused += 1;
                        write_refusal(
                            &mut stream,
                            self.cfg.name,
                            &refusal(LoginStatus::ServerFull, "the server is full"),
                        );
                        continue;
                    }
                    let slot = self.free.pop().unwrap_or_else(|| {
                        self.pending.push(None);
                        self.pending.len() - 1
                    });
                    let mut p = Pending::new(stream, peer, now.saturating_add(self.cfg.login_timeout));
                    if self
                        .poller
                        .registry()
                        .register(&mut p.stream, Token(LISTENER_TOKENS + slot), Interest::READABLE)
                        .is_err()
                    {
                        self.free.push(slot);
                        continue;
                    }
                    self.pending[slot] = Some(p);
                    self.pending_count += 1;
                    // Edge-triggered: bytes may already be there.
                    self.read(slot, now);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Out of descriptors and the like: try again at the next poll.
                Err(_) => return,
            }
        }
    }

    fn take(&mut self, slot: usize) -> Option<Pending> {
        let mut p = self.pending.get_mut(slot)?.take()?;
        let _ = self.poller.registry().deregister(&mut p.stream);
        self.free.push(slot);
        self.pending_count -= 1;
        Some(p)
    }

    fn read(&mut self, slot: usize, now: Nanos) {
        // Move the pending login out while it is examined (the request borrows its
        // buffer while `admit` needs `&mut self`); it goes back if incomplete.
        let Some(mut p) = self.pending.get_mut(slot).and_then(Option::take) else { return };
        let peer = p.peer;
        let outcome = match p.on_readable() {
            Ok(Progress::More) => None,
            Ok(Progress::Request(r)) => {
                let info = LoginInfo {
                    client: r.client,
                    last_server: r.last_server,
                    transport: r.transport,
                    peer,
                    credential: r.credential,
                };
                Some(Ok((OwnedLogin::of(&r), self.admit(&info))))
            }
            Err(f) => Some(Err(f)),
        };
        let Some(outcome) = outcome else {
            self.pending[slot] = Some(p);
            return;
        };
        let _ = self.poller.registry().deregister(&mut p.stream);
        self.free.push(slot);
        self.pending_count -= 1;
        match outcome {
            Err(Failure::Gone) => {}
            Err(Failure::Refuse(r)) | Ok((_, Err(r))) => {
                self.stats.refused += 1;
                write_refusal(&mut p.stream, self.cfg.name, &r);
            }
            Ok((login, Ok((group, slot_state, claimed)))) => {
                let h = Handoff { stream: p.stream, peer, login, slot: slot_state, claimed, at: now };
                if claimed {
                    self.counts.live.fetch_add(1, Ordering::Relaxed);
                    // A group's load counts a login from its admission, not its
                    // completion: a burst of logins admitted before the groups catch
                    // up sees each other's placement (`LeastLoaded` spreads them).
                    self.groups[group].load.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(spsc::Full(mut h)) = self.groups[group].outbox.push(h) {
                    if h.claimed {
                        self.counts.live.fetch_sub(1, Ordering::Relaxed);
                        self.groups[group].load.fetch_sub(1, Ordering::Relaxed);
                        h.slot.free();
                    }
                    self.stats.refused += 1;
                    let r = refusal(LoginStatus::ServerFull, "the group's login queue is full");
                    write_refusal(&mut h.stream, self.cfg.name, &r);
                } else {
                    self.stats.admitted += 1;
                }
            }
        }
    }

    /// The user's decision and the connection table. On success the client's slot is
    /// claimed if it was free (`true`); if it looks connected (`false`), the group
    /// that holds the connection decides: a live connection refuses the login, a dead
    /// one not yet noticed (a client restarted at once) is replaced. The session's own
    /// rules (transport, epoch, limits, numbers) are the group's verdict.
    fn admit(&mut self, info: &LoginInfo<'_>) -> Result<(GroupId, Arc<Slot>, bool), Refusal> {
        for (g, l) in self.groups.iter().enumerate() {
            self.loads[g] = l.load.load(Ordering::Relaxed);
        }
        // The home of a client already routed here or opened by a group to push to it
        // (the lock is not held across the user's handler).
        let home = self.dir.lock().get(&info.client).map(|(g, _)| *g);
        let group = match home {
            // A client that was here before goes back to the group holding its session.
            Some(g) => g,
            None => {
                let suggested = self.policy.assign(&info.client, &self.loads);
                match self.login.on_login(info, suggested) {
                    Ok(g) => g,
                    Err(r) => return Err(refusal(LoginStatus::Rejected, r.text)),
                }
            }
        };
        if group >= self.groups.len() {
            return Err(refusal(
                LoginStatus::Rejected,
                format!("server misconfiguration: group {group} chosen, but there are {} groups", self.groups.len()),
            ));
        }
        if home.is_some() {
            // Returning client: the handler still decides (credentials may change).
            if let Err(r) = self.login.on_login(info, group) {
                return Err(refusal(LoginStatus::Rejected, r.text));
            }
        }
        // A group may have claimed the name meanwhile (to push to it): its home wins.
        let (group, slot) = self.dir.home(info.client, group);
        if slot.claim() {
            return Ok((group, slot, true));
        }
        if slot.is_connected() {
            return Ok((group, slot, false));
        }
        Err(refusal(LoginStatus::AlreadyLoggedIn, format!("a login of client {} is already in progress", info.client)))
    }

    fn server_record(&self, now: Nanos) -> ServerRecord {
        let mut r = ServerRecord::default();
        (r.now, r.accepted, r.admitted, r.refused) =
            (now, self.stats.accepted, self.stats.admitted, self.stats.refused);
        (r.timed_out, r.pending) = (self.stats.timed_out, self.pending_count as u64);
        r.live = self.counts.live.load(Ordering::Relaxed) as u64;
        (r.sessions_removed, r.sweeps) = (self.sweeper.removed, self.sweeper.sweeps);
        r
    }

    fn expire(&mut self, now: Nanos) {
        for slot in 0..self.pending.len() {
            let expired = matches!(&self.pending[slot], Some(p) if now >= p.deadline);
            if expired {
                if let Some(mut p) = self.take(slot) {
                    self.stats.timed_out += 1;
                    let r = refusal(LoginStatus::Malformed, "login not completed in time");
                    write_refusal(&mut p.stream, self.cfg.name, &r);
                }
            }
        }
    }
}
