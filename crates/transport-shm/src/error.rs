//! Typed errors: what is wrong with a directory, a file, a lock or a configuration.

use crate::layout::Capacities;
use std::path::PathBuf;
use tcpshm_ring::var::{AttachError, InitError};

/// Which end of a connection: the side that creates the file (server) or the side
/// that opens it after the login reply (client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Creates (or reopens) the file; locks byte 0; bumps the session epoch.
    Server,
    /// Opens an existing file; locks byte 1.
    Client,
}

impl Side {
    /// The other side.
    ///
    /// ```
    /// use tcpshm_transport_shm::Side;
    /// assert_eq!(Side::Server.peer(), Side::Client);
    /// ```
    pub const fn peer(self) -> Side {
        match self {
            Side::Server => Side::Client,
            Side::Client => Side::Server,
        }
    }

    /// The byte of the file this side's lock covers (0 for the server, 1 for the client).
    pub const fn lock_byte(self) -> u64 {
        match self {
            Side::Server => 0,
            Side::Client => 1,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Server => "server",
            Side::Client => "client",
        })
    }
}

/// A direction of traffic, naming one of the two rings of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The server→client ring (the first ring in the file).
    ServerToClient,
    /// The client→server ring (the second ring in the file).
    ClientToServer,
}

impl Direction {
    /// The other direction.
    ///
    /// ```
    /// use tcpshm_transport_shm::Direction;
    /// assert_eq!(Direction::ServerToClient.reverse(), Direction::ClientToServer);
    /// ```
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::ServerToClient => Direction::ClientToServer,
            Direction::ClientToServer => Direction::ServerToClient,
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::ServerToClient => "server->client",
            Direction::ClientToServer => "client->server",
        })
    }
}

/// Everything that can go wrong with a shared-memory file or its configuration. A file
/// that is refused is never mapped further, so a foreign, truncated or mismatched file
/// is this error, never a misread.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file prefix has a character outside ASCII letters, digits, `_`, `-`, `.`,
    /// starts with a dot, or is too long.
    #[error("invalid shared-memory file prefix {0:?}: use at most 64 ASCII letters, digits, '_', '-', '.', not starting with '.'")]
    BadPrefix(String),
    /// The configuration is invalid (the text says which field and why).
    #[error("invalid shared-memory configuration: {0}")]
    Config(&'static str),
    /// A ring capacity is invalid.
    #[error("invalid {direction} ring capacity: {error}")]
    BadCapacity {
        /// Which ring.
        direction: Direction,
        /// Why.
        error: InitError,
    },
    /// The file does not exist (the client opens only what the server created).
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    /// The path is not a regular file (a symlink, a directory, a device, a FIFO).
    #[error("{} is not a regular file (symlinks are never followed)", .0.display())]
    NotRegularFile(PathBuf),
    /// The file belongs to another user.
    #[error("{} is owned by uid {owner}, not by this process's uid {ours}", path.display())]
    NotOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        ours: u32,
    },
    /// The file is accessible by group or others (it must be mode 0600).
    #[error("{} has mode {mode:#o}; a connection file must not be accessible by group or others (0600)", path.display())]
    BadMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another live open file description holds this side's lock: another process (or
    /// another open in this process) is attached as this side.
    #[error("{} is in use: the {side} side is attached by another live process", path.display())]
    Busy {
        /// The file.
        path: PathBuf,
        /// The side whose lock is held.
        side: Side,
    },
    /// The file kept being replaced while it was being opened.
    #[error("{} was replaced repeatedly while being opened", .0.display())]
    Unstable(PathBuf),
    /// The file is shorter than the control block (truncated, or never written).
    #[error("{} is {len} bytes long, shorter than the {need}-byte control block (truncated?)", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The control block's length.
        need: u64,
    },
    /// The magic number is not ours: a foreign file.
    #[error("{} is not a tcpshm shared-memory file (magic {found:#018x})", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first 8 bytes, little-endian.
        found: u64,
    },
    /// The file has another layout version.
    #[error("{} has layout version {found}; this build reads version {expected}", path.display())]
    BadVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this code reads.
        expected: u32,
    },
    /// The immutable part of the control block does not match its checksum (torn or
    /// overwritten).
    #[error("{}: the control block checksum does not match (corrupt header)", path.display())]
    BadChecksum {
        /// The file.
        path: PathBuf,
    },
    /// A name stored in the file is not the one in its path (renamed or foreign file).
    #[error("{}: the file says {side} name {found:?}, expected {expected:?}", path.display())]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// Which name.
        side: Side,
        /// The name stored in the file (lossy text).
        found: String,
        /// The name expected.
        expected: String,
    },
    /// The file's ring capacities differ from the ones asked for.
    #[error("{}: the file has ring capacities {found}, expected {expected}", path.display())]
    CapacityMismatch {
        /// The file.
        path: PathBuf,
        /// The file's capacities.
        found: Capacities,
        /// The capacities asked for.
        expected: Capacities,
    },
    /// The file's length is not the one its control block implies (truncated or
    /// extended).
    #[error("{} is {found} bytes long; its control block implies {expected}", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// The file's length.
        found: u64,
        /// The length implied by the control block.
        expected: u64,
    },
    /// A layout field of the control block is impossible.
    #[error("{}: invalid control block: {detail}", path.display())]
    BadLayout {
        /// The file.
        path: PathBuf,
        /// Which field and why.
        detail: &'static str,
    },
    /// A ring region is not a valid ring.
    #[error("{}: the {direction} ring is invalid: {error}", path.display())]
    Ring {
        /// The file.
        path: PathBuf,
        /// Which ring.
        direction: Direction,
        /// Why.
        error: AttachError,
    },
    /// The file kept changing while an inspection copied it: nothing was misread;
    /// try again (a busy ring may need a quieter moment).
    #[error("{}: the file changed while being read ({attempts} attempts)", path.display())]
    ChangedWhileReading {
        /// The file.
        path: PathBuf,
        /// Copies attempted.
        attempts: u32,
    },
    /// A file of one side was given where the other side's is needed.
    #[error("a {found}-side file was given where a {expected}-side file is needed")]
    WrongSide {
        /// The side needed.
        expected: Side,
        /// The side of the file given.
        found: Side,
    },
}

impl ShmError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: impl Into<std::io::Error>) -> ShmError {
        ShmError::Io { op, path: path.into(), source: e.into() }
    }
}
