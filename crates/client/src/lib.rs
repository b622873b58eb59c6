//! # tcpshm-client
//!
//! The client side of tcpshm: [`Client::open`] opens the persistent session (its send
//! queue and consumed count live in a file that survives disconnects, restarts and
//! `kill -9`), [`Client::connect`] logs in (blocking, bounded by a timeout, with a
//! typed error for every refusal), and from then on the [`Client`] is a
//! [`Transport`]: `alloc`/`push`, `poll(now)`,
//! `front`/`pop`. Pushes are accepted while disconnected and leave on reconnect.
//!
//! There is no automatic reconnect inside the library (it creates no threads and
//! reads no clock); the `echo_client` example shows a reconnect loop.
//!
//! In shared-memory mode the data path is two rings in a file under `/dev/shm`; the
//! TCP login socket stays open as the control channel (heartbeats, orderly close),
//! and the ring can be polled from one thread while the control channel is polled
//! from another ([`Client::split_shm`]).
#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
mod login;

pub use client::{Client, Connected};
pub use config::{ClientConfig, ConfigError};
pub use error::{ConnectError, OpenError};
pub use tcpshm_proto::login::{LoginStatus, TransportKind};
pub use tcpshm_proto::{CloseReason, Msg, Name, Nanos, Transport};
