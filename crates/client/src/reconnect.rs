//! Staying connected: a [`Client`] that logs in again by itself when its connection
//! goes down, driven by `poll(now)` like everything else.

use crate::client::Client;
use std::collections::VecDeque;
use std::net::SocketAddr;
use tcpshm_connection::{Batch, ConnectError, Connected};
use tcpshm_proto::login::{LoginStatus, TransportKind};
use tcpshm_proto::{CloseReason, Counters, Msg, Name, Nanos, SendError, Transport};

/// How [`Reconnect`] retries: at once, then after `first_retry`, doubling up to
/// `max_retry`; it gives up when the connection has been down for `give_up_after`.
///
/// ```
/// let cfg = tcpshm_client::ReconnectConfig::default();
/// assert_eq!((cfg.first_retry, cfg.max_retry, cfg.give_up_after), (10_000_000, 1_000_000_000, None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// Wait after the first failed attempt (ns). Default 10 ms.
    pub first_retry: Nanos,
    /// Longest wait between attempts (ns). Default 1 s.
    pub max_retry: Nanos,
    /// Stop trying once down this long (ns); `None` (the default): never.
    pub give_up_after: Option<Nanos>,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig { first_retry: 10_000_000, max_retry: 1_000_000_000, give_up_after: None }
    }
}

/// What happened to the connection, as [`Reconnect::next_event`] reports it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReconnectEvent {
    /// Logged in: the first time (`first`), or again after being down for `down_for`
    /// ns and `attempts` attempts. `resent` queued messages leave (again) from the
    /// server's consumed count on.
    Connected {
        /// The server.
        server: Name,
        /// The transport carrying the messages.
        transport: TransportKind,
        /// Messages queued here that leave (again) with this login.
        resent: u64,
        /// The first login of this helper.
        first: bool,
        /// How long the connection was down (0 for the first login).
        down_for: Nanos,
        /// Login attempts it took.
        attempts: u32,
    },
    /// The server came back under another name (a new trading day): the old session
    /// was dropped — `dropped` queued messages with it — and a fresh one started.
    /// Reported right after the [`ReconnectEvent::Connected`] of that login.
    SessionReset {
        /// The server's new name.
        server: Name,
        /// The name the session had.
        previous: Option<Name>,
        /// Queued messages dropped with the old session.
        dropped: u64,
    },
    /// The connection went down; the helper retries at once, then with backoff.
    Disconnected {
        /// Why.
        reason: CloseReason,
    },
    /// A login failed with an error worth retrying (no server yet, a timeout, a
    /// server that still sees the previous connection...); the next attempt is in
    /// `retry_in` ns.
    Retrying {
        /// The error.
        error: ConnectError,
        /// Attempts so far in this outage.
        attempt: u32,
        /// Wait before the next one (ns).
        retry_in: Nanos,
    },
    /// One side lost its state (a deleted store, a wiped `/dev/shm`, a process that
    /// kept an old mapping): the sequence numbers do not fit. The helper **stops** —
    /// a person or the application decides what to do; the library never resets a
    /// session silently.
    LostState {
        /// The error (`ConnectError::SeqMismatch`, or a refusal with
        /// `LoginStatus::SeqMismatch`).
        error: ConnectError,
    },
    /// A login failed with an error retrying cannot fix (the server refused our name,
    /// credential, version or limits; a local storage failure): the helper stops.
    Failed {
        /// The error.
        error: ConnectError,
    },
    /// Down for longer than [`ReconnectConfig::give_up_after`]: the helper stops.
    GaveUp {
        /// How long it was down (ns).
        down_for: Nanos,
        /// Attempts made.
        attempts: u32,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Never tried: the first poll tries (and dates the outage).
    Start,
    /// Logged in (as far as the last poll knows).
    Up,
    /// Down since `since`; next attempt at `at`, then wait `wait`.
    Down { since: Nanos, at: Nanos, wait: Nanos, attempts: u32 },
    /// Not trying (a fatal error, lost state, given up, or closed by the user).
    Stopped,
}

/// A [`Client`] that stays connected: its [`poll`](Transport::poll) logs in again
/// when the connection went down — at once, then with exponential backoff — with
/// [`ConnectError::is_retryable`]'s rules built in, and reports what happened as
/// [`ReconnectEvent`]s (a reset session and lost state included) instead of leaving each
/// application to write its own loop. Everything else is the client's: it is a
/// [`Transport`] too (push while down: messages wait in the session's queue and leave
/// with the next login).
///
/// A login blocks the `poll` that attempts it, each step bounded by
/// [`ClientConfig::connect_timeout`](crate::ClientConfig::connect_timeout); between
/// attempts `poll` costs a comparison. The helper reads no clock: `now` is the
/// caller's, and the backoff runs on it.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("tcpshm-reconnect-doc-{}", std::process::id()));
/// use tcpshm_client::{Client, ClientConfig, ReconnectEvent, Reconnect, ReconnectConfig, Transport, TransportKind};
///
/// let client = Client::open(ClientConfig::new("trader-1".parse().unwrap(), &dir), 0).unwrap();
/// let addr = "127.0.0.1:1".parse().unwrap(); // no server there
/// let mut link = Reconnect::new(client, addr, TransportKind::Tcp, ReconnectConfig::default());
/// // Queued while down; leaves with the first login.
/// link.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
/// link.push(1).unwrap();
/// assert!(!link.poll(0)); // one attempt, refused: retried in 10 ms
/// assert!(matches!(link.next_event(), Some(ReconnectEvent::Retrying { attempt: 1, retry_in: 10_000_000, .. })));
/// assert!(!link.poll(5_000_000)); // not due: no attempt
/// assert!(link.next_event().is_none());
/// assert_eq!(link.next_attempt(), Some(10_000_000));
/// # drop(link); std::fs::remove_dir_all(&dir).ok();
/// ```
pub struct Reconnect {
    client: Client,
    addr: SocketAddr,
    transport: TransportKind,
    cfg: ReconnectConfig,
    state: State,
    connected_once: bool,
    events: VecDeque<ReconnectEvent>,
}

impl std::fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnect")
            .field("addr", &self.addr)
            .field("transport", &self.transport)
            .field("state", &self.state)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Reconnect {
    /// Keeps `client` logged in to the server at `addr` over `transport`. The first
    /// attempt is made at the first [`poll`](Transport::poll) (or at once if the
    /// client is connected already).
    pub fn new(client: Client, addr: SocketAddr, transport: TransportKind, cfg: ReconnectConfig) -> Reconnect {
        let state = if client.is_connected() { State::Up } else { State::Start };
        let connected_once = client.is_connected();
        Reconnect { client, addr, transport, cfg, state, connected_once, events: VecDeque::new() }
    }

    /// The next event, oldest first (they queue up until taken).
    pub fn next_event(&mut self) -> Option<ReconnectEvent> {
        self.events.pop_front()
    }

    /// Whether the helper stopped trying ([`ReconnectEvent::LostState`], [`ReconnectEvent::Failed`],
    /// [`ReconnectEvent::GaveUp`], or a [`close`](Transport::close)): [`resume`](Self::resume)
    /// starts it again.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// When the next login attempt is due (`None` while connected or stopped): a
    /// caller with nothing else to do may sleep until then.
    pub fn next_attempt(&self) -> Option<Nanos> {
        match self.state {
            State::Down { at, .. } => Some(at),
            State::Start => Some(0),
            _ => None,
        }
    }

    /// Starts trying again (after it stopped, or at once if it is waiting), e.g.
    /// once the application dealt with lost state, or to log in over another
    /// transport.
    pub fn resume(&mut self, transport: TransportKind, now: Nanos) {
        self.transport = transport;
        if !self.client.is_connected() {
            self.state = State::Down { since: now, at: now, wait: self.cfg.first_retry, attempts: 0 };
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutably.
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Gives the client back.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// An all-or-nothing batch (see [`Client::batch`]).
    pub fn batch(&mut self) -> Result<Batch<'_>, SendError> {
        self.client.batch()
    }

    /// The front message and the send side together (see [`Client::front_split`]).
    pub fn front_split(&mut self) -> Option<(Msg<'_>, tcpshm_connection::Sender<'_>)> {
        self.client.front_split()
    }

    /// Notices a connection that went down, and logs in when an attempt is due.
    fn keep_up(&mut self, now: Nanos) {
        if let State::Start = self.state {
            self.state = State::Down { since: now, at: now, wait: self.cfg.first_retry, attempts: 0 };
        }
        match self.state {
            State::Up if !self.client.is_connected() => {
                let reason = self.client.close_reason().cloned().unwrap_or(CloseReason::RemoteClosed);
                self.events.push_back(ReconnectEvent::Disconnected { reason });
                // At once: a server restarting is found quickly.
                self.state = State::Down { since: now, at: now, wait: self.cfg.first_retry, attempts: 0 };
            }
            State::Down { since, at, wait, attempts } if now >= at => {
                if let Some(limit) = self.cfg.give_up_after {
                    if attempts > 0 && now.saturating_sub(since) >= limit {
                        self.events.push_back(ReconnectEvent::GaveUp { down_for: now - since, attempts });
                        self.state = State::Stopped;
                        return;
                    }
                }
                let attempts = attempts + 1;
                match self.client.connect(self.addr, self.transport, now) {
                    Ok(c) => self.connected(c, now.saturating_sub(since), attempts),
                    Err(error) if error.is_retryable() => {
                        self.events.push_back(ReconnectEvent::Retrying { error, attempt: attempts, retry_in: wait });
                        let next = wait.saturating_mul(2).min(self.cfg.max_retry.max(self.cfg.first_retry));
                        self.state = State::Down { since, at: now.saturating_add(wait), wait: next, attempts };
                    }
                    Err(error) => {
                        let lost = matches!(
                            error,
                            ConnectError::SeqMismatch(_)
                                | ConnectError::Refused { status: LoginStatus::SeqMismatch, .. }
                        );
                        self.events.push_back(if lost {
                            ReconnectEvent::LostState { error }
                        } else {
                            ReconnectEvent::Failed { error }
                        });
                        self.state = State::Stopped;
                    }
                }
            }
            _ => {}
        }
    }

    fn connected(&mut self, c: Connected, down_for: Nanos, attempts: u32) {
        let first = !self.connected_once;
        self.connected_once = true;
        self.state = State::Up;
        self.events.push_back(ReconnectEvent::Connected {
            server: c.server,
            transport: c.transport,
            resent: c.to_resend,
            first,
            down_for: if first { 0 } else { down_for },
            attempts,
        });
        if let Some(r) = c.reset {
            self.events.push_back(ReconnectEvent::SessionReset {
                server: c.server,
                previous: r.previous_epoch,
                dropped: r.dropped,
            });
        }
    }
}

impl Transport for Reconnect {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.client.alloc(len)
    }
    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.client.push(msg_type)
    }
    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.client.push_more(msg_type)
    }
    fn discard_staged(&mut self) -> u64 {
        self.client.discard_staged()
    }
    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        self.client.front()
    }
    #[inline]
    fn pop(&mut self) {
        self.client.pop()
    }
    /// Polls the client, then notices a connection that went down and logs in again
    /// when an attempt is due (see [`Reconnect`]). Returns whether it is connected.
    #[inline]
    fn poll(&mut self, now: Nanos) -> bool {
        if let State::Up = self.state {
            if self.client.poll(now) {
                return true;
            }
        }
        self.keep_up(now);
        self.client.is_connected()
    }
    /// Closes the connection and stops reconnecting ([`resume`](Reconnect::resume)
    /// starts again).
    fn close(&mut self, reason: CloseReason) {
        self.client.close(reason);
        self.state = State::Stopped;
    }
    fn is_connected(&self) -> bool {
        self.client.is_connected()
    }
    fn close_reason(&self) -> Option<&CloseReason> {
        self.client.close_reason()
    }
    fn counters(&self) -> Counters {
        self.client.counters()
    }
    fn max_payload(&self) -> usize {
        self.client.max_payload()
    }
    fn next_deadline(&self) -> Option<Nanos> {
        match self.state {
            State::Down { at, .. } => Some(at),
            State::Start => Some(0),
            _ => self.client.next_deadline(),
        }
    }
}
