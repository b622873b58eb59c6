//! The client: a persistent session with one server, connected (or not) over TCP or
//! shared memory.

use crate::config::ClientConfig;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::SocketAddr;
use tcpshm_connection::{Batch, ConnectError, Connected, Connection, OpenError, Producer, ProducerError, Sender};
use tcpshm_persist::Store;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{CloseReason, Counters, Msg, Name, Nanos, SendError, Transport};
use tcpshm_transport_shm::Side;
use tcpshm_transport_tcp::ByteStream;

/// A client session: a persistent send queue and consumed count (in a store under
/// [`ClientConfig::storage_dir`], and in the session's shared-memory rings when it
/// uses them) that survive disconnects and restarts, and the connection that carries
/// them. It implements [`Transport`]: push while connected or not, poll, front, pop.
///
/// `S` is the byte stream it logs in over: TCP by default ([`Client::connect`]); any
/// other with [`Client::connect_over`].
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("tcpshm-client-doc-{}", std::process::id()));
/// use tcpshm_client::{Client, ClientConfig};
/// use tcpshm_proto::Transport;
///
/// let mut client = Client::open(ClientConfig::new("trader-1".parse().unwrap(), &dir), 0).unwrap();
/// assert!(!client.is_connected());
/// // Pushing before connecting is fine: the message waits for the session's next login.
/// client.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
/// client.push(1).unwrap();
/// assert_eq!(client.counters().next_seq, 1);
/// // No server here: a typed error, and the message stays queued.
/// let err = client.connect("127.0.0.1:1".parse().unwrap(), tcpshm_client::TransportKind::Tcp, 0).unwrap_err();
/// assert!(err.is_retryable());
/// # drop(client); std::fs::remove_dir_all(&dir).ok();
/// ```
pub struct Client<S = mio::net::TcpStream> {
    cfg: ClientConfig,
    conn: Connection<S>,
}

impl<S> std::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("name", &self.cfg.name).field("conn", &self.conn).finish()
    }
}

impl<S: ByteStream> Client<S> {
    /// Opens (or creates) the session `<name>@<service>` and returns a client that is
    /// not connected yet: pushes queue until a login. `now` is recorded as the store's
    /// creation time if it is created. If the session last used shared memory and its
    /// file still exists, the file is mapped (its rings hold part of the session).
    pub fn open(cfg: ClientConfig, now: Nanos) -> Result<Client<S>, OpenError> {
        cfg.validate()?;
        let conn = Connection::open_session(
            &cfg.storage_dir,
            cfg.name,
            cfg.service,
            Side::Client,
            cfg.transport,
            cfg.connection.clone(),
            now,
        )?;
        Ok(Client { cfg, conn })
    }

    /// Logs in over `stream` (connected; blocking with read and write timeouts set,
    /// which bound the exchange) asking for `transport`, and resumes the session:
    /// each side resends what the other has not consumed. A live connection is
    /// replaced. On error nothing is lost: queued messages stay queued; try again
    /// later ([`ConnectError::is_retryable`] says whether that can help).
    pub fn connect_over(&mut self, stream: S, transport: TransportKind, now: Nanos) -> Result<Connected, ConnectError> {
        self.conn.login_client(stream, transport, &self.cfg.credential, now)
    }

    /// The server this session last logged in to (`None`: never).
    pub fn last_server(&self) -> Option<Name> {
        self.conn.store().epoch()
    }

    /// The transport of the current (or last) connection.
    pub fn transport(&self) -> TransportKind {
        self.conn.medium()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The connection (engine, store, rings, stream).
    pub fn connection(&self) -> &Connection<S> {
        &self.conn
    }

    /// The connection, mutably (readiness-driven polling, the store's `flush`).
    pub fn connection_mut(&mut self) -> &mut Connection<S> {
        &mut self.conn
    }

    /// The session store.
    pub fn store(&self) -> &Store {
        self.conn.store()
    }

    /// The front message and the send side together (see
    /// [`Connection::front_split`]).
    pub fn front_split(&mut self) -> Option<(Msg<'_>, Sender<'_>)> {
        self.conn.front_split()
    }

    /// Starts an all-or-nothing batch (see [`Batch`]): the messages pushed into it
    /// reach the server all together once [committed](Batch::commit), or none of them
    /// (an [`abort`](Batch::abort), dropping the batch, a crash before the commit).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-client-doc-batch-{}", std::process::id()));
    /// use tcpshm_client::{Client, ClientConfig};
    /// use tcpshm_proto::Transport;
    ///
    /// let mut client = <Client>::open(ClientConfig::new("trader-1".parse().unwrap(), &dir), 0).unwrap();
    /// let mut batch = client.batch().unwrap();
    /// for leg in [&b"buy 100 A"[..], b"sell 100 B"] {
    ///     let Some(buf) = batch.alloc(leg.len()).unwrap() else { return }; // full: nothing sent
    ///     buf.copy_from_slice(leg);
    ///     batch.push(1).unwrap();
    /// }
    /// batch.commit().unwrap();
    /// assert_eq!(client.counters().next_seq, 2);
    /// # drop(client); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn batch(&mut self) -> Result<Batch<'_>, SendError> {
        self.conn.sender().into_batch()
    }

    /// A handle that pushes into this session from any thread (`Send + Clone`: one
    /// clone per thread); this client's [`poll`](Transport::poll) moves what it pushed
    /// into the session, in order per handle, delivered exactly once even across a
    /// crash. See [`Producer`] and [`Connection::producer`].
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-client-doc-producer-{}", std::process::id()));
    /// use tcpshm_client::{Client, ClientConfig};
    /// use tcpshm_proto::Transport;
    ///
    /// let mut client: Client = Client::open(ClientConfig::new("md-feed".parse().unwrap(), &dir), 0).unwrap();
    /// let mut ticks = client.producer().unwrap();
    /// std::thread::spawn(move || assert!(ticks.push(1, b"EURUSD 1.0842").unwrap())).join().unwrap();
    /// client.poll(1);
    /// assert_eq!(client.counters().next_seq, 1); // queued for the server
    /// # drop(client); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn producer(&mut self) -> Result<Producer, ProducerError> {
        self.conn.producer()
    }

    /// Messages pushed and published but not yet consumed by the server, and the
    /// session's numbering: see [`Counters`]. A restarted sender reads
    /// `counters().next_seq` to know how many of its messages are already queued.
    pub fn resume_point(&self) -> u64 {
        self.conn.counters().next_seq
    }
}

impl Client<mio::net::TcpStream> {
    /// Connects to the server at `addr` over TCP (blocking at most
    /// [`ClientConfig::connect_timeout`] per step) and logs in asking for `transport`:
    /// the messages then flow over this TCP connection, or through the session's
    /// shared-memory rings with this connection as the control stream.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        transport: TransportKind,
        now: Nanos,
    ) -> Result<Connected, ConnectError> {
        let stream = connect_tcp(addr, self.cfg.connect_timeout)?;
        self.connect_over(stream, transport, now)
    }
}

/// A TCP connection made with a timeout, `TCP_NODELAY`, and read/write timeouts for
/// the blocking login (the session makes it non-blocking afterwards).
fn connect_tcp(addr: SocketAddr, timeout: std::time::Duration) -> Result<mio::net::TcpStream, ConnectError> {
    let io = |op| move |source| ConnectError::Io { op, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(io("socket"))?;
    socket.connect_timeout(&SockAddr::from(addr), timeout).map_err(io("connect"))?;
    socket.set_nodelay(true).map_err(io("setsockopt TCP_NODELAY"))?;
    socket.set_read_timeout(Some(timeout)).map_err(io("setsockopt SO_RCVTIMEO"))?;
    socket.set_write_timeout(Some(timeout)).map_err(io("setsockopt SO_SNDTIMEO"))?;
    let std: std::net::TcpStream = socket.into();
    Ok(mio::net::TcpStream::from_std(std))
}

impl<S: ByteStream> Transport for Client<S> {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.conn.alloc(len)
    }
    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.conn.push(msg_type)
    }
    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.conn.push_more(msg_type)
    }
    fn discard_staged(&mut self) -> u64 {
        self.conn.discard_staged()
    }
    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        self.conn.front()
    }
    #[inline]
    fn pop(&mut self) {
        self.conn.pop()
    }
    #[inline]
    fn poll(&mut self, now: Nanos) -> bool {
        self.conn.poll(now)
    }
    fn close(&mut self, reason: CloseReason) {
        self.conn.close(reason)
    }
    #[inline]
    fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }
    fn close_reason(&self) -> Option<&CloseReason> {
        self.conn.close_reason()
    }
    fn counters(&self) -> Counters {
        self.conn.counters()
    }
    fn max_payload(&self) -> usize {
        self.conn.max_payload()
    }
    fn next_deadline(&self) -> Option<Nanos> {
        self.conn.next_deadline()
    }
}
