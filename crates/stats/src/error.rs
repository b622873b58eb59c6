//! Typed errors of the counters file.

use std::path::PathBuf;

/// Why a counters file could not be created, read or removed. Every variant names the
/// file (or directory).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// A system call failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The prefix is not a valid file-name prefix.
    #[error("invalid counters file prefix {0:?}: use at most 64 ASCII letters, digits, '_', '-', '.', not starting with '.'")]
    BadPrefix(String),
    /// The record count is 0 or too large.
    #[error("a counters file holds 1 to {max} session records, not {found}")]
    BadRecords {
        /// Asked for.
        found: usize,
        /// Most.
        max: usize,
    },
    /// Not a counters file, another layout version, or still being created.
    #[error("{}: not a tcpshm counters file ({why})", path.display())]
    NotStats {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl StatsError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, e: impl Into<std::io::Error>) -> StatsError {
        StatsError::Io { path: path.into(), op, source: e.into() }
    }
}
