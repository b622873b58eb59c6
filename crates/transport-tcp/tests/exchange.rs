//! The blocking exchange of single frames (a client's login): partial writes
//! completed, the stream's timeouts bound every wait (a timeout is a typed error, never
//! a hang or a spin), the peer's end and bad bytes are told apart, and bytes after the
//! frame stay in the reader for the session.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use tcpshm_proto::{encode, FrameError, FrameKind};
use tcpshm_test_support::net::frame;
use tcpshm_transport_tcp::exchange::{recv_blocking, send_blocking};
use tcpshm_transport_tcp::{ExchangeError, FrameReader};

fn pair(timeout: Duration) -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(timeout)).unwrap();
        s.set_write_timeout(Some(timeout)).unwrap();
    }
    (a, b)
}

fn timed_out(e: &ExchangeError, op: &str) -> bool {
    matches!(e, ExchangeError::Io { op: o, source } if *o == op && source.kind() == ErrorKind::TimedOut)
}

#[test]
fn a_frame_and_what_follows_it() {
    let (mut a, mut b) = pair(Duration::from_secs(30));
    let mut two = frame(1, 0, 0, b"login");
    two.extend_from_slice(&encode::heartbeat(0, 7));
    send_blocking(&mut a, &two).unwrap();
    let mut r = FrameReader::new(1024, 4096);
    let f = recv_blocking(&mut b, &mut r).unwrap();
    assert_eq!((f.kind, r.payload(&f)), (FrameKind::User, &b"login"[..]));
    // The heartbeat behind it is already buffered: no read needed.
    let g = r.next_frame().unwrap().unwrap();
    assert_eq!((g.kind, g.header.ack), (FrameKind::Heartbeat, 7));
}

#[test]
fn a_large_frame_crosses_a_small_socket_buffer() {
    let (mut a, mut b) = pair(Duration::from_secs(30));
    let big = frame(1, 0, 0, &vec![5u8; 1 << 20]);
    let sender = std::thread::spawn(move || send_blocking(&mut a, &big).map(|()| a));
    let mut r = FrameReader::new(1024, 2 << 20);
    let f = recv_blocking(&mut b, &mut r).unwrap();
    assert_eq!(r.payload(&f).len(), 1 << 20);
    assert!(r.payload(&f).iter().all(|&x| x == 5));
    sender.join().unwrap().unwrap();
}

#[test]
fn a_silent_peer_is_a_timeout_not_a_hang() {
    let (_a, mut b) = pair(Duration::from_millis(100));
    let mut r = FrameReader::new(1024, 4096);
    let t = Instant::now();
    let e = recv_blocking(&mut b, &mut r).unwrap_err();
    assert!(timed_out(&e, "read"), "{e:?}");
    assert!(t.elapsed() >= Duration::from_millis(90), "returned before the timeout: {:?}", t.elapsed());
    // Half a frame, then silence: the same.
    let (mut a, mut b) = pair(Duration::from_millis(100));
    send_blocking(&mut a, &frame(1, 0, 0, b"abcdef")[..10]).unwrap();
    let e = recv_blocking(&mut b, &mut r).unwrap_err();
    assert!(timed_out(&e, "read"), "{e:?}");
}

#[test]
fn a_peer_that_does_not_read_is_a_write_timeout() {
    let (mut a, _b) = pair(Duration::from_millis(100));
    let e = send_blocking(&mut a, &vec![0u8; 16 << 20]).unwrap_err();
    assert!(timed_out(&e, "write"), "{e:?}");
    // A non-blocking stream that is full fails at once, without spinning.
    let (mut a, _b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let e = send_blocking(&mut a, &vec![0u8; 16 << 20]).unwrap_err();
    assert!(timed_out(&e, "write"), "{e:?}");
}

#[test]
fn the_peers_end_and_bad_bytes_are_told_apart() {
    let (mut a, mut b) = pair(Duration::from_secs(30));
    send_blocking(&mut a, &frame(1, 0, 0, b"abc")[..20]).unwrap();
    drop(a);
    let mut r = FrameReader::new(1024, 4096);
    assert!(matches!(recv_blocking(&mut b, &mut r), Err(ExchangeError::Closed)));
    let (mut a, mut b) = pair(Duration::from_secs(30));
    send_blocking(&mut a, &[0u8; 24]).unwrap();
    let mut r = FrameReader::new(1024, 4096);
    assert!(matches!(recv_blocking(&mut b, &mut r), Err(ExchangeError::Frame(FrameError::TooShort { len: 0 }))));
    let (mut a, mut b) = pair(Duration::from_secs(30));
    send_blocking(&mut a, &(1u32 << 30).to_le_bytes()).unwrap();
    let mut r = FrameReader::new(1024, 4096);
    let e = recv_blocking(&mut b, &mut r).unwrap_err();
    assert!(matches!(e, ExchangeError::Frame(FrameError::TooLong { .. })), "{e:?}");
    assert!(e.to_string().contains("exceeds the maximum"), "{e}");
}
