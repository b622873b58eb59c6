//! Separate processes, killed with SIGKILL: a client process (this test binary
//! re-executed in a role) logs in to a server connection in the test process over a
//! Unix socket and carries its messages through shared memory; it is killed at many
//! points of its work and replaced by a new process that logs in again and goes on.
//! Nothing pushed is lost or repeated, nothing popped comes back — also when a kill
//! lands between storing a ring's consumed count and releasing the message, and
//! when the session changes medium (shared memory, TCP, shared memory) with messages
//! in flight at every kill.
//!
//! A child reports its progress around each push and pop in counters shared with
//! the parent (`tcpshm_test_support::shared`): what it had started and what it had
//! completed when it was killed, against which the parent checks where the next
//! process resumes.

mod common;

use common::{body, config_for, open_client_at, open_server, serve_login};
use std::io::{BufRead, BufReader, ErrorKind, Lines, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tcpshm_connection::{Connection, ConnectionConfig};
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::session::LivenessConfig;
use tcpshm_proto::{CloseReason, Msg, Transport};
use tcpshm_test_support::shared::Counters;
use tcpshm_test_support::{child, now, wait_until, Rng, TempDir};

const DIR_VAR: &str = "TCPSHM_TEST_DIR";
const PREFIX_VAR: &str = "TCPSHM_TEST_PREFIX";
const END_VAR: &str = "TCPSHM_TEST_END";
const MEDIUM_VAR: &str = "TCPSHM_TEST_MEDIUM";

/// Slots of the shared progress counters.
const PUSH_INTENT: usize = 0;
const PUSH_DONE: usize = 1;
const POP_INTENT: usize = 2;
const POP_DONE: usize = 3;
/// Set (to 1) by a child that found a wrong message, before it panics: a SIGKILL
/// during its panic must not hide the failure.
const FAILED: usize = 4;

/// No end: a child that is to be killed before it finishes.
const FOREVER: u64 = 1 << 40;

/// Real time (each process its own clock), messages up to 4 KiB, 64 KiB rings and
/// queues, a heartbeat every 20 ms and a timeout of 10 s (only a death ends a link
/// here), control work every 0.2 ms.
fn cfg(prefix: &str) -> ConnectionConfig {
    let mut cfg = config_for(prefix);
    cfg.session.max_message = 4096;
    cfg.queue_bytes = 1 << 16;
    cfg.shm.ring_bytes = 1 << 16;
    cfg.session.liveness = LivenessConfig { heartbeat_interval: 20_000_000, timeout: 10_000_000_000 };
    cfg.check_interval = 200_000;
    cfg
}

/// Message `seq` of the client's stream (`up`) or the server's: its length, type and
/// bytes are functions of its seq.
fn len_of(seq: u64) -> usize {
    ((seq * 2_654_435_761) % 301) as usize
}

fn payload(seq: u64, up: bool) -> Vec<u8> {
    body(if up { seq } else { seq ^ (1 << 40) }, len_of(seq))
}

fn try_push<T: Transport>(t: &mut T, seq: u64, up: bool) -> bool {
    match t.alloc(len_of(seq)).unwrap() {
        Some(buf) => {
            buf.copy_from_slice(&payload(seq, up));
            t.push(if up { 1 } else { 2 }).unwrap();
            true
        }
        None => false,
    }
}

fn check(m: &Msg<'_>, seq: u64, up: bool) -> Result<(), String> {
    if m.seq != seq || m.msg_type != if up { 1 } else { 2 } || m.payload != payload(seq, up) {
        return Err(format!(
            "expected message {seq} of the {} stream, got seq {} (type {}, {} bytes)",
            if up { "client's" } else { "server's" },
            m.seq,
            m.msg_type,
            m.payload.len()
        ));
    }
    Ok(())
}

// ---- the child side ---------------------------------------------------------------

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

/// Becomes true when the parent closes our stdin (it wants us to exit).
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok(n) = std::io::stdin().read(&mut b) {
            if n == 0 {
                break;
            }
        }
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// The child's connection, logged in over the parent's socket with `medium`.
fn child_connect(medium: TransportKind) -> Connection<UnixStream> {
    let dir = PathBuf::from(env(DIR_VAR));
    let cfg = cfg(&env(PREFIX_VAR));
    let mut c = open_client_at(&dir, &cfg, medium);
    let s = UnixStream::connect(dir.join("sock")).unwrap();
    s.set_read_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
    s.set_write_timeout(Some(common::EXCHANGE_WAIT)).unwrap();
    c.login_client(s, medium, b"", now()).unwrap_or_else(|e| panic!("the child's login: {e}"));
    c
}

fn child_medium() -> TransportKind {
    match std::env::var(MEDIUM_VAR).as_deref() {
        Ok("tcp") => TransportKind::Tcp,
        _ => TransportKind::Shm,
    }
}

/// Pushes the client's stream up to `end` and pops the server's up to `end` (each
/// step recorded in `p`), until both are done or `stop`.
fn child_work(c: &mut Connection<UnixStream>, p: &Counters, end: u64, pushing: bool, popping: bool, stop: &AtomicBool) {
    let mut next_pop = c.counters().consumed;
    println!("START {} {}", c.counters().next_seq, next_pop);
    let mut announced = false;
    loop {
        let mut idle = true;
        if pushing {
            let seq = c.counters().next_seq;
            if seq < end {
                p.at(PUSH_INTENT).store(seq + 1, Ordering::SeqCst);
                if try_push(c, seq, true) {
                    p.at(PUSH_DONE).store(seq + 1, Ordering::SeqCst);
                    idle = false;
                }
            }
        }
        if popping && next_pop < end {
            if let Some(m) = c.front() {
                if let Err(e) = check(&m, next_pop, false) {
                    p.at(FAILED).store(1, Ordering::SeqCst);
                    panic!("{e}");
                }
                p.at(POP_INTENT).store(next_pop + 1, Ordering::SeqCst);
                c.pop();
                p.at(POP_DONE).store(next_pop + 1, Ordering::SeqCst);
                next_pop += 1;
                idle = false;
            }
        }
        if (!pushing || c.counters().next_seq >= end) && (!popping || next_pop >= end) && !announced {
            println!("DONE");
            announced = true;
        }
        if idle {
            c.poll(now());
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::yield_now();
        }
        assert!(c.is_connected(), "the child's session closed: {:?}", c.close_reason());
    }
}

/// The children's entry point (a no-op in a normal test run).
#[test]
fn child_role() {
    let Some(role) = child::role() else { return };
    let stop = stop_flag();
    let dir = PathBuf::from(env(DIR_VAR));
    let p = Counters::open(&dir.join("progress"));
    let end: u64 = std::env::var(END_VAR).ok().and_then(|e| e.parse().ok()).unwrap_or(FOREVER);
    match role.as_str() {
        "producer" => child_work(&mut child_connect(TransportKind::Shm), &p, end, true, false, &stop),
        "consumer" => child_work(&mut child_connect(TransportKind::Shm), &p, end, false, true, &stop),
        "both" => child_work(&mut child_connect(child_medium()), &p, end, true, true, &stop),
        "stall" => {
            // Pops `end` messages, then leaves the state a kill between storing the
            // consumed count of the next pop and releasing its message leaves: the
            // count one further, the message still in the ring.
            let mut c = child_connect(TransportKind::Shm);
            let mut seq = c.counters().consumed;
            while seq < end {
                match c.front() {
                    Some(m) => {
                        check(&m, seq, false).unwrap();
                        c.pop();
                        seq += 1;
                    }
                    None => {
                        c.poll(now());
                    }
                }
            }
            let (_store, rings) = c.into_parts();
            let mut rings = rings.expect("a shared-memory session has rings");
            let held = rings.rx.front().unwrap().expect("the next message is in the ring");
            assert_eq!(held.seq, end);
            rings.rx.raise_consumed(end + 1);
            println!("STALLED");
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

// ---- the parent side --------------------------------------------------------------

/// A child process and the lines of its stdout; killed if dropped (a failing test
/// leaves no process behind).
struct Kid {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
    reaped: bool,
}

impl Drop for Kid {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Kid {
    /// Reads the child's stdout up to a line starting with `marker`; returns it.
    fn line(&mut self, marker: &str) -> String {
        for line in self.out.by_ref() {
            let line = line.unwrap();
            if line.starts_with(marker) {
                return line;
            }
        }
        panic!("the child ended without printing {marker}: {:?}", self.child.wait());
    }

    /// SIGKILLs the child, which must still have been running (a child that exited —
    /// after failing a check — fails the test).
    fn kill(mut self) {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        self.reaped = true;
        assert_eq!(status.signal(), Some(9), "the child was to be killed, but it had exited: {status}");
    }

    /// Closes its stdin (it exits) and checks it succeeded.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        self.reaped = true;
        assert!(status.success(), "the child failed: {status}");
    }
}

/// The parent: the server end of the session, the socket the children log in on,
/// the progress counters.
struct Parent {
    dir: TempDir,
    srv: Connection<UnixStream>,
    listener: UnixListener,
    p: Counters,
}

impl Parent {
    fn new(tag: &str) -> Parent {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.path()).unwrap();
        let listener = UnixListener::bind(dir.join("sock")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let p = Counters::open(&dir.join("progress"));
        let srv = open_server(&dir, &cfg(dir.shm_prefix()), TransportKind::Shm);
        Parent { dir, srv, listener, p }
    }

    fn spawn(&self, role: &str, end: u64, medium: &str) -> Kid {
        let mut cmd = child::command("child_role", role);
        cmd.env(DIR_VAR, self.dir.path())
            .env(PREFIX_VAR, self.dir.shm_prefix())
            .env(END_VAR, end.to_string())
            .env(MEDIUM_VAR, medium);
        let mut child = cmd.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Kid { child, out, reaped: false }
    }

    /// Serves the login of `kid` (which must succeed); returns the transport.
    fn serve(&mut self, kid: &mut Kid) -> TransportKind {
        let stream = wait_until("the child's login", || match self.listener.accept() {
            Ok((s, _)) => Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = kid.child.try_wait() {
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
        self.srv.medium()
    }

    /// Polls until the session is down; returns why.
    fn until_down(&mut self) -> CloseReason {
        wait_until("the server to see the child's end", || {
            (!self.srv.poll(now())).then(|| self.srv.close_reason().cloned().expect("a reason"))
        })
    }

    fn failed(&self) -> bool {
        self.p.at(FAILED).load(Ordering::SeqCst) != 0
    }
}

/// Kills `kid` from another thread once its progress counter `slot` reaches
/// `target`, while the caller keeps the streams flowing (so the kill lands inside the
/// child's work, not while it waits for the parent).
fn kill_when(kid: Kid, progress: PathBuf, slot: usize, target: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let p = Counters::open(&progress);
        wait_until("the child's progress", || (p.at(slot).load(Ordering::SeqCst) >= target).then_some(()));
        kid.kill();
    })
}

fn seed() -> u64 {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill-point seed {s:#x}");
    s
}

/// A dead process is seen at once: by its control stream's end, told apart from an
/// orderly close by its released lock; its side of the file is free for the next.
#[test]
fn a_killed_peer_is_seen_dead_and_its_side_is_free_again() {
    let mut par = Parent::new("kill-dead");
    let mut kid = par.spawn("producer", 10, "shm");
    par.serve(&mut kid);
    kid.line("DONE");
    let path = par.srv.rings().unwrap().path().to_path_buf();
    assert!(par.srv.rings().unwrap().peer_alive().unwrap());
    let t0 = now();
    kid.kill();
    assert!(!par.srv.rings().unwrap().peer_alive().unwrap(), "seen dead at once after SIGKILL");
    assert_eq!(par.until_down(), CloseReason::PeerDied);
    assert!(now() - t0 < 10_000_000_000, "seen by the stream's end, not by the timeout");
    // The client side can be mapped again (here, by this process).
    let dir = tcpshm_transport_shm::ShmDir::new("/dev/shm", par.dir.shm_prefix()).unwrap();
    let again = tcpshm_transport_shm::ShmFile::open(&dir, &common::server_name(), &common::client_name()).unwrap();
    assert_eq!(again.path(), path);
    assert_eq!(again.pid(tcpshm_transport_shm::Side::Client), Some(std::process::id()));
    // The ten messages the dead process pushed are still there for the next login.
    drop(again);
    let mut kid = par.spawn("producer", 10, "shm");
    par.serve(&mut kid);
    for seq in 0..10 {
        let m = wait_until("a message", || {
            par.srv.poll(now());
            par.srv.front().map(|m| (m.seq, m.msg_type, m.payload.to_vec()))
        });
        assert_eq!(m, (seq, 1, payload(seq, true)));
        par.srv.pop();
    }
    kid.finish();
}

/// Two processes exchange many checked messages each way at full speed.
#[test]
fn two_processes_exchange_checked_messages_each_way() {
    const N: u64 = 300_000;
    let mut par = Parent::new("stream");
    let mut kid = par.spawn("both", N, "shm");
    par.serve(&mut kid);
    // Not before the child's login is complete: see shm.rs,
    // a_server_pushing_right_after_accepting_does_not_fail_a_first_shm_login.
    kid.line("START");
    let (mut sent, mut got) = (0, 0);
    wait_until("both streams", || {
        while sent < N && try_push(&mut par.srv, sent, false) {
            sent += 1;
        }
        while let Some(m) = par.srv.front() {
            check(&m, got, true).unwrap();
            par.srv.pop();
            got += 1;
        }
        assert!(par.srv.poll(now()), "{:?}", par.srv.close_reason());
        assert!(!par.failed(), "the child found a wrong message");
        (sent == N && got == N).then_some(())
    });
    kid.line("DONE");
    wait_until("the last acks", || {
        par.srv.poll(now());
        (par.srv.counters().peer_consumed == N).then_some(())
    });
    kid.finish();
    assert!(par.srv.front().is_none(), "nothing extra");
    let c = par.srv.counters();
    assert_eq!((c.pushed, c.popped, c.acked, c.queued()), (N, N, N, 0));
}

/// A producer killed at many points of its stream: each new producer resumes at the
/// first message not in the ring (between what the dead one had completed and what
/// it had started), and the server receives every message once, in order.
#[test]
fn producer_killed_mid_stream_nothing_lost_or_repeated() {
    const KILLS: usize = 8;
    const LAST: u64 = 20_000;
    let mut par = Parent::new("kill-producer");
    let mut rng = Rng::new(seed());
    let mut next = 0u64;
    let mut mid_push = 0;
    for round in 0..=KILLS {
        let end = if round == KILLS { next + LAST } else { FOREVER };
        // What the killed producer had completed and started (before the next one runs).
        let (done, intent) = (par.p.at(PUSH_DONE).load(Ordering::SeqCst), par.p.at(PUSH_INTENT).load(Ordering::SeqCst));
        let mut kid = par.spawn("producer", end, "shm");
        par.serve(&mut kid);
        let start: u64 = kid.line("START").split(' ').nth(1).unwrap().parse().unwrap();
        assert!(
            done <= start && start <= intent.max(done),
            "round {round}: resumed at {start}; the killed producer had completed {done} pushes and started {intent}"
        );
        mid_push += u32::from(start != done);
        let pop = |par: &mut Parent, next: &mut u64| {
            while let Some(m) = par.srv.front() {
                check(&m, *next, true).unwrap_or_else(|e| panic!("round {round}: {e}"));
                par.srv.pop();
                *next += 1;
            }
            par.srv.poll(now());
        };
        if round == KILLS {
            wait_until("the last messages", || {
                pop(&mut par, &mut next);
                (next >= end).then_some(())
            });
            kid.line("DONE");
            kid.finish();
            break;
        }
        let killer = kill_when(kid, par.dir.join("progress"), PUSH_DONE, start + rng.range(500, 20_000));
        while !killer.is_finished() {
            pop(&mut par, &mut next);
        }
        killer.join().unwrap();
        let r = par.until_down();
        assert!(
            matches!(r, CloseReason::PeerDied | CloseReason::RemoteClosed | CloseReason::Io { errno: 104, .. }),
            "round {round}: {r:?}"
        );
    }
    eprintln!("{KILLS} producers killed, {mid_push} of them between starting and completing a push");
    assert_eq!(par.srv.front().map(|m| m.seq), None, "nothing beyond the last producer's end");
    assert_eq!(par.srv.counters().consumed, next);
}

/// A consumer killed at many points of its stream: each new consumer resumes right
/// after the last message popped (its consumed count is the commit point), and never
/// sees a message twice.
#[test]
fn consumer_killed_mid_stream_pops_are_never_repeated() {
    const KILLS: usize = 8;
    const END: u64 = 200_000;
    let mut par = Parent::new("kill-consumer");
    let mut rng = Rng::new(seed());
    let mut pushed = 0u64;
    let mut mid_pop = 0;
    for round in 0..=KILLS {
        let (done, intent) = (par.p.at(POP_DONE).load(Ordering::SeqCst), par.p.at(POP_INTENT).load(Ordering::SeqCst));
        let mut kid = par.spawn("consumer", END, "shm");
        par.serve(&mut kid);
        let start: u64 = kid.line("START").split(' ').nth(2).unwrap().parse().unwrap();
        assert!(
            done <= start && start <= intent.max(done),
            "round {round}: resumed after {start}; the killed consumer had completed {done} pops and started {intent}"
        );
        mid_pop += u32::from(start != done);
        let push = |par: &mut Parent, pushed: &mut u64| {
            while *pushed < END && try_push(&mut par.srv, *pushed, false) {
                *pushed += 1;
            }
            par.srv.poll(now());
            assert!(!par.failed(), "round {round}: the consumer found a wrong message");
        };
        if round == KILLS {
            wait_until("the last pops", || {
                push(&mut par, &mut pushed);
                (par.p.at(POP_DONE).load(Ordering::SeqCst) >= END).then_some(())
            });
            kid.line("DONE");
            wait_until("the last acks", || {
                par.srv.poll(now());
                (par.srv.counters().peer_consumed == END).then_some(())
            });
            kid.finish();
            break;
        }
        let target = (start + rng.range(500, 20_000)).min(END - 1);
        let killer = kill_when(kid, par.dir.join("progress"), POP_DONE, target);
        while !killer.is_finished() {
            push(&mut par, &mut pushed);
        }
        killer.join().unwrap();
        assert!(!par.failed(), "round {round}: the consumer found a wrong message");
        par.until_down();
    }
    eprintln!("{KILLS} consumers killed, {mid_pop} of them between starting and completing a pop");
    assert_eq!(par.p.at(POP_DONE).load(Ordering::SeqCst), END);
    assert!(!par.failed());
}

/// A kill between storing a ring's consumed count and releasing the message (the
/// two halves of a pop) leaves the message in the ring below the count: the next
/// process releases it unread, and delivers the one after.
#[test]
fn a_kill_between_storing_the_consumed_count_and_the_release_does_not_redeliver() {
    let mut par = Parent::new("kill-pop");
    for seq in 0..10 {
        assert!(try_push(&mut par.srv, seq, false));
    }
    let mut kid = par.spawn("stall", 4, "shm");
    par.serve(&mut kid);
    wait_until("the pops", || {
        par.srv.poll(now());
        // The stall: the child told us it closed (into_parts), then it is killed.
        (!par.srv.is_connected()).then_some(())
    });
    kid.line("STALLED");
    kid.kill();
    let mut kid = par.spawn("consumer", 10, "shm");
    par.serve(&mut kid);
    let start: u64 = kid.line("START").split(' ').nth(2).unwrap().parse().unwrap();
    assert_eq!(start, 5, "the consumed count stored before the kill is the commit point");
    kid.line("DONE");
    assert!(!par.failed(), "message 4 was delivered again, or 5 was skipped");
    wait_until("the acks", || {
        par.srv.poll(now());
        (par.srv.counters().peer_consumed == 10).then_some(())
    });
    kid.finish();
}

/// The session changes medium at every new process — shared memory, TCP, shared
/// memory... chosen at random — while both sides stream to each other, and each
/// process is killed at a random point: the rings keep copies of messages that
/// were then delivered over TCP, and messages the store held are copied into the
/// rings. Each message of both streams is delivered exactly once, in order.
#[test]
fn a_client_killed_while_switching_media_delivers_each_message_once() {
    const KILLS: usize = 12;
    const END: u64 = 60_000;
    let mut par = Parent::new("kill-switch");
    let mut rng = Rng::new(seed());
    let (mut pushed, mut next) = (0u64, 0u64);
    let mut media = Vec::new();
    for round in 0..=KILLS {
        let medium = if round == 0 || rng.one_in(2) { "shm" } else { "tcp" };
        media.push(medium);
        let before: Vec<u64> = (0..4).map(|i| par.p.at(i).load(Ordering::SeqCst)).collect();
        let mut kid = par.spawn("both", if round == KILLS { END } else { FOREVER }, medium);
        let got = par.serve(&mut kid);
        assert_eq!(got, if medium == "shm" { TransportKind::Shm } else { TransportKind::Tcp });
        let start = kid.line("START");
        let mut it = start.split(' ').skip(1).map(|x| x.parse::<u64>().unwrap());
        let (push_start, pop_start) = (it.next().unwrap(), it.next().unwrap());
        for (what, start, done, intent) in
            [("push", push_start, PUSH_DONE, PUSH_INTENT), ("pop", pop_start, POP_DONE, POP_INTENT)]
        {
            let (d, i) = (before[done], before[intent]);
            assert!(d <= start && start <= i.max(d), "round {round}: {what}s resume at {start}; done {d}, started {i}");
        }
        let pump = |par: &mut Parent, pushed: &mut u64, next: &mut u64| {
            while *pushed < END && try_push(&mut par.srv, *pushed, false) {
                *pushed += 1;
            }
            while let Some(m) = par.srv.front() {
                check(&m, *next, true).unwrap_or_else(|e| panic!("round {round} over {medium}: {e}"));
                par.srv.pop();
                *next += 1;
            }
            par.srv.poll(now());
            assert!(!par.failed(), "round {round} over {medium}: the child found a wrong message");
        };
        if round == KILLS {
            wait_until("both streams", || {
                pump(&mut par, &mut pushed, &mut next);
                // The killed children pushed without an end: the stream may go past END.
                let pushed_by_child = par.p.at(PUSH_DONE).load(Ordering::SeqCst);
                (next >= END.max(pushed_by_child) && par.p.at(POP_DONE).load(Ordering::SeqCst) >= END).then_some(())
            });
            kid.line("DONE");
            wait_until("the last acks", || {
                par.srv.poll(now());
                (par.srv.counters().peer_consumed == END).then_some(())
            });
            kid.finish();
            break;
        }
        let (slot, from) = if rng.one_in(2) { (POP_DONE, pop_start) } else { (PUSH_DONE, push_start) };
        let killer = kill_when(kid, par.dir.join("progress"), slot, (from + rng.range(200, 5_000)).min(END - 1));
        while !killer.is_finished() {
            pump(&mut par, &mut pushed, &mut next);
        }
        killer.join().unwrap();
        par.until_down();
    }
    eprintln!("media: {}", media.join(" "));
    assert_eq!(next, par.p.at(PUSH_DONE).load(Ordering::SeqCst), "every message the children pushed, once");
    assert!(par.srv.front().is_none());
    assert_eq!(par.p.at(POP_DONE).load(Ordering::SeqCst), END);
    assert!(!par.failed());
}
