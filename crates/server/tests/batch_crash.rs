//! SIGKILL of a real server process, over TCP and shared memory:
//!
//! * mid-batch — its handler staged two of the three messages answering a request
//!   and the process is killed before the commit: nothing of that batch is ever
//!   delivered; the restarted server answers the request whole, once;
//! * while it pushes to a client that is away — every push that returned is
//!   delivered at the client's next login, once, in order.
//!
//! The test binary re-executes itself as the server (`child_process` is the entry
//! point); the client is this process. Every wait is for a line the child writes or
//! for state the client observes.

mod common;

use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tcpshm_client::{Client, ClientConfig, TransportKind};
use tcpshm_proto::{Msg, Name, Nanos, Transport};
use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server, Sessions};
use tcpshm_test_support::child::{self, Proc};
use tcpshm_test_support::Rng;

const ENV_DIR: &str = "TCPSHM_BC_DIR";
const ENV_PREFIX: &str = "TCPSHM_BC_PREFIX";
const ENV_PORT: &str = "TCPSHM_BC_PORT";
const ENV_DIE_AT: &str = "TCPSHM_BC_DIE_AT";

/// The entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_process() {
    if child::role().as_deref() == Some("server") {
        server_main();
    }
}

/// One write per line: a line whose write returned survives a SIGKILL.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// Answers request `id` with three parts in a batch; at `die_at`, stages two and
/// then hangs (reporting `@staged id`) until it is killed. Pushes the fills it is
/// told to (`fills <client> <n>` on stdin) to that client, one per poll, reporting
/// `@pushed k` after each push returned.
struct ChildHandler {
    die_at: Option<u64>,
    fills: Arc<Mutex<Option<(Name, u64)>>>,
    next_fill: u64,
}

impl GroupHandler for ChildHandler {
    fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
        let id = u64::from_le_bytes(msg.payload[..8].try_into().unwrap());
        let mut batch = conn.batch().unwrap();
        for part in 0..3u8 {
            if part == 2 && self.die_at == Some(id) {
                report(&format!("@staged {id}"));
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            let Some(buf) = batch.alloc(9).unwrap() else { return Handled::Keep };
            buf[..8].copy_from_slice(&id.to_le_bytes());
            buf[8] = part;
            batch.push(1).unwrap();
        }
        batch.commit().unwrap();
        Handled::Pop
    }

    fn on_poll(&mut self, sessions: &mut Sessions<'_>, _now: Nanos) {
        let Some((client, n)) = *self.fills.lock().unwrap() else { return };
        if self.next_fill < n && sessions.push(&client, 2, &self.next_fill.to_le_bytes()).unwrap() {
            report(&format!("@pushed {}", self.next_fill));
            self.next_fill += 1;
        }
    }
}

fn server_main() {
    let fills = Arc::new(Mutex::new(None));
    let f = fills.clone();
    child::read_stdin(move |line| {
        let mut words = line.split(' ');
        if words.next() == Some("fills") {
            let client: Name = words.next().unwrap().parse().unwrap();
            let n: u64 = words.next().unwrap().parse().unwrap();
            *f.lock().unwrap() = Some((client, n));
        }
    });
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let mut cfg = server_config_at("Srv", std::path::Path::new(&var(ENV_DIR)), &var(ENV_PREFIX));
    cfg.listen = vec![format!("127.0.0.1:{}", var(ENV_PORT)).parse().unwrap()];
    let die_at = std::env::var(ENV_DIE_AT).ok().map(|v| v.parse().unwrap());
    let handler = ChildHandler { die_at, fills, next_fill: 0 };
    let mut server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![handler]).unwrap();
    report("@ready");
    loop {
        server.poll(now());
    }
}

/// A free port below the ephemeral range (no client's outgoing connection takes it
/// while the server is down).
fn free_port(rng: &mut Rng) -> u16 {
    for _ in 0..200 {
        let port = rng.range(20_000, 32_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

struct Env {
    dir: TempDir,
    port: u16,
}

impl Env {
    fn new(tag: &str, rng: &mut Rng) -> Env {
        Env { dir: TempDir::new(tag), port: free_port(rng) }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts a server child and waits for its `@ready`; its later lines come on the
    /// receiver.
    fn server(&self, die_at: Option<u64>) -> (Proc, Receiver<String>) {
        let mut cmd = child::command("child_process", "server");
        cmd.env(ENV_DIR, self.dir.join("server"))
            .env(ENV_PREFIX, self.dir.shm_prefix())
            .env(ENV_PORT, self.port.to_string());
        if let Some(id) = die_at {
            cmd.env(ENV_DIE_AT, id.to_string());
        }
        let (tx, rx) = channel();
        let p = Proc::spawn(cmd, move |line| {
            let _ = tx.send(line);
        });
        expect_line(&rx, "@ready");
        (p, rx)
    }

    fn client_config(&self, name: &str, kind: TransportKind) -> ClientConfig {
        let mut cfg = client_config(name, &self.dir, name);
        cfg.transport = kind;
        cfg.connect_timeout = Duration::from_secs(2);
        cfg
    }
}

/// Waits for a line starting with `prefix` (returns it).
fn expect_line(rx: &Receiver<String>, prefix: &str) -> String {
    wait_until(&format!("the server's {prefix}"), || {
        let line = rx.recv_timeout(Duration::from_millis(10)).ok()?;
        line.starts_with(prefix).then_some(line)
    })
}

/// Logs in, retrying what is worth retrying (the server may be restarting).
fn log_in(c: &mut Client, addr: SocketAddr, kind: TransportKind) {
    wait_until("a login", || match c.connect(addr, kind, now()) {
        Ok(_) => Some(()),
        Err(e) if e.is_retryable() => None,
        Err(e) => panic!("login refused for good: {e}"),
    });
}

fn request(c: &mut Client, id: u64) {
    c.alloc(8).unwrap().unwrap().copy_from_slice(&id.to_le_bytes());
    c.push(1).unwrap();
}

/// Polls and pops what arrived into `got` as `(type, value, part)`.
fn drain(c: &mut Client, got: &mut Vec<(u16, u64, u8)>) {
    c.poll(now());
    while let Some(m) = c.front() {
        let v = u64::from_le_bytes(m.payload[..8].try_into().unwrap());
        got.push((m.msg_type, v, m.payload.get(8).copied().unwrap_or(0)));
        c.pop();
    }
}

fn killed_mid_batch(kind: TransportKind) {
    let mut rng = Rng::new(now());
    let env = Env::new(&format!("batch-crash-{kind}"), &mut rng);
    let (server, lines) = env.server(Some(5));
    let mut c = <Client>::open(env.client_config("c", kind), now()).unwrap();
    log_in(&mut c, env.addr(), kind);
    for id in 0..10 {
        request(&mut c, id);
    }
    let mut got = vec![];
    // (Over TCP the answers to requests 0..5 may still be in the server's queue: a
    // poll writes its replies after handling its messages, and this one never ends.)
    let staged = wait_until("the server to stage two parts of the sixth answer", || {
        drain(&mut c, &mut got);
        lines.try_recv().ok()
    });
    assert_eq!(staged, "@staged 5");
    server.kill();
    let (server, _lines) = env.server(None);
    wait_until("the client to notice the kill", || (!c.poll(now())).then_some(()));
    log_in(&mut c, env.addr(), kind);
    wait_until("every answer", || {
        drain(&mut c, &mut got);
        (got.len() >= 30).then_some(())
    });
    let want: Vec<(u16, u64, u8)> = (0..10).flat_map(|id| (0..3).map(move |p| (1, id, p))).collect();
    assert_eq!(got, want, "each batch whole, once, in order; nothing of the batch killed mid-way");
    drain(&mut c, &mut got);
    assert_eq!(got.len(), 30);
    drop(server);
}

#[test]
fn a_server_killed_mid_batch_delivers_none_of_it_tcp() {
    killed_mid_batch(TransportKind::Tcp);
}

#[test]
fn a_server_killed_mid_batch_delivers_none_of_it_shm() {
    killed_mid_batch(TransportKind::Shm);
}

fn killed_pushing_to_an_away_client(kind: TransportKind) {
    let mut rng = Rng::new(now());
    let seed = rng.next_u64();
    let env = Env::new(&format!("away-crash-{kind}"), &mut rng);
    let (mut server, lines) = env.server(None);
    let mut c = <Client>::open(env.client_config("away", kind), now()).unwrap();
    log_in(&mut c, env.addr(), kind);
    drop(c); // away from here on
    server.send_line("fills away 1000");
    // Killed after a random number of pushes (up to ~half the queue).
    let kill_after = Rng::new(seed).range(20, 600);
    expect_line(&lines, &format!("@pushed {kill_after}"));
    server.kill();
    let reported = lines.try_iter().filter_map(|l| l.strip_prefix("@pushed ")?.parse::<u64>().ok()).max();
    let reported = reported.unwrap_or(kill_after).max(kill_after);
    let (server, _lines) = env.server(None);
    let mut c = <Client>::open(env.client_config("away", kind), now()).unwrap();
    log_in(&mut c, env.addr(), kind);
    // A request answered after the fills: its answer comes after all of them.
    request(&mut c, 77);
    let mut got = vec![];
    wait_until("the fills and the answer", || {
        drain(&mut c, &mut got);
        got.iter().any(|&(t, v, p)| (t, v, p) == (1, 77, 2)).then_some(())
    });
    let fills: Vec<u64> = got.iter().filter(|m| m.0 == 2).map(|m| m.1).collect();
    let n = fills.len() as u64;
    assert_eq!(fills, (0..n).collect::<Vec<_>>(), "fills once each, in order (seed {seed:#x})");
    assert!(n > reported, "fill {reported} was reported pushed, only {n} arrived (seed {seed:#x})");
    assert!(n <= reported + 2, "{n} fills arrived, {reported} reported pushed before the kill (seed {seed:#x})");
    drop(server);
}

#[test]
fn fills_pushed_to_an_away_client_survive_a_server_kill_tcp() {
    killed_pushing_to_an_away_client(TransportKind::Tcp);
}

#[test]
fn fills_pushed_to_an_away_client_survive_a_server_kill_shm() {
    killed_pushing_to_an_away_client(TransportKind::Shm);
}
