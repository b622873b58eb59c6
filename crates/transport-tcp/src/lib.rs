//! # tcpshm-transport-tcp
//!
//! The byte-stream medium of tcpshm: what it takes to carry frames over TCP, a Unix
//! socket, or any other non-blocking byte stream ([`ByteStream`]). It holds no
//! session rule (those are `tcpshm-proto`'s) and no session state (that is
//! `tcpshm-connection`'s): it moves frames.
//!
//! * [`FrameReader`]: one reusable receive buffer; frames are decoded in place by
//!   [`tcpshm_proto::decode()`], user frames stay for `front`/`pop`, handled control
//!   frames are cut out. It serves a session's data stream, a shared-memory
//!   session's control stream, and the login exchange before either.
//! * [`ControlQueue`]: control frames waiting to be written, in a fixed buffer,
//!   written at frame boundaries and resumed at the byte.
//! * [`io`]: the one place where `EINTR` and `WouldBlock` are handled.
//! * [`exchange`]: a blocking exchange of single frames (a client's login).
//! * [`tcp`]: TCP sockets as tcpshm uses them (non-blocking, `TCP_NODELAY`).
//!
//! ```
//! use tcpshm_proto::{encode, FrameKind};
//! use tcpshm_transport_tcp::{ControlQueue, Fill, FrameReader};
//!
//! // One side queues a heartbeat; the other reads and decodes it.
//! let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
//! b.set_nonblocking(true).unwrap();
//! let mut q = ControlQueue::new();
//! q.stage(&encode::heartbeat(0, 3));
//! q.write_to(&mut a).unwrap();
//! let mut r = FrameReader::new(1024, 4096);
//! assert!(matches!(r.fill(&mut b, usize::MAX).unwrap(), Fill::Bytes(24)));
//! let f = r.next_frame().unwrap().unwrap();
//! assert_eq!((f.kind, f.header.ack), (FrameKind::Heartbeat, 3));
//! ```

mod config;
mod control;
pub mod exchange;
pub mod io;
mod reader;
mod stream;
pub mod tcp;

pub use config::StreamConfig;
pub use control::{ControlQueue, CONTROL_QUEUE_BYTES};
pub use exchange::ExchangeError;
pub use reader::{Fill, FrameReader, InFrame, MIN_BUFFER};
pub use stream::ByteStream;
