//! No system call per message on the shared-memory path in steady state, counted.
//!
//! A child process (this binary re-executed) runs a client and a server connection
//! over shared memory on two threads, echoing messages, under `strace -f`; the
//! client thread marks the trace before and after each measured stretch of round
//! trips, and the parent counts every system call each thread made in between (see
//! `tcpshm_test_support::strace` for why a traced child and not an in-process
//! counter). Both threads spin (no sleep, no yield: a yield is a system call too).
//!
//! * With the clock still, the data path alone: 0 system calls per round trip, on
//!   either thread.
//! * With the clock moving 1 µs per round trip, the control work (a read of the
//!   control stream, heartbeats) runs at most once per check interval (1 ms) on each
//!   side: its calls are bounded by the elapsed time, not by the number of messages.

mod common;

use common::{link_unix, open_client, open_server};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tcpshm_connection::Connection;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::session::LivenessConfig;
use tcpshm_proto::Transport;
use tcpshm_test_support::{child, skip, strace, TempDir};

/// Round trips per measured stretch.
const N: u64 = 20_000;
/// The control work's interval.
const CHECK: u64 = 1_000_000;
/// The fake clock's step per round trip while it moves.
const STEP: u64 = 1_000;

/// One echo round trip from the client thread: push, then spin until the echo is
/// back.
fn round_trip(c: &mut Connection<std::os::unix::net::UnixStream>, k: u64, now: u64) {
    let buf = c.alloc(16).unwrap().expect("room in the ring");
    buf.copy_from_slice(&[k as u8; 16]);
    c.push(1).unwrap();
    loop {
        c.poll(now);
        if let Some(m) = c.front() {
            assert_eq!(m.payload, [k as u8; 16]);
            c.pop();
            return;
        }
        assert!(c.is_connected(), "{:?}", c.close_reason());
    }
}

/// The traced child: two connections over shared memory, an echo thread, the marks.
fn echo_under_trace() {
    let dir = TempDir::new("syscalls");
    let mut cfg = common::config(&dir);
    cfg.check_interval = CHECK;
    cfg.session.liveness = LivenessConfig { heartbeat_interval: 10 * CHECK, timeout: 1 << 50 };
    let mut cli = open_client(&dir, &cfg, TransportKind::Shm);
    let mut srv = open_server(&dir, &cfg, TransportKind::Shm);
    link_unix(&mut cli, &mut srv, TransportKind::Shm, 1);
    let clock = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let (clock, stop) = (clock.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                srv.poll(clock.load(Ordering::Relaxed));
                while let Some((m, mut tx)) = srv.front_split() {
                    let buf = tx.alloc(m.payload.len()).unwrap().expect("room in the ring");
                    buf.copy_from_slice(m.payload);
                    tx.push(m.msg_type).unwrap();
                    srv.pop();
                }
                assert!(srv.is_connected(), "{:?}", srv.close_reason());
            }
            srv
        })
    };
    let mut now = 1;
    let mut k = 0;
    // Warm-up with the clock moving: both sides do their control work now and then.
    for _ in 0..10_000 {
        now += STEP;
        clock.store(now, Ordering::Relaxed);
        round_trip(&mut cli, k, now);
        k += 1;
    }
    // The clock stops; the control work due at this time is done during this warm-up.
    for _ in 0..2_000 {
        round_trip(&mut cli, k, now);
        k += 1;
    }
    strace::mark("still-begin");
    for _ in 0..N {
        round_trip(&mut cli, k, now);
        k += 1;
    }
    strace::mark("still-end");
    strace::mark("moving-begin");
    for _ in 0..N {
        now += STEP;
        clock.store(now, Ordering::Relaxed);
        round_trip(&mut cli, k, now);
        k += 1;
    }
    strace::mark("moving-end");
    stop.store(true, Ordering::Relaxed);
    let srv = echo.join().unwrap();
    assert_eq!(srv.counters().popped, k);
    println!("DONE {k}");
}

/// The children's entry point (a no-op in a normal test run).
#[test]
fn child_role() {
    if child::role().as_deref() == Some("echo") {
        echo_under_trace();
    }
}

#[test]
fn no_system_call_per_message_on_the_shm_data_path() {
    if let Some(why) = strace::unavailable() {
        skip::skip("no_system_call_per_message_on_the_shm_data_path", &why);
        return;
    }
    let t = TempDir::new("strace");
    std::fs::create_dir_all(t.path()).unwrap();
    let trace = t.join("trace");
    let out = strace::command(&trace, "child_role", "echo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the traced child failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("DONE"), "{stdout}");

    let still = strace::window(&trace, "still-begin", "still-end");
    assert!(
        still.of_marker().is_empty() && still.of_others().is_empty(),
        "system calls during {N} round trips with the clock still: client {:?}, echo thread {:?}",
        still.of_marker(),
        still.of_others()
    );

    let moving = strace::window(&trace, "moving-begin", "moving-end");
    // N round trips of STEP each: this many check intervals on each side.
    let checks = N * STEP / CHECK;
    let (client, echo) = (moving.of_marker().len() as u64, moving.of_others().len() as u64);
    eprintln!(
        "system calls per round trip over shared memory (clock moving {STEP} ns per round trip, control work \
         every {CHECK} ns): client {} ({client} in {N}), echo thread {} ({echo} in {N})",
        client as f64 / N as f64,
        echo as f64 / N as f64
    );
    // Each check reads the control stream once; a heartbeat is a write, every 10 checks.
    for (who, calls) in [("client", client), ("echo thread", echo)] {
        assert!(
            calls <= 2 * (checks + 1),
            "{who}: {calls} system calls in {N} round trips, more than the {checks} control checks allow: {:?}",
            if who == "client" {
                moving.of_marker().to_vec()
            } else {
                moving.of_others().into_iter().cloned().collect()
            }
        );
    }
    assert!(client > 0, "the control work never ran: the measurement would not see it");
}
