//! # tcpshm-stats
//!
//! Live counters of a tcpshm server, in a small shared-memory file that tools map
//! read-only (the AeronStat model): per session its state, transport, queue depth,
//! messages sent, acknowledged, resent, received and popped, heartbeats, the last
//! close reason and the last activity (in the server's clock); and the server's own
//! login counts.
//!
//! * The server ([`StatsFile`]) creates the file at start (`<dir>/<prefix><server>.<pid>.<n>.stats`,
//!   default `/dev/shm/tcpshm-stats-…`, mode 0600), holds an OFD lock on it while it
//!   lives, and removes it when it stops; a crashed server's file is removed by the
//!   next server of its name, or by `tcpshm gc` ([`StatsDir::remove_dead`]).
//! * Each session's record has one writer (its group's thread, through a
//!   [`RecordSlot`]); publishing is plain stores behind a version word: no system
//!   call, no lock, no allocation. The server publishes at its own pace (a record per
//!   session every stats interval), never per message.
//! * A reader ([`StatsReader`]) never blocks the server and never reports a torn
//!   record: each block is copied under its version word and retried.
//!
//! The byte layout is in [`layout`] (one table for the header and the records).
//!
//! ```
//! use tcpshm_stats::{ServerRecord, StatsDir, StatsFile, StatsReader};
//! let dir = StatsDir::new(std::env::temp_dir(), &format!("doc-lib-stats-{}-", std::process::id())).unwrap();
//! let (file, mut server) = StatsFile::create(&dir, "Srv".parse().unwrap(), "/srv/data".as_ref(), 4).unwrap();
//! let mut counts = ServerRecord::default();
//! counts.accepted = 3;
//! server.publish(&counts);
//! let live = dir.live().unwrap();
//! assert_eq!(live.len(), 1);
//! assert_eq!(live[0].header().server.as_str(), "Srv");
//! assert_eq!(live[0].read().server.accepted, 3);
//! # drop((file, server));
//! ```
#![cfg_attr(not(test), warn(clippy::undocumented_unsafe_blocks))]

mod dir;
mod error;
pub mod layout;
mod reader;
mod record;
mod words;
mod writer;

pub use dir::{remove_if_dead, StatsDir, SUFFIX};
pub use error::StatsError;
pub use layout::file_len;
pub use reader::{Snapshot, StatsHeader, StatsReader};
pub use record::{LastClose, ServerRecord, SessionRecord, SessionState, ShortText};
pub use words::READ_ATTEMPTS;
pub use writer::{RecordSlot, ServerSlot, StatsFile, MAX_RECORDS};
