//! The parent's side of the child processes: spawn a role (optionally through a
//! wrapper such as `ip netns exec ns`), read its reports on a thread that feeds them
//! to the side's checker as they arrive, kill it with SIGKILL, stop it at the end.

use super::check::SideCheck;
use super::records::Rec;
use super::roles::RoleEnv;
use std::collections::VecDeque;
use std::io::BufRead;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the parent knows about one side, over all its incarnations.
pub struct SideState {
    /// The checker.
    pub check: SideCheck,
    /// The first check failure.
    pub error: Option<String>,
    /// The last lines the side wrote (records and other output), for diagnostics.
    pub tail: VecDeque<String>,
}

impl SideState {
    /// A side checked by `check`.
    pub fn new(check: SideCheck) -> Arc<Mutex<SideState>> {
        Arc::new(Mutex::new(SideState { check, error: None, tail: VecDeque::new() }))
    }

    /// The last lines, one per line, for a failure message.
    pub fn tail_text(&self) -> String {
        self.tail.iter().map(|l| format!("    {l}\n")).collect()
    }
}

/// Locks a side's state (a panicking reader thread does not poison the test).
pub fn lock(s: &Mutex<SideState>) -> std::sync::MutexGuard<'_, SideState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// One running child (one incarnation of a side).
pub struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<()>>,
}

const TAIL: usize = 40;

impl ChildProc {
    /// Starts `env`'s role by re-executing this test binary, running only the test
    /// `entry` (which calls [`super::roles::child_main`]), behind `wrapper` (e.g.
    /// `["ip", "netns", "exec", "ns1"]`; empty for none). Its reports feed `state`.
    pub fn spawn(entry: &str, wrapper: &[&str], env: &RoleEnv, state: &Arc<Mutex<SideState>>) -> ChildProc {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
            .envs(env.vars())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        lock(state).check.begin();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        let state = state.clone();
        // `TCPSHM_E2E_LOG_DIR=dir` keeps every line each side wrote in `dir/<role>.log`.
        let mut log = std::env::var_os("TCPSHM_E2E_LOG_DIR").map(|d| {
            let path = std::path::Path::new(&d).join(format!("{}.log", env.role_name()));
            std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("log file")
        });
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::with_capacity(1 << 16, stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                let rec = Rec::parse(&line);
                let mut s = lock(&state);
                if s.tail.len() == TAIL {
                    s.tail.pop_front();
                }
                s.tail.push_back(line);
                if let (Some(rec), None) = (rec, &s.error) {
                    if let Err(e) = s.check.apply(&rec) {
                        s.error = Some(e);
                    }
                }
            }
        });
        ChildProc { child, stdin, reader: Some(reader) }
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL, reaps it, and waits until every report it made
    /// was read and checked.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join();
    }

    /// `Some(status)` if the child ended on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Ends the child in order: closes its stdin (it exits 0), waits up to
    /// `timeout`, then kills it. Returns its exit status and whether it exited by
    /// itself.
    pub fn stop(mut self, timeout: Duration) -> (Option<ExitStatus>, bool) {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        let mut by_itself = true;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    by_itself = false;
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.join();
        (status, by_itself)
    }

    fn join(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.join();
        }
    }
}

/// Removes every file of `dir` whose name starts with `prefix` when dropped (the
/// shared-memory files of a test run, even when the test fails).
pub struct PrefixCleanup {
    /// The directory.
    pub dir: std::path::PathBuf,
    /// The prefix.
    pub prefix: String,
}

impl Drop for PrefixCleanup {
    fn drop(&mut self) {
        if let Ok(d) = std::fs::read_dir(&self.dir) {
            for e in d.flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
