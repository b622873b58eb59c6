//! Producer handles in a process killed with SIGKILL: a client process (this test
//! binary re-executed in a role) logs in to a server connection in the test process
//! over TCP — its data carried by TCP or by shared memory — and pushes from several
//! threads through producer handles while its polling thread drains them into the
//! session. It is killed exactly at each step of a drain (the testkit's drain hook
//! parks the polling thread there), or at a random moment, and a new process logs in
//! and goes on. Every message whose push returned `Ok(true)` arrives exactly once, in
//! the order of its producer.
//!
//! A child records in counters shared with the parent, for each producer thread, the
//! index of the push it started and of the last one that returned: the parent knows
//! which messages were promised. The one push a thread was inside when the process
//! died may or may not have committed: it may be missing, never repeated; the next
//! process resumes each thread after it.

#![cfg(feature = "testkit")]

mod common;

use common::{config_for, open_client_at, open_server, serve_login};
use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use tcpshm_connection::testkit::{set_drain_hook, DrainPoint};
use tcpshm_connection::{Connection, ConnectionConfig};
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::session::LivenessConfig;
use tcpshm_proto::Transport;
use tcpshm_test_support::child::{self, Proc};
use tcpshm_test_support::shared::Counters;
use tcpshm_test_support::{now, wait_until, Rng, TempDir};

const DIR_VAR: &str = "TCPSHM_TEST_DIR";
const PREFIX_VAR: &str = "TCPSHM_TEST_PREFIX";
const ADDR_VAR: &str = "TCPSHM_TEST_ADDR";
const MEDIUM_VAR: &str = "TCPSHM_TEST_MEDIUM";
const END_VAR: &str = "TCPSHM_TEST_END";
/// `<point>:<n>`: park the polling thread the `n`th time a drain reaches `<point>`.
const STOP_VAR: &str = "TCPSHM_TEST_STOP";

/// Producer threads per process.
const THREADS: usize = 3;

/// Shared counters: per thread, `i + 1` once its push of message `i` started and once
/// it returned `Ok(true)`.
const INTENT: usize = 0;
const DONE: usize = 8;
/// The drain point (1 + its index in `POINTS`) where the child's polling thread parked.
const PARKED: usize = 16;
/// Set by a child whose session closed or whose drain got stuck (then it panics).
const FAILED: usize = 17;

/// No end: a child that is to be killed before it finishes.
const FOREVER: u64 = 1 << 40;

const POINTS: [DrainPoint; 4] = [DrainPoint::Armed, DrainPoint::Moved, DrainPoint::Published, DrainPoint::Released];

/// Real time (each process its own clock), 64 KiB session queue and rings, a 16 KiB
/// producers' queue (it wraps often and fills: producers meet backpressure), a
/// heartbeat every 20 ms and a timeout of 10 s (only a death ends a link here).
fn cfg(prefix: &str) -> ConnectionConfig {
    let mut cfg = config_for(prefix);
    cfg.session.max_message = 4096;
    cfg.queue_bytes = 1 << 16;
    cfg.shm.ring_bytes = 1 << 16;
    cfg.producer_queue_bytes = 1 << 14;
    cfg.session.liveness = LivenessConfig { heartbeat_interval: 20_000_000, timeout: 10_000_000_000 };
    cfg.check_interval = 200_000;
    cfg
}

/// Message `i` of producer thread `t`: 64 bytes, `[t, i (u64 LE), then bytes of both]`.
fn message(t: usize, i: u64) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[0] = t as u8;
    m[1..9].copy_from_slice(&i.to_le_bytes());
    for (k, b) in m[9..].iter_mut().enumerate() {
        *b = (t as u8).wrapping_mul(31) ^ (i as u8).wrapping_add(k as u8);
    }
    m
}

fn msg_type(t: usize) -> u16 {
    10 + t as u16
}

// ---- the child side ---------------------------------------------------------------

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

/// Where the child's polling thread is to park, and the counters to say so.
static STOP: OnceLock<(DrainPoint, u64, Counters)> = OnceLock::new();
static SEEN: AtomicU64 = AtomicU64::new(0);

fn drain_hook(point: DrainPoint) {
    let Some((at, nth, p)) = STOP.get() else { return };
    if point != *at || SEEN.fetch_add(1, Ordering::SeqCst) + 1 < *nth {
        return;
    }
    let k = POINTS.iter().position(|x| *x == point).unwrap() as u64;
    p.at(PARKED).store(k + 1, Ordering::SeqCst);
    // Parked here, between two steps of the drain, until the parent's SIGKILL; the
    // producer threads go on pushing meanwhile.
    loop {
        std::thread::park();
    }
}

fn fail(p: &Counters, what: String) -> ! {
    p.at(FAILED).store(1, Ordering::SeqCst);
    panic!("{what}");
}

/// The children's entry point (a no-op in a normal test run).
#[test]
fn child_role() {
    let Some(role) = child::role() else { return };
    assert_eq!(role, "producers");
    child::exit_when_stdin_closes();
    let dir = PathBuf::from(env(DIR_VAR));
    let p = Counters::open(&dir.join("progress"));
    if let Ok(stop) = std::env::var(STOP_VAR) {
        let (point, nth) = stop.split_once(':').expect("<point>:<n>");
        let point = POINTS[point.parse::<usize>().unwrap()];
        STOP.set((point, nth.parse().unwrap(), Counters::open(&dir.join("progress")))).ok();
        assert!(set_drain_hook(drain_hook));
    }
    let end: u64 = env(END_VAR).parse().unwrap();
    let medium = if env(MEDIUM_VAR) == "shm" { TransportKind::Shm } else { TransportKind::Tcp };
    let cfg = cfg(&env(PREFIX_VAR));
    // The session opens: a move the killed process left half done is settled here.
    let mut c: Connection<TcpStream> = open_client_at(&dir, &cfg, medium);
    let addr: SocketAddr = env(ADDR_VAR).parse().unwrap();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
    s.set_write_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
    c.login_client(s, medium, b"", now()).unwrap_or_else(|e| panic!("the child's login: {e}"));
    let producer = c.producer().unwrap();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let mut producer = producer.clone();
            let p = &p;
            scope.spawn(move || {
                // After the push the last process was inside (whether it committed or
                // not): never the same message twice.
                let start = p.at(INTENT + t).load(Ordering::SeqCst);
                for i in start..end {
                    p.at(INTENT + t).store(i + 1, Ordering::SeqCst);
                    while !producer.push(msg_type(t), &message(t, i)).unwrap() {
                        std::thread::yield_now();
                    }
                    p.at(DONE + t).store(i + 1, Ordering::SeqCst);
                    // Let the other threads claim too (two cores, four busy threads).
                    std::thread::yield_now();
                }
            });
        }
        // The polling thread, until the parent closes stdin (the process exits) or
        // kills it.
        loop {
            if !c.poll(now()) {
                fail(&p, format!("the child's session closed: {:?}", c.close_reason()));
            }
            if let Some(e) = c.producers_stuck() {
                fail(&p, format!("the child's producers are stuck: {e}"));
            }
            std::thread::yield_now();
        }
    });
}

// ---- the parent side --------------------------------------------------------------

/// The parent: the server end of the session, the listener the children log in on,
/// the progress counters, and what has arrived.
struct Parent {
    dir: TempDir,
    srv: Connection<TcpStream>,
    listener: TcpListener,
    p: Counters,
    medium: &'static str,
    /// Per thread: the next index expected.
    next: [u64; THREADS],
    /// Per thread: indices whose push was cut by a kill (may be missing).
    cut: [HashSet<u64>; THREADS],
    /// Indices of `cut` that were indeed missing.
    missing: usize,
    received: u64,
}

impl Parent {
    fn new(tag: &str, medium: &'static str) -> Parent {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.path()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let p = Counters::open(&dir.join("progress"));
        let srv = open_server(&dir, &cfg(dir.shm_prefix()), TransportKind::Shm);
        Parent { dir, srv, listener, p, medium, next: [0; THREADS], cut: Default::default(), missing: 0, received: 0 }
    }

    /// Starts a child (parked at the `nth` drain reaching `stop`, if given) and
    /// serves its login.
    fn spawn(&mut self, end: u64, stop: Option<(usize, u64)>) -> Proc {
        self.p.at(PARKED).store(0, Ordering::SeqCst);
        let mut cmd = child::command("child_role", "producers");
        cmd.env(DIR_VAR, self.dir.path())
            .env(PREFIX_VAR, self.dir.shm_prefix())
            .env(ADDR_VAR, self.listener.local_addr().unwrap().to_string())
            .env(MEDIUM_VAR, self.medium)
            .env(END_VAR, end.to_string());
        if let Some((point, nth)) = stop {
            cmd.env(STOP_VAR, format!("{point}:{nth}"));
        }
        let mut kid = Proc::spawn(cmd, |_| {});
        let stream = wait_until("the child's login", || match self.listener.accept() {
            Ok((s, _)) => Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = kid.exited() {
                    panic!("the child died before its login: {status}");
                }
                None
            }
            Err(e) => panic!("accept: {e}"),
        });
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
        stream.set_write_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
        serve_login(&mut self.srv, stream, now());
        assert!(self.srv.is_connected(), "the server refused the child: {:?}", self.srv.close_reason());
        kid
    }

    fn check(&mut self, ty: u16, payload: &[u8]) {
        let t = payload.first().map_or(usize::MAX, |t| *t as usize);
        assert!(t < THREADS && payload.len() == 64, "a message of no producer: {payload:?}");
        let i = u64::from_le_bytes(payload[1..9].try_into().unwrap());
        assert_eq!((ty, payload), (msg_type(t), &message(t, i)[..]), "message {i} of thread {t} intact");
        let next = self.next[t];
        assert!(i >= next, "over {}: thread {t}'s message {i} again or out of order (expected {next})", self.medium);
        for k in next..i {
            assert!(
                self.cut[t].contains(&k),
                "over {}: thread {t}'s message {k} lost (its push returned; got {i} next)",
                self.medium
            );
            self.missing += 1;
        }
        self.next[t] = i + 1;
        self.received += 1;
    }

    /// Receives what has arrived, checking each message; polls.
    fn pump(&mut self) {
        while let Some(m) = self.srv.front() {
            let (ty, payload) = (m.msg_type, m.payload.to_vec());
            self.check(ty, &payload);
            self.srv.pop();
        }
        self.srv.poll(now());
        assert_eq!(self.p.at(FAILED).load(Ordering::SeqCst), 0, "the child failed");
    }

    /// Pumps until `kid` is to be killed (`until`), kills it, then records the pushes
    /// it cut and pumps until the session is down.
    fn kill_when(&mut self, mut kid: Proc, mut until: impl FnMut(&Counters) -> bool) {
        wait_until("the kill point", || {
            self.pump();
            if let Some(status) = kid.exited() {
                panic!("the child ended by itself: {status}");
            }
            until(&self.p).then_some(())
        });
        kid.kill();
        for t in 0..THREADS {
            let (intent, done) =
                (self.p.at(INTENT + t).load(Ordering::SeqCst), self.p.at(DONE + t).load(Ordering::SeqCst));
            // The push it started last had not returned (`DONE` is of this process or
            // an earlier one): it may be missing.
            if intent > done {
                self.cut[t].insert(intent - 1);
            }
        }
        wait_until("the server to see the child's end", || {
            self.pump();
            (!self.srv.is_connected()).then_some(())
        });
    }

    /// A last child pushes every thread up to `end` and is not killed: everything
    /// arrives.
    fn finish(&mut self, extra: u64) {
        let end = (0..THREADS).map(|t| self.p.at(INTENT + t).load(Ordering::SeqCst)).max().unwrap() + extra;
        let kid = self.spawn(end, None);
        wait_until("every message", || {
            self.pump();
            (self.next.iter().all(|n| *n == end)).then_some(())
        });
        self.pump();
        assert!(self.srv.front().is_none(), "nothing beyond every thread's end");
        assert!(kid.stop().success(), "the last child failed");
        assert_eq!(self.srv.counters().consumed, self.received, "one seq per message received");
        let cut: usize = self.cut.iter().map(HashSet::len).sum();
        eprintln!(
            "over {}: {} messages from {THREADS} threads; {cut} pushes cut by kills, {} of them not committed",
            self.medium, self.received, self.missing
        );
    }
}

fn seed() -> u64 {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill-point seed {s:#x}");
    s
}

/// Killed at every step of a drain, twice each (at a random drain), then a last
/// process delivers the rest.
fn killed_at_every_drain_point(medium: &'static str) {
    let mut par = Parent::new(&format!("producers-kill-points-{medium}"), medium);
    let mut rng = Rng::new(seed());
    for round in 0..2 * POINTS.len() {
        let point = round % POINTS.len();
        let kid = par.spawn(FOREVER, Some((point, rng.range(1, 30))));
        par.kill_when(kid, |p| p.at(PARKED).load(Ordering::SeqCst) != 0);
        assert_eq!(par.p.at(PARKED).load(Ordering::SeqCst), point as u64 + 1);
    }
    par.finish(2_000);
}

/// Killed at random moments while the threads push and the drain moves, then a last
/// process delivers the rest.
fn killed_at_random_points(medium: &'static str) {
    const KILLS: usize = 8;
    let mut par = Parent::new(&format!("producers-kill-random-{medium}"), medium);
    let mut rng = Rng::new(seed());
    for _ in 0..KILLS {
        let t = rng.range(0, THREADS as u64 - 1) as usize;
        let target = par.p.at(DONE + t).load(Ordering::SeqCst) + rng.range(100, 5_000);
        let kid = par.spawn(FOREVER, None);
        par.kill_when(kid, |p| p.at(DONE + t).load(Ordering::SeqCst) >= target);
    }
    par.finish(2_000);
}

#[test]
fn killed_at_every_drain_point_over_tcp() {
    killed_at_every_drain_point("tcp");
}

#[test]
fn killed_at_every_drain_point_over_shm() {
    killed_at_every_drain_point("shm");
}

#[test]
fn killed_at_random_points_over_tcp() {
    killed_at_random_points("tcp");
}

#[test]
fn killed_at_random_points_over_shm() {
    killed_at_random_points("shm");
}
