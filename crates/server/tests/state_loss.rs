//! Lost state with real server processes (issue 9, item 3): a server process is
//! killed, its data directory and/or its shared-memory files are removed, and a new
//! server process starts under the same name. A client process that stayed up (this
//! test process, its session still open and, over shared memory, still mapping the
//! old file) and a new client process with the same session both get a typed
//! `SeqMismatch` — over TCP and over shared memory — every time they try, promptly;
//! none is let in to stall on an unlinked ring or to continue from numbers the
//! server no longer has. The server keeps serving other clients meanwhile.

mod common;
mod support;

use common::{echo_once, now, wait_until};
use std::net::SocketAddr;
use support::check::SideCheck;
use support::procs::{lock, spawn, Side, SideState};
use support::roles::{client_config, login_error_kind, Role, RoleEnv};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_test_support::child::Proc;
use tcpshm_test_support::TempDir;

/// The entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_process() {
    support::roles::child_main();
}

/// What the server loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Its data directory (the session stores).
    DataDir,
    /// Its shared-memory files.
    ShmFiles,
    /// Both.
    Everything,
}

fn free_port() -> u16 {
    let (mut rng, _) = support::rng();
    for _ in 0..200 {
        let port = rng.range(20_000, 32_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

/// Starts an echo server process and waits until it listens.
fn start_server(env: &RoleEnv) -> (Proc, Side) {
    let state = SideState::new(SideCheck::new("echo-server", 0, 0));
    let p = spawn("child_process", &[], env, &state);
    wait_until("the server process to listen", || (lock(&state).count('S') > 0).then_some(()));
    (p, state)
}

fn state_loss(kind: TransportKind, lost: Lost) {
    let dir = TempDir::new(&format!("state-loss-{kind}-{lost:?}"));
    std::fs::create_dir_all(dir.path()).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let env = RoleEnv {
        role: Role::EchoServer,
        kind,
        addr,
        dir: dir.path().to_path_buf(),
        client_dir: None,
        shm_prefix: dir.shm_prefix().to_string(),
        messages: 0,
        heartbeat_ms: 100,
        timeout_ms: 2_000,
        connect_timeout_ms: 5_000,
        limit: None,
    };
    let (s1, _) = start_server(&env);

    // The client that stays up: a session with history, and 500 echoes it has not
    // popped (in its receive buffer, or in the server-to-client ring it maps).
    let mut a = <Client>::open(client_config(&env), now()).unwrap();
    a.connect(addr, kind, now()).unwrap();
    for k in 0..20u8 {
        echo_once(&mut a, &[k; 16]);
    }
    for k in 0..500u64 {
        a.alloc(8).unwrap().expect("room").copy_from_slice(&k.to_le_bytes());
        a.push(7).unwrap();
    }
    wait_until("the server to consume everything (its echoes pushed first)", || {
        assert!(a.poll(now()), "{:?}", a.close_reason());
        (a.counters().peer_consumed == 520 && a.front().is_some()).then_some(())
    });

    // The server process dies and loses its state; a new one starts, same name.
    s1.kill();
    if matches!(lost, Lost::DataDir | Lost::Everything) {
        std::fs::remove_dir_all(dir.join("server")).unwrap();
    }
    if matches!(lost, Lost::ShmFiles | Lost::Everything) {
        let files = dir.shm_files();
        assert_eq!(files.len(), usize::from(kind == TransportKind::Shm), "{files:?}");
        for f in files {
            std::fs::remove_file(f).unwrap();
        }
    }
    let (s2, s2_state) = start_server(&env);
    wait_until("the client to notice", || (!a.poll(now())).then_some(()));

    // The live client is refused, typed, every time; it never thinks it is connected.
    for attempt in 0..3 {
        match a.connect(addr, kind, now()) {
            Err(e) => {
                assert_eq!(login_error_kind(&e), "seq-mismatch", "{kind} {lost:?}, attempt {attempt}: {e:?}");
                assert!(!e.is_retryable(), "{e}");
            }
            Ok(c) => panic!(
                "{kind} {lost:?}, attempt {attempt}: the live client was let in ({c:?}) though the server lost its \
                 state; counters {}",
                a.counters()
            ),
        }
        assert!(!a.is_connected());
        assert!(!a.poll(now()));
    }
    drop(a);

    // A new process of the same client: refused the same way.
    let b_state = SideState::new(SideCheck::new("login-once", 0, 0));
    let b = spawn("child_process", &[], &RoleEnv { role: Role::LoginOnce, ..env.clone() }, &b_state);
    let outcome = wait_until("the new client process's login", || lock(&b_state).logins.first().cloned());
    let status = b.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        outcome.starts_with("err seq-mismatch"),
        "{kind} {lost:?}: a new client process was not refused with a sequence mismatch: {outcome}"
    );

    // Nobody logged on, and the server still serves others.
    assert_eq!(lock(&s2_state).count('C'), 0, "the server took a session it cannot resume");
    let other = RoleEnv { client_dir: Some(dir.join("other")), ..env.clone() };
    let mut cfg = client_config(&other);
    cfg.name = "other".parse().unwrap();
    let mut c = <Client>::open(cfg, now()).unwrap();
    c.connect(addr, kind, now()).unwrap();
    echo_once(&mut c, b"still serving");
    drop(c);
    drop(s2);
}

#[test]
fn a_server_that_lost_its_data_dir_refuses_both_clients_tcp() {
    state_loss(TransportKind::Tcp, Lost::DataDir);
}

#[test]
fn a_server_that_lost_its_data_dir_and_shm_files_refuses_both_clients_shm() {
    state_loss(TransportKind::Shm, Lost::Everything);
}

/// The server loses only its shared-memory file (its store keeps the session's
/// checkpointed numbers). The live client, which holds server messages the server's
/// store never recorded, is refused.
#[test]
fn a_server_that_lost_its_shm_file_refuses_the_live_client_shm() {
    state_loss_live_only(Lost::ShmFiles);
}

/// Like [`state_loss`], for the live client only.
fn state_loss_live_only(lost: Lost) {
    let kind = TransportKind::Shm;
    let dir = TempDir::new(&format!("state-loss-live-{lost:?}"));
    std::fs::create_dir_all(dir.path()).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let env = RoleEnv {
        role: Role::EchoServer,
        kind,
        addr,
        dir: dir.path().to_path_buf(),
        client_dir: None,
        shm_prefix: dir.shm_prefix().to_string(),
        messages: 0,
        heartbeat_ms: 100,
        timeout_ms: 2_000,
        connect_timeout_ms: 5_000,
        limit: None,
    };
    let (s1, _) = start_server(&env);
    let mut a = <Client>::open(client_config(&env), now()).unwrap();
    a.connect(addr, kind, now()).unwrap();
    for k in 0..20u8 {
        echo_once(&mut a, &[k; 16]);
    }
    for k in 0..500u64 {
        a.alloc(8).unwrap().expect("room").copy_from_slice(&k.to_le_bytes());
        a.push(7).unwrap();
    }
    wait_until("the server to consume everything (its echoes pushed first)", || {
        assert!(a.poll(now()), "{:?}", a.close_reason());
        (a.counters().peer_consumed == 520 && a.front().is_some()).then_some(())
    });
    s1.kill();
    for f in dir.shm_files() {
        std::fs::remove_file(f).unwrap();
    }
    let (s2, s2_state) = start_server(&env);
    wait_until("the client to notice", || (!a.poll(now())).then_some(()));
    for attempt in 0..3 {
        match a.connect(addr, kind, now()) {
            Err(e) => assert_eq!(login_error_kind(&e), "seq-mismatch", "{lost:?}, attempt {attempt}: {e:?}"),
            Ok(c) => panic!("{lost:?}, attempt {attempt}: the live client was let in ({c:?}): {}", a.counters()),
        }
        assert!(!a.is_connected());
    }
    assert_eq!(lock(&s2_state).count('C'), 0, "the server took a session it cannot resume");
    drop(a);
    drop(s2);
}

/// The server loses only its shared-memory file ("/dev/shm wiped"), with 500
/// messages it pushed into it (`push` returned `Ok`, published) not yet consumed by
/// the client. Its store records how many it ever pushed (`SessionWord::Pushed`, at
/// every checkpoint), so a new client process — which has no mapping of the old file
/// to tell — is refused (`SeqMismatch::LocalQueueLost`), never let in past the 500.
#[test]
fn a_server_that_lost_its_shm_file_refuses_a_new_client_process_shm() {
    state_loss(TransportKind::Shm, Lost::ShmFiles);
}
