//! Logins, good and bad: what a hostile, broken, slow, duplicate or forgetful client
//! gets from the server, and what the server keeps (and creates) meanwhile.

mod common;

use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tcpshm_client::{Client, ClientConfig, ConnectError, TransportKind};
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::login::LoginStatus;
use tcpshm_proto::{Name, Transport};
use tcpshm_server::{
    AcceptAll, GroupId, LoginHandler, LoginInfo, Reject, RoundRobin, Server, ServerConfig, ShardPolicy,
};

type Srv<L, P = RoundRobin> = Polled<Server<L, P, Recorder>>;

/// A test's directory and event log.
struct Env {
    dir: TempDir,
    log: EventLog,
}

impl Env {
    fn new(tag: &str) -> Env {
        Env { dir: TempDir::new(tag), log: EventLog::default() }
    }

    fn server_cfg(&self, name: &str) -> ServerConfig {
        server_config(name, &self.dir)
    }

    /// A client config whose store lives in `dir/<sub>`.
    fn client_cfg(&self, name: &str, sub: &str) -> ClientConfig {
        client_config(name, &self.dir, sub)
    }

    fn start<L: LoginHandler + 'static, P: ShardPolicy + 'static>(
        &self,
        cfg: ServerConfig,
        login: L,
        policy: P,
    ) -> (Srv<L, P>, SocketAddr) {
        let handlers = vec![Recorder { log: self.log.clone() }, Recorder { log: self.log.clone() }];
        let server = Server::bind(cfg, login, policy, handlers).unwrap();
        let addr = server.local_addrs()[0];
        (Polled::spawn(server, |s| s.poll(now())), addr)
    }

    fn start_default(&self, cfg: ServerConfig) -> (Srv<AcceptAll>, SocketAddr) {
        self.start(cfg, AcceptAll, RoundRobin::default())
    }
}

fn refusal(cfg: &ClientConfig, addr: SocketAddr, kind: TransportKind) -> (LoginStatus, String) {
    let mut c = <Client>::open(cfg.clone(), now()).unwrap();
    match c.connect(addr, kind, now()) {
        Err(ConnectError::Refused { status, text }) => (status, text),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn wrong_magic_is_refused_as_bad_magic() {
    let env = Env::new("magic");
    let (srv, addr) = env.start_default(env.server_cfg("Srv"));
    let login = RawLogin { magic: u32::from_le_bytes(*b"HTTP"), ..RawLogin::new("c") };
    let (r, mut s) = raw_exchange(addr, &login.frame());
    assert_eq!(r.status, LoginStatus::BadMagic, "{r:?}");
    assert_eq!(r.server, "Srv");
    assert!(r.text.contains("magic"), "{r:?}");
    assert!(frames_until_closed(&mut s).is_empty(), "nothing after a refusal");
    assert_eq!(srv.with(|s| s.control().stats().refused), 1);
}

#[test]
fn wrong_version_is_refused_as_bad_version() {
    let env = Env::new("version");
    let (srv, addr) = env.start_default(env.server_cfg("Srv"));
    for version in [1, 7] {
        let login = RawLogin { version, ..RawLogin::new("c") };
        let (r, mut s) = raw_exchange(addr, &login.frame());
        assert_eq!(r.status, LoginStatus::BadVersion, "{r:?}");
        assert!(r.text.contains(&version.to_string()), "the text names the version: {r:?}");
        assert!(frames_until_closed(&mut s).is_empty());
    }
    assert_eq!(srv.with(|s| s.control().stats().admitted), 0);
}

#[test]
fn bytes_that_are_not_a_login_are_refused_as_malformed() {
    let env = Env::new("http");
    let (srv, addr) = env.start_default(env.server_cfg("Srv"));
    let (r, mut s) = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    assert!(frames_until_closed(&mut s).is_empty());
    // A valid frame of another type than a login, and a heartbeat, are refused too.
    let (r, _) = raw_exchange(addr, &raw_frame(7, 0, 0, b"hello"));
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    assert!(r.text.contains("0x0007"), "{r:?}");
    let (r, _) = raw_exchange(addr, &raw_frame(msg_type::HEARTBEAT, 0, 0, b""));
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    // Trailing bytes after a login (a client that does not wait for the reply).
    let mut bytes = RawLogin::new("eager").frame();
    bytes.extend_from_slice(&raw_frame(1, 0, 0, b"too soon"));
    let (r, _) = raw_exchange(addr, &bytes);
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    // Numbers that contradict each other (seen below consumed, an inverted range).
    let (r, _) = raw_exchange(addr, &RawLogin { consumed: 5, seen: 4, ..RawLogin::new("c") }.frame());
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    let (r, _) = raw_exchange(addr, &RawLogin { first_unacked: 5, next: 4, ..RawLogin::new("c") }.frame());
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    // An unknown transport code.
    let (r, _) = raw_exchange(addr, &RawLogin { transport: 2, ..RawLogin::new("c") }.frame());
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    assert_eq!(srv.with(|s| s.control().stats()).admitted, 0);
}

#[test]
fn invalid_and_path_traversal_names_are_refused_and_create_no_file() {
    let env = Env::new("names");
    let (srv, addr) = env.start_default(env.server_cfg("Srv"));
    let long = vec![b'a'; 65];
    let longest = vec![b'a'; 255];
    let bad: Vec<&[u8]> = vec![
        b"",
        b".",
        b"..",
        b"../x",
        b"../../etc/passwd",
        b"a/b",
        b"/abs",
        b".hidden",
        b"a b",
        b"a\0b",
        b"a@b",
        "caf\u{e9}".as_bytes(),
        &long,
        &longest,
    ];
    let mut cases = 0;
    for name in &bad {
        for transport in [0u8, 1] {
            // As the client name...
            let login = RawLogin { client: name.to_vec(), transport, ..RawLogin::new("x") };
            let (r, mut s) = raw_exchange(addr, &login.frame());
            assert_eq!(r.status, LoginStatus::BadName, "client name {name:?}: {r:?}");
            assert!(r.text.contains("client name"), "{r:?}");
            assert!(frames_until_closed(&mut s).is_empty());
            cases += 1;
            // ...and as the last server name.
            if name.is_empty() {
                continue; // An empty last server is valid: a fresh client.
            }
            let login = RawLogin { last_server: name.to_vec(), transport, ..RawLogin::new("x") };
            let (r, _) = raw_exchange(addr, &login.frame());
            assert_eq!(r.status, LoginStatus::BadName, "last server name {name:?}: {r:?}");
            assert!(r.text.contains("last server name"), "{r:?}");
            cases += 1;
        }
    }
    let stats = srv.with(|s| s.control().stats());
    assert_eq!((stats.admitted, stats.refused), (0, cases));
    // No file anywhere: not in the storage directory, not next to it, not in /dev/shm.
    assert!(files_below(env.dir.path()).is_empty(), "{:?}", files_below(env.dir.path()));
    let entries: Vec<_> = std::fs::read_dir(env.dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("server")]);
    assert!(env.dir.shm_files().is_empty());
    // Nor next to it, where `../x` would point.
    let parent = env.dir.path().parent().unwrap();
    let escaped: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("x@") || n.starts_with("passwd@") || n.contains("@x"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    // The server still works.
    let mut c = connect(&env.client_cfg("good", "client"), addr, TransportKind::Tcp);
    echo_once(&mut c, b"still here");
}

#[test]
fn oversize_credential_is_refused() {
    let env = Env::new("cred");
    let (srv, addr) = env.start_default(env.server_cfg("Srv"));
    // 257 bytes: the frame fits the login limit, the field does not.
    let login = RawLogin { credential: vec![1; 257], ..RawLogin::new("c") };
    let (r, mut s) = raw_exchange(addr, &login.frame());
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    assert!(r.text.contains("credential"), "{r:?}");
    assert!(frames_until_closed(&mut s).is_empty());
    // 64 KiB: the frame's length is refused from its header, before it is buffered.
    let login = RawLogin { credential: vec![1; 65_000], ..RawLogin::new("c") };
    let frame = login.frame();
    let mut s = raw_connect(addr);
    s.write_all(&frame[..200]).unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    // Exactly 256 bytes is allowed, and the handler sees them.
    let login = RawLogin { credential: vec![7; 256], ..RawLogin::new("c") };
    let (r, _) = raw_exchange(addr, &login.frame());
    assert_eq!(r.status, LoginStatus::Ok, "{r:?}");
    assert_eq!(srv.with(|s| s.control().stats()).admitted, 1);
}

/// A slowloris login: one byte at a time, the server polled between the bytes (so
/// each poll reads one byte for certain); the login is accepted on the last one.
#[test]
fn a_login_split_into_single_bytes_is_accepted() {
    let env = Env::new("split");
    let mut cfg = env.server_cfg("Srv");
    cfg.readiness_interval = 1;
    cfg.accept_interval = 1;
    let (srv, addr) = env.start_default(cfg);
    srv.pause();
    let frame = RawLogin::new("slow").frame();
    let mut s = raw_connect(addr);
    for (k, b) in frame.iter().enumerate() {
        s.write_all(std::slice::from_ref(b)).unwrap();
        let (pending, admitted) = srv.with(|s| {
            s.poll(now());
            (s.control().pending(), s.control().stats().admitted)
        });
        let last = k + 1 == frame.len();
        assert_eq!((pending, admitted), (usize::from(!last), u64::from(last)), "after byte {k}");
    }
    srv.resume();
    let r = read_reply(&mut s);
    assert_eq!((r.status, r.server.as_str(), r.consumed), (LoginStatus::Ok, "Srv", 0), "{r:?}");
    // The connection works: one echo over the raw socket.
    s.write_all(&raw_frame(9, 0, 0, b"byte by byte")).unwrap();
    let (h, payload) = next_user_frame(&mut s);
    assert_eq!((h.msg_type, h.seq, payload.as_slice()), (9, 0, &b"byte by byte"[..]));
}

/// While no login is pending, control looks at its listeners once per
/// `accept_interval` (one `epoll_wait` saved on most polls of a busy-polling thread);
/// once a login is pending, at `readiness_interval`. The server's clock is the test's.
#[test]
fn listeners_are_checked_once_per_accept_interval_while_no_login_is_pending() {
    let env = Env::new("accept_interval");
    let mut cfg = env.server_cfg("Srv");
    cfg.accept_interval = 1_000_000;
    cfg.readiness_interval = 1_000;
    let (srv, addr) = env.start_default(cfg);
    srv.pause();
    // Later than any check the running server made: this poll checks, finds nothing.
    let t = now() + 10_000_000;
    let accepted_at = |at: u64| {
        srv.with(move |s| {
            s.poll(at);
            s.control().stats().accepted
        })
    };
    assert_eq!(accepted_at(t), 0);
    let _first = raw_connect(addr);
    assert_eq!(accepted_at(t + 999_999), 0, "checked before accept_interval");
    assert_eq!(accepted_at(t + 1_000_000), 1);
    // A login is pending now: the next check comes after readiness_interval.
    let _second = raw_connect(addr);
    assert_eq!(accepted_at(t + 1_000_999), 1, "checked before readiness_interval");
    assert_eq!(accepted_at(t + 1_001_000), 2);
    srv.resume();
}

#[test]
fn an_unfinished_login_times_out_and_frees_its_slot() {
    let env = Env::new("timeout");
    let mut cfg = env.server_cfg("Srv");
    cfg.login_timeout = 1_000_000_000;
    cfg.max_connections = 1;
    let (srv, addr) = env.start_default(cfg);
    let frame = RawLogin::new("stuck").frame();
    let mut stuck = raw_connect(addr);
    stuck.write_all(&frame[..frame.len() / 2]).unwrap();
    srv.wait_for("a pending login", |s| s.control().pending() == 1);
    // The pending login holds the only connection slot (unless it timed out already
    // on a very slow machine: then the slot is free and the login goes through).
    let ccfg = env.client_cfg("real", "client");
    let mut c = <Client>::open(ccfg.clone(), now()).unwrap();
    match c.connect(addr, TransportKind::Tcp, now()) {
        Err(ConnectError::Refused { status: LoginStatus::ServerFull, .. }) => {}
        Ok(_) => assert_eq!(srv.with(|s| s.control().stats().timed_out), 1, "admitted beside a pending login"),
        Err(e) => panic!("{e}"),
    }
    drop(c);
    srv.wait_for("the login timeout", |s| s.control().pending() == 0 && s.control().stats().timed_out == 1);
    let r = read_reply(&mut stuck);
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    assert!(r.text.contains("in time"), "{r:?}");
    assert!(frames_until_closed(&mut stuck).is_empty());
    // The slot is free again.
    Recorder::wait_disconnects(&env.log, "real", Recorder::logons(&env.log, "real").len());
    let mut c = connect(&ccfg, addr, TransportKind::Tcp);
    echo_once(&mut c, b"room again");
    // A connection that sends nothing at all times out the same way.
    drop(c);
    Recorder::wait_disconnects(&env.log, "real", Recorder::logons(&env.log, "real").len());
    let mut silent = raw_connect(addr);
    srv.wait_for("a pending login", |s| s.control().pending() == 1);
    let r = read_reply(&mut silent);
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    srv.wait_for("the slot freed", |s| s.control().pending() == 0);
    assert_eq!(srv.with(|s| s.control().stats().timed_out), 2);
}

fn same_name_twice(kind: TransportKind) {
    let env = Env::new("twice");
    let (_srv, addr) = env.start_default(env.server_cfg("Srv"));
    let first_cfg = env.client_cfg("dup", "first");
    let mut first = connect(&first_cfg, addr, kind);
    echo_once(&mut first, b"one");
    // Another process with the same name (its own store) while the first is alive.
    let (status, text) = refusal(&env.client_cfg("dup", "second"), addr, kind);
    assert_eq!(status, LoginStatus::AlreadyLoggedIn, "{text}");
    assert!(text.contains("dup"), "{text}");
    // The first was not disturbed.
    echo_once(&mut first, b"two");
    assert!(Recorder::disconnects(&env.log, "dup").is_empty());
    // Once it is really gone, the name may log in again (here: the same session).
    drop(first);
    Recorder::wait_disconnects(&env.log, "dup", 1);
    let mut again = connect(&first_cfg, addr, kind);
    echo_once(&mut again, b"three");
    assert_eq!(Recorder::logons(&env.log, "dup").len(), 2);
}

#[test]
fn the_same_name_twice_is_refused_while_the_first_is_alive_tcp() {
    same_name_twice(TransportKind::Tcp);
}

#[test]
fn the_same_name_twice_is_refused_while_the_first_is_alive_shm() {
    same_name_twice(TransportKind::Shm);
}

/// The first connection died but the server has not polled since: the new login
/// finds it dead and replaces it instead of refusing it. The server is paused while
/// the client dies and logs in again; once the new login request is in the server's
/// socket (the stream says so), ONE server poll takes the login and finishes it —
/// a group finishes handed-over logins before it looks at readiness — so the dead
/// connection is found by the login, for certain.
fn fast_restart(kind: TransportKind) {
    let env = Env::new("restart");
    let mut scfg = env.server_cfg("Srv");
    scfg.readiness_interval = 1;
    scfg.accept_interval = 1;
    let (srv, addr) = env.start_default(scfg);
    let cfg = env.client_cfg("phoenix", "client");
    let mut first = connect(&cfg, addr, kind);
    echo_once(&mut first, b"before");
    srv.pause();
    drop(first); // The process "dies": its socket closes, its locks go.
    let (stream, written) = Announcing::connect(addr);
    let t = std::thread::spawn(move || {
        let mut c = Client::<Announcing>::open(cfg, now()).unwrap();
        let r = c.connect_over(stream, kind, now());
        (c, r)
    });
    wait_until("the login request written", || (written.load(Ordering::SeqCst) > 0).then_some(()));
    assert!(Recorder::disconnects(&env.log, "phoenix").is_empty(), "the server did not poll");
    srv.with(|s| s.poll(now()));
    assert_eq!(Recorder::disconnects(&env.log, "phoenix").len(), 1, "the dead connection found by the login");
    assert_eq!(Recorder::logons(&env.log, "phoenix").len(), 2, "the login finished in the same poll");
    srv.resume();
    let (mut second, r) = t.join().unwrap();
    r.expect("a restarted client replaces its dead connection");
    echo_once(&mut second, b"after");
    assert_eq!(Recorder::disconnects(&env.log, "phoenix").len(), 1);
}

#[test]
fn a_fast_restart_replaces_a_dead_connection_not_yet_noticed_tcp() {
    fast_restart(TransportKind::Tcp);
}

#[test]
fn a_fast_restart_replaces_a_dead_connection_not_yet_noticed_shm() {
    fast_restart(TransportKind::Shm);
}

#[test]
fn a_full_server_refuses_and_takes_logins_again_when_room_frees() {
    let env = Env::new("full");
    let mut cfg = env.server_cfg("Srv");
    cfg.max_connections = 2;
    let (srv, addr) = env.start_default(cfg);
    let mut a = connect(&env.client_cfg("a", "a"), addr, TransportKind::Tcp);
    let mut b = connect(&env.client_cfg("b", "b"), addr, TransportKind::Shm);
    let ccfg = env.client_cfg("c", "c");
    let (status, text) = refusal(&ccfg, addr, TransportKind::Tcp);
    assert_eq!(status, LoginStatus::ServerFull, "{text}");
    assert_eq!(refusal(&ccfg, addr, TransportKind::Shm).0, LoginStatus::ServerFull);
    let e = <Client>::open(ccfg.clone(), now()).unwrap().connect(addr, TransportKind::Tcp, now()).unwrap_err();
    assert!(e.is_retryable(), "a full server is worth another try: {e}");
    echo_once(&mut a, b"a");
    echo_once(&mut b, b"b");
    drop(a);
    Recorder::wait_disconnects(&env.log, "a", 1);
    let mut c = connect(&ccfg, addr, TransportKind::Tcp);
    echo_once(&mut c, b"c");
    let stats = srv.with(|s| s.control().stats());
    assert_eq!((stats.admitted, stats.refused), (3, 3));
}

/// Accepts only the right credential; refuses with a text naming the client.
struct Gate;

impl LoginHandler for Gate {
    fn on_login(&mut self, info: &LoginInfo<'_>, suggested: GroupId) -> Result<GroupId, Reject> {
        match info.credential {
            b"open sesame" => Ok(suggested),
            b"long" => Err(Reject::new("\u{e9}".repeat(200))),
            other => Err(Reject::new(format!("unknown account {} ({} bytes of credential)", info.client, other.len()))),
        }
    }
}

#[test]
fn the_handlers_rejection_text_reaches_the_client() {
    let env = Env::new("reject");
    let (srv, addr) = env.start(env.server_cfg("Srv"), Gate, RoundRobin::default());
    let mut cfg = env.client_cfg("mallory", "m");
    cfg.credential = b"guess".to_vec();
    for kind in [TransportKind::Tcp, TransportKind::Shm] {
        let (status, text) = refusal(&cfg, addr, kind);
        assert_eq!((status, text.as_str()), (LoginStatus::Rejected, "unknown account mallory (5 bytes of credential)"));
    }
    // A text longer than the reply allows is cut at a character boundary.
    cfg.credential = b"long".to_vec();
    let (status, text) = refusal(&cfg, addr, TransportKind::Tcp);
    assert_eq!((status, text), (LoginStatus::Rejected, "\u{e9}".repeat(128)));
    // A rejected login leaves nothing behind.
    assert!(files_below(&env.dir.join("server")).is_empty());
    assert!(env.dir.shm_files().is_empty());
    cfg.credential = b"open sesame".to_vec();
    let mut c = connect(&cfg, addr, TransportKind::Tcp);
    echo_once(&mut c, b"welcome");
    assert_eq!(srv.with(|s| s.control().stats().refused), 3);
}

/// Puts one client in a group that does not exist.
struct Stray;

impl LoginHandler for Stray {
    fn on_login(&mut self, info: &LoginInfo<'_>, suggested: GroupId) -> Result<GroupId, Reject> {
        Ok(if info.client.as_str() == "stray" { 7 } else { suggested })
    }
}

/// A policy that answers out of range.
struct Broken;

impl ShardPolicy for Broken {
    fn assign(&mut self, _client: &Name, loads: &[usize]) -> GroupId {
        loads.len() + 97
    }
}

#[test]
fn a_group_out_of_range_is_refused_with_a_clear_text() {
    let env = Env::new("stray");
    let (srv, addr) = env.start(env.server_cfg("Srv"), Stray, RoundRobin::default());
    let (status, text) = refusal(&env.client_cfg("stray", "s"), addr, TransportKind::Tcp);
    assert_eq!(status, LoginStatus::Rejected);
    assert!(text.contains("group 7") && text.contains("2 groups"), "{text}");
    let mut c = connect(&env.client_cfg("fine", "f"), addr, TransportKind::Tcp);
    echo_once(&mut c, b"ok");
    drop(srv.stop()); // The polling thread did not panic.

    let env = Env::new("broken");
    let (srv, addr) = env.start(env.server_cfg("Srv"), AcceptAll, Broken);
    let (status, text) = refusal(&env.client_cfg("any", "a"), addr, TransportKind::Shm);
    assert_eq!(status, LoginStatus::Rejected);
    assert!(text.contains("group 99"), "{text}");
    assert!(files_below(&env.dir.join("server")).is_empty() && env.dir.shm_files().is_empty());
    drop(srv.stop());
}

#[test]
fn a_disabled_transport_is_refused() {
    let env = Env::new("disabled");
    let mut cfg = env.server_cfg("Srv");
    cfg.enable_shm = false;
    let (_srv, addr) = env.start_default(cfg);
    let ccfg = env.client_cfg("c", "c");
    let (status, text) = refusal(&ccfg, addr, TransportKind::Shm);
    assert_eq!(status, LoginStatus::TransportDisabled, "{text}");
    assert!(env.dir.shm_files().is_empty());
    let mut c = connect(&ccfg, addr, TransportKind::Tcp);
    echo_once(&mut c, b"tcp works");
    drop(c);

    let env = Env::new("disabled2");
    let mut cfg = env.server_cfg("Srv");
    cfg.enable_tcp = false;
    let (_srv, addr) = env.start_default(cfg);
    let ccfg = env.client_cfg("c", "c");
    let e = <Client>::open(ccfg.clone(), now()).unwrap().connect(addr, TransportKind::Tcp, now()).unwrap_err();
    assert!(matches!(e, ConnectError::Refused { status: LoginStatus::TransportDisabled, .. }), "{e}");
    assert!(!e.is_retryable());
    // The store the refused first login created goes (right after the reply).
    wait_until("the refused login's store removed", || files_below(&env.dir.join("server")).is_empty().then_some(()));
    let mut c = connect(&ccfg, addr, TransportKind::Shm);
    echo_once(&mut c, b"shm works");
}

fn lost_client_state(kind: TransportKind) {
    let env = Env::new(&format!("amnesia-{kind}"));
    let (_srv, addr) = env.start_default(env.server_cfg("Srv"));
    let cfg = env.client_cfg("forgetful", "client");
    let mut c = connect(&cfg, addr, kind);
    for k in 0..5u8 {
        echo_once(&mut c, &[k; 10]);
    }
    // A sixth message whose echo arrives but is not popped: it stays in the server's
    // queue until the client pops it.
    c.alloc(3).unwrap().unwrap().copy_from_slice(b"six");
    c.push(42).unwrap();
    assert_eq!(next_message(&mut c).2, b"six");
    drop(c);
    Recorder::wait_disconnects(&env.log, "forgetful", 1);
    // The client loses its store (and its shared-memory mapping: a new process).
    let store = cfg.storage_dir.join(tcpshm_persist::file_name(&"forgetful".parse().unwrap(), &cfg.service));
    let backup = env.dir.join("backup");
    std::fs::copy(&store, &backup).unwrap();
    std::fs::remove_file(&store).unwrap();
    let mut fresh = <Client>::open(cfg.clone(), now()).unwrap();
    match fresh.connect(addr, kind, now()) {
        Err(e @ ConnectError::Refused { status: LoginStatus::SeqMismatch, .. }) => {
            assert!(e.to_string().contains("client forgetful lost"), "the text says who lost state: {e}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected a sequence mismatch, got {other:?}"),
    }
    assert!(!fresh.is_connected());
    drop(fresh);
    // Nothing was reset on the server: with its memory back, the client resumes and
    // gets the sixth echo again.
    std::fs::copy(&backup, &store).unwrap();
    let mut c = <Client>::open(cfg, now()).unwrap();
    let done = c.connect(addr, kind, now()).unwrap();
    assert_eq!((done.reset, done.to_resend), (None, 0));
    let (_, seq, payload) = next_message(&mut c);
    assert_eq!((seq, payload.as_slice()), (5, &b"six"[..]));
    c.pop();
    echo_once(&mut c, b"seven");
}

#[test]
fn a_client_that_lost_its_state_is_told_and_nothing_is_reset_tcp() {
    lost_client_state(TransportKind::Tcp);
}

#[test]
fn a_client_that_lost_its_state_is_told_and_nothing_is_reset_shm() {
    lost_client_state(TransportKind::Shm);
}

#[test]
fn a_renamed_server_resets_the_session_and_drops_old_messages() {
    let env = Env::new("rename");
    let storage = env.dir.join("server");
    let cfg = env.client_cfg("day-trader", "client");
    let (srv, addr) = env.start_default(server_config_at("Server20180713", &storage, env.dir.shm_prefix()));
    let mut c = connect(&cfg, addr, TransportKind::Tcp);
    for k in 0..3u8 {
        echo_once(&mut c, &[k]);
    }
    // An echo that arrives and is never popped.
    c.alloc(3).unwrap().unwrap().copy_from_slice(b"old");
    c.push(42).unwrap();
    assert_eq!(next_message(&mut c).2, b"old");
    drop(srv.stop());
    // Messages pushed while the server is down, for yesterday's server.
    for k in 0..4u8 {
        c.alloc(1).unwrap().unwrap()[0] = k;
        c.push(43).unwrap();
    }
    assert!(c.counters().queued() >= 4);
    assert_eq!(c.last_server().map(|n| n.to_string()), Some("Server20180713".into()));

    // The next day's server: same storage, new name.
    let (srv, addr) = env.start_default(server_config_at("Server20180714", &storage, env.dir.shm_prefix()));
    let done = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    let reset = done.reset.expect("the epoch change is reported");
    assert_eq!(reset.previous_epoch.map(|n| n.to_string()), Some("Server20180713".into()));
    assert!((4..=5).contains(&reset.dropped), "{reset:?}");
    assert_eq!(done.to_resend, 0);
    assert_eq!((c.counters().queued(), c.resume_point()), (0, 0));
    assert_eq!(c.last_server().map(|n| n.to_string()), Some("Server20180714".into()));
    // Nothing old arrives: the first message is the echo of the first new one, seq 0.
    c.alloc(3).unwrap().unwrap().copy_from_slice(b"new");
    c.push(44).unwrap();
    let (t, seq, payload) = next_message(&mut c);
    assert_eq!((t, seq, payload.as_slice()), (44, 0, &b"new"[..]));
    c.pop();
    // And the next is the next new one (nothing old in between).
    echo_once(&mut c, b"newer");
    // Reconnecting to the same server is no reset.
    drop(c);
    Recorder::wait_disconnects(&env.log, "day-trader", 1);
    let mut c = <Client>::open(cfg, now()).unwrap();
    assert_eq!(c.connect(addr, TransportKind::Tcp, now()).unwrap().reset, None);
    echo_once(&mut c, b"again");
    drop(srv);
}

#[test]
fn to_resend_counts_the_messages_pushed_while_disconnected() {
    for kind in [TransportKind::Tcp, TransportKind::Shm] {
        let env = Env::new(&format!("resend-{kind}"));
        let (_srv, addr) = env.start_default(env.server_cfg("Srv"));
        let mut c = <Client>::open(env.client_cfg("queued", "client"), now()).unwrap();
        assert!(!c.is_connected());
        for k in 0..5u8 {
            c.alloc(2).unwrap().unwrap().copy_from_slice(&[k, k]);
            c.push(u16::from(k)).unwrap();
        }
        let done = c.connect(addr, kind, now()).unwrap();
        assert_eq!(done.to_resend, 5);
        let mut got = Vec::new();
        wait_until("5 echoes", || {
            c.poll(now());
            while let Some(m) = c.front() {
                got.push((m.msg_type, m.payload.to_vec()));
                c.pop();
            }
            (got.len() == 5).then_some(())
        });
        assert_eq!(got, (0..5u8).map(|k| (u16::from(k), vec![k, k])).collect::<Vec<_>>());
        // Disconnected again: three more wait in the queue and leave on reconnect.
        c.close(tcpshm_proto::CloseReason::Requested);
        Recorder::wait_disconnects(&env.log, "queued", 1);
        for k in 5..8u8 {
            c.alloc(2).unwrap().unwrap().copy_from_slice(&[k, k]);
            c.push(u16::from(k)).unwrap();
        }
        let done = c.connect(addr, kind, now()).unwrap();
        assert_eq!(done.to_resend, 3, "{kind}");
        got.clear();
        wait_until("3 echoes", || {
            c.poll(now());
            while let Some(m) = c.front() {
                got.push((m.msg_type, m.payload.to_vec()));
                c.pop();
            }
            (got.len() == 3).then_some(())
        });
        assert_eq!(got, (5..8u8).map(|k| (u16::from(k), vec![k, k])).collect::<Vec<_>>());
    }
}

/// The same client process stays up while its shared-memory server is renamed: the
/// messages it pushed for yesterday's server (into yesterday's ring) are dropped and
/// counted, yesterday's file goes, and nothing of it reaches today's server.
#[test]
fn a_renamed_server_resets_a_live_shm_session_and_its_old_file_goes() {
    let env = Env::new("rename-shm");
    let storage = env.dir.join("server");
    let cfg = env.client_cfg("shm-trader", "client");
    let (srv, addr) = env.start_default(server_config_at("Day1", &storage, env.dir.shm_prefix()));
    let mut c = connect(&cfg, addr, TransportKind::Shm);
    echo_once(&mut c, b"day one");
    drop(srv.stop());
    // Pushed while the server is down: they wait in the old server's ring.
    for k in 0..3u8 {
        c.alloc(1).unwrap().unwrap()[0] = k;
        c.push(43).unwrap();
    }
    let old_file = env.dir.shm_files();
    assert_eq!(old_file.len(), 1, "{old_file:?}");
    assert!(old_file[0].to_string_lossy().contains("Day1@shm-trader"), "{old_file:?}");

    let (_srv, addr) = env.start_default(server_config_at("Day2", &storage, env.dir.shm_prefix()));
    let done = c.connect(addr, TransportKind::Shm, now()).unwrap();
    let reset = done.reset.expect("the epoch change is reported");
    assert_eq!(reset.previous_epoch.map(|n| n.to_string()), Some("Day1".into()));
    assert_eq!(reset.dropped, 3, "{reset:?}");
    // Yesterday's file (and the messages in it) is gone; today's is there.
    let files = env.dir.shm_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains("Day2@shm-trader"), "{files:?}");
    // The first message the server sees from this client is today's, seq 0, and the
    // next is the next of today's.
    c.alloc(3).unwrap().unwrap().copy_from_slice(b"day");
    c.push(44).unwrap();
    let (t, seq, payload) = next_message(&mut c);
    assert_eq!((t, seq, payload.as_slice()), (44, 0, &b"day"[..]));
    c.pop();
    echo_once(&mut c, b"two");
}
