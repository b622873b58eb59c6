//! Child processes: the test binary re-executes itself to run one test as a child in
//! a role (a producer, a server...), selected by an environment variable; the parent
//! reads what the child reports on its stdout, line by line, and kills it with
//! SIGKILL whenever it likes.

use std::io::BufRead;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

/// The environment variable that carries a child's role.
pub const ROLE_VAR: &str = "TCPSHM_TEST_ROLE";

/// The role this process runs as, if it is a child started by [`command`].
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// A command that re-executes this test binary to run only the test `entry`
/// (exactly), in `role`, with its stdout piped (stdin piped, stderr inherited). The
/// child's `entry` test checks [`role`] and does the role's work.
///
/// ```no_run
/// // Needs a test binary to re-execute: see the crash tests for real uses.
/// let mut child = tcpshm_test_support::child::command("crash::child", "producer").spawn().unwrap();
/// # let _ = child.kill();
/// ```
pub fn command(entry: &str, role: &str) -> Command {
    wrapped(&[], entry, role)
}

/// [`command`] run through `wrapper` (e.g. `["ip", "netns", "exec", "ns1"]`; empty
/// for none).
///
/// ```
/// let cmd = tcpshm_test_support::child::wrapped(&["ip", "netns", "exec", "ns1"], "t", "server");
/// assert_eq!(cmd.get_program(), "ip");
/// ```
pub fn wrapped(wrapper: &[&str], entry: &str, role: &str) -> Command {
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
        .env(ROLE_VAR, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// In a child: ends this process (exit status 0) as soon as its stdin closes — the
/// parent closed it ([`Proc::stop`]) or died. Call once at the start of a role.
pub fn exit_when_stdin_closes() {
    read_stdin(|_| {});
}

/// In a child: hands each line the parent sends ([`Proc::send_line`]) to `on_line`,
/// on a thread of its own, and ends this process (exit status 0) as soon as its stdin
/// closes. Call once at the start of a role.
pub fn read_stdin(mut on_line: impl FnMut(&str) + Send + 'static) {
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut stdin = std::io::stdin().lock();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => on_line(line.trim_end()),
            }
        }
    });
}

/// A running child whose stdout lines are handed, as they arrive, to a callback on a
/// reader thread of the parent.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Spawns `cmd` (its stdout must be piped, as [`command`] does) and feeds each line
    /// of its stdout to `on_line`.
    pub fn spawn(mut cmd: Command, mut on_line: impl FnMut(String) + Send + 'static) -> Proc {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let stdin = child.stdin.take();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::with_capacity(1 << 16, stdout).lines() {
                let Ok(line) = line else { break };
                on_line(line);
            }
        });
        Proc { child, stdin, reader: Some(reader) }
    }

    /// Sends `line` to the child's stdin (a child reads it with [`read_stdin`]).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("the child's stdin is open");
        // A child that died meanwhile (killed, or failed) cannot read it: the parent
        // finds out from its exit and its reports.
        let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL, reaps it, and returns once every line it wrote
    /// was handed to the callback.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join();
    }

    /// `Some(status)` once the child ended (by itself or killed), after every line it
    /// wrote was handed to the callback.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten()?;
        self.join();
        Some(status)
    }

    /// Ends the child in order: closes its stdin (a child that called
    /// [`exit_when_stdin_closes`] exits 0) and waits for it (at most
    /// [`WAIT`](crate::WAIT); then it is killed). Returns its exit status.
    pub fn stop(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let child = &mut self.child;
        let status = crate::wait::wait_or(|| child.try_wait().ok().flatten());
        let status = match status {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                self.child.wait().expect("reap the child")
            }
        };
        self.join();
        status
    }

    fn join(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.join();
        }
    }
}
