//! The benchmark report: one JSON document for an invocation of `cargo xtask bench`,
//! and its renderings (markdown for `target/bench/report.md`, a compact terminal
//! table). Rendering is a pure function of the document, so it is tested on a fixed
//! one.
//!
//! `report.json` (schema 2; keys are stable, new keys may be added):
//!
//! ```text
//! { "schema": 2, "command": "cargo xtask bench all", "quick": false,
//!   "goals_judged": true,   (false in a --quick run: its figures mean nothing)
//!   "machine": { "cpu", "cpu_mhz", "cpus", "kernel", "rustc", "date", "load_before", "load_after" },
//!   "suites": [ { "name": "echo", "parts": [ PART, ... ] }, ... ],
//!   "goals":   [ { "suite", "key", "label", "goal", "met", "median", "unit",
//!                  "checks": [ CHECK, ... ] }, ... ],
//!   "skipped": [ { "suite", "what", "why" }, ... ],
//!   "plots":   [ "echo-latency.svg", "echo-latency.png", ... ] }
//! PART = { "report", "quick", "runs", "cpus", "markdown", "notes", "skipped",
//!          "sections": [{"title", "markdown"}], "data": {..},
//!          "rows": [ ROW, ... ] }   (written by the bench binaries: tcpshm_bench::common)
//! ROW  = { "key", "label", "unit", "median", "best", "also_unit", "also_median",
//!          "also_best", "ratio_to", "ratio", "ratios": [{"to", "ratio"}], "goal",
//!          "goal_met", "checks": [ CHECK, ... ], "reference", "params": {..},
//!          "latency": null | { "count", "mean", "p50", "p90", "p99", "p99_9",
//!                              "p99_99", "max", "unit": "ns", "curve": [[q, ns]] } }
//! CHECK = { "what", "value", "limit", "op": "<=" | ">=", "met" }
//! ```
//!
//! The echo, stream and scale parts' `data` hold the pairs each goal was judged on
//! (`data.pairs.<row key>`: every pair's figures, kept or discarded, the median
//! ratios), the system-call counts (`data.syscalls`) and, for echo, the tail
//! attribution (`data.tail`).

use serde_json::{json, Value};

/// The rows of a part.
pub fn rows(part: &Value) -> &[Value] {
    part["rows"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The report document of one invocation.
pub fn build(
    command: &str,
    quick: bool,
    machine: Value,
    suites: &[(String, Vec<Value>)],
    skipped: Vec<Value>,
) -> Value {
    let mut goals = Vec::new();
    let mut skipped = skipped;
    for (name, parts) in suites {
        for p in parts {
            for r in rows(p) {
                if let (Some(goal), Some(met)) = (r["goal"].as_str(), r["goal_met"].as_bool()) {
                    goals.push(json!({
                        "suite": name,
                        "key": r["key"],
                        "label": r["label"],
                        "goal": goal,
                        "met": met,
                        "median": r["median"],
                        "unit": r["unit"],
                        "checks": r["checks"].as_array().cloned().unwrap_or_default(),
                    }));
                }
            }
            for s in p["skipped"].as_array().map(Vec::as_slice).unwrap_or_default() {
                skipped.push(json!({"suite": name, "what": s["what"], "why": s["why"]}));
            }
        }
    }
    let suites: Vec<Value> = suites.iter().map(|(n, p)| json!({"name": n, "parts": p})).collect();
    json!({
        "schema": 2,
        "command": command,
        "quick": quick,
        "goals_judged": !quick,
        "machine": machine,
        "suites": suites,
        "goals": goals,
        "skipped": skipped,
        "plots": [],
    })
}

/// A number with about three significant digits.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "?".into();
    }
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// One line describing the machine.
pub fn machine_line(m: &Value) -> String {
    format!(
        "Machine: {} ({} cpus{}), kernel {}, {}, {}; load average {} before, {} after.\n",
        m["cpu"].as_str().unwrap_or("?"),
        m["cpus"],
        m["cpu_mhz"].as_str().filter(|s| !s.is_empty()).map(|s| format!(", {s} MHz")).unwrap_or_default(),
        m["kernel"].as_str().unwrap_or("?"),
        m["rustc"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?"),
        m["load_before"].as_str().unwrap_or("?"),
        m["load_after"].as_str().unwrap_or("?"),
    )
}

/// Whether the document's goals are judged (not in a quick run).
fn judged(doc: &Value) -> bool {
    doc["goals_judged"].as_bool().unwrap_or(!doc["quick"].as_bool().unwrap_or(false))
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn value_text(r: &Value) -> String {
    let mut v = format!("{} {}", fmt_num(r["median"].as_f64().unwrap_or(f64::NAN)), r["unit"].as_str().unwrap_or(""));
    if let (Some(x), Some(u)) = (r["also_median"].as_f64(), r["also_unit"].as_str()) {
        v.push_str(&format!(" ({} {u})", fmt_num(x)));
    }
    v
}

fn ratios_text(r: &Value) -> String {
    r["ratios"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|x| Some(format!("{:.2}x {}", x["ratio"].as_f64()?, x["to"].as_str()?)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// tcpshm's rows (not the references') of `parts`: median, ratios, goal (its verdict
/// only if `judged`).
pub fn ours_table(parts: &[Value], judged: bool) -> String {
    let mut md = String::from("| measurement | median | vs references (same run) | goal |\n|---|---:|---|---|\n");
    for p in parts {
        for r in rows(p) {
            if r["reference"].as_bool().unwrap_or(false) {
                continue;
            }
            let goal = match (r["goal"].as_str(), r["goal_met"].as_bool()) {
                (Some(g), Some(m)) if judged => format!("{}: {g}", verdict(m)),
                (Some(g), Some(_)) => format!("not judged: {g}"),
                _ => String::new(),
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r["label"].as_str().unwrap_or("?"),
                value_text(r),
                ratios_text(r),
                goal
            ));
        }
    }
    md
}

/// `target/bench/report.md`.
pub fn markdown(doc: &Value) -> String {
    let mut md = String::from("# tcpshm benchmark report\n\n");
    if doc["quick"].as_bool().unwrap_or(false) {
        md.push_str("**Quick smoke run (`--quick`): the figures are not meaningful.**\n\n");
    }
    md.push_str(&format!("Command: `{}`\n\n", doc["command"].as_str().unwrap_or("cargo xtask bench")));
    md.push_str(&machine_line(&doc["machine"]));
    md.push_str(
        "\nEvery figure is the median of several runs, measured beside its references in the same run; \
         ratios are ours / reference. The machine may be shared: a load average above zero before or \
         after means other work competed for the cpus.\n",
    );

    let goals = doc["goals"].as_array().map(Vec::as_slice).unwrap_or_default();
    md.push_str("\n## Goals\n\n");
    if goals.is_empty() {
        md.push_str("No goal was measured in this run.\n");
    } else if !judged(doc) {
        md.push_str(&format!(
            "{} goals computed, **not judged**: a quick run's figures mean nothing (run without `--quick`).\n",
            goals.len()
        ));
    } else {
        let met = goals.iter().filter(|g| g["met"].as_bool() == Some(true)).count();
        md.push_str(&format!(
            "{met} of {} goals met (a goal checked at several percentiles is met only if every check is).\n\n",
            goals.len()
        ));
        md.push_str("| suite | measurement | check | value | bound | verdict |\n|---|---|---|---:|---:|---|\n");
        for g in goals {
            let checks = g["checks"].as_array().map(Vec::as_slice).unwrap_or_default();
            if checks.is_empty() {
                md.push_str(&format!(
                    "| {} | {} | {} | {} {} | | {} |\n",
                    g["suite"].as_str().unwrap_or("?"),
                    g["label"].as_str().unwrap_or("?"),
                    g["goal"].as_str().unwrap_or("?"),
                    fmt_num(g["median"].as_f64().unwrap_or(f64::NAN)),
                    g["unit"].as_str().unwrap_or(""),
                    verdict(g["met"].as_bool().unwrap_or(false)),
                ));
            }
            for c in checks {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} {} | {} |\n",
                    g["suite"].as_str().unwrap_or("?"),
                    g["label"].as_str().unwrap_or("?"),
                    c["what"].as_str().unwrap_or("?"),
                    fmt_num(c["value"].as_f64().unwrap_or(f64::NAN)),
                    c["op"].as_str().unwrap_or("?"),
                    fmt_num(c["limit"].as_f64().unwrap_or(f64::NAN)),
                    verdict(c["met"].as_bool().unwrap_or(false)),
                ));
            }
        }
    }
    let skipped = doc["skipped"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !skipped.is_empty() {
        md.push_str("\n## Not measured\n\n");
        for s in skipped {
            md.push_str(&format!(
                "- [{}] **{}**: skipped: {}\n",
                s["suite"].as_str().unwrap_or("?"),
                s["what"].as_str().unwrap_or("?"),
                s["why"].as_str().unwrap_or("?")
            ));
        }
    }

    let plots: Vec<&str> =
        doc["plots"].as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(Value::as_str).collect();
    for s in doc["suites"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = s["name"].as_str().unwrap_or("?");
        md.push_str(&format!("\n## {name}\n"));
        for p in s["parts"].as_array().map(Vec::as_slice).unwrap_or_default() {
            md.push_str(&format!(
                "\n### {}\n\n{}",
                p["report"].as_str().unwrap_or("?"),
                p["markdown"].as_str().unwrap_or("")
            ));
        }
        let mine: Vec<&&str> =
            plots.iter().filter(|p| p.starts_with(&format!("{name}-")) && p.ends_with(".svg")).collect();
        if !mine.is_empty() {
            md.push('\n');
            for p in mine {
                md.push_str(&format!("![{p}]({p}) ({} also as PNG)\n\n", p.trim_end_matches(".svg")));
            }
        }
    }
    md
}

/// The compact table printed at the end of a run: tcpshm's figures, their main
/// ratio, and the goals.
pub fn terminal(doc: &Value) -> String {
    let mut out = String::new();
    if doc["quick"].as_bool().unwrap_or(false) {
        out.push_str("QUICK SMOKE RUN: figures are not meaningful\n");
    }
    out.push_str(&machine_line(&doc["machine"]));
    let cut = |s: &str, n: usize| {
        if s.chars().count() > n {
            format!("{}…", s.chars().take(n - 1).collect::<String>())
        } else {
            s.to_string()
        }
    };
    for s in doc["suites"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push_str(&format!("\n{}\n", s["name"].as_str().unwrap_or("?")));
        for p in s["parts"].as_array().map(Vec::as_slice).unwrap_or_default() {
            for r in rows(p) {
                if r["reference"].as_bool().unwrap_or(false) {
                    continue;
                }
                let lat = &r["latency"];
                let value = if lat.is_object() {
                    format!(
                        "p50 {} p99 {} p99.99 {} ns",
                        fmt_num(lat["p50"].as_f64().unwrap_or(f64::NAN)),
                        fmt_num(lat["p99"].as_f64().unwrap_or(f64::NAN)),
                        fmt_num(lat["p99_99"].as_f64().unwrap_or(f64::NAN))
                    )
                } else {
                    value_text(r)
                };
                let ratio = match (r["ratio"].as_f64(), r["ratio_to"].as_str()) {
                    (Some(x), Some(to)) => format!("{x:.2}x {to}"),
                    _ => String::new(),
                };
                let goal = match r["goal_met"].as_bool() {
                    _ if !judged(doc) => "",
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "",
                };
                out.push_str(&format!(
                    "  {:<48} {:>40}  {:<24} {}\n",
                    cut(r["label"].as_str().unwrap_or("?"), 48),
                    value,
                    cut(&ratio, 24),
                    goal
                ));
            }
        }
    }
    let goals = doc["goals"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !judged(doc) {
        out.push_str(&format!("\ngoals: {} computed, not judged (quick run)\n", goals.len()));
    } else {
        let missed: Vec<&Value> = goals.iter().filter(|g| g["met"].as_bool() == Some(false)).collect();
        out.push_str(&format!("\ngoals: {} met, {} missed\n", goals.len() - missed.len(), missed.len()));
        for g in missed {
            let failed: Vec<String> = g["checks"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|c| c["met"].as_bool() == Some(false))
                .map(|c| {
                    format!(
                        "{} {} {} {}",
                        c["what"].as_str().unwrap_or("?"),
                        fmt_num(c["value"].as_f64().unwrap_or(f64::NAN)),
                        if c["op"] == "<=" { ">" } else { "<" },
                        fmt_num(c["limit"].as_f64().unwrap_or(f64::NAN))
                    )
                })
                .collect();
            let detail = if failed.is_empty() {
                format!(
                    "median {} {}",
                    fmt_num(g["median"].as_f64().unwrap_or(f64::NAN)),
                    g["unit"].as_str().unwrap_or("")
                )
            } else {
                failed.join("; ")
            };
            out.push_str(&format!(
                "  MISSED [{}] {}: {} ({detail})\n",
                g["suite"].as_str().unwrap_or("?"),
                g["label"].as_str().unwrap_or("?"),
                g["goal"].as_str().unwrap_or("?"),
            ));
        }
    }
    for s in doc["skipped"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push_str(&format!(
            "  skipped [{}] {}: {}\n",
            s["suite"].as_str().unwrap_or("?"),
            s["what"].as_str().unwrap_or("?"),
            s["why"].as_str().unwrap_or("?")
        ));
    }
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A fixed report: an echo part (ours with a latency curve, a floor, a missed
    /// goal and a met one, a skipped reference) and a stream part (sizes).
    pub fn fixture() -> Value {
        let curve = |s: f64| {
            json!([[0.0, s * 0.8], [0.5, s], [0.9, s * 1.1], [0.99, s * 1.5], [0.999, s * 3.0], [1.0, s * 40.0]])
        };
        let lat = |s: f64| {
            json!({"count": 100000, "mean": s * 1.05, "p50": s, "p90": s * 1.1, "p99": s * 1.5,
                   "p99_9": s * 3.0, "p99_99": s * 9.0, "max": s * 40.0, "unit": "ns", "curve": curve(s)})
        };
        let row = |key: &str, label: &str, median: f64, reference: bool| {
            json!({"key": key, "label": label, "unit": "ns", "median": median, "best": median * 0.9,
                   "also_unit": null, "also_median": null, "also_best": null, "ratio_to": null, "ratio": null,
                   "ratios": [], "goal": null, "goal_met": null, "reference": reference, "params": {},
                   "latency": lat(median)})
        };
        let mut shm = row("echo.shm", "tcpshm SHM (server + client)", 280.0, false);
        shm["ratios"] = json!([{"to": "SHM floor (p50)", "ratio": 2.55}]);
        shm["ratio_to"] = json!("SHM floor (p50)");
        shm["ratio"] = json!(2.55);
        shm["goal"] = json!("p50 / SHM floor <= 1.25, p99 / SHM floor <= 1.3");
        shm["goal_met"] = json!(false);
        shm["checks"] = json!([
            {"what": "p50 / SHM floor", "value": 1.2, "limit": 1.25, "op": "<=", "met": true},
            {"what": "p99 / SHM floor", "value": 1.42, "limit": 1.3, "op": "<=", "met": false},
        ]);
        let mut tcp = row("echo.tcp", "tcpshm TCP (server + client)", 7000.0, false);
        tcp["goal"] = json!("p50 <= 1.05x the TCP floor");
        tcp["goal_met"] = json!(true);
        let echo = json!({"report": "echo", "quick": false, "runs": 5, "cpus": [0, 1], "markdown": "| echo table |\n",
            "notes": [], "skipped": [{"what": "ZeroMQ REQ/REP tcp:// and ipc://", "why": "not requested"}],
            "sections": [], "data": {"pairs": {"echo.shm": {"pairs": [
                {"kept": true, "ratios": {"p50": 1.2, "p99": 1.4, "p99_9": 1.6, "p99_99": 3.0}},
                {"kept": false, "ratios": {"p50": 2.2, "p99": 2.4, "p99_9": 2.6, "p99_99": 5.0}},
                {"kept": true, "ratios": {"p50": 1.1, "p99": 1.3, "p99_9": null, "p99_99": 3.0}}]}}},
            "rows": [shm, tcp, row("echo.floor.shm", "shared-memory floor", 110.0, true),
                     row("echo.floor.tcp", "TCP floor", 6800.0, true)]});
        let srow = |who: &str, bytes: f64, mps: f64, reference: bool| {
            json!({"key": format!("stream.{who}.{bytes}"), "label": format!("{bytes} B messages: {who}"),
                   "unit": "Mmsg/s", "median": mps, "best": mps, "also_unit": "GB/s",
                   "also_median": mps * bytes / 1000.0, "also_best": mps * bytes / 1000.0, "ratio_to": null,
                   "ratio": null, "ratios": [], "goal": null, "goal_met": null, "reference": reference,
                   "params": {"bytes": bytes}, "latency": null})
        };
        let stream = json!({"report": "stream", "quick": false, "runs": 5, "cpus": [0, 1], "markdown": "| stream table |\n",
            "notes": [], "skipped": [],
            "rows": [srow("shm", 8.0, 30.0, false), srow("shm", 4096.0, 5.0, false), srow("tcp", 8.0, 6.0, false),
                     srow("tcp", 4096.0, 0.8, false), srow("memcpy", 8.0, 400.0, true), srow("memcpy", 4096.0, 19.0, true)]});
        let machine = json!({"cpu": "Test CPU 9000", "cpu_mhz": "3100.000", "cpus": 2, "kernel": "6.1.0-test",
            "rustc": "rustc 1.95.0", "date": "2026-01-02 03:04 UTC", "load_before": "0.50 0.40 0.30",
            "load_after": "1.00 0.50 0.30"});
        let suites = vec![("echo".to_string(), vec![echo]), ("stream".to_string(), vec![stream])];
        let skipped = vec![json!({"suite": "scale", "what": "suite scale", "why": "package missing"})];
        build("cargo xtask bench all", false, machine, &suites, skipped)
    }

    #[test]
    fn goals_and_skips_are_collected() {
        let doc = fixture();
        let goals = doc["goals"].as_array().unwrap();
        assert_eq!(goals.len(), 2);
        assert_eq!(goals[0]["key"], "echo.shm");
        assert_eq!(goals[0]["met"], false);
        assert_eq!(goals[1]["met"], true);
        let skipped = doc["skipped"].as_array().unwrap();
        assert_eq!(skipped.len(), 2, "the invocation's skip and the part's skip: {skipped:?}");
        assert!(skipped.iter().any(|s| s["what"] == "ZeroMQ REQ/REP tcp:// and ipc://" && s["suite"] == "echo"));
        assert_eq!(goals[0]["checks"][1]["met"], false);
        assert_eq!(doc["schema"], 2);
        assert_eq!(doc["goals_judged"], true);
    }

    #[test]
    fn markdown_shows_machine_goals_misses_skips_and_tables() {
        let mut doc = fixture();
        doc["plots"] = json!(["echo-latency.svg", "echo-latency.png", "stream-throughput.svg"]);
        let md = markdown(&doc);
        for needle in [
            "Test CPU 9000 (2 cpus, 3100.000 MHz), kernel 6.1.0-test, rustc 1.95.0, 2026-01-02 03:04 UTC",
            "load average 0.50 0.40 0.30 before, 1.00 0.50 0.30 after",
            "1 of 2 goals met",
            "| echo | tcpshm SHM (server + client) | p50 / SHM floor | 1.20 | <= 1.25 | met |",
            "| echo | tcpshm SHM (server + client) | p99 / SHM floor | 1.42 | <= 1.30 | **missed** |",
            "| echo | tcpshm TCP (server + client) | p50 <= 1.05x the TCP floor | 7000 ns | | met |",
            "**ZeroMQ REQ/REP tcp:// and ipc://**: skipped: not requested",
            "**suite scale**: skipped: package missing",
            "| echo table |",
            "| stream table |",
            "![echo-latency.svg](echo-latency.svg)",
            "![stream-throughput.svg](stream-throughput.svg)",
        ] {
            assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
        }
        assert!(!md.contains("Quick smoke run"), "not a quick run");
    }

    #[test]
    fn a_quick_run_judges_no_goal() {
        let mut doc = fixture();
        doc["quick"] = json!(true);
        doc["goals_judged"] = json!(false);
        let md = markdown(&doc);
        assert!(md.contains("Quick smoke run"));
        assert!(md.contains("2 goals computed, **not judged**"), "{md}");
        assert!(!md.contains("**missed**") && !md.contains("goals met"), "{md}");
        let t = terminal(&doc);
        assert!(t.contains("goals: 2 computed, not judged (quick run)") && !t.contains("MISSED"), "{t}");
        let parts = doc["suites"][0]["parts"].as_array().unwrap();
        assert!(ours_table(parts, false).contains("not judged: p50 / SHM floor <= 1.25"));
    }

    #[test]
    fn terminal_table_lists_ours_not_references_and_names_misses() {
        let t = terminal(&fixture());
        assert!(t.contains("tcpshm SHM (server + client)"));
        assert!(t.contains("p50 280 p99 420 p99.99 2520 ns"), "{t}");
        assert!(t.contains("2.55x SHM floor (p50)"));
        assert!(!t.contains("shared-memory floor"), "references stay out of the compact table:\n{t}");
        assert!(t.contains("goals: 1 met, 1 missed"));
        assert!(
            t.contains("MISSED [echo] tcpshm SHM (server + client): p50 / SHM floor <= 1.25, p99 / SHM floor <= 1.3 (p99 / SHM floor 1.42 > 1.30)"),
            "{t}"
        );
        assert!(t.contains("skipped [echo] ZeroMQ REQ/REP"));
    }

    #[test]
    fn readme_table_has_ours_with_ratios_and_verdicts() {
        let doc = fixture();
        let parts = doc["suites"][0]["parts"].as_array().unwrap();
        let t = ours_table(parts, true);
        assert!(t.contains("| tcpshm SHM (server + client) | 280 ns | 2.55x SHM floor (p50) | **missed**: p50 / SHM floor <= 1.25, p99 / SHM floor <= 1.3 |"), "{t}");
        assert!(!t.contains("| TCP floor |") && !t.contains("| shared-memory floor |"), "{t}");
        let parts = doc["suites"][1]["parts"].as_array().unwrap();
        assert!(ours_table(parts, true).contains("| 8 B messages: shm | 30.0 Mmsg/s (0.24 GB/s) |"));
    }

    #[test]
    fn numbers_keep_three_digits() {
        assert_eq!(fmt_num(1234.4), "1234");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.01234), "0.012");
        assert_eq!(fmt_num(f64::NAN), "?");
    }
}
