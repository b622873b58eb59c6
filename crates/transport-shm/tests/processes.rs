//! Separate processes: the lock of a SIGKILLed peer, two processes exchanging a
//! million checked messages each way, and producers and consumers killed with
//! SIGKILL mid-stream and replaced by new processes that re-attach and continue —
//! nothing pushed is lost or repeated, nothing popped comes back.
//!
//! The children are this test binary re-executed with `TSHM_ROLE` set: the test
//! `child` is their entry point (it does nothing when the variable is not set).

mod common;

use common::{name, TestDir};
use memmap2::MmapRaw;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tcpshm_proto::{CloseReason, Transport};
use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmDir, ShmError, ShmFile, Side};

const CAPS: Capacities = Capacities::symmetric(1 << 16);

fn cfg() -> ShmConfig {
    ShmConfig {
        heartbeat_interval: 20_000_000,
        timeout: 10_000_000_000,
        check_interval: 200_000,
        max_payload: usize::MAX,
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

fn env_u64(k: &str) -> u64 {
    env(k).parse().unwrap()
}

struct Clock(Instant);
impl Clock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Message `k`: its length, type and bytes are functions of `k`.
fn len_of(k: u64) -> usize {
    ((k * 2_654_435_761) % 301) as usize
}

fn fill(k: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 57)) as u8 ^ i as u8;
    }
}

fn check(k: u64, m: &tcpshm_proto::Msg<'_>) -> Result<(), String> {
    let mut want = [0u8; 301];
    let want = &mut want[..len_of(k)];
    fill(k, want);
    if m.msg_type != (k % 0xFEFF) as u16 || m.payload != want {
        return Err(format!("message {k}: got type {} with {} bytes, expected {k}", m.msg_type, m.payload.len()));
    }
    Ok(())
}

fn try_push<T: Transport>(t: &mut T, k: u64) -> bool {
    match t.alloc(len_of(k)).unwrap() {
        Some(buf) => {
            fill(k, buf);
            t.push((k % 0xFEFF) as u16).unwrap();
            true
        }
        None => false,
    }
}

/// A tiny shared file of two counters, `intent` and `done`, through which a child
/// reports its progress around each push or pop (a test-side record, not part of the
/// transport).
struct Progress {
    map: MmapRaw,
}

impl Progress {
    fn path(dir: &ShmDir) -> std::path::PathBuf {
        dir.dir().join(format!("{}progress", dir.prefix()))
    }

    fn open(dir: &ShmDir) -> Progress {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(Self::path(dir))
            .unwrap();
        f.set_len(4096).unwrap();
        Progress { map: MmapRaw::map_raw(&f).unwrap() }
    }

    fn at(&self, i: usize) -> &AtomicU64 {
        // SAFETY: the mapping is 4096 bytes, page-aligned, and lives as long as `self`.
        unsafe { &*(self.map.as_mut_ptr().add(i * 64) as *const AtomicU64) }
    }

    fn intent(&self) -> &AtomicU64 {
        self.at(0)
    }

    fn done(&self) -> &AtomicU64 {
        self.at(1)
    }

    /// Set by a child that found a wrong message, before it panics: a SIGKILL during
    /// its panic must not hide the failure.
    fn failed(&self) -> &AtomicU64 {
        self.at(2)
    }

    fn fail(&self, why: String) -> ! {
        self.failed().store(1, Ordering::SeqCst);
        panic!("{why}");
    }
}

fn spawn(role: &str, vars: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env("TSHM_ROLE", role)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until a line starting with `marker`; returns that line.
fn wait_for(child: &mut Child, marker: &str) -> String {
    let out = child.stdout.as_mut().unwrap();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if line.starts_with(marker) {
            return line;
        }
    }
    panic!("the child ended without printing {marker}: {:?}", child.wait());
}

/// SIGKILLs the child and checks that it was still running (a child that had
/// exited — e.g. after failing a check — fails the test).
fn kill(mut child: Child) {
    use std::os::unix::process::ExitStatusExt;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the child was supposed to be killed, it had exited: {status}");
}

fn accept(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(false).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A child's control stream and client file.
fn child_connect() -> ShmConnection<TcpStream> {
    let dir = ShmDir::new("/dev/shm", &env("TSHM_PREFIX")).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", env_u64("TSHM_PORT") as u16)).unwrap();
    sock.set_nonblocking(true).unwrap();
    sock.set_nodelay(true).unwrap();
    let file = ShmFile::open(&dir, &name("S"), &name("C")).unwrap();
    ShmConnection::client(file, sock, cfg()).unwrap()
}

/// The children's entry point (a no-op in a normal test run).
#[test]
fn child() {
    let Ok(role) = std::env::var("TSHM_ROLE") else { return };
    let dir = || ShmDir::new("/dev/shm", &env("TSHM_PREFIX")).unwrap();
    match role.as_str() {
        "hold" => {
            let _f = ShmFile::open(&dir(), &name("S"), &name("C")).unwrap();
            println!("READY");
            std::thread::sleep(Duration::from_secs(30));
        }
        "try_open" => match ShmFile::open(&dir(), &name("S"), &name("C")) {
            Err(ShmError::Busy { side: Side::Client, .. }) => println!("RESULT busy"),
            Err(e) => println!("RESULT error {e}"),
            Ok(_) => println!("RESULT opened"),
        },
        "stream" => {
            let n = env_u64("TSHM_N");
            let mut conn = child_connect();
            let clock = Clock(Instant::now());
            let (mut sent, mut got) = (0, 0);
            while sent < n || got < n {
                let mut progress = false;
                while sent < n && try_push(&mut conn, 1_000_000_000 + sent) {
                    sent += 1;
                    progress = true;
                }
                while let Some(m) = conn.front() {
                    check(got, &m).unwrap();
                    conn.pop();
                    got += 1;
                    progress = true;
                }
                conn.poll(clock.now());
                if !progress {
                    std::thread::yield_now();
                }
            }
            println!("DONE {sent} {got}");
        }
        "producer" => {
            let progress = Progress::open(&dir());
            let (mut k, end) = (env_u64("TSHM_START"), env_u64("TSHM_END"));
            let mut conn = child_connect();
            let clock = Clock(Instant::now());
            println!("READY");
            while k < end {
                progress.intent().store(k + 1, Ordering::SeqCst);
                if try_push(&mut conn, k) {
                    progress.done().store(k + 1, Ordering::SeqCst);
                    k += 1;
                } else {
                    conn.poll(clock.now());
                    std::thread::yield_now();
                }
            }
            println!("DONE");
        }
        "consumer" => {
            let progress = Progress::open(&dir());
            let end = env_u64("TSHM_END");
            let (done, intent) = (progress.done().load(Ordering::SeqCst), progress.intent().load(Ordering::SeqCst));
            let mut conn = child_connect();
            let clock = Clock(Instant::now());
            println!("READY");
            let mut next: Option<u64> = None;
            while next != Some(end) {
                let Some(m) = conn.front() else {
                    conn.poll(clock.now());
                    std::thread::yield_now();
                    continue;
                };
                let k = match next {
                    Some(k) => k,
                    // After a kill between the pop of `done` and its record, the next
                    // message is `done + 1`; otherwise it is `done`. Anything else is a
                    // loss or a repeat.
                    None if check(done, &m).is_ok() => done,
                    None if intent == done + 1 && check(done + 1, &m).is_ok() => done + 1,
                    None => progress.fail(format!(
                        "first message after re-attach is neither {done} nor (intent {intent}) {}",
                        done + 1
                    )),
                };
                if let Err(e) = check(k, &m) {
                    progress.fail(e);
                }
                progress.intent().store(k + 1, Ordering::SeqCst);
                conn.pop();
                progress.done().store(k + 1, Ordering::SeqCst);
                next = Some(k + 1);
            }
            println!("DONE");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_killed_peer_releases_its_lock_at_once() {
    let t = TestDir::new("kill-lock");
    let (s, c) = (name("S"), name("C"));
    let prefix = t.dir.prefix().to_owned();
    let file = ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap();
    assert!(!file.peer_alive().unwrap());

    let mut child = spawn("hold", &[("TSHM_PREFIX", prefix.clone())]);
    wait_for(&mut child, "READY");
    assert!(file.peer_alive().unwrap());
    assert_eq!(file.pid(Side::Client), Some(child.id()));
    // A second process cannot attach as the client while the child lives...
    let mut other = spawn("try_open", &[("TSHM_PREFIX", prefix.clone())]);
    assert_eq!(wait_for(&mut other, "RESULT"), "RESULT busy");
    other.wait().unwrap();
    // ...nor can this one.
    assert!(matches!(ShmFile::open(&t.dir, &s, &c), Err(ShmError::Busy { side: Side::Client, .. })));

    // The connection's control stream stays open (both ends here): only the lock can
    // tell that the peer died.
    let (x, _y) = common::socket_pair();
    let mut conn = ShmConnection::server(file, x, ShmConfig { check_interval: 0, ..cfg() }).unwrap();
    assert!(conn.poll(1));
    kill(child);
    assert!(!conn.peer_alive().unwrap(), "seen dead at once after SIGKILL");
    assert!(!conn.poll(2));
    assert_eq!(conn.close_reason(), Some(&CloseReason::PeerDied));
    // The client side is free again.
    let again = ShmFile::open(&t.dir, &s, &c).unwrap();
    assert_eq!(again.pid(Side::Client), Some(std::process::id()));
}

#[test]
fn two_processes_exchange_a_million_checked_messages_each_way() {
    const N: u64 = 1_000_000;
    let t = TestDir::new("million");
    let file = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = spawn(
        "stream",
        &[("TSHM_PREFIX", t.dir.prefix().to_owned()), ("TSHM_PORT", port.to_string()), ("TSHM_N", N.to_string())],
    );
    let mut conn = ShmConnection::server(file, accept(&listener), cfg()).unwrap();
    let clock = Clock(Instant::now());
    let (mut sent, mut got) = (0, 0);
    while sent < N || got < N {
        let mut progress = false;
        while sent < N && try_push(&mut conn, sent) {
            sent += 1;
            progress = true;
        }
        while let Some(m) = conn.front() {
            check(1_000_000_000 + got, &m).unwrap();
            conn.pop();
            got += 1;
            progress = true;
        }
        conn.poll(clock.now());
        if !progress {
            std::thread::yield_now();
        }
        assert!(clock.now() < 120_000_000_000, "stalled at sent {sent} got {got}");
    }
    assert_eq!(wait_for(&mut child, "DONE"), format!("DONE {N} {N}"));
    assert!(child.wait().unwrap().success());
    assert!(conn.front().is_none(), "nothing extra");
    let c = conn.counters();
    assert_eq!((c.pushed, c.popped, c.acked, c.queue_depth), (N, N, N, 0));
}

/// A pseudo-random sequence for kill points.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seed() -> u64 {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill-point seed {s:#x}");
    s
}

/// Kills `child` with SIGKILL after `delay`, from another thread, so the caller keeps
/// the stream flowing and the kill lands in the middle of the child's work.
fn kill_after(child: Child, delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        kill(child);
    })
}

#[test]
fn producer_killed_mid_stream_nothing_lost_or_repeated() {
    const KILLS: usize = 8;
    // Killed producers have an end they cannot reach before the kill; the last one
    // pushes a known number more.
    const FOREVER: u64 = 1 << 40;
    const LAST: u64 = 50_000;
    let t = TestDir::new("kill-producer");
    let file = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let progress = Progress::open(&t.dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut rng = Rng(seed());
    let clock = Clock(Instant::now());
    let mut c = ShmConnection::server(file, accept_later(), cfg()).unwrap();
    let mut next = 0u64;
    let mut mid_push = 0;
    let mut end = FOREVER;
    for round in 0..=KILLS {
        if round == KILLS {
            end = next + LAST;
        }
        let vars = [
            ("TSHM_PREFIX", t.dir.prefix().to_owned()),
            ("TSHM_PORT", port.clone()),
            ("TSHM_START", next.to_string()),
            ("TSHM_END", end.to_string()),
        ];
        let mut child = spawn("producer", &vars);
        c.reattach(accept(&listener));
        wait_for(&mut child, "READY");
        let pop = |c: &mut ShmConnection<TcpStream>, next: &mut u64| match c.front() {
            Some(m) => {
                check(*next, &m).unwrap_or_else(|e| panic!("round {round}: {e}"));
                c.pop();
                *next += 1;
            }
            None => {
                c.poll(clock.now());
                std::thread::yield_now();
            }
        };
        if round == KILLS {
            while next < end {
                pop(&mut c, &mut next);
            }
            wait_for(&mut child, "DONE");
            assert!(child.wait().unwrap().success());
            break;
        }
        // Keep popping (so the producer keeps pushing) while another thread kills it.
        let killer = kill_after(child, Duration::from_micros(500 + rng.below(10_000)));
        while !killer.is_finished() {
            pop(&mut c, &mut next);
        }
        killer.join().unwrap();
        // Everything it pushed is in the ring: drain it.
        while let Some(m) = c.front() {
            check(next, &m).unwrap_or_else(|e| panic!("round {round}, after the kill: {e}"));
            c.pop();
            next += 1;
        }
        let (done, intent) = (progress.done().load(Ordering::SeqCst), progress.intent().load(Ordering::SeqCst));
        assert!(
            done <= next && next <= intent,
            "round {round}: {next} messages arrived; the producer had completed {done} pushes and started {intent}"
        );
        mid_push += (intent != done) as u32;
        // The control part notices the death.
        while c.poll(clock.now()) {
            std::thread::yield_now();
        }
        // Which one depends on the order in which the kernel released the dead
        // process's socket (end of stream, or a reset if it had unread bytes) and
        // its lock.
        let r = c.close_reason();
        assert!(
            matches!(r, Some(CloseReason::PeerDied | CloseReason::RemoteClosed | CloseReason::Io { errno: 104, .. })),
            "{r:?}"
        );
    }
    eprintln!("{KILLS} producers killed, {mid_push} between starting and completing a push");
    assert_eq!(c.front().map(|m| m.seq), None, "nothing beyond the last producer's end");
    assert!(next > LAST + KILLS as u64 * 1_000, "the killed producers pushed little: {next}");
    assert_eq!(c.counters().popped, next);
}

/// A placeholder control stream for the first `server` call of the kill tests (each
/// round reattaches the real one).
fn accept_later() -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn consumer_killed_mid_stream_pops_are_never_repeated() {
    const END: u64 = 300_000;
    const KILLS: usize = 8;
    let t = TestDir::new("kill-consumer");
    let file = ShmFile::create_or_open(&t.dir, &name("S"), &name("C"), CAPS).unwrap();
    let progress = Progress::open(&t.dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut rng = Rng(seed());
    let clock = Clock(Instant::now());
    let mut c = ShmConnection::server(file, accept_later(), cfg()).unwrap();
    let mut pushed = 0u64;
    let mut mid_pop = 0;
    for round in 0..=KILLS {
        let vars =
            [("TSHM_PREFIX", t.dir.prefix().to_owned()), ("TSHM_PORT", port.clone()), ("TSHM_END", END.to_string())];
        let mut child = spawn("consumer", &vars);
        c.reattach(accept(&listener));
        wait_for(&mut child, "READY");
        // Before the last round, never push the last message: a consumer must not
        // finish before it is killed.
        let cap = if round == KILLS { END } else { END - 1 };
        let push = |c: &mut ShmConnection<TcpStream>, pushed: &mut u64| {
            while *pushed < cap && try_push(c, *pushed) {
                *pushed += 1;
            }
            c.poll(clock.now());
            std::thread::yield_now();
        };
        if round == KILLS {
            while pushed < END || c.counters().queue_depth > 0 {
                push(&mut c, &mut pushed);
                assert_eq!(progress.failed().load(Ordering::SeqCst), 0, "the last consumer found a wrong message");
            }
            wait_for(&mut child, "DONE");
            assert!(child.wait().unwrap().success(), "the last consumer failed its checks");
            assert_eq!(progress.failed().load(Ordering::SeqCst), 0);
            break;
        }
        let killer = kill_after(child, Duration::from_micros(500 + rng.below(10_000)));
        while !killer.is_finished() {
            push(&mut c, &mut pushed);
        }
        killer.join().unwrap();
        assert_eq!(progress.failed().load(Ordering::SeqCst), 0, "round {round}: the consumer found a wrong message");
        mid_pop += (progress.intent().load(Ordering::SeqCst) != progress.done().load(Ordering::SeqCst)) as u32;
    }
    eprintln!("{KILLS} consumers killed, {mid_pop} between starting and completing a pop");
    assert_eq!(c.counters().acked, END);
    assert_eq!(progress.done().load(Ordering::SeqCst), END);
}
