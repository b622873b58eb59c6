//! SIGKILL of either side mid-request, real processes, over TCP and shared memory:
//! every call is answered exactly once as the caller sees it.
//!
//! * **Server killed** (the caller is this process, an `RpcClient` over a
//!   `Reconnect`): the server process is killed at random moments while calls are in
//!   flight, and once exactly between pushing an answer and popping its request (the
//!   window that makes a server answer twice). Every call gets exactly one `Reply`;
//!   the second answers are dropped (counted), none is reported.
//! * **Client killed** (the server is a thread of this process): the calling process
//!   is killed at random moments and restarted. It reports, each in one `write`, the
//!   session's commit point when it starts (`@start <consumed>`), each call before
//!   and after sending it (`@sending id`, `@called id`), and each answer it handles,
//!   with the answer's seq, BEFORE consuming it (`@reply id seq`, `@orphan id seq`).
//!   An answer is consumed exactly when its seq is below the next incarnation's
//!   commit point. The check: the consumed answers name every call once — answers
//!   handled by the incarnation that made the call, or as orphans by a later one —
//!   and an answer handled but not consumed (the kill came between) is handled
//!   again, as an orphan, by the next incarnation.
//!
//! The test binary re-executes itself (`child_process` is the entry point).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;
use tcpshm_client::{Client, ClientConfig, Reconnect, ReconnectConfig, TransportKind};
use tcpshm_proto::{Msg, Transport};
use tcpshm_rpc::{Event, Responder, RpcClient, RpcConfig};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, ServerConfig};
use tcpshm_test_support::child::{self, Proc};
use tcpshm_test_support::{now, wait_until, Rng, TempDir};

const ENV_DIR: &str = "TCPSHM_RPC_DIR";
const ENV_PREFIX: &str = "TCPSHM_RPC_PREFIX";
const ENV_PORT: &str = "TCPSHM_RPC_PORT";
const ENV_DIE_AT: &str = "TCPSHM_RPC_DIE_AT";
const ENV_KIND: &str = "TCPSHM_RPC_KIND";
const ENV_TOTAL: &str = "TCPSHM_RPC_TOTAL";

/// Calls per test, and in flight at once.
const TOTAL: u64 = 3_000;
const WINDOW: u64 = 16;
/// Kills per test.
const KILLS: u64 = 8;
/// Deadlines far beyond any restart: no call times out in these tests.
const LONG: u64 = 3_600_000_000_000;

/// The entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_process() {
    match child::role().as_deref() {
        Some("server") => server_main(),
        Some("client") => client_main(),
        _ => {}
    }
}

/// One write per line: a line whose write returned survives a SIGKILL.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn var(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"))
}

fn kind_of(s: &str) -> TransportKind {
    if s == "shm" {
        TransportKind::Shm
    } else {
        TransportKind::Tcp
    }
}

fn server_config(dir: &std::path::Path, prefix: &str, port: u16) -> ServerConfig {
    let mut cfg = ServerConfig::new("RpcSrv".parse().unwrap(), dir.join("server"));
    cfg.listen = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    cfg.connection.shm.prefix = prefix.to_string();
    // The counters file of a killed server stays: under the test's prefix, the test's
    // cleanup removes it.
    cfg.stats.prefix = format!("{prefix}stats-");
    cfg
}

fn client_config(dir: &std::path::Path, prefix: &str, kind: TransportKind) -> ClientConfig {
    let mut cfg = ClientConfig::new("caller".parse().unwrap(), dir.join("client"));
    cfg.connection.shm.prefix = prefix.to_string();
    cfg.transport = kind;
    cfg.connect_timeout = Duration::from_secs(2);
    cfg
}

/// Answers each request with its body; at `die_at` (a body), answers — committed in
/// a batch, so it is published — then hangs until killed, before popping the request.
struct Answer {
    die_at: Option<u64>,
}

impl GroupHandler for Answer {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let body = u64::from_le_bytes(msg.payload.try_into().unwrap());
        let mut batch = conn.batch().unwrap();
        if !Responder::default().reply(&mut batch, &msg, msg.payload).unwrap() {
            return Handled::Keep;
        }
        batch.commit().unwrap();
        if self.die_at == Some(body) {
            report(&format!("@answered {body}"));
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Handled::Pop
    }
}

fn server_main() {
    child::exit_when_stdin_closes();
    let die_at = std::env::var(ENV_DIE_AT).ok().map(|v| v.parse().unwrap());
    let cfg = server_config(std::path::Path::new(&var(ENV_DIR)), &var(ENV_PREFIX), var(ENV_PORT).parse().unwrap());
    let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Answer { die_at }]).unwrap();
    report("@ready");
    loop {
        server.poll(now());
    }
}

/// Makes calls `body = id` until `total` were made (by any incarnation: the
/// session's numbering tells), keeping `WINDOW` in flight, and reports as the module
/// documentation says.
fn client_main() {
    child::exit_when_stdin_closes();
    let kind = kind_of(&var(ENV_KIND));
    let total: u64 = var(ENV_TOTAL).parse().unwrap();
    let dir = std::path::PathBuf::from(var(ENV_DIR));
    let client = <Client>::open(client_config(&dir, &var(ENV_PREFIX), kind), now()).unwrap();
    report(&format!("@start {}", client.counters().consumed));
    let addr = SocketAddr::from(([127, 0, 0, 1], var(ENV_PORT).parse::<u16>().unwrap()));
    let link = Reconnect::new(client, addr, kind, ReconnectConfig::default());
    let mut rpc = RpcClient::new(link, RpcConfig::default());
    let mut finished = false;
    loop {
        // Calls made by earlier incarnations count: ids are the session's seqs.
        while rpc.outstanding() < WINDOW as usize && rpc.transport().counters().next_seq < total {
            let id = rpc.transport().counters().next_seq;
            report(&format!("@sending {id}"));
            rpc.request(1, &id.to_le_bytes(), now() + LONG).unwrap().expect("room");
            report(&format!("@called {id}"));
        }
        rpc.poll(now());
        loop {
            let (what, id) = match rpc.next(now()) {
                Some(Event::Reply { id, body }) => {
                    assert_eq!(body, id.to_le_bytes(), "the answer to call {id}");
                    ("reply", id)
                }
                Some(Event::Orphan { id, body }) => {
                    assert_eq!(body, id.to_le_bytes(), "the answer to call {id}");
                    ("orphan", id)
                }
                Some(e) => panic!("unexpected {e:?}"),
                None => break,
            };
            // The answer is the next message to consume: its seq is the commit point.
            let seq = rpc.transport().counters().consumed;
            report(&format!("@{what} {id} {seq}"));
            rpc.done();
        }
        if !finished && rpc.transport().counters().next_seq >= total && rpc.outstanding() == 0 {
            finished = true;
            report("@finished");
        }
    }
}

fn free_port(rng: &mut Rng) -> u16 {
    for _ in 0..200 {
        let port = rng.range(20_000, 32_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

fn spawn(role: &str, envs: &[(&str, String)]) -> (Proc, Receiver<String>) {
    let mut cmd = child::command("child_process", role);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (tx, rx) = channel();
    let p = Proc::spawn(cmd, move |line| {
        let _ = tx.send(line);
    });
    (p, rx)
}

fn expect_line(rx: &Receiver<String>, prefix: &str) -> String {
    wait_until(&format!("the child's {prefix}"), || {
        let line = rx.recv_timeout(Duration::from_millis(10)).ok()?;
        line.starts_with(prefix).then_some(line)
    })
}

fn server_killed(kind: TransportKind) {
    let seed = now() ^ 0x5EED;
    let mut rng = Rng::new(seed);
    let dir = TempDir::new(&format!("rpc-crash-server-{kind}"));
    let port = free_port(&mut rng);
    let envs = |die_at: Option<u64>| {
        let mut v = vec![
            (ENV_DIR, dir.path().display().to_string()),
            (ENV_PREFIX, dir.shm_prefix().to_string()),
            (ENV_PORT, port.to_string()),
        ];
        if let Some(d) = die_at {
            v.push((ENV_DIE_AT, d.to_string()));
        }
        v
    };
    let die_at = rng.range(TOTAL / 8, TOTAL / 4);
    let (p, l) = spawn("server", &envs(Some(die_at)));
    expect_line(&l, "@ready");
    let (mut server, mut lines) = (Some(p), l);
    let client = <Client>::open(client_config(dir.path(), dir.shm_prefix(), kind), now()).unwrap();
    let link = Reconnect::new(client, SocketAddr::from(([127, 0, 0, 1], port)), kind, ReconnectConfig::default());
    let mut rpc = RpcClient::new(link, RpcConfig::default());
    let mut answers: HashMap<u64, u32> = HashMap::new();
    let mut calls = 0u64;
    // Kill points, by answers received (besides the one between answer and pop).
    let mut kill_at: Vec<u64> = (0..KILLS).map(|_| rng.range(TOTAL / 4, TOTAL - TOTAL / 8)).collect();
    kill_at.sort_unstable();
    let mut died_between = false;
    wait_until("every call answered", || {
        while calls < TOTAL && rpc.outstanding() < WINDOW as usize {
            let id = rpc.transport().counters().next_seq;
            rpc.request(1, &id.to_le_bytes(), now() + LONG).unwrap().expect("room");
            calls += 1;
        }
        rpc.poll(now());
        while let Some(e) = rpc.next(now()) {
            match e {
                Event::Reply { id, body } => {
                    assert_eq!(body, id.to_le_bytes());
                    *answers.entry(id).or_default() += 1;
                }
                e => panic!("unexpected {e:?} (seed {seed:#x})"),
            }
        }
        let answered = answers.len() as u64;
        let between = !died_between && lines.try_recv().is_ok_and(|l| l.starts_with("@answered"));
        died_between |= between;
        let random = kill_at.first().is_some_and(|&k| answered >= k);
        if random {
            kill_at.remove(0);
        }
        if between || random {
            server.take().expect("a server").kill();
            let (p, l) = spawn("server", &envs(None));
            expect_line(&l, "@ready");
            (server, lines) = (Some(p), l);
        }
        (answered == TOTAL).then_some(())
    });
    assert!(died_between, "the server never reached the answer it dies after");
    assert!(answers.values().all(|&n| n == 1), "an answer reported twice (seed {seed:#x})");
    let s = rpc.stats();
    assert_eq!((s.calls, s.replies, s.orphans, s.late, s.timed_out), (TOTAL, TOTAL, 0, 0, 0), "seed {seed:#x}");
    assert!(s.duplicates >= 1, "the second answer after the kill between answer and pop was dropped: {s:?}");
    if let Some(p) = server {
        p.stop();
    }
}

#[test]
fn every_call_is_answered_once_when_the_server_is_killed_tcp() {
    server_killed(TransportKind::Tcp);
}

#[test]
fn every_call_is_answered_once_when_the_server_is_killed_shm() {
    server_killed(TransportKind::Shm);
}

/// What one incarnation of the calling process reported.
#[derive(Debug, Default)]
struct Life {
    start: u64,
    sending: Vec<u64>,
    called: Vec<u64>,
    /// (id, seq, orphan) in order.
    handled: Vec<(u64, u64, bool)>,
    finished: bool,
}

fn parse(lines: &[String]) -> Life {
    let mut life = Life::default();
    // Lines without '@' are the test harness's own.
    for l in lines.iter().filter(|l| l.starts_with('@')) {
        let w: Vec<&str> = l.split(' ').collect();
        let n = |k: usize| w[k].parse::<u64>().unwrap();
        match w[0] {
            "@start" => life.start = n(1),
            "@sending" => life.sending.push(n(1)),
            "@called" => life.called.push(n(1)),
            "@reply" => life.handled.push((n(1), n(2), false)),
            "@orphan" => life.handled.push((n(1), n(2), true)),
            "@finished" => life.finished = true,
            _ => panic!("unexpected line {l}"),
        }
    }
    life
}

fn client_killed(kind: TransportKind) {
    let seed = now() ^ 0xC11E;
    let mut rng = Rng::new(seed);
    let dir = TempDir::new(&format!("rpc-crash-client-{kind}"));
    let port = free_port(&mut rng);
    let mut server = Server::bind(
        server_config(dir.path(), dir.shm_prefix(), port),
        AcceptAll,
        RoundRobin::default(),
        vec![Answer { die_at: None }],
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let serving = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            server.poll(now());
            std::thread::yield_now();
        }
    });
    let envs = vec![
        (ENV_DIR, dir.path().display().to_string()),
        (ENV_PREFIX, dir.shm_prefix().to_string()),
        (ENV_PORT, port.to_string()),
        (ENV_KIND, if kind == TransportKind::Shm { "shm" } else { "tcp" }.to_string()),
        (ENV_TOTAL, TOTAL.to_string()),
    ];
    let mut lives = vec![];
    let mut handled_so_far = 0u64;
    for k in 0..=KILLS {
        let (p, rx) = spawn("client", &envs);
        let mut lines = vec![];
        if k < KILLS {
            // Killed after a random number of further answers.
            let target = handled_so_far + rng.range(50, TOTAL / (KILLS + 2));
            wait_until("answers before the kill", || {
                while let Ok(l) = rx.try_recv() {
                    if l.starts_with("@reply") || l.starts_with("@orphan") {
                        handled_so_far += 1;
                    }
                    let done = l == "@finished";
                    lines.push(l);
                    if done {
                        return Some(());
                    }
                }
                (handled_so_far >= target).then_some(())
            });
            p.kill();
            lines.extend(rx.try_iter());
        } else {
            wait_until("the last incarnation to finish", || {
                let l = rx.recv_timeout(Duration::from_millis(10)).ok()?;
                let done = l == "@finished";
                lines.push(l);
                done.then_some(())
            });
            p.stop();
            lines.extend(rx.try_iter());
        }
        lives.push(parse(&lines));
    }
    stop.store(true, Ordering::SeqCst);
    serving.join().unwrap();

    // The check (see the module documentation).
    let ctx = format!("seed {seed:#x}");
    let mut consumed: BTreeMap<u64, u64> = BTreeMap::new(); // seq -> id
    let mut resolved: HashMap<u64, u32> = HashMap::new();
    let mut made: Vec<u64> = vec![];
    let mut maybe_made: Vec<u64> = vec![];
    for (i, life) in lives.iter().enumerate() {
        made.extend(&life.called);
        maybe_made.extend(life.sending.iter().filter(|id| !life.called.contains(id)));
        let next_start = lives.get(i + 1).map_or(u64::MAX, |l| l.start);
        for (j, &(id, seq, orphan)) in life.handled.iter().enumerate() {
            assert!(seq >= life.start, "{ctx}: life {i} handled seq {seq} below its commit point {}", life.start);
            if seq >= next_start {
                // Handled, not consumed (killed before the pop): only the last one.
                assert_eq!(j + 1, life.handled.len(), "{ctx}: life {i}: seq {seq} not consumed but not the last");
                let again = lives[i + 1].handled.first();
                assert_eq!(again, Some(&(id, seq, true)), "{ctx}: the unconsumed answer comes back as an orphan");
                continue;
            }
            assert!(consumed.insert(seq, id).is_none(), "{ctx}: answer seq {seq} consumed twice");
            *resolved.entry(id).or_default() += 1;
            if !orphan {
                assert!(life.called.contains(&id) || life.sending.contains(&id), "{ctx}: reply to {id} not ours");
            }
        }
    }
    assert!(lives.last().unwrap().finished);
    for id in &made {
        assert_eq!(resolved.get(id), Some(&1), "{ctx}: call {id} resolved {:?} times", resolved.get(id));
    }
    for (id, n) in &resolved {
        assert!(*n == 1 && (made.contains(id) || maybe_made.contains(id)), "{ctx}: answer to {id}: {n}");
    }
    assert_eq!(resolved.len() as u64, TOTAL, "{ctx}: every call of the session answered");
    let orphans: usize = lives.iter().map(|l| l.handled.iter().filter(|h| h.2).count()).sum();
    assert!(orphans > 0, "{ctx}: no kill left calls in flight (the test did not test)");
}

#[test]
fn every_call_is_answered_once_when_the_caller_is_killed_tcp() {
    client_killed(TransportKind::Tcp);
}

#[test]
fn every_call_is_answered_once_when_the_caller_is_killed_shm() {
    client_killed(TransportKind::Shm);
}
