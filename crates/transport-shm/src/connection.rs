//! `ShmConnection`: a shared-memory connection, the data part and the control part
//! together.

use crate::config::ShmConfig;
use crate::control::ShmControl;
use crate::data::{ShmData, ShmSender};
use crate::error::{ShmError, Side};
use crate::file::ShmFile;
use crate::state::{CloseHandle, Shared};
use std::io::{Read, Write};
use std::path::Path;
use tcpshm_proto::{CloseReason, Counters, Msg, Name, Nanos, SendError, Transport};

/// A shared-memory connection: the rings of a [`ShmFile`] for the messages, and a
/// byte stream (the login socket, kept open) as the control channel. It implements
/// [`Transport`]; see [`ShmData`] for the exact meaning of each call on shared memory
/// and [`ShmControl`] for the control channel.
///
/// From one thread, [`poll`](Transport::poll) does both parts: the data part costs
/// no system call, the control work happens at most once per
/// [`ShmConfig::check_interval`]. Or [`split`](Self::split) it and poll the data part
/// from a hot thread that never makes a system call, the control part from another.
///
/// Lifecycle, as the server and client layers use it:
/// 1. after a login, the server side calls [`ShmFile::create_or_open`] then
///    [`ShmConnection::server`] (this adds 1 to the file's session epoch); the
///    client side, after the login reply, calls [`ShmFile::open`] then
///    [`ShmConnection::client`];
/// 2. on a disconnect the connection stays usable (push while disconnected; the peer
///    reads after it re-attaches); after the next login, [`reattach`](Self::reattach)
///    with the new control stream (the server side adds 1 to the epoch again);
/// 3. [`detach`](Self::detach) ends the connection and gives the file back (drop it to
///    release the lock; [`ShmDir::remove`](crate::ShmDir::remove) to delete it).
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use tcpshm_proto::{Name, Transport};
/// use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmDir, ShmFile};
///
/// let dir = ShmDir::new("/dev/shm", &format!("doc-conn-{}-", std::process::id())).unwrap();
/// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
/// let (a, b) = UnixStream::pair().unwrap();
/// a.set_nonblocking(true).unwrap();
/// b.set_nonblocking(true).unwrap();
///
/// let file = ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(1 << 16)).unwrap();
/// let mut server = ShmConnection::server(file, a, ShmConfig::default()).unwrap();
/// let mut client = ShmConnection::client(ShmFile::open(&dir, &s, &c).unwrap(), b, ShmConfig::default()).unwrap();
///
/// client.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
/// client.push(1).unwrap();
/// let m = server.front().unwrap();
/// assert_eq!((m.msg_type, m.seq, m.payload), (1, 0, &b"hello"[..]));
/// server.pop();
/// assert!(server.poll(1) && client.poll(1));
///
/// drop((server, client));
/// dir.remove(&s, &c).unwrap();
/// ```
pub struct ShmConnection<S> {
    data: ShmData,
    control: ShmControl<S>,
}

impl<S> std::fmt::Debug for ShmConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmConnection").field("data", &self.data).field("control", &self.control).finish()
    }
}

impl<S: Read + Write> ShmConnection<S> {
    /// A connection on `file` (either side) with `stream` as its control channel,
    /// connected. On the server side this is a login: the file's session epoch is
    /// incremented.
    pub fn new(file: ShmFile, stream: S, cfg: ShmConfig) -> Result<ShmConnection<S>, ShmError> {
        cfg.validate()?;
        let ShmFile { ends, inner } = file;
        if inner.side == Side::Server {
            inner.control().epoch().fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let shared = Shared::new();
        let data = ShmData::new(ends, inner.clone(), shared.clone(), cfg.max_payload);
        let control = ShmControl::new(stream, inner, shared, cfg);
        Ok(ShmConnection { data, control })
    }

    /// A connection on `file` with no control channel yet: closed
    /// ([`CloseReason::NotConnected`]), but its rings are mapped, so messages can be
    /// pushed (they wait in the ring) and ones already received can be read; a login
    /// then [`reattach`](Self::reattach)es a stream. This is how a restarted client
    /// queues messages for its shared-memory session before it connects.
    pub fn offline(file: ShmFile, cfg: ShmConfig) -> Result<ShmConnection<S>, ShmError> {
        cfg.validate()?;
        let ShmFile { ends, inner } = file;
        let shared = Shared::new();
        let data = ShmData::new(ends, inner.clone(), shared.clone(), cfg.max_payload);
        let control = ShmControl::offline(inner, shared, cfg);
        Ok(ShmConnection { data, control })
    }

    /// [`new`](Self::new) for a server-side file ([`ShmError::WrongSide`] otherwise).
    pub fn server(file: ShmFile, stream: S, cfg: ShmConfig) -> Result<ShmConnection<S>, ShmError> {
        if file.side() != Side::Server {
            return Err(ShmError::WrongSide { expected: Side::Server, found: file.side() });
        }
        ShmConnection::new(file, stream, cfg)
    }

    /// [`new`](Self::new) for a client-side file ([`ShmError::WrongSide`] otherwise).
    pub fn client(file: ShmFile, stream: S, cfg: ShmConfig) -> Result<ShmConnection<S>, ShmError> {
        if file.side() != Side::Client {
            return Err(ShmError::WrongSide { expected: Side::Client, found: file.side() });
        }
        ShmConnection::new(file, stream, cfg)
    }

    /// Starts a new session on a new control stream after a reconnect; see
    /// [`ShmControl::reattach`]. Everything in the rings is kept.
    pub fn reattach(&mut self, stream: S) {
        self.control.reattach(stream);
        self.data.refresh();
    }

    /// Ends the connection: sends a close frame if connected, drops the control
    /// stream, publishes staged messages, and gives the file back, still mapped and
    /// locked (drop it to release the lock).
    pub fn detach(mut self) -> ShmFile {
        self.control.close(CloseReason::Requested);
        let ShmConnection { data, control } = self;
        drop(control);
        let (ends, inner) = data.into_ends();
        ShmFile { ends, inner }
    }

    /// Splits the connection into its data part (poll it from the hot thread: no
    /// system call) and its control part (poll it from another thread). They share
    /// the connection state: a close seen by either is seen by both at their next
    /// poll.
    pub fn split(self) -> (ShmData, ShmControl<S>) {
        (self.data, self.control)
    }

    /// A handle that requests a close from any thread.
    pub fn close_handle(&self) -> CloseHandle {
        self.data.close_handle()
    }

    /// The front message and the sending side, borrowed together (zero-copy
    /// request/reply); see [`ShmData::front_split`].
    #[inline]
    pub fn front_split(&mut self) -> Option<(Msg<'_>, ShmSender<'_>)> {
        self.data.front_split()
    }

    /// The sending side alone; see [`ShmSender`].
    #[inline]
    pub fn sender(&mut self) -> ShmSender<'_> {
        self.data.sender()
    }

    /// The data part.
    pub fn data(&mut self) -> &mut ShmData {
        &mut self.data
    }

    /// The control part.
    pub fn control(&mut self) -> &mut ShmControl<S> {
        &mut self.control
    }

    /// This side.
    pub fn side(&self) -> Side {
        self.data.side()
    }

    /// This side's name.
    pub fn local_name(&self) -> &Name {
        self.data.local_name()
    }

    /// The peer's name.
    pub fn remote_name(&self) -> &Name {
        self.data.remote_name()
    }

    /// The session epoch in the file (the server's login count).
    pub fn epoch(&self) -> u64 {
        self.data.epoch()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.control_file().path
    }

    fn control_file(&self) -> &crate::file::FileInner {
        self.data.file()
    }

    /// Whether the peer's lock on the file is held now (one system call).
    pub fn peer_alive(&self) -> std::io::Result<bool> {
        self.control.peer_alive()
    }
}

impl<S: Read + Write> Transport for ShmConnection<S> {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.data.alloc(len)
    }

    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.data.push(msg_type)
    }

    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.data.push_more(msg_type)
    }

    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        self.data.front()
    }

    #[inline]
    fn pop(&mut self) {
        self.data.pop()
    }

    fn poll(&mut self, now: Nanos) -> bool {
        self.data.poll(now);
        self.control.poll(now);
        self.data.refresh();
        self.data.is_connected()
    }

    fn close(&mut self, reason: CloseReason) {
        self.control.close(reason);
        self.data.refresh();
    }

    #[inline]
    fn is_connected(&self) -> bool {
        self.data.is_connected()
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.data.close_reason()
    }

    fn counters(&self) -> Counters {
        self.data.counters()
    }

    #[inline]
    fn max_payload(&self) -> usize {
        self.data.max_payload()
    }
}
