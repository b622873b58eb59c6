//! # tcpshm-transport-tcp
//!
//! The stream transport of tcpshm: [`StreamConnection`], one persistent connection
//! over a non-blocking byte stream, implementing [`tcpshm_proto::Transport`]. Over TCP
//! it is [`TcpConnection`]; over a Unix socket [`UnixConnection`]; over any other
//! socket-backed `Read + Write` stream a user gets it for free ([`ByteStream`]).
//!
//! * **Send**: messages are allocated in place inside the persistent send queue (a
//!   [`tcpshm_persist::Store`], an mmap'd file) and `write`n straight from the
//!   mapping, runs of whole frames in one system call. A partial write resumes at the
//!   byte it stopped at; a full socket buffer is backpressure (the queue fills, then
//!   `alloc` returns `None`), never a disconnect. Control frames (acks, heartbeats,
//!   close) go out only between frames.
//! * **Receive**: one reusable buffer (it grows only for a frame larger than it, up to
//!   the configured maximum); frames are decoded in place by [`tcpshm_proto::decode()`],
//!   `front` borrows the next message there, `pop` consumes it and records the
//!   consumed count in the store — the commit point: a message popped is never
//!   delivered again, even after a crash; one not popped is delivered again after a
//!   reconnect.
//! * **Liveness**: heartbeats and standalone acks when due, a silent peer closed
//!   with [`CloseReason::Timeout`](tcpshm_proto::CloseReason::Timeout), all from the
//!   caller's clock (`now`); the library reads no clock, starts no thread, prints
//!   nothing.
//! * **Faults**: bad bytes from the peer close the connection with
//!   [`CloseReason::Protocol`](tcpshm_proto::CloseReason::Protocol) naming what was
//!   wrong; I/O errors with [`CloseReason::Io`](tcpshm_proto::CloseReason::Io) and the
//!   errno; the store is never touched by a peer's bad input.
//! * **No allocation per message** in steady state (a test counts them).
//!
//! The login exchange itself (request and reply frames) belongs to the client and the
//! server crates: they take this side's numbers from
//! [`StreamConnection::login_state`], exchange them with [`tcpshm_proto::login`],
//! and hand the stream over with [`StreamConnection::attach`]. [`tcp`] makes the
//! sockets (non-blocking, `TCP_NODELAY`, IPv4 and IPv6).
//!
//! ```
//! use tcpshm_persist::{Options, Store};
//! use tcpshm_proto::{Name, Transport};
//! use tcpshm_transport_tcp::{tcp, PeerLogin, StreamConfig, TcpConnection};
//!
//! # let dir = std::env::temp_dir().join(format!("tcpshm-tcp-doc-lib-{}", std::process::id()));
//! let (c, s) = (Name::new("client").unwrap(), Name::new("server").unwrap());
//! let open = |me, peer| Store::open(&dir, me, peer, &Options::new(1 << 16), None, 0).unwrap().0;
//! let mut client = TcpConnection::new(open(c, s), StreamConfig::default());
//! let mut server = TcpConnection::new(open(s, c), StreamConfig::default());
//!
//! // A TCP link (the real client and server exchange login frames on it first).
//! let listener = tcp::listen("127.0.0.1:0".parse().unwrap(), 8).unwrap();
//! let cs = tcp::connect_timeout(listener.local_addr().unwrap(), std::time::Duration::from_secs(5)).unwrap();
//! let ss = loop {
//!     if let Ok((s, _)) = tcp::accept(&listener) { break s }
//! };
//! let (lc, ls) = (client.login_state(), server.login_state());
//! client.attach(cs, PeerLogin::from(ls), 0).unwrap();
//! server.attach(ss, PeerLogin::from(lc), 0).unwrap();
//!
//! client.alloc(4).unwrap().unwrap().copy_from_slice(b"ping");
//! client.push(7).unwrap();
//! let mut now = 0;
//! let msg = loop {
//!     now += 1_000;
//!     client.poll(now);
//!     server.poll(now);
//!     if let Some(m) = server.front() { break (m.msg_type, m.payload.to_vec()) }
//! };
//! assert_eq!(msg, (7, b"ping".to_vec()));
//! server.pop();
//! # drop((client, server)); std::fs::remove_dir_all(&dir).ok();
//! ```

mod close_handle;
mod config;
mod connection;
mod error;
mod login;
mod recv;
mod send;
mod sender;
pub mod tcp;

pub use close_handle::CloseHandle;
pub use config::StreamConfig;
pub use connection::{ByteStream, StreamConnection};
pub use error::AttachError;
pub use login::{LoginInfo, PeerLogin};
pub use sender::Sender;

/// A connection over TCP.
pub type TcpConnection = StreamConnection<mio::net::TcpStream>;

/// A connection over a Unix stream socket (same host, no shared memory).
pub type UnixConnection = StreamConnection<mio::net::UnixStream>;

#[cfg(test)]
mod tests {
    /// A connection moves to the thread that polls it (server groups).
    #[test]
    fn connections_are_send() {
        fn send<T: Send>() {}
        send::<super::TcpConnection>();
        send::<super::UnixConnection>();
        send::<super::CloseHandle>();
    }
}
