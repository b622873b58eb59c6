//! The references of the echo benchmark, each a client side (a [`Pinger`]) and a
//! server side (a child role), as bare as the medium allows:
//!
//! * **shared-memory floor**: one 256-byte slot per direction in a `/dev/shm` file
//!   mapped by both processes; the payload is copied in, then a sequence number is
//!   published (release) and spun on (acquire). No framing, no queue: the cost of
//!   moving the bytes between two cores and back.
//! * **tcpshm-ring**: the same file holding two `tcpshm-ring` var queues (one per
//!   direction), to show the ring's share of the SHM transport's time.
//! * **TCP / Unix-socket floor**: non-blocking sockets (TCP_NODELAY), busy-polled
//!   `read`; each message is a 4-byte length and the payload in one `write`, echoed
//!   whole by the server.
//! * **ZeroMQ** REQ/REP over `tcp://` and `ipc://` (feature `zmq`): blocking
//!   `send`/`recv`, ZeroMQ's usual way (its I/O thread shares the process's cpu).

use crate::child::{announce, arg};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// One echo round trip: send `msg`, wait for its echo, tell whether it is intact.
pub trait Pinger {
    /// Sends `msg` and spins until the echo is back; `now` is the caller's clock.
    fn ping(&mut self, msg: &[u8], now: u64) -> bool;
}

/// tcpshm's side: any [`Transport`](tcpshm_proto::Transport) (a `Client`, a
/// `Connection<UnixStream>`).
pub struct Ours<T>(pub T);

impl<T: tcpshm_proto::Transport> Pinger for Ours<T> {
    #[inline]
    fn ping(&mut self, msg: &[u8], now: u64) -> bool {
        crate::ours::ping(&mut self.0, msg, now)
    }
}

// ---- shared memory -------------------------------------------------------------

const PAGE: usize = 4096;
/// Bytes of a slot's payload area.
const SLOT_DATA: usize = 240;
/// Data capacity of each tcpshm-ring queue of the ring reference.
const RING_CAP: usize = 1 << 16;
/// The sequence number that tells a floor server to exit.
const STOP: u64 = u64::MAX;

/// A direction's mailbox: the payload, its length, and the sequence number that
/// publishes them (written last, with release).
#[repr(C, align(64))]
struct Slot {
    seq: AtomicU64,
    len: AtomicU64,
    data: [u8; SLOT_DATA],
}

/// A shared mapping of a `/dev/shm` file (created by the client side, opened by the
/// server role).
pub struct Shared {
    map: memmap2::MmapMut,
}

impl Shared {
    /// Creates (or truncates) `path` with `len` zero bytes and maps it.
    pub fn create(path: &Path, len: usize) -> Shared {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        f.set_len(len as u64).expect("size shared file");
        Shared::map(&f)
    }

    /// Maps the existing file at `path`.
    pub fn open(path: &Path) -> Shared {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Shared::map(&f)
    }

    fn map(f: &std::fs::File) -> Shared {
        // SAFETY: the file is private to this bench (a unique name under /dev/shm) and
        // is never truncated while mapped; concurrent access from the other process
        // goes through atomics (slots: seq; rings: their own indices).
        let map = unsafe { memmap2::MmapMut::map_mut(f) }.expect("mmap shared file");
        Shared { map }
    }

    /// The start of the mapping.
    pub fn base(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Pointers to the two slots: `page` 0 is client→server, 1 server→client.
fn slots(sh: &mut Shared, server: bool) -> (*mut Slot, *mut Slot) {
    assert!(sh.map.len() >= 2 * PAGE);
    let base = sh.base();
    // SAFETY: both offsets are within the mapping (checked above) and page-aligned,
    // so each pointer is aligned for `Slot` (64) and the slot fits in its page.
    let (c2s, s2c) = unsafe { (base.cast::<Slot>(), base.add(PAGE).cast::<Slot>()) };
    if server {
        (s2c, c2s)
    } else {
        (c2s, s2c)
    }
}

/// Bytes of the shared file of the shared-memory references.
pub fn shared_len() -> usize {
    (2 * PAGE).max(2 * tcpshm_ring::var::region_size(RING_CAP).next_multiple_of(PAGE))
}

/// The client side of the slot floor.
pub struct SlotPinger {
    _sh: Shared,
    out: *mut Slot,
    inn: *mut Slot,
    seq: u64,
}

impl SlotPinger {
    /// Maps the fresh shared file at `path` (create it with [`Shared::create`]).
    pub fn new(mut sh: Shared) -> SlotPinger {
        let (out, inn) = slots(&mut sh, false);
        SlotPinger { _sh: sh, out, inn, seq: 0 }
    }
}

/// Publishes `msg` in `slot` under `seq`.
///
/// # Safety
/// `slot` points into a live mapping, and the peer does not read the slot's data
/// until it sees `seq` (it only reads after the acquire load of `seq`, and this side
/// only writes again after the peer answered, i.e. after it finished reading).
#[inline(always)]
unsafe fn put(slot: *mut Slot, msg: &[u8], seq: u64) {
    // SAFETY: per the contract, the slot is live and nobody reads its data now;
    // `msg.len() <= SLOT_DATA` is checked by the callers.
    unsafe {
        core::ptr::copy_nonoverlapping(msg.as_ptr(), (*slot).data.as_mut_ptr(), msg.len());
        (*slot).len.store(msg.len() as u64, Ordering::Relaxed);
        (*slot).seq.store(seq, Ordering::Release);
    }
}

/// Spins until `slot` holds `seq` (or [`STOP`]); returns its payload.
///
/// # Safety
/// `slot` points into a live mapping; the payload returned is valid until this side
/// answers (the peer writes the slot again only after that).
#[inline(always)]
unsafe fn wait<'a>(slot: *const Slot, seq: u64) -> Option<&'a [u8]> {
    loop {
        // SAFETY: the slot is live (contract).
        let s = unsafe { (*slot).seq.load(Ordering::Acquire) };
        if s == seq {
            break;
        }
        if s == STOP {
            return None;
        }
        std::hint::spin_loop();
    }
    // SAFETY: the acquire load above saw the peer's release store of `seq`, so the
    // payload and length it wrote before are visible; the length is clamped.
    unsafe {
        let len = ((*slot).len.load(Ordering::Relaxed) as usize).min(SLOT_DATA);
        Some(core::slice::from_raw_parts((*slot).data.as_ptr(), len))
    }
}

impl Pinger for SlotPinger {
    #[inline]
    fn ping(&mut self, msg: &[u8], _now: u64) -> bool {
        assert!(msg.len() <= SLOT_DATA);
        self.seq += 1;
        // SAFETY: the mapping lives in `self`; strict ping-pong (see `put`/`wait`).
        unsafe {
            put(self.out, msg, self.seq);
            wait(self.inn, self.seq).is_some_and(|echo| echo == msg)
        }
    }
}

impl Drop for SlotPinger {
    fn drop(&mut self) {
        // SAFETY: the mapping is still alive (it is dropped after this).
        unsafe { (*self.out).seq.store(STOP, Ordering::Release) };
    }
}

/// The server role of the slot floor: `--file PATH`.
pub fn slot_server(args: &[String]) {
    let mut sh = Shared::open(Path::new(arg(args, "--file").expect("--file")));
    let (out, inn) = slots(&mut sh, true);
    announce("ready");
    let mut seq = 0u64;
    loop {
        seq += 1;
        // SAFETY: the mapping `sh` outlives the loop; strict ping-pong.
        unsafe {
            let Some(msg) = wait(inn, seq) else { return };
            let len = msg.len();
            // The echo: copy the payload from the inbound slot to the outbound one.
            core::ptr::copy_nonoverlapping(msg.as_ptr(), (*out).data.as_mut_ptr(), len);
            (*out).len.store(len as u64, Ordering::Relaxed);
            (*out).seq.store(seq, Ordering::Release);
        }
    }
}

/// The two var-queue regions of the ring reference: (client→server, server→client).
fn ring_regions(sh: &mut Shared) -> [(*mut u8, usize); 2] {
    let len = tcpshm_ring::var::region_size(RING_CAP);
    let stride = len.next_multiple_of(PAGE);
    assert!(sh.map.len() >= 2 * stride);
    let base = sh.base();
    // SAFETY: both regions are within the mapping (checked above).
    [(base, len), (unsafe { base.add(stride) }, len)]
}

/// Formats both rings of a fresh shared file (client side, before the server starts).
pub fn ring_init(sh: &mut Shared) {
    for (base, len) in ring_regions(sh) {
        // SAFETY: the region is within the mapping and nobody else uses it yet.
        let region = unsafe { std::slice::from_raw_parts_mut(base, len) };
        tcpshm_ring::var::init(region, tcpshm_ring::var::Config::new(RING_CAP)).expect("init ring");
    }
}

type Ends = (tcpshm_ring::var::Producer<'static>, tcpshm_ring::var::Consumer<'static>);

/// This side's producer (outbound ring) and consumer (inbound ring).
fn ring_ends(sh: &mut Shared, server: bool) -> Ends {
    let [c2s, s2c] = ring_regions(sh);
    let (out, inn) = if server { (s2c, c2s) } else { (c2s, s2c) };
    // SAFETY: the mapping outlives the ends (both live in the same owner and the ends
    // are dropped first); each process uses only the producer of its outbound ring
    // and the consumer of its inbound ring, so each ring has one producer and one
    // consumer across the two processes.
    let (p, _) = unsafe { tcpshm_ring::var::attach_raw(out.0, out.1) }.expect("attach ring");
    // SAFETY: as above.
    let (_, c) = unsafe { tcpshm_ring::var::attach_raw(inn.0, inn.1) }.expect("attach ring");
    (p, c)
}

/// The client side of the ring reference.
pub struct RingPinger {
    // Field order: the ends drop before the mapping.
    ends: Ends,
    _sh: Shared,
}

impl RingPinger {
    /// Attaches to the rings of `sh` (formatted with [`ring_init`]).
    pub fn new(mut sh: Shared) -> RingPinger {
        let ends = ring_ends(&mut sh, false);
        RingPinger { ends, _sh: sh }
    }
}

impl Pinger for RingPinger {
    #[inline]
    fn ping(&mut self, msg: &[u8], _now: u64) -> bool {
        let (p, c) = &mut self.ends;
        let buf = p.alloc(msg.len()).expect("alloc").expect("room in an idle ring");
        buf.copy_from_slice(msg);
        p.push(1).expect("allocated");
        loop {
            if let Some(m) = c.front().expect("ring intact") {
                let ok = m.payload() == msg;
                c.pop().expect("pop");
                return ok;
            }
            std::hint::spin_loop();
        }
    }
}

impl Drop for RingPinger {
    fn drop(&mut self) {
        // Tell the server to exit: an empty message of type 0.
        let (p, _) = &mut self.ends;
        if let Ok(Some(_)) = p.alloc(0) {
            let _ = p.push(0);
        }
    }
}

/// The server role of the ring reference: `--file PATH`.
pub fn ring_server(args: &[String]) {
    let mut sh = Shared::open(Path::new(arg(args, "--file").expect("--file")));
    let (mut p, mut c) = ring_ends(&mut sh, true);
    announce("ready");
    loop {
        match c.front().expect("ring intact") {
            Some(m) if m.msg_type() == 0 => return,
            Some(m) => {
                let buf = p.alloc(m.payload().len()).expect("alloc").expect("room in an idle ring");
                buf.copy_from_slice(m.payload());
                p.push(1).expect("allocated");
                c.pop().expect("pop");
            }
            None => std::hint::spin_loop(),
        }
    }
}

// ---- sockets -------------------------------------------------------------------

/// The client side of the busy-poll socket floors: a 4-byte little-endian length and
/// the payload in one `write`, then `read` spun until the whole echo is in.
pub struct StreamPinger<S> {
    s: S,
    out: Vec<u8>,
    inn: Vec<u8>,
}

impl<S: Read + Write> StreamPinger<S> {
    /// Over a connected non-blocking stream.
    pub fn new(s: S) -> StreamPinger<S> {
        StreamPinger { s, out: Vec::with_capacity(1024), inn: vec![0; 1024] }
    }
}

/// Writes all of `buf` to a non-blocking stream (spinning on `WouldBlock`).
fn write_all_spin<S: Write>(s: &mut S, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes from a non-blocking stream, spinning; `Ok(false)`
/// at EOF.
fn read_exact_spin<S: Read>(s: &mut S, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            Ok(0) => return Ok(false),
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<S: Read + Write> Pinger for StreamPinger<S> {
    #[inline]
    fn ping(&mut self, msg: &[u8], _now: u64) -> bool {
        self.out.clear();
        self.out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        self.out.extend_from_slice(msg);
        write_all_spin(&mut self.s, &self.out).expect("write");
        let n = self.out.len();
        assert!(read_exact_spin(&mut self.s, &mut self.inn[..n]).expect("read"), "server closed");
        self.inn[..n] == self.out[..]
    }
}

/// The server loop of the socket floors: echo each length-prefixed message whole.
fn stream_echo<S: Read + Write>(mut s: S) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match read_exact_spin(&mut s, &mut buf[..4]) {
            Ok(true) => {}
            _ => return,
        }
        let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        assert!(len + 4 <= buf.len(), "message too long");
        match read_exact_spin(&mut s, &mut buf[4..4 + len]) {
            Ok(true) => {}
            _ => return,
        }
        if write_all_spin(&mut s, &buf[..4 + len]).is_err() {
            return;
        }
    }
}

/// The server role of the TCP floor: listens on an ephemeral loopback port,
/// announces `ready ADDR`, echoes one connection until it closes.
pub fn tcp_server(_args: &[String]) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    announce(&format!("ready {}", l.local_addr().expect("addr")));
    let (s, _) = l.accept().expect("accept");
    s.set_nodelay(true).expect("nodelay");
    s.set_nonblocking(true).expect("nonblocking");
    stream_echo(s);
}

/// The server role of the Unix-socket floor: `--path SOCKET`.
pub fn unix_server(args: &[String]) {
    let path = arg(args, "--path").expect("--path");
    let l = std::os::unix::net::UnixListener::bind(path).expect("bind unix socket");
    announce("ready");
    let (s, _) = l.accept().expect("accept");
    s.set_nonblocking(true).expect("nonblocking");
    stream_echo(s);
}

/// A TCP connection for the floor: TCP_NODELAY, non-blocking.
pub fn tcp_connect(addr: &str) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// A Unix-socket connection for the floor, non-blocking.
pub fn unix_connect(path: &str) -> std::os::unix::net::UnixStream {
    let s = std::os::unix::net::UnixStream::connect(path).expect("connect unix socket");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

// ---- ZeroMQ --------------------------------------------------------------------

/// The client side of the ZeroMQ reference: a REQ socket.
#[cfg(feature = "zmq")]
pub struct ZmqPinger {
    _ctx: zmq::Context,
    s: zmq::Socket,
    buf: Vec<u8>,
}

#[cfg(feature = "zmq")]
impl ZmqPinger {
    /// Connects a REQ socket to `endpoint`.
    pub fn new(endpoint: &str) -> ZmqPinger {
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::REQ).expect("zmq socket");
        s.connect(endpoint).expect("zmq connect");
        ZmqPinger { _ctx: ctx, s, buf: vec![0; 1024] }
    }
}

#[cfg(feature = "zmq")]
impl Pinger for ZmqPinger {
    #[inline]
    fn ping(&mut self, msg: &[u8], _now: u64) -> bool {
        self.s.send(msg, 0).expect("zmq send");
        let n = self.s.recv_into(&mut self.buf, 0).expect("zmq recv");
        n == msg.len() && &self.buf[..n] == msg
    }
}

/// The server role of the ZeroMQ reference: `--endpoint E` (a REP socket bound
/// there; `tcp://127.0.0.1:*` picks a port), announces `ready ENDPOINT`, echoes until
/// killed.
#[cfg(feature = "zmq")]
pub fn zmq_server(args: &[String]) {
    let endpoint = arg(args, "--endpoint").expect("--endpoint");
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::REP).expect("zmq socket");
    s.bind(endpoint).expect("zmq bind");
    let bound = s.get_last_endpoint().expect("endpoint").expect("utf-8 endpoint");
    announce(&format!("ready {bound}"));
    let mut buf = vec![0u8; 1024];
    loop {
        match s.recv_into(&mut buf, 0) {
            Ok(n) => s.send(&buf[..n.min(buf.len())], 0).expect("zmq send"),
            Err(zmq::Error::EINTR) => {}
            Err(_) => return,
        }
    }
}
