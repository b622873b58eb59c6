//! The commands that change files — `reset`, `rm`, `gc` — run as the built binary:
//! refused while a process holds the session (one line naming the path and the
//! reason), then doing exactly what they say; and the remedy a lost state names is
//! the command that fixes it.

mod common;

use common::*;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tcpshm_client::{Client, ConnectError, LoginStatus, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_test_support::child::{self, Proc};

/// Pushes `n` messages and leaves before reading their echoes: the server queues `n`
/// for the client.
fn leave_echoes_behind(c: &mut Client, n: u64) {
    for i in 0..n {
        let p = format!("unread {i}");
        c.alloc(p.len()).unwrap().unwrap().copy_from_slice(p.as_bytes());
        c.push(7).unwrap();
    }
    wait_until("the server to consume them", || {
        assert!(c.poll(now()));
        (c.counters().peer_consumed >= c.counters().next_seq).then_some(())
    });
}

#[test]
fn reset_and_rm_refuse_a_live_session_then_do_what_they_say() {
    let env = Env::new("cli-reset");
    let server = Running::start(env.server_cfg("Srv"));
    let mut bob = connect(&env.client_cfg("bob"), server.addr, TransportKind::Shm);
    echo_once(&mut bob, b"hello");
    leave_echoes_behind(&mut bob, 3);
    let store = env.server_dir().join("Srv@bob.tcpshm");
    let store_s = store.to_str().unwrap();
    let shm_file = std::path::PathBuf::from(format!("/dev/shm/{}Srv@bob.shm", env.t.shm_prefix()));
    let me = std::process::id();
    for verb in ["reset", "rm"] {
        let err = env.error(&[verb, store_s]);
        assert!(err.contains(store_s) && err.contains(&format!("held by pid {me}")), "{err}");
        // The other way of naming the session says the same.
        let dir = env.server_dir();
        let err = env.error(&[verb, "--dir", dir.to_str().unwrap(), "--local", "Srv", "--remote", "bob"]);
        assert!(err.contains(store_s) && err.contains("refused"), "{err}");
    }
    // The client's side too, while this process holds it.
    let client_store = env.client_dir().join("bob@server.tcpshm");
    let err = env.error(&["reset", client_store.to_str().unwrap()]);
    assert!(err.contains("in use"), "{err}");
    assert!(exists(&store) && exists(&shm_file), "nothing was touched");

    // Stopped: the reset drops what was queued and removes the shared-memory file.
    server.stop();
    drop(bob);
    let ls = env.json(&["ls", env.server_dir().to_str().unwrap()], 0);
    let queued = ls["sessions"][0]["queued"].as_u64().unwrap();
    assert!(queued >= 3, "{ls:#}");
    let r = env.json(&["reset", store_s], 0);
    assert_eq!(r["dropped"].as_u64(), Some(queued), "{r:#}");
    assert_eq!(r["shm_removed"].as_str(), shm_file.to_str());
    assert!(exists(&store) && !exists(&shm_file));
    let i = env.json(&["inspect", store_s], 0);
    assert_eq!(
        (i["queued"].as_u64(), i["state"]["next_seq"].as_u64(), i["state"]["consumed"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    let ls = env.json(&["ls", env.server_dir().to_str().unwrap()], 0);
    assert!(ls["sessions"][0]["transport"].is_null(), "a reset session has carried nothing yet: {ls:#}");
    let text = env.text(&["ls", env.server_dir().to_str().unwrap()]);
    let row: Vec<&str> = text.lines().find(|l| l.starts_with("Srv@bob")).unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["Srv@bob", "server", "-", "-", "0"], "{text}");
    let text = env.text(&["rm", store_s]);
    assert_eq!(text, format!("removed {store_s}\n"));
    assert!(!exists(&store));
    let err = env.error(&["rm", store_s]);
    assert!(err.contains(store_s) && err.contains("no such session"), "{err}");
    let err = env.error(&["reset", "/nowhere/not-a-store.txt"]);
    assert!(err.contains("not a store file name"), "{err}");
}

/// The client lost its state (its files were deleted): the server refuses it, naming
/// its files and the command; that command, run as written, is the remedy.
#[test]
fn the_command_a_lost_state_names_is_the_remedy() {
    let env = Env::new("cli-remedy");
    let server = Running::start(env.server_cfg("Srv"));
    let cfg = env.client_cfg("carol");
    let mut carol = connect(&cfg, server.addr, TransportKind::Shm);
    for i in 0..5 {
        echo_once(&mut carol, format!("before {i}").as_bytes());
    }
    drop(carol);
    std::fs::remove_dir_all(env.client_dir()).unwrap();
    let mut carol = <Client>::open(cfg.clone(), now()).unwrap();
    let text = match carol.connect(server.addr, TransportKind::Shm, now()) {
        Err(ConnectError::Refused { status: LoginStatus::SeqMismatch, text }) => text,
        other => panic!("{other:?}"),
    };
    let store = env.server_dir().join("Srv@carol.tcpshm");
    let shm_file = format!("/dev/shm/{}Srv@carol.shm", env.t.shm_prefix());
    assert!(text.starts_with("client carol lost its state; "), "{text}");
    assert!(
        text.contains(&format!("`tcpshm reset {} --shm-prefix {}`", store.display(), env.t.shm_prefix())),
        "{text}"
    );
    assert!(text.contains(&format!("(also removes {}Srv@carol.shm)", env.t.shm_prefix())), "{text}");
    // Run the command as the text gives it, with the server stopped.
    let cmd = text.split('`').nth(1).expect("a command between backquotes");
    let args: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(&args[..2], ["tcpshm", "reset"]);
    let out = raw(&args[1..]);
    assert_eq!(out.status.code(), Some(1), "refused while the server runs: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", show(&out));
    server.stop();
    let out = raw(&args[1..]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.starts_with(&format!("reset {}", store.display())) && out.contains(&format!("removed {shm_file}")),
        "{out}"
    );
    let server = Running::start(env.server_cfg("Srv"));
    carol.connect(server.addr, TransportKind::Shm, now()).expect("the session starts afresh");
    echo_once(&mut carol, b"after");
}

/// Child role: a server's counters file, then nothing until killed.
#[test]
fn child_stats_owner() {
    if child::role().as_deref() != Some("stats-owner") {
        return;
    }
    let dir = tcpshm_stats::StatsDir::new(std::env::var("STATS_DIR").unwrap(), tcpshm_stats::StatsDir::DEFAULT_PREFIX)
        .unwrap();
    let (file, _s) = tcpshm_stats::StatsFile::create(&dir, "Gone".parse().unwrap(), "/nowhere".as_ref(), 1).unwrap();
    println!("{}", file.path().display());
    child::exit_when_stdin_closes();
    loop {
        std::thread::park();
    }
}

fn candidates(gc: &Value) -> Vec<(String, Option<String>, bool, bool)> {
    gc["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name =
                std::path::Path::new(c["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (name, c["kept"].as_str().map(str::to_owned), c["removed"].as_bool().unwrap(), c["error"].is_null())
        })
        .collect()
}

#[test]
fn gc_lists_then_removes_old_epochs_empty_sessions_and_dead_counters_never_a_live_one() {
    let env = Env::new("cli-gc");
    // A dead server's counters file: its process was killed.
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = lines.clone();
    let mut cmd = child::command("child_stats_owner", "stats-owner");
    cmd.env("STATS_DIR", env.stats_dir());
    let owner = Proc::spawn(cmd, move |line| l.lock().unwrap().push(line));
    let dead =
        wait_until("the child's counters file", || lines.lock().unwrap().iter().find(|l| l.starts_with('/')).cloned());
    owner.kill();

    // Yesterday's server Day1 with two sessions; today's Day2 on the same directory.
    let day1 = Running::start(env.server_cfg("Day1"));
    let mut x = connect(&env.client_cfg("x"), day1.addr, TransportKind::Shm);
    let mut y = connect(&env.client_cfg("y"), day1.addr, TransportKind::Tcp);
    echo_once(&mut x, b"x");
    leave_echoes_behind(&mut y, 2);
    drop(y);
    let day2 = Running::start(env.server_cfg("Day2"));
    let mut z = connect(&env.client_cfg("z"), day2.addr, TransportKind::Shm);
    echo_once(&mut z, b"z");
    // A client that never logged in leaves an empty store.
    drop(<Client>::open(env.client_cfg("w"), now()).unwrap());
    let dir = env.server_dir();
    let dir_s = dir.to_str().unwrap();
    let clients = env.client_dir();

    // While Day1 runs, its sessions are old by --server Day2, but held: kept, and said so.
    let gc = env.json(&["gc", dir_s, "--server", "Day2", "--yes"], 0);
    let c = candidates(&gc);
    let dead_name = std::path::Path::new(&dead).file_name().unwrap().to_string_lossy().into_owned();
    assert!(c.contains(&(dead_name.clone(), None, true, true)), "{gc:#}");
    for s in ["Day1@x.tcpshm", "Day1@y.tcpshm"] {
        let found = c.iter().find(|(n, ..)| n == s).unwrap_or_else(|| panic!("{s} in {gc:#}"));
        assert!(found.1.as_deref().is_some_and(|k| k.contains("in use")) && !found.2, "{gc:#}");
    }
    assert!(!c.iter().any(|(n, ..)| n.contains("Day2")), "today's sessions are never candidates: {gc:#}");
    assert!(!exists(std::path::Path::new(&dead)) && exists(&dir.join("Day1@x.tcpshm")));
    let text = env.text(&["gc", dir_s, "--server", "Day2"]);
    assert!(text.contains("kept ") && text.contains("Day1@x.tcpshm") && text.contains("but in use"), "{text}");

    // Day1 stopped: a dry run says what would go and why; nothing goes.
    day1.stop();
    drop(x);
    let gc = env.json(&["gc", dir_s, clients.to_str().unwrap()], 0);
    assert_eq!(gc["dry_run"], true);
    let mut c = candidates(&gc);
    c.sort();
    let expect: Vec<(String, Option<String>, bool, bool)> = ["Day1@x.tcpshm", "Day1@y.tcpshm", "w@server.tcpshm"]
        .iter()
        .map(|n| (n.to_string(), None, false, true))
        .collect();
    assert_eq!(c, expect, "{gc:#}");
    let whys: Vec<&str> = gc["candidates"].as_array().unwrap().iter().map(|c| c["why"].as_str().unwrap()).collect();
    assert!(whys.iter().any(|w| w.contains("earlier server name Day1") && w.contains("Day2")), "{whys:?}");
    assert!(whys.iter().any(|w| w.contains("empty session")), "{whys:?}");
    let x_shm = format!("/dev/shm/{}Day1@x.shm", env.t.shm_prefix());
    assert!(gc["candidates"].as_array().unwrap().iter().any(|c| c["also"] == x_shm.as_str()), "{gc:#}");
    let text = env.text(&["gc", dir_s, clients.to_str().unwrap()]);
    assert!(text.contains("would remove") && text.contains("dry run: 3 to remove; run again with --yes"), "{text}");
    assert!(exists(&dir.join("Day1@x.tcpshm")) && exists(std::path::Path::new(&x_shm)));

    // --yes removes them; today's session is untouched and still works.
    let text = env.text(&["gc", dir_s, clients.to_str().unwrap(), "--yes"]);
    assert_eq!(text.matches("removed ").count(), 3, "{text}");
    assert!(
        !exists(&dir.join("Day1@x.tcpshm"))
            && !exists(&dir.join("Day1@y.tcpshm"))
            && !exists(std::path::Path::new(&x_shm))
    );
    assert!(!exists(&clients.join("w@server.tcpshm")));
    let ls = env.json(&["ls", dir_s], 0);
    let names: Vec<&str> = ls["sessions"].as_array().unwrap().iter().map(|s| s["remote"].as_str().unwrap()).collect();
    assert_eq!(names, ["z"]);
    echo_once(&mut z, b"still here");
    assert_eq!(env.text(&["gc", dir_s]), "nothing to collect\n");
    drop(day2);
}
