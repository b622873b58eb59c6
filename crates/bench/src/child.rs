//! Separate processes: a bench binary re-executes itself with `--role NAME` (a server
//! side of a measurement), pinned to its own cpu. The child announces itself with
//! lines on stdout (`ready ...`); it is killed when its [`Child`] handle drops, and the
//! kernel kills it when its parent dies (`PR_SET_PDEATHSIG`), so its busy loop needs no
//! check of its own (a `getppid` every few thousand iterations would be a system call
//! in the very loop whose system calls the benches count).
//!
//! A parent pauses a child it is not measuring with [`Child::stop`] (`SIGSTOP`) and
//! resumes it with [`Child::resume`]: the benches keep several servers alive on the
//! same cpu, one running at a time, to measure ours and a reference back to back.
//!
//! A child that dies while its handle is alive (a crash, a kill from outside) would
//! leave the parent spinning forever on an echo that never comes: a watchdog thread
//! (started with the first child, waking once a second, never on the measuring
//! thread) ends the parent with a message naming the role.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::{Mutex, Once};

/// The children the watchdog looks after: (pid, role).
static WATCHED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// Whether process `pid` has ended (gone, or a zombie not reaped yet).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(s) => {
            s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next()).is_some_and(|st| st == "Z" || st == "X")
        }
        Err(_) => true,
    }
}

/// How an ended (zombie) process ended, from the exit code in `/proc/<pid>/stat`.
fn how_it_ended(pid: u32) -> String {
    let code = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 2..].split_whitespace().last()?.parse::<i32>().ok());
    match code {
        Some(c) if c & 0x7f != 0 => format!("killed by signal {}", c & 0x7f),
        Some(c) => format!("exited with status {}", (c >> 8) & 0xff),
        None => "already reaped".into(),
    }
}

fn watch(pid: u32, role: &str) {
    static START: Once = Once::new();
    WATCHED.lock().expect("watch list").push((pid, role.to_string()));
    START.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let dead = WATCHED.lock().expect("watch list").iter().find(|(p, _)| ended(*p)).cloned();
            if let Some((pid, role)) = dead {
                eprintln!("bench: child role {role} (pid {pid}) died while in use ({}); giving up", how_it_ended(pid));
                std::process::exit(2);
            }
        });
    });
}

fn unwatch(pid: u32) {
    WATCHED.lock().expect("watch list").retain(|(p, _)| *p != pid);
}

/// If this process was started as a child role: the role's name and its arguments.
pub fn role_args() -> Option<(String, Vec<String>)> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--role")?;
    let role = args.get(i + 1)?.clone();
    Some((role, args[i + 2..].to_vec()))
}

/// The value after `--name` in a child's arguments.
pub fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The value after `--name`, parsed; panics with a clear message if missing.
pub fn parsed<T: std::str::FromStr>(args: &[String], name: &str) -> T {
    arg(args, name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("child: missing or bad {name}"))
}

/// Writes one line to stdout at once (the parent reads it).
pub fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("child: stdout");
    out.flush().expect("child: stdout");
}

/// Sets up this process as a child role: dies with its parent, pinned to the cpu
/// given by `--cpu` (if any). Returns the cpu.
pub fn become_child(args: &[String]) -> Option<usize> {
    let parent = rustix::process::getppid();
    // SIGKILL when the parent dies: also ends a child the parent left stopped.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if rustix::process::getppid() != parent {
        // The parent died before the signal was armed.
        std::process::exit(0);
    }
    let cpu: usize = arg(args, "--cpu")?.parse().ok()?;
    if !crate::common::pin_to_cpu(cpu) {
        eprintln!("warning: child could not pin itself to cpu {cpu}; running unpinned");
    }
    Some(cpu)
}

/// A child process in a role, killed (SIGKILL) and reaped on drop.
pub struct Child {
    role: String,
    proc: std::process::Child,
    out: BufReader<ChildStdout>,
    stopped: bool,
}

impl Child {
    /// Starts this binary again as `--role role --cpu cpu args...`.
    pub fn spawn(role: &str, cpu: usize, args: &[String]) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut proc = Command::new(exe)
            .arg("--role")
            .arg(role)
            .arg("--cpu")
            .arg(cpu.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start child role {role}: {e}"));
        let out = BufReader::new(proc.stdout.take().expect("piped stdout"));
        watch(proc.id(), role);
        Child { role: role.to_string(), proc, out, stopped: false }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// The role's name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The next line the child writes; panics (with the child's status) if it ended.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        let n = self.out.read_line(&mut s).expect("read child stdout");
        if n == 0 {
            let status = self.proc.wait().map(|s| s.to_string()).unwrap_or_default();
            panic!("child role {} ended before answering ({status})", self.role);
        }
        s.trim_end().to_string()
    }

    /// Reads lines until one starts with `prefix`; returns the rest of it.
    pub fn expect(&mut self, prefix: &str) -> String {
        loop {
            let l = self.line();
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
            eprintln!("[{}] {l}", self.role);
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.proc.id() as i32).expect("a child's pid is positive");
        rustix::process::kill_process(pid, sig).unwrap_or_else(|e| panic!("signal child {}: {e}", self.role));
    }

    /// Pauses the child (`SIGSTOP`): it uses no cpu until [`resume`](Self::resume).
    pub fn stop(&mut self) {
        if !self.stopped {
            self.signal(rustix::process::Signal::STOP);
            self.stopped = true;
        }
    }

    /// Lets a stopped child run again (`SIGCONT`).
    pub fn resume(&mut self) {
        if self.stopped {
            self.signal(rustix::process::Signal::CONT);
            self.stopped = false;
        }
    }

    /// Whether the child is paused.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Waits for the child to exit by itself (after it was told to stop).
    pub fn wait(mut self) -> std::process::ExitStatus {
        unwatch(self.proc.id());
        self.resume();
        let st = self.proc.wait().expect("wait child");
        std::mem::forget(self);
        st
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        unwatch(self.proc.id());
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_tells_a_live_process_from_a_gone_or_zombie_one() {
        assert!(!ended(std::process::id()));
        assert!(ended(u32::MAX - 1));
        let mut p = Command::new("true").spawn().unwrap();
        let pid = p.id();
        // Not reaped yet: a zombie once it exits.
        while !ended(pid) {
            std::thread::yield_now();
        }
        p.wait().unwrap();
        assert!(ended(pid));
    }

    #[test]
    fn arguments_after_names() {
        let a: Vec<String> = ["--cpu", "1", "--file", "/x"].iter().map(|s| s.to_string()).collect();
        assert_eq!(arg(&a, "--file"), Some("/x"));
        assert_eq!(parsed::<usize>(&a, "--cpu"), 1);
        assert_eq!(arg(&a, "--nope"), None);
    }
}
