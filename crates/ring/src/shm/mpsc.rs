//! A named, file-backed many-to-one queue with one owning process at a time.

use super::error::OpenError;
use super::file::{self, Kind, Map};
use super::lock;
use crate::mpsc::{self, Consumer, Producer, Recovered};
use crate::var::{AttachError, InitError};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

/// The mapping and the open file (whose lock is the owner's) behind the ends of an
/// [`MpscRegion`].
#[derive(Debug)]
pub(crate) struct MpscMapping {
    // Field order: the mapping is unmapped before the file (and its lock) is closed.
    // Held only to be dropped (unmapped, unlocked) with the last end.
    _map: Map,
    _file: File,
}

// SAFETY: the mapping is plain shared memory; every access goes through the queue's
// protocol, and the pointer stays valid until `Map` is dropped with the last `Arc`.
unsafe impl Send for MpscMapping {}
// SAFETY: as above.
unsafe impl Sync for MpscMapping {}

/// The capacity a file this call creates has.
struct MpscKind(usize);

impl Kind for MpscKind {
    type Geo = u64;
    const HEADER_LEN: usize = mpsc::HEADER_LEN;
    fn len(&self) -> usize {
        mpsc::region_size(self.0)
    }
    unsafe fn format(&self, base: *mut u8, len: usize) -> Result<u64, InitError> {
        // SAFETY: the caller's contract is `format`'s.
        unsafe { mpsc::layout::format(base, len, self.0) }
    }
    unsafe fn validate(base: *mut u8, len: usize) -> Result<u64, AttachError> {
        // SAFETY: the caller's contract is `validate`'s.
        unsafe { mpsc::layout::validate(base, len) }
    }
    fn check(&self, _: u64) -> Result<(), AttachError> {
        // An existing queue keeps its capacity.
        Ok(())
    }
}

/// A many-to-one queue ([`crate::mpsc`]) in a file, owned by one process at a time:
/// the producers of any number of threads of that process push into it, its one
/// consumer reads, and what a process pushed and did not read is there for the next
/// owner after it exits or is killed.
///
/// [`own`](MpscRegion::own) creates the file (mode 0600, formatted before its name
/// appears) or opens it, takes the owner's lock — an OFD write lock on byte 0 of the
/// file, held as long as the returned consumer or any producer (or clone) lives, and
/// dropped by the kernel when the process dies — and then, being the only owner,
/// recovers the queue ([`Consumer::recover`]): claims left by a killed process become
/// padding, an interrupted release is finished. A second owner, in any process or in
/// this one, is refused with [`OpenError::Busy`] until every end of the first is
/// dropped.
///
/// ```
/// use tcpshm_ring::shm::{MpscRegion, OpenError};
/// let path = std::env::temp_dir().join(format!("tcpshm-ring-doc-mpsc-{}", std::process::id()));
/// let owned = MpscRegion::own(&path, 4096).unwrap();
/// let mut p = owned.producer.clone();
/// p.push(1, b"survives the process").unwrap();
/// assert!(matches!(MpscRegion::own(&path, 4096), Err(OpenError::Busy(_))));
/// drop(owned);
/// drop(p);
/// let mut again = MpscRegion::own(&path, 4096).unwrap(); // the next owner
/// assert_eq!(again.recovered.messages, 1);
/// assert_eq!(again.consumer.front().unwrap().unwrap().payload(), b"survives the process");
/// std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct MpscRegion {
    /// A producer: clone it for each pushing thread.
    pub producer: Producer<'static>,
    /// The consumer.
    pub consumer: Consumer<'static>,
    /// What recovery found when this owner took the file over.
    pub recovered: Recovered,
}

impl MpscRegion {
    /// Opens the queue at `path` as its owner, creating it with `capacity` data bytes
    /// if nothing is there (an existing queue keeps its capacity); see the
    /// [type docs](Self).
    ///
    /// Errors: [`OpenError::Busy`] while another owner's ends are alive;
    /// [`OpenError::Attach`] for a file that is not a valid queue, or whose indices or
    /// records are impossible; the other [`OpenError`]s as for
    /// [`Region::open`](super::Region::open).
    ///
    /// ```
    /// use tcpshm_ring::shm::{MpscRegion, OpenError};
    /// let path = std::env::temp_dir().join(format!("tcpshm-ring-doc-mpsc-own-{}", std::process::id()));
    /// assert!(matches!(MpscRegion::own(&path, 1000), Err(OpenError::Config(_)))); // a power of two
    /// let owned = MpscRegion::own(&path, 1024).unwrap();
    /// assert_eq!(owned.consumer.capacity(), 1024);
    /// assert!(matches!(MpscRegion::own(&path, 1024), Err(OpenError::Busy(_))));
    /// drop(owned);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn own(path: impl AsRef<Path>, capacity: usize) -> Result<MpscRegion, OpenError> {
        let path = path.as_ref();
        mpsc::check_capacity(capacity).map_err(OpenError::Config)?;
        let kind = MpscKind(capacity);
        let mut last = None;
        for _ in 0..8 {
            let opened = match file::open_existing(path) {
                Ok(f) => Some(file::attach(&f, path, Some(&kind)).map(|(map, cap)| (f, map, cap))?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(OpenError::Io { path: path.into(), op: "open", source: e }),
            };
            let (f, map, cap) = match opened {
                Some(o) => o,
                None => match file::create(path, &kind)? {
                    Some(o) => o,
                    None => {
                        last = Some(OpenError::NotFound(path.into()));
                        continue;
                    }
                },
            };
            match lock::try_lock(f.as_fd(), 0) {
                Ok(true) => {}
                Ok(false) => return Err(OpenError::Busy(path.into())),
                Err(e) => return Err(OpenError::Io { path: path.into(), op: "lock", source: e }),
            }
            let base = map.base;
            let mapping = std::sync::Arc::new(MpscMapping { _map: map, _file: f });
            // (A producer made before recovery caches a head that recovery may raise:
            // a cached head only ever lags, which is allowed.)
            let (producer, mut consumer) = mpsc::ends_of_mapping(base, cap, mapping);
            // SAFETY: we hold the owner's lock: no other open of the file owns it, and
            // only an owner hands out producers, so no push is in progress anywhere
            // (every process that pushed before has dropped its ends or died).
            let recovered =
                unsafe { consumer.recover() }.map_err(|source| OpenError::Corrupt { path: path.into(), source })?;
            return Ok(MpscRegion { producer, consumer, recovered });
        }
        Err(last.unwrap_or_else(|| OpenError::NotFound(path.into())))
    }
}
