//! The conformance kit's harness for connections over any byte stream (feature
//! `testkit`): a medium is only what makes a link — [`Links`] — and
//! [`ConnectionHarness`] does the rest (persistent state in a private directory,
//! logins of both sides, cuts, lost state, renames), so that
//! [`tcpshm_proto::conformance_tests!`] runs every case of the kit on it.
//!
//! ```
//! use tcpshm_connection::testkit::{ConnectionHarness, Links};
//! use tcpshm_proto::login::TransportKind;
//! use std::os::unix::net::UnixStream;
//!
//! /// A user's medium: Unix socket pairs, the messages on the stream.
//! struct UnixLinks;
//! impl Links for UnixLinks {
//!     type S = UnixStream;
//!     fn transport(&self) -> TransportKind { TransportKind::Tcp }
//!     fn link(&mut self) -> (UnixStream, UnixStream) {
//!         let (a, b) = UnixStream::pair().unwrap();
//!         for s in [&a, &b] {
//!             s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
//!         }
//!         (a, b)
//!     }
//! }
//!
//! let mut h = ConnectionHarness::new(UnixLinks, "doc");
//! tcpshm_proto::testkit::run_case(&mut h, "pushes_before_first_login").unwrap();
//! ```

pub(crate) mod drain;
mod pipe;

pub use drain::{set_drain_hook, DrainPoint};
pub use pipe::MemPipe;

use crate::{ConnectError, Connection, ConnectionConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tcpshm_proto::decode::frame_limit;
use tcpshm_proto::handshake::ServerRules;
use tcpshm_proto::login::{LoginStatus, TransportKind, MAX_REQUEST_LEN};
use tcpshm_proto::session::LivenessConfig;
use tcpshm_proto::testkit::{Harness, LoginFailure, LoginOk, Side};
use tcpshm_proto::{CloseReason, Control, Decoded, Name, Nanos};
use tcpshm_transport_shm::ShmDir;
use tcpshm_transport_tcp::{exchange, ByteStream, FrameReader};

/// What a medium gives the kit: new links.
pub trait Links {
    /// The stream type.
    type S: ByteStream + Send;

    /// What the logins ask for: the messages on the stream ([`TransportKind::Tcp`]),
    /// or in shared-memory rings with the stream as the control stream
    /// ([`TransportKind::Shm`]).
    fn transport(&self) -> TransportKind;

    /// A new link: the client's end and the server's, connected, both blocking with
    /// read and write timeouts of a few seconds (the login exchange blocks; the
    /// session makes the ends non-blocking).
    fn link(&mut self) -> (Self::S, Self::S);
}

/// Links over an in-memory pipe ([`MemPipe`]): the reference medium of the kit.
#[derive(Debug)]
pub struct PipeLinks {
    /// Bytes each direction holds in flight (what a socket buffer would).
    pub capacity: usize,
    /// Largest chunk a read delivers.
    pub max_chunk: usize,
    seed: u64,
}

impl Default for PipeLinks {
    fn default() -> Self {
        PipeLinks { capacity: 4096, max_chunk: 97, seed: 1 }
    }
}

impl Links for PipeLinks {
    type S = MemPipe;
    fn transport(&self) -> TransportKind {
        TransportKind::Tcp
    }
    fn link(&mut self) -> (MemPipe, MemPipe) {
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        MemPipe::pair(self.capacity, self.max_chunk, self.seed)
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// The kit's harness over the links of `L`: both sides' persistent state in a private
/// temporary directory (and shared-memory files under a private prefix), removed
/// when the harness is dropped. See the [module docs](self).
#[derive(Debug)]
pub struct ConnectionHarness<L> {
    links: L,
    root: PathBuf,
    prefix: String,
    client: Name,
    service: Name,
    server: Name,
    renames: u32,
    server_max: Option<u32>,
    cfg: ConnectionConfig,
}

impl<L: Links> ConnectionHarness<L> {
    /// A harness over `links`, its state under a fresh directory named after `tag`.
    /// The configuration suits the kit: small queues it can fill, a heartbeat
    /// interval of 1 ms and a timeout of 10 ms on the kit's own clock.
    pub fn new(links: L, tag: &str) -> ConnectionHarness<L> {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let id = format!("tcpshm-kit-{tag}-{}-{n}", std::process::id());
        let root = std::env::temp_dir().join(&id);
        let mut cfg = ConnectionConfig::default();
        cfg.session.max_message = 64 * 1024;
        cfg.session.liveness = LivenessConfig { heartbeat_interval: 1_000_000, timeout: 10_000_000 };
        cfg.queue_bytes = 256 * 1024;
        cfg.shm.ring_bytes = 256 * 1024;
        cfg.shm.prefix = format!("{id}-");
        cfg.check_interval = 100_000;
        cfg.stream.recv_buffer = 24 * 1024;
        ConnectionHarness {
            links,
            root,
            prefix: cfg.shm.prefix.clone(),
            client: Name::new("kit-client").expect("valid"),
            service: Name::new("kit-service").expect("valid"),
            server: Name::new("kit-server-0").expect("valid"),
            renames: 0,
            server_max: None,
            cfg,
        }
    }

    /// The configuration of both sides (change it before the first `open`).
    pub fn config_mut(&mut self) -> &mut ConnectionConfig {
        &mut self.cfg
    }

    fn server_cfg(&self) -> ConnectionConfig {
        let mut cfg = self.cfg.clone();
        if let Some(max) = self.server_max {
            cfg.session.max_message = max;
        }
        cfg
    }

    fn shm_dir(&self) -> ShmDir {
        ShmDir::new(self.cfg.shm.dir.clone(), &self.prefix).expect("a valid prefix")
    }
}

impl<L> Drop for ConnectionHarness<L> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
        if let Ok(entries) = std::fs::read_dir(&self.cfg.shm.dir) {
            for e in entries.flatten() {
                if e.file_name().to_str().is_some_and(|n| n.starts_with(&self.prefix)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A client's login error as the kit tells failures apart.
fn failure(e: &ConnectError) -> LoginFailure {
    match e {
        ConnectError::Refused { status: LoginStatus::SeqMismatch, text } => LoginFailure::SeqMismatch(text.clone()),
        ConnectError::SeqMismatch(m) => LoginFailure::SeqMismatch(m.to_string()),
        ConnectError::Refused { status: LoginStatus::LimitExceeded, text } => LoginFailure::LimitExceeded(text.clone()),
        other => LoginFailure::Other(other.to_string()),
    }
}

impl<L: Links> Harness for ConnectionHarness<L> {
    type T = Connection<L::S>;

    fn open(&mut self, side: Side, now: Nanos) -> Self::T {
        let kind = self.links.transport();
        let r = match side {
            Side::Client => Connection::open_session(
                &self.root.join("client"),
                self.client,
                self.service,
                tcpshm_transport_shm::Side::Client,
                kind,
                self.cfg.clone(),
                now,
            ),
            Side::Server => Connection::open_session(
                &self.root.join("server"),
                self.server,
                self.client,
                tcpshm_transport_shm::Side::Server,
                kind,
                self.server_cfg(),
                now,
            ),
        };
        r.unwrap_or_else(|e| panic!("opening the {side:?} end failed: {e}"))
    }

    fn login(&mut self, client: &mut Self::T, server: &mut Self::T, now: Nanos) -> Result<LoginOk, LoginFailure> {
        let (cs, ss) = self.links.link();
        let kind = self.links.transport();
        let rules = ServerRules { name: self.server, tcp: true, shm: true, limits: server.limits() };
        std::thread::scope(|scope| {
            let srv = scope.spawn(move || {
                let mut ss = ss;
                let mut reader = FrameReader::new(4096, frame_limit(MAX_REQUEST_LEN));
                let Ok(f) = exchange::recv_blocking(&mut ss, &mut reader) else { return };
                let Ok(Decoded::Frame { frame, .. }) = tcpshm_proto::decode(reader.frame_bytes(&f), u32::MAX) else {
                    return;
                };
                let Ok(Some(Control::Login(req))) = frame.control() else { return };
                let _ = ss.set_nonblocking();
                if let Err((refusal, mut ss)) = server.accept(ss, &req, &rules, now) {
                    crate::write_refusal(&mut ss, rules.name, &refusal);
                }
            });
            let r = client.login_client(cs, kind, b"", now);
            let _ = srv.join();
            match r {
                Ok(c) => Ok(LoginOk { reset_dropped: c.reset.map(|r| r.dropped) }),
                Err(e) => Err(failure(&e)),
            }
        })
    }

    fn cut(&mut self, a: &mut Self::T, b: &mut Self::T) {
        drop(a.detach(CloseReason::RemoteClosed));
        drop(b.detach(CloseReason::RemoteClosed));
    }

    fn lose_state(&mut self, side: Side) {
        match side {
            Side::Client => {
                let _ = tcpshm_persist::Store::remove(self.root.join("client"), self.client, self.service);
            }
            Side::Server => {
                let _ = tcpshm_persist::Store::remove(self.root.join("server"), self.server, self.client);
                // What `rm` does: unlink, whoever maps it.
                let _ = std::fs::remove_file(self.shm_dir().path(&self.server, &self.client));
            }
        }
    }

    fn rename_server(&mut self) {
        self.renames += 1;
        self.server = Name::new(&format!("kit-server-{}", self.renames)).expect("valid");
    }

    fn limit_server_message(&mut self, max: usize) {
        self.server_max = Some(u32::try_from(max).unwrap_or(u32::MAX));
    }

    fn timeout(&self) -> Nanos {
        self.cfg.session.liveness.timeout
    }

    fn heartbeat_interval(&self) -> Nanos {
        self.cfg.session.liveness.heartbeat_interval
    }
}
