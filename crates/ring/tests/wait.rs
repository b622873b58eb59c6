//! The waiting helpers (feature `wait`): items arrive through every phase (spin, yield,
//! park), a parked end is woken by the other end's notify and by its drop, and a dead
//! peer is reported instead of waited for.
//!
//! Where a lost wake-up would otherwise hang a test, the wait gives up after one park
//! of 30 s that nobody ended (`max_timeouts`): a lost wake-up then fails as `TimedOut`,
//! and a working wake-up returns long before, however loaded the machine.
#![cfg(all(feature = "wait", target_os = "linux", not(loom)))]

use std::time::Duration;
use tcpshm_ring::spsc;
use tcpshm_ring::var::{AllocError, VarQueue};
use tcpshm_ring::wait::{AllocWaitError, FrontWaitError, Wait, WaitError};

/// Parks at once (no spinning, no yielding), so every wait goes through the futex.
const PARK_NOW: Wait = Wait { spins: 0, yields: 0, park: Duration::from_secs(30), max_timeouts: Some(1) };

/// The default policy, but a lost wake-up fails instead of hanging.
const BOUNDED: Wait = Wait { park: Duration::from_secs(30), max_timeouts: Some(1), ..Wait::new() };

const N: u64 = if cfg!(miri) { 200 } else { 200_000 };

/// Runs `f` on a new thread and returns once that thread is asleep in the futex system
/// call (`/proc/self/task/TID/syscall`), i.e. parked: the state a wake-up must end.
/// Observable state, no sleep; if the thread finishes instead, returns then. Under miri,
/// whose threads are not in /proc, returns at once (miri's scheduler then picks the
/// interleaving).
fn parked<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> std::thread::JoinHandle<R> {
    if cfg!(miri) {
        return std::thread::spawn(f);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
        f()
    });
    let tid = rx.recv().unwrap();
    let futex_nr = if cfg!(target_arch = "aarch64") { "98" } else { "202" };
    let path = format!("/proc/self/task/{tid}/syscall");
    while !t.is_finished() {
        match std::fs::read_to_string(&path) {
            Ok(s) if s.split(' ').next() == Some(futex_nr) => break,
            Ok(_) => std::thread::yield_now(),
            Err(_) => break,
        }
    }
    t
}

fn spsc_stream(w: Wait, cap: usize) {
    let (mut tx, mut rx) = spsc::channel::<u64>(cap);
    let t = std::thread::spawn(move || {
        for i in 0..N {
            tx.push_wait(i, &w).unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(rx.pop_wait(&w), Ok(i));
    }
    assert_eq!(rx.pop_wait(&w), Err(WaitError::Abandoned));
    t.join().unwrap();
}

#[test]
fn spsc_items_arrive_in_order_through_spinning() {
    spsc_stream(BOUNDED, 64);
}

#[test]
fn spsc_items_arrive_in_order_through_parking() {
    // Capacity 2: both ends keep finding it full or empty, and park.
    spsc_stream(PARK_NOW, 2);
}

#[test]
fn spsc_drop_wakes_a_parked_peer() {
    let (tx, mut rx) = spsc::channel::<u64>(4);
    let t = parked(move || rx.pop_wait(&PARK_NOW));
    drop(tx);
    assert_eq!(t.join().unwrap(), Err(WaitError::Abandoned));

    let (mut tx, rx) = spsc::channel::<u64>(1);
    tx.push(1).unwrap();
    let t = parked(move || tx.push_wait(2, &PARK_NOW));
    drop(rx);
    let e = t.join().unwrap().unwrap_err();
    assert_eq!((e.reason, e.value), (WaitError::Abandoned, 2));
}

#[test]
fn spsc_wait_times_out_after_max_timeouts() {
    let (_tx, mut rx) = spsc::channel::<u64>(4);
    let w = Wait { spins: 3, yields: 3, park: Duration::from_micros(10), max_timeouts: Some(3) };
    assert_eq!(rx.pop_wait(&w), Err(WaitError::TimedOut));
    let (mut tx, _rx) = spsc::channel::<u64>(1);
    tx.push(0).unwrap();
    let e = tx.push_wait(5, &w).unwrap_err();
    assert_eq!((e.reason, e.value), (WaitError::TimedOut, 5));
    // The gone peer is reported as gone, not as a timeout, whatever the limit.
    let (tx, mut rx) = spsc::channel::<u64>(4);
    drop(tx);
    assert_eq!(rx.pop_wait(&Wait { max_timeouts: Some(0), ..w }), Err(WaitError::Abandoned));
}

#[test]
fn spsc_plain_push_then_notify_wakes_a_parked_consumer() {
    let (mut tx, mut rx) = spsc::channel::<u64>(8);
    let t = parked(move || (0..3).map(|_| rx.pop_wait(&PARK_NOW).unwrap()).collect::<Vec<_>>());
    assert_eq!(tx.push_slice(&[1, 2, 3]), 3);
    tx.notify();
    assert_eq!(t.join().unwrap(), [1, 2, 3]);
}

fn payload(seq: u64) -> Vec<u8> {
    (0..(seq % 50) as usize).map(|k| (seq as u8).wrapping_add(k as u8)).collect()
}

fn var_stream(w: Wait, cap: usize) {
    let (mut p, mut c) = VarQueue::with_capacity(cap);
    let t = std::thread::spawn(move || {
        for seq in 0..N {
            let msg = payload(seq);
            p.alloc_wait(msg.len(), &w).unwrap().copy_from_slice(&msg);
            // Mix batched publishes (alloc_wait publishes what is staged before it
            // waits) with notifying pushes.
            if seq % 3 == 0 {
                p.push_more(seq as u16).unwrap();
            } else {
                p.push_notify(seq as u16).unwrap();
            }
        }
        p.publish();
        p.notify();
    });
    for seq in 0..N {
        let m = c.front_wait(&w).unwrap();
        assert_eq!((m.msg_type(), m.payload()), (seq as u16, &payload(seq)[..]));
        if seq % 5 == 0 {
            c.pop_more().unwrap();
        } else {
            c.pop_notify().unwrap();
        }
    }
    assert_eq!(c.front_wait(&w).unwrap_err(), FrontWaitError::Wait(WaitError::Abandoned));
    t.join().unwrap();
}

#[test]
fn var_messages_arrive_in_order_through_spinning() {
    var_stream(BOUNDED, 1 << 12);
}

#[test]
fn var_messages_arrive_in_order_through_parking() {
    // Room for a few messages only: both ends park often.
    var_stream(PARK_NOW, 256);
}

#[test]
fn var_drop_wakes_a_parked_peer() {
    let (p, mut c) = VarQueue::with_capacity(256);
    let t = parked(move || c.front_wait(&PARK_NOW).map(|m| m.index()));
    drop(p);
    assert_eq!(t.join().unwrap(), Err(FrontWaitError::Wait(WaitError::Abandoned)));

    let (mut p, c) = VarQueue::with_capacity(64);
    p.alloc(24).unwrap().unwrap();
    p.push(0).unwrap();
    p.alloc(24).unwrap().unwrap();
    p.push(0).unwrap(); // full
    let t = parked(move || p.alloc_wait(24, &PARK_NOW).map(|b| b.len()));
    drop(c);
    assert_eq!(t.join().unwrap(), Err(AllocWaitError::Wait(WaitError::Abandoned)));
}

#[test]
fn var_notify_after_plain_calls_wakes_a_parked_peer() {
    let (mut p, mut c) = VarQueue::with_capacity(256);
    let t = parked(move || c.front_wait(&PARK_NOW).map(|m| m.msg_type()));
    p.alloc(0).unwrap().unwrap();
    p.push(7).unwrap();
    p.notify();
    assert_eq!(t.join().unwrap(), Ok(7));
}

#[test]
fn var_wait_reports_what_can_never_work() {
    let (mut p, mut c) = VarQueue::with_capacity(64);
    let max = p.max_payload();
    assert_eq!(
        p.alloc_wait(max + 1, &PARK_NOW).unwrap_err(),
        AllocWaitError::Alloc(AllocError::TooLarge { len: max + 1, max })
    );
    let w = Wait { spins: 1, yields: 1, park: Duration::from_micros(10), max_timeouts: Some(2) };
    assert_eq!(c.front_wait(&w).unwrap_err(), FrontWaitError::Wait(WaitError::TimedOut));
}
