//! Logins, good and bad: what a hostile, broken, slow, duplicate or forgetful client
//! gets from the server, and what the server keeps (and creates) meanwhile.

mod common;

use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tcpshm_client::{Client, ClientConfig, ConnectError, TransportKind};
use tcpshm_proto::frame::msg_type;
use tcpshm_proto::login::LoginStatus;
use tcpshm_proto::{Name, Transport};
use tcpshm_server::{
    AcceptAll, GroupId, LoginHandler, LoginInfo, Reject, RoundRobin, Server, ServerConfig, ShardPolicy,
};

type Srv<L, P = RoundRobin> = Polled<Server<L, P, Recorder>>;

const SECOND: Duration = Duration::from_secs(1);

/// A test's directories, shared-memory prefix and event log.
struct Env {
    dir: TempDir,
    prefix: String,
    _shm: ShmCleanup,
    log: EventLog,
}

impl Env {
    fn new(tag: &str) -> Env {
        let prefix = unique_shm_prefix();
        Env { dir: TempDir::new(tag), _shm: ShmCleanup(prefix.clone()), prefix, log: EventLog::default() }
    }

    fn server_cfg(&self, name: &str) -> ServerConfig {
        server_config(name, &self.dir.path().join("server"), &self.prefix)
    }

    /// A client config whose store lives in `dir/<sub>`.
    fn client_cfg(&self, name: &str, sub: &str) -> ClientConfig {
        client_config(name, &self.dir.path().join(sub), &self.prefix)
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
        (
            Polled::spawn(server, |s| {
                s.poll(now());
                std::thread::yield_now();
            }),
            addr,
        )
    }

    fn start_default(&self, cfg: ServerConfig) -> (Srv<AcceptAll>, SocketAddr) {
        self.start(cfg, AcceptAll, RoundRobin::default())
    }

    /// Waits until the server reported `client` disconnected `n` times.
    fn wait_disconnects(&self, client: &str, n: usize) {
        let log = self.log.clone();
        wait_until(&format!("{n} disconnect(s) of {client}"), 10 * SECOND, || {
            Recorder::disconnects(&log, client).len() >= n
        });
    }
}

/// One echo round trip of a real client, checked.
fn echo_once(c: &mut Client, payload: &[u8]) {
    c.alloc(payload.len()).unwrap().expect("room in the queue").copy_from_slice(payload);
    c.push(42).unwrap();
    let deadline = now() + 10_000_000_000;
    loop {
        assert!(c.poll(now()) || c.front().is_some(), "disconnected: {:?}", c.close_reason());
        if let Some(m) = c.front() {
            assert_eq!((m.msg_type, m.payload), (42, payload));
            c.pop();
            return;
        }
        assert!(now() < deadline, "no echo: {:?}", c.counters());
    }
}

fn connect(cfg: &ClientConfig, addr: SocketAddr, kind: TransportKind) -> Client {
    let mut c = Client::open(cfg.clone(), now()).unwrap();
    c.connect(addr, kind, now()).unwrap();
    c
}

fn refusal(cfg: &ClientConfig, addr: SocketAddr, kind: TransportKind) -> (LoginStatus, String) {
    let mut c = Client::open(cfg.clone(), now()).unwrap();
    match c.connect(addr, kind, now()) {
        Err(ConnectError::Refused { status, text }) => (status, text),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Every file below `dir`, recursively.
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
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
    let login = RawLogin { version: 7, ..RawLogin::new("c") };
    let (r, mut s) = raw_exchange(addr, &login.frame());
    assert_eq!(r.status, LoginStatus::BadVersion, "{r:?}");
    assert!(r.text.contains('7'), "the text names the version: {r:?}");
    assert!(frames_until_closed(&mut s).is_empty());
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
            // ...and as the last server name.
            let login = RawLogin { last_server: name.to_vec(), transport, ..RawLogin::new("x") };
            if name.is_empty() {
                continue; // An empty last server is valid: a fresh client.
            }
            let (r, _) = raw_exchange(addr, &login.frame());
            assert_eq!(r.status, LoginStatus::BadName, "last server name {name:?}: {r:?}");
            assert!(r.text.contains("last server name"), "{r:?}");
            cases += 2;
        }
    }
    let stats = srv.with(|s| s.control().stats());
    assert_eq!((stats.admitted, stats.refused), (0, cases + 2));
    // No file anywhere: not in the storage directory, not next to it, not in /dev/shm.
    assert!(files_below(env.dir.path()).is_empty(), "{:?}", files_below(env.dir.path()));
    let entries: Vec<_> = std::fs::read_dir(env.dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("server")]);
    assert!(shm_files(&env.prefix).is_empty());
    assert!(!env.dir.path().join("x").exists() && !env.dir.path().parent().unwrap().join("x").exists());
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

#[test]
fn a_login_split_into_single_bytes_is_accepted() {
    let env = Env::new("split");
    let (_srv, addr) = env.start_default(env.server_cfg("Srv"));
    let frame = RawLogin::new("slow").frame();
    let mut s = raw_connect(addr);
    for b in &frame {
        s.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = read_reply(&mut s);
    assert_eq!((r.status, r.server.as_str(), r.consumed), (LoginStatus::Ok, "Srv", 0), "{r:?}");
    // The connection works: one echo over the raw socket.
    s.write_all(&raw_frame(9, 0, 0, b"byte by byte")).unwrap();
    loop {
        let (h, payload) = read_frame(&mut s).unwrap().expect("an echo");
        if h.msg_type == msg_type::HEARTBEAT || h.msg_type == msg_type::ACK {
            continue;
        }
        assert_eq!((h.msg_type, h.seq, payload.as_slice()), (9, 0, &b"byte by byte"[..]));
        break;
    }
}

#[test]
fn an_unfinished_login_times_out_and_frees_its_slot() {
    let env = Env::new("timeout");
    let mut cfg = env.server_cfg("Srv");
    cfg.login_timeout = 3_000_000_000;
    cfg.max_connections = 1;
    let (srv, addr) = env.start_default(cfg);
    let frame = RawLogin::new("stuck").frame();
    let mut stuck = raw_connect(addr);
    stuck.write_all(&frame[..frame.len() / 2]).unwrap();
    srv.wait_for("a pending login", 5 * SECOND, |s| s.control().pending() == 1);
    // The pending login holds the only connection slot.
    let ccfg = env.client_cfg("real", "client");
    assert_eq!(refusal(&ccfg, addr, TransportKind::Tcp).0, LoginStatus::ServerFull);
    srv.wait_for("the login timeout", 10 * SECOND, |s| s.control().pending() == 0);
    assert_eq!(srv.with(|s| s.control().stats().timed_out), 1);
    let r = read_reply(&mut stuck);
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    assert!(r.text.contains("in time"), "{r:?}");
    assert!(frames_until_closed(&mut stuck).is_empty());
    // The slot is free again.
    let mut c = connect(&ccfg, addr, TransportKind::Tcp);
    echo_once(&mut c, b"room again");
    // A connection that sends nothing at all times out the same way.
    drop(c);
    env.wait_disconnects("real", 1);
    let mut silent = raw_connect(addr);
    srv.wait_for("a pending login", 5 * SECOND, |s| s.control().pending() == 1);
    let r = read_reply(&mut silent);
    assert_eq!(r.status, LoginStatus::Malformed, "{r:?}");
    srv.wait_for("the slot freed", 5 * SECOND, |s| s.control().pending() == 0);
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
    assert!(text.contains("dup") || text.contains("live"), "{text}");
    // The first was not disturbed.
    echo_once(&mut first, b"two");
    assert!(Recorder::disconnects(&env.log, "dup").is_empty());
    // Once it is really gone, the name may log in again (here: the same session).
    drop(first);
    env.wait_disconnects("dup", 1);
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
/// finds it dead and replaces it instead of refusing it.
fn fast_restart(kind: TransportKind) {
    let env = Env::new("restart");
    let (srv, addr) = env.start_default(env.server_cfg("Srv"));
    let cfg = env.client_cfg("phoenix", "client");
    let mut first = connect(&cfg, addr, kind);
    echo_once(&mut first, b"before");
    srv.pause();
    drop(first); // The process "dies": its socket closes, its locks go.
    let t = std::thread::spawn(move || {
        let mut c = Client::open(cfg, now()).unwrap();
        let r = c.connect(addr, kind, now());
        (c, r)
    });
    // Let the new login reach the server's socket before it polls again, so the
    // login is handled before the dead connection's readiness event.
    std::thread::sleep(Duration::from_millis(200));
    assert!(Recorder::disconnects(&env.log, "phoenix").is_empty(), "the server did not poll");
    srv.resume();
    let (mut second, r) = t.join().unwrap();
    r.expect("a restarted client replaces its dead connection");
    echo_once(&mut second, b"after");
    assert_eq!(Recorder::disconnects(&env.log, "phoenix").len(), 1);
    assert_eq!(Recorder::logons(&env.log, "phoenix").len(), 2);
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
    echo_once(&mut a, b"a");
    echo_once(&mut b, b"b");
    drop(a);
    env.wait_disconnects("a", 1);
    let mut c = connect(&ccfg, addr, TransportKind::Tcp);
    echo_once(&mut c, b"c");
    let stats = srv.with(|s| s.control().stats());
    assert_eq!((stats.admitted, stats.refused), (3, 2));
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
    assert!(files_below(&env.dir.path().join("server")).is_empty());
    assert!(shm_files(&env.prefix).is_empty());
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
    assert!(files_below(&env.dir.path().join("server")).is_empty() && shm_files(&env.prefix).is_empty());
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
    assert!(shm_files(&env.prefix).is_empty());
    let mut c = connect(&ccfg, addr, TransportKind::Tcp);
    echo_once(&mut c, b"tcp works");
    drop(c);

    let env = Env::new("disabled2");
    let mut cfg = env.server_cfg("Srv");
    cfg.enable_tcp = false;
    let (_srv, addr) = env.start_default(cfg);
    let ccfg = env.client_cfg("c", "c");
    assert_eq!(refusal(&ccfg, addr, TransportKind::Tcp).0, LoginStatus::TransportDisabled);
    assert!(files_below(&env.dir.path().join("server")).is_empty());
    let mut c = connect(&ccfg, addr, TransportKind::Shm);
    echo_once(&mut c, b"shm works");
}

#[test]
fn a_client_that_lost_its_state_is_told_and_nothing_is_reset() {
    let env = Env::new("amnesia");
    let (_srv, addr) = env.start_default(env.server_cfg("Srv"));
    let cfg = env.client_cfg("forgetful", "client");
    let mut c = connect(&cfg, addr, TransportKind::Tcp);
    for k in 0..5u8 {
        echo_once(&mut c, &[k; 10]);
    }
    // A sixth message whose echo arrives but is not popped: it stays in the server's
    // queue until the client pops it.
    c.alloc(3).unwrap().unwrap().copy_from_slice(b"six");
    c.push(42).unwrap();
    wait_until("the sixth echo", 10 * SECOND, || {
        c.poll(now());
        c.front().is_some()
    });
    drop(c);
    env.wait_disconnects("forgetful", 1);
    // The client loses its store.
    let store = cfg.storage_dir.join("forgetful@server.tcpshm");
    let backup = env.dir.path().join("backup");
    std::fs::copy(&store, &backup).unwrap();
    std::fs::remove_file(&store).unwrap();
    let mut fresh = Client::open(cfg.clone(), now()).unwrap();
    match fresh.connect(addr, TransportKind::Tcp, now()) {
        Err(ConnectError::SeqMismatch(text)) => {
            assert!(text.contains("client forgetful lost"), "the text says who lost state: {text}");
        }
        other => panic!("expected a sequence mismatch, got {other:?}"),
    }
    drop(fresh);
    // Nothing was reset on the server: with its memory back, the client resumes and
    // gets the sixth echo again.
    std::fs::copy(&backup, &store).unwrap();
    let mut c = Client::open(cfg, now()).unwrap();
    let done = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    assert_eq!((done.reset, done.to_resend), (None, 0));
    wait_until("the sixth echo, resent", 10 * SECOND, || {
        c.poll(now());
        c.front().is_some()
    });
    let m = c.front().unwrap();
    assert_eq!((m.seq, m.payload), (5, &b"six"[..]));
    c.pop();
    echo_once(&mut c, b"seven");
}

#[test]
fn a_renamed_server_resets_the_session_and_drops_old_messages() {
    let env = Env::new("rename");
    let storage = env.dir.path().join("server");
    let cfg = env.client_cfg("day-trader", "client");
    let (srv, addr) = env.start_default(server_config("Server20180713", &storage, &env.prefix));
    let mut c = connect(&cfg, addr, TransportKind::Tcp);
    for k in 0..3u8 {
        echo_once(&mut c, &[k]);
    }
    // An echo that arrives and is never popped.
    c.alloc(3).unwrap().unwrap().copy_from_slice(b"old");
    c.push(42).unwrap();
    wait_until("the unpopped echo", 10 * SECOND, || {
        c.poll(now());
        c.front().is_some()
    });
    drop(srv.stop());
    // Messages pushed while the server is down, for yesterday's server.
    for k in 0..4u8 {
        c.alloc(1).unwrap().unwrap()[0] = k;
        c.push(43).unwrap();
    }
    assert!(c.counters().queue_depth >= 4);
    assert_eq!(c.last_server().map(|n| n.to_string()), Some("Server20180713".into()));

    // The next day's server: same storage, new name.
    let (srv, addr) = env.start_default(server_config("Server20180714", &storage, &env.prefix));
    let done = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    let reset = done.reset.expect("the epoch change is reported");
    assert_eq!(reset.previous_epoch.map(|n| n.to_string()), Some("Server20180713".into()));
    assert!((4..=5).contains(&reset.dropped), "{reset:?}");
    assert_eq!(done.to_resend, 0);
    assert_eq!(c.counters().queue_depth, 0);
    assert_eq!(c.last_server().map(|n| n.to_string()), Some("Server20180714".into()));
    // Nothing old arrives: the first message is the echo of the first new one, seq 0.
    c.alloc(3).unwrap().unwrap().copy_from_slice(b"new");
    c.push(44).unwrap();
    wait_until("the new echo", 10 * SECOND, || {
        c.poll(now());
        c.front().is_some()
    });
    let m = c.front().unwrap();
    assert_eq!((m.msg_type, m.seq, m.payload), (44, 0, &b"new"[..]));
    c.pop();
    // The server saw only the new message (one echo) from this client.
    std::thread::sleep(Duration::from_millis(50));
    c.poll(now());
    assert!(c.front().is_none());
    // Reconnecting to the same server is no reset. (The first server was dropped
    // with the client connected: it reported no disconnect.)
    drop(c);
    env.wait_disconnects("day-trader", 1);
    let mut c = Client::open(cfg, now()).unwrap();
    assert_eq!(c.connect(addr, TransportKind::Tcp, now()).unwrap().reset, None);
    echo_once(&mut c, b"again");
    drop(srv);
}

#[test]
fn to_resend_counts_the_messages_pushed_while_disconnected() {
    let env = Env::new("resend");
    let (_srv, addr) = env.start_default(env.server_cfg("Srv"));
    let mut c = Client::open(env.client_cfg("queued", "client"), now()).unwrap();
    assert!(!c.is_connected());
    for k in 0..5u8 {
        c.alloc(2).unwrap().unwrap().copy_from_slice(&[k, k]);
        c.push(u16::from(k)).unwrap();
    }
    let done = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    assert_eq!(done.to_resend, 5);
    let mut got = Vec::new();
    wait_until("5 echoes", 10 * SECOND, || {
        c.poll(now());
        while let Some(m) = c.front() {
            got.push((m.msg_type, m.payload.to_vec()));
            c.pop();
        }
        got.len() == 5
    });
    assert_eq!(got, (0..5u8).map(|k| (u16::from(k), vec![k, k])).collect::<Vec<_>>());
    // Disconnected again: three more wait in the queue and leave on reconnect.
    c.close(tcpshm_proto::CloseReason::Requested);
    env.wait_disconnects("queued", 1);
    for k in 5..8u8 {
        c.alloc(2).unwrap().unwrap().copy_from_slice(&[k, k]);
        c.push(u16::from(k)).unwrap();
    }
    let done = c.connect(addr, TransportKind::Tcp, now()).unwrap();
    assert_eq!(done.to_resend, 3);
    got.clear();
    wait_until("3 echoes", 10 * SECOND, || {
        c.poll(now());
        while let Some(m) = c.front() {
            got.push((m.msg_type, m.payload.to_vec()));
            c.pop();
        }
        got.len() == 3
    });
    assert_eq!(got, (5..8u8).map(|k| (u16::from(k), vec![k, k])).collect::<Vec<_>>());
}

#[test]
fn a_renamed_server_resets_an_shm_session_and_its_old_file_goes() {
    let env = Env::new("rename-shm");
    let storage = env.dir.path().join("server");
    let cfg = env.client_cfg("shm-trader", "client");
    let (srv, addr) = env.start_default(server_config("Day1", &storage, &env.prefix));
    let mut c = connect(&cfg, addr, TransportKind::Shm);
    echo_once(&mut c, b"day one");
    drop(srv.stop());
    // Pushed while the server is down: they wait in the old server's ring.
    for k in 0..3u8 {
        c.alloc(1).unwrap().unwrap()[0] = k;
        c.push(43).unwrap();
    }
    let old_file = shm_files(&env.prefix);
    assert_eq!(old_file.len(), 1, "{old_file:?}");
    assert!(old_file[0].to_string_lossy().contains("Day1@shm-trader"), "{old_file:?}");

    let (_srv, addr) = env.start_default(server_config("Day2", &storage, &env.prefix));
    let done = c.connect(addr, TransportKind::Shm, now()).unwrap();
    let reset = done.reset.expect("the epoch change is reported");
    assert_eq!(reset.previous_epoch.map(|n| n.to_string()), Some("Day1".into()));
    // Yesterday's file (and the messages in it) is gone; today's is there.
    let files = shm_files(&env.prefix);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains("Day2@shm-trader"), "{files:?}");
    // The first message the server sees from this client is today's.
    echo_once(&mut c, b"day two");
    std::thread::sleep(Duration::from_millis(50));
    c.poll(now());
    assert!(c.front().is_none(), "nothing of yesterday's arrives");
}
