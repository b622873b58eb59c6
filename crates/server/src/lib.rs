//! # tcpshm-server
//!
//! The server side of tcpshm: a listener, logins (read in pieces, bounded in size and
//! time, checked for version, names, transport and limits, then decided by the user's
//! [`LoginHandler`]), the connection table keyed by client name (a name already
//! connected is refused), and **groups**: sets of connections each polled by exactly
//! one user thread. A [`ShardPolicy`] (round-robin, least-loaded, by-name, or yours)
//! places each new client in a group; the control thread hands the login to that
//! group's thread through a lock-free single-producer queue, and the group finishes it
//! (sequence check against the persistent session, reply, attach).
//!
//! The library creates no threads and reads no clock: [`Server::poll`] (one thread) or
//! [`Control::poll`] and [`Group::poll`] (one thread each) take `now` from the caller.
//! Both transports, TCP and shared memory, are served; a client chooses at login.
//!
//! Sessions persist: a TCP client's unacknowledged messages wait in a per-client store
//! under [`ServerConfig::storage_dir`]; a shared-memory client's in its rings under
//! [`ServerConfig::shm_dir`]. A client that reconnects resumes exactly where both
//! sides' consumed counts say. A server started under a new name starts fresh sessions.
#![forbid(unsafe_code)]

mod config;
mod conn;
mod control;
mod group;
mod handler;
mod handoff;
mod pending;
mod policy;
mod reply;
mod server;
mod slot;
mod sync;

pub use config::{ConfigError, ServerConfig};
pub use conn::SendSide;
pub use control::{Control, ControlStats};
pub use group::Group;
pub use handler::{AcceptAll, Conn, GroupHandler, Handled, LoginHandler, LoginInfo, Reject};
pub use policy::{ByName, GroupId, LeastLoaded, RoundRobin, ShardPolicy};
pub use server::{Server, ServerError};
pub use tcpshm_proto::login::TransportKind;
pub use tcpshm_proto::{CloseReason, Msg, Name, Nanos};
