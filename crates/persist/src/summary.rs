//! A cheap read-only look at a store file for tools and retention policies: the
//! immutable header, the live words and the ring indices (one page and the ring's
//! header are read, no message), without the lock.

use crate::boot::BootId;
use crate::error::InspectError;
use crate::inspect::LiveWords;
use crate::layout::{
    file_len, get_u64, read_header, HeaderInfo, HEADER_PAGE, OFF_ACKED, OFF_BOOT, OFF_CONSUMED, OFF_NEXT_SEQ,
    OFF_SEND_CURSOR, OFF_SESSION, RING_OFF_READ, RING_OFF_WRITE,
};
use crate::session::SessionWord;
use crate::snapshot::{Mapped, Words, ATTEMPTS};
use crate::store::Store;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tcpshm_ring::var;

/// The header and counters of a store file, read without its lock ([`Store::summary`]).
///
/// The counters are the live words as the owner last stored them: exact for a file
/// whose owner is alive or exited cleanly, hints after a crash (`open` repairs them;
/// [`Store::inspect`] shows what it would resume with).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// The file.
    pub path: PathBuf,
    /// The immutable header.
    pub header: HeaderInfo,
    /// The live words and ring indices.
    pub live: LiveWords,
    /// Whether the file was last opened for writing in this machine session.
    pub same_session: bool,
}

impl Summary {
    /// Messages pushed and not yet acknowledged by the peer, as the live words say.
    pub fn queued(&self) -> u64 {
        self.live.next_seq_hint.saturating_sub(self.live.acked)
    }

    /// Bytes the send queue's ring holds (frames with their headers and padding;
    /// in `Durability::Sync` also acknowledged frames waiting for the next sync).
    pub fn queued_bytes(&self) -> u64 {
        self.live.ring_write.saturating_sub(self.live.ring_read)
    }

    /// Nothing was ever pushed or consumed in this session, by the live words: a
    /// session in which no message moved either way (e.g. left by a refused login).
    pub fn is_pristine(&self) -> bool {
        let l = &self.live;
        l.acked == 0
            && l.consumed == 0
            && l.next_seq_hint == 0
            && l.ring_write == 0
            && l.session[SessionWord::Pushed.index()] == 0
    }

    /// The value of a session word.
    pub fn session_word(&self, w: SessionWord) -> u64 {
        self.live.session[w.index()]
    }
}

impl Store {
    /// Reads the header, the live words and the ring indices of the store file at
    /// `path` without its lock: one page, no message, safe on a live store. For the
    /// messages and what `open` would do, see [`Store::inspect`].
    ///
    /// ```
    /// use tcpshm_persist::{Options, SessionWord, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-summary-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// assert!(Store::summary(s.path()).unwrap().is_pristine());
    /// s.alloc(2).unwrap().unwrap().copy_from_slice(b"hi");
    /// s.push(9, 0).unwrap();
    /// s.set_session_word(SessionWord::LastLogin, 42);
    /// let sum = Store::summary(s.path()).unwrap(); // while `s` holds the lock
    /// assert_eq!((sum.queued(), sum.queued_bytes()), (1, 32));
    /// assert_eq!(sum.session_word(SessionWord::LastLogin), 42);
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn summary(path: impl AsRef<Path>) -> Result<Summary, InspectError> {
        let path = path.as_ref();
        let io = |op, source| InspectError::Io { path: path.to_path_buf(), op, source };
        let file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| io("open", e))?;
        let len = file.metadata().map_err(|e| io("fstat", e))?.len();
        let head = HEADER_PAGE + var::HEADER_LEN;
        if len < head as u64 {
            return Err(InspectError::Truncated { path: path.to_path_buf(), len });
        }
        // SAFETY: a read-only shared mapping of the first bytes of a store file,
        // which its owner never shrinks (see `Store::inspect` for a foreign truncation);
        // every word copied out is validated.
        let map = unsafe { memmap2::MmapOptions::new().len(head).map(&file) }.map_err(|e| io("mmap", e))?;
        let src = Mapped { base: map.as_ptr(), len: map.len() };
        let mut bytes = vec![0u8; head];
        for _ in 0..ATTEMPTS {
            let read = src.load(HEADER_PAGE + RING_OFF_READ);
            src.copy(&mut bytes, 0, head);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if src.load(HEADER_PAGE + RING_OFF_READ) != read {
                continue;
            }
            let page: &[u8; HEADER_PAGE] = bytes[..HEADER_PAGE].try_into().expect("a page");
            let header =
                read_header(page).map_err(|source| InspectError::Header { path: path.to_path_buf(), source })?;
            let expected = file_len(header.capacity) as u64;
            if len != expected {
                return Err(InspectError::LengthMismatch { path: path.to_path_buf(), len, expected });
            }
            let w = |off| get_u64(&bytes, off);
            let live = LiveWords {
                acked: w(OFF_ACKED),
                consumed: w(OFF_CONSUMED),
                send_cursor: w(OFF_SEND_CURSOR),
                next_seq_hint: w(OFF_NEXT_SEQ),
                session: std::array::from_fn(|i| w(OFF_SESSION + 8 * i)),
                ring_read: read,
                ring_write: w(HEADER_PAGE + RING_OFF_WRITE),
            };
            let boot = BootId(bytes[OFF_BOOT..OFF_BOOT + 16].try_into().expect("16 bytes"));
            let same_session = boot.same_session(&BootId::current());
            return Ok(Summary { path: path.to_path_buf(), header, live, same_session });
        }
        Err(InspectError::ChangedWhileReading { path: path.to_path_buf(), attempts: ATTEMPTS })
    }
}
