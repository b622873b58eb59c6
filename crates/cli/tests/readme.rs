//! The README's demo of the command: a server renamed per day (yesterday's
//! `Srv20180713` left a session behind), today's `Srv20180714` with `alice` over TCP
//! and `bob` over shared memory (two echoes `bob` has not read yet); then `ls`,
//! `inspect`, `check`, `gc` and `stat --once`. The outputs' shapes — headers, the
//! first word of each line — are pinned here, so a change that makes the README's
//! output untrue fails this test. Run with `--nocapture` to print the outputs with
//! the README's paths (`/srv/gw` for the storage directory, `/dev/shm` for the
//! shared-memory and counters files, `pid 4242` for this process).

mod common;

use common::*;
use tcpshm_client::TransportKind;
use tcpshm_proto::Transport;

/// The README's spelling of this run's paths and pid.
fn readme(env: &Env, out: &str) -> String {
    let t = env.t.path().to_str().unwrap();
    out.replace(&format!("/dev/shm/{}", env.t.shm_prefix()), "/dev/shm/tcpshm-")
        .replace(&format!("{t}/stats/"), "/dev/shm/")
        .replace(&format!("{t}/server"), "/srv/gw")
        .replace(&format!("{t}/clients"), "/home/trader/tcpshm")
        .replace(&format!("pid {}", std::process::id()), "pid 4242")
        .replace(&format!("Srv20180714.{}.", std::process::id()), "Srv20180714.4242.")
}

/// The first word of each line (a table's: its first column), and the header lines whole.
fn shape(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            if l.chars().all(|c| c.is_ascii_uppercase() || c == ' ') {
                l.split_whitespace().collect::<Vec<_>>().join(" ")
            } else {
                l.split_whitespace().next().unwrap_or("").to_string()
            }
        })
        .collect()
}

#[test]
fn the_readme_demo() {
    let env = Env::new("cli-readme");
    let old = Running::start(env.server_cfg("Srv20180713"));
    let mut carol = connect(&env.client_cfg("carol"), old.addr, TransportKind::Tcp);
    echo_once(&mut carol, b"yesterday");
    drop(carol);
    old.stop();
    let server = Running::start(env.server_cfg("Srv20180714"));
    let mut alice = connect(&env.client_cfg("alice"), server.addr, TransportKind::Tcp);
    let mut bob = connect(&env.client_cfg("bob"), server.addr, TransportKind::Shm);
    for m in ["BUY 100 XYZ @ 10.25", "SELL 50 XYZ @ 10.30", "CANCEL 7"] {
        echo_once(&mut alice, m.as_bytes());
        echo_once(&mut bob, m.as_bytes());
    }
    for m in ["BUY 10 ABC @ 99.5", "SELL 10 ABC @ 99.9"] {
        bob.alloc(m.len()).unwrap().unwrap().copy_from_slice(m.as_bytes());
        bob.push(42).unwrap();
    }
    wait_until("bob's orders consumed", || {
        assert!(bob.poll(now()));
        (bob.counters().peer_consumed == bob.counters().next_seq).then_some(())
    });
    let dir = env.server_dir();
    let dir_s = dir.to_str().unwrap();
    let bob_shm = format!("/dev/shm/{}Srv20180714@bob.shm", env.t.shm_prefix());
    wait_until("the counters to show bob's orders", || {
        let stat = env.json(&["stat", "--once"], 0);
        let sessions = stat["servers"][0]["sessions"].as_array().unwrap().clone();
        sessions.iter().any(|s| s["client"] == "bob" && s["received"] == 5).then_some(())
    });

    let runs: [(&str, Vec<&str>, Vec<&str>); 5] = [
        (
            "tcpshm ls /srv/gw",
            vec!["ls", dir_s],
            vec![
                "/srv/gw:",
                "SESSION SIDE EPOCH TRANSPORT QUEUED BYTES CONSUMED MODIFIED HELD BY",
                "Srv20180713@carol",
                "Srv20180714@alice",
                "Srv20180714@bob",
                "live",
            ],
        ),
        (
            "tcpshm inspect /dev/shm/tcpshm-Srv20180714@bob.shm",
            vec!["inspect", &bob_shm],
            vec!["shared-memory", "server", "server:", "client:", "server->client", "seq", "seq", "client->server"],
        ),
        ("tcpshm check /srv/gw", vec!["check", dir_s], vec!["ok", "ok", "ok", "ok", "4"]),
        ("tcpshm gc /srv/gw", vec!["gc", dir_s], vec!["would", "dry"]),
        (
            "tcpshm stat --once",
            vec!["stat", "--once"],
            vec![
                "server",
                "connections",
                "CLIENT STATE TRANSPORT QUEUED BYTES SENT ACKED RESENT RECEIVED POPPED HEARTBEATS IDLE LOGINS LAST CLOSE",
                "alice",
                "bob",
            ],
        ),
    ];
    for (cmd, args, want) in runs {
        let out = readme(&env, &env.text(&args));
        println!("$ {cmd}\n{out}");
        assert_eq!(shape(&out), want, "{cmd}:\n{out}");
    }
    drop((alice, bob));
}
