//! Counting the system calls of a piece of code: the code runs in a child process
//! under `strace -f`, between two markers it makes itself; the parent counts, per
//! thread, the calls traced between them.
//!
//! Why a child under `strace` rather than a counter read in-process: Linux has no
//! per-thread system-call counter that a process can read without privileges or
//! set-up — `/proc/thread-self/io` counts only the read and write families (not
//! `recv`, `send`, `fcntl`, `futex`...), and a `perf_event_open` counter of the
//! `raw_syscalls:sys_enter` tracepoint needs tracefs mounted to find the tracepoint's
//! id and is refused in many containers. `strace` sees every call, needs only
//! `ptrace`, and is a Debian package (`apt-get install strace`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Why `strace` cannot be used here (`None`: it can).
pub fn unavailable() -> Option<String> {
    match Command::new("strace").args(["-f", "-qq", "-o", "/dev/null", "true"]).status() {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("strace does not work here ({s}): ptrace refused?")),
        Err(e) => Some(format!("strace is not installed ({e}); apt-get install strace")),
    }
}

/// In the traced child: makes one recognisable, harmless system call (an `openat` of
/// a path that does not exist) that marks a point of the trace.
pub fn mark(name: &str) {
    let _ = std::fs::File::open(format!("/tcpshm-strace-mark-{name}"));
}

/// The child's role `role` of the test `entry` (see [`crate::child::command`]), run
/// under `strace -f`, its trace written to `out`.
pub fn command(out: &Path, entry: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(out)
        .arg(exe)
        .args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(crate::child::ROLE_VAR, role);
    cmd
}

/// The system calls traced between two marks, by thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The thread that made the marks.
    pub marker: u32,
    /// Each thread's calls between the marks, as `strace` printed them.
    pub calls: BTreeMap<u32, Vec<String>>,
}

impl Window {
    /// The calls of the thread that made the marks.
    pub fn of_marker(&self) -> &[String] {
        self.calls.get(&self.marker).map_or(&[], Vec::as_slice)
    }

    /// The calls of the other threads.
    pub fn of_others(&self) -> Vec<&String> {
        self.calls.iter().filter(|(t, _)| **t != self.marker).flat_map(|(_, c)| c).collect()
    }
}

/// The calls between the marks `begin` and `end` in the trace at `path`
/// (`strace -f -o` output: one call per line after the thread id; a call that
/// another thread's line interrupted is counted once, at its start).
pub fn window(path: &Path, begin: &str, end: &str) -> Window {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (b, e) = (format!("tcpshm-strace-mark-{begin}\""), format!("tcpshm-strace-mark-{end}\""));
    let mut marker = None;
    let mut calls: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((tid, call)) = line.split_once(' ') else { continue };
        let Ok(tid) = tid.parse::<u32>() else { continue };
        let call = call.trim_start();
        if marker.is_none() {
            if call.contains(&b) {
                marker = Some(tid);
            }
            continue;
        }
        if call.contains(&e) && Some(tid) == marker {
            return Window { marker: tid, calls };
        }
        // The rest of a call printed in two parts; signals and exits are not calls.
        if call.starts_with("<...") || call.starts_with("---") || call.starts_with("+++") {
            continue;
        }
        calls.entry(tid).or_default().push(call.to_owned());
    }
    panic!("the trace {} has no window {begin}..{end} (marker thread {marker:?})", path.display());
}
