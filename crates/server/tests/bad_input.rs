//! Bad input after a successful login: each kind closes that one connection with the
//! right typed reason (the handler's `on_disconnected` gets it, the peer gets a CLOSE
//! frame), over a TCP session and over the control stream of a shared-memory
//! session, while the server keeps serving everyone else throughout.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tcpshm_client::{ClientConfig, TransportKind};
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::frame::{msg_type, Header, HEADER_LEN};
use tcpshm_proto::login::LoginStatus;
use tcpshm_proto::{CloseReason, FrameError, ProtocolError, Transport};
use tcpshm_server::{AcceptAll, RoundRobin, Server};

/// A real client echoing on its own thread until stopped; every echo is checked and
/// the connection must never drop. Counts round trips.
struct Witness {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Witness {
    fn start(cfg: ClientConfig, addr: SocketAddr, kind: TransportKind) -> Witness {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let mut c = connect(&cfg, addr, kind);
            let mut k = 0u64;
            while !s.load(Ordering::Relaxed) {
                c.alloc(8).unwrap().expect("room").copy_from_slice(&k.to_le_bytes());
                c.push(3).unwrap();
                wait_until("the witness's echo", || {
                    assert!(c.poll(now()), "the witness was disconnected: {:?}", c.close_reason());
                    let m = c.front()?;
                    assert_eq!((m.msg_type, m.payload), (3, &k.to_le_bytes()[..]));
                    c.pop();
                    Some(())
                });
                k += 1;
                n.store(k, Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        Witness { stop, count, thread }
    }

    /// Waits for `n` more round trips (the server is serving it now).
    fn progresses(&self, n: u64) {
        let from = self.count.load(Ordering::Relaxed);
        wait_until("the witness to progress", || (self.count.load(Ordering::Relaxed) >= from + n).then_some(()));
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the witness failed");
        self.count.load(Ordering::Relaxed)
    }
}

/// A raw client logged in with hand-made bytes over `transport` (0 TCP: with one
/// checked echo; 1 SHM: the stream is its control stream, the rings are not used).
fn raw_client(addr: SocketAddr, name: &str, transport: u8) -> TcpStream {
    let login = RawLogin { transport, ..RawLogin::new(name) };
    let (r, mut s) = raw_exchange(addr, &login.frame());
    assert_eq!(r.status, LoginStatus::Ok, "{name}: {r:?}");
    if transport == 0 {
        s.write_all(&raw_frame(5, 0, 0, b"ping")).unwrap();
        let (h, p) = next_user_frame(&mut s);
        assert_eq!((h.msg_type, h.seq, p.as_slice()), (5, 0, &b"ping"[..]), "{name}");
    }
    s
}

fn header(len: u32, msg_type: u16, flags: u16, seq: u64, ack: u64) -> Vec<u8> {
    let mut b = [0u8; HEADER_LEN];
    Header { len, msg_type, flags, seq, ack }.write(&mut b);
    b.to_vec()
}

type Check = fn(&ProtocolError) -> bool;

/// The bad inputs after a TCP login whose ping (seq 0) was echoed (seq 0): the
/// server sent 1 message and expects seq 1 next.
fn tcp_cases() -> Vec<(&'static str, Vec<u8>, Check)> {
    let mut padded = raw_frame(5, 1, 0, b"abc");
    *padded.last_mut().unwrap() = 1;
    let mut garbage = b"\xde\xad\xbe\xef this is not a frame at all \x00\x01".to_vec();
    garbage.resize(64, b'!');
    vec![
        ("zero-length", vec![0u8; HEADER_LEN], |e| *e == ProtocolError::Frame(FrameError::TooShort { len: 0 })),
        ("below-header", header(23, 5, 0, 1, 0), |e| *e == ProtocolError::Frame(FrameError::TooShort { len: 23 })),
        ("too-long", header(4096 + 24 + 1, 5, 0, 1, 0), |e| {
            *e == ProtocolError::Frame(FrameError::TooLong { len: 4121, max: 4120 })
        }),
        ("4-GiB", header(u32::MAX, 5, 0, 1, 0), |e| {
            *e == ProtocolError::Frame(FrameError::TooLong { len: u32::MAX, max: 4120 })
        }),
        ("ack-beyond-sent", raw_frame(msg_type::HEARTBEAT, 1, 99, b""), |e| {
            *e == ProtocolError::AckBeyondSent { ack: 99, sent: 1 }
        }),
        ("future-ack-on-a-message", raw_frame(5, 1, 2, b"x"), |e| {
            *e == ProtocolError::AckBeyondSent { ack: 2, sent: 1 }
        }),
        ("unknown-control", raw_frame(0xFF10, 1, 0, b""), |e| {
            *e == ProtocolError::Frame(FrameError::UnknownControl(0xFF10))
        }),
        ("reserved-ffff", raw_frame(0xFFFF, 1, 0, b"user?"), |e| {
            *e == ProtocolError::Frame(FrameError::UnknownControl(0xFFFF))
        }),
        ("login-again", RawLogin::new("again").frame(), |e| {
            matches!(e, ProtocolError::UnexpectedControl { msg_type: msg_type::LOGIN, .. })
        }),
        ("login-reply", raw_frame(msg_type::LOGIN_REPLY, 1, 0, b""), |e| {
            matches!(e, ProtocolError::UnexpectedControl { msg_type: msg_type::LOGIN_REPLY, .. })
        }),
        ("heartbeat-payload", raw_frame(msg_type::HEARTBEAT, 1, 0, b"12345678"), |e| {
            *e == ProtocolError::Frame(FrameError::ControlPayload { msg_type: msg_type::HEARTBEAT, len: 8 })
        }),
        ("flags", header(32, 5, 1, 1, 0), |e| *e == ProtocolError::Frame(FrameError::BadFlags(1))),
        ("padding", padded, |e| *e == ProtocolError::Frame(FrameError::BadPadding)),
        ("seq-gap", raw_frame(5, 7, 0, b"x"), |e| *e == ProtocolError::SeqGap { expected: 1, got: 7 }),
        ("seq-repeat", raw_frame(5, 0, 0, b"x"), |e| *e == ProtocolError::SeqGap { expected: 1, got: 0 }),
        ("garbage", garbage, |e| matches!(e, ProtocolError::Frame(_))),
    ]
}

/// The bad inputs on the control stream of a shared-memory login (nothing sent yet).
fn shm_cases() -> Vec<(&'static str, Vec<u8>, Check)> {
    vec![
        ("shm-zero-length", vec![0u8; HEADER_LEN], |e| *e == ProtocolError::Frame(FrameError::TooShort { len: 0 })),
        ("shm-4-GiB", header(u32::MAX, 5, 0, 0, 0), |e| matches!(e, ProtocolError::Frame(FrameError::TooLong { .. }))),
        ("shm-user-message-on-control", raw_frame(5, 0, 0, b"data?"), |e| {
            matches!(e, ProtocolError::UnexpectedControl { msg_type: 5, .. })
        }),
        ("shm-unknown-control", raw_frame(0xFF10, 0, 0, b""), |e| {
            *e == ProtocolError::Frame(FrameError::UnknownControl(0xFF10))
        }),
        ("shm-login-again", RawLogin::new("again").frame(), |e| {
            matches!(e, ProtocolError::UnexpectedControl { msg_type: msg_type::LOGIN, .. })
        }),
        ("shm-flags", header(24, msg_type::HEARTBEAT, 2, 0, 0), |e| {
            *e == ProtocolError::Frame(FrameError::BadFlags(2))
        }),
    ]
}

#[test]
fn each_bad_input_closes_only_that_connection_with_the_right_reason() {
    let dir = TempDir::new("bad-input");
    let log = EventLog::default();
    let cfg = server_config("Srv", &dir);
    assert_eq!(cfg.connection.session.max_message, 4096);
    let handlers = vec![Recorder { log: log.clone() }, Recorder { log: log.clone() }];
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), handlers).unwrap();
    let addr = server.local_addrs()[0];
    let srv = Polled::spawn(server, |s| s.poll(now()));
    let tcp = Witness::start(client_config("witness-tcp", &dir, "w1"), addr, TransportKind::Tcp);
    let shm = Witness::start(client_config("witness-shm", &dir, "w2"), addr, TransportKind::Shm);
    let mut bystander = raw_client(addr, "bystander", 0);

    let cases = tcp_cases().into_iter().map(|c| (0u8, c)).chain(shm_cases().into_iter().map(|c| (1u8, c)));
    let mut n = 0;
    for (k, (transport, (case, bytes, check))) in cases.enumerate() {
        let name = format!("bad{k}-{case}");
        let mut s = raw_client(addr, &name, transport);
        s.write_all(&bytes).unwrap();
        // The peer is told why, then the stream ends.
        let frames = frames_until_closed(&mut s);
        let close = frames
            .iter()
            .find(|(h, _)| h.msg_type == msg_type::CLOSE)
            .unwrap_or_else(|| panic!("{case}: no CLOSE frame before the end: {frames:?}"));
        let close = CloseFrame::parse(&close.1).unwrap();
        assert_eq!(close.code, CloseCode::PROTOCOL, "{case}: {close:?}");
        // The handler is told the exact reason.
        Recorder::wait_disconnects(&log, &name, 1);
        match Recorder::disconnects(&log, &name).as_slice() {
            [CloseReason::Protocol(e)] => assert!(check(e), "{case}: wrong reason {e:?}"),
            other => panic!("{case}: expected one protocol error, got {other:?}"),
        }
        // Everyone else is still served.
        tcp.progresses(3);
        shm.progresses(3);
        n += 1;
    }
    assert_eq!(n, 22);

    // The idle raw client was not disturbed by any of it, and nobody else dropped.
    bystander.write_all(&raw_frame(5, 1, 0, b"still")).unwrap();
    let (h, p) = next_user_frame(&mut bystander);
    assert_eq!((h.seq, p.as_slice()), (1, &b"still"[..]));
    for name in ["bystander", "witness-tcp", "witness-shm"] {
        assert!(Recorder::disconnects(&log, name).is_empty(), "{name} was disconnected");
    }
    assert!(tcp.finish() > 0 && shm.finish() > 0);
    drop(srv.stop());
}

#[test]
fn a_client_that_vanishes_mid_frame_is_reported_and_others_continue() {
    let dir = TempDir::new("vanish");
    let log = EventLog::default();
    let server =
        Server::bind(server_config("Srv", &dir), AcceptAll, RoundRobin::default(), vec![Recorder { log: log.clone() }])
            .unwrap();
    let addr = server.local_addrs()[0];
    let _srv = Polled::spawn(server, |s| s.poll(now()));
    let tcp = Witness::start(client_config("witness", &dir, "w"), addr, TransportKind::Tcp);
    let mut s = raw_client(addr, "halfway", 0);
    // Half a frame, then gone: not a protocol error, the peer closed.
    s.write_all(&raw_frame(5, 1, 0, b"never finished")[..20]).unwrap();
    drop(s);
    Recorder::wait_disconnects(&log, "halfway", 1);
    assert_eq!(Recorder::disconnects(&log, "halfway"), vec![CloseReason::RemoteClosed]);
    // A raw shared-memory client whose control stream ends: the session ends too.
    let s = raw_client(addr, "shm-gone", 1);
    drop(s);
    Recorder::wait_disconnects(&log, "shm-gone", 1);
    let reasons = Recorder::disconnects(&log, "shm-gone");
    assert!(matches!(reasons.as_slice(), [CloseReason::RemoteClosed | CloseReason::PeerDied]), "{reasons:?}");
    tcp.progresses(3);
    tcp.finish();
}
