//! The staying-connected helper against a real server, over TCP and shared memory: a
//! server that is not up yet is retried with backoff on the caller's clock; a restart
//! is reported (disconnected, connected again) and what was pushed meanwhile arrives;
//! a renamed server is reported as a reset session; lost state and a refusal stop the
//! helper, with the error; give-up after a bound.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tcpshm_client::{
    Client, ClientConfig, ConnectError, Reconnect, ReconnectConfig, ReconnectEvent, Transport, TransportKind,
};
use tcpshm_proto::Msg;
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, LoginHandler, LoginInfo, Reject, RoundRobin, Server};
use tcpshm_test_support::{now, wait_until, Rng, TempDir};

struct Echo;

impl GroupHandler for Echo {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let Ok(Some(buf)) = conn.alloc(msg.payload.len()) else { return Handled::Keep };
        buf.copy_from_slice(msg.payload);
        conn.push(msg.msg_type).unwrap();
        Handled::Pop
    }
}

/// Refuses every login.
struct Nobody;

impl LoginHandler for Nobody {
    fn on_login(&mut self, _: &LoginInfo<'_>, _: usize) -> Result<usize, Reject> {
        Err(Reject::new("no accounts today"))
    }
}

/// A server polled on its own thread until dropped.
struct Running(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        if let Some(t) = self.1.take() {
            t.join().unwrap();
        }
    }
}

fn serve<L: LoginHandler + 'static>(dir: &TempDir, name: &str, port: u16, login: L) -> Running {
    let mut cfg = tcpshm_server::ServerConfig::new(name.parse().unwrap(), dir.join("server"));
    cfg.listen = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    cfg.connection.queue_bytes = 1 << 16;
    cfg.connection.shm.ring_bytes = 1 << 16;
    cfg.connection.session.max_message = 1024;
    cfg.connection.shm.prefix = dir.shm_prefix().to_string();
    let mut server = Server::bind(cfg, login, RoundRobin::default(), vec![Echo]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    Running(
        stop,
        Some(std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                server.poll(now());
                std::thread::yield_now();
            }
        })),
    )
}

fn free_port() -> u16 {
    let mut rng = Rng::new(now());
    for _ in 0..200 {
        let port = rng.range(20_000, 32_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

fn link(dir: &TempDir, port: u16, kind: TransportKind, cfg: ReconnectConfig) -> Reconnect {
    let mut c = ClientConfig::new("cli".parse().unwrap(), dir.join("client"));
    c.connection.queue_bytes = 1 << 16;
    c.connection.shm.ring_bytes = 1 << 16;
    c.connection.session.max_message = 1024;
    c.connection.shm.prefix = dir.shm_prefix().to_string();
    c.connect_timeout = Duration::from_secs(5);
    c.transport = kind;
    let client = <Client>::open(c, now()).unwrap();
    Reconnect::new(client, SocketAddr::from(([127, 0, 0, 1], port)), kind, cfg)
}

/// Polls until an event that `want` accepts; every other event goes to `seen`.
fn until(
    r: &mut Reconnect,
    seen: &mut Vec<ReconnectEvent>,
    what: &str,
    want: impl Fn(&ReconnectEvent) -> bool,
) -> ReconnectEvent {
    wait_until(what, || {
        r.poll(now());
        while let Some(e) = r.next_event() {
            if want(&e) {
                return Some(e);
            }
            seen.push(e);
        }
        None
    })
}

fn push(r: &mut Reconnect, text: &[u8]) {
    r.alloc(text.len()).unwrap().unwrap().copy_from_slice(text);
    r.push(1).unwrap();
}

fn echo(r: &mut Reconnect) -> Vec<u8> {
    wait_until("an echo", || {
        r.poll(now());
        let m = r.front()?.payload.to_vec();
        r.pop();
        Some(m)
    })
}

/// Fast retries for the tests (the clock is real here).
const FAST: ReconnectConfig = ReconnectConfig { first_retry: 1_000_000, max_retry: 20_000_000, give_up_after: None };

fn outage_and_restart(kind: TransportKind) {
    let dir = TempDir::new(&format!("reconnect-{kind}"));
    let port = free_port();
    let mut r = link(&dir, port, kind, FAST);
    push(&mut r, b"queued before any server");
    let mut seen = vec![];
    // No server yet: retried.
    until(&mut r, &mut seen, "a retry", |e| matches!(e, ReconnectEvent::Retrying { .. }));
    let server = serve(&dir, "Srv", port, AcceptAll);
    let e = until(&mut r, &mut seen, "the first login", |e| matches!(e, ReconnectEvent::Connected { .. }));
    assert!(matches!(e, ReconnectEvent::Connected { first: true, resent: 1, attempts: 2.., .. }), "{e:?}");
    assert_eq!(echo(&mut r), b"queued before any server");
    // A restart: reported down, then up again; what was pushed meanwhile arrives.
    drop(server);
    let e = until(&mut r, &mut seen, "the disconnect", |e| matches!(e, ReconnectEvent::Disconnected { .. }));
    assert!(matches!(e, ReconnectEvent::Disconnected { .. }));
    push(&mut r, b"while down");
    let server = serve(&dir, "Srv", port, AcceptAll);
    let e = until(&mut r, &mut seen, "the next login", |e| matches!(e, ReconnectEvent::Connected { .. }));
    assert!(matches!(e, ReconnectEvent::Connected { first: false, transport, .. } if transport == kind), "{e:?}");
    assert_eq!(echo(&mut r), b"while down");
    assert!(
        seen.iter().all(|e| matches!(e, ReconnectEvent::Retrying { error, .. } if error.is_retryable())),
        "only retryable failures on the way: {seen:?}"
    );
    // A new trading day: the server comes back under another name.
    drop(server);
    until(&mut r, &mut seen, "the disconnect", |e| matches!(e, ReconnectEvent::Disconnected { .. }));
    push(&mut r, b"for yesterday's server");
    let _server = serve(&dir, "Srv2", port, AcceptAll);
    let e = until(&mut r, &mut seen, "the reset", |e| matches!(e, ReconnectEvent::SessionReset { .. }));
    match e {
        ReconnectEvent::SessionReset { server, previous, dropped } => {
            assert_eq!((server.as_str(), previous.map(|p| p.to_string())), ("Srv2", Some("Srv".into())));
            // The message pushed for yesterday's server, and those it had not acked yet.
            assert!(dropped >= 1, "{dropped}");
        }
        _ => unreachable!(),
    }
    push(&mut r, b"today");
    assert_eq!(echo(&mut r), b"today");
}

#[test]
fn outages_restarts_and_renames_are_reported_tcp() {
    outage_and_restart(TransportKind::Tcp);
}

#[test]
fn outages_restarts_and_renames_are_reported_shm() {
    outage_and_restart(TransportKind::Shm);
}

#[test]
fn lost_state_stops_the_helper() {
    let dir = TempDir::new("reconnect-lost");
    let port = free_port();
    let mut r = link(&dir, port, TransportKind::Tcp, FAST);
    let mut seen = vec![];
    let server = serve(&dir, "Srv", port, AcceptAll);
    until(&mut r, &mut seen, "the login", |e| matches!(e, ReconnectEvent::Connected { .. }));
    push(&mut r, b"one");
    assert_eq!(echo(&mut r), b"one");
    drop(server);
    until(&mut r, &mut seen, "the disconnect", |e| matches!(e, ReconnectEvent::Disconnected { .. }));
    // The server's disk is lost: its session no longer knows what we consumed.
    std::fs::remove_dir_all(dir.join("server")).unwrap();
    let _server = serve(&dir, "Srv", port, AcceptAll);
    let e = until(&mut r, &mut seen, "lost state", |e| !matches!(e, ReconnectEvent::Retrying { .. }));
    assert!(matches!(&e, ReconnectEvent::LostState { error } if !error.is_retryable()), "{e:?}");
    assert!(r.is_stopped());
    for _ in 0..10 {
        assert!(!r.poll(now()));
    }
    assert!(r.next_event().is_none(), "stopped: no more attempts");
}

#[test]
fn a_refusal_stops_the_helper_and_resume_starts_it() {
    let dir = TempDir::new("reconnect-refused");
    let port = free_port();
    let mut r = link(&dir, port, TransportKind::Tcp, FAST);
    let server = serve(&dir, "Srv", port, Nobody);
    let e = until(&mut r, &mut vec![], "the refusal", |e| !matches!(e, ReconnectEvent::Retrying { .. }));
    assert!(matches!(&e, ReconnectEvent::Failed { error: ConnectError::Refused { .. } }), "{e:?}");
    assert!(r.is_stopped() && r.next_attempt().is_none());
    drop(server);
    let _server = serve(&dir, "Srv", port, AcceptAll);
    r.resume(TransportKind::Shm, now());
    let e = until(&mut r, &mut vec![], "a login", |e| matches!(e, ReconnectEvent::Connected { .. }));
    assert!(matches!(e, ReconnectEvent::Connected { first: true, transport: TransportKind::Shm, .. }), "{e:?}");
}

/// The backoff and the give-up run on the caller's clock: attempts happen exactly
/// when due, the wait doubles up to the bound.
#[test]
fn backoff_doubles_on_the_callers_clock_and_gives_up() {
    let dir = TempDir::new("reconnect-backoff");
    let port = free_port(); // nothing listens: each attempt is refused at once
    let cfg = ReconnectConfig { first_retry: 100, max_retry: 400, give_up_after: Some(1_000) };
    let mut r = link(&dir, port, TransportKind::Tcp, cfg);
    let mut attempts_at = vec![];
    for t in 0..=1_200u64 {
        r.poll(t);
        while let Some(e) = r.next_event() {
            match e {
                ReconnectEvent::Retrying { attempt, retry_in, .. } => attempts_at.push((t, attempt, retry_in)),
                ReconnectEvent::GaveUp { down_for, attempts } => {
                    assert_eq!((t, down_for, attempts), (1_100, 1_100, 4));
                }
                e => panic!("unexpected {e:?}"),
            }
        }
    }
    assert_eq!(attempts_at, [(0, 1, 100), (100, 2, 200), (300, 3, 400), (700, 4, 400)]);
    assert!(r.is_stopped());
}
