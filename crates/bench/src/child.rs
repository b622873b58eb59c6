//! Separate processes: the bench binary re-executes itself with `--role NAME` (the
//! server side of a measurement), pinned to its own cpu. The child announces itself
//! with lines on stdout (`ready ...`); it is killed when its `Child` handle drops, and
//! it exits by itself when its parent is gone.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdout, Command, Stdio};

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

/// Watches for the parent's death (the child is re-parented): cheap enough to call
/// every few thousand iterations of a busy loop.
pub struct Orphan {
    parent: Option<rustix::process::Pid>,
}

impl Orphan {
    /// Remembers the current parent.
    pub fn new() -> Orphan {
        Orphan { parent: rustix::process::getppid() }
    }

    /// Whether the parent that started us is gone.
    pub fn orphaned(&self) -> bool {
        rustix::process::getppid() != self.parent
    }
}

impl Default for Orphan {
    fn default() -> Self {
        Orphan::new()
    }
}

/// A child process in a role, killed (SIGKILL) and reaped on drop.
pub struct Child {
    role: String,
    proc: std::process::Child,
    out: BufReader<ChildStdout>,
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
        Child { role: role.to_string(), proc, out }
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

    /// Waits for the child to exit by itself (after it was told to stop).
    pub fn wait(mut self) -> std::process::ExitStatus {
        let st = self.proc.wait().expect("wait child");
        std::mem::forget(self);
        st
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// Pins this process (its calling thread, and threads it starts later) to `cpu`,
/// read from `--cpu` in `args`; warns if refused.
pub fn pin_from_args(args: &[String]) -> usize {
    let cpu: usize = parsed(args, "--cpu");
    if !crate::common::pin_to_cpu(cpu) {
        eprintln!("warning: child could not pin itself to cpu {cpu}; running unpinned");
    }
    cpu
}
