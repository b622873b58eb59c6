//! The client: a persistent session with one server, connected (or not) over TCP or
//! shared memory.

use crate::config::ClientConfig;
use crate::error::{ConnectError, OpenError};
use crate::login;
use mio::net::TcpStream;
use std::net::SocketAddr;
use tcpshm_persist::{EpochChange, Options, ResetInfo, Store};
use tcpshm_proto::frame::frame_len;
use tcpshm_proto::login::{LoginRequest, LoginStatus, TransportKind, MAX_REPLY_LEN};
use tcpshm_proto::session::SessionConfig;
use tcpshm_proto::{CloseReason, Counters, Msg, Name, Nanos, SendError, Transport};
use tcpshm_transport_shm::{ShmConfig, ShmConnection, ShmDir, ShmFile};
use tcpshm_transport_tcp::{PeerLogin, StreamConfig, TcpConnection};

/// What a successful [`Client::connect`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The server's name (the session's epoch).
    pub server: Name,
    /// The transport in use.
    pub transport: TransportKind,
    /// The server's name differs from the one this session last logged in to: the old
    /// session was dropped (its unacknowledged messages with it) and a fresh one
    /// started. This is the "server renamed for a new trading day" rule.
    pub reset: Option<ResetInfo>,
    /// Messages queued in this client that will be (re)sent to the server from its
    /// consumed count on (TCP).
    pub to_resend: u64,
    /// Messages waiting in the queue of the *other* transport (pushed while this client
    /// used it): they are not carried by this session and leave the next time the
    /// client connects over that transport. Usually 0; non-zero means the client
    /// switched transports with messages still queued.
    pub queued_elsewhere: u64,
}

/// A client session: a persistent send queue and consumed count (on disk, in
/// [`ClientConfig::storage_dir`]) that survive disconnects and restarts, and the
/// connection that carries them. It implements [`Transport`]: push while connected or
/// not, poll, front, pop.
///
/// ```no_run
/// use tcpshm_client::{Client, ClientConfig, TransportKind};
/// use tcpshm_proto::Transport;
///
/// let cfg = ClientConfig::new("trader-1".parse().unwrap(), "/tmp/tcpshm-client");
/// let mut client = Client::open(cfg, 0).unwrap();
/// client.connect("127.0.0.1:12345".parse().unwrap(), TransportKind::Tcp, 0).unwrap();
/// client.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
/// client.push(1).unwrap();
/// loop {
///     client.poll(now_ns());
///     if let Some(m) = client.front() {
///         println!("reply: {:?}", m.payload);
///         client.pop();
///         break;
///     }
/// }
/// # fn now_ns() -> u64 { 0 }
/// ```
pub struct Client {
    cfg: ClientConfig,
    /// The TCP connection; it owns the session store (also used, in shared-memory
    /// mode, to remember the server's name).
    tcp: TcpConnection,
    shm: Option<ShmConnection<TcpStream>>,
    mode: TransportKind,
    shm_dir: ShmDir,
}

impl Client {
    /// Opens (or creates) the session store `<name>@<service>` and returns a client
    /// that is not connected yet: pushes queue until [`connect`](Self::connect).
    /// `now` is recorded as the store's creation time if it is created.
    pub fn open(cfg: ClientConfig, now: Nanos) -> Result<Client, OpenError> {
        cfg.validate()?;
        let opts = Options { capacity: cfg.queue_bytes, durability: cfg.durability };
        let (store, _) = Store::open(&cfg.storage_dir, cfg.name, cfg.service, &opts, None, now)?;
        let shm_dir = ShmDir::new(cfg.shm_dir.clone(), &cfg.shm_prefix).map_err(|e| OpenError::Shm(e.to_string()))?;
        let tcp = TcpConnection::new(store, stream_config(&cfg));
        let mut client = Client { mode: cfg.transport, cfg, tcp, shm: None, shm_dir };
        if client.mode == TransportKind::Shm {
            // Map the rings of the last session (if there is one) so that pushes before
            // `connect` queue where the shared-memory session will read them.
            if let Some(server) = client.tcp.store().epoch() {
                match ShmFile::open(&client.shm_dir, &server, &client.cfg.name) {
                    Ok(file) => {
                        let conn = ShmConnection::offline(file, shm_config(&client.cfg))
                            .map_err(|e| OpenError::Shm(e.to_string()))?;
                        client.shm = Some(conn);
                    }
                    // No rings yet (the server creates them at the first login): pushes
                    // before `connect` are refused with a clear error, not misrouted.
                    Err(tcpshm_transport_shm::ShmError::NotFound(_)) => {}
                    Err(e) => return Err(OpenError::Shm(e.to_string())),
                }
            }
        }
        Ok(client)
    }

    /// The server this session last logged in to (`None`: never).
    pub fn last_server(&self) -> Option<Name> {
        self.tcp.store().epoch()
    }

    /// The transport of the current (or last) connection.
    pub fn transport(&self) -> TransportKind {
        self.mode
    }

    /// Logs in to the server at `addr` over `transport`, blocking at most
    /// [`ClientConfig::connect_timeout`] per step, and resumes the session: each side
    /// resends what the other has not consumed. A live connection is replaced.
    ///
    /// On error nothing is lost: queued messages stay queued; call again later (the
    /// `echo_client` example has a reconnect loop).
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        transport: TransportKind,
        now: Nanos,
    ) -> Result<Connected, ConnectError> {
        let mut stream = login::connect(addr, self.cfg.connect_timeout)?;
        let mine = self.tcp.login_state();
        if let Some(shm) = &mut self.shm {
            shm.close(CloseReason::Replaced);
            // The server refuses a shared-memory login while the client side's lock is
            // held by a live process; this process is the one logging in again, so it
            // lets go of the lock (not of the mapping: nothing queued is touched) until
            // the reply is in.
            let _ = shm.control().unlock_for_login();
        }
        let exchanged = self.exchange(&mut stream, transport, &mine);
        if let Some(shm) = &mut self.shm {
            if let Err(e) = shm.control().relock() {
                // Another process took this side meanwhile: this one must not use the
                // rings any more.
                self.shm = None;
                exchanged?;
                return Err(ConnectError::Shm(e.to_string()));
            }
        }
        let (server, peer) = exchanged?;
        let previous = self.tcp.store().epoch();
        let reset = self.switch_epoch(server, now)?;
        if let (Some(old), Some(_)) = (previous, reset) {
            // The old server's shared-memory file belongs to a dead epoch: remove it
            // (explicitly, and only it).
            self.shm = None;
            let _ = self.shm_dir.remove(&old, &self.cfg.name);
        }
        stream.set_read_timeout(None).map_err(|source| ConnectError::Io { op: "setsockopt", source })?;
        let stream = tcpshm_transport_tcp::tcp::from_std(stream)
            .map_err(|source| ConnectError::Io { op: "set non-blocking", source })?;
        self.mode = transport;
        match transport {
            TransportKind::Tcp => {
                let resume = self.tcp.attach(stream, peer, now).map_err(|e| match e {
                    tcpshm_transport_tcp::AttachError::SeqMismatch(m) => ConnectError::SeqMismatch(m.to_string()),
                    other => ConnectError::Storage(other.to_string()),
                })?;
                let queued_elsewhere = self.shm.as_ref().map_or(0, |c| c.counters().queue_depth);
                Ok(Connected { server, transport, reset, to_resend: resume.resend, queued_elsewhere })
            }
            TransportKind::Shm => {
                match &mut self.shm {
                    Some(shm) if shm.remote_name() == &server => shm.reattach(stream),
                    _ => {
                        let file = ShmFile::open(&self.shm_dir, &server, &self.cfg.name)
                            .map_err(|e| ConnectError::Shm(e.to_string()))?;
                        let conn = ShmConnection::client(file, stream, shm_config(&self.cfg))
                            .map_err(|e| ConnectError::Shm(e.to_string()))?;
                        self.shm = Some(conn);
                    }
                }
                let queued_elsewhere = self.tcp.counters().queue_depth;
                Ok(Connected { server, transport, reset, to_resend: 0, queued_elsewhere })
            }
        }
    }

    /// The login exchange: request, reply, status. Returns the server's name and
    /// numbers.
    fn exchange(
        &self,
        stream: &mut std::net::TcpStream,
        transport: TransportKind,
        mine: &tcpshm_transport_tcp::LoginInfo,
    ) -> Result<(Name, PeerLogin), ConnectError> {
        let req = LoginRequest {
            client: self.cfg.name,
            last_server: self.tcp.store().epoch(),
            transport,
            consumed: mine.consumed,
            send_range: mine.send_range,
            queue_capacity: mine.queue_capacity,
            credential: &self.cfg.credential,
        };
        login::send_request(stream, &req)?;
        let mut buf = [0u8; frame_len(MAX_REPLY_LEN)];
        let reply = login::read_reply(stream, &mut buf)?;
        if reply.status != LoginStatus::Ok {
            let text = reply.text.to_string();
            return Err(match reply.status {
                LoginStatus::SeqMismatch => ConnectError::SeqMismatch(text),
                status => ConnectError::Refused { status, text },
            });
        }
        Ok((reply.server, PeerLogin::from(&reply)))
    }

    /// Makes `server` the session's epoch; a different one resets the session.
    fn switch_epoch(&mut self, server: Name, now: Nanos) -> Result<Option<ResetInfo>, ConnectError> {
        match self.tcp.switch_epoch(server, now).map_err(|e| ConnectError::Storage(e.to_string()))? {
            EpochChange::Reset(info) => Ok(Some(info)),
            EpochChange::Unchanged | EpochChange::Adopted => Ok(None),
        }
    }

    /// The shared-memory connection, if the session uses shared memory (to inspect
    /// it; to poll its rings and its control channel from two threads, take it with
    /// [`split_shm`](Self::split_shm)).
    pub fn shm(&mut self) -> Option<&mut ShmConnection<TcpStream>> {
        self.shm.as_mut()
    }

    /// Takes the shared-memory connection out of the client, split into its data part
    /// (the rings: poll it from the hot thread, no system call) and its control part
    /// (heartbeats and close on the TCP control channel: poll it from another thread).
    /// The client keeps its session store; a later [`connect`](Self::connect) maps the
    /// rings again (after the parts are dropped: their lock is exclusive).
    ///
    /// ```no_run
    /// # use tcpshm_client::{Client, ClientConfig, TransportKind};
    /// # let mut client = Client::open(ClientConfig::new("c".parse().unwrap(), "/tmp/c"), 0).unwrap();
    /// client.connect("127.0.0.1:12345".parse().unwrap(), TransportKind::Shm, 0).unwrap();
    /// let (mut data, mut control) = client.split_shm().expect("a shared-memory session");
    /// std::thread::spawn(move || loop { control.poll(0); std::thread::sleep(std::time::Duration::from_millis(1)) });
    /// use tcpshm_proto::Transport;
    /// loop { if let Some(m) = data.front() { let _ = m.payload; data.pop(); } }
    /// ```
    pub fn split_shm(
        &mut self,
    ) -> Option<(tcpshm_transport_shm::ShmData, tcpshm_transport_shm::ShmControl<TcpStream>)> {
        self.shm.take().map(ShmConnection::split)
    }

    /// The TCP connection (it also holds the session store).
    pub fn tcp(&mut self) -> &mut TcpConnection {
        &mut self.tcp
    }
}

/// Runs `$e` on the connection of the client's transport. A shared-memory client with
/// no rings mapped yet (it never logged in with this server) runs `$none` instead:
/// there is nowhere to queue, and pretending otherwise would strand messages in the
/// TCP queue.
macro_rules! active {
    ($self:ident, $c:ident => $e:expr, $none:expr) => {
        match ($self.mode, &mut $self.shm) {
            (TransportKind::Shm, Some($c)) => $e,
            (TransportKind::Shm, None) => $none,
            (TransportKind::Tcp, _) => {
                let $c = &mut $self.tcp;
                $e
            }
        }
    };
}

fn no_rings() -> SendError {
    SendError::Storage(
        "no shared-memory session to queue into yet: the server creates the rings at the first login, connect first"
            .into(),
    )
}

impl Transport for Client {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        active!(self, c => c.alloc(len), Err(no_rings()))
    }
    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        active!(self, c => c.push(msg_type), Err(no_rings()))
    }
    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        active!(self, c => c.push_more(msg_type), Err(no_rings()))
    }
    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        active!(self, c => c.front(), None)
    }
    #[inline]
    fn pop(&mut self) {
        active!(self, c => c.pop(), ())
    }
    #[inline]
    fn poll(&mut self, now: Nanos) -> bool {
        active!(self, c => c.poll(now), false)
    }
    fn close(&mut self, reason: CloseReason) {
        active!(self, c => c.close(reason), ())
    }
    fn is_connected(&self) -> bool {
        match (self.mode, &self.shm) {
            (TransportKind::Shm, Some(c)) => c.is_connected(),
            (TransportKind::Shm, None) => false,
            (TransportKind::Tcp, _) => self.tcp.is_connected(),
        }
    }
    fn close_reason(&self) -> Option<&CloseReason> {
        match (self.mode, &self.shm) {
            (TransportKind::Shm, Some(c)) => c.close_reason(),
            (TransportKind::Shm, None) => Some(&CloseReason::NotConnected),
            (TransportKind::Tcp, _) => self.tcp.close_reason(),
        }
    }
    fn counters(&self) -> Counters {
        match (self.mode, &self.shm) {
            (TransportKind::Shm, Some(c)) => c.counters(),
            (TransportKind::Shm, None) => Counters::default(),
            (TransportKind::Tcp, _) => self.tcp.counters(),
        }
    }
    fn max_payload(&self) -> usize {
        match (self.mode, &self.shm) {
            (TransportKind::Shm, Some(c)) => c.max_payload(),
            _ => self.tcp.max_payload(),
        }
    }
}

fn stream_config(cfg: &ClientConfig) -> StreamConfig {
    let session = SessionConfig {
        heartbeat_interval: cfg.heartbeat_interval,
        timeout: cfg.connection_timeout,
        ..SessionConfig::default()
    };
    StreamConfig { max_payload: cfg.max_message, session, ..StreamConfig::default() }
}

fn shm_config(cfg: &ClientConfig) -> ShmConfig {
    ShmConfig {
        heartbeat_interval: cfg.heartbeat_interval,
        timeout: cfg.connection_timeout,
        max_payload: cfg.max_message,
        ..ShmConfig::default()
    }
}
