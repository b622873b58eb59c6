//! The control queue: whole frames only (a frame that does not fit is refused, never
//! split), written as far as the stream takes them and resumed at the byte, with no
//! byte lost or repeated; the one `EINTR`/`WouldBlock` helper under it.

use std::io::{self, ErrorKind, Write};
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::{decode, encode, Decoded};
use tcpshm_transport_tcp::io::{read_some, write_now, write_some};
use tcpshm_transport_tcp::{ControlQueue, CONTROL_QUEUE_BYTES};

/// A writer that takes at most `per_call` bytes per call, says `WouldBlock` every
/// `block_every` calls and `EINTR` every `intr_every` calls.
struct Trickle {
    out: Vec<u8>,
    per_call: usize,
    calls: u64,
    block_every: u64,
    intr_every: u64,
}

impl Trickle {
    fn new(per_call: usize, block_every: u64, intr_every: u64) -> Trickle {
        Trickle { out: Vec::new(), per_call, calls: 0, block_every, intr_every }
    }
}

impl Write for Trickle {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(self.intr_every) {
            return Err(ErrorKind::Interrupted.into());
        }
        if self.calls.is_multiple_of(self.block_every) {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = b.len().min(self.per_call);
        self.out.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn whole_frames_only_and_a_frame_that_does_not_fit_is_refused() {
    let mut q = ControlQueue::new();
    assert!(!q.pending());
    let hb = encode::heartbeat(1, 2);
    let fits = CONTROL_QUEUE_BYTES / hb.len();
    for _ in 0..fits {
        assert!(q.stage(&hb));
    }
    assert!(!q.stage(&hb), "over the fixed buffer");
    let mut out = Vec::new();
    assert_eq!(q.write_to(&mut out).unwrap(), Some(fits * hb.len()), "nothing half-staged");
    assert!(!q.pending());
    // Two of the largest control frames fit.
    assert!(q.stage(&[0u8; MAX_CONTROL_FRAME_LEN]) && q.stage(&[0u8; MAX_CONTROL_FRAME_LEN]));
    assert!(!q.stage(&[0u8; 8]));
    q.clear();
    assert!(!q.pending() && !q.mid_frame());
}

#[test]
fn writes_resume_at_the_byte_with_nothing_lost_or_repeated() {
    for per_call in [1, 5, 24, 100] {
        let mut q = ControlQueue::new();
        let mut w = Trickle::new(per_call, 3, 7);
        let mut sent = Vec::new();
        let mut k = 0u64;
        let mut saw_mid = false;
        while k < 200 || q.pending() {
            if k < 200 {
                let f = if k.is_multiple_of(2) { encode::heartbeat(k, k) } else { encode::ack(k, k) };
                if q.stage(&f) {
                    sent.extend_from_slice(&f);
                    k += 1;
                }
            }
            if let Some(n) = q.write_to(&mut w).unwrap() {
                assert!(n > 0 && n <= per_call);
            }
            saw_mid |= q.mid_frame();
        }
        assert_eq!(w.out, sent, "{per_call} bytes per call");
        if per_call < 24 {
            assert!(saw_mid, "mid_frame tells a write stopped inside a frame");
        }
        let mut at = 0;
        let mut n = 0;
        while let Ok(Decoded::Frame { consumed, .. }) = decode(&w.out[at..], u32::MAX) {
            at += consumed;
            n += 1;
        }
        assert_eq!((n, at), (200, w.out.len()));
    }
}

#[test]
fn a_full_stream_is_not_an_error_and_loses_nothing() {
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    // Fill the socket.
    let junk = [0u8; 65536];
    while write_some(&mut a, &junk).unwrap().is_some() {}
    let mut q = ControlQueue::new();
    assert!(q.stage(&encode::heartbeat(0, 9)));
    assert_eq!(q.write_to(&mut a).unwrap(), None, "WouldBlock is None");
    assert!(q.pending());
    // Drain the other end: then it goes out whole.
    let mut buf = vec![0u8; 1 << 20];
    let mut got = Vec::new();
    loop {
        match read_some(&mut b, &mut buf).unwrap() {
            Some(0) => unreachable!(),
            Some(n) => got.extend_from_slice(&buf[..n]),
            None => {
                if !q.pending() {
                    break;
                }
                q.write_to(&mut a).unwrap();
            }
        }
    }
    assert_eq!(&got[got.len() - 24..], &encode::heartbeat(0, 9));
}

#[test]
fn io_helpers_retry_eintr_and_name_a_zero_write() {
    struct Zero;
    impl Write for Zero {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert_eq!(write_some(&mut Zero, b"x").unwrap_err().raw_os_error(), Some(32), "EPIPE");
    assert_eq!(write_some(&mut Zero, b"").unwrap(), Some(0), "an empty write is fine");
    let mut w = Trickle::new(3, 1000, 2);
    assert_eq!(write_now(&mut w, b"abcdefgh").unwrap(), 8, "EINTR retried, partial writes continued");
    assert_eq!(w.out, b"abcdefgh");
    let mut w = Trickle::new(3, 2, 1000);
    assert_eq!(write_now(&mut w, b"abcdefgh").unwrap(), 3, "stops at WouldBlock, says how far");
    let mut empty: &[u8] = &[];
    assert_eq!(read_some(&mut empty, &mut [0u8; 4]).unwrap(), Some(0), "end of stream");
}
