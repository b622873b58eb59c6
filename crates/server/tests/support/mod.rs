//! Helpers of the separate-process end-to-end tests (`crash.rs`, `netns.rs`): the
//! message streams and their content, the child roles (server and client processes),
//! the crash-consistent reporting channel, the parent's exactly-once checker, and the
//! reading of the transports' durable counts. See `crash.rs` for the design.
#![allow(dead_code)]

pub mod check;
pub mod content;
pub mod durable;
pub mod procs;
pub mod records;
pub mod rng;
pub mod roles;
