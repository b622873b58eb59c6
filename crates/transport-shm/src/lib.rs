//! # tcpshm-transport-shm
//!
//! The shared-memory medium of tcpshm (Linux): the two sides of a session exchange
//! messages through two lock-free rings in one file under `/dev/shm`. The hot path —
//! [`RingTx::alloc`], [`push_more`](RingTx::push_more)/[`publish`](RingTx::publish),
//! [`RingRx::front`], [`pop`](RingRx::pop) — is a few loads and stores on the
//! mapping: no system call, no allocation, no lock. It holds no session rule (those
//! are `tcpshm-proto`'s) and no session state (that is `tcpshm-connection`'s, which
//! keeps the login's byte stream open as the control stream beside the rings).
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
//! | 0 | 4096 | control block: magic `"TSHMCONN"`, layout version, file length, ring offsets and capacities, server and client names, the file id, checksum of these immutable fields, then the session epoch, both pids and both rings' consumed counts (atomics) — byte table in [`layout`] |
//! | 4096 | 384 + cap(s→c), padded to 4096 | server→client ring (`tcpshm_ring::var` region of wire frames) |
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
//! **Inspection is read-only**: [`ShmFile::inspect`] copies the control block and
//! both rings without a lock or a write (tools: `tcpshm inspect`, `ls`, `check`,
//! `gc`), and says which sides are attached.
//!
//! **Removal is explicit**: files are never removed implicitly; only
//! [`ShmDir::remove`] deletes one and [`ShmFile::create_fresh`] / [`ShmFile::reset`]
//! replace one (each refused while either side is attached).
//!
//! ## The locking rule
//!
//! Each side holds an open-file-description (OFD) write lock on one byte of its file
//! while it maps it (from [`ShmFile::create_or_open`] / [`ShmFile::open`] until the
//! `ShmFile`, or the [`Rings`] made from it, is dropped): **the server on byte 0, the
//! client on byte 1**.
//! * Taking a side's lock fails with [`ShmError::Busy`] if another live open file
//!   description holds it — another process, or another open in this process — so
//!   at most one producer and one consumer ever use each ring.
//! * The kernel releases a lock when its holder dies, by any signal, SIGKILL included:
//!   [`ShmFile::peer_alive`] tells a dead peer from a live one (one `fcntl`).
//! * Removal and replacement take both locks.
//! * A lock belongs to the open file description: a child created by `fork` shares
//!   its parent's (and keeps it alive while it lives).
//!
//! ## Persistence and numbering
//!
//! The rings are the persistence of a shared-memory session: a message pushed
//! (published) is in the file and survives a crash of either process; a message
//! popped is gone; one not popped is seen again by whoever attaches next. Frames are
//! wire frames with their session `seq`; each ring's consumed count (in the control
//! block) is its receiver's commit point and its sender's acknowledgement.
//!
//! ## Truncation
//!
//! A process of the same user can truncate a file under a live mapping (file
//! permissions keep other users out; nothing keeps the same user out); the next access
//! to a lost page is a `SIGBUS`, which would end the whole process. A `SIGBUS` handler,
//! installed once when the first file is mapped, turns a fault inside a connection
//! file's mapping into a page of zeros and a mark on that file ([`Rings::truncated`]):
//! the session closes with a typed reason, the process and its other sessions go on.
//! A fault anywhere else goes to the handler installed before, or the default action.
//!
//! ## Limits
//!
//! * Linux only (OFD locks, `renameat2`, tmpfs).
//! * The truncation guard covers up to 65,536 mapped files at once.
//!
//! ```
//! use tcpshm_proto::Name;
//! use tcpshm_transport_shm::{Capacities, Rings, ShmDir, ShmError, ShmFile, Side};
//!
//! let dir = ShmDir::new("/dev/shm", &format!("doc-lib-{}-", std::process::id())).unwrap();
//! let (s, c) = (Name::new("srv").unwrap(), Name::new("cli").unwrap());
//! let server = Rings::new(ShmFile::create_or_open(&dir, &s, &c, Capacities::default()).unwrap());
//! let client = ShmFile::open(&dir, &s, &c).unwrap();
//! // A second client of the same session is refused while the first maps the file.
//! assert!(matches!(ShmFile::open(&dir, &s, &c), Err(ShmError::Busy { side: Side::Client, .. })));
//! assert!(server.peer_alive().unwrap());
//! drop(client);
//! assert!(!server.peer_alive().unwrap());
//! drop(server);
//! dir.remove(&s, &c).unwrap();
//! ```
#![cfg_attr(not(test), warn(clippy::undocumented_unsafe_blocks))]

mod dir;
mod error;
mod file;
mod guard;
mod inspect;
pub mod layout;
mod rings;

pub use dir::{prefix_ok, ShmDir, ShmEntry, MAX_PREFIX_LEN, SUFFIX};
pub use error::{Direction, ShmError, Side};
pub use file::ShmFile;
pub use inspect::{RingInspection, ShmFrame, ShmInspection};
pub use layout::Capacities;
pub use rings::{Ready, RingError, RingMsg, RingRx, RingTx, Rings};

/// The threading promises of the public types, checked at compile time.
#[allow(dead_code)]
fn _assert_thread_safety() {
    fn send<T: Send>() {}
    send::<ShmFile>();
    send::<Rings>();
}
