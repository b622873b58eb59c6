//! The client's login against a hand-made server (a std listener speaking raw bytes,
//! and for shared memory a file it creates itself): what the client sends, every way
//! a login can fail — each a typed `ConnectError`, `is_retryable` right for each,
//! nothing lost, nothing connected — and a successful login after which the queued
//! messages are resent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use tcpshm_client::{Client, ClientConfig, ConnectError, LoginStatus, OpenError, TransportKind};
use tcpshm_connection::{LostState, SessionFiles};
use tcpshm_proto::close::CloseFrame;
use tcpshm_proto::encode::encode_control;
use tcpshm_proto::frame::{frame_len, msg_type, Header, HEADER_LEN};
use tcpshm_proto::login::{Limits, LoginReply, LoginRequest, SessionNumbers, MAX_REPLY_LEN};
use tcpshm_proto::session::{SeqMismatch, SeqRange};
use tcpshm_proto::{CloseReason, Control, FrameError, Name, ProtocolError, Transport};
use tcpshm_test_support::{now, wait_until, TempDir};
use tcpshm_transport_shm::{Capacities, Rings, ShmDir, ShmError, ShmFile, Side};

fn config(dir: &TempDir, name: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(name.parse().unwrap(), dir.path());
    cfg.connection.queue_bytes = 1 << 16;
    cfg.connection.session.max_message = 1024;
    cfg.connection.shm.prefix = dir.shm_prefix().to_string();
    cfg.connect_timeout = Duration::from_secs(10);
    cfg
}

fn open(cfg: &ClientConfig) -> Client {
    <Client>::open(cfg.clone(), now()).unwrap()
}

/// What the fake server received as the login.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    client: String,
    last_server: Option<String>,
    transport: TransportKind,
    numbers: SessionNumbers,
    limits: Limits,
    largest_queued: u32,
    credential: Vec<u8>,
}

/// Reads one frame (header and payload, padding dropped); `None` at the end.
fn read_frame(s: &mut TcpStream) -> Option<(Header, Vec<u8>)> {
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).ok()?;
    let h = Header::read(&head);
    let mut rest = vec![0u8; h.frame_len() - HEADER_LEN];
    s.read_exact(&mut rest).ok()?;
    rest.truncate(h.len as usize - HEADER_LEN);
    Some((h, rest))
}

/// The next user message (heartbeats and acks skipped).
fn read_user_frame(s: &mut TcpStream) -> (Header, Vec<u8>) {
    loop {
        let (h, p) = read_frame(s).expect("a frame");
        if msg_type::is_user(h.msg_type) {
            return (h, p);
        }
    }
}

/// A one-connection server: reads the login, then lets `then` answer.
fn fake_server(then: impl FnOnce(TcpStream, Got) + Send + 'static) -> (SocketAddr, std::thread::JoinHandle<Got>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let (h, payload) = read_frame(&mut s).expect("a login");
        assert_eq!(h.msg_type, msg_type::LOGIN);
        let r = LoginRequest::parse(&payload).unwrap();
        let got = Got {
            client: r.client.to_string(),
            last_server: r.last_server.map(|n| n.to_string()),
            transport: r.transport,
            numbers: r.numbers,
            limits: r.limits,
            largest_queued: r.largest_queued,
            credential: r.credential.to_vec(),
        };
        then(s, got.clone());
        got
    });
    (addr, t)
}

fn numbers(consumed: u64, seen: u64, range: (u64, u64)) -> SessionNumbers {
    SessionNumbers { consumed, seen, send_range: SeqRange::new(range.0, range.1).unwrap() }
}

fn reply_bytes(status: LoginStatus, server: &str, text: &str, n: SessionNumbers, shm_file_id: u64) -> Vec<u8> {
    let reply = LoginReply {
        status,
        server: Name::new(server).unwrap(),
        numbers: n,
        limits: Limits { max_message: 4096, queue_capacity: 1 << 16 },
        shm_file_id,
        text,
    };
    let mut buf = vec![0u8; frame_len(MAX_REPLY_LEN)];
    let len = encode_control(&mut buf, &Control::LoginReply(reply), n.send_range.next(), n.consumed).unwrap();
    buf.truncate(len);
    buf
}

fn ok_reply(server: &str, n: SessionNumbers) -> Vec<u8> {
    reply_bytes(LoginStatus::Ok, server, "", n, 0)
}

/// Pushes `n` messages of 3 bytes `[k; 3]` (type 5).
fn push_some(c: &mut Client, n: u8) {
    for k in 0..n {
        c.alloc(3).unwrap().unwrap().copy_from_slice(&[k; 3]);
        c.push(5).unwrap();
    }
}

/// After a failed login: nothing connected, nothing lost, no epoch taken.
fn kept(c: &Client, queued: u64, what: &str) {
    assert!(!c.is_connected(), "{what}: connected after a failed login");
    assert_eq!((c.resume_point(), c.counters().queued()), (queued, queued), "{what}: the queue is kept");
    assert_eq!(c.last_server(), None, "{what}: a failed login is no epoch");
    assert!(c.close_reason().is_some(), "{what}");
}

#[test]
fn open_refuses_an_invalid_config_and_a_store_in_use() {
    let dir = TempDir::new("open");
    let mut cfg = config(&dir, "c");
    cfg.connection.queue_bytes = 1000;
    assert!(matches!(<Client>::open(cfg, 0), Err(OpenError::Config(_))));
    let cfg = config(&dir, "c");
    let first = open(&cfg);
    assert!(matches!(<Client>::open(cfg.clone(), 0), Err(OpenError::Store(_))), "one process per session");
    drop(first);
    open(&cfg);
}

#[test]
fn no_server_is_a_retryable_io_error() {
    let dir = TempDir::new("nobody");
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut c = open(&config(&dir, "c"));
    push_some(&mut c, 1);
    match c.connect(addr, TransportKind::Tcp, now()) {
        Err(e @ ConnectError::Io { op: "connect", .. }) => assert!(e.is_retryable(), "{e}"),
        other => panic!("{other:?}"),
    }
    kept(&c, 1, "no server");
}

#[test]
fn a_silent_server_times_out_within_the_connect_timeout() {
    let dir = TempDir::new("silent");
    let (tx, rx) = mpsc::channel::<()>();
    let (addr, t) = fake_server(move |_s, _| {
        let _ = rx.recv(); // Hold the socket, say nothing, until the client gave up.
    });
    let mut cfg = config(&dir, "c");
    cfg.connect_timeout = Duration::from_millis(300);
    let mut c = open(&cfg);
    match c.connect(addr, TransportKind::Tcp, now()) {
        Err(e @ ConnectError::Io { op: "read", .. }) => {
            let ConnectError::Io { source, .. } = &e else { unreachable!() };
            assert!(matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}");
            assert!(e.is_retryable(), "{e}");
        }
        other => panic!("{other:?}"),
    }
    kept(&c, 0, "silent server");
    tx.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn bytes_that_are_not_a_reply_are_a_typed_error() {
    let dir = TempDir::new("garbage");
    type Check = fn(&ConnectError) -> bool;
    let ok = ok_reply("srv", numbers(0, 0, (0, 0)));
    let mut bad_magic = ok.clone();
    bad_magic[HEADER_LEN] ^= 0xff;
    let mut bad_version = ok.clone();
    bad_version[HEADER_LEN + 4] = 9;
    let cases: Vec<(&str, Vec<u8>, Check, bool)> = vec![
        (
            "http",
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            |e| matches!(e, ConnectError::Protocol(ProtocolError::Frame(_))),
            false,
        ),
        (
            "zero-length frame",
            vec![0u8; HEADER_LEN],
            |e| matches!(e, ConnectError::Protocol(ProtocolError::Frame(FrameError::TooShort { len: 0 }))),
            false,
        ),
        (
            "heartbeat",
            tcpshm_proto::encode::heartbeat(0, 0).to_vec(),
            |e| {
                matches!(
                    e,
                    ConnectError::Protocol(ProtocolError::UnexpectedControl { msg_type: msg_type::HEARTBEAT, .. })
                )
            },
            false,
        ),
        ("bad magic", bad_magic, |e| matches!(e, ConnectError::Protocol(ProtocolError::Login(_))), false),
        ("bad version", bad_version, |e| matches!(e, ConnectError::Protocol(ProtocolError::Login(_))), false),
        ("truncated, then closed", ok[..30].to_vec(), |e| matches!(e, ConnectError::Closed), true),
        ("nothing, closed", Vec::new(), |e| matches!(e, ConnectError::Closed), true),
    ];
    for (case, bytes, check, retryable) in cases {
        let (addr, t) = fake_server(move |mut s, _| {
            s.write_all(&bytes).unwrap();
        });
        let mut c = open(&config(&dir, "c"));
        push_some(&mut c, 2);
        match c.connect(addr, TransportKind::Tcp, now()) {
            Err(e) => {
                assert!(check(&e), "{case}: {e:?}");
                assert_eq!(e.is_retryable(), retryable, "{case}: {e}");
            }
            Ok(d) => panic!("{case}: logged in: {d:?}"),
        }
        kept(&c, 2, case);
        t.join().unwrap();
        drop(c);
        std::fs::remove_dir_all(dir.path()).unwrap();
    }
}

#[test]
fn every_refusal_is_typed_and_keeps_the_queue() {
    let dir = TempDir::new("refused");
    let mut c = open(&config(&dir, "c"));
    push_some(&mut c, 2);
    for status in LoginStatus::ALL.into_iter().filter(|s| !s.is_ok()) {
        let text = format!("because {status:?}");
        let bytes = reply_bytes(status, "srv", &text, SessionNumbers::default(), 0);
        let (addr, t) = fake_server(move |mut s, _| s.write_all(&bytes).unwrap());
        match c.connect(addr, TransportKind::Tcp, now()) {
            Err(e @ ConnectError::Refused { .. }) => {
                let ConnectError::Refused { status: s, text: t } = &e else { unreachable!() };
                assert_eq!((*s, t.as_str()), (status, text.as_str()));
                let retryable = matches!(
                    status,
                    LoginStatus::AlreadyLoggedIn | LoginStatus::ServerFull | LoginStatus::StorageError
                );
                assert_eq!(e.is_retryable(), retryable, "{status:?}");
            }
            other => panic!("{status:?}: {other:?}"),
        }
        t.join().unwrap();
        kept(&c, 2, &format!("{status:?}"));
        assert_eq!(c.close_reason(), Some(&CloseReason::LoginRefused { status, text }), "the refusal is the reason");
    }
}

/// The server accepts, but its numbers do not fit the client's: the client finds
/// it, returns the typed mismatch, tells the server why (a CLOSE frame), and keeps
/// everything.
#[test]
fn a_mismatch_found_by_the_client_is_typed_and_the_server_is_told() {
    let dir = TempDir::new("client-mismatch");
    let mut c = open(&config(&dir, "c"));
    push_some(&mut c, 2);
    // The server says it consumed 5 of the client's messages: the client pushed 2.
    let (addr, t) = fake_server(|mut s, _| {
        s.write_all(&ok_reply("srv", numbers(5, 5, (0, 0)))).unwrap();
        let (h, payload) = read_frame(&mut s).expect("the client's close frame");
        assert_eq!(h.msg_type, msg_type::CLOSE);
        let close = CloseFrame::parse(&payload).unwrap();
        assert!(close.text.contains("lost"), "{close:?}");
        assert!(read_frame(&mut s).is_none(), "nothing after the close");
    });
    match c.connect(addr, TransportKind::Tcp, now()) {
        Err(e @ ConnectError::SeqMismatch(_))
            if matches!(&e, ConnectError::SeqMismatch(l) if matches!(**l, LostState {
                mismatch: SeqMismatch::LocalLostSent { peer_seen: 5, next_seq: 2 },
                ..
            })) =>
        {
            assert!(!e.is_retryable(), "{e}");
            // The error names this side's store and the command that resets it.
            let store = c.store().path().display().to_string();
            assert!(e.to_string().contains(&format!("`tcpshm reset {store}")), "{e}");
        }
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
    assert!(!c.is_connected());
    assert_eq!(c.resume_point(), 2);
    assert!(
        matches!(c.close_reason(), Some(CloseReason::Protocol(ProtocolError::SeqMismatch(_)))),
        "{:?}",
        c.close_reason()
    );
    // The server says it holds messages beyond what it ever pushed to the client: the
    // client finds that the server lost send state.
    let (addr, t) = fake_server(|mut s, _| {
        s.write_all(&ok_reply("srv", numbers(0, 0, (3, 3)))).unwrap();
        let _ = read_frame(&mut s);
    });
    match c.connect(addr, TransportKind::Tcp, now()) {
        Err(ConnectError::SeqMismatch(m)) => assert!(!m.peer_lost_state(), "{m:?}"),
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
    assert_eq!((c.is_connected(), c.resume_point()), (false, 2));
}

/// A shared-memory login whose file the server names cannot be used: no file (the
/// server has not made it yet, or removed it: worth another try), a file that is
/// not a connection file (not worth it). Typed, nothing lost.
#[test]
fn a_shared_memory_file_that_cannot_be_used_is_a_typed_error() {
    let dir = TempDir::new("shm-file");
    let cfg = config(&dir, "c");
    let mut c = open(&cfg);
    push_some(&mut c, 2);
    let (addr, t) = fake_server(|mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Ok, "srv", "", SessionNumbers::default(), 42)).unwrap();
        let _ = read_frame(&mut s);
    });
    match c.connect(addr, TransportKind::Shm, now()) {
        Err(e @ ConnectError::Shm(ShmError::NotFound(_))) => assert!(e.is_retryable(), "{e}"),
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
    assert_eq!((c.is_connected(), c.resume_point()), (false, 2));
    // A file that is not a connection file.
    let shm = ShmDir::new("/dev/shm", dir.shm_prefix()).unwrap();
    let path = shm.path(&"srv".parse().unwrap(), &"c".parse().unwrap());
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let (addr, t) = fake_server(|mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Ok, "srv", "", SessionNumbers::default(), 42)).unwrap();
        let _ = read_frame(&mut s);
    });
    match c.connect(addr, TransportKind::Shm, now()) {
        Err(e @ ConnectError::Shm(_)) => assert!(!e.is_retryable(), "{e:?}"),
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
    assert_eq!((c.is_connected(), c.resume_point()), (false, 2));
}

/// Messages queued in the rings of the session's file (pushed over shared memory,
/// not yet consumed) must move to the store when the server names another file; a
/// store too small for them is a typed `QueueTooSmall`, and nothing is lost: a login
/// naming the old file again delivers every one of them, in order.
#[test]
fn queued_messages_that_cannot_move_are_a_typed_error_and_stay() {
    let dir = TempDir::new("queue-too-small");
    let cfg = config(&dir, "c");
    let shm = ShmDir::new("/dev/shm", dir.shm_prefix()).unwrap();
    let (srv, cli) = ("srv".parse::<Name>().unwrap(), "c".parse::<Name>().unwrap());
    let file = ShmFile::create_or_open(&shm, &srv, &cli, Capacities::symmetric(1 << 20)).unwrap();
    let id = file.file_id();
    let mut c = open(&cfg);
    let (addr, t) = fake_server(move |mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Ok, "srv", "", SessionNumbers::default(), id)).unwrap();
        let _ = read_frame(&mut s); // until the client closes
    });
    c.connect(addr, TransportKind::Shm, now()).unwrap();
    // Far more than the client's 64 KiB store holds, into the 1 MiB ring.
    const N: u64 = 3000;
    for k in 0..N {
        c.alloc(100).unwrap().expect("room in the ring")[..8].copy_from_slice(&k.to_le_bytes());
        c.push(6).unwrap();
    }
    c.close(CloseReason::Requested);
    t.join().unwrap();
    let (addr, t) = fake_server(move |mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Ok, "srv", "", SessionNumbers::default(), id + 1)).unwrap();
        let _ = read_frame(&mut s);
    });
    match c.connect(addr, TransportKind::Shm, now()) {
        Err(e @ ConnectError::QueueTooSmall { .. }) => assert!(!e.is_retryable(), "{e}"),
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
    assert_eq!((c.is_connected(), c.resume_point()), (false, N));
    // The server's file again: everything arrives, once, in order.
    let (tx, rx) = mpsc::channel::<()>();
    let (addr, t) = fake_server(move |mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Ok, "srv", "", numbers(0, N, (0, 0)), id)).unwrap();
        let _ = rx.recv();
    });
    let done = c.connect(addr, TransportKind::Shm, now()).unwrap();
    assert_eq!(done.to_resend, N);
    let mut rings = Rings::new(file);
    for k in 0..N {
        let m = rings.rx.front().unwrap().expect("a message in the ring");
        assert_eq!((m.seq, &m.payload[..8]), (k, &k.to_le_bytes()[..]));
        rings.rx.pop(k + 1).unwrap();
    }
    assert!(rings.rx.front().unwrap().is_none());
    tx.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn the_login_says_who_the_client_is_and_what_it_holds_then_the_queue_is_resent() {
    let dir = TempDir::new("login");
    let mut cfg = config(&dir, "trader-7");
    cfg.credential = b"s3cret".to_vec();
    let mut c = open(&cfg);
    for k in 0..3u8 {
        c.alloc(4).unwrap().unwrap().copy_from_slice(&[k; 4]);
        c.push(10 + u16::from(k)).unwrap();
    }
    let (popped_tx, popped_rx) = mpsc::channel::<()>();
    let (addr, t) = fake_server(move |mut s, _| {
        s.write_all(&ok_reply("Srv1", numbers(1, 1, (0, 0)))).unwrap();
        // The server consumed message 0 already: 1 and 2 are resent, in order.
        for k in 1..3u8 {
            let (h, p) = read_user_frame(&mut s);
            assert_eq!((h.msg_type, h.seq, p), (10 + u16::from(k), u64::from(k), vec![k; 4]));
        }
        // And one message to the client; the socket stays open until it was popped.
        let mut buf = [0u8; 64];
        let n = tcpshm_proto::encode::encode_frame(&mut buf, 99, 0, 3, b"hello").unwrap();
        s.write_all(&buf[..n]).unwrap();
        popped_rx.recv().unwrap();
    });
    let done = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    assert_eq!(
        (done.server.as_str(), done.transport, done.reset, done.to_resend),
        ("Srv1", TransportKind::Tcp, None, 2)
    );
    assert!(c.is_connected());
    let m = wait_until("the fake server's message", || {
        assert!(c.poll(now()), "{:?}", c.close_reason());
        c.front().map(|m| (m.msg_type, m.seq, m.payload.to_vec()))
    });
    assert_eq!(m, (99, 0, b"hello".to_vec()));
    c.pop();
    popped_tx.send(()).unwrap();
    let got = t.join().unwrap();
    assert_eq!(
        got,
        Got {
            client: "trader-7".into(),
            last_server: None,
            transport: TransportKind::Tcp,
            numbers: numbers(0, 0, (0, 3)),
            limits: Limits { max_message: 1024, queue_capacity: 1 << 16 },
            largest_queued: 4,
            credential: b"s3cret".to_vec(),
        }
    );
    assert_eq!(c.last_server().map(|n| n.to_string()), Some("Srv1".into()));
    // The next login (a new process) says what the client consumed, what the server
    // acknowledged, and which server it knows.
    drop(c);
    let mut c = open(&cfg);
    let (addr, t) = fake_server(|mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Rejected, "Srv1", "bye", SessionNumbers::default(), 0)).unwrap();
    });
    assert!(matches!(c.connect(addr, TransportKind::Shm, now()), Err(ConnectError::Refused { .. })));
    let got = t.join().unwrap();
    assert_eq!(got.last_server.as_deref(), Some("Srv1"));
    assert_eq!(got.transport, TransportKind::Shm);
    // (The hello carried the server's ack of all three.)
    assert_eq!(got.numbers, numbers(1, 1, (3, 3)));
    assert_eq!(c.last_server().map(|n| n.to_string()), Some("Srv1".into()));
}

/// `is_retryable` for the errors a fake server cannot make.
#[test]
fn is_retryable_for_every_kind() {
    use std::io::{Error, ErrorKind};
    let io = ConnectError::Io { op: "connect", source: Error::from(ErrorKind::ConnectionRefused) };
    assert!(io.is_retryable());
    assert!(ConnectError::Closed.is_retryable());
    let n = |s: &str| s.parse().unwrap();
    let files = SessionFiles::new("/d".as_ref(), n("c"), n("s"), Side::Client, None, &Default::default());
    let mismatch = SeqMismatch::PeerLostSent { seen: 5, peer_next: 2 };
    let m = ConnectError::SeqMismatch(Box::new(LostState { mismatch, files, side: Side::Client }));
    assert!(!m.is_retryable());
    let busy =
        ConnectError::Shm(ShmError::Busy { path: "/dev/shm/x".into(), side: tcpshm_transport_shm::Side::Client });
    assert!(busy.is_retryable(), "the previous process of this client has not let go yet");
    assert!(!ConnectError::QueueTooSmall { count: 1, what: "the session store" }.is_retryable());
    let reason = ConnectError::Failed(CloseReason::Storage(tcpshm_proto::Fault::msg("disk full".to_string())));
    assert!(!reason.is_retryable());
}
