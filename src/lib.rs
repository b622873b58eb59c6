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
//!
//! ```
//! use tcpshm::ring::spsc;
//!
//! let (mut tx, mut rx) = spsc::channel::<u64>(4);
//! tx.push(7).unwrap();
//! assert_eq!(rx.pop(), Some(7));
//! ```
#![forbid(unsafe_code)]

pub use tcpshm_ring as ring;
