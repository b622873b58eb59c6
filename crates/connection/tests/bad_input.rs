//! Bad input from the peer over a real TCP socket, the connection being the server
//! (and, once, the client) of a raw peer that speaks bytes: each closes that link
//! with a typed reason naming what was wrong, tells the peer why (a `CLOSE` frame)
//! when the fault is the peer's, leaves the store intact, and a new login resumes.

mod common;

use common::{body as body_of, open_client, open_server, push, raw_client, raw_server, tcp_pair, RawLogin};
use std::net::TcpStream;
use tcpshm_connection::Connection;
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::decode::frame_limit;
use tcpshm_proto::frame::{msg_type, Header};
use tcpshm_proto::login::{Limits, LoginReply, LoginRequest, LoginStatus, SessionNumbers, TransportKind};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::{encode, CloseReason, Control, FrameError, Nanos, ProtocolError, Transport};
use tcpshm_test_support::net::{frame, reset_on_close, RawPeer};
use tcpshm_test_support::{wait_until, TempDir};

type Conn = Connection<TcpStream>;

const MAX_MESSAGE: usize = 64 * 1024;

struct Fixture {
    _dir: TempDir,
    conn: Conn,
    peer: RawPeer<TcpStream>,
    now: Nanos,
    /// How many messages the raw peer has pushed (what its next login says).
    peer_next: u64,
}

fn body(k: u64) -> Vec<u8> {
    body_of(k, 10 + k as usize * 7)
}

/// A server connection with two messages queued before the login, logged in with a
/// raw client that has received both (and acknowledged none).
fn fixture() -> Fixture {
    let dir = TempDir::new("bad");
    let cfg = common::config(&dir);
    let mut conn: Conn = open_server(&dir, &cfg, TransportKind::Tcp);
    for k in 0..2 {
        push(&mut conn, 5, &body(k));
    }
    let peer = attach_raw(&mut conn, 1, 0, 0);
    let mut f = Fixture { _dir: dir, conn, peer, now: 1, peer_next: 0 };
    for k in 0..2 {
        let (h, p) = f.next_frame();
        assert_eq!((h.msg_type, h.seq, p), (5, k, body(k)));
    }
    f
}

/// Logs `conn` in with a new raw client that consumed none of its messages and
/// whose own queue holds `first..next` (it pushed `next`, the connection consumed
/// `first`).
fn attach_raw(conn: &mut Conn, now: Nanos, first: u64, next: u64) -> RawPeer<TcpStream> {
    let (raw, ss) = tcp_pair();
    let login = RawLogin { send_range: SeqRange::new(first, next).unwrap(), ..RawLogin::default() };
    raw_client(conn, (raw, ss), login, now)
}

impl Fixture {
    /// The next frame the connection writes to the raw peer.
    fn next_frame(&mut self) -> (Header, Vec<u8>) {
        wait_until("a frame from the connection", || {
            if let Some(f) = self.peer.next_frame() {
                return Some(f);
            }
            self.conn.poll(self.now);
            self.peer.fill().unwrap();
            None
        })
    }

    /// Sends `bytes` (in pieces of `chunk` bytes) and polls until the connection
    /// closes; returns its reason.
    fn closes_with(&mut self, bytes: &[u8], chunk: usize) -> CloseReason {
        for piece in bytes.chunks(chunk.max(1)) {
            if !self.conn.is_connected() {
                break;
            }
            // The connection may close (and the link break) before all is sent.
            common::send_lossy(&mut self.peer.s, piece);
            self.conn.poll(self.now);
        }
        wait_until("the connection to close", || (!self.conn.poll(self.now)).then_some(()));
        assert!(!self.conn.poll(self.now), "a closed connection came back by itself");
        self.conn.close_reason().cloned().expect("a closed connection has a reason")
    }

    /// The peer was told why, with this code; returns the text.
    fn expect_close_frame(&mut self, code: CloseCode) -> String {
        let frames = self.peer.frames_until_eof();
        let Some((h, p)) = frames.last() else { panic!("no close frame before the end of the stream") };
        assert_eq!(h.msg_type, msg_type::CLOSE, "the last frame before EOF is not a close frame: {frames:?}");
        let c = CloseFrame::parse(p).unwrap();
        assert_eq!(c.code, code, "close text: {}", c.text);
        c.text.to_owned()
    }

    /// The store is as before the bad input (two messages queued, none acknowledged,
    /// `consumed` consumed), nothing received is left to pop, and a new login resends
    /// both and receives again (from `consumed`: the raw peer resends what was not).
    fn store_intact_and_resumes(&mut self, consumed: u64) {
        let s = self.conn.store();
        assert_eq!((s.first_unacked(), s.next_seq(), s.consumed()), (0, 2, consumed));
        assert!(self.conn.front().is_none(), "messages received but not popped must be dropped at close");
        self.now += 1;
        self.peer = attach_raw(&mut self.conn, self.now, consumed, self.peer_next.max(consumed));
        for k in 0..2 {
            let (h, p) = self.next_frame();
            assert_eq!((h.msg_type, h.seq, p), (5, k, body(k)), "resend after the bad input");
        }
        // It receives again: the next message it expects is `consumed`; the ack of 2
        // it carries empties the queue.
        self.peer.send(&frame(9, consumed, 2, b"ok"));
        wait_until("the message after the resume", || {
            self.conn.poll(self.now);
            self.conn.front().map(|m| (m.msg_type, m.seq, m.payload.to_vec()))
        });
        let m = self.conn.front().unwrap();
        assert_eq!((m.msg_type, m.seq, m.payload), (9, consumed, &b"ok"[..]));
        self.conn.pop();
        assert_eq!(self.conn.store().first_unacked(), 2, "the piggybacked ack was applied");
        assert_eq!(self.conn.store().consumed(), consumed + 1);
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
    let max = frame_limit(MAX_MESSAGE);
    // Only the length field is sent: the refusal must not wait for the frame.
    let r = f.closes_with(&(max + 1).to_le_bytes(), 1);
    assert_eq!(frame_error(&r), FrameError::TooLong { len: max + 1, max });
    let text = f.expect_close_frame(CloseCode::PROTOCOL);
    assert!(text.contains(&format!("exceeds the maximum {max}")), "{text}");
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
fn control_frame_with_a_payload_its_type_does_not_allow() {
    let mut f = fixture();
    let r = f.closes_with(&frame(msg_type::HEARTBEAT, 0, 0, b"xyz"), 64);
    assert_eq!(frame_error(&r), FrameError::ControlPayload { msg_type: msg_type::HEARTBEAT, len: 3 });
    f.expect_close_frame(CloseCode::PROTOCOL);
    f.store_intact_and_resumes(0);
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
    for (bytes, pushed) in
        [(encode::heartbeat(0, 3).to_vec(), 0), (encode::ack(0, 3).to_vec(), 0), (frame(1, 0, 3, b"x"), 1)]
    {
        let mut f = fixture();
        // The user message was received before its ack was checked: the peer did
        // push it, and says so at its next login.
        f.peer_next = pushed;
        let r = f.closes_with(&bytes, 64);
        assert_eq!(r, CloseReason::Protocol(ProtocolError::AckBeyondSent { ack: 3, sent: 2 }));
        f.expect_close_frame(CloseCode::PROTOCOL);
        // Never applied: both messages are still queued.
        f.store_intact_and_resumes(0);
    }
    // After a new login, an ack for messages written only on the old link is beyond
    // what this link sent until they are written again (only reading here: the
    // resend does not go out).
    let mut f = fixture();
    let (raw, ss) = tcp_pair();
    f.peer = raw_client(&mut f.conn, (raw, ss), RawLogin::default(), 2);
    f.peer.send(&encode::ack(0, 1));
    wait_until("the premature ack to be read", || (!f.conn.on_readable(2)).then_some(()));
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
    f.peer_next = 1;
    f.peer.send(&frame(1, 0, 0, b"first"));
    wait_until("the first message", || {
        f.conn.poll(f.now);
        f.conn.front().map(|_| ())
    });
    f.conn.pop();
    let r = f.closes_with(&frame(1, 0, 0, b"first again"), 64);
    assert_eq!(r, CloseReason::Protocol(ProtocolError::SeqGap { expected: 1, got: 0 }));
    f.store_intact_and_resumes(1);
}

#[test]
fn received_not_popped_is_dropped_at_close_and_expected_again() {
    let mut f = fixture();
    f.peer_next = 1;
    f.peer.send(&frame(1, 0, 0, b"unpopped"));
    wait_until("the message", || {
        f.conn.poll(f.now);
        f.conn.front().map(|_| ())
    });
    let r = f.closes_with(&[0u8; 24], 64);
    assert_eq!(frame_error(&r), FrameError::TooShort { len: 0 });
    // consumed 0: the next login expects seq 0 again (store_intact_and_resumes sends it),
    // and a peer that says it pushed nothing is refused: the connection saw seq 0.
    let (_raw, ss) = tcp_pair();
    let rules = common::rules(&f.conn);
    let Err((refusal, _)) = f.conn.accept(ss, &common::raw_request(RawLogin::default()), &rules, 2) else {
        panic!("a peer that lost what it sent was let in")
    };
    assert_eq!(refusal.status, LoginStatus::SeqMismatch, "{}", refusal.text);
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
    let mut rng = tcpshm_test_support::Rng::new(0x1234_5678_9ABC_DEF0);
    for round in 0..12 {
        let mut f = fixture();
        let len = 24 + round * 37;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // Half the rounds with a plausible length, so the later checks are reached.
        if round % 2 == 0 {
            bytes[..4].copy_from_slice(&(24 + (round as u32 % 5)).to_le_bytes());
        }
        let r = f.closes_with(&bytes, bytes.len());
        assert!(matches!(r, CloseReason::Protocol(_)), "garbage round {round}: {r:?}");
        f.store_intact_and_resumes(0);
    }
}

#[test]
fn login_frames_after_login() {
    let req = LoginRequest {
        client: common::client_name(),
        last_server: None,
        transport: TransportKind::Tcp,
        numbers: SessionNumbers::default(),
        limits: Limits::default(),
        largest_queued: 0,
        credential: b"",
    };
    let mut buf = [0u8; 1024];
    let n = encode::encode_control(&mut buf, &Control::Login(req), 0, 0).unwrap();
    let mut f = fixture();
    let r = f.closes_with(&buf[..n], 7);
    assert_eq!(
        r,
        CloseReason::Protocol(ProtocolError::UnexpectedControl { msg_type: msg_type::LOGIN, context: "after login" })
    );
    f.expect_close_frame(CloseCode::PROTOCOL);
    f.store_intact_and_resumes(0);

    let reply = LoginReply::refusal(LoginStatus::Ok, common::server_name(), "");
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
    assert_eq!(r, CloseReason::RemoteRequested { code: CloseCode::REQUESTED, text: "end of day".into() });
    // The peer closed on purpose: it is not told anything back.
    let frames = f.peer.frames_until_eof();
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
    reset_on_close(&f.peer.s);
    let (a, b) = tcp_pair();
    drop(std::mem::replace(&mut f.peer, RawPeer::new(a)));
    drop(b);
    let r = f.closes_with(&[], 1);
    assert_eq!(r, CloseReason::Io { op: "read", errno: 104 }, "ECONNRESET");
    f.store_intact_and_resumes(0);
}

/// The client side runs the same engine: a raw server's bad bytes close it with the
/// same typed reason, and it tells the server why.
#[test]
fn the_client_side_closes_the_same_way() {
    let dir = TempDir::new("bad-client");
    let cfg = common::config(&dir);
    let mut conn: Conn = open_client(&dir, &cfg, TransportKind::Tcp);
    push(&mut conn, 5, b"queued before the login");
    let (cs, raw) = tcp_pair();
    let (done, mut peer) = raw_server(&mut conn, (cs, raw), RawLogin::default(), 1);
    assert_eq!((done.server, done.to_resend, done.reset), (common::server_name(), 1, None));
    let got = wait_until("the queued message", || {
        conn.poll(1);
        peer.fill().unwrap();
        peer.next_frame()
    });
    assert_eq!((got.0.seq, got.1.as_slice()), (0, &b"queued before the login"[..]));
    peer.send(&frame(1, 5, 0, b"seq 5 where 0 is due"));
    wait_until("the close", || (!conn.poll(1)).then_some(()));
    assert_eq!(conn.close_reason(), Some(&CloseReason::Protocol(ProtocolError::SeqGap { expected: 0, got: 5 })));
    let frames = peer.frames_until_eof();
    let (h, p) = frames.last().expect("a close frame");
    assert_eq!(h.msg_type, msg_type::CLOSE);
    let c = CloseFrame::parse(p).unwrap();
    assert_eq!(c.code, CloseCode::PROTOCOL);
    assert!(c.text.contains("expected message seq 0, received seq 5"), "{}", c.text);
    assert_eq!((conn.store().first_unacked(), conn.store().next_seq()), (0, 1), "still queued");
}
