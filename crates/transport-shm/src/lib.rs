//! # tcpshm-transport-shm
//!
//! The shared-memory transport of tcpshm (Linux): after a login over TCP, the two
//! sides of a connection exchange messages through two lock-free rings in one file
//! under `/dev/shm`. The hot path — [`alloc`](tcpshm_proto::Transport::alloc),
//! `push`, `front`, `pop` — is a few loads and stores on the mapping: no system call,
//! no allocation, no lock. The login socket stays open as a control channel
//! (heartbeats, orderly close, timeout), and each side holds a lock on the file that
//! the kernel drops when its process dies, so a crashed peer is seen at the next check
//! and a second process can never attach to a live connection's rings.
//!
//! ## Files
//!
//! One file per connection: `<dir>/<prefix><server>@<client>.shm` ([`ShmDir`];
//! default `/dev/shm/tcpshm-<server>@<client>.shm`). Names are validated
//! [`Name`](tcpshm_proto::Name)s (no `/`, no leading dot, no `@`), the prefix is
//! validated too, and files are opened without following symlinks, must be regular
//! files owned by this user with mode 0600 (never accessible by group or others,
//! whatever the umask), and are sized exactly.
//!
//! | offset | size | content |
//! |---:|---:|---|
//! | 0 | 4096 | control block: magic `"TSHMCONN"`, layout version, file length, ring offsets and capacities, server and client names, checksum of these immutable fields, then the session epoch and both pids (atomics) — byte table in [`layout`] |
//! | 4096 | 384 + cap(s→c), padded to 4096 | server→client ring (`tcpshm_ring::var` region) |
//! | page-aligned | 384 + cap(c→s), padded to 4096 | client→server ring |
//!
//! **Creation is crash-safe**: the server creates the file under a temporary name
//! (mode 0600), reserves its memory (`fallocate`, so a full `/dev/shm` is an error now,
//! not a SIGBUS later), initialises the control block and both rings, then renames it
//! into place (`RENAME_NOREPLACE`). No process ever maps a half-initialised file; a
//! creator killed midway leaves only a temporary file
//! ([`ShmDir::remove_stale_temps`]).
//!
//! **Opening validates everything** before use — magic (a foreign file), version,
//! checksum, names, capacities, length, both ring headers and indices — and refuses
//! with a typed [`ShmError`] naming what is wrong. A file with other capacities is
//! never misread ([`ShmError::CapacityMismatch`]).
//!
//! **Removal is explicit**: files are never removed implicitly; only
//! [`ShmDir::remove`] deletes one and [`ShmFile::create_fresh`] / [`ShmFile::reset`]
//! replace one (each refused while either side is attached).
//!
//! ## The locking rule
//!
//! Each side holds an open-file-description (OFD) write lock on one byte of its file
//! while it is attached (from [`ShmFile::create_or_open`] / [`ShmFile::open`] until the
//! `ShmFile`, or the connection made from it, is dropped): **the server on byte 0,
//! the client on byte 1**.
//! * Taking a side's lock fails with [`ShmError::Busy`] if another live open file
//!   description holds it — another process, or another open in this process — so
//!   at most one producer and one consumer ever use each ring.
//! * The kernel releases a lock when its holder dies, by any signal, SIGKILL included.
//!   The control part checks the peer's byte with `F_OFD_GETLK` at each control check
//!   ([`ShmConfig::check_interval`]): a peer seen attached in this session whose lock is
//!   gone closes the session with [`CloseReason::PeerDied`](tcpshm_proto::CloseReason::PeerDied)
//!   at once, without waiting for a TCP timeout. [`ShmFile::peer_alive`] asks directly.
//! * Removal and replacement take both locks.
//! * A lock belongs to the open file description: a child created by `fork` shares
//!   its parent's (and keeps it alive while it lives).
//!
//! ## Sessions and epochs
//!
//! The rings are the persistence: a message pushed (published) is in the file and
//! survives a crash of either process; a message popped is gone; one not popped is
//! seen again by whoever attaches next. There are no sequence numbers or acks on the
//! data path: the ring's read index is the consumer's commit point.
//!
//! The server adds 1 to the file's session epoch at each login
//! ([`ShmConnection::server`], [`ShmConnection::reattach`]). A server with a new name
//! uses another file (the names are the key), so it starts with fresh rings; the
//! client drops its connection to the old server and removes the old server's file
//! with [`ShmDir::remove`] when it no longer wants its unread messages.
//!
//! ## Threads
//!
//! [`ShmConnection`] can be polled from one thread, or [`split`](ShmConnection::split)
//! into [`ShmData`] (the rings; `Send`; its poll makes no system call) and
//! [`ShmControl`] (the control stream and the lock checks; `Send`), polled from two
//! threads. They share the connection state through an `Arc` of atomics; a
//! [`CloseHandle`] asks for a close from any thread.
//!
//! ## Limits
//!
//! * Linux only (OFD locks, `renameat2`, tmpfs).
//! * A process of the same user can truncate the file under a live mapping; the
//!   next access to the lost pages is a SIGBUS. File permissions keep other users
//!   out; nothing can keep the same user out.
//! * A message staged with `push_more` is not in the ring until the next `push` or
//!   `poll` publishes it; a crash in between loses it (as if never pushed).
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use tcpshm_proto::{Name, Transport};
//! use tcpshm_transport_shm::{Capacities, ShmConfig, ShmConnection, ShmDir, ShmFile};
//!
//! let dir = ShmDir::new("/dev/shm", &format!("doc-lib-{}-", std::process::id())).unwrap();
//! let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
//! // The control channel: here a socket pair; in production the login TCP socket.
//! let (a, b) = UnixStream::pair().unwrap();
//! a.set_nonblocking(true).unwrap();
//! b.set_nonblocking(true).unwrap();
//!
//! let srv_file = ShmFile::create_or_open(&dir, &s, &c, Capacities::default()).unwrap();
//! let server = ShmConnection::server(srv_file, a, ShmConfig::default()).unwrap();
//! let cli_file = ShmFile::open(&dir, &s, &c).unwrap();
//! let mut client = ShmConnection::client(cli_file, b, ShmConfig::default()).unwrap();
//!
//! // The server's hot thread polls the data part; another polls the control part.
//! let (mut data, mut control) = server.split();
//! let t0 = std::time::Instant::now();
//! let control_thread = std::thread::spawn(move || {
//!     while control.poll(t0.elapsed().as_nanos() as u64) {
//!         std::thread::sleep(std::time::Duration::from_millis(1));
//!     }
//!     control.close_reason().cloned()
//! });
//!
//! client.alloc(4).unwrap().unwrap().copy_from_slice(b"ping");
//! client.push(7).unwrap();
//! let m = data.front().unwrap();
//! assert_eq!((m.msg_type, m.payload), (7, &b"ping"[..]));
//! data.pop();
//!
//! client.close(tcpshm_proto::CloseReason::Requested);
//! let seen = control_thread.join().unwrap();
//! assert!(matches!(seen, Some(tcpshm_proto::CloseReason::RemoteRequested(_))));
//! drop((data, client));
//! dir.remove(&s, &c).unwrap();
//! ```
#![cfg_attr(not(test), warn(clippy::undocumented_unsafe_blocks))]

mod config;
mod connection;
mod control;
mod data;
mod dir;
mod error;
mod file;
pub mod layout;
mod lock;
mod state;

pub use config::ShmConfig;
pub use connection::ShmConnection;
pub use control::ShmControl;
pub use data::{ShmData, ShmSender};
pub use dir::{prefix_ok, ShmDir, ShmEntry, MAX_PREFIX_LEN, SUFFIX};
pub use error::{Direction, ShmError, Side};
pub use file::ShmFile;
pub use layout::Capacities;
pub use state::CloseHandle;

/// The threading promises of the public types, checked at compile time.
#[allow(dead_code)]
fn _assert_thread_safety() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<ShmData>();
    send::<ShmControl<std::net::TcpStream>>();
    send::<ShmConnection<std::net::TcpStream>>();
    send::<ShmFile>();
    send_sync::<CloseHandle>();
}
