//! Runs the built examples briefly, as a user would, and checks what they print.
//!
//! The example binaries are not built here: `cargo test` builds every example of the
//! package next to the test binaries, in the same profile (`target/<profile>/examples/`).
//! A filtered run (`cargo test --test examples`) builds only this file; then build the
//! examples first (`cargo build --examples`, same profile) or run `cargo test -p tcpshm`.
//! A binary older than its source is refused rather than tested.
//!
//! The tests run one at a time (a lock): the echo benchmark pins busy-polling processes
//! to the cpus, and the restart test kills servers; neither should disturb the other.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path of a built example, checked to exist and to be newer than its source.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let dir = exe.parent().and_then(Path::parent).expect("the test binary is in target/<profile>/deps");
    let bin = dir.join("examples").join(name);
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!(
            "example binary {} not found: build the examples first (`cargo build --examples` in this profile, \
             or `cargo test -p tcpshm`, which builds them; `cargo test --test examples` alone does not)",
            bin.display()
        )
    });
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(format!("{name}.rs"));
    if let Ok(edited) = std::fs::metadata(&src).and_then(|m| m.modified()) {
        assert!(
            edited <= built,
            "example binary {} is older than {}: rebuild the examples (`cargo build --examples`)",
            bin.display(),
            src.display()
        );
    }
    bin
}

/// A child process whose stdout lines arrive on a channel; killed when dropped.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    what: String,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new(example(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines, seen: Vec::new(), what: format!("{name} {}", args.join(" ")) }
    }

    /// Waits for a line containing `needle`; panics with everything seen on timeout.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "`{}` printed no line with {needle:?} within {timeout:?}; it printed:\n{}",
                        self.what,
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("`{}` ended without printing {needle:?}; it printed:\n{}", self.what, self.log())
                }
            }
        }
    }

    /// Waits for the process to exit (at most `timeout`); returns its exit code and
    /// its whole output.
    fn finish(mut self, timeout: Duration) -> (i32, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for the example") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.drain();
                panic!("`{}` did not finish within {timeout:?}; it printed:\n{}", self.what, self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.drain();
        (status.code().unwrap_or(-1), self.log())
    }

    fn drain(&mut self) {
        // The reader thread ends at EOF, shortly after the process.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
    }

    fn log(&self) -> String {
        self.seen.join("\n")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tcpshm-examples-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
    fn join(&self, s: &str) -> String {
        self.0.join(s).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free right now on the loopback (the OS picks it; a tiny race is accepted).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

fn shm_files_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Removes the shared-memory files of a prefix when dropped (the sessions of a test).
struct RemoveShmFiles(String);

impl Drop for RemoveShmFiles {
    fn drop(&mut self) {
        for f in shm_files_with_prefix(&self.0) {
            let _ = std::fs::remove_file(Path::new("/dev/shm").join(f));
        }
    }
}

#[test]
fn echo_prints_the_table_for_both_transports_and_leaves_nothing_behind() {
    let _serial = serial();
    let run = Running::start("echo", &["--messages", "2000"]);
    let pid = run.child.id();
    let (code, out) = run.finish(Duration::from_secs(25));
    assert_eq!(code, 0, "echo failed; it printed:\n{out}");
    assert!(out.lines().next().is_some_and(|l| l.starts_with("machine: ")), "no machine line:\n{out}");
    let header = out
        .lines()
        .position(|l| l.split_whitespace().eq(["transport", "messages", "mean", "p50", "p99", "p99.9", "max"]));
    let header = header.unwrap_or_else(|| panic!("no table header:\n{out}"));
    let rows: Vec<Vec<&str>> = out.lines().skip(header + 1).take(2).map(|l| l.split_whitespace().collect()).collect();
    for (row, mode) in rows.iter().zip(["shm", "tcp"]) {
        assert_eq!(row.first(), Some(&mode), "expected a {mode} row:\n{out}");
        assert_eq!(row.get(1), Some(&"2000"), "the {mode} row does not count 2000 messages:\n{out}");
        // mean, p50, p99, p99.9, max: each a number and a unit.
        assert_eq!(row.len(), 2 + 5 * 2, "the {mode} row is not complete:\n{out}");
    }
    assert!(out.contains("every echo checked"), "{out}");
    // Clean exit: the temp dir and the shared-memory files of this run are gone.
    let work = std::env::temp_dir().join(format!("tcpshm-echo-{pid}"));
    assert!(!work.exists(), "{} was left behind", work.display());
    let left = shm_files_with_prefix(&format!("tcpshm-echo-{pid}-"));
    assert!(left.is_empty(), "shared-memory files left behind: {left:?}");
}

#[test]
fn unix_transport_passes_the_conformance_kit() {
    let _serial = serial();
    let (code, out) = Running::start("unix_transport", &[]).finish(Duration::from_secs(25));
    assert_eq!(code, 0, "unix_transport failed; it printed:\n{out}");
    let own = ["login_refuses_another_client", "login_refuses_lost_state"];
    let all: Vec<&str> = tcpshm::proto::testkit::CASE_NAMES.iter().copied().chain(own).collect();
    for case in &all {
        let ok = out.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("ok") && words.next() == Some(case)
        });
        assert!(ok, "case {case} not reported ok:\n{out}");
    }
    let summary = format!("PASS: {} passed, 0 failed", all.len());
    assert!(out.lines().any(|l| l.starts_with(&summary)), "no {summary:?} line:\n{out}");
}

#[test]
fn unix_transport_reports_an_unknown_case() {
    let _serial = serial();
    let (code, _) = Running::start("unix_transport", &["--case", "no_such_case"]).finish(Duration::from_secs(10));
    assert_ne!(code, 0);
}

/// How the server dies under the streaming client.
#[derive(Clone, Copy)]
enum Kill {
    /// SIGKILL from outside, twice, at whatever moment it lands.
    TwiceFromOutside,
    /// SIGKILL by itself right after pushing its N-th echo, before popping that
    /// request, while the client keeps many messages in flight (so the server
    /// handles them in batches): the moment that tests the commit point.
    SelfAfterEcho(u64),
}

/// The stream mode of echo_client checks that every echo arrives exactly once and in
/// order; here the server is killed with SIGKILL and restarted under it.
fn stream_across_server_restarts(transport: &str, kill: Kill) {
    let _serial = serial();
    let dir = TempDir::new(&format!("restart-{transport}"));
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let prefix = format!("tcpshm-ex-{}-", std::process::id());
    // Declared before the processes, so dropped after they are killed, even on panic.
    let _shm = RemoveShmFiles(prefix.clone());
    let storage = dir.join("server");
    let server_args = vec![
        "--listen",
        listen.as_str(),
        "--storage-dir",
        &storage,
        "--shm-prefix",
        &prefix,
        "--idle-sleep-us",
        "100",
        "--stats-secs",
        "0",
        "--max-message",
        "4096",
        "--queue-bytes",
        "1048576",
    ];
    let start_server = |args: &[&str]| {
        let mut s = Running::start("echo_server", args);
        s.wait_for("listening on", Duration::from_secs(10));
        s
    };
    let self_kill = match kill {
        Kill::SelfAfterEcho(n) => n.to_string(),
        Kill::TwiceFromOutside => String::new(),
    };
    let mut first_args = server_args.clone();
    if let Kill::SelfAfterEcho(_) = kill {
        first_args.extend(["--kill-self-after-echo", self_kill.as_str()]);
    }
    let mut server = start_server(&first_args);
    let (messages, window) = match (kill, transport) {
        (Kill::SelfAfterEcho(_), _) => ("50000", "1024"),
        (Kill::TwiceFromOutside, "shm") => ("20000000", "256"),
        (Kill::TwiceFromOutside, _) => ("400000", "256"),
    };
    let client_dir = dir.join("client");
    let mut client = Running::start(
        "echo_client",
        &[
            "--connect",
            listen.as_str(),
            "--storage-dir",
            &client_dir,
            "--shm-prefix",
            &prefix,
            "--transport",
            transport,
            "--mode",
            "stream",
            "--messages",
            messages,
            "--window",
            window,
            "--max-message",
            "4096",
            "--queue-bytes",
            "1048576",
            "--give-up-secs",
            "10",
        ],
    );
    client.wait_for("connected to EchoServer", Duration::from_secs(10));
    let reconnects = match kill {
        Kill::TwiceFromOutside => {
            for _ in 0..2 {
                std::thread::sleep(Duration::from_millis(300));
                server.kill(); // SIGKILL: no goodbye, no flush
                drop(server);
                server = start_server(&server_args);
                client.wait_for("reconnected to EchoServer", Duration::from_secs(10));
            }
            2
        }
        Kill::SelfAfterEcho(_) => {
            server.wait_for("killing this process", Duration::from_secs(20));
            let (code, _) = server.finish(Duration::from_secs(5));
            assert_ne!(code, 0, "the server was to kill itself");
            server = start_server(&server_args);
            client.wait_for("reconnected to EchoServer", Duration::from_secs(10));
            1
        }
    };
    let (code, out) = client.finish(Duration::from_secs(60));
    drop(server);
    assert_eq!(code, 0, "the stream check failed; the client printed:\n{out}");
    assert!(out.contains("arrived exactly once and in order"), "{out}");
    assert!(out.contains(&format!("({reconnects} reconnects")), "{out}");
}

#[test]
fn echo_client_stream_is_exactly_once_across_server_kills_tcp() {
    stream_across_server_restarts("tcp", Kill::TwiceFromOutside);
}

#[test]
fn echo_client_stream_is_exactly_once_across_server_kills_shm() {
    stream_across_server_restarts("shm", Kill::TwiceFromOutside);
}

#[test]
fn echo_client_stream_is_exactly_once_when_the_server_dies_between_reply_and_pop_tcp() {
    stream_across_server_restarts("tcp", Kill::SelfAfterEcho(20_000));
}

#[test]
fn echo_client_stream_is_exactly_once_when_the_server_dies_between_reply_and_pop_shm() {
    stream_across_server_restarts("shm", Kill::SelfAfterEcho(20_000));
}

/// Four demo clients over two groups: round-robin and least-loaded both put two in
/// each (least-loaded counts logins still in flight to a group).
fn sharded_server_spreads_demo_clients(policy: &str) {
    let _serial = serial();
    let run = Running::start(
        "sharded_server",
        &["--groups", "2", "--policy", policy, "--demo-clients", "4", "--demo-secs", "1", "--stats-secs", "0"],
    );
    let pid = run.child.id();
    let (code, out) = run.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "sharded_server failed; it printed:\n{out}");
    assert_eq!(out.matches("replies checked").count(), 4, "{out}");
    for g in 0..2 {
        assert_eq!(out.matches(&format!("group {g}: demo-")).count(), 2, "{policy}: 2 clients per group:\n{out}");
    }
    let handled =
        out.lines().find_map(|l| l.strip_prefix("messages handled per group: ")).unwrap_or_else(|| panic!("{out}"));
    assert!(handled.split(", ").all(|n| n.parse::<u64>().is_ok_and(|n| n > 0)), "a group handled nothing:\n{out}");
    assert!(!std::env::temp_dir().join(format!("tcpshm-sharded-{pid}")).exists(), "storage left behind");
    let left = shm_files_with_prefix(&format!("tcpshm-sharded-{pid}-"));
    assert!(left.is_empty(), "shared-memory files left behind: {left:?}");
}

#[test]
fn sharded_server_round_robin_spreads_clients() {
    sharded_server_spreads_demo_clients("round-robin");
}

#[test]
fn sharded_server_least_loaded_spreads_a_burst_of_clients() {
    sharded_server_spreads_demo_clients("least-loaded");
}

#[test]
fn every_example_documents_its_flags() {
    let _serial = serial();
    for (name, flags) in [
        ("echo", &["--messages", "--warmup", "--transport", "--no-pin"][..]),
        (
            "echo_server",
            &[
                "--listen",
                "--name",
                "--storage-dir",
                "--transport",
                "--groups",
                "--shm-dir",
                "--shm-prefix",
                "--max-message",
                "--queue-bytes",
            ][..],
        ),
        (
            "echo_client",
            &[
                "--connect",
                "--name",
                "--storage-dir",
                "--transport",
                "--mode",
                "--messages",
                "--sizes",
                "--shm-dir",
                "--shm-prefix",
                "--retry-min-ms",
                "--retry-max-ms",
            ][..],
        ),
        ("sharded_server", &["--groups", "--policy", "--demo-clients"][..]),
        ("unix_transport", &["--case", "--list"][..]),
    ] {
        let (code, out) = Running::start(name, &["--help"]).finish(Duration::from_secs(10));
        assert_eq!(code, 0, "{name} --help failed:\n{out}");
        for f in flags {
            assert!(out.contains(f), "{name} --help does not mention {f}:\n{out}");
        }
    }
}
