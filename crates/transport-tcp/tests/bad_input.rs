//! Runtime bad input from a peer over a real TCP socket: each closes that one
//! connection with the right reason, tells the peer why (a `CLOSE` frame) when the
//! fault is the peer's, leaves the store intact, and a new link resumes.

mod common;

use common::{frame, open_store, tcp_pair, RawPeer, TempDir};
use std::time::{Duration, Instant};
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::decode::frame_limit;
use tcpshm_proto::frame::{msg_type, Header};
use tcpshm_proto::login::{LoginReply, LoginRequest, LoginStatus, TransportKind};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::{encode, CloseReason, Control, FrameError, Name, Nanos, ProtocolError, Transport};
use tcpshm_transport_tcp::{tcp, PeerLogin, TcpConnection};

const MAX_PAYLOAD: usize = 64 * 1024;

struct Fixture {
    _dir: TempDir,
    conn: TcpConnection,
    peer: RawPeer,
    now: Nanos,
}

fn body(k: u64) -> Vec<u8> {
    common::body(k, 10 + k as usize * 7)
}

/// A connection with two queued messages, linked to a raw peer that has received
/// both (and acknowledged none).
fn fixture() -> Fixture {
    let dir = TempDir::new("bad");
    let mut conn = TcpConnection::new(open_store(dir.path(), "srv", "cli", 1 << 16), common::config());
    for k in 0..2 {
        common::push(&mut conn, 5, &body(k));
    }
    let peer = attach_raw(&mut conn, 1, 0);
    let mut f = Fixture { _dir: dir, conn, peer, now: 1 };
    for k in 0..2 {
        let (h, p) = f.next_frame();
        assert_eq!((h.msg_type, h.seq, p), (5, k, body(k)));
    }
    f
}

/// Links `conn` to a new raw peer whose queue is empty at `peer_next` (it pushed
/// that many, all consumed).
fn attach_raw(conn: &mut TcpConnection, now: Nanos, peer_next: u64) -> RawPeer {
    let (a, b) = tcp_pair();
    conn.login_state();
    let peer = PeerLogin { send_range: SeqRange::new(peer_next, peer_next).unwrap(), ..PeerLogin::default() };
    conn.attach(tcp::from_std(a).unwrap(), peer, now).unwrap();
    RawPeer::new(b)
}

impl Fixture {
    /// The next frame the connection writes to the raw peer.
    fn next_frame(&mut self) -> (Header, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = self.peer.next_frame() {
                return f;
            }
            assert!(Instant::now() < deadline, "no frame from the connection");
            self.conn.poll(self.now);
            self.peer.fill().unwrap();
        }
    }

    /// Sends `bytes` (in pieces of `chunk` bytes) and polls until the connection
    /// closes; returns its reason.
    fn closes_with(&mut self, bytes: &[u8], chunk: usize) -> CloseReason {
        let deadline = Instant::now() + Duration::from_secs(10);
        for piece in bytes.chunks(chunk.max(1)) {
            if !self.conn.is_connected() {
                break;
            }
            // The connection may close (and the link break) before all is sent.
            let _ = std::io::Write::write_all(&mut self.peer.s, piece);
            self.conn.poll(self.now);
        }
        while self.conn.is_connected() {
            assert!(Instant::now() < deadline, "the connection never closed");
            std::thread::yield_now();
            self.conn.poll(self.now);
        }
        assert!(!self.conn.poll(self.now), "a closed connection came back by itself");
        self.conn.close_reason().cloned().expect("a closed connection has a reason")
    }

    /// What the raw peer reads after the close: the frames up to EOF.
    fn frames_until_eof(&mut self) -> Vec<(Header, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        loop {
            while let Some(f) = self.peer.next_frame() {
                out.push(f);
            }
            match self.peer.fill() {
                Ok(false) | Err(_) => break,
                Ok(true) => {}
            }
            assert!(Instant::now() < deadline, "no EOF after the close");
        }
        out
    }

    /// The peer was told why, with this code.
    fn expect_close_frame(&mut self, code: CloseCode) -> String {
        let frames = self.frames_until_eof();
        let Some((h, p)) = frames.last() else { panic!("no close frame before EOF") };
        assert_eq!(h.msg_type, msg_type::CLOSE, "the last frame before EOF is not a close frame: {frames:?}");
        let c = CloseFrame::parse(p).unwrap();
        assert_eq!(c.code, code, "close text: {}", c.text);
        c.text.to_owned()
    }

    /// The store is as before the bad input (two messages queued, none acknowledged,
    /// nothing consumed), and a new link resends both.
    fn store_intact_and_resumes(&mut self, consumed: u64) {
        let s = self.conn.store();
        assert_eq!((s.first_unacked(), s.next_seq(), s.consumed()), (0, 2, consumed));
        assert!(self.conn.front().is_none(), "messages received but not popped must be dropped at close");
        self.now += 1;
        self.peer = attach_raw(&mut self.conn, self.now, consumed);
        for k in 0..2 {
            let (h, p) = self.next_frame();
            assert_eq!((h.msg_type, h.seq, p), (5, k, body(k)), "resend after the bad input");
        }
        // And it receives again: the next message it expects is `consumed`.
        self.peer.send(&frame(9, consumed, 2, b"ok"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.conn.front().is_none() {
            assert!(Instant::now() < deadline, "nothing received after the resume");
            self.conn.poll(self.now);
        }
        let m = self.conn.front().unwrap();
        assert_eq!((m.msg_type, m.seq, m.payload), (9, consumed, &b"ok"[..]));
        self.conn.pop();
        poll_a_bit(&mut self.conn, self.now);
        assert_eq!(self.conn.store().first_unacked(), 2, "the piggybacked ack was applied");
    }
}

fn poll_a_bit(c: &mut TcpConnection, now: Nanos) {
    for _ in 0..20 {
        c.poll(now);
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn frame_error(r: &CloseReason) -> FrameError {
    match r {
        CloseReason::Protocol(ProtocolError::Frame(e)) => *e,
        other => panic!("expected a malformed-frame protocol error, got {other:?}"),
    }
}

#[test]
fn zero_length_frame() {
    for chunk in [1, 64] {
        let mut f = fixture();
        let r = f.closes_with(&[0u8; 24], chunk);
        assert_eq!(frame_error(&r), FrameError::TooShort { len: 0 });
        let text = f.expect_close_frame(CloseCode::PROTOCOL);
        assert!(text.contains("below the 24-byte header"), "{text}");
        f.store_intact_and_resumes(0);
    }
}

#[test]
fn length_below_the_header() {
    let mut f = fixture();
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&10u32.to_le_bytes());
    let r = f.closes_with(&b, 3);
    assert_eq!(frame_error(&r), FrameError::TooShort { len: 10 });
    f.expect_close_frame(CloseCode::PROTOCOL);
    f.store_intact_and_resumes(0);
}

#[test]
fn length_above_the_maximum_is_refused_from_its_first_four_bytes() {
    let mut f = fixture();
    let max = frame_limit(MAX_PAYLOAD);
    // Only the length field is sent: the refusal must not wait for the frame.
    let r = f.closes_with(&(max + 1).to_le_bytes(), 1);
    assert_eq!(frame_error(&r), FrameError::TooLong { len: max + 1, max });
    f.expect_close_frame(CloseCode::PROTOCOL);
    f.store_intact_and_resumes(0);
    let mut f = fixture();
    let r = f.closes_with(&u32::MAX.to_le_bytes(), 4);
    assert_eq!(frame_error(&r), FrameError::TooLong { len: u32::MAX, max });
    f.store_intact_and_resumes(0);
}

#[test]
fn unknown_control_types() {
    for t in [0xFF05u16, 0xFF10, 0xFFFF] {
        let mut f = fixture();
        let r = f.closes_with(&frame(t, 0, 0, b""), 64);
        assert_eq!(frame_error(&r), FrameError::UnknownControl(t));
        f.expect_close_frame(CloseCode::PROTOCOL);
        f.store_intact_and_resumes(0);
    }
}

#[test]
fn bad_flags_and_bad_padding() {
    let mut f = fixture();
    let mut b = frame(1, 0, 0, b"abc");
    b[6] = 1;
    assert_eq!(frame_error(&f.closes_with(&b, 64)), FrameError::BadFlags(1));
    f.store_intact_and_resumes(0);
    let mut f = fixture();
    let mut b = frame(1, 0, 0, b"abc");
    *b.last_mut().unwrap() = 0xAA;
    assert_eq!(frame_error(&f.closes_with(&b, 64)), FrameError::BadPadding);
    f.store_intact_and_resumes(0);
}

#[test]
fn ack_beyond_what_was_sent() {
    // On a heartbeat, a standalone ack, and a user message's piggyback.
    for bytes in [encode::heartbeat(0, 3).to_vec(), encode::ack(0, 3).to_vec(), frame(1, 0, 3, b"x")] {
        let mut f = fixture();
        let r = f.closes_with(&bytes, 64);
        assert_eq!(r, CloseReason::Protocol(ProtocolError::AckBeyondSent { ack: 3, sent: 2 }));
        f.expect_close_frame(CloseCode::PROTOCOL);
        // Never applied: both messages are still queued.
        f.store_intact_and_resumes(0);
    }
    // After a reconnect, an ack for messages written only on the old link is beyond
    // what this link sent until they are written again (only reading here: the
    // resend does not go out).
    let mut f = fixture();
    f.conn.login_state();
    let (a, b) = tcp_pair();
    f.conn.attach(tcp::from_std(a).unwrap(), PeerLogin::default(), 2).unwrap();
    f.peer = RawPeer::new(b);
    f.peer.send(&encode::ack(0, 1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.conn.on_readable(2) {
        assert!(Instant::now() < deadline, "the premature ack was never read");
        std::thread::yield_now();
    }
    assert_eq!(f.conn.close_reason(), Some(&CloseReason::Protocol(ProtocolError::AckBeyondSent { ack: 1, sent: 0 })));
    assert_eq!(f.conn.store().first_unacked(), 0, "never applied");
}

#[test]
fn seq_gap_and_duplicate() {
    let mut f = fixture();
    let r = f.closes_with(&frame(1, 1, 0, b"skipped seq 0"), 64);
    assert_eq!(r, CloseReason::Protocol(ProtocolError::SeqGap { expected: 0, got: 1 }));
    f.expect_close_frame(CloseCode::PROTOCOL);
    f.store_intact_and_resumes(0);

    // A duplicate of a message already received (and popped: consumed is 1).
    let mut f = fixture();
    f.peer.send(&frame(1, 0, 0, b"first"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.conn.front().is_none() {
        assert!(Instant::now() < deadline);
        f.conn.poll(f.now);
    }
    f.conn.pop();
    let r = f.closes_with(&frame(1, 0, 0, b"first again"), 64);
    assert_eq!(r, CloseReason::Protocol(ProtocolError::SeqGap { expected: 1, got: 0 }));
    f.store_intact_and_resumes(1);
}

#[test]
fn received_not_popped_is_dropped_at_close_and_expected_again() {
    let mut f = fixture();
    f.peer.send(&frame(1, 0, 0, b"unpopped"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.conn.front().is_none() {
        assert!(Instant::now() < deadline);
        f.conn.poll(f.now);
    }
    let r = f.closes_with(&[0u8; 24], 64);
    assert_eq!(frame_error(&r), FrameError::TooShort { len: 0 });
    // consumed 0: the next link expects seq 0 again (store_intact_and_resumes sends it).
    f.store_intact_and_resumes(0);
}

#[test]
fn garbage_bytes() {
    // Text where a frame should be: "GET " read as a length is far above the maximum.
    let mut f = fixture();
    let r = f.closes_with(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5);
    assert!(matches!(frame_error(&r), FrameError::TooLong { len: 0x2054_4547, .. }), "{r:?}");
    f.store_intact_and_resumes(0);
    // Pseudo-random garbage of many shapes: always a protocol error (never a hang or
    // a panic), the store intact.
    let mut x = 0x1234_5678_9ABC_DEF0u64;
    for round in 0..12 {
        let mut f = fixture();
        let len = 24 + round * 37;
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // Half the rounds with a plausible length, so the later checks are reached.
        if round % 2 == 0 {
            bytes[..4].copy_from_slice(&(24 + (round as u32 % 5)).to_le_bytes());
        }
        // Up to a megabyte of garbage would be read; some rounds need the close to
        // happen before the whole garbage is sent, so send it all at once.
        let r = f.closes_with(&bytes, bytes.len());
        assert!(matches!(r, CloseReason::Protocol(_)), "garbage round {round}: {r:?}");
        f.store_intact_and_resumes(0);
    }
}

fn login_request() -> Vec<u8> {
    let req = LoginRequest {
        client: Name::new("cli").unwrap(),
        last_server: None,
        transport: TransportKind::Tcp,
        consumed: 0,
        send_range: SeqRange::default(),
        queue_capacity: 0,
        credential: b"",
    };
    let mut buf = [0u8; 1024];
    let n = encode::encode_control(&mut buf, &Control::Login(req), 0, 0).unwrap();
    buf[..n].to_vec()
}

#[test]
fn login_frames_after_login() {
    let mut f = fixture();
    let r = f.closes_with(&login_request(), 7);
    assert_eq!(
        r,
        CloseReason::Protocol(ProtocolError::UnexpectedControl { msg_type: msg_type::LOGIN, context: "after login" })
    );
    f.expect_close_frame(CloseCode::PROTOCOL);
    f.store_intact_and_resumes(0);

    let reply = LoginReply {
        status: LoginStatus::Ok,
        server: Name::new("srv").unwrap(),
        consumed: 0,
        send_range: SeqRange::default(),
        queue_capacity: 0,
        text: "",
    };
    let mut buf = [0u8; 1024];
    let n = encode::encode_control(&mut buf, &Control::LoginReply(reply), 0, 0).unwrap();
    let mut f = fixture();
    let r = f.closes_with(&buf[..n], 64);
    assert_eq!(
        r,
        CloseReason::Protocol(ProtocolError::UnexpectedControl {
            msg_type: msg_type::LOGIN_REPLY,
            context: "after login"
        })
    );
    f.store_intact_and_resumes(0);
}

#[test]
fn close_frame_from_the_peer() {
    let mut f = fixture();
    let mut buf = [0u8; 512];
    let close = Control::Close(CloseFrame { code: CloseCode::REQUESTED, text: "end of day" });
    let n = encode::encode_control(&mut buf, &close, 0, 0).unwrap();
    let r = f.closes_with(&buf[..n], 3);
    assert_eq!(r, CloseReason::RemoteRequested("requested: end of day".into()));
    // The peer closed on purpose: it is not told anything back.
    let frames = f.frames_until_eof();
    assert!(frames.iter().all(|(h, _)| h.msg_type != msg_type::CLOSE), "answered a close with a close: {frames:?}");
    f.store_intact_and_resumes(0);

    // A close frame whose payload does not parse is a protocol error.
    let mut f = fixture();
    let r = f.closes_with(&frame(msg_type::CLOSE, 0, 0, &[1]), 64);
    assert!(matches!(r, CloseReason::Protocol(ProtocolError::Close(_))), "{r:?}");
    f.store_intact_and_resumes(0);
}

#[test]
fn end_of_stream_and_reset() {
    let mut f = fixture();
    f.peer.s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(f.closes_with(&[], 1), CloseReason::RemoteClosed);
    f.store_intact_and_resumes(0);

    // A reset (linger 0 close): an I/O error with the errno.
    let mut f = fixture();
    socket2::SockRef::from(&f.peer.s).set_linger(Some(Duration::ZERO)).unwrap();
    let (a, b) = tcp_pair();
    drop(std::mem::replace(&mut f.peer, RawPeer::new(a)));
    drop(b);
    let r = f.closes_with(&[], 1);
    assert_eq!(r, CloseReason::Io { op: "read", errno: 104 }, "ECONNRESET");
    f.store_intact_and_resumes(0);
}
