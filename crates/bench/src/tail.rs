//! Tail attribution (`--trace-tail`): for the slowest round trips of an echo window,
//! what ran on each side while they waited, so that every tail has a named cause.
//!
//! Both processes read the same invariant time-stamp counter (`rdtsc`: one clock for
//! every core of the machine), so their records line up without conversion:
//!
//! * the **server** process (its loop calling the control part's and the group's
//!   `poll` — what `Server::poll` does — timed separately) keeps, in memory allocated
//!   and touched up front, every loop iteration that was slow or came after a gap (the
//!   thread did not run), with the time spent in the control part and in the group,
//!   and the time each message was handed to the handler;
//! * the **client** (this process) keeps, per round trip, when it sent, when the echo
//!   was back, its slowest `poll` call and its longest stretch between two polls, and
//!   whether a heartbeat went out or came in during it (its `Counters`);
//! * both sides, after something slow only (so the hot loop makes no call for it),
//!   **look**, with one `read` of a group of kernel counters on their thread
//!   ([`crate::syscalls::NamedCalls`]; `getrusage` where the kernel refuses them):
//!   whether the thread was switched out — a slow stretch that holds a switch is
//!   charged to the kernel running another task on that cpu, not to the code that was
//!   running — and which system calls ran since the last look: `epoll_wait` is a
//!   readiness check, `recvfrom` a control-stream read, `sendto`/`write` a heartbeat
//!   or an ack, `fcntl` the peer-liveness lock check. A look costs a microsecond or two
//!   between iterations; its time is recorded, and a message that waited through it is
//!   charged to the bench
//!   ([`Cause::BenchInstrumentation`]). Only an iteration or a gap beyond [`LOOK_NS`]
//!   is looked into (a look costs more than a shorter one); shorter slow iterations
//!   are recorded without a look.
//!
//! A round trip's time splits at the moment the server handled the message: the way
//! out (client push → server handler) and the way back (handler → client's `front`).
//! Its excess over the window's median of each half is charged to the longest stretch
//! the records show there ([`Cause`]), with the system calls that ran in it. Work
//! without a system call inside a slow group poll (the timer slice, the login inbox,
//! dispatch) shows as "no system call": which of them it was needs the library's work
//! counters. Calls of fast iterations that were not looked into are counted at the
//! next look: a name is that iteration's or a recent fast one's.

use crate::clock::{ticks, Clock};
use crate::common::fmt_num;
use crate::syscalls::{mask_names, NamedCalls, SWITCHED_BIT};
use std::io::{Read, Write};
use std::path::Path;

/// Message type that starts a traced window (echoed; the server forgets its records).
pub const TRACE_START: u16 = 3;
/// Message type that ends it: payload = first and last traced seq; the server writes
/// its records to its trace file, then announces `dumped` (and echoes it).
pub const TRACE_DUMP: u16 = 4;

/// Slots of the server's per-message log (indexed by seq modulo this): the most round
/// trips a traced window holds.
pub const HANDLED_SLOTS: usize = 1 << 21;
/// Iterations the server keeps at most per window.
pub const MAX_ITERS: usize = 1 << 21;
/// A slow iteration, or a gap, is looked into only beyond this (ns).
pub const LOOK_NS: f64 = 1_000.0;
/// The calls of a stretch nobody looked into.
pub const NOT_LOOKED: u64 = 1 << 63;

/// Context switches of the calling thread so far (voluntary and involuntary): one
/// `getrusage`, called only after something slow was seen.
pub fn switches() -> u64 {
    // SAFETY: `getrusage` only writes the `rusage` it is given, which is a plain C
    // struct for which all-zero bytes are valid.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut u) != 0 {
            return 0;
        }
        (u.ru_nvcsw + u.ru_nivcsw) as u64
    }
}

/// A thread's looks: context switches and named system calls since the last one.
pub struct Looks {
    switches: u64,
    named: Option<NamedCalls>,
}

impl Looks {
    /// Looks of the calling thread (without system-call names where the kernel
    /// refuses the counters).
    pub fn this_thread() -> Looks {
        Looks { switches: switches(), named: NamedCalls::this_thread().ok() }
    }

    /// Whether the thread was switched out, and the named calls it made (a bit each,
    /// or [`NOT_LOOKED`] without counters), since the last look: one `read` of the
    /// counters (with `getrusage` only where the kernel refuses them).
    pub fn look(&mut self) -> (bool, u64) {
        match self.named.as_mut() {
            Some(n) => {
                let m = n.moved();
                (m & SWITCHED_BIT != 0, m & !SWITCHED_BIT)
            }
            None => {
                let now = switches();
                let switched = now != self.switches;
                self.switches = now;
                (switched, NOT_LOOKED)
            }
        }
    }
}

/// One iteration of the server's loop that was slow or followed a gap, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iter {
    /// End of the previous iteration's work.
    pub prev_end: u64,
    /// End of the bench's look after the previous iteration (`prev_end` if none): the
    /// loop's own gap is `instr_end..start`.
    pub instr_end: u64,
    /// Start of this one (before the control part).
    pub start: u64,
    /// End of the control part (start of the group's poll).
    pub ctrl_end: u64,
    /// End of the group's poll.
    pub end: u64,
    /// Messages handled in it.
    pub msgs: u64,
    /// The thread was switched out since the previous look (1) or not (0).
    pub switched: u64,
    /// The named system calls since the previous look, or [`NOT_LOOKED`].
    pub calls: u64,
}

/// The server side's records (see the module docs).
pub struct ServerTrace {
    slow: u64,
    look_after: u64,
    looks: Looks,
    iters: Vec<Iter>,
    handled: Vec<u64>,
    prev_end: u64,
    instr_end: u64,
    /// Messages handled in the current iteration.
    pub msgs: u64,
}

impl ServerTrace {
    /// Records iterations longer than `slow` ticks, or after a gap longer than that;
    /// `look_after`: [`LOOK_NS`] in ticks.
    pub fn new(slow: u64, look_after: u64) -> ServerTrace {
        let mut iters = Vec::with_capacity(MAX_ITERS);
        // Touch every page now: no page fault inside a traced window.
        iters.resize(MAX_ITERS, Iter::default());
        let now = ticks();
        let mut t = ServerTrace {
            slow,
            look_after,
            looks: Looks::this_thread(),
            iters,
            handled: vec![1; HANDLED_SLOTS],
            prev_end: now,
            instr_end: now,
            msgs: 0,
        };
        t.clear();
        t
    }

    /// Forgets what was recorded (a new window).
    pub fn clear(&mut self) {
        self.iters.clear();
        self.handled.iter_mut().for_each(|t| *t = 0);
    }

    /// The handler got message `seq` now.
    #[inline]
    pub fn handled(&mut self, seq: u64) {
        self.handled[seq as usize % HANDLED_SLOTS] = ticks();
        self.msgs += 1;
    }

    /// One iteration ended: `start`, `ctrl_end`, `end` as read around the two parts.
    #[inline]
    pub fn iteration(&mut self, start: u64, ctrl_end: u64, end: u64) {
        let interesting = end - start > self.slow || start - self.instr_end > self.slow;
        if interesting && self.iters.len() < MAX_ITERS {
            let look = end - start > self.look_after || start - self.instr_end > self.look_after;
            let (switched, calls) = if look { self.looks.look() } else { (false, NOT_LOOKED) };
            self.iters.push(Iter {
                prev_end: self.prev_end,
                instr_end: self.instr_end,
                start,
                ctrl_end,
                end,
                msgs: self.msgs,
                switched: u64::from(switched),
                calls,
            });
            self.prev_end = end;
            // The look above is the bench's, not the loop's.
            self.instr_end = if look { ticks() } else { end };
        } else {
            self.prev_end = end;
            self.instr_end = end;
        }
        self.msgs = 0;
    }

    /// Writes the records and the handling times of seqs `first..=last` to `path`.
    pub fn dump(&self, path: &Path, first: u64, last: u64) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(24 + self.iters.len() * 64 + 8 * (last - first + 1) as usize);
        out.extend_from_slice(&(self.iters.len() as u64).to_le_bytes());
        for it in &self.iters {
            for x in [it.prev_end, it.instr_end, it.start, it.ctrl_end, it.end, it.msgs, it.switched, it.calls] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&last.to_le_bytes());
        for seq in first..=last {
            out.extend_from_slice(&self.handled[seq as usize % HANDLED_SLOTS].to_le_bytes());
        }
        std::fs::File::create(path)?.write_all(&out)
    }
}

/// What the server wrote: its iterations and, per traced seq, when it was handled.
#[derive(Debug, Clone, Default)]
pub struct ServerRecords {
    /// Slow iterations and iterations after a gap, in time order.
    pub iters: Vec<Iter>,
    /// The first traced seq.
    pub first: u64,
    /// When each seq from `first` on was handled (0: not seen).
    pub handled: Vec<u64>,
}

impl ServerRecords {
    /// Reads a file written by [`ServerTrace::dump`].
    pub fn read(path: &Path) -> std::io::Result<ServerRecords> {
        let mut b = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut b)?;
        let mut at = 0usize;
        let mut u = || {
            let v = b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")));
            at += 8;
            v.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short trace file"))
        };
        let n = u()? as usize;
        let mut iters = Vec::with_capacity(n);
        for _ in 0..n {
            iters.push(Iter {
                prev_end: u()?,
                instr_end: u()?,
                start: u()?,
                ctrl_end: u()?,
                end: u()?,
                msgs: u()?,
                switched: u()?,
                calls: u()?,
            });
        }
        let first = u()?;
        let last = u()?;
        let mut handled = Vec::with_capacity((last + 1 - first) as usize);
        for _ in first..=last {
            handled.push(u()?);
        }
        Ok(ServerRecords { iters, first, handled })
    }
}

/// One traced round trip on the client's side, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rt {
    /// The seq in the payload.
    pub seq: u64,
    /// Before `alloc`.
    pub t0: u64,
    /// After `push` (over TCP the push writes).
    pub pushed: u64,
    /// The echo was at `front`.
    pub t1: u64,
    /// `poll` calls.
    pub polls: u32,
    /// The slowest `poll` call's length.
    pub slow_poll: u64,
    /// The longest stretch between the end of one `poll` and the start of the next
    /// (or from the push to the first poll): the loop did not run.
    pub gap: u64,
    /// Heartbeats this side sent during the round trip.
    pub hb_sent: u64,
    /// Heartbeats this side received during it.
    pub hb_received: u64,
    /// The client was switched out during it (looked at only for slow round trips).
    pub switched: bool,
    /// The named system calls the client made during it (looked at only for slow
    /// round trips; else [`NOT_LOOKED`]).
    pub calls: u64,
}

/// A traced echo round trip over `t` (alloc, push, poll until the echo): the work of
/// [`crate::ours::ping`], with its timings recorded. A round trip longer than `slow`
/// ticks is looked into afterwards (switches, system calls).
#[inline]
pub fn traced_ping<T: tcpshm_proto::Transport>(
    t: &mut T,
    msg: &[u8],
    seq: u64,
    clock: &Clock,
    slow: u64,
    looks: &mut Looks,
) -> (bool, Rt) {
    let before = t.counters();
    let t0 = ticks();
    let now = clock.at(t0);
    loop {
        match t.alloc(msg.len()) {
            Ok(Some(buf)) => {
                buf.copy_from_slice(msg);
                break;
            }
            Ok(None) => {
                t.poll(now);
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }
    t.push(crate::ours::DATA).expect("push");
    let pushed = ticks();
    let (mut polls, mut slow_poll, mut gap, mut prev) = (0u32, 0u64, 0u64, pushed);
    let ok = loop {
        if let Some(m) = t.front() {
            let ok = m.msg_type == crate::ours::DATA && m.payload == msg;
            t.pop();
            break ok;
        }
        let a = ticks();
        let up = t.poll(now);
        let b = ticks();
        assert!(up, "connection lost during echo: {:?}", t.close_reason());
        polls += 1;
        slow_poll = slow_poll.max(b - a);
        gap = gap.max(a - prev);
        prev = b;
    };
    let t1 = ticks();
    let after = t.counters();
    let (switched, calls) = if t1 - t0 > slow { looks.look() } else { (false, NOT_LOOKED) };
    let rt = Rt {
        seq,
        t0,
        pushed,
        t1,
        polls,
        slow_poll,
        gap,
        hb_sent: after.heartbeats_sent - before.heartbeats_sent,
        hb_received: after.heartbeats_received - before.heartbeats_received,
        switched,
        calls,
    };
    (ok, rt)
}

/// Why a slow round trip was slow (the longest stretch found in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// The kernel switched the server's thread out (another task ran on its cpu)
    /// while the message waited for it.
    ServerSwitchedOut,
    /// The kernel switched the client out during the round trip.
    ClientSwitchedOut,
    /// Way out: the server's thread did not run between two iterations, without a
    /// context switch: an interrupt, or the hypervisor.
    ServerNotRunning,
    /// Way out: the server was in its control part (`Control::poll`: listeners,
    /// pending logins).
    ServerControl,
    /// Way out: the server was in a group poll that took long.
    ServerGroup,
    /// Way back: the server's iteration went on long after the handler (over TCP the
    /// replies are written at the end of the group's poll).
    ServerAfterHandler,
    /// The client's push took long (over TCP it writes).
    ClientPush,
    /// Way back: one client `poll` call took long, with a heartbeat sent or received
    /// in the round trip.
    ClientPollHeartbeat,
    /// Way back: one client `poll` call took long.
    ClientPoll,
    /// Way back: the client's loop did not run between two polls, without a context
    /// switch: an interrupt, or the hypervisor.
    ClientNotRunning,
    /// The message waited while the bench looked into the previous slow iteration
    /// (attribution mode only).
    BenchInstrumentation,
    /// Nothing recorded explains it (the medium itself, or a stretch shorter than
    /// what is recorded).
    Unattributed,
    /// The server never recorded handling the message.
    NotHandled,
}

impl Cause {
    /// Every cause, in report order.
    pub const ALL: [Cause; 13] = [
        Cause::ServerSwitchedOut,
        Cause::ClientSwitchedOut,
        Cause::ServerNotRunning,
        Cause::ServerControl,
        Cause::ServerGroup,
        Cause::ServerAfterHandler,
        Cause::ClientPush,
        Cause::ClientPollHeartbeat,
        Cause::ClientPoll,
        Cause::ClientNotRunning,
        Cause::BenchInstrumentation,
        Cause::Unattributed,
        Cause::NotHandled,
    ];

    /// Stable key.
    pub fn key(self) -> &'static str {
        match self {
            Cause::ServerSwitchedOut => "server_switched_out",
            Cause::ClientSwitchedOut => "client_switched_out",
            Cause::ServerNotRunning => "server_not_running",
            Cause::ServerControl => "server_control_poll",
            Cause::ServerGroup => "server_group_poll",
            Cause::ServerAfterHandler => "server_after_handler",
            Cause::ClientPush => "client_push",
            Cause::ClientPollHeartbeat => "client_poll_heartbeat",
            Cause::ClientPoll => "client_poll",
            Cause::ClientNotRunning => "client_not_running",
            Cause::BenchInstrumentation => "bench_instrumentation",
            Cause::Unattributed => "unattributed",
            Cause::NotHandled => "not_handled",
        }
    }

    /// In words.
    pub fn text(self) -> &'static str {
        match self {
            Cause::ServerSwitchedOut => "server thread switched out by the kernel (another task on its cpu)",
            Cause::ClientSwitchedOut => "client switched out by the kernel (another task on its cpu)",
            Cause::ServerNotRunning => "server not running between iterations, no switch (interrupt, hypervisor)",
            Cause::ServerControl => "server in Control::poll (listeners, pending logins) on the way out",
            Cause::ServerGroup => "server in a slow Group::poll on the way out",
            Cause::ServerAfterHandler => "server iteration ran on after the handler (reply flushed at its end)",
            Cause::ClientPush => "client push took long (over TCP: its write)",
            Cause::ClientPollHeartbeat => "client poll took long, a heartbeat sent or received",
            Cause::ClientPoll => "client poll took long (SHM: the control check; TCP: a read)",
            Cause::ClientNotRunning => "client loop not running between two polls, no switch (interrupt, hypervisor)",
            Cause::BenchInstrumentation => "the bench's own look after a slow server iteration (attribution mode)",
            Cause::Unattributed => "not attributed (nothing recorded explains it)",
            Cause::NotHandled => "no server record of the message",
        }
    }
}

/// One slow round trip, explained.
#[derive(Debug, Clone, Copy)]
pub struct Explained {
    /// The round trip.
    pub rt: Rt,
    /// Its length in ns.
    pub ns: f64,
    /// The cause charged.
    pub cause: Cause,
    /// The length of the stretch found (ns).
    pub evidence_ns: f64,
    /// Whether it is beyond the window's p99.9 (else beyond its p99 only).
    pub beyond_p999: bool,
    /// The named system calls of the stretch charged, or [`NOT_LOOKED`].
    pub calls: u64,
}

/// The attribution of a traced window.
#[derive(Debug, Clone)]
pub struct Attribution {
    /// Round trips traced.
    pub count: usize,
    /// The window's p50 (ns).
    pub p50: f64,
    /// p99 (ns).
    pub p99: f64,
    /// p99.9 (ns).
    pub p999: f64,
    /// Median way out and way back (ns).
    pub halves: (f64, f64),
    /// Every round trip beyond p99, explained.
    pub slow: Vec<Explained>,
    /// Server iterations recorded, and of them after a gap.
    pub server_iters: (usize, usize),
}

/// Explains the round trips of a window beyond its p99; `slow_server_ns` is the
/// server's recording threshold.
pub fn attribute(rts: &[Rt], server: &ServerRecords, clock: &Clock, slow_server_ns: f64) -> Attribution {
    let ns = |t: u64| clock.ns(t);
    let mut lens: Vec<f64> = rts.iter().map(|r| ns(r.t1 - r.t0)).collect();
    lens.sort_by(f64::total_cmp);
    let q = |x: f64| if lens.is_empty() { f64::NAN } else { lens[((lens.len() - 1) as f64 * x).round() as usize] };
    let (p50, p99, p999) = (q(0.5), q(0.99), q(0.999));
    let handled = |seq: u64| -> Option<u64> {
        let i = seq.checked_sub(server.first)? as usize;
        server.handled.get(i).copied().filter(|&t| t != 0)
    };
    let mut outs = Vec::new();
    let mut backs = Vec::new();
    for r in rts {
        if let Some(h) = handled(r.seq).filter(|&h| h >= r.t0 && h <= r.t1) {
            outs.push(ns(h - r.t0));
            backs.push(ns(r.t1 - h));
        }
    }
    let med_out = crate::pairs::median_of(outs);
    let med_back = crate::pairs::median_of(backs);
    // Iterations whose gap or work overlaps [a, b).
    let overlapping = |a: u64, b: u64| server.iters.iter().filter(move |it| it.prev_end < b && it.end > a);
    let clip = |a: u64, b: u64, lo: u64, hi: u64| ns(b.min(hi).saturating_sub(a.max(lo)));
    // A stretch in which the thread was switched out is charged to the switch.
    let sw = |switched: bool, c: Cause, other: Cause| if switched { other } else { c };
    let mut slow = Vec::new();
    for r in rts {
        let len = ns(r.t1 - r.t0);
        if len <= p99 {
            continue;
        }
        let explained = |cause, evidence_ns, calls| Explained {
            rt: *r,
            ns: len,
            cause,
            evidence_ns,
            beyond_p999: len > p999,
            calls,
        };
        let Some(h) = handled(r.seq).filter(|&h| h >= r.t0 && h <= r.t1) else {
            slow.push(explained(Cause::NotHandled, 0.0, NOT_LOOKED));
            continue;
        };
        let out_excess = ns(h - r.t0) - med_out;
        let back_excess = ns(r.t1 - h) - med_back;
        // The stretches on the side that took the excess: (cause, length, calls).
        let mut cands: Vec<(Cause, f64, u64)> = Vec::new();
        if out_excess >= back_excess {
            cands.push((sw(r.switched, Cause::ClientPush, Cause::ClientSwitchedOut), ns(r.pushed - r.t0), r.calls));
            for it in overlapping(r.t0, h) {
                let server = |c| sw(it.switched != 0, c, Cause::ServerSwitchedOut);
                cands.push((Cause::BenchInstrumentation, clip(it.prev_end, it.instr_end, r.t0, h), NOT_LOOKED));
                cands.push((server(Cause::ServerNotRunning), clip(it.instr_end, it.start, r.t0, h), NOT_LOOKED));
                cands.push((server(Cause::ServerControl), clip(it.start, it.ctrl_end, r.t0, h), it.calls));
                cands.push((server(Cause::ServerGroup), clip(it.ctrl_end, it.end, r.t0, h), it.calls));
            }
        } else {
            for it in overlapping(h, r.t1).filter(|it| it.start <= h && it.end > h) {
                let c = sw(it.switched != 0, Cause::ServerAfterHandler, Cause::ServerSwitchedOut);
                cands.push((c, clip(h, it.end, h, r.t1), it.calls));
            }
            let poll = if r.hb_sent + r.hb_received > 0 { Cause::ClientPollHeartbeat } else { Cause::ClientPoll };
            cands.push((sw(r.switched, poll, Cause::ClientSwitchedOut), ns(r.slow_poll), r.calls));
            cands.push((sw(r.switched, Cause::ClientNotRunning, Cause::ClientSwitchedOut), ns(r.gap), NOT_LOOKED));
        }
        let best = cands.into_iter().fold((Cause::Unattributed, 0.0, NOT_LOOKED), |b, c| if c.1 > b.1 { c } else { b });
        // A stretch shorter than what the server records, or than a third of the
        // excess, explains nothing.
        let excess = out_excess.max(back_excess);
        if best.1 < slow_server_ns.min(excess / 3.0).max(1.0) {
            slow.push(explained(Cause::Unattributed, best.1, NOT_LOOKED));
        } else {
            slow.push(explained(best.0, best.1, best.2));
        }
    }
    let gaps = server.iters.iter().filter(|it| ns(it.start - it.instr_end) > slow_server_ns).count();
    Attribution {
        count: rts.len(),
        p50,
        p99,
        p999,
        halves: (med_out, med_back),
        slow,
        server_iters: (server.iters.len(), gaps),
    }
}

/// ` — epoll_wait, recvfrom` for a stretch whose calls were looked at, else nothing.
fn calls_text(calls: u64) -> String {
    if calls == NOT_LOOKED {
        String::new()
    } else {
        format!(" — {}", mask_names(calls))
    }
}

impl Attribution {
    /// `(cause, calls, beyond p99, beyond p99.9, median stretch ns)` for each cause
    /// and set of system calls seen; within a cause, the most frequent first.
    pub fn by_cause(&self) -> Vec<(Cause, u64, usize, usize, f64)> {
        let mut out = Vec::new();
        for &c in Cause::ALL.iter() {
            let mut masks: Vec<u64> = self.slow.iter().filter(|e| e.cause == c).map(|e| e.calls).collect();
            masks.sort_unstable();
            masks.dedup();
            let mut rows: Vec<(Cause, u64, usize, usize, f64)> = masks
                .into_iter()
                .map(|m| {
                    let of: Vec<&Explained> = self.slow.iter().filter(|e| e.cause == c && e.calls == m).collect();
                    let ev = crate::pairs::median_of(of.iter().map(|e| e.evidence_ns).collect());
                    (c, m, of.len(), of.iter().filter(|e| e.beyond_p999).count(), ev)
                })
                .collect();
            rows.sort_by_key(|r| std::cmp::Reverse(r.2));
            out.extend(rows);
        }
        out
    }

    /// The summary table.
    pub fn markdown(&self, what: &str) -> String {
        let beyond999 = self.slow.iter().filter(|e| e.beyond_p999).count();
        let mut s = format!(
            "{what}: {} round trips traced (p50 {} ns, p99 {} ns, p99.9 {} ns; median way out {} ns, way back {} \
             ns); {} beyond p99, {} beyond p99.9; the server recorded {} slow iterations, {} of them after a gap.\n\n\
             | cause (— system calls in the stretch) | beyond p99 | beyond p99.9 | median stretch (ns) |\n\
             |---|---:|---:|---:|\n",
            self.count,
            fmt_num(self.p50),
            fmt_num(self.p99),
            fmt_num(self.p999),
            fmt_num(self.halves.0),
            fmt_num(self.halves.1),
            self.slow.len(),
            beyond999,
            self.server_iters.0,
            self.server_iters.1,
        );
        for (c, calls, n, n999, ev) in self.by_cause() {
            s.push_str(&format!("| {}{} | {n} | {n999} | {} |\n", c.text(), calls_text(calls), fmt_num(ev)));
        }
        s
    }

    /// As JSON (stable keys).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "round_trips": self.count,
            "p50": self.p50, "p99": self.p99, "p99_9": self.p999,
            "median_way_out_ns": crate::pairs::finite(self.halves.0),
            "median_way_back_ns": crate::pairs::finite(self.halves.1),
            "beyond_p99": self.slow.len(),
            "beyond_p99_9": self.slow.iter().filter(|e| e.beyond_p999).count(),
            "server_slow_iterations": self.server_iters.0,
            "server_iterations_after_gap": self.server_iters.1,
            "causes": self.by_cause().iter().map(|(c, calls, n, n999, ev)| serde_json::json!({
                "cause": c.key(),
                "text": c.text(),
                "calls": (*calls != NOT_LOOKED).then(|| mask_names(*calls)),
                "beyond_p99": n,
                "beyond_p99_9": n999,
                "median_stretch_ns": crate::pairs::finite(*ev),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::fixed(1.0)
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let mut t = ServerTrace::new(100, 1000);
        t.clear();
        t.handled(7);
        let base = t.prev_end;
        t.iteration(base + 500, base + 600, base + 800);
        let dir = std::env::temp_dir().join(format!("tcpshm-bench-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("trace");
        t.dump(&p, 6, 8).unwrap();
        let r = ServerRecords::read(&p).unwrap();
        assert_eq!(r.iters.len(), 1);
        assert_eq!((r.iters[0].msgs, r.iters[0].start, r.iters[0].end), (1, base + 500, base + 800));
        assert_eq!(r.iters[0].calls, NOT_LOOKED, "an iteration under LOOK_NS is not looked into");
        assert_eq!((r.first, r.handled.len()), (6, 3));
        assert!(r.handled[0] == 0 && r.handled[1] != 0 && r.handled[2] == 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An iteration at `base` + the offsets `[prev_end, instr_end, start, ctrl_end, end]`.
    fn iter(base: u64, at: [u64; 5], switched: u64, calls: u64) -> Iter {
        let [prev_end, instr_end, start, ctrl_end, end] = at.map(|x| base + x);
        Iter { prev_end, instr_end, start, ctrl_end, end, msgs: 1, switched, calls }
    }

    #[test]
    fn slow_round_trips_are_charged_to_what_overlaps_them() {
        // 1000 round trips of 200 ticks, handled at +100; slow ones:
        // 10: the server was not running from +50 to +2000 (way out);
        // 20: the client's poll took 3000 with a heartbeat (way back);
        // 30: nothing recorded;
        // 40: a group poll of 2470 ticks with a context switch in it;
        // 50: a group poll of 1840 ticks that called epoll_wait;
        // 60: the bench's look after the previous iteration held the message 1500.
        let mut rts = Vec::new();
        let mut handled = Vec::new();
        let mut t = 0u64;
        for seq in 0..1000u64 {
            let len = match seq {
                10 => 2200,
                20 => 3300,
                30 => 5000,
                40 => 2600,
                50 => 2100,
                60 => 1800,
                _ => 200,
            };
            let h = if matches!(seq, 10 | 40 | 50 | 60) { t + len - 100 } else { t + 100 };
            let mut r = Rt {
                seq,
                t0: t,
                pushed: t + 10,
                t1: t + len,
                polls: 3,
                slow_poll: 30,
                gap: 20,
                calls: NOT_LOOKED,
                ..Rt::default()
            };
            if seq == 20 {
                r.slow_poll = 3000;
                r.hb_sent = 1;
            }
            rts.push(r);
            handled.push(h);
            t += len + 50;
        }
        let at = |seq: usize| rts[seq].t0;
        let server = ServerRecords {
            iters: vec![
                iter(at(10), [50, 50, 2000, 2010, 2150], 0, NOT_LOOKED),
                iter(at(40), [60, 60, 70, 80, 2550], 1, 1),
                iter(at(50), [10, 30, 40, 60, 1900], 0, 1),
                iter(at(60), [10, 1600, 1610, 1620, 1750], 0, 0),
            ],
            first: 0,
            handled,
        };
        let a = attribute(&rts, &server, &clock(), 500.0);
        let of = |seq: u64| a.slow.iter().find(|e| e.rt.seq == seq).map(|e| (e.cause, e.calls));
        assert_eq!(of(10).map(|c| c.0), Some(Cause::ServerNotRunning));
        assert_eq!(of(20).map(|c| c.0), Some(Cause::ClientPollHeartbeat));
        assert_eq!(of(30).map(|c| c.0), Some(Cause::Unattributed));
        assert_eq!(of(40).map(|c| c.0), Some(Cause::ServerSwitchedOut));
        assert_eq!(of(50), Some((Cause::ServerGroup, 1)));
        assert_eq!(of(60).map(|c| c.0), Some(Cause::BenchInstrumentation));
        assert_eq!(a.slow.len(), 6);
        let md = a.markdown("test");
        assert!(md.contains("server in a slow Group::poll on the way out — epoll_wait"), "{md}");
        assert!(md.contains("server not running between iterations"), "{md}");
        assert_eq!(a.json()["beyond_p99"], 6);
        let j = a.json();
        let not_running = j["causes"].as_array().unwrap().iter().find(|c| c["cause"] == "server_not_running").unwrap();
        assert_eq!(not_running["calls"], serde_json::Value::Null, "a gap has no calls of its own");
    }
}
