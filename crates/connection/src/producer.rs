//! Pushing from any thread: a [`Producer`] handle per thread, a many-to-one queue per
//! session, drained into the session's one sequence by the connection's `poll` (see
//! `handoff.rs` for the queue's file and the exactly-once argument).

use crate::config::ConnectionConfig;
use crate::connection::Connection;
use crate::handoff::{self, Drain, Shared};
use std::path::Path;
use std::sync::Arc;
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::{Fault, Limit, Name, Nanos, SendError, Transport};
use tcpshm_ring::mpsc::{Producer as RingProducer, PushError};
use tcpshm_transport_tcp::ByteStream;

pub use crate::handoff::ProducerError;

/// Most messages one drain moves (a `poll` with producers pushing faster than it
/// drains still returns).
const DRAIN_BATCH: usize = 1024;

/// A handle that pushes messages into a session from any thread: `Send + Clone`, one
/// clone per thread (like an `mpsc::Sender`). Get one from
/// [`Connection::producer`] (a client's connection: `Client::producer`) or, for a
/// session that may not be open in this process yet, [`Producer::for_session`] (a
/// server's group: `Group::producer`).
///
/// A push writes the message in place into the session's producers' queue — a
/// many-to-one ring in a file beside the session's store (Aeron's design: one
/// compare-and-swap to claim, the payload written in place, the length stored to
/// commit) — with no lock, no allocation and no system call. The connection's polling
/// thread moves what was pushed into the session's one sequence at its next `poll`
/// (one copy; that is where the message gets its seq), from where it is delivered like
/// any message: over TCP or shared memory, across reconnects and restarts.
///
/// * **Order**: a handle's messages keep their order (messages of different handles
///   interleave in the order they were pushed).
/// * **Backpressure** is a value: `Ok(false)` when the producers' queue is full (the
///   polling thread is behind, or the session's queue is full): try again later.
///   Never a block, never an error.
/// * **Exactly once**: a push that returned `Ok(true)` is delivered to the peer exactly
///   once, even if this process is killed right after it, or while the polling thread
///   is moving messages into the session (the next process that opens the session
///   drains the rest).
///
/// ```
/// use tcpshm_connection::{Connection, ConnectionConfig};
/// use tcpshm_persist::{Options, Store};
/// use tcpshm_proto::login::TransportKind;
/// use tcpshm_proto::{Name, Transport};
///
/// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-producer-{}", std::process::id()));
/// let cfg = ConnectionConfig::default();
/// let (me, peer) = (Name::new("client").unwrap(), Name::new("server").unwrap());
/// let (store, _) = Store::open(&dir, me, peer, &Options::new(cfg.queue_bytes), None, 0).unwrap();
/// let mut conn: Connection = Connection::open(store, None, TransportKind::Tcp, cfg).unwrap();
///
/// let producer = conn.producer().unwrap();
/// let feeds: Vec<_> = (0..2)
///     .map(|t| {
///         let mut p = producer.clone();
///         std::thread::spawn(move || {
///             for i in 0..100u32 {
///                 // Zero-copy: the closure writes the payload in place.
///                 while !p.push_with(1, 4, |buf| buf.copy_from_slice(&(t * 1000 + i).to_le_bytes())).unwrap() {
///                     std::thread::yield_now(); // full: the polling thread is behind
///                 }
///             }
///         })
///     })
///     .collect();
/// for f in feeds {
///     f.join().unwrap();
/// }
/// // The polling thread moves them into the session (here, before any login: the store).
/// let mut now = 0;
/// while conn.counters().next_seq < 200 {
///     now += 1_000;
///     conn.poll(now);
/// }
/// assert_eq!(conn.counters().pushed, 200);
/// # drop((conn, producer)); std::fs::remove_dir_all(&dir).ok();
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    ring: RingProducer<'static>,
    shared: Arc<Shared>,
}

impl Producer {
    /// A handle for the session `(local, remote)` whose store lives in `storage_dir`
    /// (the directory is created if missing), whether or not a connection of it is
    /// open in this process: what it pushes waits in the session's producers' queue
    /// until a connection of the session is open here and polled (a server's session
    /// opens at its client's login). `cfg` gives the size of a queue this creates
    /// ([`ConnectionConfig::producer_queue_bytes`]).
    ///
    /// [`ProducerError::Busy`] while another process owns the queue.
    ///
    /// ```
    /// use tcpshm_connection::{Connection, ConnectionConfig, Producer};
    /// use tcpshm_proto::login::TransportKind;
    /// use tcpshm_proto::{Name, Transport};
    /// use tcpshm_transport_shm::Side;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-for-session-{}", std::process::id()));
    /// let cfg = ConnectionConfig::default();
    /// let (server, client) = (Name::new("server").unwrap(), Name::new("client").unwrap());
    /// // A fill for a client whose session is not open here (offline, or never seen).
    /// let mut fills = Producer::for_session(&dir, server, client, &cfg).unwrap();
    /// assert!(fills.push(1, b"fill: 100 @ 99.5").unwrap());
    /// // The session opens (at the client's login, on a server); its poll takes it in.
    /// let mut conn: Connection =
    ///     Connection::open_session(&dir, server, client, Side::Server, TransportKind::Tcp, cfg, 0).unwrap();
    /// conn.poll(1);
    /// assert_eq!(conn.counters().next_seq, 1);
    /// # drop((conn, fills)); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn for_session(
        storage_dir: &Path,
        local: Name,
        remote: Name,
        cfg: &ConnectionConfig,
    ) -> Result<Producer, ProducerError> {
        let path = handoff::path_in(storage_dir, &local, &remote);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(storage_dir)
                .map_err(|e| ProducerError::Open { path: path.clone(), source: Fault::new(e) })?;
        }
        let shared = Shared::open(&path, cfg.producer_queue_bytes, true)?.expect("created if missing");
        Ok(Producer { ring: shared.ring_producer(), shared })
    }

    fn check(&self, msg_type: u16, len: usize) -> Result<(), SendError> {
        if !msg_type::is_user(msg_type) {
            return Err(SendError::ReservedType(msg_type));
        }
        let (max, limit) = self.shared.limit();
        if len > max {
            return Err(SendError::TooLarge { len, max, limit });
        }
        Ok(())
    }

    /// Pushes a message of `len` payload bytes that `fill` writes in place (zero-copy),
    /// with type `msg_type` (a user type): `Ok(true)` once it is committed (from then
    /// on it is delivered exactly once), `Ok(false)` if the producers' queue is full now
    /// (`fill` was not called). [`SendError::TooLarge`] above
    /// [`max_payload`](Self::max_payload), [`SendError::ReservedType`] for a control
    /// type. If `fill` panics, nothing is pushed and the queue goes on.
    ///
    /// (Example: [`Producer`].)
    ///
    /// ```
    /// # use tcpshm_connection::{ConnectionConfig, Producer};
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-push-with-{}", std::process::id()));
    /// let mut p = Producer::for_session(&dir, "a".parse().unwrap(), "b".parse().unwrap(), &ConnectionConfig::default()).unwrap();
    /// let price: u64 = 99_50;
    /// // Written in place in the producers' queue: no buffer of the caller's.
    /// assert!(p.push_with(7, 8, |buf| buf.copy_from_slice(&price.to_le_bytes())).unwrap());
    /// # drop(p); std::fs::remove_dir_all(&dir).ok();
    /// ```
    #[inline]
    pub fn push_with(&mut self, msg_type: u16, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<bool, SendError> {
        self.check(msg_type, len)?;
        self.ring.push_with(len, msg_type, fill).map_err(|e| match e {
            PushError::TooLarge { len, max } => SendError::TooLarge { len, max, limit: Limit::Queue },
            PushError::Corrupt(c) => SendError::Storage(Fault::new(c)),
        })
    }

    /// Pushes a copy of `payload` (see [`push_with`](Self::push_with)).
    ///
    /// ```
    /// # use tcpshm_connection::{ConnectionConfig, Producer};
    /// # use tcpshm_proto::{Name, SendError};
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-push-{}", std::process::id()));
    /// # let mut cfg = ConnectionConfig::default();
    /// cfg.producer_queue_bytes = 256;
    /// let mut p = Producer::for_session(&dir, Name::new("a").unwrap(), Name::new("b").unwrap(), &cfg).unwrap();
    /// assert_eq!(p.max_payload(), 120);
    /// assert!(p.push(1, &[0; 120]).unwrap());
    /// assert!(p.push(1, &[0; 120]).unwrap());
    /// assert!(!p.push(1, &[0; 8]).unwrap()); // full: nobody drains this session here
    /// assert!(matches!(p.push(1, &[0; 121]), Err(SendError::TooLarge { .. })));
    /// assert!(matches!(p.push(0xFFFF, b""), Err(SendError::ReservedType(0xFFFF))));
    /// # drop(p); std::fs::remove_dir_all(&dir).ok();
    /// ```
    #[inline]
    pub fn push(&mut self, msg_type: u16, payload: &[u8]) -> Result<bool, SendError> {
        self.push_with(msg_type, payload.len(), |buf| buf.copy_from_slice(payload))
    }

    /// The largest payload a push accepts now: the session's limit (this side's, the
    /// peer's as its last login told) as the draining connection last saw it, and at
    /// most half the producers' queue.
    ///
    /// ```
    /// # use tcpshm_connection::{Connection, ConnectionConfig};
    /// # use tcpshm_proto::{login::TransportKind, Name};
    /// # use tcpshm_transport_shm::Side;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-max-payload-{}", std::process::id()));
    /// let mut cfg = ConnectionConfig::default();
    /// cfg.session.max_message = 1000;
    /// let (a, b) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let mut conn: Connection = Connection::open_session(&dir, a, b, Side::Client, TransportKind::Tcp, cfg, 0).unwrap();
    /// let p = conn.producer().unwrap();
    /// assert_eq!(p.max_payload(), 1000); // the session's limit (the peer's, after a login)
    /// # drop((conn, p)); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn max_payload(&self) -> usize {
        self.shared.limit().0
    }

    /// The file of the session's producers' queue.
    ///
    /// ```
    /// # use tcpshm_connection::{ConnectionConfig, Producer};
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-path-{}", std::process::id()));
    /// let p = Producer::for_session(&dir, "me".parse().unwrap(), "peer".parse().unwrap(), &ConnectionConfig::default()).unwrap();
    /// assert_eq!(p.path(), dir.join("me@peer.producers"));
    /// # drop(p); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// The connection's side of its producers: the drain, or when to try to get it again.
#[derive(Debug, Default)]
pub(crate) struct Producers {
    drain: Option<Drain>,
    /// The queue was owned elsewhere: when to try again (the poll's `now`).
    retry_at: Option<Nanos>,
}

impl<S: ByteStream> Connection<S> {
    /// A producer handle for this connection's session: `Send + Clone`, for pushing
    /// from other threads (see [`Producer`]). What it pushes is moved into the
    /// session's sequence by this connection's [`poll`](Transport::poll) (or
    /// [`drain_producers`](Self::drain_producers)), in the order each handle pushed.
    ///
    /// The first call creates the session's producers' queue (a file beside the store,
    /// [`ConnectionConfig::producer_queue_bytes`]). Handles outlive the connection:
    /// what they push waits for the next connection of the session.
    ///
    /// [`ProducerError::Busy`] while another process owns the queue (handles that
    /// outlived a connection there).
    ///
    /// ```
    /// # use tcpshm_connection::{Connection, ConnectionConfig};
    /// # use tcpshm_proto::{login::TransportKind, Name, Transport};
    /// # use tcpshm_transport_shm::Side;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-conn-producer-{}", std::process::id()));
    /// let (a, b) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let cfg = ConnectionConfig::default();
    /// let mut conn: Connection = Connection::open_session(&dir, a, b, Side::Client, TransportKind::Tcp, cfg, 0).unwrap();
    /// let mut p = conn.producer().unwrap();
    /// std::thread::spawn(move || assert!(p.push(1, b"from another thread").unwrap())).join().unwrap();
    /// conn.poll(1);
    /// assert_eq!(conn.counters().pushed, 1);
    /// # drop(conn); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn producer(&mut self) -> Result<Producer, ProducerError> {
        if self.producers.drain.is_none() {
            self.attach_producers(true)?;
        }
        match &self.producers.drain {
            Some(d) => Ok(Producer { ring: d.shared.ring_producer(), shared: d.shared.clone() }),
            None => Err(ProducerError::Busy { path: handoff::path_beside(self.store.path()) }),
        }
    }

    /// Takes the session's producers' queue if it exists (or `create`), settling a
    /// move a killed process left half done. A queue owned elsewhere is tried again
    /// later from `poll`.
    pub(crate) fn attach_producers(&mut self, create: bool) -> Result<(), ProducerError> {
        let path = handoff::path_beside(self.store.path());
        let shared = match Shared::open(&path, self.cfg.producer_queue_bytes, create) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(e @ ProducerError::Busy { .. }) => {
                self.producers.retry_at = Some(self.now.saturating_add(self.cfg.check_interval));
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // The session's queue as reopened: what it holds for good.
        let published = self.session.seq().next_seq() - self.store.staged() - self.staged_in_ring();
        match Drain::take(shared, published)? {
            Some(d) => {
                self.producers = Producers { drain: Some(d), retry_at: None };
                self.offer_producer_limit();
                Ok(())
            }
            None => Err(ProducerError::Busy { path }),
        }
    }

    fn staged_in_ring(&self) -> u64 {
        // Ring pushes are published at once, except `push_more`s of the user's.
        self.rings.as_ref().map_or(0, |r| r.tx.staged())
    }

    /// Tells the producers the largest payload the session takes now.
    #[inline]
    pub(crate) fn offer_producer_limit(&mut self) {
        let (mut max, mut limit) = match self.session.check_send(usize::MAX) {
            Err(SendError::TooLarge { max, limit, .. }) => (max, limit),
            _ => (usize::MAX, Limit::Local),
        };
        let queue = self.max_payload();
        if queue < max {
            (max, limit) = (queue, Limit::Queue);
        }
        if let Some(d) = &mut self.producers.drain {
            d.offer_limit(max, limit);
        }
    }

    /// Moves what producer handles pushed into the session's sequence (at most 1024
    /// messages per call), as far as the session's queue has room; returns how many.
    /// [`poll`](Transport::poll) does this first; a caller that drives a connection
    /// with the readiness calls instead calls it in its loop. Nothing to move costs one
    /// load.
    ///
    /// ```
    /// # use tcpshm_connection::{Connection, ConnectionConfig};
    /// # use tcpshm_persist::{Options, Store};
    /// # use tcpshm_proto::{login::TransportKind, Name, Transport};
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-drain-{}", std::process::id()));
    /// # let cfg = ConnectionConfig::default();
    /// # let (store, _) = Store::open(&dir, Name::new("a").unwrap(), Name::new("b").unwrap(), &Options::new(cfg.queue_bytes), None, 0).unwrap();
    /// let mut conn: Connection = Connection::open(store, None, TransportKind::Tcp, cfg).unwrap();
    /// let mut p = conn.producer().unwrap();
    /// p.push(1, b"one").unwrap();
    /// p.push(1, b"two").unwrap();
    /// assert_eq!(conn.drain_producers(), 2);
    /// assert_eq!(conn.drain_producers(), 0);
    /// assert_eq!(conn.counters().next_seq, 2);
    /// # drop((conn, p)); std::fs::remove_dir_all(&dir).ok();
    /// ```
    #[inline]
    pub fn drain_producers(&mut self) -> usize {
        let Some(d) = &mut self.producers.drain else {
            if matches!(self.producers.retry_at, Some(t) if self.now >= t) {
                self.producers.retry_at = None;
                // Busy again: `attach_producers` set the next try. Any other error
                // is sticky in the queue and reported by `producers_stuck`.
                let _ = self.attach_producers(false);
            }
            return 0;
        };
        if d.stuck.is_some() {
            return 0;
        }
        // One load when nothing is committed at the head.
        if matches!(d.consumer().front(), Ok(None)) {
            return 0;
        }
        self.offer_producer_limit();
        self.drain_batch()
    }

    /// Whether this connection drains a producers' queue (its session has one, and it
    /// is not owned by another process).
    ///
    /// ```
    /// # use tcpshm_connection::{Connection, ConnectionConfig};
    /// # use tcpshm_proto::{login::TransportKind, Name};
    /// # use tcpshm_transport_shm::Side;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-has-producers-{}", std::process::id()));
    /// let (a, b) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let open = || -> Connection {
    ///     Connection::open_session(&dir, a, b, Side::Client, TransportKind::Tcp, ConnectionConfig::default(), 0).unwrap()
    /// };
    /// let mut conn = open();
    /// assert!(!conn.has_producers()); // no queue until a first handle
    /// drop(conn.producer().unwrap());
    /// assert!(conn.has_producers());
    /// drop(conn);
    /// assert!(open().has_producers()); // the session's queue exists: taken at open
    /// # std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn has_producers(&self) -> bool {
        self.producers.drain.is_some()
    }

    /// Why messages of the producers' queue do not move (sticky): a message over a
    /// limit lowered since it was pushed, a store failure, a corrupt queue. `None`
    /// while they move.
    ///
    /// ```
    /// # use tcpshm_connection::{Connection, ConnectionConfig};
    /// # use tcpshm_proto::{login::TransportKind, Name, Transport};
    /// # use tcpshm_transport_shm::Side;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-conn-doc-stuck-{}", std::process::id()));
    /// let (a, b) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let mut conn: Connection =
    ///     Connection::open_session(&dir, a, b, Side::Client, TransportKind::Tcp, ConnectionConfig::default(), 0).unwrap();
    /// let mut p = conn.producer().unwrap();
    /// p.push(1, b"fine").unwrap();
    /// conn.poll(1);
    /// assert!(conn.producers_stuck().is_none());
    /// # drop((conn, p)); std::fs::remove_dir_all(&dir).ok();
    /// ```
    pub fn producers_stuck(&self) -> Option<&ProducerError> {
        self.producers.drain.as_ref().and_then(|d| d.stuck.as_ref())
    }

    /// The drain itself: see `handoff.rs` for the steps and the crash argument.
    fn drain_batch(&mut self) -> usize {
        let Some(mut d) = self.producers.drain.take() else { return 0 };
        // Step 1 (the caller saw a message at the head).
        d.arm(self.session.seq().next_seq());
        #[cfg(feature = "testkit")]
        crate::testkit::drain::at(crate::testkit::DrainPoint::Armed);
        let mut moved = 0;
        let mut stuck = None;
        while moved < DRAIN_BATCH {
            let m = match d.consumer().front() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    stuck = Some(ProducerError::Corrupt { path: d.shared.path.clone(), source: Fault::new(e) });
                    break;
                }
            };
            let ty = m.msg_type();
            match self.alloc_queue(m.payload().len()) {
                Ok(Some(buf)) => buf.copy_from_slice(m.payload()),
                // The session's queue is full: the rest waits in the producers' queue.
                Ok(None) => break,
                Err(e) => {
                    stuck = Some(ProducerError::Stuck { path: d.shared.path.clone(), source: e });
                    break;
                }
            }
            if let Err(e) = self.push_common(ty, false) {
                stuck = Some(ProducerError::Stuck { path: d.shared.path.clone(), source: e });
                break;
            }
            if let Err(e) = d.consumer().pop_more() {
                stuck = Some(ProducerError::Corrupt { path: d.shared.path.clone(), source: Fault::new(e) });
                break;
            }
            moved += 1;
        }
        if moved > 0 {
            #[cfg(feature = "testkit")]
            crate::testkit::drain::at(crate::testkit::DrainPoint::Moved);
            // Commit point 1: the batch is in the session's queue. (A store whose sync
            // fails has published the batch before failing: the link ends, the batch
            // stays moved.)
            if let Err(reason) = self.publish_staged() {
                self.fail(reason, true);
            }
            #[cfg(feature = "testkit")]
            crate::testkit::drain::at(crate::testkit::DrainPoint::Published);
        }
        // Commit point 2: released from the producers' queue; then disarmed.
        d.commit();
        if stuck.is_some() {
            d.stuck = stuck;
        }
        self.producers.drain = Some(d);
        moved
    }
}
