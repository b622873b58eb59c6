//! Typed errors of named shared-memory regions.

use crate::var::{AttachError, Corrupt, InitError, Side};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why [`Region::open`](super::Region::open) or [`Region::attach`](super::Region::attach)
/// failed. [`is_not_ready`](Self::is_not_ready) tells the two that waiting can cure.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Nothing at the path yet ([`Region::attach`](super::Region::attach) only): the
    /// peer has not created it. Retryable.
    NotFound(PathBuf),
    /// The file exists but holds no queue yet: empty, or no magic. A region created by
    /// [`Region::open`](super::Region::open) is never seen so (it is formatted before
    /// its name appears), but a file made by other code may be. Retryable.
    Uninitialised(PathBuf),
    /// The file is not a regular file owned by this user with no group or other
    /// permission bits: refused rather than trusted.
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its mode (type and permission bits).
        mode: u32,
    },
    /// The configuration asked for is invalid.
    Config(InitError),
    /// The file is not a var queue this code reads, or has another configuration
    /// ([`AttachError::ConfigMismatch`]).
    Attach {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: AttachError,
    },
    /// Another owner holds the file ([`MpscRegion::own`](super::MpscRegion::own)):
    /// the ends of an owner in another process, or in this one, are still alive.
    Busy(PathBuf),
    /// The queue's indices or records are impossible (found by
    /// [`MpscRegion::own`](super::MpscRegion::own)'s recovery).
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Corrupt,
    },
    /// A system call failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl OpenError {
    /// Whether the region may appear by waiting: [`NotFound`](Self::NotFound) or
    /// [`Uninitialised`](Self::Uninitialised).
    ///
    /// ```
    /// use tcpshm_ring::shm::{OpenError, Region};
    /// let e = Region::attach("/dev/shm/tcpshm-ring-doc-nothing-here").unwrap_err();
    /// assert!(matches!(e, OpenError::NotFound(_)) && e.is_not_ready());
    /// ```
    pub fn is_not_ready(&self) -> bool {
        matches!(self, OpenError::NotFound(_) | OpenError::Uninitialised(_))
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotFound(p) => write!(f, "no shared-memory queue at {} (yet)", p.display()),
            OpenError::Uninitialised(p) => write!(f, "{} holds no queue (yet): empty or unformatted", p.display()),
            OpenError::NotPrivate { path, uid, mode } => write!(
                f,
                "refusing {}: not a regular file of this user with mode 0600 (owner uid {uid}, mode {mode:o})",
                path.display()
            ),
            OpenError::Config(e) => write!(f, "invalid queue configuration: {e}"),
            OpenError::Attach { path, source } => write!(f, "{}: {source}", path.display()),
            OpenError::Busy(p) => write!(f, "{} is owned by another open (in this or another process)", p.display()),
            OpenError::Corrupt { path, source } => write!(f, "{}: {source}", path.display()),
            OpenError::Io { path, op, source } => write!(f, "{op} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Config(e) => Some(e),
            OpenError::Attach { source, .. } => Some(source),
            OpenError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`Region::producer`](super::Region::producer) or
/// [`Region::consumer`](super::Region::consumer) could not claim its side.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClaimError {
    /// A live end already holds this side: through this [`Region`](super::Region), or
    /// through another open of the file (another process, or another `Region`).
    Taken(Side),
    /// The region's indices are inconsistent (a faulty peer wrote them).
    Attach(AttachError),
    /// The lock system call failed.
    Io(io::Error),
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Taken(side) => write!(f, "the {side:?} side of the queue is held by another live end"),
            ClaimError::Attach(e) => e.fmt(f),
            ClaimError::Io(e) => write!(f, "locking the queue's side: {e}"),
        }
    }
}

impl std::error::Error for ClaimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClaimError::Taken(_) => None,
            ClaimError::Attach(e) => Some(e),
            ClaimError::Io(e) => Some(e),
        }
    }
}
