//! No heap allocation per message in steady state on the TCP path: a counting
//! global allocator (in its own test binary, since it replaces the allocator)
//! counts every allocation this thread makes during thousands of
//! alloc/push/poll/front/pop round trips after a warm-up, with heartbeats, acks and
//! partial batches in the mix.

mod common;

use common::{link, open_store, TempDir};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tcpshm_proto::{Nanos, Transport};
use tcpshm_transport_tcp::TcpConnection;

struct Counting;

thread_local! {
    /// Counting is on for this thread only (the test harness's other threads may
    /// allocate whenever they like).
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn note() {
    if ARMED.with(|a| a.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to the system allocator with the caller's arguments;
// the counting touches only a const-initialised thread-local and an atomic, neither
// of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` was allocated by `System` (every allocation goes through it)
        // with `layout`; the caller upholds the rest of the contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread makes while running `f`.
fn count<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (ALLOCATIONS.load(Ordering::Relaxed) - before, r)
}

/// One echo round trip of a `len`-byte message plus a small one-way batch, polled
/// to completion. Returns whether it finished in time.
fn round(a: &mut TcpConnection, b: &mut TcpConnection, k: u64, now: &mut Nanos) -> bool {
    let len = 16 + (k as usize * 53) % 400;
    let Ok(Some(buf)) = a.alloc(len) else { return false };
    buf.fill(k as u8);
    if a.push(1).is_err() {
        return false;
    }
    // Every 8th round also a push_more batch of three, flushed by the poll.
    let batch = if k.is_multiple_of(8) { 3 } else { 0 };
    for i in 0..batch {
        let Ok(Some(buf)) = a.alloc(8) else { return false };
        buf.fill(i);
        if a.push_more(2).is_err() {
            return false;
        }
    }
    let (mut echoed, mut got) = (false, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(echoed && got == 1 + batch) {
        if Instant::now() > deadline {
            return false;
        }
        // The clock moves 0.1 ms per poll: heartbeats go out now and then.
        *now += 100_000;
        a.poll(*now);
        b.poll(*now);
        while let Some(m) = b.front() {
            if m.msg_type == 1 {
                let n = m.payload.len();
                let first = m.payload[0];
                b.pop();
                let Ok(Some(buf)) = b.alloc(n) else { return false };
                buf.fill(first);
                if b.push(3).is_err() {
                    return false;
                }
            } else {
                b.pop();
            }
            got += 1;
        }
        if let Some(m) = a.front() {
            if m.msg_type != 3 || m.payload.len() != len || m.payload[0] != k as u8 {
                return false;
            }
            a.pop();
            echoed = true;
        }
    }
    true
}

#[test]
fn no_allocation_per_message_in_steady_state() {
    // The counter counts (the test could fail).
    let (n, v) = count(|| vec![1u8; 100]);
    assert!(n >= 1 && v.len() == 100, "the counting allocator does not count");

    let dir = TempDir::new("noalloc");
    let mut a = TcpConnection::new(open_store(dir.path(), "a", "b", 1 << 16), common::config());
    let mut b = TcpConnection::new(open_store(dir.path(), "b", "a", 1 << 16), common::config());
    let mut now = 1;
    link(&mut a, &mut b, now);
    // Warm-up: every buffer reaches its working size, the queues wrap around.
    for k in 0..2_000 {
        assert!(round(&mut a, &mut b, k, &mut now), "warm-up round {k} failed: a {} b {}", a.counters(), b.counters());
    }
    let before = (a.counters(), b.counters());
    let (allocations, ok) = count(|| {
        for k in 2_000..12_000 {
            if !round(&mut a, &mut b, k, &mut now) {
                return false;
            }
        }
        true
    });
    assert!(ok, "a measured round failed: a {} b {}", a.counters(), b.counters());
    let (ca, cb) = (a.counters(), b.counters());
    assert!(ca.popped - before.0.popped == 10_000 && cb.popped > before.1.popped + 10_000);
    assert!(a.store().first_unacked() > 0 && b.store().first_unacked() > 0, "acks flowed");
    assert_eq!(allocations, 0, "heap allocations during 10,000 round trips (must be none)");
}
