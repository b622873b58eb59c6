//! An in-memory byte stream for the kit: bounded, delivering reads in pseudo-random
//! chunks so every frame is split at arbitrary byte boundaries, as on TCP.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tcpshm_proto::testkit::gen::Rng;
use tcpshm_transport_tcp::ByteStream;

/// Linux `ECONNRESET`: what a read on a cut link reports.
const ECONNRESET: i32 = 104;
/// Linux `EPIPE`: what a write on a closed link reports.
const EPIPE: i32 = 32;
/// How long a blocking read or write waits (the login exchange) before it reports a
/// timeout.
const BLOCKING_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Half {
    bytes: VecDeque<u8>,
    /// The writer shut its direction down (or dropped): reads end after the bytes.
    closed: bool,
    /// The reader dropped: writes fail.
    reader_gone: bool,
}

#[derive(Debug, Default)]
struct Shared {
    halves: Mutex<[Half; 2]>,
    changed: Condvar,
}

/// One end of an in-memory duplex pipe: bounded, reads in pseudo-random chunks so
/// every frame is split at arbitrary byte boundaries, as on TCP.
#[derive(Debug)]
pub struct MemPipe {
    shared: Arc<Shared>,
    /// Which half this end reads (it writes the other).
    side: usize,
    capacity: usize,
    max_chunk: usize,
    rng: Rng,
    blocking: AtomicBool,
}

impl MemPipe {
    /// A connected pair; each direction holds at most `capacity` bytes in flight, and
    /// each read delivers 1 to `max_chunk` bytes (chosen from `seed`). Both ends start
    /// blocking (for the login exchange); a session makes them non-blocking.
    pub fn pair(capacity: usize, max_chunk: usize, seed: u64) -> (MemPipe, MemPipe) {
        let shared = Arc::new(Shared::default());
        let end = |side, seed| MemPipe {
            shared: shared.clone(),
            side,
            capacity: capacity.max(1),
            max_chunk: max_chunk.max(1),
            rng: Rng::new(seed),
            blocking: AtomicBool::new(true),
        };
        (end(0, seed), end(1, seed ^ 0x5555))
    }

    fn lock(&self) -> MutexGuard<'_, [Half; 2]> {
        self.shared.halves.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Read for MemPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let chunk = self.rng.range(1, self.max_chunk as u64) as usize;
        let side = self.side;
        let blocking = self.blocking.load(Ordering::Relaxed);
        let shared = self.shared.clone();
        let mut halves = self.lock();
        loop {
            let half = &mut halves[side];
            if !half.bytes.is_empty() {
                let n = buf.len().min(chunk).min(half.bytes.len());
                for (dst, src) in buf.iter_mut().zip(half.bytes.drain(..n)) {
                    *dst = src;
                }
                shared.changed.notify_all();
                return Ok(n);
            }
            if half.closed {
                return Ok(0);
            }
            if halves[1 - side].reader_gone && halves[1 - side].closed {
                return Err(io::Error::from_raw_os_error(ECONNRESET));
            }
            if !blocking {
                return Err(ErrorKind::WouldBlock.into());
            }
            let (h, t) = shared.changed.wait_timeout(halves, BLOCKING_WAIT).unwrap_or_else(|e| e.into_inner());
            halves = h;
            if t.timed_out() {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
    }
}

impl Write for MemPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let other = 1 - self.side;
        let (capacity, blocking) = (self.capacity, self.blocking.load(Ordering::Relaxed));
        let shared = self.shared.clone();
        let mut halves = self.lock();
        loop {
            let half = &mut halves[other];
            if half.reader_gone || half.closed {
                return Err(io::Error::from_raw_os_error(EPIPE));
            }
            let room = capacity.saturating_sub(half.bytes.len());
            if room > 0 {
                let n = room.min(buf.len());
                half.bytes.extend(&buf[..n]);
                shared.changed.notify_all();
                return Ok(n);
            }
            if !blocking {
                return Err(ErrorKind::WouldBlock.into());
            }
            let (h, t) = shared.changed.wait_timeout(halves, BLOCKING_WAIT).unwrap_or_else(|e| e.into_inner());
            halves = h;
            if t.timed_out() {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ByteStream for MemPipe {
    fn shutdown_write(&mut self) {
        let other = 1 - self.side;
        self.lock()[other].closed = true;
        self.shared.changed.notify_all();
    }

    fn unread(&self) -> Option<usize> {
        Some(self.lock()[self.side].bytes.len())
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        self.blocking.store(false, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for MemPipe {
    fn drop(&mut self) {
        let (side, other) = (self.side, 1 - self.side);
        let mut halves = self.lock();
        halves[side].reader_gone = true;
        halves[other].closed = true;
        drop(halves);
        self.shared.changed.notify_all();
    }
}
