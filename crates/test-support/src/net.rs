//! Sockets for tests: connected pairs (also with small kernel buffers, to force
//! partial writes), and a raw peer that reads and writes frames by hand, to see
//! exactly which bytes a connection writes and to send it bytes no connection would.

use socket2::{Domain, Socket, Type};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use tcpshm_proto::frame::Header;
use tcpshm_proto::{decode, Decoded};

/// A connected TCP pair over the IPv4 loopback, blocking, with `TCP_NODELAY`.
///
/// ```
/// let (a, b) = tcpshm_test_support::net::tcp_pair();
/// assert_eq!(a.local_addr().unwrap(), b.peer_addr().unwrap());
/// ```
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the loopback");
    let a = TcpStream::connect(l.local_addr().expect("an address")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    for s in [&a, &b] {
        s.set_nodelay(true).expect("TCP_NODELAY");
    }
    (a, b)
}

/// A connected TCP pair over the loopback whose kernel buffers are small (`bytes`,
/// which the kernel doubles), so writes stop part-way through frames. The MSS is set
/// to an Ethernet size before the handshake: with the loopback's 64 KiB segments such
/// buffers never fit a segment and the kernel's zero-window recovery stalls for
/// seconds.
pub fn small_tcp_pair(bytes: usize) -> (TcpStream, TcpStream) {
    let shape = |s: &Socket| {
        s.set_mss(1400).expect("TCP_MAXSEG");
        s.set_send_buffer_size(bytes).expect("SO_SNDBUF");
        s.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    };
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    shape(&l);
    l.bind(&any.into()).expect("bind");
    l.listen(4).expect("listen");
    let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    shape(&c);
    c.connect(&l.local_addr().expect("an address")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    for x in [&c, &s] {
        x.set_nodelay(true).expect("TCP_NODELAY");
    }
    (c.into(), s.into())
}

/// Ends both directions of a socket (the peer reads the end of the stream, writes
/// fail): a cut link.
pub fn cut(s: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Both);
}

/// Makes the next close of `s` a reset (`SO_LINGER` 0): the peer's next read fails
/// with `ECONNRESET`.
pub fn reset_on_close(s: &impl std::os::fd::AsFd) {
    socket2::SockRef::from(s).set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
}

/// The bytes of one frame.
///
/// ```
/// let f = tcpshm_test_support::net::frame(7, 0, 0, b"hi");
/// assert_eq!(f.len(), 32);
/// ```
pub fn frame(msg_type: u16, seq: u64, ack: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; tcpshm_proto::frame::frame_len(payload.len())];
    let n = tcpshm_proto::encode::encode_frame(&mut buf, msg_type, seq, ack, payload).expect("a frame that encodes");
    buf.truncate(n);
    buf
}

/// A peer that speaks frames by hand over a blocking stream with a short read timeout
/// (set by [`RawPeer::new`] for the std socket types): it sends any bytes, and
/// decodes what it receives into whole frames.
#[derive(Debug)]
pub struct RawPeer<S> {
    /// The stream.
    pub s: S,
    /// Bytes received and not yet taken as frames.
    pub buf: Vec<u8>,
}

/// Streams a [`RawPeer`] can use: a short read timeout makes `fill` return promptly.
pub trait PeerStream: Read + Write {
    /// Sets the read timeout.
    fn read_timeout(&self, t: Duration);
}

impl PeerStream for TcpStream {
    fn read_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).expect("SO_RCVTIMEO");
    }
}

impl PeerStream for std::os::unix::net::UnixStream {
    fn read_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).expect("SO_RCVTIMEO");
    }
}

impl<S: PeerStream> RawPeer<S> {
    /// A raw peer on `s` (made to wait at most 20 ms per read).
    pub fn new(s: S) -> RawPeer<S> {
        s.read_timeout(Duration::from_millis(20));
        RawPeer { s, buf: Vec::new() }
    }

    /// Sends `bytes` whole.
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("the raw peer's write");
    }

    /// Reads what arrives within the read timeout; `Ok(false)` at the end of the
    /// stream.
    pub fn fill(&mut self) -> io::Result<bool> {
        let mut b = [0u8; 65536];
        match self.s.read(&mut b) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// The next whole frame received, removed from the buffer: its header and payload.
    /// Panics on bytes that are not a frame (the connection under test wrote them).
    pub fn next_frame(&mut self) -> Option<(Header, Vec<u8>)> {
        match decode(&self.buf, u32::MAX).expect("the connection wrote a malformed frame") {
            Decoded::Need(_) => None,
            Decoded::Frame { frame, consumed } => {
                let out = (*frame.header(), frame.payload().to_vec());
                self.buf.drain(..consumed);
                Some(out)
            }
        }
    }

    /// Every frame that arrives within a few read timeouts.
    pub fn frames(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..3 {
            let _ = self.fill();
            while let Some(f) = self.next_frame() {
                out.push(f);
            }
        }
        out
    }

    /// Every frame up to the end of the stream (or a reset), waiting as long as
    /// [`crate::wait_until`] does.
    pub fn frames_until_eof(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        crate::wait_until("the end of the stream", || {
            while let Some(f) = self.next_frame() {
                out.push(f);
            }
            match self.fill() {
                Ok(false) | Err(_) => Some(()),
                Ok(true) => None,
            }
        });
        while let Some(f) = self.next_frame() {
            out.push(f);
        }
        out
    }
}
