//! Two processes over a named shared-memory file, from one binary that re-executes
//! itself:
//!
//! 1. this process produces 200 000 messages of 0..=1000 bytes into
//!    `/dev/shm/tcpshm-ring-example-<pid>`, a child process consumes and checks them,
//!    both waiting (spin, yield, park) rather than busy-polling; the child stops when
//!    the producer is gone and every message was read;
//! 2. a child produces forever and is killed with SIGKILL: this process, parked in
//!    `front_wait`, is told the producer is gone instead of waiting forever.
//!
//! `cargo run -p tcpshm-ring --features shm,wait --example processes`

use std::process::{Command, ExitCode};
use std::time::Instant;
use tcpshm_ring::shm::Region;
use tcpshm_ring::var::{Config, Peer};
use tcpshm_ring::wait::{FrontWaitError, Wait, WaitError};

const N: u64 = 200_000;
const CFG: Config = Config::new(1 << 20);

fn len_of(seq: u64) -> usize {
    (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % 1001
}

fn byte_of(seq: u64, k: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(k as u8)
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Child role: consume and check every message until the producer is gone.
fn consume(path: &str) -> Result<()> {
    let mut c = Region::open(path, CFG)?.consumer()?;
    let mut seq = 0u64;
    loop {
        match c.front_wait(&Wait::new()) {
            Ok(m) => {
                let len = len_of(seq);
                if m.payload().len() != len || m.payload().iter().enumerate().any(|(k, b)| *b != byte_of(seq, k)) {
                    return Err(format!("message {seq} is wrong").into());
                }
            }
            Err(FrontWaitError::Wait(WaitError::Abandoned)) => break,
            Err(e) => return Err(e.into()),
        }
        c.pop_notify()?;
        seq += 1;
    }
    if seq != N {
        return Err(format!("the producer left after {seq} messages, expected {N}").into());
    }
    println!("consumer (pid {}): {seq} messages checked; producer gone, queue drained", std::process::id());
    Ok(())
}

/// Child role: produce forever (until killed).
fn produce_forever(path: &str) -> Result<()> {
    let mut p = Region::open(path, CFG)?.producer()?;
    for seq in 0.. {
        let len = len_of(seq);
        let buf = p.alloc_wait(len, &Wait::new())?;
        for (k, b) in buf.iter_mut().enumerate() {
            *b = byte_of(seq, k);
        }
        p.push_notify(1)?;
    }
    Ok(())
}

fn child(role: &str, path: &str) -> Result<std::process::Child> {
    Ok(Command::new(std::env::current_exe()?).args([role, path]).spawn()?)
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["consume", path] => return consume(path),
        ["produce-forever", path] => return produce_forever(path),
        [] => {}
        _ => return Err("usage: processes [consume|produce-forever PATH]".into()),
    }

    // 1. We produce, a child consumes.
    let path = format!("/dev/shm/tcpshm-ring-example-{}", std::process::id());
    let mut consumer = child("consume", &path)?;
    let region = Region::open(&path, CFG)?; // whichever of the two opens first creates it
    let mut p = region.producer()?;
    let t = Instant::now();
    for seq in 0..N {
        let len = len_of(seq);
        let buf = p.alloc_wait(len, &Wait::new())?;
        for (k, b) in buf.iter_mut().enumerate() {
            *b = byte_of(seq, k);
        }
        p.push_notify(1)?;
    }
    drop(p); // the consumer stops once it has read everything
    if !consumer.wait()?.success() {
        return Err("the consumer process failed".into());
    }
    println!("producer (pid {}): {N} messages in {:.0?}", std::process::id(), t.elapsed());
    region.remove()?;

    // 2. A child produces until we kill it; we consume, parked when the queue is empty.
    let path = format!("{path}-kill");
    let region = Region::open(&path, CFG)?;
    let mut c = region.consumer()?;
    let mut producer = child("produce-forever", &path)?;
    let mut seq = 0u64;
    while seq < 10_000 {
        let m = c.front_wait(&Wait::new())?;
        assert_eq!(m.payload().len(), len_of(seq));
        c.pop_notify()?;
        seq += 1;
    }
    producer.kill()?; // SIGKILL: no destructor, no goodbye
    producer.wait()?;
    assert_eq!(c.peer(), Peer::Gone, "the kernel dropped the dead producer's claim");
    loop {
        match c.front_wait(&Wait::new()) {
            Ok(_) => {
                c.pop_notify()?;
                seq += 1;
            }
            Err(FrontWaitError::Wait(WaitError::Abandoned)) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("consumer: producer process SIGKILLed after {seq} messages; reported as gone, not waited for");
    region.remove()?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("processes: {e}");
            ExitCode::FAILURE
        }
    }
}
