//! # tcpshm-connection
//!
//! One side of a persistent tcpshm session over a medium, and its login. The rules
//! are `tcpshm-proto`'s ([`tcpshm_proto::session::Session`], [`tcpshm_proto::handshake`]);
//! the media are `tcpshm-transport-tcp`'s (a byte stream) and
//! `tcpshm-transport-shm`'s (a pair of rings); the persistence is `tcpshm-persist`'s.
//! This crate drives the one with the others: [`Connection`] is the single connection
//! type of clients and servers, over TCP, a Unix socket, any other byte stream, or
//! shared memory with a control stream.
//!
//! * [`Connection::open`] resumes a session from its store (and its rings);
//! * [`Connection::login_client`] / [`Connection::accept`] log in, over any
//!   [`ByteStream`](tcpshm_transport_tcp::ByteStream);
//! * then [`Connection`] is a [`Transport`](tcpshm_proto::Transport): `alloc`/`push`,
//!   `front`/`pop`, `poll(now)`; [`Connection::front_split`] gives the front message
//!   and the send side together for zero-copy replies.
//!
//! A session is one numbered sequence per direction, whatever carries it: messages
//! pushed before the first login, over TCP, over shared memory, across reconnects,
//! restarts and changes of medium, are delivered once and in order.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//! use tcpshm_connection::{Connection, ConnectionConfig};
//! use tcpshm_persist::{Options, Store};
//! use tcpshm_proto::handshake::ServerRules;
//! use tcpshm_proto::login::{LoginRequest, TransportKind};
//! use tcpshm_proto::{Control, Decoded, Name, Transport};
//! use tcpshm_transport_tcp::{exchange, FrameReader};
//!
//! # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-lib-{}", std::process::id()));
//! let cfg = ConnectionConfig::default();
//! let (c, s) = (Name::new("client").unwrap(), Name::new("server").unwrap());
//! let opts = Options::new(cfg.queue_bytes);
//! let open = |me, peer| Store::open(&dir, me, peer, &opts, None, 0).unwrap().0;
//! let mut client: Connection<UnixStream> = Connection::open(open(c, s), None, TransportKind::Tcp, cfg.clone()).unwrap();
//! let mut server: Connection<UnixStream> = Connection::open(open(s, c), None, TransportKind::Tcp, cfg.clone()).unwrap();
//!
//! // A message pushed before the first login waits in the store.
//! client.alloc(5).unwrap().unwrap().copy_from_slice(b"hello");
//! client.push(1).unwrap();
//!
//! let (cs, mut ss) = UnixStream::pair().unwrap();
//! cs.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
//! // The server side reads the request on its own thread, decides and replies.
//! let rules = ServerRules { name: s, tcp: true, shm: false, limits: server.limits() };
//! let srv = std::thread::spawn(move || {
//!     let mut reader = FrameReader::new(4096, 4096);
//!     let f = exchange::recv_blocking(&mut ss, &mut reader).unwrap();
//!     let Ok(Decoded::Frame { frame, .. }) = tcpshm_proto::decode(reader.frame_bytes(&f), u32::MAX) else { panic!() };
//!     let Ok(Some(Control::Login(req))) = frame.control() else { panic!() };
//!     ss.set_nonblocking(true).unwrap();
//!     server.accept(ss, &req, &rules, 0).map_err(|(r, _)| r).unwrap();
//!     server
//! });
//! let done = client.login_client(cs, TransportKind::Tcp, b"", 0).unwrap();
//! assert_eq!((done.server, done.to_resend), (s, 1));
//! let mut server = srv.join().unwrap();
//! let mut now = 0;
//! while server.front().is_none() {
//!     now += 1_000;
//!     client.poll(now);
//!     server.poll(now);
//! }
//! assert_eq!(server.front().unwrap().payload, b"hello");
//! server.pop();
//! # drop((client, server)); std::fs::remove_dir_all(&dir).ok();
//! ```
#![forbid(unsafe_code)]

mod close_handle;
mod config;
mod connection;
mod error;
mod files;
mod handoff;
mod login;
mod producer;
mod rings;
mod sender;
mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use close_handle::CloseHandle;
pub use config::{ConnectionConfig, ShmSettings};
pub use connection::Connection;
pub use error::{ConnectError, OpenError};
pub use files::{LostState, SessionFiles};
pub use login::{write_refusal, Connected};
pub use producer::{Producer, ProducerError};
pub use sender::{Batch, Sender};

/// The threading promises of the public types, checked at compile time.
#[allow(dead_code)]
fn _assert_thread_safety() {
    fn send<T: Send>() {}
    send::<Connection<mio::net::TcpStream>>();
    send::<Connection<std::os::unix::net::UnixStream>>();
    send::<CloseHandle>();
    fn clone<T: Send + Clone>() {}
    clone::<Producer>();
}
