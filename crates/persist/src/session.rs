//! Session words: a few numbers the connection layer keeps with the store, so that
//! they survive a restart with the queue they describe.
//!
//! Not on any hot path: each set is one store into the mapping, made durable by the
//! next sync (they are part of every commit record, so after a machine restart they
//! are the values of the last completed sync, like everything else). Kept across
//! reopen, migration and epoch adoption; cleared by an epoch reset.

use crate::layout::OFF_SESSION;
use crate::store::Store;
use std::sync::atomic::Ordering;

/// One of the store's persisted session words ([`Store::session_word`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionWord {
    /// The largest message the peer accepts (bytes; 0 = unknown).
    PeerMaxMessage,
    /// The peer's receive queue capacity (bytes; 0 = unknown).
    PeerQueueCapacity,
    /// How many messages this side ever pushed into the session, through any medium
    /// (0 = no record): kept beside the queue, so that a login after a lost
    /// shared-memory file, whose rings carried the last of them, knows messages
    /// were lost instead of renumbering past them.
    Pushed,
    /// The caller's `now` at this side's last completed login (0 = never): what a
    /// server's retention policy measures a session's age from. In the clock the
    /// caller passes as `now` (the library reads none).
    LastLogin,
}

impl SessionWord {
    /// Every session word, in storage order.
    pub const ALL: [SessionWord; crate::SESSION_WORDS] =
        [SessionWord::PeerMaxMessage, SessionWord::PeerQueueCapacity, SessionWord::Pushed, SessionWord::LastLogin];

    /// Its index in storage order (0..[`SESSION_WORDS`](crate::SESSION_WORDS)).
    pub const fn index(self) -> usize {
        match self {
            SessionWord::PeerMaxMessage => 0,
            SessionWord::PeerQueueCapacity => 1,
            SessionWord::Pushed => 2,
            SessionWord::LastLogin => 3,
        }
    }
}

impl Store {
    /// The value of a session word (0 until set).
    ///
    /// ```
    /// use tcpshm_persist::{Options, SessionWord, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-session-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// assert_eq!(s.session_word(SessionWord::PeerMaxMessage), 0);
    /// s.set_session_word(SessionWord::PeerMaxMessage, 1 << 20);
    /// drop(s);
    /// let (s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// assert_eq!(s.session_word(SessionWord::PeerMaxMessage), 1 << 20);
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn session_word(&self, w: SessionWord) -> u64 {
        self.session[w.index()]
    }

    /// Sets a session word (one store into the file; durable at the next sync).
    pub fn set_session_word(&mut self, w: SessionWord, value: u64) {
        let i = w.index();
        if self.session[i] == value {
            return;
        }
        self.counter(OFF_SESSION + 8 * i).store(value, Ordering::Release);
        self.session[i] = value;
        self.commits.dirty = true;
    }
}
