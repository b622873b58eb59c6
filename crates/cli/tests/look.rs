//! `ls`, `inspect`, `check` and `stat`, run as the built binary against a running
//! server (this process) while two clients — TCP and shared memory — echo flat out:
//! read-only, safe on live files, right about who holds what; `--json` parsed.

mod common;

use common::*;
use serde_json::Value;
use std::sync::atomic::Ordering;
use tcpshm_client::TransportKind;

fn session<'a>(ls: &'a Value, local: &str, remote: &str) -> &'a Value {
    ls["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == local && s["remote"] == remote)
        .unwrap_or_else(|| panic!("no session {local}@{remote} in {ls:#}"))
}

fn stat_session<'a>(stat: &'a Value, client: &str) -> &'a Value {
    stat["servers"][0]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["client"] == client)
        .unwrap_or_else(|| panic!("no session of {client} in {stat:#}"))
}

#[test]
fn ls_inspect_check_and_stat_while_traffic_flows() {
    let env = Env::new("cli-look");
    let server = Running::start(env.server_cfg("Srv"));
    let (a, b) = (
        Traffic::start(connect(&env.client_cfg("alice"), server.addr, TransportKind::Tcp)),
        Traffic::start(connect(&env.client_cfg("bob"), server.addr, TransportKind::Shm)),
    );
    let moving = || a.done.load(Ordering::Relaxed).min(b.done.load(Ordering::Relaxed));
    wait_until("traffic on both", || (moving() > 50).then_some(()));
    let me = u64::from(std::process::id());
    let dir = env.server_dir();
    let (dir_s, clients_s) = (dir.to_str().unwrap(), env.client_dir());
    let store = dir.join("Srv@bob.tcpshm");
    let store_s = store.to_str().unwrap();
    let shm_file = format!("/dev/shm/{}Srv@bob.shm", env.t.shm_prefix());

    // ls: both sessions, held by this process, bob's over shared memory.
    let ls = env.json(&["ls", dir_s], 0);
    assert_eq!(ls["sessions"].as_array().unwrap().len(), 2, "{ls:#}");
    let bob = session(&ls, "Srv", "bob");
    assert_eq!((bob["side"].as_str(), bob["transport"].as_str()), (Some("server"), Some("shm")), "{bob:#}");
    assert_eq!(bob["holder_pid"], me);
    assert_eq!(
        (bob["shm"]["server_attached"].as_bool(), bob["shm"]["client_attached"].as_bool()),
        (Some(true), Some(true))
    );
    let alice = session(&ls, "Srv", "alice");
    assert_eq!((alice["transport"].as_str(), alice["shm"].is_null()), (Some("tcp"), true), "{alice:#}");
    assert!(alice["consumed"].as_u64().unwrap() > 0, "{alice:#}");
    assert_eq!(ls["live_servers"][0]["server"], "Srv");
    let ls = env.json(&["ls", clients_s.to_str().unwrap()], 0);
    let bob_client = session(&ls, "bob", "server");
    assert_eq!((bob_client["side"].as_str(), bob_client["epoch"].as_str()), (Some("client"), Some("Srv")));
    let text = env.text(&["ls", dir_s]);
    assert!(
        text.contains("Srv@bob") && text.contains(&format!("pid {me}")) && text.contains("live server Srv"),
        "{text}"
    );

    // inspect, many times while the traffic flows: each a consistent read-only copy.
    let before = moving();
    for _ in 0..5 {
        let i = env.json(&["inspect", store_s], 0);
        assert_eq!(
            (i["kind"].as_str(), i["local"].as_str(), i["remote"].as_str()),
            (Some("store"), Some("Srv"), Some("bob"))
        );
        assert_eq!((i["holder_pid"].as_u64(), i["damaged"].as_bool()), (Some(me), Some(false)), "{i:#}");
        let s = env.json(&["inspect", &shm_file], 0);
        assert_eq!(
            (s["server"].as_str(), s["client"].as_str(), s["logins"].as_u64()),
            (Some("Srv"), Some("bob"), Some(1))
        );
        assert_eq!(s["rings"].as_array().unwrap().len(), 2);
        for r in s["rings"].as_array().unwrap() {
            assert!(r["fault"].is_null(), "{r:#}");
            for m in r["messages"].as_array().unwrap() {
                assert!(m["preview"].as_str().unwrap().starts_with("\"message "), "{m:#}");
            }
        }
    }
    let text = env.text(&["inspect", &shm_file]);
    assert!(text.contains("server: attached, recorded pid") && text.contains("client->server ring"), "{text}");
    let text = env.text(&["inspect", store_s]);
    assert!(text.contains("check: opens") && text.contains(&format!("held by: pid {me}")), "{text}");

    // check: two stores and the shared-memory file, all sound.
    let c = env.json(&["check", dir_s], 0);
    assert_eq!((c["damaged"].as_u64(), c["files"].as_array().unwrap().len()), (Some(0), 3), "{c:#}");
    let text = env.text(&["check", dir_s]);
    assert!(text.ends_with("3 files checked, 0 damaged\n"), "{text}");

    // stat: the live counters move with the traffic.
    let seen = |stat: &Value, who| stat_session(stat, who)["received"].as_u64().unwrap();
    let stat = env.json(&["stat", "--once"], 0);
    assert_eq!(
        (stat["servers"][0]["server"].as_str(), stat["servers"][0]["live"].as_bool()),
        (Some("Srv"), Some(true))
    );
    assert_eq!(stat["servers"][0]["control"]["admitted"], 2);
    for (who, transport) in [("alice", "tcp"), ("bob", "shm")] {
        let s = stat_session(&stat, who);
        assert_eq!(
            (s["state"].as_str(), s["transport"].as_str(), s["logins"].as_u64()),
            (Some("up"), Some(transport), Some(1))
        );
        assert!(s["last_close"].is_null());
    }
    let first = (seen(&stat, "alice"), seen(&stat, "bob"));
    wait_until("the counters to move", || {
        let stat = env.json(&["stat", "--once"], 0);
        (seen(&stat, "alice") > first.0 && seen(&stat, "bob") > first.1).then_some(())
    });
    assert!(moving() > before, "the traffic went on while the files were read");
    let text = env.text(&["stat", "--once", "--server", "Srv"]);
    assert!(text.starts_with("server Srv  pid") && text.contains("alice") && text.contains(" up "), "{text}");

    // A disconnect shows: down, with the reason.
    let alice = a.stop();
    drop(alice);
    wait_until("alice down in stat", || {
        let stat = env.json(&["stat", "--once"], 0);
        let s = stat_session(&stat, "alice").clone();
        (s["state"] == "down").then_some(s)
    });
    let stat = env.json(&["stat", "--once"], 0);
    let s = stat_session(&stat, "alice");
    assert!(s["last_close"]["name"].is_string(), "{s:#}");
    assert_eq!(stat_session(&stat, "bob")["state"], "up");
    drop(b.stop());
    server.stop();
    // The server is gone, and its counters with it.
    let err = env.error(&["stat", "--once"]);
    assert!(err.contains("no running tcpshm server") && err.contains(env.stats_dir().to_str().unwrap()), "{err}");
}
