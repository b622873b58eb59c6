//! Store benchmark: push + ack throughput of `tcpshm-persist` for 64 B and 4 KiB
//! messages, in `Durability::Process` and in `Durability::Sync` with group commits of
//! 1, 8, 64 and 256 operations, each beside the plain-file reference measured in the
//! same run: one `write(2)` of the same frame bytes per message, with `fdatasync`
//! every `g` messages (none for the `Process` reference).
//!
//! The files live in cargo's target tmp dir (`target/tmp/persist-bench`), on the
//! project's disk — not /dev/shm, where a sync would cost nothing; the report names
//! the file system.
//!
//! `cargo xtask bench persist` runs it; `--quick` is a smoke run of a few seconds.

// The bench plumbing shared by every crate of the workspace (see its header).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tcpshm_bench_common::{pin_to_cpu, Opts, Report, Row, Summary};
use tcpshm_persist::{Durability, Options, Store};
use tcpshm_proto::Name;

const KIB: usize = 1024;
/// Send-queue capacity of the store (and size of the reference file).
const CAPACITY: usize = 16 << 20;
/// The simulated peer acknowledges everything every this many messages.
const ACK_EVERY: u64 = 64;
const GROUPS: [u32; 4] = [1, 8, 64, 256];

#[derive(Debug, Clone, Copy)]
struct Case {
    payload: usize,
    /// `None`: `Durability::Process`; `Some(g)`: `Sync { every: g }`.
    sync: Option<u32>,
}

impl Case {
    fn key(&self) -> String {
        let size = if self.payload >= KIB { format!("{}k", self.payload / KIB) } else { format!("{}b", self.payload) };
        match self.sync {
            None => format!("persist.{size}.process"),
            Some(g) => format!("persist.{size}.sync{g}"),
        }
    }

    fn size_name(&self) -> String {
        if self.payload >= KIB {
            format!("{} KiB", self.payload / KIB)
        } else {
            format!("{} B", self.payload)
        }
    }

    /// Time each run lasts.
    fn duration(&self, opts: &Opts) -> Duration {
        match (opts.quick, self.sync) {
            (true, _) => Duration::from_millis(25),
            (false, None) => Duration::from_millis(300),
            (false, Some(_)) => Duration::from_millis(600),
        }
    }
}

/// Rate of one run.
#[derive(Debug, Clone, Copy)]
struct Tput {
    msgs_per_s: f64,
    bytes_per_s: f64,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("persist-bench")
}

/// Wire frame bytes of a message (24-byte header, padded to 8).
fn frame_len(payload: usize) -> usize {
    tcpshm_proto::frame::frame_len(payload)
}

/// Pushes messages of `case.payload` bytes (every byte copied from a prepared
/// buffer) for `secs`, the peer acking all every `ACK_EVERY`; a final `flush` is
/// inside the timing. A warm-up lap of the ring first (untimed), so that every page
/// of the file has been written once, as in steady state.
fn run_store(case: Case, secs: Duration) -> Tput {
    let (me, peer) = (Name::new("bench").unwrap(), Name::new("peer").unwrap());
    let _ = Store::remove(dir(), me, peer);
    let durability = match case.sync {
        None => Durability::Process,
        Some(every) => Durability::Sync { every },
    };
    let opts = Options::new(CAPACITY).durability(Durability::Process);
    let (mut s, _) = Store::open(dir(), me, peer, &opts, None, 0).expect("open bench store");
    let src: Vec<u8> = (0..case.payload).map(|i| (i * 7 + 1) as u8).collect();
    let push_some = |s: &mut Store, n: u64| {
        for _ in 0..n {
            let buf = s.alloc(src.len()).expect("fits").expect("acked, so room");
            buf.copy_from_slice(&src);
            let ack = s.consumed();
            s.push(1, ack).expect("push");
        }
        let upto = s.next_seq();
        s.ack(upto).expect("ack");
    };
    let lap = (CAPACITY / frame_len(case.payload)) as u64 / ACK_EVERY + 1;
    for _ in 0..lap {
        push_some(&mut s, ACK_EVERY);
    }
    s.flush().expect("flush");
    s.set_durability(durability).expect("set durability");
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        push_some(&mut s, ACK_EVERY);
        n += ACK_EVERY;
        if start.elapsed() >= secs {
            break;
        }
    }
    s.flush().expect("flush");
    let t = start.elapsed().as_secs_f64();
    assert_eq!(s.queue_depth(), 0);
    drop(s);
    Store::remove(dir(), me, peer).expect("remove bench store");
    Tput { msgs_per_s: n as f64 / t, bytes_per_s: (n * case.payload as u64) as f64 / t }
}

/// The reference: the same frame bytes, one `pwrite` per message into a file of the
/// store's capacity (circularly, preallocated and written once before timing), and
/// `fdatasync` every `g` messages (never for the `Process` case).
fn run_write(case: Case, secs: Duration) -> Tput {
    let path = dir().join("reference.log");
    let f = File::options().read(true).write(true).create(true).truncate(true).open(&path).expect("create reference");
    f.set_len(CAPACITY as u64).expect("size reference");
    let frame = frame_len(case.payload);
    let mut buf = vec![0u8; frame];
    for (i, b) in buf.iter_mut().enumerate().skip(24).take(case.payload) {
        *b = (i * 7 + 1) as u8;
    }
    let zeros = vec![0u8; 1 << 20];
    for off in (0..CAPACITY).step_by(zeros.len()) {
        f.write_all_at(&zeros, off as u64).expect("warm reference");
    }
    f.sync_all().expect("sync reference");
    let slots = (CAPACITY / frame) as u64;
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..ACK_EVERY {
            buf[8..16].copy_from_slice(&n.to_le_bytes());
            f.write_all_at(&buf, (n % slots) * frame as u64).expect("write");
            n += 1;
            if let Some(g) = case.sync {
                if n.is_multiple_of(g as u64) {
                    f.sync_data().expect("fdatasync");
                }
            }
        }
        if start.elapsed() >= secs {
            break;
        }
    }
    if case.sync.is_some() {
        f.sync_data().expect("fdatasync");
    }
    let t = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Tput { msgs_per_s: n as f64 / t, bytes_per_s: (n * case.payload as u64) as f64 / t }
}

/// The file system type of `path` (where the sync figures are meaningful or not).
fn fs_type(path: &Path) -> String {
    let Ok(st) = rustix::fs::statfs(path) else { return "unknown".into() };
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs (syncs cost nothing here: figures are not meaningful)".into(),
        0x2FC1_2FC1 => "zfs".into(),
        t => format!("file system type {t:#x}"),
    }
}

fn hi(v: Vec<f64>) -> Summary {
    Summary::of_higher_is_better(v)
}

fn main() {
    let opts = Opts::from_args();
    let mut report = Report::new("persist");
    std::fs::create_dir_all(dir()).expect("bench dir");
    let pinned = pin_to_cpu(opts.cpus.0);

    let mut cases = Vec::new();
    for payload in [64, 4 * KIB] {
        cases.push(Case { payload, sync: None });
        for g in GROUPS {
            cases.push(Case { payload, sync: Some(g) });
        }
    }
    let cases: Vec<Case> = cases.into_iter().filter(|c| opts.wants(&c.key())).collect();

    // Each round runs every case once, store then reference, so the machine's (and the
    // disk's) noise falls evenly on all of them.
    let mut store: Vec<Vec<Tput>> = cases.iter().map(|_| Vec::new()).collect();
    let mut write: Vec<Vec<Tput>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..opts.runs {
        for (i, case) in cases.iter().enumerate() {
            let secs = case.duration(&opts);
            let s = run_store(*case, secs);
            let w = run_write(*case, secs);
            if opts.verbose {
                eprintln!("{}: store {:.0} msg/s, write {:.0} msg/s", case.key(), s.msgs_per_s, w.msgs_per_s);
            }
            store[i].push(s);
            write[i].push(w);
        }
    }

    for (i, case) in cases.iter().enumerate() {
        let (scale, unit) = if case.sync.is_none() { (1e6, "Mmsg/s") } else { (1e3, "kmsg/s") };
        let msgs = |r: &[Tput]| hi(r.iter().map(|t| t.msgs_per_s / scale).collect());
        let gbs = |r: &[Tput]| hi(r.iter().map(|t| t.bytes_per_s / 1e9).collect());
        let (ours, reference) = (msgs(&store[i]), msgs(&write[i]));
        let (mode, ref_name, ref_label) = match case.sync {
            None => (
                "Durability::Process".to_string(),
                "write per message".to_string(),
                "write(2) per message, no sync (page cache only)".to_string(),
            ),
            Some(g) => (
                format!("Durability::Sync {{ every: {g} }}"),
                format!("write + fdatasync every {g}"),
                format!("write(2) per message, fdatasync every {g} messages"),
            ),
        };
        let size = case.size_name();
        report.push(
            Row::new(
                &format!("{}.store", case.key()),
                &format!("{size} push + ack, {mode} — tcpshm-persist"),
                unit,
                ours,
            )
            .also(gbs(&store[i]), "GB/s")
            .ratio(&ref_name, ours.median / reference.median),
        );
        report.push(
            Row::reference(&format!("{}.write", case.key()), &format!("{size} {ref_label}"), unit, reference)
                .also(gbs(&write[i]), "GB/s"),
        );
    }

    report.note(&format!(
        "Files in {} on {}. Store capacity {} MiB; one warm-up lap of the ring (and of the reference file) before \
         timing, so every page has been written once.",
        dir().display(),
        fs_type(&dir()),
        CAPACITY >> 20
    ));
    report.note(&format!(
        "Store: alloc + copy of every payload byte + push (seq, ack stamped) per message; the peer acks everything \
         every {ACK_EVERY} messages (one `ack` call = one operation toward the group commit, so `every: g` syncs \
         every g operations of 64 pushes + 1 ack). Sync = msync(MS_SYNC) of the dirty part of the mapping. A final \
         flush is inside the timing. Reference: the same {}-byte wire frames written with one pwrite(2) each into a \
         preallocated file, fdatasync every g messages. GB/s counts payload bytes (1 GB = 1e9 B).",
        "24 + payload (padded to 8)"
    ));
    report.note(&format!(
        "{} runs of each, interleaved; median and best run reported; ratios are of medians; one thread{}.",
        opts.runs,
        if pinned { format!(" pinned to cpu {}", opts.cpus.0) } else { String::new() }
    ));
    report.finish(&opts);
}
