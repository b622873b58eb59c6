//! `stat` without `--once` keeps refreshing (one JSON document per refresh with
//! `--json`) while traffic flows, and ends with one error line when the server goes;
//! `stat FILE` and `inspect FILE` read one counters file; `rm --json` says what it
//! removed.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use tcpshm_client::TransportKind;

fn received(doc: &Value, client: &str) -> u64 {
    doc["servers"][0]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["client"] == client)
        .and_then(|s| s["received"].as_u64())
        .unwrap_or(0)
}

#[test]
fn stat_refreshes_while_traffic_flows_and_stops_with_the_server() {
    let env = Env::new("cli-watch");
    let server = Running::start(env.server_cfg("Srv"));
    let bob = Traffic::start(connect(&env.client_cfg("bob"), server.addr, TransportKind::Shm));
    wait_until("traffic", || (bob.done.load(Ordering::Relaxed) > 10).then_some(()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpshm"))
        .args(["stat", "--json", "--interval", "20", "--stats-dir"])
        .arg(env.stats_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Refresh after refresh, bob's count grows: the command re-reads the live file.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = lines.next().expect("another refresh").unwrap();
        let doc: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("one JSON document a line ({e}): {line}"));
        let n = received(&doc, "bob");
        if seen.last().is_none_or(|&l| n > l) {
            seen.push(n);
        }
    }
    // The server goes: the command says so in one line and exits 1.
    drop(bob.stop());
    server.stop();
    for line in lines.by_ref() {
        line.unwrap();
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("tcpshm: ") && err.contains("no running tcpshm server"), "{err}");
}

#[test]
fn one_counters_file_by_path_and_rm_in_json() {
    let env = Env::new("cli-stats-file");
    let server = Running::start(env.server_cfg("Srv"));
    let mut alice = connect(&env.client_cfg("alice"), server.addr, TransportKind::Tcp);
    for i in 0..5 {
        echo_once(&mut alice, format!("m{i}").as_bytes());
    }
    let ls = env.json(&["ls", env.server_dir().to_str().unwrap()], 0);
    let file = ls["live_servers"][0]["counters"].as_str().expect("the live server's counters file").to_owned();
    let got = wait_until("alice's five echoes counted", || {
        let doc = env.json(&["stat", &file, "--once"], 0);
        (received(&doc, "alice") == 5).then_some(doc)
    });
    assert_eq!(
        (got["servers"][0]["server"].as_str(), got["servers"][0]["counters"].as_str()),
        (Some("Srv"), Some(&*file))
    );
    // inspect shows the same file the same way.
    let doc = env.json(&["inspect", &file], 0);
    assert_eq!(received(&doc, "alice"), 5, "{doc:#}");
    let text = env.text(&["inspect", &file]);
    assert!(text.starts_with("server Srv  pid") && text.contains("alice"), "{text}");
    // rm --json, once nobody holds the session.
    drop(alice);
    server.stop();
    let store = env.server_dir().join("Srv@alice.tcpshm");
    let r = env.json(&["rm", store.to_str().unwrap()], 0);
    assert_eq!(
        (r["action"].as_str(), r["store"].as_str(), r["store_existed"].as_bool()),
        (Some("rm"), store.to_str(), Some(true)),
        "{r:#}"
    );
    assert!(r["shm_removed"].is_null(), "a TCP session has no shared-memory file: {r:#}");
    assert!(!exists(&store));
}
