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
//! fresh sessions; the sessions of its earlier names stay, or go, as
//! [`ServerConfig::retention`] says ([`Retention`]).
//!
//! **Live counters.** A server publishes per-session counters (state, transport,
//! queue depth, sent/acked/resent, received/popped, heartbeats, last close reason,
//! last activity) and its own login counts in a small shared-memory file
//! ([`StatsSettings`]; the `tcpshm-stats` crate has the layout and the reader, and
//! `tcpshm stat` shows it). Each group refreshes its records once per
//! [`StatsSettings::interval`] with plain stores: no system call and no lock on the
//! message path.
//!
//! **Pushing unprompted.** A group's handler reaches every session of its group by
//! client name — from [`GroupHandler::on_poll`] at each poll, from a handled message's
//! [`Conn::sessions`], or between polls through [`Group::sessions`] — and pushes to it
//! whether the client is connected or not: a message for a client that is away waits
//! in its persistent queue for its next login ([`Sessions`] has the rules and an
//! example). Several replies that must leave together, or not at all, go in a
//! [`Batch`] ([`Conn::batch`]).
#![forbid(unsafe_code)]

mod config;
mod control;
mod directory;
mod group;
mod handler;
mod handoff;
mod pending;
mod policy;
mod retention;
mod server;
mod sessions;
mod slot;
mod stats;
mod sync;

pub use config::ServerConfig;
pub use control::{Control, ControlStats};
pub use group::Group;
pub use handler::{AcceptAll, Conn, GroupHandler, Handled, LoginHandler, LoginInfo, Reject};
pub use policy::{ByName, GroupId, LeastLoaded, RoundRobin, ShardPolicy};
pub use retention::{Removal, RemovedSession, Retention};
pub use server::{Server, ServerError};
pub use sessions::{SessionError, Sessions};
pub use stats::StatsSettings;
pub use tcpshm_connection::{Batch, ConnectionConfig, Producer, ProducerError};
pub use tcpshm_proto::login::TransportKind;
pub use tcpshm_proto::session::ConfigError;
pub use tcpshm_proto::{CloseReason, Msg, Name, Nanos};
