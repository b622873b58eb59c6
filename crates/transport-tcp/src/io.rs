//! The one place where a non-blocking read or write meets `EINTR` and `WouldBlock`.

use std::io::{self, ErrorKind, Read, Write};

/// Linux `EPIPE`: reported when a write returns 0 bytes (a socket never should).
const EPIPE: i32 = 32;

/// `write` that retries on `EINTR`; `Ok(None)` when the stream cannot take bytes now
/// (`WouldBlock`); a write of 0 bytes for a non-empty buffer is an error (`EPIPE`).
///
/// ```
/// let mut out = Vec::new();
/// assert_eq!(tcpshm_transport_tcp::io::write_some(&mut out, b"abc").unwrap(), Some(3));
/// ```
#[inline]
pub fn write_some<S: Write + ?Sized>(s: &mut S, b: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match s.write(b) {
            Ok(0) if !b.is_empty() => return Err(io::Error::from_raw_os_error(EPIPE)),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// `read` that retries on `EINTR`; `Ok(None)` when nothing can be read now
/// (`WouldBlock`), `Ok(Some(0))` at the end of the stream.
///
/// ```
/// let mut buf = [0u8; 4];
/// assert_eq!(tcpshm_transport_tcp::io::read_some(&mut &b"hi"[..], &mut buf).unwrap(), Some(2));
/// ```
#[inline]
pub fn read_some<S: Read + ?Sized>(s: &mut S, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match s.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `b` to a non-blocking stream, as far as it takes it now: returns
/// how many bytes went out (all of them, or fewer if the stream is full).
///
/// ```
/// let mut out = Vec::new();
/// assert_eq!(tcpshm_transport_tcp::io::write_now(&mut out, b"abcd").unwrap(), 4);
/// ```
pub fn write_now<S: Write + ?Sized>(s: &mut S, mut b: &[u8]) -> io::Result<usize> {
    let total = b.len();
    while !b.is_empty() {
        match write_some(s, b)? {
            Some(n) => b = &b[n..],
            None => break,
        }
    }
    Ok(total - b.len())
}
