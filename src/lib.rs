//! # tcpshm
//!
//! Persistent, connection-oriented, loss-free message queues between two named
//! endpoints, over TCP or shared memory, with one API for both.
//!
//! This is the facade crate: it re-exports the layer crates so that an application
//! depends on one package. Each layer is also usable alone.
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`ring`] | `tcpshm-ring` | lock-free SPSC queues: typed, and variable-length over raw memory |
//! | [`proto`] | `tcpshm-proto` | the sans-IO protocol: frames, login, the session engine (every rule of a session), the `Transport` trait and its conformance kit |
//! | [`persist`] | `tcpshm-persist` | the crash-safe mmap'd per-session store |
//! | [`tcp`] | `tcpshm-transport-tcp` | the byte-stream medium (TCP, Unix sockets, any stream) |
//! | [`shm`] | `tcpshm-transport-shm` | the shared-memory medium (rings in a `/dev/shm` file) |
//! | [`connection`] | `tcpshm-connection` | one session over a medium: the connection type of clients and servers, the logins |
//! | [`server`] | `tcpshm-server` | listener, logins, groups of sessions |
//! | [`client`] | `tcpshm-client` | open a session, connect, then poll; `Reconnect` stays connected |
//! | [`rpc`] | `tcpshm-rpc` | request/response on top of a session: call ids, caller-driven timeouts, duplicate answers filtered |
//!
//! The [`prelude`] has what an application usually needs. Two conveniences live here
//! and nowhere in the layer crates, because they do what the library never does by
//! itself: [`clock`] reads the monotonic clock for `poll(now)`, and [`runner`] runs a
//! server's parts on threads it starts (opt-in; see why that is consistent with "no
//! internal threads" there).
//!
//! `examples/order_entry.rs` shows the application API together: requests and
//! answers ([`rpc`]), fills pushed by the server to a trader who is offline
//! ([`server::Sessions`], [`server::GroupHandler::on_poll`]), a market-data thread,
//! [`client::Reconnect`], [`runner`] and [`clock`].
//!
//! ```
//! use tcpshm::ring::spsc;
//!
//! let (mut tx, mut rx) = spsc::channel::<u64>(4);
//! tx.push(7).unwrap();
//! assert_eq!(rx.pop(), Some(7));
//! ```
#![forbid(unsafe_code)]

pub mod clock;
pub mod runner;

pub use tcpshm_client as client;
pub use tcpshm_connection as connection;
pub use tcpshm_persist as persist;
pub use tcpshm_proto as proto;
pub use tcpshm_ring as ring;
pub use tcpshm_rpc as rpc;
pub use tcpshm_server as server;
pub use tcpshm_transport_shm as shm;
pub use tcpshm_transport_tcp as tcp;

/// What an application usually needs: the client, the server, and the connection API.
///
/// ```
/// use tcpshm::prelude::*;
/// fn reply<T: Transport>(t: &mut T) -> Result<(), SendError> {
///     t.alloc(2)?.expect("room").copy_from_slice(b"ok");
///     t.push(1)
/// }
/// ```
pub mod prelude {
    pub use tcpshm_client::{
        Client, ClientConfig, ConnectError, Connected, Reconnect, ReconnectConfig, ReconnectEvent,
    };
    pub use tcpshm_connection::{Batch, Connection, ConnectionConfig, Producer, ProducerError};
    pub use tcpshm_persist::Durability;
    pub use tcpshm_proto::login::{LoginStatus, TransportKind};
    pub use tcpshm_proto::{CloseReason, Counters, Msg, Name, Nanos, SendError, Transport};
    pub use tcpshm_server::{
        AcceptAll, ByName, Conn, Control, Group, GroupHandler, GroupId, Handled, LeastLoaded, LoginHandler, LoginInfo,
        Reject, RoundRobin, Server, ServerConfig, SessionError, Sessions, ShardPolicy,
    };
}

/// The README's code, compiled by `cargo test --doc` so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
