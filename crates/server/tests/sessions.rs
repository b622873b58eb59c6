//! Server-initiated sends, over TCP and shared memory: a group pushes to any of its
//! sessions by client name — from `on_poll`, from a message handler (another
//! session), from the group's owner between polls — whether the client is connected
//! or away (delivered at its next login, also after a server restart, over the other
//! transport too); a client never seen is refused unless created on purpose; a
//! session belongs to one group (its home) and the others are refused; a broadcast
//! reaches every session.

mod common;

use common::*;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::{Msg, Name, Nanos, Transport};
use tcpshm_server::{AcceptAll, Conn, Group, GroupHandler, Handled, RoundRobin, Server, SessionError, Sessions};

/// What the test asks a group's handler to do at its next `on_poll`.
#[derive(Debug, Clone)]
enum Cmd {
    /// `Sessions::push` (or `create` then push) of `payload` to `to`.
    Push { to: &'static str, payload: Vec<u8>, create: bool },
    /// `for_each`: push `payload` to every session, connected or not.
    Broadcast(Vec<u8>),
}

/// Outcomes of commands, in order: `Ok(pushed)` or the error's text and kind.
type Outcomes = Arc<Mutex<Vec<Result<bool, SessionError>>>>;

#[derive(Clone, Default)]
struct Pusher {
    cmds: Arc<Mutex<VecDeque<Cmd>>>,
    outcomes: Outcomes,
    log: EventLog,
}

impl Pusher {
    fn ask(&self, cmd: Cmd) -> Result<bool, SessionError> {
        let n = self.outcomes.lock().unwrap().len();
        self.cmds.lock().unwrap().push_back(cmd);
        wait_until("the group to carry out a command", || {
            let mut o = self.outcomes.lock().unwrap();
            (o.len() > n).then(|| o.remove(n))
        })
    }
}

impl GroupHandler for Pusher {
    fn on_logged_on(&mut self, conn: &mut Conn<'_>) {
        Recorder { log: self.log.clone() }.on_logged_on(conn);
    }

    /// `to:<name>:<text>` pushes `text` to `<name>` through `Conn::sessions` and
    /// replies `ok` or `no`; anything else is echoed.
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let Some(rest) = msg.payload.strip_prefix(b"to:") else { return Echo.on_message(conn, msg) };
        let at = rest.iter().position(|&b| b == b':').unwrap();
        let to: Name = std::str::from_utf8(&rest[..at]).unwrap().parse().unwrap();
        let text = &rest[at + 1..];
        let others = conn.sessions().expect("a handled message's Conn reaches the other sessions");
        let reply: &[u8] = match others.get(&to) {
            Some(mut other) => {
                other.alloc(text.len()).unwrap().unwrap().copy_from_slice(text);
                other.push(5).unwrap();
                b"ok"
            }
            None => b"no",
        };
        conn.alloc(reply.len()).unwrap().unwrap().copy_from_slice(reply);
        conn.push(6).unwrap();
        Handled::Pop
    }

    fn on_disconnected(&mut self, client: &Name, reason: &tcpshm_proto::CloseReason) {
        Recorder { log: self.log.clone() }.on_disconnected(client, reason);
    }

    fn on_poll(&mut self, sessions: &mut Sessions<'_>, _now: Nanos) {
        while let Some(cmd) = self.cmds.lock().unwrap().pop_front() {
            let r = match cmd {
                Cmd::Push { to, payload, create } => {
                    let to: Name = to.parse().unwrap();
                    let opened = if create { sessions.create(&to).map(drop) } else { Ok(()) };
                    opened.and_then(|()| sessions.push(&to, 9, &payload))
                }
                Cmd::Broadcast(payload) => {
                    let mut n = 0;
                    sessions.for_each(|c| {
                        c.alloc(payload.len()).unwrap().unwrap().copy_from_slice(&payload);
                        c.push(9).unwrap();
                        n += 1;
                    });
                    Ok(n == sessions.len())
                }
            };
            self.outcomes.lock().unwrap().push(r);
        }
    }
}

struct Env {
    dir: TempDir,
    handlers: Vec<Pusher>,
}

impl Env {
    fn new(tag: &str, groups: usize) -> Env {
        let log = EventLog::default();
        let handlers = (0..groups).map(|_| Pusher { log: log.clone(), ..Pusher::default() }).collect();
        Env { dir: TempDir::new(tag), handlers }
    }

    fn start(&self) -> (Polled<Server<AcceptAll, RoundRobin, Pusher>>, SocketAddr) {
        let server =
            Server::bind(server_config("Srv", &self.dir), AcceptAll, RoundRobin::default(), self.handlers.clone())
                .unwrap();
        let addr = server.local_addrs()[0];
        (Polled::spawn(server, |s| s.poll(now())), addr)
    }

    fn client(&self, name: &str, addr: SocketAddr, kind: TransportKind) -> Client {
        let mut c = connect(&client_config(name, &self.dir, name), addr, kind);
        echo_once(&mut c, b"hello");
        c
    }

    fn log(&self) -> &EventLog {
        &self.handlers[0].log
    }

    /// Drops `c` and waits until the server saw it go.
    fn leave(&self, c: Client, name: &str) {
        let before = Recorder::disconnects(self.log(), name).len();
        drop(c);
        Recorder::wait_disconnects(self.log(), name, before + 1);
    }
}

fn push(to: &'static str, payload: &[u8]) -> Cmd {
    Cmd::Push { to, payload: payload.to_vec(), create: false }
}

/// The next message on `c`, popped.
fn take(c: &mut Client) -> (u16, Vec<u8>) {
    let (t, _, p) = next_message(c);
    c.pop();
    (t, p)
}

fn other(kind: TransportKind) -> TransportKind {
    match kind {
        TransportKind::Tcp => TransportKind::Shm,
        TransportKind::Shm => TransportKind::Tcp,
    }
}

fn connected_and_away(kind: TransportKind) {
    let env = Env::new(&format!("sessions-away-{kind}"), 1);
    let (server, addr) = env.start();
    let mut a = env.client("alice", addr, kind);
    // Connected: the push arrives with no message from the client.
    assert!(env.handlers[0].ask(push("alice", b"tick-1")).unwrap());
    assert_eq!(take(&mut a), (9, b"tick-1".to_vec()));
    // Away: the pushes wait in its queue, and leave at the next login, in order —
    // over the same transport, then over the other one.
    env.leave(a, "alice");
    for k in 0..3u8 {
        assert!(env.handlers[0].ask(push("alice", &[b'f', k])).unwrap());
    }
    let mut a = connect(&client_config("alice", &env.dir, "alice"), addr, kind);
    for k in 0..3u8 {
        assert_eq!(take(&mut a), (9, vec![b'f', k]));
    }
    env.leave(a, "alice");
    assert!(env.handlers[0].ask(push("alice", b"later")).unwrap());
    let mut a = connect(&client_config("alice", &env.dir, "alice"), addr, other(kind));
    assert_eq!(take(&mut a), (9, b"later".to_vec()));
    echo_once(&mut a, b"still in order");
    drop(server);
}

#[test]
fn pushes_reach_connected_and_away_clients_tcp() {
    connected_and_away(TransportKind::Tcp);
}

#[test]
fn pushes_reach_connected_and_away_clients_shm() {
    connected_and_away(TransportKind::Shm);
}

/// After a restart the server holds no session until one is opened: `push` opens an
/// away client's session from its store, and the client's next login finds the
/// message — in the group that opened it (its home), not where the policy would
/// have put it.
fn after_restart(kind: TransportKind) {
    let env = Env::new(&format!("sessions-restart-{kind}"), 2);
    let (server, addr) = env.start();
    let mut a = env.client("alice", addr, kind);
    assert_eq!(Recorder::logons(env.log(), "alice"), [0], "RoundRobin: the first client to group 0");
    // Received, never popped: over shared memory it stays in the session's ring,
    // which the restarted server maps again with the session.
    assert!(env.handlers[0].ask(push("alice", b"unread")).unwrap());
    assert_eq!(next_message(&mut a).2, b"unread");
    env.leave(a, "alice");
    drop(server.stop());

    let (server, addr) = env.start();
    // Group 1 pushes first: the session is opened there and lives there from now on.
    assert!(env.handlers[1].ask(push("alice", b"while you were away")).unwrap());
    let r = env.handlers[0].ask(push("alice", b"from the other group"));
    assert!(matches!(r, Err(SessionError::OtherGroup { home: 1, here: 0, .. })), "{r:?}");
    let mut a = connect(&client_config("alice", &env.dir, "alice"), addr, kind);
    assert_eq!(take(&mut a), (9, b"unread".to_vec()));
    assert_eq!(take(&mut a), (9, b"while you were away".to_vec()));
    assert_eq!(Recorder::logons(env.log(), "alice"), [0, 1], "the login went to the session's home");
    echo_once(&mut a, b"and on");
    drop(server);
}

#[test]
fn a_restarted_server_pushes_to_away_clients_tcp() {
    after_restart(TransportKind::Tcp);
}

#[test]
fn a_restarted_server_pushes_to_away_clients_shm() {
    after_restart(TransportKind::Shm);
}

#[test]
fn clients_never_seen_are_refused_unless_created() {
    let env = Env::new("sessions-unknown", 1);
    let (server, addr) = env.start();
    let r = env.handlers[0].ask(push("nobody", b"x"));
    assert!(matches!(&r, Err(SessionError::Unknown { client }) if client.as_str() == "nobody"), "{r:?}");
    assert!(!env.dir.join("server").join("Srv@nobody.tcpshm").exists(), "no store made for a refused push");
    let create = Cmd::Push { to: "newbie", payload: b"welcome".to_vec(), create: true };
    assert!(env.handlers[0].ask(create).unwrap());
    for kind in [TransportKind::Shm, TransportKind::Tcp] {
        let name = if kind == TransportKind::Shm { "newbie" } else { "nobody" };
        if name == "nobody" {
            let create = Cmd::Push { to: "nobody", payload: b"welcome".to_vec(), create: true };
            assert!(env.handlers[0].ask(create).unwrap());
        }
        let mut c = connect(&client_config(name, &env.dir, name), addr, kind);
        assert_eq!(take(&mut c), (9, b"welcome".to_vec()), "{name}'s first login over {kind}");
        echo_once(&mut c, b"hi");
    }
    drop(server);
}

/// A message handler reaches the group's other sessions (not its own: that is its
/// `Conn`), connected or away; a broadcast reaches every session.
fn across_sessions(kind: TransportKind) {
    let env = Env::new(&format!("sessions-across-{kind}"), 1);
    let (server, addr) = env.start();
    let mut a = env.client("alice", addr, kind);
    let mut b = env.client("bob", addr, kind);
    let c = env.client("carol", addr, kind);
    env.leave(c, "carol");
    let ask = |c: &mut Client, text: &[u8]| {
        c.alloc(text.len()).unwrap().unwrap().copy_from_slice(text);
        c.push(1).unwrap();
        take(c)
    };
    assert_eq!(ask(&mut a, b"to:bob:filled 10"), (6, b"ok".to_vec()));
    assert_eq!(take(&mut b), (5, b"filled 10".to_vec()));
    assert_eq!(ask(&mut b, b"to:bob:myself"), (6, b"no".to_vec()), "its own session is its Conn");
    assert_eq!(ask(&mut b, b"to:carol:while away"), (6, b"ok".to_vec()));
    assert_eq!(ask(&mut b, b"to:dave:never seen"), (6, b"no".to_vec()));
    assert!(env.handlers[0].ask(Cmd::Broadcast(b"all".to_vec())).unwrap(), "for_each reached every session");
    assert_eq!(take(&mut a), (9, b"all".to_vec()));
    assert_eq!(take(&mut b), (9, b"all".to_vec()));
    let mut c = connect(&client_config("carol", &env.dir, "carol"), addr, kind);
    assert_eq!(take(&mut c), (5, b"while away".to_vec()));
    assert_eq!(take(&mut c), (9, b"all".to_vec()));
    drop(server);
}

#[test]
fn handlers_reach_other_sessions_and_broadcast_tcp() {
    across_sessions(TransportKind::Tcp);
}

#[test]
fn handlers_reach_other_sessions_and_broadcast_shm() {
    across_sessions(TransportKind::Shm);
}

/// The group's owner pushes between polls (`Group::sessions`), from the group's
/// thread; the message leaves with the next poll.
#[test]
fn the_groups_owner_pushes_between_polls() {
    let env = Env::new("sessions-owner", 1);
    let server =
        Server::bind(server_config("Srv", &env.dir), AcceptAll, RoundRobin::default(), env.handlers.clone()).unwrap();
    let addr = server.local_addrs()[0];
    let (control, mut groups) = server.split();
    let control = Polled::spawn(control, |c| c.poll(now()));
    let group = Polled::spawn(groups.remove(0), |g: &mut Group<Pusher>| g.poll(now()));
    for kind in [TransportKind::Tcp, TransportKind::Shm] {
        let name = if kind == TransportKind::Tcp { "tcp-client" } else { "shm-client" };
        let mut c = env.client(name, addr, kind);
        let to: Name = name.parse().unwrap();
        let pushed = group.with(move |g| {
            let mut s = g.sessions(now());
            assert!(s.contains(&to) && !s.is_empty() && s.names().any(|n| *n == to));
            let mut conn = s.get(&to).unwrap();
            assert!(conn.is_connected());
            conn.alloc(5).unwrap().unwrap().copy_from_slice(b"owner");
            conn.push(3).is_ok()
        });
        assert!(pushed);
        assert_eq!(take(&mut c), (3, b"owner".to_vec()));
    }
    drop((group, control));
}
