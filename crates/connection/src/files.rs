//! The files of one side of a session, named in one place — its store and its
//! shared-memory file — and the operator's remedy after a lost state: the command
//! that resets the session (`tcpshm reset`), which the refusal and the error name.

use crate::connection::Connection;
use std::fmt;
use std::path::{Path, PathBuf};
use tcpshm_persist::file_name;
use tcpshm_proto::session::SeqMismatch;
use tcpshm_proto::Name;
use tcpshm_transport_shm::{ShmDir, Side};
use tcpshm_transport_tcp::ByteStream;

/// The files of one side of a session.
///
/// The store is `<storage dir>/<local>@<remote>.tcpshm`. The shared-memory file is
/// named after the server, then the client: a server's is
/// `<shm dir>/<prefix><local>@<remote>.shm`; a client's is
/// `<shm dir>/<prefix><server>@<local>.shm`, where the server is its store's epoch
/// (the name of the server it last logged in to; a client that never logged in has
/// none, and no file). A server's store has no epoch, which is how a tool that only
/// has a store tells the sides apart ([`SessionFiles::of_store`]).
///
/// ```
/// use tcpshm_connection::SessionFiles;
/// use tcpshm_transport_shm::{ShmDir, Side};
/// let n = |s: &str| s.parse().unwrap();
/// let shm = ShmDir::default();
/// let server = SessionFiles::new("/srv".as_ref(), n("Srv"), n("c1"), Side::Server, None, &shm);
/// assert_eq!(server.store.to_str(), Some("/srv/Srv@c1.tcpshm"));
/// assert_eq!(server.shm.as_deref().and_then(|p| p.to_str()), Some("/dev/shm/tcpshm-Srv@c1.shm"));
/// assert_eq!(server.reset_command(), "tcpshm reset /srv/Srv@c1.tcpshm");
/// let client = SessionFiles::of_store("/cli".as_ref(), n("c1"), n("gateway"), Some(n("Srv")), &shm);
/// assert_eq!(client.shm, server.shm);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFiles {
    /// The store.
    pub store: PathBuf,
    /// The shared-memory file (it may not exist: a session that never used shared
    /// memory has none).
    pub shm: Option<PathBuf>,
    /// Where shared-memory files are (for the reset command's options).
    shm_dir: ShmDir,
}

impl SessionFiles {
    /// The files of `side`'s session `local@remote` whose store is in `storage_dir`;
    /// `epoch` is the store's (a client's: the server it last logged in to).
    pub fn new(
        storage_dir: &Path,
        local: Name,
        remote: Name,
        side: Side,
        epoch: Option<Name>,
        shm: &ShmDir,
    ) -> SessionFiles {
        let pair = match side {
            Side::Server => Some((local, remote)),
            Side::Client => epoch.map(|server| (server, local)),
        };
        SessionFiles {
            store: storage_dir.join(file_name(&local, &remote)),
            shm: pair.map(|(s, c)| shm.path(&s, &c)),
            shm_dir: shm.clone(),
        }
    }

    /// The files of the session whose store is `local@remote` in `storage_dir`, with
    /// `epoch` as the store says: with an epoch it is a client's store, without one a
    /// server's (a client that never logged in has no shared-memory file either way).
    pub fn of_store(storage_dir: &Path, local: Name, remote: Name, epoch: Option<Name>, shm: &ShmDir) -> SessionFiles {
        let side = if epoch.is_some() { Side::Client } else { Side::Server };
        SessionFiles::new(storage_dir, local, remote, side, epoch, shm)
    }

    /// The command that resets this side of the session (`tcpshm reset <store>`, with
    /// the shared-memory options when they are not the defaults).
    pub fn reset_command(&self) -> String {
        let mut cmd = format!("tcpshm reset {}", shell_word(&self.store.to_string_lossy()));
        if self.shm_dir.dir() != Path::new(ShmDir::DEFAULT_DIR) {
            cmd.push_str(&format!(" --shm-dir {}", shell_word(&self.shm_dir.dir().to_string_lossy())));
        }
        if self.shm_dir.prefix() != ShmDir::DEFAULT_PREFIX {
            cmd.push_str(&format!(" --shm-prefix {}", shell_word(self.shm_dir.prefix())));
        }
        cmd
    }

    /// What to do about a lost state on this side, in one short sentence (it goes in a
    /// login reply of at most 256 bytes, before the detail): stop the process holding
    /// the session, reset it here with the command (naming the store; the
    /// shared-memory file it also removes, by name), and reset the peer's side.
    pub fn remedy(&self, side: Side) -> String {
        let shm = match &self.shm {
            Some(p) if p.exists() => {
                format!(
                    " (also removes {})",
                    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
                )
            }
            _ => String::new(),
        };
        format!(
            "to start afresh: stop the {side}, run `{}`{shm}, and reset the {}'s side too",
            self.reset_command(),
            side.peer()
        )
    }
}

/// `s` as one shell word: as it is if it needs no quoting, else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-@+:,=".contains(&b)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A lost state found by this side at login, with this side's files and the remedy
/// ([`ConnectError::SeqMismatch`](crate::ConnectError::SeqMismatch)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostState {
    /// Which numbers do not fit.
    pub mismatch: SeqMismatch,
    /// This side's files.
    pub files: SessionFiles,
    /// This side.
    pub side: Side,
}

impl LostState {
    /// Whether the peer is the side that lost state (see
    /// [`SeqMismatch::peer_lost_state`]).
    pub fn peer_lost_state(&self) -> bool {
        self.mismatch.peer_lost_state()
    }
}

impl fmt::Display for LostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.mismatch.peer_lost_state() { self.side.peer() } else { self.side };
        write!(f, "the {who} lost its state: {}; {}", self.mismatch, self.files.remedy(self.side))
    }
}

impl std::error::Error for LostState {}

impl<S: ByteStream> Connection<S> {
    /// This side's files, `side` being which side this connection is.
    pub fn files(&self, side: Side) -> SessionFiles {
        let dir = self.store.path().parent().unwrap_or(Path::new("."));
        let shm = ShmDir::new(self.cfg.shm.dir.clone(), &self.cfg.shm.prefix).unwrap_or_default();
        let mut f = SessionFiles::new(dir, self.store.local(), self.store.remote(), side, self.store.epoch(), &shm);
        if let Some(r) = &self.rings {
            f.shm = Some(r.path().to_path_buf());
        }
        f
    }
}
