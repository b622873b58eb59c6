//! No heap allocation per message on the shared-memory data path in steady state:
//! a counting global allocator around alloc/push/front/pop loops, both through the
//! whole connection (with `poll`, which does the control work at every call here)
//! and through the split data part. This binary holds a single test, so nothing else
//! allocates while it counts.

mod common;

use common::{name, socket_pair, TestDir};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use tcpshm_proto::Transport;
use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmFile};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One round trip of `len` bytes each way, every call of the data path, checked.
fn round<A: Transport, B: Transport>(a: &mut A, b: &mut B, k: u64, now: u64) {
    let len = (k % 200) as usize;
    let buf = a.alloc(len).unwrap().unwrap();
    buf.fill(k as u8);
    a.push_more(1).unwrap();
    a.alloc(8).unwrap().unwrap().copy_from_slice(&k.to_le_bytes());
    a.push(2).unwrap();
    a.poll(now);
    b.poll(now);
    let m = b.front().unwrap();
    assert!(m.payload.len() == len && m.payload.iter().all(|&x| x == k as u8));
    b.pop();
    let m = b.front().unwrap();
    assert_eq!(m.payload, k.to_le_bytes());
    b.pop();
    b.alloc(len).unwrap().unwrap().fill(!(k as u8));
    b.push(3).unwrap();
    let m = a.front().unwrap();
    assert!(m.payload.len() == len && m.payload.iter().all(|&x| x == !(k as u8)));
    a.pop();
}

#[test]
fn no_allocation_per_message_in_steady_state() {
    let t = TestDir::new("noalloc");
    let (s, c) = (name("S"), name("C"));
    // Control work at every poll, heartbeats every 50 rounds: the control path is
    // exercised too.
    let cfg = ShmConfig { heartbeat_interval: 50, timeout: 1 << 40, check_interval: 0, max_payload: usize::MAX };
    let sf = ShmFile::create_or_open(&t.dir, &s, &c, Capacities::symmetric(1 << 14)).unwrap();
    let cf = ShmFile::open(&t.dir, &s, &c).unwrap();
    let (x, y) = socket_pair();
    let mut srv = ShmConnection::server(sf, x, cfg).unwrap();
    let mut cli = ShmConnection::client(cf, y, cfg).unwrap();

    for k in 0..1_000 {
        round(&mut cli, &mut srv, k, k);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for k in 1_000..101_000 {
        round(&mut cli, &mut srv, k, k);
    }
    let during = ALLOCS.load(Ordering::Relaxed) - before;
    assert!(srv.is_connected() && cli.is_connected());
    assert_eq!(during, 0, "{during} heap allocations in 100,000 round trips (connection with control work)");

    // The split data parts: the hot thread's loop.
    let (mut sd, _sc) = srv.split();
    let (mut cd, _cc) = cli.split();
    for k in 0..1_000 {
        round(&mut cd, &mut sd, k, 0);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for k in 1_000..101_000 {
        round(&mut cd, &mut sd, k, 0);
    }
    let during = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(during, 0, "{during} heap allocations in 100,000 round trips (data parts)");
    // Zero-copy echo through front_split.
    let before = ALLOCS.load(Ordering::Relaxed);
    for k in 0..100_000u64 {
        cd.alloc(16).unwrap().unwrap().copy_from_slice(&[k as u8; 16]);
        cd.push(4).unwrap();
        let (m, mut tx) = sd.front_split().unwrap();
        tx.alloc(m.payload.len()).unwrap().unwrap().copy_from_slice(m.payload);
        tx.push(m.msg_type).unwrap();
        sd.pop();
        assert_eq!(cd.front().unwrap().payload, [k as u8; 16]);
        cd.pop();
    }
    let during = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(during, 0, "{during} heap allocations in 100,000 zero-copy echoes");
    // The counter does count: a Vec allocates.
    let before = ALLOCS.load(Ordering::Relaxed);
    drop(std::hint::black_box(vec![1u8; 10]));
    assert!(ALLOCS.load(Ordering::Relaxed) > before);
}
