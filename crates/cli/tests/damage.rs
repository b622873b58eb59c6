//! `check` finds damage (exit status 3, typed findings), `inspect` still shows a
//! damaged file, `reset` refuses one it cannot empty; and every error of the command
//! is one line naming the path and the reason, with exit status 1.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use tcpshm_persist::{Options, Store};
use tcpshm_proto::Name;

fn store_with(dir: &std::path::Path, local: &str, remote: &str, n: usize) -> std::path::PathBuf {
    let (l, r) = (Name::new(local).unwrap(), Name::new(remote).unwrap());
    let (mut s, _) = Store::open(dir, l, r, &Options::new(4096), None, 0).unwrap();
    for i in 0..n {
        let p = format!("payload {i}");
        s.alloc(p.len()).unwrap().unwrap().copy_from_slice(p.as_bytes());
        s.push(9, 0).unwrap();
    }
    s.path().to_path_buf()
}

#[test]
fn check_finds_damage_and_inspect_still_shows_the_file() {
    let env = Env::new("cli-damage");
    let dir = env.t.join("data");
    let good = store_with(&dir, "srv", "good", 2);
    let bad = store_with(&dir, "srv", "bad", 3);
    let (dir_s, bad_s) = (dir.to_str().unwrap(), bad.to_str().unwrap());
    let c = env.json(&["check", dir_s], 0);
    assert_eq!(c["damaged"], 0, "{c:#}");
    // The first queued frame's type becomes a control type: no crash can do that.
    let f = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
    f.write_all_at(&0xFF00u16.to_le_bytes(), 4096 + 384 + 4).unwrap();
    let c = env.json(&["check", dir_s], 3);
    assert_eq!(c["damaged"], 1, "{c:#}");
    let files = c["files"].as_array().unwrap();
    let b = files.iter().find(|f| f["path"] == bad_s).unwrap();
    assert_eq!((b["kind"].as_str(), b["ok"].as_bool()), (Some("store"), Some(false)));
    assert!(b["verdict"].as_str().unwrap().contains("control message type"), "{b:#}");
    assert_eq!(files.iter().find(|f| f["path"] == good.to_str().unwrap()).unwrap()["ok"], true);
    let out = env.tcpshm(&["check", bad_s]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("DAMAGED  store {bad_s}: DAMAGED: "))
            && text.ends_with("1 file checked, 1 damaged\n"),
        "{text}"
    );
    // Inspection reads it anyway, and says what is wrong.
    let i = env.json(&["inspect", bad_s], 0);
    assert_eq!((i["damaged"].as_bool(), i["queued"].as_u64()), (Some(true), Some(0)), "{i:#}");
    assert_eq!((i["live"]["next_seq_hint"].as_u64(), i["holder_pid"].is_null()), (Some(3), true));
    // A reset cannot empty it: refused, with the way out.
    let err = env.error(&["reset", bad_s]);
    assert!(err.contains(bad_s) && err.contains("tcpshm rm"), "{err}");
    assert!(env.text(&["rm", bad_s]).starts_with("removed "));
    // Truncated, and foreign, files are damage too.
    std::fs::write(dir.join("srv@cut.tcpshm"), [0u8; 100]).unwrap();
    let c = env.json(&["check", dir_s], 3);
    let cut = c["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("srv@cut.tcpshm"))
        .unwrap()
        .clone();
    assert!(cut["verdict"].as_str().unwrap().contains("truncated"), "{cut:#}");
    let foreign = env.t.join("x@y.shm");
    std::fs::write(&foreign, vec![7u8; 8192]).unwrap();
    let c = env.json(&["check", foreign.to_str().unwrap()], 3);
    assert!(c["files"][0]["verdict"].as_str().unwrap().contains("not a tcpshm shared-memory file"), "{c:#}");
}

#[test]
fn every_error_is_one_line_with_the_path_and_the_reason() {
    let env = Env::new("cli-errors");
    let missing = env.t.join("nowhere");
    let m = missing.to_str().unwrap();
    for (args, want) in [
        (vec!["ls", m], "No such file"),
        (vec!["check", &format!("{m}/a@b.tcpshm")], "No such file"),
        (vec!["inspect", &format!("{m}/a@b.tcpshm")], "No such file"),
        (vec!["inspect", &format!("{m}/a@b.shm")], "does not exist"),
        (vec!["inspect", &format!("{m}/notes.txt")], "not a tcpshm file"),
        (vec!["stat", &format!("{m}/s.1.2.stats")], "No such file"),
        (vec!["reset", &format!("{m}/a@b.tcpshm")], "no such session"),
        (vec!["reset", "--dir", m, "--local", "a/b", "--remote", "c"], "not a valid name"),
    ] {
        let err = env.error(&args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains(m) || args.contains(&"--dir"), "{args:?}: the path is named: {err}");
    }
    // A usage error is clap's (exit status 2), not ours.
    assert_eq!(env.tcpshm(&["reset"]).status.code(), Some(2));
}
