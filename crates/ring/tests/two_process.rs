//! Two processes share a var queue in a `/dev/shm` file: a child process streams
//! 10 million variable-length messages, the parent checks every byte and the order.
//! The child is killed with SIGKILL mid-stream several times; each new child attaches
//! to the same region and continues, and nothing that was pushed is lost or repeated.
#![cfg(not(loom))]
#![cfg(target_os = "linux")]

use memmap2::MmapMut;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tcpshm_ring::var::{self, Config};

const TOTAL: u64 = 10_000_000;
const KILLS: usize = 6;
const CAPACITY: usize = 1 << 20;
const CHILD_ENV: &str = "TCPSHM_RING_TWO_PROCESS_CHILD";

/// Message `seq`: type = seq mod 2^16, length 0..=200 from a hash, bytes from seq.
fn len_of(seq: u64) -> usize {
    ((seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 201) as usize
}

fn byte_of(seq: u64, k: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(k as u8)
}

fn map(path: &std::path::Path) -> MmapMut {
    let f = OpenOptions::new().read(true).write(true).open(path).expect("open shm file");
    // SAFETY: the file is ours (created by the parent of this test, mode 0600) and no
    // one truncates it while it is mapped.
    unsafe { MmapMut::map_mut(&f) }.expect("mmap")
}

/// The child: attach to the region and push messages `start..TOTAL`.
fn child_main(path: PathBuf, start: u64) {
    let mut m = map(&path);
    let len = m.len();
    // SAFETY: the mapping lives until the end of this function, which outlives the
    // producer; this process is the only producer (the previous one is dead).
    let (mut p, _c) = unsafe { var::attach_raw(m.as_mut_ptr(), len) }.expect("child attach");
    let mut seq = start;
    while seq < TOTAL {
        let n = len_of(seq);
        match p.alloc(n).expect("alloc") {
            Some(buf) => {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = byte_of(seq, k);
                }
                // Publish every 4th message; the others are staged (a kill between
                // them loses only unpublished messages, which were never pushed).
                if seq % 4 == 3 {
                    p.push(seq as u16).expect("push");
                } else {
                    p.push_more(seq as u16).expect("push_more");
                }
                seq += 1;
            }
            None => p.publish(),
        }
    }
    p.publish();
}

#[test]
fn child_entry() {
    // Runs only when re-executed by `two_processes_with_sigkill` below.
    if let Ok(arg) = std::env::var(CHILD_ENV) {
        let (path, start) = arg.split_once(',').expect("path,start");
        child_main(PathBuf::from(path), start.parse().expect("start"));
    }
}

fn spawn_child(path: &std::path::Path, start: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{},{start}", path.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child")
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
#[cfg_attr(miri, ignore = "processes and mmap")]
fn two_processes_with_sigkill() {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let path = dir.join(format!("tcpshm-ring-test-{}", std::process::id()));
    let _cleanup = Cleanup(path.clone());
    {
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path).unwrap();
        f.set_len(var::region_size(CAPACITY) as u64).unwrap();
    }
    let mut m = map(&path);
    var::init(&mut m[..], Config::new(CAPACITY)).unwrap();
    let len = m.len();
    // SAFETY: `m` outlives the consumer (dropped at the end of this function, after
    // the consumer); this process is the only consumer.
    let (_p, mut c) = unsafe { var::attach_raw(m.as_mut_ptr(), len) }.unwrap();

    // Kill points spread over the stream, jittered by the clock.
    let jitter = Instant::now().elapsed().subsec_nanos() as u64;
    let mut kill_at: Vec<u64> =
        (1..=KILLS as u64).map(|k| k * TOTAL / (KILLS as u64 + 2) + (jitter * k) % 100_000).collect();
    kill_at.reverse();

    let mut next = 0u64; // next seq expected
    let mut child = spawn_child(&path, 0);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let msg = c.front().expect("queue is consistent");
        let Some(m) = msg else {
            if let Some(status) = child.try_wait().unwrap() {
                // The child exited: drain once more (done above), then either we have
                // everything or it died on its own, which is a failure.
                assert!(status.success(), "child failed: {status}");
                if c.front().unwrap().is_none() {
                    break;
                }
                continue;
            }
            assert!(Instant::now() < deadline, "stalled at seq {next}");
            std::hint::spin_loop();
            continue;
        };
        assert_eq!(m.msg_type(), next as u16, "order at seq {next}");
        let payload = m.payload();
        assert_eq!(payload.len(), len_of(next), "length of seq {next}");
        for (k, b) in payload.iter().enumerate() {
            assert_eq!(*b, byte_of(next, k), "byte {k} of seq {next}");
        }
        c.pop().unwrap();
        next += 1;
        if kill_at.last() == Some(&next) {
            kill_at.pop();
            child.kill().expect("SIGKILL the producer");
            child.wait().unwrap();
            kills += 1;
            // Everything the dead producer published is still in the ring: drain it,
            // then a new producer continues right after the last message.
            while let Some(m) = c.front().unwrap() {
                assert_eq!(m.msg_type(), next as u16, "order at seq {next} after kill");
                assert_eq!(m.payload().len(), len_of(next));
                assert!(m.payload().iter().enumerate().all(|(k, b)| *b == byte_of(next, k)));
                c.pop().unwrap();
                next += 1;
            }
            child = spawn_child(&path, next);
        }
    }
    assert_eq!(next, TOTAL, "every message exactly once");
    assert_eq!(kills, KILLS);
}
