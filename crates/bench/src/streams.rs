//! One-way streams, timed windows: tcpshm's client streaming to the server's sink,
//! and the two bare references the stream goals are judged against, doing the same
//! fill and check work per message ([`crate::payload`]):
//!
//! * **the bare ring**: a `tcpshm-ring` var queue in a `/dev/shm` file, this process
//!   the producer, a child role the consumer (the medium tcpshm's shared-memory
//!   transport is built on, with nothing of the session around it);
//! * **the bare socket carrying the same frames**: a loopback TCP connection carrying
//!   tcpshm's wire frames (24-byte header, payload, padding) written in 256 KiB
//!   writes, read in large reads by a child role that walks the frames.
//!
//! Every window: send messages for a fixed time (the clock read once per batch), then
//! a `FINISH` that the receiver answers with the count it received (each message's
//! number checked); rate = messages ÷ (first message .. answer).

use crate::child::{announce, arg};
use crate::clock::{ticks, Clock};
use crate::floors::Shared;
use crate::ours::{DATA, FINISH};
use crate::payload;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use tcpshm_proto::frame::{frame_len, Header, HEADER_LEN};
use tcpshm_proto::Transport;

/// Messages per published batch: `push_more` stages, a `push` (or `publish`) every
/// batch makes them visible (over TCP: one write). About 16 KiB or 64 messages.
pub fn batch(size: usize) -> u64 {
    (16 * 1024 / size.max(1)).clamp(1, 64) as u64
}

/// A window's result.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Messages the receiver counted.
    pub messages: u64,
    /// First message to the receiver's answer.
    pub elapsed: Duration,
}

impl Window {
    /// Messages per second, in millions.
    pub fn mmsgs(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Streams `size`-byte messages through tcpshm's client `c` for `span`, then waits for
/// the sink's count.
pub fn ours<T: Transport>(c: &mut T, size: usize, span: Duration, clock: &Clock, src: &[u8]) -> Window {
    let b = batch(size);
    let t0 = Instant::now();
    let deadline = ticks() + clock.ticks_in(span.as_nanos() as f64);
    let mut n = 0u64;
    loop {
        let buf = loop {
            // Two calls: a borrow returned from a loop that also polls would outlive
            // the poll (the first call only tests for room).
            match c.alloc(size) {
                Ok(Some(_)) => break c.alloc(size).expect("alloc").expect("room"),
                Ok(None) => {
                    // Full: publish what is staged, take acks.
                    c.poll(clock.now_ns());
                }
                Err(e) => panic!("alloc {size}: {e}"),
            }
        };
        payload::fill(buf, src, n);
        n += 1;
        if n.is_multiple_of(b) {
            c.push(DATA).expect("push");
            if ticks() >= deadline {
                break;
            }
        } else {
            c.push_more(DATA).expect("push_more");
        }
    }
    loop {
        match c.alloc(0) {
            Ok(Some(_)) => break,
            Ok(None) => {
                c.poll(clock.now_ns());
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }
    c.push(FINISH).expect("push");
    loop {
        if let Some(m) = c.front() {
            assert_eq!(m.msg_type, FINISH, "the sink answers only FINISH");
            let got = u64::from_le_bytes(m.payload.try_into().expect("8-byte count"));
            assert_eq!(got, n, "the sink received {got} of {n} messages");
            c.pop();
            break;
        }
        if !c.poll(clock.now_ns()) {
            panic!("connection lost while streaming: {:?}", c.close_reason());
        }
    }
    Window { messages: n, elapsed: t0.elapsed() }
}

// ---- the bare ring -------------------------------------------------------------

const PAGE: usize = 4096;
/// Bytes of the reply ring (counts going back).
const REPLY_CAP: usize = 4096;

/// The regions of the ring reference's file: the data ring (`cap` bytes) then the
/// reply ring.
fn regions(sh: &mut Shared, cap: usize) -> [(*mut u8, usize); 2] {
    let data = tcpshm_ring::var::region_size(cap);
    let reply = tcpshm_ring::var::region_size(REPLY_CAP);
    let stride = data.next_multiple_of(PAGE);
    assert!(sh.len() >= stride + reply);
    let base = sh.base();
    // SAFETY: both regions lie within the mapping (checked above).
    [(base, data), (unsafe { base.add(stride) }, reply)]
}

/// Bytes of the ring reference's file for a data ring of `cap` bytes.
pub fn ring_file_len(cap: usize) -> usize {
    tcpshm_ring::var::region_size(cap).next_multiple_of(PAGE) + tcpshm_ring::var::region_size(REPLY_CAP)
}

type Ends = (tcpshm_ring::var::Producer<'static>, tcpshm_ring::var::Consumer<'static>);

/// This side's producer (data ring for the sender, reply ring for the sink) and
/// consumer (the other one).
fn ends(sh: &mut Shared, cap: usize, sink: bool) -> Ends {
    let [data, reply] = regions(sh, cap);
    let (out, inn) = if sink { (reply, data) } else { (data, reply) };
    // SAFETY: the mapping outlives the ends (both live in the same owner, the ends
    // dropped first); each process uses only the producer of its outbound ring and
    // the consumer of its inbound ring: one producer and one consumer per ring.
    let (p, _) = unsafe { tcpshm_ring::var::attach_raw(out.0, out.1) }.expect("attach ring");
    // SAFETY: as above.
    let (_, c) = unsafe { tcpshm_ring::var::attach_raw(inn.0, inn.1) }.expect("attach ring");
    (p, c)
}

/// The sending side of the bare ring.
pub struct RingSender {
    // Field order: the ends drop before the mapping.
    ends: Ends,
    _sh: Shared,
}

impl RingSender {
    /// Creates the file at `path` with a data ring of `cap` bytes and formats both
    /// rings (before the sink role opens it).
    pub fn create(path: &Path, cap: usize) -> RingSender {
        let mut sh = Shared::create(path, ring_file_len(cap));
        for ((base, len), c) in regions(&mut sh, cap).into_iter().zip([cap, REPLY_CAP]) {
            // SAFETY: the region is within the mapping and nobody else uses it yet.
            let region = unsafe { std::slice::from_raw_parts_mut(base, len) };
            tcpshm_ring::var::init(region, tcpshm_ring::var::Config::new(c)).expect("init ring");
        }
        let ends = ends(&mut sh, cap, false);
        RingSender { ends, _sh: sh }
    }

    /// One window: `size`-byte messages for `span`, then the sink's count.
    pub fn window(&mut self, size: usize, span: Duration, clock: &Clock, src: &[u8]) -> Window {
        let (p, c) = &mut self.ends;
        let b = batch(size);
        let t0 = Instant::now();
        let deadline = ticks() + clock.ticks_in(span.as_nanos() as f64);
        let mut n = 0u64;
        loop {
            let buf = loop {
                match p.alloc(size) {
                    // Same two-call shape as `ours`, for the same reason.
                    Ok(Some(_)) => break p.alloc(size).expect("alloc").expect("room"),
                    Ok(None) => {
                        p.publish();
                        std::hint::spin_loop();
                    }
                    Err(e) => panic!("ring alloc {size}: {e:?}"),
                }
            };
            payload::fill(buf, src, n);
            p.push_more(DATA).expect("allocated");
            n += 1;
            if n.is_multiple_of(b) {
                p.publish();
                if ticks() >= deadline {
                    break;
                }
            }
        }
        loop {
            match p.alloc(0) {
                Ok(Some(_)) => break,
                Ok(None) => {
                    p.publish();
                    std::hint::spin_loop();
                }
                Err(e) => panic!("ring alloc: {e:?}"),
            }
        }
        p.push(FINISH).expect("allocated");
        let got = loop {
            if let Some(m) = c.front().expect("reply ring intact") {
                let got = u64::from_le_bytes(m.payload().try_into().expect("8-byte count"));
                c.pop().expect("pop");
                break got;
            }
            std::hint::spin_loop();
        };
        assert_eq!(got, n, "the ring sink received {got} of {n} messages");
        Window { messages: n, elapsed: t0.elapsed() }
    }
}

/// Bytes the ring sink consumes at most before it releases them to the producer.
const RELEASE_BYTES: usize = 256 * 1024;

/// The sink role of the bare ring: `--file PATH --cap BYTES`. Consumes like a good
/// bare consumer: `pop_more`, one release per 64 messages or 256 KiB, or when the
/// ring is empty.
pub fn ring_sink(args: &[String]) {
    let cap: usize = crate::child::parsed(args, "--cap");
    let mut sh = Shared::open(Path::new(arg(args, "--file").expect("--file")));
    let (mut p, mut c) = ends(&mut sh, cap, true);
    announce("ready");
    let mut received = 0u64;
    let mut unreleased = 0usize;
    loop {
        let finish = match c.front().expect("data ring intact") {
            Some(m) if m.msg_type() == FINISH => true,
            Some(m) => {
                let pl = m.payload();
                std::hint::black_box(payload::fold(pl));
                assert!(payload::check(pl, received), "ring sink: message {received} out of order or corrupt");
                unreleased += pl.len();
                false
            }
            None => {
                c.release();
                std::hint::spin_loop();
                continue;
            }
        };
        c.pop_more().expect("pop");
        if finish {
            c.release();
            let buf = p.alloc(8).expect("alloc").expect("the reply ring has room");
            buf.copy_from_slice(&received.to_le_bytes());
            p.push(FINISH).expect("allocated");
            received = 0;
        } else {
            received += 1;
            if received.is_multiple_of(64) || unreleased >= RELEASE_BYTES {
                c.release();
                unreleased = 0;
            }
        }
    }
}

// ---- the bare socket carrying tcpshm's frames ----------------------------------

/// Bytes per write of the socket sender, and the sink's read size.
pub const SOCKET_CHUNK: usize = 256 * 1024;

/// The sending side of the bare socket: builds tcpshm's wire frames and writes them.
pub struct SocketSender {
    s: std::net::TcpStream,
    buf: Vec<u8>,
}

impl SocketSender {
    /// Connects to the sink at `addr` (blocking, `TCP_NODELAY`). Frames up to
    /// `max_message` bytes.
    pub fn connect(addr: &str, max_message: usize) -> SocketSender {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        SocketSender { s, buf: Vec::with_capacity(SOCKET_CHUNK.max(frame_len(max_message)) + frame_len(0)) }
    }

    fn frame(&mut self, msg_type: u16, seq: u64, size: usize, src: &[u8]) {
        if self.buf.len() + frame_len(size) > self.buf.capacity() {
            self.flush();
        }
        let at = self.buf.len();
        self.buf.resize(at + frame_len(size), 0);
        let h = Header { len: (HEADER_LEN + size) as u32, msg_type, flags: 0, seq, ack: 0 };
        h.write((&mut self.buf[at..at + HEADER_LEN]).try_into().expect("24 bytes"));
        payload::fill(&mut self.buf[at + HEADER_LEN..at + HEADER_LEN + size], src, seq);
    }

    fn flush(&mut self) {
        self.s.write_all(&self.buf).expect("write");
        self.buf.clear();
    }

    /// One window: frames of `size`-byte messages for `span`, then the sink's count.
    pub fn window(&mut self, size: usize, span: Duration, clock: &Clock, src: &[u8]) -> Window {
        let b = batch(size);
        let t0 = Instant::now();
        let deadline = ticks() + clock.ticks_in(span.as_nanos() as f64);
        let mut n = 0u64;
        loop {
            self.frame(DATA, n, size, src);
            n += 1;
            if n.is_multiple_of(b) && ticks() >= deadline {
                break;
            }
        }
        self.frame(FINISH, n, 0, src);
        self.flush();
        let mut ack = [0u8; 8];
        self.s.read_exact(&mut ack).expect("read the sink's answer");
        let got = u64::from_le_bytes(ack);
        assert_eq!(got, n, "the socket sink received {got} of {n} frames");
        Window { messages: n, elapsed: t0.elapsed() }
    }
}

/// The sink role of the bare socket: `--max BYTES`; listens on an ephemeral loopback
/// port, announces `ready ADDR`; reads the frames with large reads, checks and reads
/// every payload, answers each `FINISH` frame with the count since the last one.
pub fn socket_sink(args: &[String]) {
    let max: usize = crate::child::parsed(args, "--max");
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    announce(&format!("ready {}", l.local_addr().expect("addr")));
    let (mut s, _) = l.accept().expect("accept");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; SOCKET_CHUNK + frame_len(max)];
    let (mut start, mut end) = (0usize, 0usize);
    let mut received = 0u64;
    loop {
        // Whole frames in buf[start..end].
        while end - start >= HEADER_LEN {
            let h = Header::read(buf[start..start + HEADER_LEN].try_into().expect("24 bytes"));
            let fl = h.frame_len();
            if end - start < fl {
                break;
            }
            let pl = &buf[start + HEADER_LEN..start + h.len as usize];
            if h.msg_type == FINISH {
                if s.write_all(&received.to_le_bytes()).is_err() {
                    return;
                }
                received = 0;
            } else {
                std::hint::black_box(payload::fold(pl));
                assert!(payload::check(pl, received), "socket sink: frame {received} out of order or corrupt");
                received += 1;
            }
            start += fl;
        }
        if buf.len() - end < SOCKET_CHUNK {
            // Move the partial frame to the front (only its bytes).
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        match s.read(&mut buf[end..]) {
            Ok(0) => return,
            Ok(n) => end += n,
            // A stop and continue (the bench pauses its sinks) may interrupt a read.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("socket sink: read failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
