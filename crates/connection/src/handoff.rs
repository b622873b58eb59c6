//! The producers' queue of a session: a many-to-one ring in a file beside the session's
//! store, where any thread pushes and the connection's polling thread drains into the
//! session's one sequence — and why a message whose push returned is delivered once,
//! whatever process dies when.
//!
//! ## The file, and who owns it
//!
//! `<storage dir>/<local>@<remote>.producers`: a [`tcpshm_ring::shm::MpscRegion`]
//! (mode 0600). One process owns it at a time (an OFD lock the kernel drops when the
//! process dies); inside that process one [`Shared`] per file, found through a
//! registry keyed by path, holds the mapping for every producer handle and for the
//! connection that drains it. So a handle outlives its connection: a connection of the
//! same session opened later in the process adopts the same queue. Taking ownership
//! (the first open in a process) recovers the ring: claims a killed process left
//! unfinished become padding; their pushes never returned, so nothing promised is
//! dropped.
//!
//! ## Exactly once across a crash
//!
//! A push returned `Ok(true)` once its record is committed in the file (one release
//! store of its length). The drain moves messages into the session's queue (the store,
//! or the outbound ring) and then releases them from the producers' queue. Two
//! commit points, in two files, cannot be one store — so the drain writes down what it
//! is about to do first, in two of the ring's consumer words (which live in the file):
//!
//! 1. `FROM` := the ring's head, then `ARMED` := `base + 1`, where `base` is the
//!    session's next seq (the seq the first moved message gets);
//! 2. each message: `alloc` + copy + `push_more` into the session's queue (seqs
//!    `base, base + 1, ...`), `pop_more` from the producers' queue;
//! 3. **commit point 1**: the session's queue publishes the batch (one store);
//! 4. **commit point 2**: the ring releases the batch (head := past them; the ring's
//!    own `releasing` word makes the release itself crash-safe);
//! 5. `ARMED` := 0.
//!
//! After a crash, the next owner compares (`settle`), before anything is pushed:
//!
//! | found | means | done |
//! |---|---|---|
//! | `ARMED = 0` | no drain in progress | nothing |
//! | armed, head ≠ `FROM` | the release happened (4): the batch is in the session | `ARMED` := 0 |
//! | armed, head = `FROM` | crashed before 4: the session published `published − base` of them (0 if 3 never happened; a prefix, if it did, is all of them) | release that many from the head, then `ARMED` := 0 |
//!
//! `published` is the session's next seq as reopened: what its queue holds for good.
//! The moved messages are exactly the first ones at the head (the drain reads in
//! order and nothing else releases), so a message is in the session's queue or in the
//! producers' queue, never in both and never in neither. The session then delivers
//! what its queue holds exactly once (the session's own rules). Messages the user
//! staged with `push_more` before a drain take seqs below `base` and are published
//! with the batch: they do not count as moved.
//!
//! What this does not cover: power loss. The producers' queue is in the page cache
//! like the store under [`Durability::Process`](tcpshm_persist::Durability::Process);
//! a message is durable once drained into a store with
//! [`Durability::Sync`](tcpshm_persist::Durability::Sync) and synced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tcpshm_proto::{Fault, Limit, Name};
use tcpshm_ring::mpsc::{Consumer, Producer as RingProducer};
use tcpshm_ring::shm::{MpscRegion, OpenError as RegionError};
use tcpshm_ring::var::PopError;

/// Consumer word: `base + 1` while a drain is in progress (0: none).
const ARMED: usize = 0;
/// Consumer word: the ring's head when the drain in progress began.
const FROM: usize = 1;

/// File name suffix of a session's producers' queue.
pub(crate) const SUFFIX: &str = "producers";

/// Why a session's producers could not be set up or drained.
///
/// ```
/// use tcpshm_connection::{ConnectionConfig, Producer, ProducerError};
/// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-producer-error-{}", std::process::id()));
/// let cfg = ConnectionConfig::default();
/// let p = Producer::for_session(&dir, "a".parse().unwrap(), "b".parse().unwrap(), &cfg).unwrap();
/// // Another owner of the same queue (here the ring crate directly, as another
/// // process would be): Busy, typed.
/// drop(p);
/// let other = tcpshm_ring::shm::MpscRegion::own(dir.join("a@b.producers"), 4096).unwrap();
/// let err = Producer::for_session(&dir, "a".parse().unwrap(), "b".parse().unwrap(), &cfg).unwrap_err();
/// assert!(matches!(err, ProducerError::Busy { .. }), "{err}");
/// # drop(other); std::fs::remove_dir_all(&dir).ok();
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// Another open owns the producers' queue: producer handles of this session that
    /// outlived their connection in another process (or a connection of another
    /// process). It drains here once they are all dropped.
    #[error("the producers' queue {} is owned by another process (its producer handles are alive)", path.display())]
    Busy {
        /// The file.
        path: PathBuf,
    },
    /// The producers' queue could not be created, opened or mapped, or is not a valid
    /// queue file (the typed error inside: a `tcpshm_ring::shm::OpenError` or an I/O
    /// error).
    #[error("producers' queue {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: Fault,
    },
    /// The producers' queue is corrupt, or does not fit the session's queue (the
    /// record of an interrupted move names more messages than it holds: the file
    /// belongs to other session files).
    #[error("producers' queue {}: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Fault,
    },
    /// A message in the producers' queue cannot move into the session's queue (it
    /// exceeds a limit lowered since it was pushed, or the store failed): it and the
    /// messages behind it wait.
    #[error("producers' queue {}: cannot move its next message: {source}", path.display())]
    Stuck {
        /// The file.
        path: PathBuf,
        /// Why the session's queue refused it.
        source: tcpshm_proto::SendError,
    },
}

/// The one in-process view of a session's producers' queue, shared by every producer
/// handle and by the connection draining it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    /// Cloned for each new handle (a ring producer is `Send`, not `Sync`).
    template: Mutex<RingProducer<'static>>,
    /// The consumer, while no connection drains (a connection takes it and gives it
    /// back when dropped).
    consumer: Mutex<Option<Consumer<'static>>>,
    /// The largest payload a push accepts now and whose limit that is:
    /// `max << 2 | kind` (kind: 0 local, 1 peer, 2 queue). Kept by the connection.
    limit: AtomicU64,
}

/// Every producers' queue this process owns, by path.
static REGISTRY: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves nothing half done (each critical
    // section is a lookup, a push or a take): go on with the data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path of the producers' queue of the session whose store is at `store_path`.
pub(crate) fn path_beside(store_path: &Path) -> PathBuf {
    store_path.with_extension(SUFFIX)
}

/// The path of the producers' queue of `(local, remote)` under `dir`.
pub(crate) fn path_in(dir: &Path, local: &Name, remote: &Name) -> PathBuf {
    dir.join(format!("{local}@{remote}.{SUFFIX}"))
}

/// A registry key that two spellings of one directory share.
fn key(path: &Path) -> PathBuf {
    match (path.parent().and_then(|d| std::fs::canonicalize(d).ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

fn encode_limit(max: usize, limit: Limit) -> u64 {
    let kind = match limit {
        Limit::Local => 0,
        Limit::Peer => 1,
        _ => 2,
    };
    (max as u64) << 2 | kind
}

impl Shared {
    /// The process's view of the queue at `path`: the one already open here, or the
    /// file opened (created with `capacity` bytes if missing) as its owner. `create`:
    /// whether a missing file is created (else `Ok(None)`).
    pub(crate) fn open(path: &Path, capacity: usize, create: bool) -> Result<Option<Arc<Shared>>, ProducerError> {
        let key = key(path);
        let mut reg = lock(&REGISTRY);
        reg.retain(|(_, w)| w.strong_count() > 0);
        if let Some(s) = reg.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade()) {
            return Ok(Some(s));
        }
        if !create && !path.exists() {
            return Ok(None);
        }
        let region = match MpscRegion::own(path, capacity) {
            Ok(r) => r,
            Err(RegionError::Busy(_)) => return Err(ProducerError::Busy { path: path.to_path_buf() }),
            Err(e @ RegionError::Corrupt { .. }) => {
                return Err(ProducerError::Corrupt { path: path.to_path_buf(), source: Fault::new(e) })
            }
            Err(e) => return Err(ProducerError::Open { path: path.to_path_buf(), source: Fault::new(e) }),
        };
        let max = region.producer.max_payload();
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            template: Mutex::new(region.producer),
            consumer: Mutex::new(Some(region.consumer)),
            limit: AtomicU64::new(encode_limit(max, Limit::Queue)),
        });
        reg.push((key, Arc::downgrade(&shared)));
        Ok(Some(shared))
    }

    /// A new ring producer.
    pub(crate) fn ring_producer(&self) -> RingProducer<'static> {
        lock(&self.template).clone()
    }

    /// The largest payload a push accepts now, and whose limit it is.
    #[inline]
    pub(crate) fn limit(&self) -> (usize, Limit) {
        let v = self.limit.load(Ordering::Relaxed);
        let kind = match v & 3 {
            0 => Limit::Local,
            1 => Limit::Peer,
            _ => Limit::Queue,
        };
        ((v >> 2) as usize, kind)
    }

    pub(crate) fn set_limit(&self, max: usize, limit: Limit) {
        self.limit.store(encode_limit(max, limit), Ordering::Relaxed);
    }
}

/// The draining side of a producers' queue, held by the connection of its session.
#[derive(Debug)]
pub(crate) struct Drain {
    pub(crate) shared: Arc<Shared>,
    /// Always `Some` while the connection holds it (taken back by `Drop`).
    consumer: Option<Consumer<'static>>,
    /// The limit last given to the producers (to store it only when it changes).
    limit: (usize, Limit),
    /// A message cannot move (sticky: the drain stops at it).
    pub(crate) stuck: Option<ProducerError>,
}

impl Drop for Drain {
    fn drop(&mut self) {
        // The next connection of the session in this process drains from here.
        *lock(&self.shared.consumer) = self.consumer.take();
    }
}

impl Drain {
    /// Takes the consumer of `shared` for a connection whose session has published
    /// `published` messages, and settles a drain a killed process left half done
    /// (see the module docs). `Ok(None)` if another connection drains it.
    pub(crate) fn take(shared: Arc<Shared>, published: u64) -> Result<Option<Drain>, ProducerError> {
        let Some(consumer) = lock(&shared.consumer).take() else { return Ok(None) };
        let mut d = Drain { shared, consumer: Some(consumer), limit: (usize::MAX, Limit::Queue), stuck: None };
        d.settle(published)?;
        Ok(Some(d))
    }

    pub(crate) fn consumer(&mut self) -> &mut Consumer<'static> {
        self.consumer.as_mut().expect("a drain holds its consumer")
    }

    fn corrupt(&self, source: Fault) -> ProducerError {
        ProducerError::Corrupt { path: self.shared.path.clone(), source }
    }

    /// Settles an interrupted drain against the session's published count.
    fn settle(&mut self, published: u64) -> Result<(), ProducerError> {
        let c = self.consumer();
        let armed = c.word(ARMED);
        if armed == 0 {
            return Ok(());
        }
        let base = armed - 1;
        if c.released_index() == c.word(FROM) {
            // Crashed before the release: the first `published - base` messages at the
            // head are in the session's queue already.
            let moved = published.saturating_sub(base);
            for k in 0..moved {
                match c.pop_more() {
                    Ok(()) => {}
                    Err(PopError::Empty) => {
                        let text = format!(
                            "an interrupted move from seq {base} left the session at {published}, but the queue \
                             holds only {k} of those messages"
                        );
                        return Err(self.corrupt(Fault::msg(text)));
                    }
                    Err(PopError::Corrupt(e)) => return Err(self.corrupt(Fault::new(e))),
                }
            }
            c.release();
        }
        self.consumer().set_word(ARMED, 0);
        Ok(())
    }

    /// Step 1 of a drain: the session's next seq is `base`.
    #[inline]
    pub(crate) fn arm(&mut self, base: u64) {
        let c = self.consumer();
        let head = c.released_index();
        c.set_word(FROM, head);
        c.set_word(ARMED, base + 1);
    }

    /// Steps 4 and 5: the batch is in the session's queue (published).
    #[inline]
    pub(crate) fn commit(&mut self) {
        self.consumer().release();
        #[cfg(feature = "testkit")]
        crate::testkit::drain::at(crate::testkit::DrainPoint::Released);
        self.consumer().set_word(ARMED, 0);
    }

    /// Gives the producers the largest payload the session takes now.
    #[inline]
    pub(crate) fn offer_limit(&mut self, max: usize, limit: Limit) {
        let ring_max = self.consumer().max_payload();
        let l = if ring_max < max { (ring_max, Limit::Queue) } else { (max, limit) };
        if l != self.limit {
            self.limit = l;
            self.shared.set_limit(l.0, l.1);
        }
    }
}
