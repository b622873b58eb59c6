//! Child processes: the test binary re-executes itself to run one test as a child in
//! a role (a producer, a server...), selected by an environment variable.

use std::process::{Command, Stdio};

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
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_VAR, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}
