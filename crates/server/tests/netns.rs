//! Network cut: a server and a client process in two network namespaces joined by a
//! veth pair stream numbered messages both ways (the roles of `crash.rs`, every
//! message verified and reported the same crash-consistent way); mid-stream the link
//! goes down until both sides dropped the connection (heartbeat 100 ms, timeout
//! 500 ms on both sides) and the client's logins fail; then the link comes back, the
//! client reconnects, and at the end every message was popped exactly once, in
//! order, on both sides (`support::check`). Over TCP and over shared memory (the
//! rings live in /dev/shm, shared by the namespaces; the control stream is what the
//! cut breaks).
//!
//! Every step waits on what the processes report, never on a sleep: the stream is
//! held back by the client's push limit (`support::roles`), so it is still running
//! at the cut on any machine; the link comes back only once both sides reported the
//! drop and the client reported a failed login.
//!
//! Needs root and the `ip` tool (iproute2). Otherwise the tests record a skip
//! (`tcpshm_test_support::skip`; with `TCPSHM_REQUIRE_ALL=1` that is a failure).
//! The namespaces (and with them the veth pair) are removed by a guard even when a
//! test fails; their names are unique per run.

mod common;
mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::check::SideCheck;
use support::content::server_target;
use support::procs::{diagnose, lock, spawn, Side, SideState};
use support::roles::{Role, RoleEnv};
use tcpshm_client::TransportKind;
use tcpshm_test_support::child::Proc;
use tcpshm_test_support::TempDir;

/// Client messages (the server sends a quarter more).
const MESSAGES: u64 = 200_000;
const SERVER_IP: [u8; 4] = [10, 199, 0, 1];
const CLIENT_IP: [u8; 4] = [10, 199, 0, 2];
const PORT: u16 = 7_411;

/// The entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_process() {
    support::roles::child_main();
}

/// One namespace test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `ip args...`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        return Some(format!("needs root to create network namespaces (effective uid {})", uid.unwrap_or("?")));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` tool is missing (install iproute2: `apt-get install -y iproute2`)".into());
    }
    None
}

/// Two network namespaces joined by a veth pair; removed on drop.
struct Netns {
    server_ns: String,
    client_ns: String,
    server_if: String,
    created: Vec<String>,
}

impl Netns {
    /// Creates the namespaces and the link.
    fn new(tag: &str) -> Result<Netns, String> {
        let id = std::process::id();
        let mut ns = Netns {
            server_ns: format!("tcpshm-{tag}-s-{id}"),
            client_ns: format!("tcpshm-{tag}-c-{id}"),
            // Interface names: at most 15 bytes.
            server_if: format!("ts{tag}{}", id % 1_000_000),
            created: Vec::new(),
        };
        let client_if = format!("tc{tag}{}", id % 1_000_000);
        for n in [ns.server_ns.clone(), ns.client_ns.clone()] {
            ip(&["netns", "add", &n])?;
            ns.created.push(n);
        }
        let (s_ip, c_ip) = (cidr(SERVER_IP), cidr(CLIENT_IP));
        let (sn, cn, si) = (ns.server_ns.as_str(), ns.client_ns.as_str(), ns.server_if.as_str());
        ip(&["link", "add", si, "netns", sn, "type", "veth", "peer", "name", &client_if, "netns", cn])?;
        ip(&["-n", sn, "addr", "add", &s_ip, "dev", si])?;
        ip(&["-n", cn, "addr", "add", &c_ip, "dev", &client_if])?;
        for (n, dev) in [(sn, "lo"), (sn, si), (cn, "lo"), (cn, client_if.as_str())] {
            ip(&["-n", n, "link", "set", dev, "up"])?;
        }
        Ok(ns)
    }

    /// Brings the server's end of the link down or up.
    fn link(&self, up: bool) {
        ip(&["-n", &self.server_ns, "link", "set", &self.server_if, if up { "up" } else { "down" }]).unwrap();
    }
}

fn cidr(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}/24", a[0], a[1], a[2], a[3])
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        for n in &self.created {
            if let Err(e) = ip(&["netns", "del", n]) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}

/// Progress of a side: (next expected inbound message, connects, disconnects,
/// failed logins, finished).
fn progress(st: &Side) -> (u64, u64, u64, u64, bool) {
    let s = lock(st);
    (s.check.next_expected().unwrap_or(0), s.check.connects, s.check.disconnects, s.check.retries, s.check.finished())
}

/// Waits until `cond` holds, failing at the first checker error or process that
/// ended by itself, or when nothing happens for the wait limit.
fn watch(tag: &str, what: &str, states: &[(&str, &Side)], procs: &mut [&mut Proc], mut cond: impl FnMut() -> bool) {
    let snapshot = || states.iter().map(|(_, s)| progress(s)).collect::<Vec<_>>();
    let mut last = (snapshot(), Instant::now());
    loop {
        for (name, st) in states {
            let error = lock(st).error.clone();
            if let Some(e) = error {
                panic!("netns {tag}: {name}: {e}\n{}", diagnose(states));
            }
        }
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                panic!("netns {tag}: a process ended by itself ({status})\n{}", diagnose(states));
            }
        }
        if cond() {
            return;
        }
        let now = snapshot();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > tcpshm_test_support::WAIT {
            panic!("netns {tag}: nothing happened for {:?} waiting for {what}\n{}", last.1.elapsed(), diagnose(states));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn cut_test(kind: TransportKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tag = if kind == TransportKind::Tcp { "tcp" } else { "shm" };
    let name = format!("netns::network_cut_{tag}");
    if let Some(why) = cannot_run() {
        tcpshm_test_support::skip::skip(&name, &why);
        return;
    }
    let ns = Netns::new(tag).unwrap_or_else(|e| panic!("netns {tag}: cannot set up the namespaces: {e}"));
    let dir = TempDir::new(&format!("netns-{tag}"));
    std::fs::create_dir_all(dir.path()).unwrap();
    let addr: SocketAddr = (SERVER_IP, PORT).into();
    let server_env = RoleEnv {
        role: Role::Server,
        kind,
        addr,
        dir: dir.path().to_path_buf(),
        client_dir: None,
        shm_prefix: dir.shm_prefix().to_string(),
        messages: MESSAGES,
        heartbeat_ms: 100,
        timeout_ms: 500,
        connect_timeout_ms: 300,
        limit: None,
    };
    // Held back at a fifth of the stream until the cut is over.
    let client_env = RoleEnv { role: Role::Client, limit: Some(MESSAGES / 5), ..server_env.clone() };
    let server_out = server_target(MESSAGES);
    let server_state = SideState::new(
        SideCheck::new("server", MESSAGES, server_out).with_replies(|c| (server_target(c), server_target(c + 1))),
    );
    let client_state = SideState::new(SideCheck::new("client", server_out, MESSAGES));
    let states = [("server", &server_state), ("client", &client_state)];
    let start = Instant::now();
    let mut server = spawn("child_process", &["ip", "netns", "exec", &ns.server_ns], &server_env, &server_state);
    let mut client = spawn("child_process", &["ip", "netns", "exec", &ns.client_ns], &client_env, &client_state);

    // Mid-stream: a tenth of the way, with more in flight.
    watch(tag, "a tenth of the stream", &states, &mut [&mut server, &mut client], || {
        progress(&server_state).0 >= MESSAGES / 10
    });
    let (s_before, c_before) = (progress(&server_state), progress(&client_state));
    ns.link(false);
    let cut_at = Instant::now();
    // Both sides notice (timeout), and the client's logins fail while the link is down.
    watch(tag, "both sides to drop the connection", &states, &mut [&mut server, &mut client], || {
        progress(&server_state).2 > s_before.2 && progress(&client_state).2 > c_before.2
    });
    let noticed = cut_at.elapsed();
    let c_dropped = progress(&client_state);
    watch(tag, "a failed login of the client", &states, &mut [&mut server, &mut client], || {
        progress(&client_state).3 > c_dropped.3
    });
    let (s_during, c_during) = (progress(&server_state), progress(&client_state));
    assert!(!s_during.4 && !c_during.4, "netns {tag}: the stream ended during the cut");
    ns.link(true);
    let restored_at = Instant::now();
    client.send_line(&format!("limit {MESSAGES}"));
    watch(tag, "the end of the stream", &states, &mut [&mut server, &mut client], || {
        progress(&server_state).4 && progress(&client_state).4
    });
    let recovered = restored_at.elapsed();
    // Counted before the processes are stopped (each may see the other go first).
    let (s_end, c_end) = (progress(&server_state), progress(&client_state));
    for (name, p) in [("client", client), ("server", server)] {
        let status = p.stop();
        assert!(status.success(), "netns {tag}: {name} did not exit cleanly: {status:?}");
    }
    for (name, st) in &states {
        let (error, finish) = {
            let s = lock(st);
            (s.error.clone(), s.check.finish())
        };
        if let Some(e) = error {
            panic!("netns {tag}: {name}: {e}\n{}", diagnose(&states));
        }
        if let Err(e) = finish {
            panic!("netns {tag}: {e}\n{}", diagnose(&states));
        }
    }
    // The client reconnected after the cut (and only the cut broke the connection).
    assert_eq!((c_end.1, c_end.2), (2, 1), "netns {tag}: client connects and disconnects: {c_end:?}");
    assert_eq!((s_end.1, s_end.2), (2, 1), "netns {tag}: server logons and disconnects: {s_end:?}");
    eprintln!(
        "netns {tag}: {MESSAGES} + {server_out} messages in {:.2?}; cut at {}/{} (server/client received), both \
         sides dropped the connection {noticed:.2?} after the cut, at {}/{}; link down {:.2?}; stream done \
         {recovered:.2?} after it came back; client: {} failed logins",
        start.elapsed(),
        s_before.0,
        c_before.0,
        s_during.0,
        c_during.0,
        restored_at - cut_at,
        c_end.3,
    );
}

#[test]
fn network_cut_tcp() {
    cut_test(TransportKind::Tcp);
}

#[test]
fn network_cut_shm() {
    cut_test(TransportKind::Shm);
}
