//! Facts about the machine and the processes a bench runs: cpus, the descriptor
//! limit, how often a thread was taken off its cpu.

/// The cpus online on this machine (not this process's affinity, which pinning
/// narrows): from `/sys/devices/system/cpu/online` (e.g. `0-1`), else `/proc/cpuinfo`.
pub fn online_cpus() -> Vec<usize> {
    let mut cpus = Vec::new();
    if let Ok(s) = std::fs::read_to_string("/sys/devices/system/cpu/online") {
        cpus = parse_cpu_list(&s);
    }
    if cpus.is_empty() {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        cpus = (0..info.lines().filter(|l| l.starts_with("processor")).count().max(1)).collect();
    }
    cpus
}

/// `0-1,4` → `[0, 1, 4]`.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` descriptors (and the hard limit
/// too when allowed, e.g. as root). Returns the soft limit in force afterwards and,
/// if it is below `want`, why.
pub fn raise_nofile(want: u64) -> (u64, Option<String>) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let soft = cur.current.unwrap_or(u64::MAX);
    if soft >= want {
        return (soft, None);
    }
    let hard = cur.maximum.unwrap_or(u64::MAX);
    let mut why = None;
    if hard < want {
        let r = Rlimit { current: Some(want), maximum: Some(want) };
        match setrlimit(Resource::Nofile, r) {
            Ok(()) => return (want, None),
            Err(e) => {
                why = Some(format!("the hard RLIMIT_NOFILE is {hard} and raising it to {want} was refused ({e})"))
            }
        }
    }
    let target = want.min(hard);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: cur.maximum });
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now < want && why.is_none() {
        why = Some(format!("RLIMIT_NOFILE could only be raised to {now}"));
    }
    (now, why)
}

/// Involuntary context switches of a task so far (the kernel took its cpu away: a
/// busier task, an interrupt's work), from `/proc/<pid>/task/<tid>/status`.
pub fn involuntary_switches(pid: u32, tid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:")).and_then(|v| v.trim().parse().ok())
}

/// Cpu time (user + system) a process used so far, in clock ticks, from
/// `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, in parentheses).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The ids of this process and of the calling thread.
pub fn this_task() -> (u32, u32) {
    (std::process::id(), rustix::thread::gettid().as_raw_nonzero().get() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), [0, 1]);
        assert_eq!(parse_cpu_list("0,2-3,7"), [0, 2, 3, 7]);
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn this_process_is_visible() {
        let (pid, tid) = this_task();
        assert!(involuntary_switches(pid, tid).is_some());
        assert!(cpu_ticks(pid).is_some());
    }
}
