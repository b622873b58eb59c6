//! Bad input after a successful login: each kind closes that one connection with the
//! right reason (the handler's `on_disconnected` gets it, the peer gets a CLOSE
//! frame), and the server keeps serving everyone else throughout.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::frame::{msg_type, Header, HEADER_LEN};
use tcpshm_proto::login::LoginStatus;
use tcpshm_proto::{CloseReason, FrameError, ProtocolError, Transport};
use tcpshm_server::{AcceptAll, RoundRobin, Server};

const SECOND: Duration = Duration::from_secs(1);

/// A real client echoing in a thread until stopped; every echo is checked and the
/// connection must never drop. Counts round trips.
struct Witness {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Witness {
    fn start(cfg: tcpshm_client::ClientConfig, addr: SocketAddr, kind: TransportKind) -> Witness {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let mut c = Client::open(cfg, now()).unwrap();
            c.connect(addr, kind, now()).unwrap();
            let mut k = 0u64;
            while !s.load(Ordering::Relaxed) {
                c.alloc(8).unwrap().expect("room").copy_from_slice(&k.to_le_bytes());
                c.push(3).unwrap();
                let deadline = now() + 10_000_000_000;
                loop {
                    assert!(c.poll(now()), "the witness was disconnected: {:?}", c.close_reason());
                    if let Some(m) = c.front() {
                        assert_eq!((m.msg_type, m.payload), (3, &k.to_le_bytes()[..]));
                        c.pop();
                        break;
                    }
                    assert!(now() < deadline, "the witness got no echo");
                }
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
        wait_until("the witness to progress", 10 * SECOND, || self.count.load(Ordering::Relaxed) >= from + n);
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the witness failed");
        self.count.load(Ordering::Relaxed)
    }
}

/// The next user message on a raw connection (heartbeats and acks skipped).
fn next_user_frame(s: &mut TcpStream) -> (Header, Vec<u8>) {
    loop {
        let (h, p) = read_frame(s).unwrap().expect("a frame, not EOF");
        if tcpshm_proto::frame::msg_type::is_user(h.msg_type) {
            return (h, p);
        }
    }
}

/// A raw client logged in with hand-made bytes, with one checked echo done.
fn raw_client(addr: SocketAddr, name: &str) -> TcpStream {
    let (r, mut s) = raw_exchange(addr, &RawLogin::new(name).frame());
    assert_eq!(r.status, LoginStatus::Ok, "{name}: {r:?}");
    s.write_all(&raw_frame(5, 0, 0, b"ping")).unwrap();
    let (h, p) = next_user_frame(&mut s);
    assert_eq!((h.msg_type, h.seq, p.as_slice()), (5, 0, &b"ping"[..]), "{name}");
    s
}

fn header(len: u32, msg_type: u16, flags: u16, seq: u64, ack: u64) -> Vec<u8> {
    let mut b = [0u8; HEADER_LEN];
    Header { len, msg_type, flags, seq, ack }.write(&mut b);
    b.to_vec()
}

#[test]
fn each_bad_input_closes_only_that_connection_with_the_right_reason() {
    let dir = TempDir::new("bad-input");
    let prefix = unique_shm_prefix();
    let _shm = ShmCleanup(prefix.clone());
    let log = EventLog::default();
    let cfg = server_config("Srv", &dir.path().join("server"), &prefix);
    assert_eq!(cfg.max_message, 4096);
    let handlers = vec![Recorder { log: log.clone() }, Recorder { log: log.clone() }];
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), handlers).unwrap();
    let addr = server.local_addrs()[0];
    let srv = Polled::spawn(server, |s| {
        s.poll(now());
        std::thread::yield_now();
    });
    let tcp = Witness::start(client_config("witness-tcp", &dir.path().join("w1"), &prefix), addr, TransportKind::Tcp);
    let shm = Witness::start(client_config("witness-shm", &dir.path().join("w2"), &prefix), addr, TransportKind::Shm);
    let mut bystander = raw_client(addr, "bystander");

    let mut padded = raw_frame(5, 1, 0, b"abc");
    *padded.last_mut().unwrap() = 1;
    let mut garbage = b"\xde\xad\xbe\xef this is not a frame at all \x00\x01".to_vec();
    garbage.resize(64, b'!');
    type Check = fn(&ProtocolError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("zero-length", vec![0u8; HEADER_LEN], |e| *e == ProtocolError::Frame(FrameError::TooShort { len: 0 })),
        ("below-header", header(23, 5, 0, 1, 0), |e| *e == ProtocolError::Frame(FrameError::TooShort { len: 23 })),
        ("too-long", header(4096 + 24 + 1, 5, 0, 1, 0), |e| {
            *e == ProtocolError::Frame(FrameError::TooLong { len: 4121, max: 4120 })
        }),
        ("huge", header(u32::MAX, 5, 0, 1, 0), |e| matches!(e, ProtocolError::Frame(FrameError::TooLong { .. }))),
        ("ack-beyond-sent", raw_frame(msg_type::HEARTBEAT, 1, 99, b""), |e| {
            *e == ProtocolError::AckBeyondSent { ack: 99, sent: 1 }
        }),
        ("ack-on-a-message", raw_frame(5, 1, 2, b"x"), |e| *e == ProtocolError::AckBeyondSent { ack: 2, sent: 1 }),
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
    ];

    for (k, (case, bytes, check)) in cases.into_iter().enumerate() {
        let name = format!("bad{k}-{case}");
        let mut s = raw_client(addr, &name);
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
        wait_until(&format!("{case}: the disconnect"), 10 * SECOND, || !Recorder::disconnects(&log, &name).is_empty());
        let reasons = Recorder::disconnects(&log, &name);
        match reasons.as_slice() {
            [CloseReason::Protocol(e)] => assert!(check(e), "{case}: wrong reason {e:?}"),
            other => panic!("{case}: expected one protocol error, got {other:?}"),
        }
        // Everyone else is still served.
        tcp.progresses(3);
        shm.progresses(3);
    }

    // The idle raw client was not disturbed by any of it, and nobody else dropped.
    bystander.write_all(&raw_frame(5, 1, 0, b"still")).unwrap();
    let (h, p) = next_user_frame(&mut bystander);
    assert_eq!((h.seq, p.as_slice()), (1, &b"still"[..]));
    for name in ["bystander", "witness-tcp", "witness-shm"] {
        assert!(Recorder::disconnects(&log, name).is_empty(), "{name} was disconnected");
    }
    assert!(tcp.finish() > 0 && shm.finish() > 0);
    drop(srv);
}

#[test]
fn a_client_that_vanishes_mid_frame_is_reported_and_others_continue() {
    let dir = TempDir::new("vanish");
    let prefix = unique_shm_prefix();
    let _shm = ShmCleanup(prefix.clone());
    let log = EventLog::default();
    let cfg = server_config("Srv", &dir.path().join("server"), &prefix);
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Recorder { log: log.clone() }]).unwrap();
    let addr = server.local_addrs()[0];
    let _srv = Polled::spawn(server, |s| {
        s.poll(now());
        std::thread::yield_now();
    });
    let tcp = Witness::start(client_config("witness", &dir.path().join("w"), &prefix), addr, TransportKind::Tcp);
    let mut s = raw_client(addr, "halfway");
    // Half a frame, then gone: not a protocol error, the peer closed.
    s.write_all(&raw_frame(5, 1, 0, b"never finished")[..20]).unwrap();
    drop(s);
    wait_until("the disconnect", 10 * SECOND, || !Recorder::disconnects(&log, "halfway").is_empty());
    assert_eq!(Recorder::disconnects(&log, "halfway"), vec![CloseReason::RemoteClosed]);
    tcp.progresses(3);
    tcp.finish();
}
