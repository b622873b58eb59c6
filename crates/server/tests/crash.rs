//! Separate-process crash tests, over TCP, over shared memory, and with a client that
//! changes transport at every restart: a server process and a client process stream
//! numbered messages both ways while the parent kills them with SIGKILL mid-stream
//! and restarts them; at the end every message was popped exactly once, in order, on
//! both sides, and no push that returned was lost.
//!
//! # Processes
//!
//! The test binary re-executes itself (`TCPSHM_TEST_ROLE` selects the role; the test
//! `child_process` is the entry point) as a SERVER and as a CLIENT
//! (`support::roles`). Each keeps its persistent state in a temp dir (and the
//! shared-memory file under /dev/shm with a prefix unique to the run, removed at the
//! end). The client pushes messages `0..N` (content, length and type are functions of
//! the number: `support::content`); the server verifies each, pushes the server
//! stream up to `N + N/4` messages (one reply per request plus one more every fourth)
//! BEFORE popping the request, and pops it. The client verifies every server message
//! likewise. The client role owns the reconnect loop (the library has none), and
//! retries exactly the errors `ConnectError::is_retryable` says are worth it: any
//! other is a failure.
//!
//! # Kills at many points, whatever the speed of the machine
//!
//! The parent holds the stream back: the client pushes only messages below a limit
//! the parent raises (a line on its stdin). Kill `i` of `K` waits until the server
//! consumed a point `i/(K+1)` of the stream (plus a random jitter), with the limit a
//! random window beyond it — so every kill lands mid-stream, with messages in flight
//! both ways, on a fast machine or a loaded one; no kill depends on a sleep. A kill
//! hits a random side (neither gets fewer than about a third); one time in six both,
//! restarted in random order, the second only once the first reported it runs
//! without its peer (a server: its commit points; a client: a failed login), so that
//! case is exercised for certain.
//!
//! # Why the check is exact
//!
//! Whatever a child writes, a SIGKILL can land between its `pop` and the report of
//! that pop. The design (`support::records`, `support::check`):
//!
//! * Every record is one `write(2)` to the child's stdout pipe, so a record whose
//!   write returned is in the kernel and survives the kill; records are never
//!   buffered in the child.
//! * `@D k` is written after message `k`'s content was verified and BEFORE `pop`;
//!   `@P k` after `pop` returned. So at a kill, the number of messages popped is
//!   known to lie in `[last @D, last @D + 1]`, and is exactly `last @D + 1` if `@P`
//!   made it.
//! * The message in doubt is not waved through with a tolerance: the restarted child
//!   first reads the session's persisted commit points — what the library resumes
//!   from when it opens the session (store and rings): `counters().consumed` and
//!   `counters().next_seq` — and reports them (`@R consumed pushed`). The parent
//!   requires the commit point to lie within the bounds the reports allow, and then
//!   the new incarnation's deliveries to start exactly there.
//! * Hence a duplicate fails (a delivery below the expected number within an
//!   incarnation, or a commit point below what was reported popped: a pop that
//!   returned and was then undone), and so does a loss (a delivery above the expected
//!   number, or a commit point above what was ever delivered). The unit tests
//!   `checker_*` below feed the checker such sequences.
//! * Pushes: `@Q n` after the pushes of `0..n` returned and were published; the
//!   pushed count at the next start must be at least that (a push that returned is
//!   never lost). For the server, every request popped must have all its replies
//!   pushed (they were pushed before the pop): else a LOST REPLY.
//! * The children check every byte and every seq; the parent checks the order and
//!   the counts.
//!
//! # Scale
//!
//! `TCPSHM_CRASH_MESSAGES` (default 1,000,000 client messages; the server sends a
//! quarter more) and `TCPSHM_CRASH_KILLS` (default 40) scale a run; a long run, e.g.
//! `TCPSHM_CRASH_MESSAGES=10000000 TCPSHM_CRASH_KILLS=300`, is the soak.
//! `TCPSHM_E2E_SEED` replays the random choices (the seed is printed),
//! `TCPSHM_E2E_LOG_DIR` keeps every record.

mod common;
mod support;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::check::SideCheck;
use support::content::server_target;
use support::procs::{diagnose, lock, spawn, Side, SideState};
use support::records::Rec;
use support::roles::{Role, RoleEnv};
use support::{env_u64, rng};
use tcpshm_client::TransportKind;
use tcpshm_test_support::child::Proc;
use tcpshm_test_support::{Rng, TempDir};

/// Client messages by default (the server sends a quarter more).
const DEFAULT_MESSAGES: u64 = 1_000_000;
/// Kills by default (both sides together).
const DEFAULT_KILLS: u64 = 40;

/// The entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_process() {
    support::roles::child_main();
}

/// One crash test at a time: each runs two busy-polling processes.
static SERIAL: Mutex<()> = Mutex::new(());

/// A free port below the ephemeral range (so no client's outgoing connection takes
/// it while the server is down).
fn free_port(rng: &mut Rng) -> u16 {
    for _ in 0..200 {
        let port = rng.range(20_000, 32_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

/// How the client's transport is chosen at each (re)start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Always(TransportKind),
    /// TCP, then shared memory, then TCP... at each restart of the client process.
    Alternate,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Server,
    Client,
}

/// The running pair and the parent's bookkeeping.
struct Run {
    tag: &'static str,
    server_env: RoleEnv,
    client_env: RoleEnv,
    mode: Mode,
    server_state: Side,
    client_state: Side,
    server: Option<Proc>,
    client: Option<Proc>,
    limit: u64,
    client_kinds: Vec<TransportKind>,
}

impl Run {
    fn states(&self) -> [(&str, &Side); 2] {
        [("server", &self.server_state), ("client", &self.client_state)]
    }

    fn fail(&self, what: &str) -> ! {
        panic!("crash {}: {what}\n{}", self.tag, diagnose(&self.states()))
    }

    fn spawn(&mut self, who: Who) {
        match who {
            Who::Server => self.server = Some(spawn("child_process", &[], &self.server_env, &self.server_state)),
            Who::Client => {
                let kind = match self.mode {
                    Mode::Always(k) => k,
                    Mode::Alternate if self.client_kinds.len().is_multiple_of(2) => TransportKind::Tcp,
                    Mode::Alternate => TransportKind::Shm,
                };
                self.client_kinds.push(kind);
                self.client_env.kind = kind;
                self.client_env.limit = Some(self.limit);
                self.client = Some(spawn("child_process", &[], &self.client_env, &self.client_state));
            }
        }
    }

    fn kill(&mut self, who: Who) {
        let p = if who == Who::Server { &mut self.server } else { &mut self.client };
        p.take().expect("running").kill();
    }

    fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
        if let Some(c) = self.client.as_mut() {
            c.send_line(&format!("limit {limit}"));
        }
    }

    /// (server's next expected, client's next expected, both finished).
    fn progress(&self) -> (u64, u64, bool) {
        let (s, c) = (lock(&self.server_state), lock(&self.client_state));
        (
            s.check.next_expected().unwrap_or(0),
            c.check.next_expected().unwrap_or(0),
            s.check.finished() && c.check.finished(),
        )
    }

    /// Waits until `cond` holds, failing at the first checker error or process that
    /// ended by itself, or when nothing at all happens for the wait limit.
    fn watch(&mut self, what: &str, mut cond: impl FnMut(&Run) -> bool) {
        let limit = tcpshm_test_support::WAIT;
        let mut last = (self.progress(), Instant::now());
        loop {
            for (name, st) in self.states() {
                let error = lock(st).error.clone();
                if let Some(e) = error {
                    self.fail(&format!("{name}: {e}"));
                }
            }
            let mut ended = None;
            for (name, p) in [("server", &mut self.server), ("client", &mut self.client)] {
                if let Some(status) = p.as_mut().and_then(|p| p.exited()) {
                    ended = Some(format!("the {name} process ended by itself ({status}) while waiting for {what}"));
                }
            }
            if let Some(text) = ended {
                self.fail(&text);
            }
            if cond(self) {
                return;
            }
            let now = self.progress();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > limit {
                self.fail(&format!("no progress for {limit:?} while waiting for {what}"));
            }
            // The children need the cores: look again in a moment.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn crash_test(mode: Mode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tag = match mode {
        Mode::Always(TransportKind::Tcp) => "tcp",
        Mode::Always(TransportKind::Shm) => "shm",
        Mode::Alternate => "switch",
    };
    let messages = env_u64("TCPSHM_CRASH_MESSAGES", DEFAULT_MESSAGES);
    let kills = env_u64("TCPSHM_CRASH_KILLS", DEFAULT_KILLS);
    let (mut rng, seed) = rng();
    let server_out = server_target(messages);
    eprintln!(
        "crash {tag}: {messages} messages client->server, {server_out} server->client, {kills} kills, seed {seed} \
         (TCPSHM_E2E_SEED={seed} replays the schedule)"
    );

    let dir = TempDir::new(&format!("crash-{tag}"));
    std::fs::create_dir_all(dir.path()).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port(&mut rng)).into();
    let server_env = RoleEnv {
        role: Role::Server,
        kind: TransportKind::Tcp,
        addr,
        dir: dir.path().to_path_buf(),
        client_dir: None,
        shm_prefix: dir.shm_prefix().to_string(),
        messages,
        heartbeat_ms: 100,
        timeout_ms: 2_000,
        connect_timeout_ms: 1_000,
        limit: None,
    };
    let client_env = RoleEnv { role: Role::Client, ..server_env.clone() };
    let mut run = Run {
        tag,
        server_env,
        client_env,
        mode,
        server_state: SideState::new(
            SideCheck::new("server", messages, server_out).with_replies(|c| (server_target(c), server_target(c + 1))),
        ),
        client_state: SideState::new(SideCheck::new("client", server_out, messages)),
        server: None,
        client: None,
        limit: 0,
        client_kinds: Vec::new(),
    };

    let start = Instant::now();
    let step = messages / (kills + 1);
    let (mut server_kills, mut client_kills, mut both_kills) = (0u64, 0u64, 0u64);
    run.limit = step / 2;
    run.spawn(Who::Server);
    run.spawn(Who::Client);
    for i in 0..kills {
        // The point of this kill, and how far the client may run ahead of it.
        let point = (i * step + rng.range(step / 4, step)).min(messages - 1);
        run.set_limit((point + rng.range(1, step)).min(messages));
        run.watch(&format!("kill {i}'s point: the server at message {point}"), |r| r.progress().0 >= point);
        let sides = if server_kills * 2 + 2 < client_kills {
            vec![Who::Server]
        } else if client_kills * 2 + 2 < server_kills {
            vec![Who::Client]
        } else if rng.one_in(6) {
            both_kills += 1;
            if rng.one_in(2) {
                vec![Who::Server, Who::Client]
            } else {
                vec![Who::Client, Who::Server]
            }
        } else if rng.one_in(2) {
            vec![Who::Server]
        } else {
            vec![Who::Client]
        };
        for &who in &sides {
            run.kill(who);
            if who == Who::Server {
                server_kills += 1;
            } else {
                client_kills += 1;
            }
        }
        run.spawn(sides[0]);
        if let [first, second] = sides[..] {
            // The first side runs alone for certain before its peer comes back.
            match first {
                Who::Server => run.watch("the server to restart alone", |r| lock(&r.server_state).count('R') > 0),
                Who::Client => run.watch("the client to fail a login alone", |r| lock(&r.client_state).count('W') > 0),
            }
            run.spawn(second);
        }
    }
    run.set_limit(messages);
    run.watch("the end of the stream", |r| r.progress().2);
    let streamed = start.elapsed();
    for (name, p) in [("server", run.server.take()), ("client", run.client.take())] {
        let status = p.expect("running").stop();
        assert!(status.success(), "crash {tag}: {name} did not exit cleanly: {status:?}");
    }
    for (name, st) in run.states() {
        let (error, finish) = {
            let s = lock(st);
            (s.error.clone(), s.check.finish())
        };
        if let Some(e) = error {
            run.fail(&format!("{name}: {e}"));
        }
        if let Err(e) = finish {
            run.fail(&e);
        }
    }
    let (s, c) = (lock(&run.server_state), lock(&run.client_state));
    eprintln!(
        "crash {tag}: done in {streamed:.2?}: {} kills (server {server_kills}, client {client_kills}, of which \
         {both_kills} times both at once); client transports {:?}; \
         server: {} incarnations, {} deliveries for {messages} messages, {} logons, {} disconnects, pop in doubt at \
         {} restarts (committed {}, not {}); client: {} incarnations, {} deliveries for {server_out} messages, {} \
         connects ({} failed attempts), pop in doubt at {} restarts (committed {}, not {})",
        server_kills + client_kills,
        run.client_kinds,
        s.check.incarnations,
        s.check.deliveries,
        s.check.connects,
        s.check.disconnects,
        s.check.doubtful_popped + s.check.doubtful_not_popped,
        s.check.doubtful_popped,
        s.check.doubtful_not_popped,
        c.check.incarnations,
        c.check.deliveries,
        c.check.connects,
        c.check.retries,
        c.check.doubtful_popped + c.check.doubtful_not_popped,
        c.check.doubtful_popped,
        c.check.doubtful_not_popped,
    );
    assert_eq!(s.check.incarnations, server_kills + 1);
    assert_eq!(c.check.incarnations, client_kills + 1);
}

#[test]
fn crash_tcp() {
    crash_test(Mode::Always(TransportKind::Tcp));
}

#[test]
fn crash_shm() {
    crash_test(Mode::Always(TransportKind::Shm));
}

/// The client's process alternates TCP and shared memory at every restart while
/// messages are in flight both ways: a session is one sequence whatever the medium,
/// so exactly-once holds across every switch.
#[test]
fn crash_switching_transport() {
    crash_test(Mode::Alternate);
}

// ---- the checker itself: it must fail on a loss, a duplicate, a lost push ----------

fn run_checker(check: &mut SideCheck, incarnations: &[&[Rec]]) -> Result<(), String> {
    for recs in incarnations {
        check.begin();
        for r in *recs {
            check.apply(r)?;
        }
    }
    Ok(())
}

use Rec::{Delivered as D, Finished as F, Popped as P, Pushed as Q};
fn r(consumed: u64, pushed: u64) -> Rec {
    Rec::Resume { consumed, pushed }
}

#[test]
fn checker_accepts_every_kill_point() {
    // Killed after @P 2: resumes at 3. Killed between @D 5 and @P 5: the commit point
    // says popped (6) or not (5); both are right.
    for resume in [5, 6] {
        let mut c = SideCheck::new("t", 8, 2);
        let first: &[Rec] = &[r(0, 0), D(0), D(1), D(2), P(2), Q(1)];
        let second: &[Rec] = &[r(3, 1), D(3), D(4), D(5)];
        let rest: Vec<Rec> = [r(resume, 1)].into_iter().chain((resume..8).map(D)).chain([P(7), Q(2), F]).collect();
        run_checker(&mut c, &[first, second, &rest]).unwrap();
        c.finish().unwrap();
        assert_eq!(c.doubtful_popped + c.doubtful_not_popped, 1);
    }
    // A kill before @R: nothing happened in that incarnation.
    let mut c = SideCheck::new("t", 2, 0);
    run_checker(&mut c, &[&[r(0, 0), D(0), P(0)], &[], &[r(1, 0), D(1), P(1), F]]).unwrap();
    c.finish().unwrap();
}

#[test]
fn checker_catches_a_duplicate() {
    // Within an incarnation.
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), D(1), D(1)]]).unwrap_err();
    assert!(e.contains("DUPLICATE"), "{e}");
    // After a restart: @P 2 was reported, yet the commit point says 2 was not popped.
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), D(1), D(2), P(2)], &[r(2, 0)]]).unwrap_err();
    assert!(e.contains("DUPLICATE"), "{e}");
    // After a restart: @D 3 means the pop of 2 returned; a commit point of 2 is a redelivery.
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), D(1), D(2), D(3)], &[r(2, 0)]]).unwrap_err();
    assert!(e.contains("DUPLICATE"), "{e}");
    // The commit point is right, but the transport delivers an older message.
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), D(1), P(1)], &[r(2, 0), D(1)]]).unwrap_err();
    assert!(e.contains("DUPLICATE"), "{e}");
}

#[test]
fn checker_catches_a_gap() {
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), D(2)]]).unwrap_err();
    assert!(e.contains("GAP"), "{e}");
    // The commit point claims 4 popped, but only 0..3 were ever delivered.
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), D(1), D(2)], &[r(4, 0)]]).unwrap_err();
    assert!(e.contains("LOSS"), "{e}");
    // The commit point is right, but the transport skips a message.
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), P(0)], &[r(1, 0), D(2)]]).unwrap_err();
    assert!(e.contains("GAP"), "{e}");
    // Finishing early is not finishing.
    let e = run_checker(&mut SideCheck::new("t", 8, 0), &[&[r(0, 0), D(0), F]]).unwrap_err();
    assert!(e.contains("finished early"), "{e}");
    let mut c = SideCheck::new("t", 8, 0);
    run_checker(&mut c, &[&[r(0, 0), D(0), P(0)]]).unwrap();
    assert!(c.finish().is_err());
}

#[test]
fn checker_catches_a_lost_push_or_reply() {
    let e = run_checker(&mut SideCheck::new("t", 0, 8), &[&[r(0, 0), Q(5)], &[r(0, 4)]]).unwrap_err();
    assert!(e.contains("LOST PUSH"), "{e}");
    let replies = |c: u64| (server_target(c), server_target(c + 1));
    let mut c = SideCheck::new("t", 8, server_target(8)).with_replies(replies);
    let e = run_checker(&mut c, &[&[r(0, 0), D(0), D(1), D(2), D(3), P(3)], &[r(4, 3)]]).unwrap_err();
    assert!(e.contains("LOST REPLY"), "{e}");
    let mut c = SideCheck::new("t", 8, server_target(8)).with_replies(replies);
    run_checker(&mut c, &[&[r(0, 0), D(0), D(1), D(2), D(3), P(3)], &[r(4, 5)]]).unwrap();
}

// ---- behaviours the crash tests found broken, each pinned by its own regression test --

/// A server handler pushes its reply to request 0 and pops it; the process dies
/// (here: `exit` in the handler of request 1, in the same poll, no destructor run).
/// Request 0's pop survived, so its reply must have too (the reply, staged in the
/// store, is published before the pop commits).
#[test]
fn tcp_reply_survives_a_crash_after_its_pop() {
    use tcpshm_proto::Transport;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("lost-reply");
    std::fs::create_dir_all(dir.path()).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port(&mut rng().0)).into();
    let env = RoleEnv {
        role: Role::AbortServer,
        kind: TransportKind::Tcp,
        addr,
        dir: dir.path().to_path_buf(),
        client_dir: None,
        shm_prefix: dir.shm_prefix().to_string(),
        messages: 0,
        heartbeat_ms: 1_000,
        timeout_ms: 10_000,
        connect_timeout_ms: 2_000,
        limit: None,
    };
    let state = SideState::new(SideCheck::new("abort-server", 0, 0));
    let mut server = spawn("child_process", &[], &env, &state);
    tcpshm_test_support::wait_until("the server to listen", || (lock(&state).count('S') > 0).then_some(()));
    let mut client = <tcpshm_client::Client>::open(support::roles::client_config(&env), common::now()).unwrap();
    client.connect(addr, TransportKind::Tcp, common::now()).unwrap();
    // Both requests in one write, so the server reads and handles them in one poll.
    for b in [0u8, 1] {
        client.alloc(1).unwrap().unwrap()[0] = b;
        client.push_more(1).unwrap();
    }
    client.poll(common::now());
    let status = tcpshm_test_support::wait_until("the server to get request 1", || {
        client.poll(common::now());
        server.exited()
    });
    assert_eq!(status.code(), Some(86), "the server process ended otherwise: {status}");
    let (consumed, pushed) = support::roles::server_commit_points(&support::roles::server_config(&env)).unwrap();
    assert_eq!(consumed, 1, "request 0 was popped before the crash");
    assert!(
        pushed >= consumed,
        "LOST REPLY: request 0's pop survived the crash (consumed {consumed}) but the reply pushed before it did \
         not (next seq {pushed})"
    );
}

/// The commit points the roles report at a restart (`@R`: the session's counters
/// right after it is opened, on each side) are the true counts: after random pushes
/// and pops both ways, over TCP and shared memory (thousands of messages through
/// small rings, wrapping many times), both processes' state is closed and reopened,
/// and the counts read back are exactly what was popped and pushed.
#[test]
fn commit_points_read_at_a_restart_are_the_true_counts() {
    use common::{server_config, Echo};
    use support::content::Stream;
    use tcpshm_proto::{Msg, Transport};
    use tcpshm_server::{AcceptAll, Conn, GroupHandler, Handled, RoundRobin, Server};

    /// Pops client messages in random amounts and pushes the server stream.
    struct Random {
        rng: Rng,
        popped: u64,
        pushed: u64,
    }
    impl GroupHandler for Random {
        fn on_message(&mut self, conn: &mut Conn<'_>, msg: Msg<'_>) -> Handled {
            Stream::CLIENT.check(self.popped, msg.msg_type, msg.payload).unwrap();
            for _ in 0..self.rng.range(0, 3) {
                let Ok(Some(buf)) = conn.alloc(Stream::SERVER.len(self.pushed)) else { break };
                Stream::SERVER.fill(self.pushed, buf);
                conn.push(Stream::SERVER.msg_type(self.pushed)).unwrap();
                self.pushed += 1;
            }
            if self.rng.one_in(3) {
                return Handled::Keep;
            }
            self.popped += 1;
            Handled::Pop
        }
    }
    let _ = Echo;

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for kind in [TransportKind::Tcp, TransportKind::Shm] {
        let dir = TempDir::new(&format!("commit-points-{kind}"));
        let env = RoleEnv {
            role: Role::Server,
            kind,
            addr: "127.0.0.1:0".parse().unwrap(),
            dir: dir.path().to_path_buf(),
            client_dir: None,
            shm_prefix: dir.shm_prefix().to_string(),
            messages: 0,
            heartbeat_ms: 1_000,
            timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            limit: None,
        };
        let mut scfg = support::roles::server_config(&env);
        scfg.connection.shm.ring_bytes = 4096;
        let _ = server_config;
        let handler = Random { rng: rng().0, popped: 0, pushed: 0 };
        let mut server = Server::bind(scfg.clone(), AcceptAll, RoundRobin::default(), vec![handler]).unwrap();
        let addr = server.local_addrs()[0];
        let polled = common::Polled::spawn(server, |s| s.poll(common::now()));
        let mut client = <tcpshm_client::Client>::open(support::roles::client_config(&env), common::now()).unwrap();
        client.connect(addr, kind, common::now()).unwrap();
        server = polled.stop();
        let (mut c_pushed, mut c_popped) = (0u64, 0u64);
        let mut rng = rng().0;
        for _ in 0..3000 {
            for _ in 0..rng.range(0, 6) {
                let Some(buf) = client.alloc(Stream::CLIENT.len(c_pushed)).unwrap() else { break };
                Stream::CLIENT.fill(c_pushed, buf);
                client.push(Stream::CLIENT.msg_type(c_pushed)).unwrap();
                c_pushed += 1;
            }
            server.poll(common::now());
            assert!(client.poll(common::now()), "{kind}: {:?}", client.close_reason());
            for _ in 0..rng.range(0, 6) {
                let Some(m) = client.front() else { break };
                Stream::SERVER.check(c_popped, m.msg_type, m.payload).unwrap();
                client.pop();
                c_popped += 1;
            }
        }
        let (s_popped, s_pushed) = {
            let h = server.groups()[0].handler();
            (h.popped, h.pushed)
        };
        assert!(c_pushed > 2_000 && s_pushed > 2_000, "{kind}: {c_pushed} {s_pushed}");
        assert!(s_popped < c_pushed && c_popped < s_pushed, "{kind}: messages in flight both ways");
        // Both "processes" end (no goodbye: as after a kill), then restart.
        drop(client);
        drop(server);
        let client = <tcpshm_client::Client>::open(support::roles::client_config(&env), common::now()).unwrap();
        let c = client.counters();
        assert_eq!((c.consumed, c.next_seq, client.resume_point()), (c_popped, c_pushed, c_pushed), "{kind}: client");
        drop(client);
        let s = support::roles::server_commit_points(&scfg).unwrap();
        assert_eq!(s, (s_popped, s_pushed), "{kind}: server");
    }
}

/// Request/reply over TCP must not stall once both send queues fill: the server's
/// echo handler keeps a request while its send queue is full (`Handled::Keep`, as
/// the docs' echo does); the client pops every reply at once and keeps its own queue
/// full of requests. The client's acknowledgements of the replies (which free the
/// server's queue) travel behind the client's queued requests, which do not fit in
/// the server's receive buffer, full of requests the handler cannot pop until its
/// queue has room. No timeout breaks it (pending bytes count as life).
#[test]
fn request_reply_does_not_stall_when_both_queues_fill() {
    use tcpshm_proto::Transport;
    use tcpshm_server::{AcceptAll, RoundRobin, Server};

    for kind in [TransportKind::Tcp, TransportKind::Shm] {
        let dir = TempDir::new("stall");
        let mut cfg = common::server_config("StallSrv", &dir);
        cfg.connection.session.max_message = 1024;
        let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![common::Echo]).unwrap();
        let addr = server.local_addrs()[0];
        let _srv = common::Polled::spawn(server, |s| s.poll(common::now()));
        let mut ccfg = common::client_config("stallcli", &dir, "client");
        ccfg.connection.session.max_message = 1024;
        let mut client = common::connect(&ccfg, addr, kind);
        let total = 20_000u64;
        let (mut sent, mut got) = (0u64, 0u64);
        tcpshm_test_support::wait_until("every reply", || {
            while sent < total {
                let Some(buf) = client.alloc(100).unwrap() else { break };
                buf[..8].copy_from_slice(&sent.to_le_bytes());
                client.push_more(1).unwrap();
                sent += 1;
            }
            assert!(client.poll(common::now()), "{kind}: {:?}", client.close_reason());
            while let Some(m) = client.front() {
                assert_eq!(m.payload[..8], got.to_le_bytes());
                client.pop();
                got += 1;
            }
            (got == total).then_some(())
        });
    }
}

/// A shared-memory client that stays alive while its server restarts logs in again
/// (its own lock on the file, kept by its mapping, must not look like a live
/// connection to the new server), and the session goes on.
#[test]
fn shm_client_reconnects_to_a_restarted_server() {
    use tcpshm_proto::Transport;
    use tcpshm_server::{AcceptAll, RoundRobin, Server};

    let dir = TempDir::new("shm-restart");
    let mut cfg = common::server_config("RstSrv", &dir);
    cfg.listen = vec![([127, 0, 0, 1], free_port(&mut rng().0)).into()];
    let addr = cfg.listen[0];
    let log = common::EventLog::default();
    let start = || {
        let s =
            Server::bind(cfg.clone(), AcceptAll, RoundRobin::default(), vec![common::Recorder { log: log.clone() }])
                .unwrap();
        common::Polled::spawn(s, |s| s.poll(common::now()))
    };
    let srv = start();
    let mut client = common::connect(&common::client_config("rstcli", &dir, "client"), addr, TransportKind::Shm);
    common::echo_once(&mut client, &[1]);
    // The server goes away (its connection and lock with it) and comes back.
    drop(srv.stop());
    tcpshm_test_support::wait_until("the client to notice that the server went away", || {
        (!client.poll(common::now())).then_some(())
    });
    let _srv = start();
    let r = client.connect(addr, TransportKind::Shm, common::now());
    assert!(r.is_ok(), "a live shared-memory client cannot log in to its restarted server: {r:?}");
    common::echo_once(&mut client, &[2]);
}

/// The same without any restart: a shared-memory client whose connection dropped
/// (here it closes it itself; in `netns.rs` a network cut times it out) logs in again
/// to the same, live server — once the server saw the close, and also before.
#[test]
fn shm_client_reconnects_after_a_disconnect() {
    use tcpshm_proto::{CloseReason, Transport};
    use tcpshm_server::{AcceptAll, RoundRobin, Server};

    let dir = TempDir::new("shm-reconnect");
    let log = common::EventLog::default();
    let server = Server::bind(
        common::server_config("RecSrv", &dir),
        AcceptAll,
        RoundRobin::default(),
        vec![common::Recorder { log: log.clone() }],
    )
    .unwrap();
    let addr = server.local_addrs()[0];
    let _srv = common::Polled::spawn(server, |s| s.poll(common::now()));
    let mut client = common::connect(&common::client_config("reccli", &dir, "client"), addr, TransportKind::Shm);
    common::echo_once(&mut client, &[1]);
    client.close(CloseReason::Requested);
    common::Recorder::wait_disconnects(&log, "reccli", 1);
    let r = client.connect(addr, TransportKind::Shm, common::now());
    assert!(r.is_ok(), "a shared-memory client cannot log in again after a disconnect: {r:?}");
    common::echo_once(&mut client, &[2]);
    // At once, before the server saw the close: the login replaces the old link.
    client.close(CloseReason::Requested);
    let r = client.connect(addr, TransportKind::Shm, common::now());
    assert!(r.is_ok(), "a shared-memory client cannot log in again right after a disconnect: {r:?}");
    common::echo_once(&mut client, &[3]);
    common::Recorder::wait_disconnects(&log, "reccli", 2);
}
