//! The client's login against a hand-made server (a std listener speaking raw bytes):
//! what it sends, every way a login can fail (each a typed error, nothing lost), and
//! a successful login after which the queued messages are resent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tcpshm_client::{Client, ClientConfig, ConnectError, LoginStatus, OpenError, TransportKind};
use tcpshm_proto::decode::Control;
use tcpshm_proto::encode::encode_control;
use tcpshm_proto::frame::{frame_len, msg_type, Header, HEADER_LEN};
use tcpshm_proto::login::{LoginReply, LoginRequest, MAX_REPLY_LEN};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::{Name, Transport};

fn now() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tcpshm-client-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &TempDir, name: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(name.parse().unwrap(), &dir.0);
    cfg.queue_bytes = 1 << 16;
    cfg.max_message = 1024;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

/// What the fake server received as the login.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    client: String,
    last_server: Option<String>,
    transport: TransportKind,
    consumed: u64,
    send_range: (u64, u64),
    queue_capacity: u64,
    credential: Vec<u8>,
}

/// Reads one frame (header and payload, padding dropped).
fn read_frame(s: &mut TcpStream) -> (Header, Vec<u8>) {
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).unwrap();
    let h = Header::read(&head);
    let mut rest = vec![0u8; h.frame_len() - HEADER_LEN];
    s.read_exact(&mut rest).unwrap();
    rest.truncate(h.len as usize - HEADER_LEN);
    (h, rest)
}

/// A one-connection server: reads the login, then lets `then` answer.
fn fake_server(then: impl FnOnce(TcpStream, Got) + Send + 'static) -> (SocketAddr, std::thread::JoinHandle<Got>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (h, payload) = read_frame(&mut s);
        assert_eq!(h.msg_type, msg_type::LOGIN);
        let r = LoginRequest::parse(&payload).unwrap();
        let got = Got {
            client: r.client.to_string(),
            last_server: r.last_server.map(|n| n.to_string()),
            transport: r.transport,
            consumed: r.consumed,
            send_range: (r.send_range.first_unacked(), r.send_range.next()),
            queue_capacity: r.queue_capacity,
            credential: r.credential.to_vec(),
        };
        then(s, got.clone());
        got
    });
    (addr, t)
}

fn reply_bytes(status: LoginStatus, server: &str, text: &str, consumed: u64, range: (u64, u64)) -> Vec<u8> {
    let reply = LoginReply {
        status,
        server: Name::new(server).unwrap(),
        consumed,
        send_range: SeqRange::new(range.0, range.1).unwrap(),
        queue_capacity: 1 << 16,
        text,
    };
    let mut buf = vec![0u8; frame_len(MAX_REPLY_LEN)];
    let n = encode_control(&mut buf, &Control::LoginReply(reply), range.1, consumed).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn open_refuses_an_invalid_config_and_a_store_in_use() {
    let dir = TempDir::new("open");
    let mut cfg = config(&dir, "c");
    cfg.queue_bytes = 1000;
    assert!(matches!(Client::open(cfg, 0), Err(OpenError::Config(_))));
    let cfg = config(&dir, "c");
    let first = Client::open(cfg.clone(), 0).unwrap();
    assert!(matches!(Client::open(cfg.clone(), 0), Err(OpenError::Store(_))), "one process per session");
    drop(first);
    Client::open(cfg, 0).unwrap();
}

#[test]
fn no_server_is_an_io_error() {
    let dir = TempDir::new("nobody");
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut c = Client::open(config(&dir, "c"), now()).unwrap();
    match c.connect(addr, TransportKind::Tcp, now()) {
        Err(ConnectError::Io { op, .. }) => assert_eq!(op, "connect"),
        other => panic!("{other:?}"),
    }
    assert!(!c.is_connected());
}

#[test]
fn a_silent_server_times_out_within_the_connect_timeout() {
    let dir = TempDir::new("silent");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (addr, t) = fake_server(move |_s, _| {
        let _ = rx.recv_timeout(Duration::from_secs(10)); // Hold the socket, say nothing.
    });
    let mut cfg = config(&dir, "c");
    cfg.connect_timeout = Duration::from_millis(300);
    let mut c = Client::open(cfg, now()).unwrap();
    let start = Instant::now();
    match c.connect(addr, TransportKind::Tcp, now()) {
        Err(ConnectError::Io { op, source }) => {
            assert_eq!(op, "read login reply");
            assert!(matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{source}");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    tx.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn bytes_that_are_not_a_reply_are_a_protocol_error() {
    let dir = TempDir::new("garbage");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("http", b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        ("heartbeat", tcpshm_proto::encode::heartbeat(0, 0).to_vec()),
        ("bad magic", {
            let mut b = reply_bytes(LoginStatus::Ok, "srv", "", 0, (0, 0));
            b[HEADER_LEN] ^= 0xff;
            b
        }),
        ("truncated then closed", reply_bytes(LoginStatus::Ok, "srv", "", 0, (0, 0))[..30].to_vec()),
        ("nothing, closed", Vec::new()),
    ];
    for (case, bytes) in cases {
        let (addr, t) = fake_server(move |mut s, _| {
            s.write_all(&bytes).unwrap();
        });
        let mut c = Client::open(config(&dir, "c"), now()).unwrap();
        match c.connect(addr, TransportKind::Tcp, now()) {
            Err(ConnectError::Protocol(text)) => assert!(!text.is_empty(), "{case}"),
            other => panic!("{case}: {other:?}"),
        }
        t.join().unwrap();
    }
}

#[test]
fn every_refusal_is_typed_and_keeps_the_queue() {
    let dir = TempDir::new("refused");
    let mut c = Client::open(config(&dir, "c"), now()).unwrap();
    for k in 0..2u8 {
        c.alloc(3).unwrap().unwrap().copy_from_slice(&[k; 3]);
        c.push(5).unwrap();
    }
    for status in LoginStatus::ALL.into_iter().filter(|s| !s.is_ok()) {
        let text = format!("because {status:?}");
        let bytes = reply_bytes(status, "srv", &text, 0, (0, 0));
        let (addr, t) = fake_server(move |mut s, _| s.write_all(&bytes).unwrap());
        match (status, c.connect(addr, TransportKind::Tcp, now())) {
            (LoginStatus::SeqMismatch, Err(ConnectError::SeqMismatch(t))) => assert_eq!(t, text),
            (_, Err(ConnectError::Refused { status: s, text: t })) => assert_eq!((s, t), (status, text.clone())),
            (_, other) => panic!("{status:?}: {other:?}"),
        }
        t.join().unwrap();
        assert!(!c.is_connected());
        assert_eq!(c.counters().queue_depth, 2, "{status:?}: the queue is kept");
        assert_eq!(c.last_server(), None, "{status:?}: a refusal is no epoch");
    }
}

#[test]
fn the_login_says_who_the_client_is_and_what_it_holds_then_the_queue_is_resent() {
    let dir = TempDir::new("login");
    let mut cfg = config(&dir, "trader-7");
    cfg.credential = b"s3cret".to_vec();
    let mut c = Client::open(cfg.clone(), now()).unwrap();
    for k in 0..3u8 {
        c.alloc(4).unwrap().unwrap().copy_from_slice(&[k; 4]);
        c.push(10 + u16::from(k)).unwrap();
    }
    let (addr, t) = fake_server(|mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Ok, "Srv1", "", 1, (0, 0))).unwrap();
        // The server consumed message 0 already: 1 and 2 are resent, in order.
        for k in 1..3u8 {
            loop {
                let (h, p) = read_frame(&mut s);
                if h.msg_type == msg_type::HEARTBEAT || h.msg_type == msg_type::ACK {
                    continue;
                }
                assert_eq!((h.msg_type, h.seq, p), (10 + u16::from(k), u64::from(k), vec![k; 4]));
                break;
            }
        }
        // And one message to the client.
        let mut buf = [0u8; 64];
        let n = tcpshm_proto::encode::encode_frame(&mut buf, 99, 0, 3, b"hello").unwrap();
        s.write_all(&buf[..n]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let done = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    assert_eq!(
        (done.server.as_str(), done.transport, done.reset, done.to_resend),
        ("Srv1", TransportKind::Tcp, None, 2)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.front().is_none() {
        c.poll(now());
        assert!(Instant::now() < deadline, "no message from the fake server");
    }
    let m = c.front().unwrap();
    assert_eq!((m.msg_type, m.seq, m.payload), (99, 0, &b"hello"[..]));
    c.pop();
    let got = t.join().unwrap();
    assert_eq!(
        got,
        Got {
            client: "trader-7".into(),
            last_server: None,
            transport: TransportKind::Tcp,
            consumed: 0,
            send_range: (0, 3),
            queue_capacity: 1 << 16,
            credential: b"s3cret".to_vec(),
        }
    );
    assert_eq!(c.last_server().map(|n| n.to_string()), Some("Srv1".into()));
    // The next login says what the client consumed and which server it knows.
    drop(c);
    let mut c = Client::open(cfg, now()).unwrap();
    let (addr, t) = fake_server(|mut s, _| {
        s.write_all(&reply_bytes(LoginStatus::Rejected, "Srv1", "bye", 0, (0, 0))).unwrap();
    });
    let _ = c.connect(addr, TransportKind::Shm, now());
    let got = t.join().unwrap();
    assert_eq!(got.last_server.as_deref(), Some("Srv1"));
    assert_eq!(got.transport, TransportKind::Shm);
    assert_eq!(got.consumed, 1);
    assert_eq!(got.send_range.1, 3);
}
