//! The parent's view of one side (a server or a client, over all its processes):
//! each process's reports are fed to the side's checker as they arrive, on the
//! reader thread of [`tcpshm_test_support::child::Proc`]; the last lines are kept
//! for diagnostics.

use super::check::SideCheck;
use super::records::Rec;
use super::roles::RoleEnv;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tcpshm_test_support::child::{self, Proc};

/// What the parent knows about one side, over all its incarnations.
pub struct SideState {
    /// The checker.
    pub check: SideCheck,
    /// The first check failure.
    pub error: Option<String>,
    /// The last lines the side wrote (records and other output), for diagnostics.
    pub tail: VecDeque<String>,
    /// Records of the current incarnation, by tag, for the test's waits (`C`, `W`,
    /// `X`, `L`...).
    pub seen: std::collections::HashMap<char, u64>,
    /// The `@L` outcomes, in order.
    pub logins: Vec<String>,
}

/// A side's state, shared with its reader threads.
pub type Side = Arc<Mutex<SideState>>;

impl SideState {
    /// A side checked by `check`.
    pub fn new(check: SideCheck) -> Side {
        Arc::new(Mutex::new(SideState {
            check,
            error: None,
            tail: VecDeque::new(),
            seen: Default::default(),
            logins: Vec::new(),
        }))
    }

    /// The last lines, one per line, for a failure message.
    pub fn tail_text(&self) -> String {
        self.tail.iter().map(|l| format!("    {l}\n")).collect()
    }

    /// How many `tag` records the current incarnation wrote.
    pub fn count(&self, tag: char) -> u64 {
        self.seen.get(&tag).copied().unwrap_or(0)
    }
}

/// Locks a side's state (a panicking reader thread does not poison the test).
pub fn lock(s: &Mutex<SideState>) -> std::sync::MutexGuard<'_, SideState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

const TAIL: usize = 40;

/// Starts `env`'s role by re-executing this test binary, running only the test
/// `entry` (which calls [`super::roles::child_main`]), behind `wrapper` (e.g.
/// `["ip", "netns", "exec", "ns1"]`; empty for none). Its reports feed `state`.
pub fn spawn(entry: &str, wrapper: &[&str], env: &RoleEnv, state: &Side) -> Proc {
    let mut cmd = child::wrapped(wrapper, entry, env.role_name());
    cmd.envs(env.vars());
    {
        let mut s = lock(state);
        s.check.begin();
        s.seen.clear();
    }
    let state = state.clone();
    // `TCPSHM_E2E_LOG_DIR=dir` keeps every line each side wrote in `dir/<role>.log`.
    let mut log = std::env::var_os("TCPSHM_E2E_LOG_DIR").map(|d| {
        let path = std::path::Path::new(&d).join(format!("{}.log", env.role_name()));
        std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("log file")
    });
    Proc::spawn(cmd, move |line| {
        if let Some(f) = log.as_mut() {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
        let rec = Rec::parse(&line);
        let mut s = lock(&state);
        if let Some(tag) = line.strip_prefix('@').and_then(|l| l.chars().next()) {
            *s.seen.entry(tag).or_default() += 1;
        }
        if let Some(Rec::Login(text)) = &rec {
            s.logins.push(text.clone());
        }
        if s.tail.len() == TAIL {
            s.tail.pop_front();
        }
        s.tail.push_back(line);
        if let (Some(rec), None) = (rec, &s.error) {
            if let Err(e) = s.check.apply(&rec) {
                s.error = Some(e);
            }
        }
    })
}

/// The sides' errors, progress and last lines, for a failure message.
pub fn diagnose(states: &[(&str, &Side)]) -> String {
    let mut out = String::new();
    for (name, st) in states {
        let s = lock(st);
        out += &format!(
            "  {name}: error {:?}; next expected {:?}; incarnations {}; {} connects, {} disconnects; last lines:\n{}",
            s.error,
            s.check.next_expected(),
            s.check.incarnations,
            s.check.connects,
            s.check.disconnects,
            s.tail_text()
        );
    }
    out
}
