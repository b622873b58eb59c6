//! `ShmData`: the data part of a connection — the two rings, no system call.

use crate::error::{Direction, Side};
use crate::file::{Ends, FileInner};
use crate::state::{CloseHandle, Shared, View};
use std::sync::Arc;
use tcpshm_proto::frame::msg_type::MAX_USER;
use tcpshm_proto::{CloseReason, Counters, Msg, Name, Nanos, SendError, Transport};
use tcpshm_ring::var::frame::{align_up, FrameHeader, FLAG_WRAP, FRAME_HEADER_LEN};
use tcpshm_ring::var::{AllocError, PopError};

/// The data part of a shared-memory connection: the outbound ring's producer and the
/// inbound ring's consumer, plus counters. Every operation is a few loads and stores
/// on the mapping — no system call, no allocation, no lock — so it can be polled from
/// a dedicated thread ([`ShmConnection::split`](crate::ShmConnection::split)) while
/// the control part runs elsewhere. `Send`, not `Sync`.
///
/// It implements [`Transport`] (for the hot path of a split connection):
/// * `alloc`/`push` write straight into the outbound ring: the payload you fill is
///   the ring payload, no prefix. `push` publishes (one release store, the commit
///   point of the sender: the message is then in the file and survives a crash of
///   either process); `push_more` stages without publishing, and the batch becomes
///   visible (and durable) at the next `push` or `poll`.
/// * `front` borrows the next message of the inbound ring in place; `pop` releases it
///   (one release store of the ring's read index, the commit point of the receiver:
///   a popped message is never seen again, an unpopped one is seen again after any
///   crash or reattach).
/// * [`Msg::seq`] is a local count: the number of messages this `ShmData` has popped
///   before this one. It starts at 0 in each process (the ring does not number
///   messages; order and exactly-once come from its indices).
/// * `poll` publishes staged messages, applies a pending [`CloseHandle`] request and
///   catches up with the shared state (a close seen by the control part). `close`
///   closes the session at once; the control part sends the close frame at its poll.
/// * Pushing while disconnected is allowed: the rings stay mapped and the peer reads
///   the messages when it attaches again. Receiving continues too.
/// * A corrupt ring (impossible index or frame from the peer, or a reserved message
///   type in it) closes the connection with [`CloseReason::Corrupt`]; `front` then
///   returns `None` (inbound ring) or `alloc` returns `SendError::Storage`
///   (outbound ring), for good: the file needs a reset.
/// * `counters`: `sent` counts published messages, `acked` those of this process
///   the peer has popped, `queue_depth` the messages in the outbound ring not yet
///   popped (including any an earlier process left); `resent` is always 0 (nothing
///   is ever sent twice). `counters` walks the unconsumed frames of the outbound ring
///   (O(queue depth)); it is meant for monitoring, not for every message.
pub struct ShmData {
    // The ring ends (inside `tx` and `rx`) first: they point into the mapping that
    // `file` keeps alive.
    tx: Tx,
    rx: Rx,
    file: Arc<FileInner>,
    shared: Arc<Shared>,
    view: View,
    out: Direction,
}

/// The sending half: the outbound ring's producer and its counters.
#[derive(Debug)]
struct Tx {
    ring: tcpshm_ring::var::Producer<'static>,
    max_payload: usize,
    staged: u64,
    pushed: u64,
    sent: u64,
    corrupt: bool,
}

/// The receiving half: the inbound ring's consumer and its counters.
#[derive(Debug)]
struct Rx {
    ring: tcpshm_ring::var::Consumer<'static>,
    received: u64,
    popped: u64,
    /// Ring index of the last message counted in `received`.
    last_seen: u64,
    /// `front` returned a message that was not popped yet.
    fronted: bool,
    corrupt: bool,
}

/// Records a corrupt ring (sticky) and closes the session with `reason`.
fn fail(shared: &Shared, view: &mut View, reason: CloseReason) {
    shared.corrupt(reason);
    view.refresh(shared);
}

impl Tx {
    #[inline]
    fn alloc(&mut self, shared: &Shared, view: &mut View, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        if len > self.max_payload {
            return Err(SendError::TooLarge { len, max: self.max_payload });
        }
        if self.corrupt {
            return Err(SendError::Storage("the outbound ring is corrupt".into()));
        }
        match self.ring.alloc(len) {
            Ok(buf) => Ok(buf),
            Err(AllocError::TooLarge { len, max }) => Err(SendError::TooLarge { len, max }),
            Err(AllocError::Corrupt(c)) => {
                self.corrupt = true;
                let text = format!("outbound ring: {c}");
                fail(shared, view, CloseReason::Corrupt(text.clone()));
                Err(SendError::Storage(text))
            }
        }
    }

    #[inline]
    fn push(&mut self, msg_type: u16, publish: bool) -> Result<(), SendError> {
        if msg_type > MAX_USER {
            return Err(SendError::ReservedType(msg_type));
        }
        if publish {
            self.ring.push(msg_type).map_err(|_| SendError::NothingAllocated)?;
            self.sent += self.staged + 1;
            self.staged = 0;
        } else {
            self.ring.push_more(msg_type).map_err(|_| SendError::NothingAllocated)?;
            self.staged += 1;
        }
        self.pushed += 1;
        Ok(())
    }

    /// Publishes frames staged by `push_more`.
    #[inline]
    fn flush(&mut self) {
        if self.staged > 0 {
            self.ring.publish();
            self.sent += self.staged;
            self.staged = 0;
        }
    }
}

impl Rx {
    #[inline]
    fn front(&mut self, shared: &Shared, view: &mut View) -> Option<Msg<'_>> {
        if self.corrupt {
            return None;
        }
        let Rx { ring, received, last_seen, fronted, popped, corrupt } = self;
        match ring.front() {
            Ok(Some(m)) => {
                if m.msg_type() > MAX_USER {
                    *corrupt = true;
                    let text = format!("inbound ring: a message of reserved type {:#06x}", m.msg_type());
                    fail(shared, view, CloseReason::Corrupt(text));
                    return None;
                }
                if m.index() != *last_seen {
                    *received += 1;
                    *last_seen = m.index();
                }
                *fronted = true;
                Some(Msg { msg_type: m.msg_type(), seq: *popped, payload: m.payload() })
            }
            Ok(None) => None,
            Err(c) => {
                *corrupt = true;
                fail(shared, view, CloseReason::Corrupt(format!("inbound ring: {c}")));
                None
            }
        }
    }

    #[inline]
    fn pop(&mut self, shared: &Shared, view: &mut View) {
        // Through `front` unless it was just called, so `received` and the checks see
        // every message.
        if !self.fronted && self.front(shared, view).is_none() {
            return;
        }
        match self.ring.pop() {
            Ok(()) => self.popped += 1,
            Err(PopError::Empty) => {}
            Err(PopError::Corrupt(c)) => {
                self.corrupt = true;
                fail(shared, view, CloseReason::Corrupt(format!("inbound ring: {c}")));
            }
        }
        self.fronted = false;
    }
}

/// The sending side of a [`ShmData`] on its own, borrowed while the front message is
/// borrowed too ([`ShmData::front_split`]): a handler reads a request in place in the
/// inbound ring and writes its reply in place in the outbound ring, with no copy in
/// between. [`push`](Self::push) publishes at once, like [`ShmData`]'s.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use tcpshm_proto::{Name, Transport};
/// use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmDir, ShmFile};
///
/// let dir = ShmDir::new("/dev/shm", &format!("doc-sender-{}-", std::process::id())).unwrap();
/// let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
/// let (a, b) = UnixStream::pair().unwrap();
/// let sf = ShmFile::create_or_open(&dir, &s, &c, Capacities::symmetric(4096)).unwrap();
/// let mut server = ShmConnection::server(sf, a, ShmConfig::default()).unwrap();
/// let mut client = ShmConnection::client(ShmFile::open(&dir, &s, &c).unwrap(), b, ShmConfig::default()).unwrap();
///
/// client.alloc(3).unwrap().unwrap().copy_from_slice(b"abc");
/// client.push(1).unwrap();
/// // Zero-copy echo: the reply is written from the request, both in place.
/// let (req, mut tx) = server.data().front_split().unwrap();
/// tx.alloc(req.payload.len()).unwrap().unwrap().copy_from_slice(req.payload);
/// tx.push(req.msg_type).unwrap();
/// server.pop();
/// assert_eq!(client.front().unwrap().payload, b"abc");
/// # drop((server, client));
/// # dir.remove(&s, &c).unwrap();
/// ```
#[derive(Debug)]
pub struct ShmSender<'a> {
    tx: &'a mut Tx,
    shared: &'a Shared,
    view: &'a mut View,
}

impl ShmSender<'_> {
    /// Reserves `len` bytes in the outbound ring (zero-copy); `Ok(None)`: full now.
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.tx.alloc(self.shared, self.view, len)
    }

    /// Publishes the allocated message with `msg_type` (a user type).
    #[inline]
    pub fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.tx.push(msg_type, true)
    }

    /// Stages the allocated message; it is published with the next `push` or poll.
    #[inline]
    pub fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.tx.push(msg_type, false)
    }
}

impl std::fmt::Debug for ShmData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmData")
            .field("path", &self.file.path)
            .field("side", &self.file.side)
            .field("connected", &self.view.is_connected())
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl ShmData {
    pub(crate) fn new(ends: Ends, file: Arc<FileInner>, shared: Arc<Shared>, max_payload: usize) -> ShmData {
        let out = match file.side {
            Side::Server => Direction::ServerToClient,
            Side::Client => Direction::ClientToServer,
        };
        let view = View::new(&shared);
        let max_payload = max_payload.min(ends.tx.max_payload());
        ShmData {
            tx: Tx { ring: ends.tx, max_payload, staged: 0, pushed: 0, sent: 0, corrupt: false },
            rx: Rx { ring: ends.rx, received: 0, popped: 0, last_seen: u64::MAX, fronted: false, corrupt: false },
            file,
            shared,
            view,
            out,
        }
    }

    /// Gives the ring ends back (for [`ShmConnection::detach`](crate::ShmConnection::detach)).
    pub(crate) fn into_ends(mut self) -> (Ends, Arc<FileInner>) {
        self.tx.flush();
        (Ends { tx: self.tx.ring, rx: self.rx.ring }, self.file)
    }

    /// The front message and the sending side, borrowed together (zero-copy
    /// request/reply); `None` when no message is available.
    #[inline]
    pub fn front_split(&mut self) -> Option<(Msg<'_>, ShmSender<'_>)> {
        let msg = self.rx.front(&self.shared, &mut self.view)?;
        Some((msg, ShmSender { tx: &mut self.tx, shared: &self.shared, view: &mut self.view }))
    }

    /// The sending side alone.
    #[inline]
    pub fn sender(&mut self) -> ShmSender<'_> {
        ShmSender { tx: &mut self.tx, shared: &self.shared, view: &mut self.view }
    }

    /// A handle that requests a close from any thread.
    pub fn close_handle(&self) -> CloseHandle {
        CloseHandle { shared: self.shared.clone() }
    }

    /// This side.
    pub fn side(&self) -> Side {
        self.file.side
    }

    /// This side's name.
    pub fn local_name(&self) -> &Name {
        match self.file.side {
            Side::Server => &self.file.server,
            Side::Client => &self.file.client,
        }
    }

    /// The peer's name.
    pub fn remote_name(&self) -> &Name {
        match self.file.side {
            Side::Server => &self.file.client,
            Side::Client => &self.file.server,
        }
    }

    /// The session epoch in the file (the server's login count).
    pub fn epoch(&self) -> u64 {
        self.file.control().epoch().load(std::sync::atomic::Ordering::Acquire)
    }

    /// The local session number as seen at the last poll: 0 for the first attach,
    /// +1 per reattach.
    pub fn session(&self) -> u64 {
        self.view.session()
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.file.path
    }

    /// Messages in the outbound ring not yet popped by the peer (walks them).
    fn unconsumed(&self) -> u64 {
        let (base, cap) = self.file.ring_data(self.out);
        let write = self.tx.ring.write_index();
        let used = cap - self.tx.ring.free_bytes().min(cap);
        count_frames(base, cap, write - used.min(write), write)
    }

    /// Refreshes the view after the control part changed the shared state (same
    /// thread, unsplit connection).
    pub(crate) fn refresh(&mut self) {
        self.view.refresh(&self.shared);
    }

    pub(crate) fn file(&self) -> &FileInner {
        &self.file
    }
}

/// Counts the message frames between ring indices `from` and `to` of a ring whose
/// data area (`cap` bytes) starts at `base`. Every header is checked before it is
/// followed, so a scribbled ring gives a wrong count, never an out-of-bounds read or
/// an endless loop (each step advances by at least 8 bytes).
fn count_frames(base: *const u8, cap: u64, from: u64, to: u64) -> u64 {
    let mut i = from;
    let mut n = 0;
    if to - from > cap {
        return 0;
    }
    while i < to && i.is_multiple_of(8) {
        let off = i & (cap - 1);
        // SAFETY: `off` is below `cap` and 8-aligned, so the 8 header bytes lie in the
        // data area, which stays mapped while the caller's `ShmData` lives.
        let word = unsafe { base.add(off as usize).cast::<u64>().read_volatile() };
        let h = FrameHeader::from_word(u64::from_le(word));
        if h.flags == FLAG_WRAP {
            i += cap - off;
            continue;
        }
        let frame = align_up(h.len as u64, crate::layout::RING_ALIGN as u64);
        if h.flags != 0 || (h.len as usize) < FRAME_HEADER_LEN || frame > cap - off {
            break;
        }
        i += frame;
        n += 1;
    }
    n
}

impl Transport for ShmData {
    #[inline]
    fn alloc(&mut self, len: usize) -> Result<Option<&mut [u8]>, SendError> {
        self.tx.alloc(&self.shared, &mut self.view, len)
    }

    #[inline]
    fn push(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.tx.push(msg_type, true)
    }

    #[inline]
    fn push_more(&mut self, msg_type: u16) -> Result<(), SendError> {
        self.tx.push(msg_type, false)
    }

    #[inline]
    fn front(&mut self) -> Option<Msg<'_>> {
        self.rx.front(&self.shared, &mut self.view)
    }

    #[inline]
    fn pop(&mut self) {
        self.rx.pop(&self.shared, &mut self.view)
    }

    /// Publishes staged messages and catches up with the shared state; no system
    /// call. `now` is not used (the control part keeps time).
    #[inline]
    fn poll(&mut self, _now: Nanos) -> bool {
        self.tx.flush();
        self.shared.take_request();
        self.view.refresh(&self.shared);
        self.view.is_connected()
    }

    fn close(&mut self, reason: CloseReason) {
        self.tx.flush();
        self.shared.close(reason);
        self.view.refresh(&self.shared);
    }

    #[inline]
    fn is_connected(&self) -> bool {
        self.view.is_connected()
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.view.reason()
    }

    fn counters(&self) -> Counters {
        let depth = self.unconsumed();
        let pushed = self.tx.pushed;
        Counters {
            pushed,
            sent: self.tx.sent,
            acked: pushed - depth.min(pushed),
            resent: 0,
            received: self.rx.received,
            popped: self.rx.popped,
            queue_depth: depth,
        }
    }

    #[inline]
    fn max_payload(&self) -> usize {
        self.tx.max_payload
    }
}

#[cfg(test)]
mod tests {
    use super::count_frames;
    use tcpshm_ring::var::{self, Config, HEADER_LEN};

    #[test]
    fn counts_frames_across_wrap_markers_and_stops_on_garbage() {
        let cap = 256;
        let mut mem = vec![0u64; var::region_size(cap) / 8];
        let len = mem.len() * 8;
        let base = mem.as_mut_ptr().cast::<u8>();
        // SAFETY: `mem` is `len` bytes, 8-aligned, and outlives the ends below.
        let region = unsafe { std::slice::from_raw_parts_mut(base, len) };
        var::init(region, Config::new(cap)).unwrap();
        // SAFETY: as above; these are the only ends.
        let (mut p, mut c) = unsafe { var::attach_raw(base, len) }.unwrap();
        // SAFETY: the data area follows the header.
        let data = unsafe { base.add(HEADER_LEN) };
        let mut pushed = 0u64;
        for round in 0..50u64 {
            // Frames of 16..=96 bytes: the ring wraps every few rounds.
            for i in 0..(round % 3 + 1) {
                if p.alloc(((round * 7 + i * 13) % 80) as usize).unwrap().is_some() {
                    p.push(1).unwrap();
                    pushed += 1;
                }
            }
            let read = c.released_index();
            let n = count_frames(data, cap as u64, read, p.write_index());
            let mut walk = 0;
            let mut i = read;
            while let Some(m) = c.peek(i).unwrap() {
                walk += 1;
                i = m.end();
            }
            assert_eq!(n, walk, "round {round}");
            if round % 2 == 1 {
                while c.pop().is_ok() {}
            }
        }
        assert!(pushed > 50);
        // Garbage where a header should be: the walk stops, bounded.
        p.alloc(8).unwrap().unwrap();
        p.push(1).unwrap();
        let read = c.released_index();
        // SAFETY: `read % cap` is an 8-aligned offset in the data area.
        unsafe { data.add((read % cap as u64) as usize).cast::<u64>().write(0) };
        assert_eq!(count_frames(data, cap as u64, read, p.write_index()), 0);
        assert_eq!(count_frames(data, cap as u64, read + 4, p.write_index()), 0, "unaligned start");
    }
}
