//! A group: a set of connections polled by exactly one user thread.

use crate::config::ServerConfig;
use crate::conn::Link;
use crate::handler::{Conn, GroupHandler, Handled};
use crate::handoff::Handoff;
use crate::pending::OwnedLogin;
use crate::policy::GroupId;
use crate::reply::{self, Numbers};
use crate::slot::{Counts, Load, Slot};
use crate::sync::Ordering;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tcpshm_persist::{Options, Store};
use tcpshm_proto::login::{LoginStatus, TransportKind};
use tcpshm_proto::session::{SeqRange, SessionConfig};
use tcpshm_proto::{CloseReason, Name, Nanos};
use tcpshm_ring::spsc;
use tcpshm_transport_shm::{Capacities, ShmConnection, ShmDir, ShmFile};
use tcpshm_transport_tcp::{PeerLogin, StreamConfig, TcpConnection};

/// How often a group whose connections are all shared memory checks its sockets.
const SHM_ONLY_EPOLL_INTERVAL: Nanos = 20_000;

/// One connection of the group and its bookkeeping.
struct Entry {
    client: Name,
    peer: std::net::SocketAddr,
    link: Link,
    slot: Arc<Slot>,
    /// Registered with the group's poller (only while linked).
    registered: bool,
    /// Up at the end of the last poll (to report each disconnect once).
    up: bool,
    /// In the `ready` list for this poll.
    queued: bool,
}

/// The connections of one group, polled by one thread with [`Group::poll`].
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
    by_name: HashMap<(Name, TransportKind), usize>,
    /// Entries to offer messages to / flush in this poll.
    ready: Vec<usize>,
    /// The previous poll's `ready` list, cleared, kept for its capacity.
    spare: Vec<usize>,
    /// SHM entries (polled every time: rings have no readiness).
    shm: Vec<usize>,
    timer_cursor: usize,
    /// Live TCP data connections (readiness matters at every poll while > 0).
    tcp_up: usize,
    /// When a group with only shared-memory connections next checks readiness.
    next_epoll: Nanos,
    /// Tokens of this poll's readiness events (reused: no allocation per poll).
    tokens: Vec<(usize, bool, bool)>,
    load: Load,
    counts: Arc<Counts>,
    shm_dir: ShmDir,
}

impl<H: GroupHandler> Group<H> {
    pub(crate) fn new(
        id: GroupId,
        cfg: Arc<ServerConfig>,
        handler: H,
        inbox: spsc::Consumer<Handoff>,
        load: Load,
        counts: Arc<Counts>,
    ) -> std::io::Result<Group<H>> {
        let shm_dir = ShmDir::new(cfg.shm_dir.clone(), &cfg.shm_prefix)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
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
            shm_dir,
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

    /// Does everything possible now: finishes handed-over logins, reads and writes
    /// ready sockets, offers messages to the handler (at most
    /// [`messages_per_poll`](ServerConfig::messages_per_poll) per connection), flushes,
    /// runs heartbeats and timeouts on a slice of the connections, and reports
    /// disconnects. Never blocks; one `epoll_wait` with a zero timeout per call while
    /// the group has live TCP connections, every 20 µs when it has only shared-memory ones.
    pub fn poll(&mut self, now: Nanos) {
        while let Some(h) = self.inbox.pop() {
            self.finish_login(h, now);
        }

        // With live TCP data connections, readiness is checked at every poll (it is their
        // latency). Shared-memory connections only have their control sockets in the
        // poller (heartbeats, close): checking those every few microseconds is plenty
        // and keeps an `epoll_wait` off every iteration of an SHM hot loop.
        let due = self.tcp_up > 0 || now >= self.next_epoll;
        if !self.entries.is_empty() && due {
            self.next_epoll = now.saturating_add(SHM_ONLY_EPOLL_INTERVAL);
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
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                self.tokens.push((ev.token().0, readable, ev.is_writable()));
            }
            for k in 0..self.tokens.len() {
                let (i, readable, writable) = self.tokens[k];
                let Some(Some(e)) = self.entries.get_mut(i) else { continue };
                if readable {
                    e.link.on_readable(now);
                }
                if writable {
                    e.link.on_writable(now);
                }
                self.mark(i);
            }
        }
        for k in 0..self.shm.len() {
            let i = self.shm[k];
            self.mark(i);
        }

        // Offer messages, then flush what the handlers pushed.
        // Fix: swap in the spare list instead of `mem::take`, which left `ready`
        // without capacity, so the first connection marked afterwards allocated a new
        // vector in (nearly) every poll: one heap allocation per message.
        let spare = std::mem::take(&mut self.spare);
        let mut ready = std::mem::replace(&mut self.ready, spare);
        for &i in &ready {
            self.dispatch(i, now);
        }
        for &i in &ready {
            if let Some(Some(e)) = self.entries.get_mut(i) {
                e.queued = false;
                if e.link.wants_write() {
                    e.link.on_writable(now);
                }
                if e.link.may_have_messages() && e.link.is_connected() {
                    // Left over (limit reached or handler kept one): next poll.
                    self.ready.push(i);
                    e.queued = true;
                }
            }
        }

        self.timers(now);
        for &i in &ready {
            self.settle(i);
        }
        ready.clear();
        self.spare = ready;
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
        let Some(Some(e)) = self.entries.get_mut(i) else { return };
        if !e.link.is_connected() {
            return;
        }
        e.link.pump(now);
        let mut close = None;
        for _ in 0..self.cfg.messages_per_poll {
            let Some((msg, send)) = e.link.front_split() else { break };
            let mut conn = Conn { client: e.client, peer: e.peer, group: self.id, send, close: &mut close };
            let handled = self.handler.on_message(&mut conn, msg);
            if handled == Handled::Keep || close.is_some() {
                if handled == Handled::Pop {
                    e.link.pop();
                }
                break;
            }
            e.link.pop();
        }
        if let Some(text) = close {
            e.link.close(CloseReason::RemoteRequested(text));
        }
    }

    /// Heartbeats and timeouts for a slice of the connections, so a poll costs
    /// O(connections / 64) here, not O(connections), and each connection is still
    /// checked every 64 polls.
    fn timers(&mut self, now: Nanos) {
        let n = self.entries.len();
        if n == 0 {
            return;
        }
        let batch = n.div_ceil(64);
        for _ in 0..batch {
            let i = self.timer_cursor % n;
            self.timer_cursor = i + 1;
            if let Some(Some(e)) = self.entries.get_mut(i) {
                if e.up {
                    e.link.check_timers(now);
                    self.settle(i);
                }
            }
        }
    }

    /// Reports a connection that went down since the last look, once.
    fn settle(&mut self, i: usize) {
        let Some(Some(e)) = self.entries.get_mut(i) else { return };
        if e.up && !e.link.is_connected() {
            e.up = false;
            if e.link.is_tcp() {
                self.tcp_up -= 1;
            }
            if e.registered {
                if let Some(s) = e.link.stream_mut() {
                    let _ = self.poller.registry().deregister(s);
                }
                e.registered = false;
            }
            e.slot.free();
            self.load.fetch_sub(1, Ordering::Relaxed);
            self.counts.live.fetch_sub(1, Ordering::Relaxed);
            let reason = e.link.close_reason().cloned().unwrap_or(CloseReason::RemoteClosed);
            self.handler.on_disconnected(&e.client, &reason);
        }
    }

    /// Completes a login handed over by control: sequence check, reply, link.
    fn finish_login(&mut self, mut h: Handoff, now: Nanos) {
        let key = (h.login.client, h.login.transport);
        if !h.claimed && !self.supersede(&h, now) {
            reply::refuse(
                &mut h.stream,
                self.cfg.name,
                LoginStatus::AlreadyLoggedIn,
                &format!("client {} is already logged in", h.login.client),
            );
            return;
        }
        let existing = self.by_name.get(&key).copied();
        let result = match h.login.transport {
            TransportKind::Tcp => self.finish_tcp(existing, h, now),
            TransportKind::Shm => self.finish_shm(existing, h, now),
        };
        if let Some((i, slot, peer)) = result {
            self.by_name.insert(key, i);
            let e = self.entries[i].as_mut().expect("just linked");
            e.peer = peer;
            if let Some(s) = e.link.stream_mut() {
                e.registered =
                    self.poller.registry().register(s, Token(i), Interest::READABLE | Interest::WRITABLE).is_ok();
            }
            e.up = true;
            if e.link.is_tcp() {
                self.tcp_up += 1;
            }
            slot.connected();
            // The load was raised when the login was claimed (by control, or by
            // `supersede`), so that the policy sees logins in flight.
            let mut close = None;
            let send = e.link.sender();
            let mut conn = Conn { client: e.client, peer: e.peer, group: self.id, send, close: &mut close };
            self.handler.on_logged_on(&mut conn);
            if let Some(text) = close {
                e.link.close(CloseReason::RemoteRequested(text));
            }
            self.mark(i);
        }
    }

    /// A login for a client whose slot looked connected: checks the connection it
    /// has (in any transport) — reads its socket, and for shared memory the client's
    /// lock — and if it is in fact dead, reports it and claims the slot for the new
    /// login. Returns whether the login may proceed.
    fn supersede(&mut self, h: &Handoff, now: Nanos) -> bool {
        for kind in [TransportKind::Tcp, TransportKind::Shm] {
            let Some(&i) = self.by_name.get(&(h.login.client, kind)) else { continue };
            if let Some(Some(e)) = self.entries.get_mut(i) {
                if e.up {
                    e.link.check_alive(now);
                }
            }
            self.settle(i);
        }
        if !h.slot.claim() {
            return false;
        }
        self.counts.live.fetch_add(1, Ordering::Relaxed);
        self.load.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Answers a shared-memory login: refused if a live client process holds the
    /// session's client side (`client_alive`; a client logging in again releases its
    /// own lock for the exchange, so this is another process), accepted otherwise.
    /// Returns whether the login goes on; a refusal or failed reply frees the claim.
    fn accept_shm(&self, h: &mut Handoff, client_alive: bool) -> bool {
        let server = self.cfg.name;
        if client_alive {
            let text = "a live client process holds this session's shared memory";
            reply::refuse(&mut h.stream, server, LoginStatus::AlreadyLoggedIn, text);
            self.release(&h.slot);
            return false;
        }
        if reply::send(&mut h.stream, server, LoginStatus::Ok, "", Numbers::default()).is_err() {
            self.release(&h.slot);
            return false;
        }
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

    fn finish_tcp(
        &mut self,
        existing: Option<usize>,
        mut h: Handoff,
        now: Nanos,
    ) -> Option<(usize, Arc<Slot>, std::net::SocketAddr)> {
        let server = self.cfg.name;
        let fresh_store;
        let i = match existing {
            Some(i) => {
                fresh_store = false;
                i
            }
            None => {
                let opts = Options { capacity: self.cfg.tcp_queue_bytes, durability: self.cfg.durability };
                match Store::open(&self.cfg.storage_dir, server, h.login.client, &opts, None, h.at) {
                    Ok((store, _outcome)) => {
                        fresh_store = store.next_seq() == 0 && store.consumed() == 0;
                        let conn = TcpConnection::new(store, stream_config(&self.cfg));
                        self.insert(Entry {
                            client: h.login.client,
                            peer: h.peer,
                            link: Link::Tcp(conn),
                            slot: h.slot.clone(),
                            registered: false,
                            up: false,
                            queued: false,
                        })
                    }
                    Err(e) => {
                        reply::refuse(&mut h.stream, server, LoginStatus::StorageError, &e.to_string());
                        self.release(&h.slot);
                        return None;
                    }
                }
            }
        };
        let Some(Entry { link: Link::Tcp(conn), .. }) = self.entries[i].as_mut() else {
            self.release(&h.slot);
            return None;
        };
        let peer = peer_numbers(&h.login, server);
        let mine = conn.login_state();
        let refusal = match conn.check_login(&peer) {
            Ok(_) => None,
            Err(m) => Some((LoginStatus::SeqMismatch, mismatch_text(&m, &h.login.client, &server))),
        };
        if let Some((status, text)) = refusal {
            reply::refuse(&mut h.stream, server, status, &text);
            self.release(&h.slot);
            if existing.is_none() && fresh_store {
                // A failed login frees everything it claimed, including a store it
                // created (an existing session's store is kept).
                if let Some(Entry { link: Link::Tcp(c), .. }) = self.entries[i].take() {
                    let store = c.into_store();
                    let path = store.path().to_path_buf();
                    drop(store);
                    let _ = std::fs::remove_file(path);
                }
                self.free.push(i);
            }
            return None;
        }
        let numbers =
            Numbers { consumed: mine.consumed, send_range: mine.send_range, queue_capacity: mine.queue_capacity };
        if reply::send(&mut h.stream, server, LoginStatus::Ok, "", numbers).is_err() {
            self.release(&h.slot);
            return None;
        }
        match conn.attach(h.stream, peer, now) {
            Ok(_) => Some((i, h.slot, h.peer)),
            Err(_) => {
                self.release(&h.slot);
                None
            }
        }
    }

    fn finish_shm(
        &mut self,
        existing: Option<usize>,
        mut h: Handoff,
        _now: Nanos,
    ) -> Option<(usize, Arc<Slot>, std::net::SocketAddr)> {
        let server = self.cfg.name;
        if let Some(i) = existing {
            let Some(Entry { link: Link::Shm(conn), .. }) = self.entries[i].as_mut() else {
                self.release(&h.slot);
                return None;
            };
            let alive = matches!(conn.peer_alive(), Ok(true));
            if !self.accept_shm(&mut h, alive) {
                return None;
            }
            // Still the shared-memory entry matched above (nothing ran in between).
            if let Some(Entry { link: Link::Shm(conn), .. }) = self.entries[i].as_mut() {
                conn.reattach(h.stream);
            }
            return Some((i, h.slot, h.peer));
        }
        let caps =
            Capacities { server_to_client: self.cfg.shm_queue_bytes, client_to_server: self.cfg.shm_queue_bytes };
        let file = match ShmFile::create_or_open(&self.shm_dir, &server, &h.login.client, caps) {
            Ok(f) => f,
            Err(e) => {
                reply::refuse(&mut h.stream, server, LoginStatus::StorageError, &e.to_string());
                self.release(&h.slot);
                return None;
            }
        };
        if !self.accept_shm(&mut h, matches!(file.peer_alive(), Ok(true))) {
            return None;
        }
        match ShmConnection::server(file, h.stream, shm_config(&self.cfg)) {
            Ok(conn) => {
                let i = self.insert(Entry {
                    client: h.login.client,
                    peer: h.peer,
                    link: Link::Shm(conn),
                    slot: h.slot.clone(),
                    registered: false,
                    up: false,
                    queued: false,
                });
                self.shm.push(i);
                Some((i, h.slot, h.peer))
            }
            Err(_) => {
                self.release(&h.slot);
                None
            }
        }
    }
}

/// The text of a sequence-mismatch refusal. Fix: it used to be the mismatch's own
/// text, written from the server's point of view ("the peer lost receive state ...
/// gone from our queue"), which the client reads the wrong way round (for it, "the
/// peer" is the server). Now it first says plainly which side lost its state.
fn mismatch_text(m: &tcpshm_proto::session::SeqMismatch, client: &Name, server: &Name) -> String {
    let who = if m.peer_lost_state() { format!("client {client}") } else { format!("server {server}") };
    format!("{who} lost its state; as the server sees it: {m}")
}

/// What the client's numbers mean for our session: if it last logged in to another
/// server (or never), it is about to start a fresh session with us, so its numbers
/// count as zero; our stored session must then be empty too, or the check refuses.
fn peer_numbers(login: &OwnedLogin, server: Name) -> PeerLogin {
    if login.last_server == Some(server) {
        PeerLogin { consumed: login.consumed, send_range: login.send_range, queue_capacity: login.queue_capacity }
    } else {
        PeerLogin { consumed: 0, send_range: SeqRange::default(), queue_capacity: login.queue_capacity }
    }
}

pub(crate) fn stream_config(cfg: &ServerConfig) -> StreamConfig {
    let session = SessionConfig {
        heartbeat_interval: cfg.heartbeat_interval,
        timeout: cfg.connection_timeout,
        ..SessionConfig::default()
    };
    StreamConfig { max_payload: cfg.max_message, session, ..StreamConfig::default() }
}

pub(crate) fn shm_config(cfg: &ServerConfig) -> tcpshm_transport_shm::ShmConfig {
    tcpshm_transport_shm::ShmConfig {
        heartbeat_interval: cfg.heartbeat_interval,
        timeout: cfg.connection_timeout,
        max_payload: cfg.max_message,
        ..Default::default()
    }
}
