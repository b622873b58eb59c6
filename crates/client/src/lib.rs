//! # tcpshm-client
//!
//! The client side of tcpshm: [`Client::open`] opens the persistent session (its send
//! queue and consumed count live in a store that survives disconnects, restarts and
//! `kill -9`, and in the session's shared-memory rings when it uses them),
//! [`Client::connect`] logs in (blocking, each step bounded by a timeout, with a typed
//! error for every refusal), and from then on the [`Client`] is a
//! [`Transport`]: `alloc`/`push`, `poll(now)`, `front`/`pop`. Pushes are accepted
//! while disconnected — before the first login too — and leave with the next login,
//! whatever its transport.
//!
//! Reconnecting is a helper on top, not a thread: [`Reconnect`] wraps a client and
//! logs in again from its own `poll(now)` when the connection went down — at once,
//! then with backoff, retrying exactly what [`ConnectError::is_retryable`] says is
//! worth it — and reports what happened ([`ReconnectEvent`]: connected, disconnected, a reset
//! session, lost state, a fatal refusal) for the application to act on.
//!
//! In shared-memory mode the messages flow through two rings in a file under
//! `/dev/shm`; the TCP login connection stays open as the control stream (heartbeats,
//! orderly close).
#![forbid(unsafe_code)]

mod client;
mod config;
mod reconnect;

pub use client::Client;
pub use config::ClientConfig;
pub use reconnect::{Reconnect, ReconnectConfig, ReconnectEvent};
pub use tcpshm_connection::{Batch, ConnectError, Connected, ConnectionConfig, OpenError, Producer, ProducerError};
pub use tcpshm_proto::login::{LoginStatus, TransportKind};
pub use tcpshm_proto::session::ConfigError;
pub use tcpshm_proto::{CloseReason, Msg, Name, Nanos, Transport};
