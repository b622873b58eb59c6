//! Network cut: a server and a client process in two network namespaces joined by a
//! veth pair stream numbered messages both ways (the roles of `crash.rs`, every
//! message verified and reported the same crash-consistent way); mid-stream the link
//! goes down for longer than the connection timeout (heartbeat 100 ms, timeout
//! 500 ms on both sides), so both sides drop the connection; then the link comes back,
//! the client reconnects, and at the end every message was popped exactly once, in
//! order, on both sides (`support::check`). Over TCP and over shared memory (the
//! rings live in /dev/shm, shared by the namespaces; the TCP control channel is what
//! the cut breaks).
//!
//! Needs root and the `ip` tool (iproute2). Otherwise the tests print why and return
//! (set `TCPSHM_NETNS_REQUIRED=1` to make that a failure, e.g. in CI). The namespaces
//! (and with them the veth pair) are removed by a guard even when a test fails; their
//! names are unique per run.

mod common;
mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::check::SideCheck;
use support::content::server_target;
use support::procs::{lock, ChildProc, PrefixCleanup, SideState};
use support::roles::{Role, RoleEnv};
use tcpshm_client::TransportKind;

/// Client messages over TCP (the server sends a quarter more).
const MESSAGES_TCP: u64 = 100_000;
/// Over shared memory: more, because the rings keep flowing after the cut until the
/// timeout closes the session (up to ~300,000 messages in those 500 ms here), and the
/// stream must still be running then.
const MESSAGES_SHM: u64 = 1_000_000;
/// How long the link stays down: several connection timeouts.
const CUT: Duration = Duration::from_millis(1_500);
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

/// Two network namespaces joined by a veth pair; removed on drop.
struct Netns {
    server_ns: String,
    client_ns: String,
    server_if: String,
    created: Vec<String>,
}

impl Netns {
    /// Creates the namespaces and the link, or says why it cannot.
    fn new(tag: &str) -> Result<Netns, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string();
        if uid != "0" {
            return Err(format!("needs root to create network namespaces (effective uid {uid})"));
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("the `ip` tool is missing (install iproute2: `apt-get install -y iproute2`)".into());
        }
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

fn diagnose(states: &[(&str, &Arc<Mutex<SideState>>)]) -> String {
    let mut out = String::new();
    for (name, st) in states {
        let s = lock(st);
        out += &format!(
            "  {name}: error {:?}; next expected {:?}; {} connects, {} disconnects; last lines:\n{}",
            s.error,
            s.check.next_expected(),
            s.check.connects,
            s.check.disconnects,
            s.tail_text()
        );
    }
    out
}

/// Progress of a side: (next expected inbound message, connects, disconnects, finished).
fn progress(st: &Mutex<SideState>) -> (u64, u64, u64, bool) {
    let s = lock(st);
    (s.check.next_expected().unwrap_or(0), s.check.connects, s.check.disconnects, s.check.finished())
}

fn fail_on_error(tag: &str, states: &[(&str, &Arc<Mutex<SideState>>)], procs: &mut [&mut ChildProc]) {
    for (name, st) in states {
        let error = lock(st).error.clone();
        if let Some(e) = error {
            panic!("netns {tag}: {name}: {e}\n{}", diagnose(states));
        }
    }
    for p in procs.iter_mut() {
        if let Some(status) = p.exited() {
            std::thread::sleep(Duration::from_millis(50));
            panic!("netns {tag}: a process ended by itself ({status})\n{}", diagnose(states));
        }
    }
}

/// Waits until `cond` holds (checking for errors meanwhile), at most `limit`.
fn wait_for(
    tag: &str,
    what: &str,
    limit: Duration,
    states: &[(&str, &Arc<Mutex<SideState>>)],
    procs: &mut [&mut ChildProc],
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        fail_on_error(tag, states, procs);
        assert!(Instant::now() < deadline, "netns {tag}: {what}: not within {limit:?}\n{}", diagnose(states));
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn cut_test(kind: TransportKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tag = if kind == TransportKind::Tcp { "tcp" } else { "shm" };
    let ns = match Netns::new(tag) {
        Ok(ns) => ns,
        Err(reason) => {
            let required = std::env::var("TCPSHM_NETNS_REQUIRED").is_ok_and(|v| v == "1");
            assert!(!required, "netns {tag}: cannot run and TCPSHM_NETNS_REQUIRED=1: {reason}");
            eprintln!("netns {tag}: SKIPPED: {reason}");
            return;
        }
    };
    let messages = if kind == TransportKind::Tcp { MESSAGES_TCP } else { MESSAGES_SHM };
    let dir = common::TempDir::new(&format!("netns-{tag}"));
    std::fs::create_dir_all(dir.path()).unwrap();
    let prefix = format!("e2enet{}{tag}-", std::process::id());
    let _shm_cleanup = PrefixCleanup { dir: "/dev/shm".into(), prefix: prefix.clone() };
    let addr: SocketAddr = (SERVER_IP, PORT).into();
    let server_env = RoleEnv {
        role: Role::Server,
        kind,
        addr,
        dir: dir.path().to_path_buf(),
        shm_prefix: prefix,
        messages,
        heartbeat_ms: 100,
        timeout_ms: 500,
        connect_timeout_ms: 300,
    };
    let client_env = RoleEnv { role: Role::Client, ..server_env.clone() };
    let server_out = server_target(messages);
    let server_state = SideState::new(
        SideCheck::new("server", messages, server_out).with_replies(|c| (server_target(c), server_target(c + 1))),
    );
    let client_state = SideState::new(SideCheck::new("client", server_out, messages));
    let states = [("server", &server_state), ("client", &client_state)];
    let start = Instant::now();
    let mut server =
        ChildProc::spawn("child_process", &["ip", "netns", "exec", &ns.server_ns], &server_env, &server_state);
    let mut client =
        ChildProc::spawn("child_process", &["ip", "netns", "exec", &ns.client_ns], &client_env, &client_state);

    // Mid-stream: a tenth of the way.
    let limit = Duration::from_secs(30);
    wait_for(tag, "a tenth of the stream", limit, &states, &mut [&mut server, &mut client], || {
        progress(&server_state).0 >= messages / 10
    });
    let (s_before, c_before) = (progress(&server_state), progress(&client_state));
    assert!(!s_before.3 && !c_before.3, "netns {tag}: the stream ended before the cut");
    ns.link(false);
    let cut_at = Instant::now();
    // Both sides must notice (timeout), and the stream must stop.
    wait_for(tag, "both sides to drop the connection", limit, &states, &mut [&mut server, &mut client], || {
        progress(&server_state).2 > s_before.2 && progress(&client_state).2 > c_before.2
    });
    let noticed = cut_at.elapsed();
    let (s_dropped, c_dropped) = (progress(&server_state), progress(&client_state));
    assert!(
        !s_dropped.3 || !c_dropped.3,
        "netns {tag}: the whole stream went through before the connection dropped: use more messages"
    );
    std::thread::sleep(CUT.saturating_sub(noticed));
    let (s_during, c_during) = (progress(&server_state), progress(&client_state));
    ns.link(true);
    let restored_at = Instant::now();
    wait_for(tag, "the end of the stream", Duration::from_secs(60), &states, &mut [&mut server, &mut client], || {
        progress(&server_state).3 && progress(&client_state).3
    });
    let recovered = restored_at.elapsed();
    for (name, p) in [("server", server), ("client", client)] {
        let (status, by_itself) = p.stop(Duration::from_secs(5));
        assert!(
            by_itself && status.is_some_and(|s| s.success()),
            "netns {tag}: {name} did not exit cleanly: {status:?}"
        );
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
    let (s_end, c_end) = (progress(&server_state), progress(&client_state));
    // The client reconnected after the cut (and only the cut broke the connection).
    assert!(c_end.1 >= 2, "netns {tag}: the client never reconnected: {c_end:?}");
    eprintln!(
        "netns {tag}: {messages} + {server_out} messages in {:.2?}; cut at {}/{} (server/client received), both \
         sides dropped the connection {noticed:.2?} after the cut; during the cut they reached {}/{}; link down \
         {:.2?}, stream done {recovered:.2?} after it came back; client connects {}, disconnects {}; server \
         logons {}, disconnects {}",
        start.elapsed(),
        s_before.0,
        c_before.0,
        s_during.0,
        c_during.0,
        restored_at - cut_at,
        c_end.1,
        c_end.2,
        s_end.1,
        s_end.2,
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
