//! Runs the examples briefly, as a user would, and checks what they print and that
//! they leave no files behind.
//!
//! The example binaries are built on first use (`cargo build --examples`, in the
//! profile and target directory of this test binary), so `cargo test --test
//! examples` alone is enough; under `cargo test`, which builds them already, that
//! build is a no-op.
//!
//! The tests run one at a time (a lock): the echo benchmark pins busy-polling
//! processes to the cpus, and the restart tests kill servers; neither should disturb
//! the other. Every wait is for something the processes print or for a process to
//! end, with a deadline only a hang reaches.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tcpshm_test_support::TempDir;

/// Long enough that only a hang reaches it, on a loaded 2-cpu machine too.
const HANG: Duration = Duration::from_secs(300);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path of a built example (built once per test run).
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // target/<profile dir>/deps/examples-<hash> -> target, <profile dir>
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("the test binary is in target/<profile>/deps");
        let target = profile_dir.parent().expect("target dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => "release",
            _ => "test",
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--examples", "-p", "tcpshm", "--profile", profile, "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target)
            .status()
            .expect("run cargo to build the examples");
        assert!(status.success(), "building the examples failed");
        profile_dir.join("examples")
    });
    dir.join(name)
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line containing `needle` (from now on); panics with everything
    /// seen if the process ends first or nothing comes before [`HANG`].
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + HANG;
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
                        "`{}` printed no line with {needle:?} within {HANG:?}; it printed:\n{}",
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

    /// Waits for the process to exit; returns its exit code and its whole output.
    fn finish(mut self) -> (i32, String) {
        // Its stdout closes when it exits (no grandchild keeps it: the echo server's
        // stdout is a pipe of its own).
        let deadline = Instant::now() + HANG;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("`{}` did not finish within {HANG:?}; it printed:\n{}", self.what, self.log())
                }
            }
        }
        let status = self.child.wait().expect("wait for the example");
        (status.code().unwrap_or(-1), self.log())
    }

    fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// SIGKILL, and reap.
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

/// A port free right now on the loopback (the OS picks it; a tiny race is accepted).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// The entries of `dir` whose names contain `needle`.
fn entries_with(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.contains(needle))
        .collect()
}

/// What a process with this pid left in the temp dir and in `/dev/shm` (by the
/// examples' naming: the pid follows a dash and ends in a dash or the name).
fn left_behind(pid: u32) -> Vec<String> {
    let mut left = Vec::new();
    for dir in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        for n in entries_with(&dir, &format!("-{pid}")) {
            if n.starts_with("tcpshm-") && (n.ends_with(&format!("-{pid}")) || n.contains(&format!("-{pid}-"))) {
                left.push(dir.join(n).display().to_string());
            }
        }
    }
    left
}

/// A process id that is not running (a child that exited and was reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().expect("run true");
    let pid = c.id();
    c.wait().expect("wait for true");
    pid
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

// ---------------------------------------------------------------------------------
// echo
// ---------------------------------------------------------------------------------

/// The fields of the table row starting with `label` (after the header `header`).
fn row<'a>(out: &'a str, header: &[&str], label: &str) -> Vec<&'a str> {
    let start = out
        .lines()
        .position(|l| l.split_whitespace().eq(header.iter().copied()))
        .unwrap_or_else(|| panic!("no table with header {header:?}:\n{out}"));
    out.lines()
        .skip(start + 1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| r.first() == Some(&label))
        .unwrap_or_else(|| panic!("no {label} row under {header:?}:\n{out}"))
}

#[test]
fn echo_measures_both_transports_beside_their_floors_and_cleans_up() {
    let _serial = serial();
    // The leftovers of a run that was killed: the run removes them.
    let dead = dead_pid();
    let stale_dir = std::env::temp_dir().join(format!("tcpshm-echo-{dead}"));
    let stale_shm = PathBuf::from("/dev/shm").join(format!("tcpshm-echo-{dead}-floor"));
    std::fs::create_dir_all(stale_dir.join("client")).expect("make a stale dir");
    std::fs::write(&stale_shm, b"stale").expect("make a stale shm file");

    let run = Running::start("echo", &["--messages", "2000", "--rounds", "2"]);
    let pid = run.pid();
    let (code, out) = run.finish();
    assert_eq!(code, 0, "echo failed; it printed:\n{out}");
    assert!(out.lines().next().is_some_and(|l| l.starts_with("machine: ")), "no machine line:\n{out}");
    assert!(out.contains(&format!("removed the files of an interrupted run (pid {dead})")), "{out}");
    assert!(!stale_dir.exists() && !stale_shm.exists(), "the leftovers of pid {dead} are still there");

    for round in ["round 1/2", "round 2/2"] {
        for t in ["shm", "tcp"] {
            let line = out.lines().find(|l| l.starts_with(&format!("{round} {t}:"))).unwrap_or_else(|| panic!("{out}"));
            assert!(line.contains("ours") && line.contains("floor") && line.contains("ratio"), "{line}");
        }
    }
    let header = ["transport", "messages", "mean", "p50", "p99", "p99.9", "max"];
    for label in ["shm", "shm-floor", "tcp", "tcp-floor"] {
        let r = row(&out, &header, label);
        assert_eq!(r.get(1), Some(&"2000"), "the {label} row does not count 2000 round trips:\n{out}");
        // mean, p50, p99, p99.9, max: each a number and a unit.
        assert_eq!(r.len(), 2 + 5 * 2, "the {label} row is not complete:\n{out}");
        for k in 0..5 {
            assert!(r[2 + 2 * k].parse::<f64>().is_ok_and(|v| v > 0.0), "{label}: {r:?}");
        }
    }
    for label in ["shm", "tcp"] {
        let r = row(&out, &["transport", "p50", "p99", "p99.9"], label);
        assert_eq!(r.len(), 4, "{r:?}");
        for ratio in &r[1..] {
            let v: f64 = ratio.strip_suffix('x').and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{r:?}"));
            assert!(v > 0.0, "{r:?}");
        }
    }
    assert!(out.contains("every echo checked"), "{out}");
    assert!(out.contains("cleanup: server exited; removed"), "{out}");
    let left = left_behind(pid);
    assert!(left.is_empty(), "echo left behind: {left:?}");
}

#[test]
fn echo_killed_takes_its_server_along_and_the_next_run_removes_its_files() {
    let _serial = serial();
    let mut run = Running::start("echo", &["--messages", "100000000", "--transport", "shm"]);
    let pid = run.pid();
    let line = run.wait_for("server: pid ");
    let server: u32 = line
        .strip_prefix("server: pid ")
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no server pid in {line:?}"));
    run.wait_for(" round trips per phase");
    run.kill();
    // The server dies with its client (parent-death signal), then is reaped.
    let deadline = Instant::now() + HANG;
    while !gone(server) {
        assert!(Instant::now() < deadline, "the echo server {server} outlived its client");
        std::thread::yield_now();
    }
    assert!(!left_behind(pid).is_empty(), "a killed run leaves its files (the next run removes them)");
    let (code, out) = Running::start("echo", &["--messages", "200", "--rounds", "1", "--transport", "tcp"]).finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("removed the files of an interrupted run (pid {pid})")), "{out}");
    let left = left_behind(pid);
    assert!(left.is_empty(), "the killed run's files are still there: {left:?}");
}

#[test]
fn echo_refuses_fewer_messages_than_rounds() {
    let _serial = serial();
    let (code, out) = Running::start("echo", &["--messages", "1", "--rounds", "2"]).finish();
    assert_ne!(code, 0, "{out}");
}

// ---------------------------------------------------------------------------------
// unix_transport
// ---------------------------------------------------------------------------------

#[test]
fn unix_transport_passes_the_conformance_kit_and_exchanges_messages() {
    let _serial = serial();
    let run = Running::start("unix_transport", &[]);
    let pid = run.pid();
    let (code, out) = run.finish();
    assert_eq!(code, 0, "unix_transport failed; it printed:\n{out}");
    for variant in ["unix", "unix+shm"] {
        for case in tcpshm::proto::testkit::CASE_NAMES {
            let ok = out.lines().any(|l| l.split_whitespace().take(3).eq(["ok", case, variant]));
            assert!(ok, "case {case} ({variant}) not reported ok:\n{out}");
        }
    }
    let n = 2 * tcpshm::proto::testkit::CASE_NAMES.len();
    assert!(out.lines().any(|l| l.starts_with(&format!("PASS: {n} passed, 0 failed"))), "{out}");
    assert!(out.contains(r#"login 1: echoed ["one", "two", "three"]"#), "{out}");
    assert!(out.contains(r#"login 2: echoed ["four", "five"]"#), "{out}");
    assert!(out.contains("2 queued messages to (re)send"), "{out}");
    let left = left_behind(pid);
    assert!(left.is_empty(), "unix_transport left behind: {left:?}");
}

#[test]
fn unix_transport_runs_one_case_and_refuses_an_unknown_one() {
    let _serial = serial();
    let (code, out) = Running::start("unix_transport", &["--case", "cut_mid_stream"]).finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS: 2 passed, 0 failed"), "{out}");
    assert!(!out.contains("demo:"), "{out}");
    let (code, out) = Running::start("unix_transport", &["--case", "no_such_case"]).finish();
    assert_ne!(code, 0, "{out}");
    let (code, out) = Running::start("unix_transport", &["--list"]).finish();
    assert_eq!(code, 0);
    assert_eq!(out.lines().collect::<Vec<_>>(), tcpshm::proto::testkit::CASE_NAMES);
}

// ---------------------------------------------------------------------------------
// echo_server and echo_client
// ---------------------------------------------------------------------------------

/// An echo server on a free port with its files in `dir`.
struct EchoServer {
    listen: String,
    storage: String,
    prefix: String,
}

impl EchoServer {
    fn new(dir: &TempDir) -> EchoServer {
        EchoServer {
            listen: format!("127.0.0.1:{}", free_port()),
            storage: dir.join("server").display().to_string(),
            prefix: dir.shm_prefix().to_string(),
        }
    }

    fn start(&self, extra: &[&str]) -> Running {
        let mut args = vec![
            "--listen",
            &self.listen,
            "--storage-dir",
            &self.storage,
            "--shm-prefix",
            &self.prefix,
            "--idle-sleep-us",
            "100",
            "--stats-secs",
            "0",
            "--max-message",
            "4096",
            "--queue-bytes",
            "1048576",
        ];
        args.extend_from_slice(extra);
        let mut s = Running::start("echo_server", &args);
        s.wait_for("listening on");
        s
    }

    fn client(&self, dir: &TempDir, transport: &str, extra: &[&str]) -> Running {
        let storage = dir.join("client").display().to_string();
        let mut args = vec![
            "--connect",
            &self.listen,
            "--storage-dir",
            &storage,
            "--shm-prefix",
            &self.prefix,
            "--transport",
            transport,
            "--max-message",
            "4096",
            "--queue-bytes",
            "1048576",
            "--give-up-secs",
            "120",
        ];
        args.extend_from_slice(extra);
        Running::start("echo_client", &args)
    }
}

#[test]
fn echo_client_ping_over_both_transports() {
    let _serial = serial();
    let dir = TempDir::new("examples-ping");
    let srv = EchoServer::new(&dir);
    let _server = srv.start(&[]);
    for transport in ["tcp", "shm"] {
        let (code, out) = srv.client(&dir, transport, &["--mode", "ping", "--messages", "2000"]).finish();
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("connected to EchoServer over {transport}")), "{out}");
        assert!(out.contains("ping: 2000 round trips"), "{out}");
        assert!(out.contains("0 reconnects"), "{out}");
    }
}

/// How the server dies under the streaming client.
#[derive(Clone, Copy)]
enum Kill {
    /// SIGKILL from outside, twice, while the client streams.
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
    let dir = TempDir::new(&format!("examples-restart-{transport}"));
    let srv = EchoServer::new(&dir);
    let self_kill = match kill {
        Kill::SelfAfterEcho(n) => n.to_string(),
        Kill::TwiceFromOutside => String::new(),
    };
    let mut server = match kill {
        Kill::SelfAfterEcho(_) => srv.start(&["--kill-self-after-echo", &self_kill]),
        Kill::TwiceFromOutside => srv.start(&[]),
    };
    let reconnects = match kill {
        Kill::TwiceFromOutside => 2,
        Kill::SelfAfterEcho(_) => 1,
    };
    let reconnects_arg = reconnects.to_string();
    // The client streams until the connection came back `reconnects` times: the kills
    // below land while it streams, whatever the machine's speed.
    let mut client = srv.client(
        &dir,
        transport,
        &["--mode", "stream", "--messages", "50000", "--window", "256", "--until-reconnects", &reconnects_arg],
    );
    client.wait_for("connected to EchoServer");
    match kill {
        Kill::TwiceFromOutside => {
            for _ in 0..2 {
                // Streaming for a while (a progress line) before the kill.
                client.wait_for("stream: ");
                server.kill(); // SIGKILL: no goodbye, no flush
                drop(server);
                server = srv.start(&[]);
                client.wait_for(&format!("reconnected to EchoServer over {transport}"));
            }
        }
        Kill::SelfAfterEcho(_) => {
            server.wait_for("killing this process");
            let (code, _) = server.finish();
            assert_ne!(code, 0, "the server was to kill itself");
            server = srv.start(&[]);
            client.wait_for("reconnected to EchoServer");
        }
    }
    let (code, out) = client.finish();
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

// ---------------------------------------------------------------------------------
// sharded_server
// ---------------------------------------------------------------------------------

/// Four demo clients over two groups: each policy here puts two in each group
/// (least-loaded counts logins still in flight to a group; by-name hashes these four
/// names two and two).
fn sharded_server_spreads_demo_clients(policy: &str, transport: &str) {
    let _serial = serial();
    let run = Running::start(
        "sharded_server",
        &[
            "--groups",
            "2",
            "--policy",
            policy,
            "--transport",
            transport,
            "--demo-clients",
            "4",
            "--demo-secs",
            "1",
            "--stats-secs",
            "0",
        ],
    );
    let pid = run.pid();
    let (code, out) = run.finish();
    assert_eq!(code, 0, "sharded_server failed; it printed:\n{out}");
    assert_eq!(out.matches("replies checked").count(), 4, "{out}");
    for g in 0..2 {
        assert_eq!(out.matches(&format!("group {g}: demo-")).count(), 2, "{policy}: 2 clients per group:\n{out}");
    }
    assert_eq!(out.matches("disconnected (").count(), 4, "every disconnect is reported:\n{out}");
    let handled =
        out.lines().find_map(|l| l.strip_prefix("messages handled per group: ")).unwrap_or_else(|| panic!("{out}"));
    assert!(handled.split(", ").all(|n| n.parse::<u64>().is_ok_and(|n| n > 0)), "a group handled nothing:\n{out}");
    let left = left_behind(pid);
    assert!(left.is_empty(), "sharded_server left behind: {left:?}");
}

#[test]
fn sharded_server_round_robin_spreads_clients() {
    sharded_server_spreads_demo_clients("round-robin", "tcp");
}

#[test]
fn sharded_server_least_loaded_spreads_a_burst_of_clients_over_shm() {
    sharded_server_spreads_demo_clients("least-loaded", "shm");
}

#[test]
fn sharded_server_by_name() {
    sharded_server_spreads_demo_clients("by-name", "both");
}

// ---------------------------------------------------------------------------------
// order_entry
// ---------------------------------------------------------------------------------

fn order_entry(alice: &str, bob: &str) {
    let _serial = serial();
    let run = Running::start("order_entry", &["--alice", alice, "--bob", bob]);
    let pid = run.pid();
    let (code, out) = run.finish();
    assert_eq!(code, 0, "order_entry failed; it printed:\n{out}");
    // In this order: each step waits for the one before.
    let steps = [
        format!("alice: logged in over {alice}"),
        "alice: call 0 answered: order 1 resting (buy 100 @ 50, 0 filled now)".to_string(),
        "ticks of market data".to_string(),
        "exchange: alice disconnected".to_string(),
        format!("bob: logged in over {bob}"),
        "bob: sold 100 @ 49 as order 2: 100 filled".to_string(),
        format!("alice: logged in over {alice}"),
        "alice: fill: order 1 filled 100 @ 50".to_string(),
        "alice: got the fill pushed while she was offline".to_string(),
        "exchange: 1 fills pushed".to_string(),
        "done".to_string(),
    ];
    let mut lines = out.lines();
    for step in &steps {
        assert!(lines.any(|l| l.contains(step.as_str())), "no {step:?} (in order) in:\n{out}");
    }
    assert_eq!(out.matches("alice: fill:").count(), 1, "exactly one fill for alice:\n{out}");
    // The exchange pushed the fill while bob's order was handled (its line and bob's
    // come from two threads: either may be printed first), before alice came back.
    let at = |needle: &str, from: usize| out.lines().skip(from).position(|l| l.contains(needle)).map(|p| p + from);
    let bob_in = at("bob: logged in", 0).expect("checked above");
    let pushed = at("exchange: pushed a fill to alice", 0);
    let alice_back = at("alice: logged in", at("alice: logged off", 0).expect("checked above"));
    assert!(
        pushed.is_some_and(|p| p > bob_in && alice_back.is_some_and(|b| p < b)),
        "the fill was not pushed between bob's login and alice's return:\n{out}"
    );
    assert!(out.contains("exchange: pushed a fill to alice (offline: kept for the next login)"), "{out}");
    let left = left_behind(pid);
    assert!(left.is_empty(), "order_entry left behind: {left:?}");
}

#[test]
fn order_entry_alice_over_shm_bob_over_tcp() {
    order_entry("shm", "tcp");
}

#[test]
fn order_entry_alice_over_tcp_bob_over_shm() {
    order_entry("tcp", "shm");
}

// ---------------------------------------------------------------------------------
// All of them
// ---------------------------------------------------------------------------------

#[test]
fn every_example_documents_its_flags() {
    let _serial = serial();
    for (name, flags) in [
        ("echo", &["--messages", "--rounds", "--warmup", "--transport", "--no-pin", "--seed"][..]),
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
                "--until-reconnects",
            ][..],
        ),
        ("sharded_server", &["--groups", "--policy", "--demo-clients"][..]),
        ("unix_transport", &["--case", "--list"][..]),
        ("order_entry", &["--alice", "--bob", "--ticks"][..]),
    ] {
        let (code, out) = Running::start(name, &["--help"]).finish();
        assert_eq!(code, 0, "{name} --help failed:\n{out}");
        for f in flags {
            assert!(out.contains(f), "{name} --help does not mention {f}:\n{out}");
        }
    }
}
