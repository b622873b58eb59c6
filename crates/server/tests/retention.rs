//! What a server leaves in its directories: a refused first login leaves no file
//! (TCP and shared memory); the sessions of its earlier names go as the retention
//! policy says (once drained, or after an age measured from their last login), never
//! while a process holds them, and never its own; the live counters file shows the
//! sessions and goes with the server.

mod common;

use common::*;
use std::net::SocketAddr;
use tcpshm_client::{Client, ConnectError, LoginStatus, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_server::{AcceptAll, Removal, Retention, RoundRobin, Server, ServerConfig};
use tcpshm_stats::{SessionState, StatsDir, StatsReader};

type Srv = Polled<Server<AcceptAll, RoundRobin, Echo>>;

fn start(cfg: ServerConfig) -> (Srv, SocketAddr) {
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo]).unwrap();
    let addr = server.local_addrs()[0];
    (Polled::spawn(server, |s| s.poll(now())), addr)
}

/// A server configuration whose counters file is in `dir/stats`.
fn config(name: &str, dir: &TempDir) -> ServerConfig {
    let mut cfg = server_config(name, dir);
    std::fs::create_dir_all(dir.join("stats")).unwrap();
    cfg.stats.dir = dir.join("stats");
    cfg
}

fn files(p: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn counters(dir: &TempDir) -> StatsReader {
    let d = StatsDir::new(dir.join("stats"), StatsDir::DEFAULT_PREFIX).unwrap();
    d.live().unwrap().pop().expect("a live server's counters file")
}

#[test]
fn a_refused_first_login_leaves_no_file_over_either_transport() {
    for kind in [TransportKind::Tcp, TransportKind::Shm] {
        let dir = TempDir::new(&format!("refused-first-{kind}"));
        let (srv, addr) = start(config("Srv", &dir));
        // A message over the server's limit, queued before the first login: the
        // session's own verdict (in the group, after the store and, for shared
        // memory, the file were opened) refuses it.
        let mut cfg = client_config("big", &dir, "client");
        cfg.connection.session.max_message = 1 << 14;
        let mut c = <Client>::open(cfg, now()).unwrap();
        c.alloc(10_000).unwrap().unwrap().fill(1);
        c.push(1).unwrap();
        match c.connect(addr, kind, now()) {
            Err(ConnectError::Refused { status: LoginStatus::LimitExceeded, .. }) => {}
            other => panic!("{kind}: {other:?}"),
        }
        wait_until("the refused login's files removed", || {
            (files(&dir.join("server")).is_empty() && dir.shm_files().is_empty()).then_some(())
        });
        assert!(counters(&dir).read().sessions.is_empty(), "{kind}: its counters record is freed too");
        // The client keeps its own store: the message it queued is its user's.
        assert_eq!(c.counters().next_seq, 1);
        drop(srv.stop());
        assert_eq!(files(&dir.join("stats")), Vec::<String>::new(), "the counters file goes with the server");
    }
}

/// Yesterday's server with two clients: `a` drained everything, `b` left echoes it
/// never read. Today's server (another name, the same directory) runs the policy.
fn yesterday(dir: &TempDir) {
    let (day1, addr) = start(config("Day1", dir));
    let mut a = connect(&client_config("a", dir, "a"), addr, TransportKind::Shm);
    echo_once(&mut a, b"drained");
    let mut b = connect(&client_config("b", dir, "b"), addr, TransportKind::Tcp);
    for _ in 0..2 {
        b.alloc(3).unwrap().unwrap().copy_from_slice(b"bye");
        b.push(7).unwrap();
    }
    wait_until("the server to consume b's messages", || {
        assert!(b.poll(now()));
        (b.counters().peer_consumed == 2).then_some(())
    });
    drop((a, b));
    drop(day1.stop());
}

#[test]
fn an_earlier_names_sessions_go_once_drained_and_the_servers_own_stay() {
    let dir = TempDir::new("retention-drained");
    yesterday(&dir);
    let shm_a = format!("{}Day1@a.shm", dir.shm_prefix());
    assert_eq!(files(&dir.join("server")), ["Day1@a.tcpshm", "Day1@b.tcpshm"]);
    assert!(dir.shm_files().iter().any(|p| p.ends_with(&shm_a)));
    let mut cfg = config("Day2", &dir);
    cfg.retention = Retention::RemoveDrained;
    let (day2, addr) = start(cfg);
    // The first poll swept: `a`'s session (store and file) is gone, `b`'s stays.
    wait_until("a's drained session removed", || (files(&dir.join("server")) == ["Day1@b.tcpshm"]).then_some(()));
    assert!(dir.shm_files().is_empty(), "{:?}", dir.shm_files());
    assert_eq!(day2.with(|s| s.control().stats().sessions_removed), 1);
    // Today's sessions are never the policy's, drained or not.
    let mut c = connect(&client_config("c", &dir, "c"), addr, TransportKind::Shm);
    echo_once(&mut c, b"today");
    drop(c);
    let removed = day2.with(|s| s.control().sweep_sessions(now()));
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(files(&dir.join("server")), ["Day1@b.tcpshm", "Day2@c.tcpshm"]);
    let stat = counters(&dir).read();
    assert_eq!((stat.server.sessions_removed, stat.server.sweeps >= 1), (1, true), "{stat:?}");
}

#[test]
fn an_earlier_names_sessions_go_after_their_age_never_while_held() {
    let dir = TempDir::new("retention-age");
    yesterday(&dir);
    let last_login = now();
    const HOUR: u64 = 3_600_000_000_000;
    let mut cfg = config("Day2", &dir);
    cfg.retention = Retention::RemoveAfter { age: HOUR };
    let (day2, _) = start(cfg);
    // Younger than an hour (ages count from the last logins, in the servers' `now`,
    // here the test's clock): kept, by the first poll's sweep and by this one.
    assert!(day2.with(|s| s.control().sweep_sessions(now())).is_empty());
    assert_eq!(files(&dir.join("server")), ["Day1@a.tcpshm", "Day1@b.tcpshm"]);
    // Yesterday's server runs again and `b` logs in: its group holds `b`'s session.
    let (day1, addr1) = start(config("Day1", &dir));
    let mut b = <Client>::open(client_config("b", &dir, "b"), now()).unwrap();
    b.connect(addr1, TransportKind::Tcp, now()).unwrap();
    let removed = day2.with(move |s| s.control().sweep_sessions(last_login + HOUR + 1));
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!((removed[0].server.as_str(), removed[0].client.as_str()), ("Day1", "a"));
    assert!(matches!(removed[0].why, Removal::Aged { age } if age >= HOUR), "{removed:?}");
    assert!(removed[0].shm.is_some(), "its shared-memory file went with it");
    assert_eq!(files(&dir.join("server")), ["Day1@b.tcpshm"]);
    drop(b);
    drop(day1.stop());
    let removed = day2.with(move |s| s.control().sweep_sessions(last_login + 2 * HOUR));
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(files(&dir.join("server")).is_empty());
    assert_eq!(day2.with(|s| s.control().stats().sessions_removed), 2);
}

#[test]
fn the_counters_show_each_session_as_it_goes() {
    let dir = TempDir::new("counters");
    let (srv, addr) = start(config("Srv", &dir));
    let mut a = connect(&client_config("a", &dir, "a"), addr, TransportKind::Shm);
    for i in 0..10 {
        echo_once(&mut a, format!("m{i}").as_bytes());
    }
    let reader = counters(&dir);
    assert_eq!(reader.header().server.as_str(), "Srv");
    let rec = wait_until("a's record to count the echoes", || {
        let s = reader.read();
        s.sessions.into_iter().find(|r| r.client.as_str() == "a" && r.received == 10 && r.acked == 10)
    });
    assert_eq!(
        (rec.state, rec.transport, rec.logins, rec.sent, rec.popped),
        (SessionState::Up, Some(TransportKind::Shm), 1, 10, 10)
    );
    assert!(rec.last_activity > 0 && rec.peer.as_str().starts_with("127.0.0.1:"), "{rec:?}");
    drop(a);
    let rec = wait_until("a's record to say it left", || {
        reader.read().sessions.into_iter().find(|r| r.client.as_str() == "a" && r.state == SessionState::Down)
    });
    assert!(rec.last_close.is_some(), "{rec:?}");
    let s = wait_until("the server's counts to show it", || Some(reader.read().server).filter(|s| s.live == 0));
    assert_eq!((s.accepted, s.admitted, s.refused), (1, 1, 0), "{s:?}");
    drop(srv.stop());
    assert!(!reader.is_live().unwrap());
}
