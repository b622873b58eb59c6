//! The crash test: a writer child process (this binary, re-executed with
//! `TCPSHM_PERSIST_CRASH_CHILD` set) runs a random mix of push, batch push, abandoned
//! alloc, ack, `ack_beyond`, session-word, consume, send-cursor and epoch-reset
//! operations on a store, recording in
//! a shared operation log each operation before it starts and after it completes.
//! The parent kills it with SIGKILL at hundreds of random moments (after random
//! sleeps from microseconds to milliseconds, or after k logged operations), reopens the
//! store and checks that:
//!
//! * the store opens;
//! * its counters equal the state after the last completed operation, or after the
//!   one in flight when it was killed — never anything else;
//! * every queued message (seq `acked..next_seq`, no gaps) has exactly the type, ack
//!   and bytes the child's deterministic generator gave that seq.
//!
//! Each next child continues from the reopened state. Some rounds run with
//! `Durability::Sync` so kills also land inside `msync`.
//!
//! Environment: `TCPSHM_CRASH_SEED` (parent seed), `TCPSHM_CRASH_KILLS` (default 500).

mod common;

use common::{message, name, Rng, TempDir};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tcpshm_persist::{Durability, OpenOutcome, Options, SessionWord, Store};

const CHILD_ENV: &str = "TCPSHM_PERSIST_CRASH_CHILD";
const CAP: usize = 1 << 16;

fn main() {
    if cfg!(miri) {
        eprintln!("crash test: not run under miri (it spawns and kills processes, maps and locks real files)");
        return;
    }
    match std::env::var(CHILD_ENV) {
        Ok(dir) => child(Path::new(&dir)),
        Err(_) => parent(),
    }
}

fn opts(sync: bool) -> Options {
    let d = if sync { Durability::Sync { every: 4 } } else { Durability::Process };
    Options::new(CAP).durability(d)
}

fn epoch_name(e: u64) -> tcpshm_proto::Name {
    name(&format!("epoch{e}"))
}

/// Salt of the message generator for epoch `e` (so a reset session's seq 0 differs).
fn salt(e: u64) -> u64 {
    e.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xC0FFEE
}

fn epoch_of(s: &Store) -> u64 {
    s.epoch().expect("epoch set").as_str()["epoch".len()..].parse().unwrap()
}

// ---- the operation log --------------------------------------------------------

/// The child's report, in a shared file mapping rather than a pipe: writing it costs a
/// few stores, not a system call, so the child spends its time in store operations and
/// the kills land inside them (a pipe write per operation would make the child spend
/// >95% of its time in `write`, where a kill waits for the syscall boundary).
///
/// Layout (u64 words): header `[status, epoch, acked, next_seq, consumed, send_cursor,
/// full, session]` (status 1 once written; full 1 once the child filled the log and
/// stopped), then 32-byte records `[kind << 8 | status, a, b, 0]` with status 1 =
/// began, 2 = completed, 0 = never written.
///
/// A child that fills the log stops before its next operation and waits for the kill
/// (a starved parent can sleep far longer than it asked): the kill then lands between
/// operations, which is checked like any other, and counted.
struct Log {
    map: memmap2::MmapMut,
    next: usize,
    /// Records this round's log holds (`RECORDS`, or a few to test a full log).
    records: usize,
}

/// 64 MiB, sparse: 2 M operations per round (a round's child typically does 10^4).
const LOG_BYTES: usize = 64 << 20;
/// Records that fit after the 8-word header.
const RECORDS: usize = (LOG_BYTES / 8 - 8) / 4;
/// Every this many rounds, the log holds only `SMALL_LOG` records and the parent
/// kills the child once it filled them: the full-log path is exercised every run.
const SMALL_LOG_EVERY: usize = 25;
const SMALL_LOG: usize = 50;
const FULL_WORD: usize = 6;
const SESSION_WORD: usize = 7;
const BEGAN: u64 = 1;
const DONE: u64 = 2;

impl Log {
    fn create(path: &Path, records: usize) -> Log {
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
        f.set_len(LOG_BYTES as u64).unwrap();
        // SAFETY: a private test file, alive as long as the mapping.
        Log { map: unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap(), next: 0, records }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < LOG_BYTES / 8);
        // SAFETY: in bounds, 8-aligned (page-aligned mapping); accessed only atomically.
        unsafe { &*(self.map.as_ptr().add(8 * i) as *const AtomicU64) }
    }

    fn header(&self, v: [u64; 5], session: u64) {
        for (i, x) in v.iter().enumerate() {
            self.word(1 + i).store(*x, Ordering::Relaxed);
        }
        self.word(SESSION_WORD).store(session, Ordering::Relaxed);
        self.word(0).store(1, Ordering::Release);
    }

    fn read_header(&self) -> Option<([u64; 5], u64)> {
        (self.word(0).load(Ordering::Acquire) == 1).then(|| {
            (
                std::array::from_fn(|i| self.word(1 + i).load(Ordering::Relaxed)),
                self.word(SESSION_WORD).load(Ordering::Relaxed),
            )
        })
    }

    /// Records that an operation begins; nothing of it happens before this is visible.
    fn begin(&mut self, kind: u8, a: u64, b: u64) -> usize {
        if self.next == self.records {
            // Full: stop before the operation and wait for the kill.
            self.word(FULL_WORD).store(1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let r = 8 + 4 * self.next;
        self.next += 1;
        self.word(r + 1).store(a, Ordering::Relaxed);
        self.word(r + 2).store(b, Ordering::Relaxed);
        self.word(r).store((kind as u64) << 8 | BEGAN, Ordering::Release);
        // No store of the operation may become visible before the record.
        fence(Ordering::SeqCst);
        r
    }

    /// Records that the operation completed (after all its stores).
    fn done(&self, r: usize) {
        fence(Ordering::SeqCst);
        let w = self.word(r);
        w.store(w.load(Ordering::Relaxed) & !0xFF | DONE, Ordering::Release);
    }

    /// Whether the child filled the log and stopped.
    fn full(&self) -> bool {
        self.word(FULL_WORD).load(Ordering::Acquire) == 1
    }

    /// Record `i`: (kind, a, b, status); status 0 = none (also past the end).
    fn record(&self, i: usize) -> (u8, u64, u64, u64) {
        if i >= self.records {
            return (0, 0, 0, 0);
        }
        let r = 8 + 4 * i;
        let w = self.word(r).load(Ordering::Acquire);
        ((w >> 8) as u8, self.word(r + 1).load(Ordering::Relaxed), self.word(r + 2).load(Ordering::Relaxed), w & 0xFF)
    }
}

// ---- the child ------------------------------------------------------------------

fn child(dir: &Path) -> ! {
    let seed: u64 = std::env::var("TCPSHM_PERSIST_CRASH_CHILD_SEED").unwrap().parse().unwrap();
    let sync = std::env::var("TCPSHM_PERSIST_CRASH_CHILD_SYNC").is_ok();
    let log_path = std::env::var("TCPSHM_PERSIST_CRASH_CHILD_LOG").unwrap();
    let records: usize = std::env::var("TCPSHM_PERSIST_CRASH_CHILD_RECORDS").unwrap().parse().unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(log_path).unwrap();
    // SAFETY: the parent made the file LOG_BYTES long and does not touch it until we die.
    let mut log = Log { map: unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap(), next: 0, records };
    let (mut s, outcome) = Store::open(dir, name("writer"), name("reader"), &opts(sync), None, 0).expect("child open");
    assert_eq!(outcome, OpenOutcome::Opened);
    let mut e = epoch_of(&s);
    log.header(
        [e, s.first_unacked(), s.next_seq(), s.consumed(), s.send_cursor()],
        s.session_word(SessionWord::Pushed),
    );
    let mut rng = Rng::new(seed);
    let mut next = || rng.next();
    loop {
        let r = next() % 1000;
        let depth = s.queue_depth();
        if r < 400 {
            let seq = s.next_seq();
            let (t, ack, bytes) = message(salt(e), seq);
            match s.alloc(bytes.len()).unwrap() {
                Some(buf) => {
                    buf.copy_from_slice(&bytes);
                    let rec = log.begin(b'P', seq, 0);
                    assert_eq!(s.push(t, ack).unwrap(), seq);
                    log.done(rec);
                }
                None => {
                    let upto = s.next_seq();
                    let rec = log.begin(b'A', upto, 0);
                    s.ack(upto).unwrap();
                    log.done(rec);
                }
            }
        } else if r < 500 {
            // A batch: staged frames are invisible until the one publish.
            let n = 2 + next() % 7;
            let first = s.next_seq();
            let mut k = 0;
            while k < n {
                let (t, ack, bytes) = message(salt(e), first + k);
                let Some(buf) = s.alloc(bytes.len()).unwrap() else { break };
                buf.copy_from_slice(&bytes);
                assert_eq!(s.push_more(t, ack).unwrap(), first + k);
                k += 1;
            }
            if k > 0 && next() % 4 == 0 {
                // An aborted batch: never visible, its seqs given back.
                assert_eq!(s.discard_staged(), k);
                assert_eq!((s.next_seq(), s.staged()), (first, 0));
            } else if k > 0 {
                let rec = log.begin(b'M', first, k);
                s.publish().unwrap();
                log.done(rec);
            }
        } else if r < 550 {
            // Alloc, scribble, never push: must never become visible.
            if let Some(buf) = s.alloc((next() % 500) as usize).unwrap() {
                buf.fill(0xEE);
            }
        } else if r < 565 {
            // The peer consumed seqs carried by another medium.
            let upto = s.next_seq() + 1 + next() % 5;
            let rec = log.begin(b'B', upto, 0);
            s.ack_beyond(upto).unwrap();
            log.done(rec);
        } else if r < 580 {
            let v = next() >> 1;
            let rec = log.begin(b'W', v, 0);
            s.set_session_word(SessionWord::Pushed, v);
            log.done(rec);
        } else if r < 800 {
            let upto = s.first_unacked() + next() % (depth + 1);
            let rec = log.begin(b'A', upto, 0);
            s.ack(upto).unwrap();
            log.done(rec);
        } else if r < 900 {
            let to = s.consumed() + 1 + next() % 3;
            let rec = log.begin(b'C', to, 0);
            s.set_consumed(to).unwrap();
            log.done(rec);
        } else if r < 999 || next() % 64 != 0 {
            let to = s.first_unacked() + next() % (depth + 1);
            let rec = log.begin(b'S', to, 0);
            s.set_send_cursor(to).unwrap();
            log.done(rec);
        } else {
            let rec = log.begin(b'R', e + 1, 0);
            s.reset_epoch(epoch_name(e + 1), e + 1).unwrap();
            e += 1;
            log.done(rec);
        }
    }
}

// ---- the parent -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    epoch: u64,
    acked: u64,
    next_seq: u64,
    consumed: u64,
    send_cursor: u64,
    session: u64,
}

impl State {
    fn apply(mut self, (kind, a, b): (u8, u64, u64)) -> State {
        match kind {
            b'P' => {
                assert_eq!(a, self.next_seq, "push seq");
                self.next_seq += 1;
            }
            b'M' => {
                assert_eq!(a, self.next_seq, "batch first seq");
                self.next_seq += b;
            }
            b'A' => self.acked = self.acked.max(a),
            b'B' => {
                assert!(a > self.next_seq, "ack_beyond beyond the queue");
                (self.acked, self.next_seq) = (a, a);
            }
            b'W' => self.session = a,
            b'C' => self.consumed = a,
            b'S' => self.send_cursor = a,
            b'R' => self = State { epoch: a, acked: 0, next_seq: 0, consumed: 0, send_cursor: 0, session: 0 },
            k => panic!("unknown op {k}"),
        }
        self
    }
}

/// Opens the store, checks every queued message against the generator, returns its state.
fn observe(dir: &Path) -> State {
    let (mut s, outcome) = Store::open(dir, name("writer"), name("reader"), &opts(false), None, 0)
        .unwrap_or_else(|e| panic!("the store does not open after a kill: {e}"));
    assert_eq!(outcome, OpenOutcome::Opened);
    let st = State {
        epoch: epoch_of(&s),
        acked: s.first_unacked(),
        next_seq: s.next_seq(),
        consumed: s.consumed(),
        send_cursor: s.send_cursor(),
        session: s.session_word(SessionWord::Pushed),
    };
    let mut c = s.cursor_at(st.acked).unwrap();
    let mut seq = st.acked;
    while let Some((f, next)) = s.frame(c).unwrap() {
        assert_eq!(f.seq, seq, "gap in the queue");
        let (t, ack, bytes) = message(salt(st.epoch), seq);
        assert_eq!((f.msg_type, f.ack), (t, ack), "header of message {seq}");
        assert!(f.payload == bytes.as_slice(), "bytes of message {seq} differ");
        seq += 1;
        c = next;
    }
    assert_eq!(seq, st.next_seq, "queue ends early");
    st
}

#[derive(Debug, Default)]
struct Stats {
    kills: usize,
    ops: usize,
    /// Per operation kind: kills inside it that showed the old state, the new state.
    in_flight: std::collections::BTreeMap<char, (usize, usize)>,
    between_ops: usize,
    before_first_op: usize,
    /// Rounds whose child filled its log and stopped before the kill.
    log_full: usize,
}

fn parent() {
    let seed: u64 = std::env::var("TCPSHM_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_2024);
    let kills: usize = std::env::var("TCPSHM_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let dir = TempDir::new("crash");
    let log_dir = TempDir::new("crash-log");
    let log_path = log_dir.path().join("ops.log");
    let exe = std::env::current_exe().unwrap();
    let (s, o) = Store::open(dir.path(), name("writer"), name("reader"), &opts(false), Some(epoch_name(0)), 0).unwrap();
    assert_eq!(o, OpenOutcome::Created);
    drop(s);

    let mut state = observe(dir.path());
    let mut rng = Rng::new(seed);
    let mut rnd = |m: u64| rng.below(m);
    let mut stats = Stats::default();
    let started = Instant::now();
    for round in 0..kills {
        let sync = round % 8 == 7;
        let small = round % SMALL_LOG_EVERY == SMALL_LOG_EVERY - 1;
        let log = Log::create(&log_path, if small { SMALL_LOG } else { RECORDS });
        let mut cmd = Command::new(&exe);
        cmd.env(CHILD_ENV, dir.path())
            .env("TCPSHM_PERSIST_CRASH_CHILD_SEED", rnd(u64::MAX).to_string())
            .env("TCPSHM_PERSIST_CRASH_CHILD_LOG", &log_path)
            .env("TCPSHM_PERSIST_CRASH_CHILD_RECORDS", log.records.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if sync {
            cmd.env("TCPSHM_PERSIST_CRASH_CHILD_SYNC", "1");
        }
        let mut child = cmd.spawn().unwrap();
        // When to kill: after the child logged k operations, or after a random sleep
        // (short ones land in its start-up and open, long ones deep in its operations).
        match rnd(10) {
            // A small log: kill once the child filled it (it then waits for the kill).
            _ if small => {
                while !log.full() {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            0..=4 => {
                let k = rnd(20_000) as usize;
                let deadline = Instant::now() + Duration::from_millis(200);
                while log.record(k).3 == 0 && Instant::now() < deadline {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            5..=6 => std::thread::sleep(Duration::from_micros(rnd(2000))),
            _ => std::thread::sleep(Duration::from_micros(2000 + rnd(8000))),
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.code().is_some() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("round {round}: the child exited by itself ({status}) before the kill:\n{err}");
        }
        stats.kills += 1;

        // Replay the child's log on the model.
        if let Some((h, session)) = log.read_header() {
            let seen = State { epoch: h[0], acked: h[1], next_seq: h[2], consumed: h[3], send_cursor: h[4], session };
            assert_eq!(seen, state, "round {round}: the child opened another state than the parent saw");
        }
        let mut done = state;
        let mut in_flight = None;
        let mut n = 0;
        loop {
            let (kind, a, b, status) = log.record(n);
            match status {
                0 => break,
                DONE => {
                    done = done.apply((kind, a, b));
                    stats.ops += 1;
                }
                BEGAN => {
                    in_flight = Some((kind, a, b));
                    assert_eq!(log.record(n + 1).3, 0, "round {round}: an operation began before the last completed");
                    break;
                }
                s => panic!("round {round}: bad log status {s}"),
            }
            n += 1;
        }
        if log.full() {
            assert_eq!((n, in_flight), (log.records, None), "round {round}: a full log ends between operations");
            stats.log_full += 1;
        }
        if small {
            assert!(log.full(), "round {round}: the child did not fill its small log");
        }
        let files = dir.files();
        if files.len() > 1 {
            assert_eq!(files, [".writer@reader.tcpshm.tmp", "writer@reader.tcpshm"], "round {round}");
        }
        let seen = observe(dir.path());
        match in_flight {
            None => {
                assert_eq!(seen, done, "round {round}: killed between operations after {n} of them");
                if n == 0 {
                    stats.before_first_op += 1;
                } else {
                    stats.between_ops += 1;
                }
            }
            Some(op) => {
                let after = done.apply(op);
                let counter = stats.in_flight.entry(op.0 as char).or_insert((0, 0));
                if seen == done {
                    counter.0 += 1;
                } else if seen == after {
                    counter.1 += 1;
                } else {
                    panic!(
                        "round {round}: killed in `{}`: store shows {seen:?}, expected {done:?} or {after:?}",
                        op.0 as char
                    );
                }
            }
        }
        state = seen;
    }
    eprintln!(
        "crash test: {} kills in {:.1} s (seed {seed:#x}), {} completed operations replayed; killed between \
         operations: {} (of which {} after the child filled its log), before the first: {}; killed inside an \
         operation (kind: showed old state, new state): {:?}; final state {:?}",
        stats.kills,
        started.elapsed().as_secs_f64(),
        stats.ops,
        stats.between_ops,
        stats.log_full,
        stats.before_first_op,
        stats.in_flight,
        state,
    );
    assert_eq!(stats.kills, kills);
    assert!(stats.log_full >= kills / SMALL_LOG_EVERY, "{stats:?}");
    let _ = std::io::stderr().flush();
}
