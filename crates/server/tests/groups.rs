//! Groups on their own threads: the built-in sharding policies place clients as
//! documented, returning clients go back to their group, a burst of logins is
//! spread, and the number of messages handled per connection per poll is the
//! configured one.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::{Msg, Name, Transport};
use tcpshm_server::{
    AcceptAll, ByName, Conn, Control, Group, GroupHandler, Handled, LeastLoaded, RoundRobin, Server, ServerError,
    ShardPolicy,
};

/// A server split into a control thread and one thread per group.
struct Split<P: ShardPolicy + 'static, H: GroupHandler + 'static> {
    groups: Vec<Polled<Group<H>>>,
    control: Polled<Control<AcceptAll, P>>,
    addr: SocketAddr,
}

fn split<P: ShardPolicy + 'static, H: GroupHandler + 'static>(
    cfg: tcpshm_server::ServerConfig,
    policy: P,
    handlers: Vec<H>,
    after_poll: fn(&mut Group<H>),
) -> Split<P, H> {
    let server = Server::bind(cfg, AcceptAll, policy, handlers).unwrap();
    let addr = server.local_addrs()[0];
    let (control, groups) = server.split();
    let control = Polled::spawn(control, |c| c.poll(now()));
    let groups = groups
        .into_iter()
        .map(|g| {
            Polled::spawn(g, move |g| {
                g.poll(now());
                after_poll(g);
            })
        })
        .collect();
    Split { groups, control, addr }
}

fn nothing(_: &mut Group<Recorder>) {}

struct Env {
    dir: TempDir,
    log: EventLog,
}

impl Env {
    fn new(tag: &str) -> Env {
        Env { dir: TempDir::new(tag), log: EventLog::default() }
    }

    fn recorders(&self, n: usize) -> Vec<Recorder> {
        (0..n).map(|_| Recorder { log: self.log.clone() }).collect()
    }

    fn server_cfg(&self) -> tcpshm_server::ServerConfig {
        server_config("Srv", &self.dir)
    }

    /// Connects `name` (its own store) and checks one echo.
    fn client(&self, name: &str, addr: SocketAddr, kind: TransportKind) -> Client {
        let mut c = connect(&client_config(name, &self.dir, name), addr, kind);
        echo_once(&mut c, b"ping");
        c
    }

    /// The group of `name`'s last logon.
    fn group_of(&self, name: &str) -> usize {
        *Recorder::logons(&self.log, name).last().unwrap_or_else(|| panic!("{name} never logged on"))
    }

    fn drop_client(&self, c: Client, name: &str) {
        let before = Recorder::disconnects(&self.log, name).len();
        drop(c);
        Recorder::wait_disconnects(&self.log, name, before + 1);
    }
}

fn kind(k: usize) -> TransportKind {
    if k.is_multiple_of(2) {
        TransportKind::Tcp
    } else {
        TransportKind::Shm
    }
}

#[test]
fn groups_and_control_are_send() {
    fn send<T: Send>() {}
    send::<Group<Recorder>>();
    send::<Control<AcceptAll, RoundRobin>>();
    send::<Server<AcceptAll, LeastLoaded, Recorder>>();
}

#[test]
fn round_robin_places_new_clients_in_turn_and_returning_ones_in_their_group() {
    let env = Env::new("rr");
    let s = split(env.server_cfg(), RoundRobin::default(), env.recorders(3), nothing);
    let mut clients = Vec::new();
    for k in 0..6 {
        clients.push(env.client(&format!("c{k}"), s.addr, kind(k)));
    }
    let placed: Vec<usize> = (0..6).map(|k| env.group_of(&format!("c{k}"))).collect();
    assert_eq!(placed, [0, 1, 2, 0, 1, 2]);
    for (g, polled) in s.groups.iter().enumerate() {
        assert_eq!(polled.with(|g| (g.id(), g.live())), (g, 2));
    }
    // c1 comes back: to group 1 again, though the turn is group 0's.
    let c1 = clients.remove(1);
    env.drop_client(c1, "c1");
    s.groups[1].wait_for("group 1's load to drop", |g| g.live() == 1);
    let _c1 = env.client("c1", s.addr, TransportKind::Tcp);
    assert_eq!(Recorder::logons(&env.log, "c1"), [1, 1]);
    let _c6 = env.client("c6", s.addr, TransportKind::Tcp);
    assert_eq!(env.group_of("c6"), 0);
}

#[test]
fn least_loaded_places_new_clients_in_the_emptiest_group() {
    let env = Env::new("ll");
    let s = split(env.server_cfg(), LeastLoaded, env.recorders(3), nothing);
    let mut clients = HashMap::new();
    for k in 0..4 {
        clients.insert(k, env.client(&format!("c{k}"), s.addr, kind(k)));
    }
    let placed: Vec<usize> = (0..4).map(|k| env.group_of(&format!("c{k}"))).collect();
    assert_eq!(placed, [0, 1, 2, 0]);
    env.drop_client(clients.remove(&1).unwrap(), "c1");
    s.groups[1].wait_for("group 1 empty", |g| g.live() == 0);
    let _c4 = env.client("c4", s.addr, TransportKind::Tcp);
    assert_eq!(env.group_of("c4"), 1, "group 1 was empty");
    let _c5 = env.client("c5", s.addr, TransportKind::Shm);
    assert_eq!(env.group_of("c5"), 1, "loads were [2, 1, 1]: the lowest index among the least loaded");
}

/// Logins that arrive together are spread too: the policy must see the logins
/// already handed to a group but not yet completed there. Control and the groups are
/// paused until all eight login requests are in the server's sockets (each client's
/// stream says when its request was written); then control takes them in one go,
/// before any group has completed one.
#[test]
fn least_loaded_spreads_a_burst_of_logins() {
    let env = Env::new("burst");
    let s = split(env.server_cfg(), LeastLoaded, env.recorders(2), nothing);
    s.control.pause();
    for g in &s.groups {
        g.pause();
    }
    let mut written = Vec::new();
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let name = format!("b{k}");
            let cfg = client_config(&name, &env.dir, &name);
            let (stream, w) = Announcing::connect(s.addr);
            written.push(w);
            std::thread::spawn(move || {
                let mut c = Client::<Announcing>::open(cfg, now()).unwrap();
                c.connect_over(stream, kind(k), now()).unwrap();
                c
            })
        })
        .collect();
    wait_until("8 login requests written", || written.iter().all(|w| w.load(Ordering::SeqCst) > 0).then_some(()));
    assert_eq!(s.control.with(|c| c.stats().admitted), 0);
    s.control.resume();
    s.control.wait_for("8 logins admitted", |c| c.stats().admitted == 8);
    assert_eq!(s.groups.iter().map(|g| g.with(|g| g.live())).collect::<Vec<_>>(), [4, 4], "counted when handed over");
    for g in &s.groups {
        g.resume();
    }
    let _clients: Vec<Client<Announcing>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // A connect returns on the reply; `on_logged_on` runs just after it was sent.
    wait_until("8 logons", || {
        let n = env.log.lock().unwrap().iter().filter(|e| matches!(e, Event::LoggedOn(..))).count();
        (n == 8).then_some(())
    });
    let mut per_group = [0; 2];
    for k in 0..8 {
        per_group[env.group_of(&format!("b{k}"))] += 1;
    }
    assert_eq!(per_group, [4, 4]);
    assert_eq!(s.groups.iter().map(|g| g.with(|g| g.live())).collect::<Vec<_>>(), [4, 4]);
}

#[test]
fn by_name_places_each_name_in_its_hash_group_every_time() {
    let env = Env::new("byname");
    let s = split(env.server_cfg(), ByName, env.recorders(4), nothing);
    let names: Vec<String> = (0..12).map(|k| format!("trader-{k}")).collect();
    let mut used = HashSet::new();
    for (k, name) in names.iter().enumerate() {
        let c = env.client(name, s.addr, kind(k));
        let expected = ByName.assign(&name.parse().unwrap(), &[0; 4]);
        assert_eq!(env.group_of(name), expected, "{name}");
        used.insert(expected);
        if k % 3 == 0 {
            // Back again, over the other transport: same group.
            env.drop_client(c, name);
            let _c = env.client(name, s.addr, kind(k + 1));
            assert_eq!(env.group_of(name), expected, "{name}, returning");
        }
    }
    assert!(used.len() >= 3, "12 names over 4 groups use several: {used:?}");
}

/// Counts the messages offered per connection in each poll (the test closes a poll
/// with `end_poll`), and keeps every message with `seq % 7 == 3` once.
#[derive(Default)]
struct PerPoll {
    this_poll: HashMap<Name, usize>,
    kept_this_poll: HashSet<Name>,
    kept: HashSet<(Name, u64)>,
    max_per_poll: usize,
    polls_at_limit: usize,
    offered_after_keep: usize,
    offered: usize,
}

impl GroupHandler for PerPoll {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let c = *conn.client();
        if self.kept_this_poll.contains(&c) {
            self.offered_after_keep += 1;
        }
        *self.this_poll.entry(c).or_default() += 1;
        self.offered += 1;
        if msg.seq % 7 == 3 && self.kept.insert((c, msg.seq)) {
            self.kept_this_poll.insert(c);
            return Handled::Keep;
        }
        Echo.on_message(conn, msg)
    }
}

const LIMIT: usize = 3;

fn end_poll(g: &mut Group<PerPoll>) {
    let h = g.handler();
    for &n in h.this_poll.values() {
        h.max_per_poll = h.max_per_poll.max(n);
        h.polls_at_limit += usize::from(n == LIMIT);
    }
    h.this_poll.clear();
    h.kept_this_poll.clear();
}

#[test]
fn messages_per_poll_bounds_each_connection_and_keep_ends_its_turn() {
    let env = Env::new("per-poll");
    let mut cfg = env.server_cfg();
    cfg.messages_per_poll = LIMIT;
    let s = split(cfg, RoundRobin::default(), vec![PerPoll::default()], end_poll);
    const N: u64 = 60;
    let mut clients: Vec<Client> = (0..2)
        .map(|k| {
            let name = format!("c{k}");
            let mut c = connect(&client_config(&name, &env.dir, &name), s.addr, kind(k));
            // One batch: all of it arrives at once.
            for i in 0..N {
                c.alloc(8).unwrap().unwrap().copy_from_slice(&i.to_le_bytes());
                if i + 1 < N {
                    c.push_more(1).unwrap();
                } else {
                    c.push(1).unwrap();
                }
            }
            c
        })
        .collect();
    for c in &mut clients {
        let mut next = 0u64;
        wait_until("every echo", || {
            c.poll(now());
            while let Some(m) = c.front() {
                assert_eq!(m.payload, &next.to_le_bytes()[..], "echoes in order");
                c.pop();
                next += 1;
            }
            (next == N).then_some(())
        });
    }
    let (max, at_limit, after_keep, offered) = s.groups[0].with(|g| {
        (g.handler().max_per_poll, g.handler().polls_at_limit, g.handler().offered_after_keep, g.handler().offered)
    });
    assert_eq!(max, LIMIT, "never more than the limit per connection per poll, and the limit is reached");
    assert!(at_limit >= 10, "{at_limit}");
    assert_eq!(after_keep, 0, "a kept message ends the connection's turn in that poll");
    let kept = 2 * (0..N).filter(|s| s % 7 == 3).count();
    assert_eq!(offered, 2 * N as usize + kept, "each message offered once, and each kept one once more");
}

#[test]
fn bind_refuses_bad_setups() {
    let env = Env::new("bind");
    let none: Vec<Recorder> = Vec::new();
    assert!(matches!(
        Server::bind(env.server_cfg(), AcceptAll, RoundRobin::default(), none),
        Err(ServerError::NoGroups)
    ));
    let mut cfg = env.server_cfg();
    cfg.listen.clear();
    assert!(matches!(
        Server::bind(cfg, AcceptAll, RoundRobin::default(), env.recorders(1)),
        Err(ServerError::Config(tcpshm_server::ConfigError::NoListenAddress))
    ));
    let mut cfg = env.server_cfg();
    cfg.connection.queue_bytes = 1000;
    assert!(matches!(
        Server::bind(cfg, AcceptAll, RoundRobin::default(), env.recorders(1)),
        Err(ServerError::Config(tcpshm_server::ConfigError::QueueSize { .. }))
    ));
    let first = Server::bind(env.server_cfg(), AcceptAll, RoundRobin::default(), env.recorders(1)).unwrap();
    let mut cfg = env.server_cfg();
    cfg.listen = first.local_addrs();
    match Server::bind(cfg, AcceptAll, RoundRobin::default(), env.recorders(1)) {
        Err(ServerError::Bind { addr, .. }) => assert_eq!(addr, first.local_addrs()[0]),
        other => panic!("expected a bind error, got {:?}", other.err()),
    }
}
