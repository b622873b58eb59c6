//! A group: a set of sessions polled by exactly one user thread.

use crate::config::ServerConfig;
use crate::directory::Directory;
use crate::handler::{Conn, GroupHandler, Handled};
use crate::handoff::Handoff;
use crate::policy::GroupId;
use crate::sessions::{Sessions, Table};
use crate::slot::{Counts, Load, Shared, Slot};
use crate::stats::{EntryStats, GroupStats};
use crate::sync::Ordering;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tcpshm_connection::{write_refusal, Connection};
use tcpshm_proto::handshake::{Refusal, ServerRules};
use tcpshm_proto::login::{LoginStatus, TransportKind};
use tcpshm_proto::{CloseReason, Name, Nanos, Transport};
use tcpshm_ring::spsc;
use tcpshm_stats::StatsFile;
use tcpshm_transport_shm::Side;

// Producer handles of the group's sessions: an extension of `Group` that needs its
// entries, so a child module (in its own file).
#[path = "producer.rs"]
mod producer;

/// What a readiness event asks of a connection's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    No,
    /// Bytes arrived: read until a short read.
    Some,
    /// The peer closed its end (or the socket failed): read to the end.
    ToEnd,
}

/// One client's session in the group and its bookkeeping. It stays while the client
/// is away: its queue and numbers are the session's, and a reconnect finds them here.
pub(crate) struct Entry {
    pub(crate) client: Name,
    pub(crate) peer: std::net::SocketAddr,
    pub(crate) conn: Connection<TcpStream>,
    pub(crate) slot: Arc<Slot>,
    /// Registered with the group's poller (only while linked).
    registered: bool,
    /// Up at the end of the last poll (to report each disconnect once).
    up: bool,
    /// In the `ready` list for this poll.
    queued: bool,
    /// Its live counters record.
    stats: EntryStats,
}

impl Entry {
    pub(crate) fn new(
        client: Name,
        peer: std::net::SocketAddr,
        conn: Connection<TcpStream>,
        slot: Arc<Slot>,
        stats: EntryStats,
    ) -> Entry {
        Entry { client, peer, conn, slot, registered: false, up: false, queued: false, stats }
    }

    fn is_shm(&self) -> bool {
        self.conn.medium() == TransportKind::Shm && self.conn.rings().is_some()
    }
}

/// The sessions of one group, polled by one thread with [`Group::poll`].
///
/// `Send`: build it anywhere, move it to its thread. Logins reach it from the
/// [`Control`](crate::Control) through a lock-free single-producer queue.
pub struct Group<H> {
    id: GroupId,
    cfg: Arc<ServerConfig>,
    handler: H,
    inbox: spsc::Consumer<Handoff>,
    poller: Poll,
    events: Events,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_name: HashMap<Name, usize>,
    /// Entries to offer messages to / flush in this poll.
    ready: Vec<usize>,
    /// The previous poll's `ready` list, cleared, kept for its capacity.
    spare: Vec<usize>,
    /// Entries linked over shared memory (polled every time: rings have no readiness).
    shm: Vec<usize>,
    timer_cursor: usize,
    /// Live TCP data connections (readiness matters at every poll while > 0).
    tcp_up: usize,
    /// When a group with only shared-memory connections next checks readiness.
    next_epoll: Nanos,
    /// Tokens of this poll's readiness events (reused: no allocation per poll).
    tokens: Vec<(usize, Read, bool)>,
    load: Load,
    counts: Arc<Counts>,
    rules: ServerRules,
    stats: GroupStats,
    /// The homes of client names, shared with control.
    dir: Arc<Directory>,
    /// Entries pushed to (or closed) through [`Sessions`], to write out.
    touched: Vec<usize>,
    /// Entries whose session has a producers' queue: drained at every poll.
    producing: Vec<usize>,
}

impl<H: GroupHandler> Group<H> {
    pub(crate) fn new(
        id: GroupId,
        shared: Shared,
        handler: H,
        inbox: spsc::Consumer<Handoff>,
        load: Load,
        stats: Option<StatsFile>,
    ) -> std::io::Result<Group<H>> {
        let Shared { cfg, counts, dir } = shared;
        let limits = tcpshm_proto::login::Limits {
            max_message: cfg.connection.session.max_message,
            queue_capacity: cfg.connection.queue_bytes as u64,
        };
        let rules = ServerRules { name: cfg.name, tcp: cfg.enable_tcp, shm: cfg.enable_shm, limits };
        let stats = GroupStats::new(stats, &cfg);
        Ok(Group {
            id,
            cfg,
            handler,
            inbox,
            poller: Poll::new()?,
            events: Events::with_capacity(1024),
            entries: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            ready: Vec::new(),
            spare: Vec::new(),
            shm: Vec::new(),
            timer_cursor: 0,
            tcp_up: 0,
            next_epoll: 0,
            tokens: Vec::new(),
            load,
            counts,
            rules,
            stats,
            dir,
            touched: Vec::new(),
            producing: Vec::new(),
        })
    }

    /// This group's index.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The user's handler.
    pub fn handler(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Number of live connections in this group, including logins handed to it and
    /// not completed yet.
    pub fn live(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    /// The group's sessions, to push to any client of the group between polls from
    /// the thread that owns the group (see [`Sessions`]; `now` dates a session
    /// created). Over TCP the messages leave at the next [`poll`](Self::poll).
    pub fn sessions(&mut self, now: Nanos) -> Sessions<'_> {
        let table = Table::Whole { entries: &mut self.entries, free: &mut self.free, by_name: &mut self.by_name };
        Sessions::new(self.id, table, &mut self.touched, &self.cfg, &self.dir, &self.stats, now)
    }

    /// Does everything possible now: finishes handed-over logins, reads and writes
    /// ready sockets, offers messages to the handler (at most
    /// [`messages_per_poll`](ServerConfig::messages_per_poll) per connection), flushes,
    /// runs heartbeats and timeouts on a slice of the connections, refreshes a slice of
    /// the live counters records once per
    /// [`StatsSettings::interval`](crate::StatsSettings::interval), and reports
    /// disconnects. Never blocks; one `epoll_wait` with a zero timeout per call while
    /// the group has live TCP connections, one per
    /// [`readiness_interval`](ServerConfig::readiness_interval) or
    /// [`check_interval`](tcpshm_connection::ConnectionConfig::check_interval),
    /// whichever is longer, when it has only shared-memory ones.
    pub fn poll(&mut self, now: Nanos) {
        while let Some(h) = self.inbox.pop() {
            self.finish_login(h, now);
        }
        self.drain_producers();
        // The handler's own pushes (a handler without `on_poll` compiles to nothing
        // here), and those made through `sessions()` since the last poll: their
        // entries are served with the ready ones.
        self.on_poll(now);
        if !self.touched.is_empty() {
            self.mark_touched();
        }
        // With live TCP data connections, readiness is checked at every poll (it is
        // their latency). Shared-memory connections only have their control streams
        // in the poller (heartbeats, close), which each session also reads at its own
        // control check (`ConnectionConfig::check_interval`): readiness at that period
        // adds nothing sooner, and keeps `epoll_wait` off the SHM hot loop.
        let period = self.shm_readiness_period();
        let due = self.tcp_up > 0 || now >= self.next_epoll || self.next_epoll - now > period;
        if due && !self.entries.is_empty() {
            self.poll_readiness(now);
        }
        // Rings have no readiness: each shared-memory session is polled, offered its
        // messages and flushed right here, with no list in between.
        for k in 0..self.shm.len() {
            let i = self.shm[k];
            self.poll_shm(i, now);
        }
        // Other sessions the handlers pushed to while handling those messages.
        if !self.touched.is_empty() {
            self.mark_touched();
        }
        if !self.ready.is_empty() {
            self.serve_ready(now);
        }
        // The live counters: one comparison per poll; once per stats interval, a
        // slice of the records (out of line).
        let due = self.stats.due(now, self.entries.len());
        if !due.is_empty() {
            self.publish_stats(due, now);
        }
        self.timers(now);
    }

    /// Reads the poller (one `epoll_wait`, zero timeout) and does the reads and writes
    /// it reports; the entries become ready for [`serve_ready`](Self::serve_ready).
    #[inline(never)]
    fn poll_readiness(&mut self, now: Nanos) {
        self.next_epoll = now.saturating_add(self.shm_readiness_period());
        if let Err(e) = self.poller.poll(&mut self.events, Some(Duration::ZERO)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                // A broken epoll instance cannot recover; fall back to touching
                // every connection so nothing stalls.
                for i in 0..self.entries.len() {
                    self.mark(i);
                }
            }
        }
        self.tokens.clear();
        for ev in self.events.iter() {
            let ended = ev.is_read_closed() || ev.is_error();
            let read = if ended {
                Read::ToEnd
            } else if ev.is_readable() {
                Read::Some
            } else {
                Read::No
            };
            self.tokens.push((ev.token().0, read, ev.is_writable()));
        }
        for k in 0..self.tokens.len() {
            let (i, read, writable) = self.tokens[k];
            let Some(Some(e)) = self.entries.get_mut(i) else { continue };
            match read {
                Read::Some => _ = e.conn.on_readable(now),
                Read::ToEnd => _ = e.conn.on_read_closed(now),
                Read::No => {}
            }
            if writable {
                e.conn.on_writable(now);
            }
            self.mark(i);
        }
    }

    /// The handler's per-poll hook with every session of the group.
    #[inline]
    fn on_poll(&mut self, now: Nanos) {
        let table = Table::Whole { entries: &mut self.entries, free: &mut self.free, by_name: &mut self.by_name };
        let mut sessions = Sessions::new(self.id, table, &mut self.touched, &self.cfg, &self.dir, &self.stats, now);
        self.handler.on_poll(&mut sessions, now);
        sessions.settle();
    }

    /// How often a group without live TCP connections checks readiness.
    #[inline]
    fn shm_readiness_period(&self) -> Nanos {
        self.cfg.readiness_interval.max(self.cfg.connection.check_interval)
    }

    /// One shared-memory session: publishes, drains the store into the ring, does the
    /// control work at most once per check interval (no system call otherwise), offers
    /// its messages, flushes. A session that went down is settled with the ready list
    /// (`self.shm` cannot change while it is being walked).
    #[inline]
    fn poll_shm(&mut self, i: usize, now: Nanos) {
        let Some(Some(e)) = self.entries.get_mut(i) else { return };
        if e.conn.poll(now) {
            self.dispatch(i, now);
            let Some(Some(e)) = self.entries.get_mut(i) else { return };
            if e.conn.wants_write() {
                e.conn.on_writable(now);
            }
            if e.conn.is_connected() {
                return;
            }
        }
        self.mark(i);
    }

    /// Offers messages to the entries readiness (or a failure) marked, flushes what
    /// the handlers pushed, reports disconnects.
    #[inline(never)]
    fn serve_ready(&mut self, now: Nanos) {
        let spare = std::mem::take(&mut self.spare);
        let mut ready = std::mem::replace(&mut self.ready, spare);
        for &i in &ready {
            self.dispatch(i, now);
        }
        // Other sessions the handlers pushed to while handling messages.
        while let Some(i) = self.touched.pop() {
            if let Some(Some(e)) = self.entries.get_mut(i) {
                if e.conn.wants_write() {
                    e.conn.on_writable(now);
                }
            }
            self.settle(i);
        }
        for &i in &ready {
            if let Some(Some(e)) = self.entries.get_mut(i) {
                e.queued = false;
                if e.conn.wants_write() {
                    e.conn.on_writable(now);
                }
                if e.conn.has_buffered() && e.conn.is_connected() && !e.is_shm() {
                    // Left over (limit reached or handler kept one): next poll.
                    self.ready.push(i);
                    e.queued = true;
                }
            }
        }
        for &i in &ready {
            self.settle(i);
        }
        ready.clear();
        self.spare = ready;
    }

    /// Writes the live counters records of the entries in `due` (plain stores).
    #[inline(never)]
    fn publish_stats(&mut self, due: std::ops::Range<usize>, now: Nanos) {
        for i in due {
            if let Some(Some(e)) = self.entries.get_mut(i) {
                e.stats.publish(e.client, self.id, &e.conn, now);
            }
        }
    }

    fn mark_touched(&mut self) {
        while let Some(i) = self.touched.pop() {
            self.mark(i);
        }
    }

    fn mark(&mut self, i: usize) {
        if let Some(Some(e)) = self.entries.get_mut(i) {
            if !e.queued {
                e.queued = true;
                self.ready.push(i);
            }
        }
    }

    /// Offers up to `messages_per_poll` messages of entry `i` to the handler.
    fn dispatch(&mut self, i: usize, now: Nanos) {
        // The entry apart from the others, so the handler reaches both.
        let (head, rest) = self.entries.split_at_mut(i);
        let Some((Some(e), tail)) = rest.split_first_mut() else { return };
        if !e.conn.is_connected() {
            return;
        }
        if e.conn.read_more() {
            // A read stopped at the budget: with edge-triggered readiness no new
            // event would come for those bytes.
            e.conn.on_readable(now);
        }
        let mut close = None;
        for _ in 0..self.cfg.messages_per_poll {
            let Some((msg, send)) = e.conn.front_split() else { break };
            let table = Table::Around { head: &mut *head, tail: &mut *tail, hole: i, by_name: &self.by_name };
            let others = Sessions::new(self.id, table, &mut self.touched, &self.cfg, &self.dir, &self.stats, now);
            let mut conn = Conn {
                client: e.client,
                peer: e.peer,
                group: self.id,
                send,
                close: &mut close,
                eager: false,
                connected: true,
                others: Some(others),
            };
            let handled = self.handler.on_message(&mut conn, msg);
            if let Some(others) = &mut conn.others {
                others.settle();
            }
            drop(conn);
            if handled == Handled::Keep || close.is_some() {
                if handled == Handled::Pop {
                    e.conn.pop();
                }
                break;
            }
            e.conn.pop();
        }
        if let Some(text) = close {
            e.conn.close(CloseReason::RemoteRequested { code: tcpshm_proto::close::CloseCode::REQUESTED, text });
        }
    }

    /// Heartbeats and timeouts for a slice of the TCP connections, so a poll costs
    /// O(connections / 64) here, not O(connections), and each connection is still
    /// checked every 64 polls. (Shared-memory connections do theirs in their poll.)
    fn timers(&mut self, now: Nanos) {
        let n = self.entries.len();
        if self.tcp_up == 0 || n == 0 {
            return;
        }
        let batch = n.div_ceil(64);
        for _ in 0..batch {
            let i = if self.timer_cursor < n { self.timer_cursor } else { 0 };
            self.timer_cursor = i + 1;
            if let Some(Some(e)) = self.entries.get_mut(i) {
                if e.up && !e.is_shm() {
                    e.conn.check_timers(now);
                    self.settle(i);
                }
            }
        }
    }

    /// Reports a connection that went down since the last look, once.
    fn settle(&mut self, i: usize) {
        let Some(Some(e)) = self.entries.get_mut(i) else { return };
        if e.up && !e.conn.is_connected() {
            e.up = false;
            if e.is_shm() {
                self.shm.retain(|&k| k != i);
            } else {
                self.tcp_up -= 1;
            }
            if e.registered {
                if let Some(s) = e.conn.stream_mut() {
                    let _ = self.poller.registry().deregister(s);
                }
                e.registered = false;
            }
            e.slot.free();
            self.load.fetch_sub(1, Ordering::Relaxed);
            self.counts.live.fetch_sub(1, Ordering::Relaxed);
            let reason = e.conn.close_reason().cloned().unwrap_or(CloseReason::RemoteClosed);
            e.stats.on_close(&reason);
            e.stats.publish(e.client, self.id, &e.conn, self.stats.now());
            self.handler.on_disconnected(&e.client, &reason);
        }
    }

    /// Completes a login handed over by control: the session's verdict, the reply,
    /// the link.
    fn finish_login(&mut self, h: Handoff, now: Nanos) {
        let Handoff { mut stream, peer, login, slot, claimed, at } = h;
        if !claimed && !self.supersede(&login.client, &slot, now) {
            let r = Refusal {
                status: LoginStatus::AlreadyLoggedIn,
                text: format!("client {} is already logged in", login.client),
            };
            write_refusal(&mut stream, self.cfg.name, &r);
            return;
        }
        let existing = self.by_name.get(&login.client).copied();
        let (i, created) = match existing {
            Some(i) => (i, false),
            None => match Connection::open_session(
                &self.cfg.storage_dir,
                self.cfg.name,
                login.client,
                Side::Server,
                login.transport,
                self.cfg.connection.clone(),
                at,
            ) {
                Ok(conn) => {
                    let created = conn.counters().next_seq == 0 && conn.counters().consumed == 0;
                    let entry = Entry::new(login.client, peer, conn, slot.clone(), self.stats.entry());
                    (self.insert(entry), created)
                }
                Err(e) => {
                    let r = Refusal { status: LoginStatus::StorageError, text: e.to_string() };
                    write_refusal(&mut stream, self.cfg.name, &r);
                    self.release(&slot);
                    return;
                }
            },
        };
        let req = login.request();
        let Some(e) = self.entries[i].as_mut() else { return };
        e.peer = peer;
        e.slot = slot.clone();
        match e.conn.accept(stream, &req, &self.rules, now) {
            Ok(()) => {}
            Err((refusal, mut stream)) => {
                write_refusal(&mut stream, self.cfg.name, &refusal);
                self.release(&slot);
                if created {
                    // A refused first login frees everything it claimed, including the
                    // store it created (an existing session's store is kept).
                    if let Some(e) = self.entries[i].take() {
                        let (store, _) = e.conn.into_parts();
                        let path = store.path().to_path_buf();
                        drop(store);
                        let _ = std::fs::remove_file(path);
                    }
                    self.free.push(i);
                } else {
                    self.by_name.insert(login.client, i);
                }
                return;
            }
        }
        self.by_name.insert(login.client, i);
        self.note_producers(i);
        let Some(e) = self.entries[i].as_mut() else { return };
        if let Some(s) = e.conn.stream_mut() {
            e.registered =
                self.poller.registry().register(s, Token(i), Interest::READABLE | Interest::WRITABLE).is_ok();
        }
        e.up = true;
        if e.is_shm() {
            self.shm.push(i);
        } else {
            self.tcp_up += 1;
        }
        slot.connected();
        e.stats.on_login(now, e.peer);
        e.stats.publish(e.client, self.id, &e.conn, now);
        // The load was raised when the login was claimed (by control, or by
        // `supersede`), so that the policy sees logins in flight.
        let mut close = None;
        let send = e.conn.sender();
        let mut conn = Conn {
            client: e.client,
            peer: e.peer,
            group: self.id,
            send,
            close: &mut close,
            eager: false,
            connected: true,
            others: None,
        };
        self.handler.on_logged_on(&mut conn);
        if let Some(text) = close {
            e.conn.close(CloseReason::RemoteRequested { code: tcpshm_proto::close::CloseCode::REQUESTED, text });
        }
        self.mark(i);
    }

    /// A login for a client whose slot looked connected: checks the connection it
    /// has — reads its socket, and for shared memory the client's lock — and if it is
    /// in fact dead, reports it and claims the slot for the new login. Returns whether
    /// the login may proceed.
    fn supersede(&mut self, client: &Name, slot: &Slot, now: Nanos) -> bool {
        if let Some(&i) = self.by_name.get(client) {
            if let Some(Some(e)) = self.entries.get_mut(i) {
                if e.up {
                    if e.is_shm() && matches!(e.conn.rings().map(|r| r.peer_alive()), Some(Ok(false))) {
                        e.conn.close(CloseReason::PeerDied);
                    } else {
                        // Read to the socket's end: a dead link's EOF may sit behind data.
                        _ = e.conn.on_read_closed(now);
                    }
                }
            }
            self.settle(i);
        }
        if !slot.claim() {
            return false;
        }
        self.counts.live.fetch_add(1, Ordering::Relaxed);
        self.load.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A failed login frees its claim; `counts.live` and the load were raised when
    /// it was claimed (by control, or by `supersede`).
    fn release(&self, slot: &Slot) {
        slot.free();
        self.counts.live.fetch_sub(1, Ordering::Relaxed);
        self.load.fetch_sub(1, Ordering::Relaxed);
    }

    fn insert(&mut self, e: Entry) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(e);
                i
            }
            None => {
                self.entries.push(Some(e));
                self.entries.len() - 1
            }
        }
    }
}
