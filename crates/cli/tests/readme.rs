//! The README's section on the command stays true: this test reads its transcript — the `$ ` lines of its console blocks and the output under each
//! `$ tcpshm ...` — and plays it against a deployment of its own: each `echo_server`
//! line starts a server (in this process), each `echo_client` line logs a client in
//! (one streaming on its own thread when the line runs in the background), each
//! `kill -9` stops what it names (a server's counters file stays behind, as after a
//! real `kill -9`). Each documented `tcpshm` command is run as the built binary at
//! its point of the story, with this test's directories for `/srv/gw`,
//! `/srv/trader` and `/dev/shm`, and its output must have the documented shape: the
//! same header lines, the same first word on each other line (message lines, whose
//! number depends on timing, aside), the same exit status; a JSON document the same
//! keys. So a change of the command's output or behaviour that makes the document
//! untrue fails here.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tcpshm_client::TransportKind;

/// One step of the document's transcript.
#[derive(Debug)]
enum Step {
    /// A `$ tcpshm ...` line and the output under it.
    Tcpshm { args: Vec<String>, out: String },
    /// Any other `$ ` line.
    Shell(String),
}

/// The heading of the README's section on the command.
const SECTION: &str = "## The `tcpshm` command";

fn transcript() -> Vec<Step> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The section from its heading to the next second-level heading.
    let start = readme.find(SECTION).unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"));
    let doc = &readme[start..];
    let doc = &doc[..doc[SECTION.len()..].find("\n## ").map_or(doc.len(), |k| k + SECTION.len() + 1)];
    let mut steps = Vec::new();
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_block = line == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            let cmd = cmd.split("  #").next().unwrap().trim();
            match cmd.strip_prefix("tcpshm ") {
                Some(rest) => steps.push(Step::Tcpshm {
                    args: rest.split_whitespace().map(str::to_owned).collect(),
                    out: String::new(),
                }),
                None => steps.push(Step::Shell(cmd.to_owned())),
            }
        } else if let Some(Step::Tcpshm { out, .. }) = steps.last_mut() {
            out.push_str(line);
            out.push('\n');
        }
    }
    steps
}

/// The shape of a text output: header lines (all capitals) whole, the first word of
/// every other line, without the lines of queued messages (`seq ...`: how many there
/// are depends on the moment), sorted (the order of sessions in `stat` is the order
/// of their records).
fn shape(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("seq "))
        .map(|l| {
            if l.chars().all(|c| c.is_ascii_uppercase() || c == ' ') {
                l.split_whitespace().collect::<Vec<_>>().join(" ")
            } else {
                l.split_whitespace().next().unwrap_or("").to_string()
            }
        })
        .collect();
    v.sort();
    v
}

/// The key paths of a JSON document (array elements merged).
fn keys(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                keys(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                keys(v, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// What the transcript's shell lines started.
enum Job {
    Server(Running, String),
    Traffic(Traffic),
}

/// `--flag value` of a shell line.
fn flag<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next();
        }
    }
    None
}

#[test]
fn the_readme_section_on_the_command_is_true() {
    let env = Env::new("cli-readme");
    let steps = transcript();
    let ran = steps.iter().filter(|s| matches!(s, Step::Tcpshm { .. })).count();
    assert!(ran >= 10, "the transcript runs the command ({ran} times): {steps:?}");
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    let mut covered = BTreeSet::new();
    let prefix = env.t.shm_prefix().to_string();
    let local = |s: &str| {
        s.replace("/dev/shm/tcpshm-", &format!("/dev/shm/{prefix}"))
            .replace("/srv/gw", env.server_dir().to_str().unwrap())
            .replace("/srv/trader", env.client_dir().to_str().unwrap())
    };
    for step in &steps {
        match step {
            Step::Shell(line) if line.contains("echo_server") => {
                let name = flag(line, "--name").expect("--name");
                let server = Running::start(env.server_cfg(name));
                let job = line.rsplit("& ").next().filter(|_| line.contains("& ")).expect("a server in the background");
                jobs.insert(job.trim_end_matches("=$!").to_owned(), Job::Server(server, name.to_owned()));
            }
            Step::Shell(line) if line.contains("echo_client") => {
                let name = flag(line, "--name").expect("--name");
                let kind =
                    if flag(line, "--transport") == Some("shm") { TransportKind::Shm } else { TransportKind::Tcp };
                let addr = jobs
                    .values()
                    .find_map(|j| match j {
                        Job::Server(s, _) => Some(s.addr),
                        _ => None,
                    })
                    .expect("a running server");
                let mut c = connect(&env.client_cfg(name), addr, kind);
                if let Some(job) = line.contains("& ").then(|| line.rsplit("& ").next().unwrap()) {
                    let t = Traffic::start(c);
                    let d = t.done.clone();
                    wait_until("traffic", || (d.load(std::sync::atomic::Ordering::Relaxed) > 20).then_some(()));
                    jobs.insert(job.trim_end_matches("=$!").to_owned(), Job::Traffic(t));
                } else {
                    for i in 0..10 {
                        echo_once(&mut c, format!("{name} {i}").as_bytes());
                    }
                }
            }
            Step::Shell(line) if line.starts_with("kill -9 ") => {
                let mut clients = 0;
                for var in line["kill -9 ".len()..].split_whitespace() {
                    let job = jobs.remove(var.trim_start_matches('$')).unwrap_or_else(|| panic!("no job {var}"));
                    match job {
                        Job::Server(server, name) => {
                            // A killed server leaves its counters file (no lock: dead).
                            let stats = env.stats_dir();
                            let live = tcpshm_stats::StatsDir::new(&stats, tcpshm_stats::StatsDir::DEFAULT_PREFIX)
                                .unwrap()
                                .live()
                                .unwrap();
                            let file = live.iter().find(|r| r.header().server.as_str() == name).expect("its counters");
                            let dead = stats.join(format!("tcpshm-stats-{name}.1.99.stats"));
                            std::fs::copy(file.path(), &dead).unwrap();
                            drop(live);
                            server.stop();
                        }
                        Job::Traffic(t) => {
                            clients += 1;
                            drop(t.stop());
                        }
                    }
                }
                if clients > 0 {
                    wait_until("the killed clients down in the counters", || {
                        let stat = env.json(&["stat", "--once"], 0);
                        let sessions = stat["servers"][0]["sessions"].as_array().unwrap().clone();
                        (sessions.iter().filter(|s| s["state"] == "down").count() >= clients).then_some(())
                    });
                }
            }
            Step::Shell(_) => {}
            Step::Tcpshm { args, out } => {
                let args: Vec<String> = args.iter().map(|a| local(a)).collect();
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                covered.insert(argv[0].to_owned());
                let real = env.tcpshm(&argv);
                let want_code = if out.starts_with("tcpshm: ") { 1 } else { 0 };
                assert_eq!(real.status.code(), Some(want_code), "tcpshm {argv:?}: {}", show(&real));
                let text = String::from_utf8(if want_code == 0 { real.stdout } else { real.stderr }).unwrap();
                // This run's paths spelt as the document's.
                let text = text
                    .replace(&format!("{}/", env.stats_dir().display()), "/dev/shm/")
                    .replace(env.server_dir().to_str().unwrap(), "/srv/gw")
                    .replace(env.client_dir().to_str().unwrap(), "/srv/trader")
                    .replace(&format!("/dev/shm/{prefix}"), "/dev/shm/tcpshm-");
                if out.starts_with('{') {
                    let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
                    keys(&serde_json::from_str(out).expect("the documented JSON parses"), "", &mut a);
                    keys(&serde_json::from_str(&text).unwrap(), "", &mut b);
                    assert_eq!(a, b, "tcpshm {argv:?}: the JSON's keys:\n{text}");
                } else {
                    assert_eq!(shape(out), shape(&text), "tcpshm {argv:?}, documented:\n{out}\nreal:\n{text}");
                }
            }
        }
    }
    for cmd in ["ls", "inspect", "check", "stat", "gc", "reset"] {
        assert!(covered.contains(cmd), "the README shows `tcpshm {cmd}`");
    }
    drop(jobs);
}
