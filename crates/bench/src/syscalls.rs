//! System calls per message, counted two ways.
//!
//! * **The count**: the kernel's `raw_syscalls:sys_enter` tracepoint as a counting
//!   `perf_event_open` event attached to one thread (the server process's polling
//!   thread, the bench's measuring thread). Counting costs nothing per call that
//!   matters here (no ptrace stop), so the window being counted runs at full speed,
//!   and the counter is read at the exact first and last message of the window:
//!   calls ÷ messages is exact. It needs tracefs (for the tracepoint's id) and the
//!   right to count another process's kernel events (root, or `perf_event_paranoid`
//!   ≤ -1 / `CAP_PERFMON`); where refused, the report says so.
//! * **The names**: `strace -c -p` attached for a separate window: which calls they
//!   are (`epoll_wait`, `recvfrom`, `fcntl`...). strace stops the tracee at every
//!   call, which slows it and so changes how many time-driven calls fall in a window:
//!   its counts are shown beside the names, the per-message figure is the first
//!   method's. Without strace the report says "not measured: strace missing".

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER0` (64 bytes): all a counting
/// tracepoint event needs; the kernel takes the size from `size`.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit 0 `disabled`, bit 5 `exclude_kernel`...: all clear (count now, in the
    /// kernel too: the tracepoint fires there).
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_COUNT_SW_CONTEXT_SWITCHES`.
const SW_CONTEXT_SWITCHES: u64 = 3;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// The id of the `raw_syscalls:sys_enter` tracepoint, from tracefs.
fn tracepoint_id() -> Result<u64, String> {
    event_id("raw_syscalls/sys_enter")
}

/// The id of tracepoint `event` (e.g. `syscalls/sys_enter_epoll_wait`), from tracefs.
fn event_id(event: &str) -> Result<u64, String> {
    let mut last = String::new();
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let p = format!("{dir}/events/{event}/id");
        match std::fs::read_to_string(&p) {
            Ok(s) => return s.trim().parse().map_err(|e| format!("{p}: {e}")),
            Err(e) => last = format!("{p}: {e}"),
        }
    }
    Err(format!("tracefs is not available ({last})"))
}

/// Counts the system calls one thread makes (see the module docs).
#[derive(Debug)]
pub struct SyscallCounter {
    fd: OwnedFd,
}

/// `read_format` bit: one read of a group leader returns every member's count.
const PERF_FORMAT_GROUP: u64 = 1 << 3;

/// A counting event for tracepoint `id` on thread `tid`, in the group of `leader`
/// (`None`: a new group).
fn open_tracepoint(id: u64, tid: i32, leader: Option<&OwnedFd>, read_format: u64) -> Result<OwnedFd, String> {
    open_event(PERF_TYPE_TRACEPOINT, id, tid, leader, read_format)
}

/// A counting event of `kind` and `config` on thread `tid`, in the group of `leader`.
fn open_event(kind: u32, config: u64, tid: i32, leader: Option<&OwnedFd>, read_format: u64) -> Result<OwnedFd, String> {
    use std::os::fd::AsRawFd;
    let attr = PerfEventAttr {
        kind,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config,
        read_format,
        ..PerfEventAttr::default()
    };
    let group = leader.map_or(-1, |l| l.as_raw_fd());
    // SAFETY: `attr` is a valid, fully initialised perf_event_attr of the size it
    // declares (VER0, 64 bytes), alive for the call; the other arguments are plain
    // integers (a group leader's descriptor, or -1). The kernel only reads `attr`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid as libc::c_long,
            -1 as libc::c_long,
            group as libc::c_long,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!("perf_event_open of a syscall tracepoint refused: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a non-negative return of perf_event_open is a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl SyscallCounter {
    /// Starts counting the calls of thread `tid` (a process id for a single-threaded
    /// process, or the caller's `gettid`).
    pub fn attach(tid: i32) -> Result<SyscallCounter, String> {
        Ok(SyscallCounter { fd: open_tracepoint(tracepoint_id()?, tid, None, 0)? })
    }

    /// Calls counted so far (reading it is itself a `read` of the caller's thread,
    /// counted only if the caller counts itself: see [`SyscallCounter::read_self`]).
    pub fn read(&self) -> u64 {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(8) => u64::from_ne_bytes(buf),
            _ => 0,
        }
    }

    /// [`read`](Self::read) for a counter of the calling thread: the count before this
    /// read's own call.
    pub fn read_self(&self) -> u64 {
        self.read().saturating_sub(1)
    }
}

/// The system calls the tail attribution names: what the library's poll may call
/// (readiness checks, control-stream reads and writes, the peer-liveness lock check,
/// a futex). The bench's own calls (`read` of these counters, `getrusage`) are not
/// among them.
pub const NAMED_CALLS: [&str; 8] =
    ["epoll_wait", "epoll_pwait", "recvfrom", "sendto", "write", "writev", "fcntl", "futex"];

/// The bit of [`NamedCalls::moved`]'s mask that says the thread was switched out
/// (the kernel's context-switch count moved).
pub const SWITCHED_BIT: u64 = 1 << 62;

/// Counts of the calls of [`NAMED_CALLS`] made by the calling thread, and of its
/// context switches, read all at once (one `read`): which moved since the last look.
#[derive(Debug)]
pub struct NamedCalls {
    leader: OwnedFd,
    _members: Vec<OwnedFd>,
    /// For each counter in group order, its bit in [`NAMED_CALLS`].
    bits: Vec<u32>,
    last: Vec<u64>,
}

impl NamedCalls {
    /// Counters on the calling thread (names tracefs does not have are left out).
    pub fn this_thread() -> Result<NamedCalls, String> {
        let tid = this_thread();
        let mut leader: Option<OwnedFd> = None;
        let mut members = Vec::new();
        let mut bits = Vec::new();
        for (bit, name) in NAMED_CALLS.iter().enumerate() {
            let Ok(id) = event_id(&format!("syscalls/sys_enter_{name}")) else { continue };
            let fd = open_tracepoint(id, tid, leader.as_ref(), PERF_FORMAT_GROUP)?;
            match leader {
                None => leader = Some(fd),
                Some(_) => members.push(fd),
            }
            bits.push(bit as u32);
        }
        let leader = leader.ok_or("tracefs has none of the syscall tracepoints")?;
        members.push(open_event(PERF_TYPE_SOFTWARE, SW_CONTEXT_SWITCHES, tid, Some(&leader), PERF_FORMAT_GROUP)?);
        bits.push(SWITCHED_BIT.trailing_zeros());
        let n = bits.len();
        let mut c = NamedCalls { leader, _members: members, bits, last: vec![0; n] };
        c.moved();
        Ok(c)
    }

    /// A bit per name of [`NAMED_CALLS`] whose count moved since the last call, and
    /// [`SWITCHED_BIT`] if the thread was switched out.
    pub fn moved(&mut self) -> u64 {
        let mut buf = [0u64; 2 + NAMED_CALLS.len()];
        // SAFETY: `u64`s have no invalid bit patterns; the byte view covers exactly
        // `buf`, which outlives it.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&buf)) };
        let Ok(n) = rustix::io::read(&self.leader, bytes) else { return 0 };
        let count = (buf[0] as usize).min(self.bits.len());
        if n < 8 * (1 + count) {
            return 0;
        }
        let mut mask = 0;
        for i in 0..count {
            if buf[1 + i] != self.last[i] {
                mask |= 1 << self.bits[i];
                self.last[i] = buf[1 + i];
            }
        }
        mask
    }
}

/// `epoll_wait, recvfrom` for a mask of [`NamedCalls::moved`] (`no system call` if
/// none; [`SWITCHED_BIT`] is not a call and is left out).
pub fn mask_names(mask: u64) -> String {
    let names: Vec<&str> =
        NAMED_CALLS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n).collect();
    if names.is_empty() {
        "no system call".into()
    } else {
        names.join(", ")
    }
}

/// The calling thread's id (what [`SyscallCounter::attach`] counts for this thread).
pub fn this_thread() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Calls per message of both sides of one window, counted exactly.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerMessage {
    /// Messages (round trips, or streamed messages) in the window.
    pub messages: u64,
    /// Calls of the server's polling thread in the window.
    pub server: u64,
    /// Calls of the bench's measuring thread (the client) in the window.
    pub client: u64,
    /// The window's length in seconds (calls that a timer drives, such as readiness
    /// checks, are per second, not per message: at another message rate they are
    /// another count per message).
    pub secs: f64,
}

impl PerMessage {
    /// The server's calls per message.
    pub fn server_per(&self) -> f64 {
        self.server as f64 / self.messages.max(1) as f64
    }
    /// The client's calls per message.
    pub fn client_per(&self) -> f64 {
        self.client as f64 / self.messages.max(1) as f64
    }
    /// Messages per second in the window.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.secs.max(1e-9)
    }
}

/// Counts the calls of `server_pid`'s main thread and of this thread while `work`
/// runs; `work` returns how many messages it moved.
pub fn count(server_pid: u32, work: impl FnOnce() -> u64) -> Result<PerMessage, String> {
    let server = SyscallCounter::attach(server_pid as i32)?;
    let client = SyscallCounter::attach(this_thread())?;
    let (s0, c0) = (server.read(), client.read_self());
    let t = std::time::Instant::now();
    let messages = work();
    let secs = t.elapsed().as_secs_f64();
    let c1 = client.read_self();
    let s1 = server.read();
    // The first read_self's own call is counted by the second: take it off.
    Ok(PerMessage { messages, server: s1 - s0, client: (c1 - c0).saturating_sub(1), secs })
}

/// `strace -c -f` attached to a running process, until [`Strace::finish`].
#[derive(Debug)]
pub struct Strace {
    proc: std::process::Child,
    out: PathBuf,
}

/// Why strace cannot be used here, if it cannot.
pub fn strace_missing() -> Option<String> {
    match Command::new("strace").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("strace -V failed ({s})")),
        Err(_) => Some("strace missing (Debian: apt-get install strace)".into()),
    }
}

/// Calls the bench itself makes while strace is attached to one of its own threads,
/// to start and stop strace (a sleep while it attaches, resumed once attached; the
/// signal that detaches it, the wait for it): left out of that thread's counts.
pub const OWN_CALLS: [&str; 5] = ["clock_nanosleep", "nanosleep", "restart_syscall", "kill", "wait4"];

impl Strace {
    /// Attaches to `pid` (with every thread of it if `threads`, else only the thread
    /// whose id is `pid`), the summary going to `out`; returns once strace says it is
    /// attached.
    pub fn attach(pid: u32, threads: bool, out: &Path) -> Result<Strace, String> {
        if let Some(why) = strace_missing() {
            return Err(why);
        }
        let mut cmd = Command::new("strace");
        cmd.arg("-c");
        if threads {
            cmd.arg("-f");
        }
        let mut proc = cmd
            .args(["-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start strace: {e}"))?;
        // strace's stderr is read by a thread of its own, started before strace attaches
        // (so that, tracing this process's thread, strace does not see it start), which
        // says when strace is attached and keeps the pipe drained.
        let err = BufReader::new(proc.stderr.take().expect("piped"));
        let attached = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
        let flag = attached.clone();
        std::thread::spawn(move || {
            for line in err.lines() {
                let Ok(line) = line else { break };
                if line.contains("attached") {
                    flag.store(1, std::sync::atomic::Ordering::Release);
                }
            }
            flag.fetch_max(2, std::sync::atomic::Ordering::Release);
        });
        let t = std::time::Instant::now();
        loop {
            match attached.load(std::sync::atomic::Ordering::Acquire) {
                1 => break,
                0 if t.elapsed() < std::time::Duration::from_secs(10) => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                _ => {
                    let _ = proc.kill();
                    let st = proc.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!("strace could not attach to {pid} ({st})"));
                }
            }
        }
        Ok(Strace { proc, out: out.to_path_buf() })
    }

    /// Detaches (SIGINT) and returns the calls by name; `own_thread`: strace traced a
    /// thread of this process, so the calls of [`OWN_CALLS`] are the bench's, left out.
    pub fn finish(mut self, own_thread: bool) -> Result<BTreeMap<String, u64>, String> {
        let pid = rustix::process::Pid::from_raw(self.proc.id() as i32).expect("positive pid");
        rustix::process::kill_process(pid, rustix::process::Signal::INT).map_err(|e| format!("signal strace: {e}"))?;
        let _ = self.proc.wait();
        let text = std::fs::read_to_string(&self.out).map_err(|e| format!("strace summary: {e}"))?;
        let mut calls = parse_summary(&text);
        if own_thread {
            calls.retain(|name, _| !OWN_CALLS.contains(&name.as_str()));
        }
        Ok(calls)
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// The calls by name from `strace -c`'s table (`% time seconds usecs/call calls
/// [errors] syscall`), without the total.
pub fn parse_summary(text: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 || t[0].starts_with('%') || t[0].starts_with('-') {
            continue;
        }
        let name = t[t.len() - 1];
        if name == "total" || t[0].parse::<f64>().is_err() {
            continue;
        }
        if let Ok(n) = t[3].parse::<u64>() {
            *calls.entry(name.to_string()).or_insert(0) += n;
        }
    }
    calls
}

/// `epoll_wait 120, recvfrom 3` (most first).
pub fn names_text(calls: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = calls.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if v.is_empty() {
        return "none".into();
    }
    v.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_summaries_parse_with_and_without_errors() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.54    0.000080           0    120000           epoll_wait
 30.77    0.000040          13         3         3 recvfrom
  7.69    0.000010          10         1           fcntl
------ ----------- ----------- --------- --------- ----------------
100.00    0.000130           1    120004         3 total
";
        let m = parse_summary(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m["epoll_wait"], 120000);
        assert_eq!(m["recvfrom"], 3);
        assert_eq!(m["fcntl"], 1);
        assert_eq!(names_text(&m), "epoll_wait 120000, recvfrom 3, fcntl 1");
        assert_eq!(names_text(&BTreeMap::new()), "none");
    }

    #[test]
    fn named_calls_tell_which_ran_where_allowed() {
        let mut c = match NamedCalls::this_thread() {
            Ok(c) => c,
            Err(why) => return tcpshm_test_support::skip::skip("bench_named_calls", &why),
        };
        assert_eq!(c.moved(), 0, "nothing named ran since the last look");
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::io::Write;
        w.write_all(b"x").unwrap();
        let m = c.moved();
        assert!(mask_names(m).contains("write") || mask_names(m).contains("sendto"), "{}", mask_names(m));
        drop(r);
        assert_eq!(mask_names(0), "no system call");
    }

    #[test]
    fn the_attr_is_the_first_published_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 64);
    }

    #[test]
    fn counting_this_thread_sees_its_own_calls_where_allowed() {
        let c = match SyscallCounter::attach(this_thread()) {
            Ok(c) => c,
            // Refused here (no tracefs or no permission): the benches report that.
            Err(why) => return tcpshm_test_support::skip::skip("bench_syscall_counter", &why),
        };
        let a = c.read_self();
        for _ in 0..10 {
            let _ = rustix::process::getppid();
        }
        let b = c.read_self();
        // The 10 getppid calls and the first read_self's own read.
        assert_eq!(b - a, 11);
    }
}
