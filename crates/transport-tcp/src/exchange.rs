//! A blocking exchange of single frames over a stream: how a client sends its login
//! request and reads the reply before the session runs non-blocking on the same
//! stream (and the same [`FrameReader`]: bytes the server sent right after its reply
//! stay buffered for the session).

use crate::io::{read_some, write_some};
use crate::reader::{Fill, FrameReader, InFrame};
use std::io::{self, ErrorKind, Read, Write};
use tcpshm_proto::FrameError;

/// Why a blocking exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// A system call failed, or a timeout of the stream expired (`TimedOut`).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The peer's bytes are not a valid frame.
    #[error("malformed frame from the peer: {0}")]
    Frame(#[from] FrameError),
    /// The peer closed the stream before a whole frame arrived.
    #[error("the peer closed the connection")]
    Closed,
}

/// Writes `frames` whole to a blocking stream; its write timeout bounds each wait (a
/// non-blocking stream that cannot take them is a `TimedOut` error, not a spin).
///
/// ```
/// let mut out = Vec::new();
/// tcpshm_transport_tcp::exchange::send_blocking(&mut out, b"frame").unwrap();
/// assert_eq!(out, b"frame");
/// ```
pub fn send_blocking<S: Write>(s: &mut S, mut frames: &[u8]) -> Result<(), ExchangeError> {
    while !frames.is_empty() {
        match write_some(s, frames) {
            Ok(Some(n)) => frames = &frames[n..],
            Ok(None) => return Err(timed_out("write")),
            Err(source) => return Err(ExchangeError::Io { op: "write", source }),
        }
    }
    Ok(())
}

/// Reads from a blocking stream until `reader` holds one more whole frame, and
/// returns it (its read timeout bounds each wait). Bytes after the frame stay in the
/// reader.
///
/// ```
/// use tcpshm_proto::{encode, FrameKind};
/// use tcpshm_transport_tcp::{exchange, FrameReader};
/// let wire = encode::heartbeat(1, 2);
/// let mut r = FrameReader::new(1024, 4096);
/// let f = exchange::recv_blocking(&mut &wire[..], &mut r).unwrap();
/// assert_eq!((f.kind, f.header.ack), (FrameKind::Heartbeat, 2));
/// ```
pub fn recv_blocking<S: Read>(s: &mut S, reader: &mut FrameReader) -> Result<InFrame, ExchangeError> {
    loop {
        if let Some(f) = reader.next_frame()? {
            return Ok(f);
        }
        match reader.fill(&mut ReadOnce(s), usize::MAX) {
            Ok(Fill::Bytes(_)) => {}
            Ok(Fill::Eof) => return Err(ExchangeError::Closed),
            Ok(Fill::WouldBlock) => return Err(timed_out("read")),
            // Only kept user frames fill a reader; an exchange keeps none.
            Ok(Fill::Full) => return Err(ExchangeError::Frame(FrameError::TooLong { len: u32::MAX, max: 0 })),
            Err(source) => return Err(ExchangeError::Io { op: "read", source }),
        }
    }
}

fn timed_out(op: &'static str) -> ExchangeError {
    ExchangeError::Io { op, source: io::Error::new(ErrorKind::TimedOut, "the peer did not answer in time") }
}

/// A `Read` that maps a blocking stream's timeout (`EAGAIN` from `SO_RCVTIMEO`) to
/// `WouldBlock`, as a non-blocking one says it.
struct ReadOnce<'a, S>(&'a mut S);

impl<S: Read> Read for ReadOnce<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match read_some(self.0, buf)? {
            Some(n) => Ok(n),
            None => Err(ErrorKind::WouldBlock.into()),
        }
    }
}
