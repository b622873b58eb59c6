//! No heap allocation per message in steady state: a server (control and a group)
//! and a client echo over TCP and over shared memory on this one thread, and a
//! counting allocator sees no allocation while thousands of messages go round.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use tcpshm_client::{Client, TransportKind};
use tcpshm_proto::Transport;
use tcpshm_server::{AcceptAll, RoundRobin, Server};

/// Counts the allocations of the threads that armed it.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if ARMED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting only
// touches an atomic and a const-initialised thread-local without a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `n` echoes, one at a time, polling the server and the client from this thread.
fn echoes(server: &mut Server<AcceptAll, RoundRobin, Echo>, c: &mut Client, n: u64) {
    const SIZES: [usize; 4] = [16, 36, 68, 200];
    let mut sent = [0u8; 200];
    for i in 0..n {
        let len = SIZES[(i % 4) as usize];
        for (k, b) in sent[..len].iter_mut().enumerate() {
            *b = (i as usize).wrapping_add(k) as u8;
        }
        loop {
            if let Some(buf) = c.alloc(len).unwrap() {
                buf.copy_from_slice(&sent[..len]);
                c.push((i % 1000) as u16).unwrap();
                break;
            }
            server.poll(now());
            c.poll(now());
        }
        let deadline = now() + 10_000_000_000;
        loop {
            server.poll(now());
            assert!(c.poll(now()), "disconnected");
            if let Some(m) = c.front() {
                assert!(m.msg_type == (i % 1000) as u16 && m.payload == &sent[..len], "bad echo");
                c.pop();
                break;
            }
            assert!(now() < deadline, "no echo");
        }
    }
}

#[test]
fn steady_state_echo_allocates_nothing_per_message() {
    let dir = TempDir::new("no-alloc");
    let prefix = unique_shm_prefix();
    let _shm = ShmCleanup(prefix.clone());
    let cfg = server_config("Srv", &dir.path().join("server"), &prefix);
    let server = Server::bind(cfg, AcceptAll, RoundRobin::default(), vec![Echo]).unwrap();
    let addr = server.local_addrs()[0];
    // Connect while another thread polls the server (connect blocks), then take the
    // server back and drive everything from this thread.
    let polled = Polled::spawn(server, |s| s.poll(now()));
    let open = |name: &str, kind| {
        let mut c = Client::open(client_config(name, &dir.path().join(name), &prefix), now()).unwrap();
        c.connect(addr, kind, now()).unwrap();
        c
    };
    let mut tcp = open("tcp", TransportKind::Tcp);
    let mut shm = open("shm", TransportKind::Shm);
    let mut server = polled.stop();

    for (what, c) in [("TCP", &mut tcp), ("SHM", &mut shm)] {
        // Warm up: buffers reach their working size, first-time paths run.
        echoes(&mut server, c, 20_000);
        ALLOCATIONS.store(0, Ordering::Relaxed);
        ARMED.with(|a| a.set(true));
        echoes(&mut server, c, 20_000);
        ARMED.with(|a| a.set(false));
        let n = ALLOCATIONS.load(Ordering::Relaxed);
        assert_eq!(n, 0, "{what}: {n} heap allocations in 20,000 echoes (server + client)");
    }
}
