//! `ShmFile::inspect`: a read-only copy of a connection file — attached sides, pids,
//! consumed counts and both rings' messages — taken while both sides run flat out
//! without disturbing them, and impossible contents reported, never misread.

mod common;

use common::{name, TestDir};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tcpshm_transport_shm::{Capacities, Direction, Rings, ShmError, ShmFile, Side};

const CAPS: Capacities = Capacities { server_to_client: 4096, client_to_server: 8192 };

fn push(r: &mut Rings, seq: u64, len: usize) -> bool {
    match r.tx.alloc(len).unwrap() {
        Some(buf) => {
            buf.fill(seq as u8);
            r.tx.push_more(7, seq, 0).unwrap();
            r.tx.publish();
            true
        }
        None => false,
    }
}

#[test]
fn a_copy_taken_while_both_sides_run_is_consistent_and_disturbs_nothing() {
    let t = TestDir::new("inspect-live");
    let (s, c) = (name("srv"), name("cli"));
    let mut srv = Rings::new(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    let mut cli = Rings::new(ShmFile::open(&t.dir, &s, &c).unwrap());
    let path = t.dir.path(&s, &c);
    const N: u64 = 200_000;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // The server pushes N messages of varying sizes; the client pops them in order.
    let producer = std::thread::spawn(move || {
        let mut seq = 0;
        while seq < N {
            if push(&mut srv, seq, (seq % 97) as usize) {
                seq += 1;
            }
        }
        srv
    });
    let consumer = std::thread::spawn(move || {
        let mut next = 0;
        while next < N {
            let Some(m) = cli.rx.front().unwrap() else { continue };
            assert_eq!((m.seq, m.payload.len()), (next, (next % 97) as usize));
            assert!(m.payload.iter().all(|&b| b == next as u8));
            cli.rx.pop(next + 1).unwrap();
            next += 1;
        }
        stop2.store(true, Ordering::SeqCst);
        cli
    });
    let (mut copies, mut busy) = (0u64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        match ShmFile::inspect(&path) {
            Ok(i) => {
                copies += 1;
                assert!(i.is_attached(Side::Server) && i.is_attached(Side::Client));
                let r = i.ring(Direction::ServerToClient);
                assert_eq!(r.fault, None);
                // The frames of a copy are consecutive, whole and right.
                for w in r.frames.windows(2) {
                    assert_eq!(w[1].seq, w[0].seq + 1);
                }
                for f in &r.frames {
                    assert_eq!(f.payload.len(), (f.seq % 97) as usize);
                    assert!(f.payload.iter().all(|&b| b == f.seq as u8), "frame {} torn", f.seq);
                }
            }
            Err(ShmError::ChangedWhileReading { .. }) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let srv = producer.join().unwrap();
    let cli = consumer.join().unwrap();
    assert!(copies > 0, "no inspection completed ({busy} gave up)");
    // At rest: every message consumed, nothing unconsumed, the counts agree.
    let i = ShmFile::inspect(&path).unwrap();
    let r = i.ring(Direction::ServerToClient);
    assert_eq!((r.consumed, r.unconsumed(), r.read, r.write), (N, 0, r.write, r.write));
    assert!(i.is_drained());
    assert_eq!((i.server, i.client, i.capacities, i.file_id), (s, c, CAPS, srv.file_id()));
    assert_eq!(i.pid(Side::Client), Some(std::process::id()));
    drop((srv, cli));
    let i = ShmFile::inspect(&path).unwrap();
    assert_eq!(i.attached, [false, false]);
    assert_eq!(i.pids, [None, None], "a side that lets go clears its pid");
}

#[test]
fn unconsumed_messages_and_stale_copies_are_told_apart() {
    let t = TestDir::new("inspect-counts");
    let (s, c) = (name("srv"), name("cli"));
    let mut srv = Rings::new(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    for seq in 0..3 {
        assert!(push(&mut srv, seq, 5));
    }
    let mut cli = Rings::new(ShmFile::open(&t.dir, &s, &c).unwrap());
    // The client consumed message 0; a crash before the release would leave it there.
    cli.rx.raise_consumed(1);
    let i = t.dir.inspect(&s, &c).unwrap();
    let r = i.ring(Direction::ServerToClient);
    assert_eq!((r.frames.len(), r.unconsumed(), r.consumed), (3, 2, 1));
    assert!(!i.is_drained());
    assert_eq!(i.ring(Direction::ClientToServer).frames, vec![]);
    drop(cli);
    assert!(!t.dir.inspect(&s, &c).unwrap().is_attached(Side::Client));
    drop(srv);
}

#[test]
fn impossible_contents_are_reported_never_misread() {
    let t = TestDir::new("inspect-bad");
    let (s, c) = (name("srv"), name("cli"));
    let mut srv = Rings::new(ShmFile::create_or_open(&t.dir, &s, &c, CAPS).unwrap());
    assert!(push(&mut srv, 0, 10));
    assert!(push(&mut srv, 1, 10));
    let path = t.dir.path(&s, &c);
    drop(srv);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // The second frame's header gets impossible flags: the first is shown, then the fault.
    f.write_all_at(&[0x40], 4096 + 384 + 40 + 6).unwrap();
    let i = ShmFile::inspect(&path).unwrap();
    let r = i.ring(Direction::ServerToClient);
    assert_eq!(r.frames.len(), 1);
    assert!(r.fault.as_deref().unwrap().contains("impossible header"), "{:?}", r.fault);
    assert!(!i.is_drained());
    // A scribbled control block is the typed error an open gives.
    f.write_all_at(&[0xFF], 100).unwrap();
    assert!(matches!(ShmFile::inspect(&path), Err(ShmError::BadChecksum { .. })));
    // Not ours at all.
    f.write_all_at(b"NOTOURS!", 0).unwrap();
    assert!(matches!(ShmFile::inspect(&path), Err(ShmError::BadMagic { .. })));
    assert!(matches!(ShmFile::inspect(t.dir.dir().join("missing")), Err(ShmError::NotFound(_))));
}
