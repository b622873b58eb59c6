//! # tcpshm-server
//!
//! The server side of tcpshm: a listener, logins (read in pieces, bounded in size and
//! time, parsed, then decided by the user's [`LoginHandler`]), the connection table
//! keyed by client name (a name already connected is refused), and **groups**: sets
//! of sessions each polled by exactly one user thread. A [`ShardPolicy`]
//! (round-robin, least-loaded, by-name, or yours) places each new client in a group;
//! the control thread hands the login to that group's thread through a lock-free
//! single-producer queue, and the group finishes it with the session's own rules
//! (`tcpshm-proto`'s verdict: transport, epoch, limits, sequence numbers), the reply
//! and the link (`tcpshm-connection`).
//!
//! The library creates no threads and reads no clock: [`Server::poll`] (one thread) or
//! [`Control::poll`] and [`Group::poll`] (one thread each) take `now` from the caller.
//! Both transports, TCP and shared memory, are served; a client chooses at login.
//!
//! Sessions persist: a client's unacknowledged messages wait in a per-client store
//! under [`ServerConfig::storage_dir`], and in the session's shared-memory rings when
//! it uses them. A client that reconnects — over either transport — resumes exactly
//! where both sides' consumed counts say. A server started under a new name starts
//! fresh sessions.
#![forbid(unsafe_code)]

mod config;
mod control;
mod group;
mod handler;
mod handoff;
mod pending;
mod policy;
mod server;
mod slot;
mod sync;

pub use config::ServerConfig;
pub use control::{Control, ControlStats};
pub use group::Group;
pub use handler::{AcceptAll, Conn, GroupHandler, Handled, LoginHandler, LoginInfo, Reject};
pub use policy::{ByName, GroupId, LeastLoaded, RoundRobin, ShardPolicy};
pub use server::{Server, ServerError};
pub use tcpshm_connection::{ConnectionConfig, Producer, ProducerError};
pub use tcpshm_proto::login::TransportKind;
pub use tcpshm_proto::session::ConfigError;
pub use tcpshm_proto::{CloseReason, Msg, Name, Nanos};
