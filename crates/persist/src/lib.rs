//! # tcpshm-persist
//!
//! The persistent per-connection store of tcpshm: for one (local name, remote name)
//! pair, the **send queue** of messages pushed but not yet acknowledged by the peer,
//! and the **consumed count** of the peer's messages (the receive side's commit
//! point), in one mmap'd file. A process killed at any instruction leaves a file that
//! reopens in the state before or after the operation it was in; a
//! [`Durability`] policy chooses whether the state also survives power loss.
//!
//! ```
//! use tcpshm_persist::{Durability, Options, Store};
//! use tcpshm_proto::Name;
//! # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-lib-{}", std::process::id()));
//! let (me, peer) = (Name::new("client-7").unwrap(), Name::new("gateway").unwrap());
//! let opts = Options::new(1 << 20).durability(Durability::Sync { every: 64 });
//! let (mut store, _outcome) = Store::open(&dir, me, peer, &opts, None, 0).unwrap();
//! store.alloc(3).unwrap().expect("room").copy_from_slice(b"buy");
//! let seq = store.push(1, store.consumed()).unwrap();
//! store.flush().unwrap(); // durable now, whatever the group-commit count
//! drop(store);
//!
//! // After a restart (or a kill -9) the message is still queued under its seq.
//! let (mut store, _) = Store::open(&dir, me, peer, &opts, None, 0).unwrap();
//! let at = store.cursor_at(seq).unwrap();
//! let (frame, _) = store.frame(at).unwrap().unwrap();
//! assert_eq!((frame.seq, frame.msg_type, frame.payload), (0, 1, &b"buy"[..]));
//! # drop(store); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
//! ```
//!
//! ## Files
//!
//! One file per pair: `<dir>/<local>@<remote>.tcpshm`, created with mode 0600 (set
//! explicitly, whatever the umask). Names are validated [`Name`](tcpshm_proto::Name)s,
//! which cannot hold `/` or `@` nor start with a dot, so no file name escapes the
//! directory and two pairs never share a file. Files are opened without following
//! symlinks, and a store holds an exclusive `flock` on its file while open:
//! a second open (another process, or another handle in the same one) fails with
//! [`OpenError::Locked`]. [`Store::list`] enumerates a directory's stores,
//! [`Store::remove`] deletes one.
//!
//! A file is never visible under its name before it is complete: creation, an epoch
//! reset and a migration build the new file under `.<local>@<remote>.tcpshm.tmp`
//! (locked, so two builders exclude each other), sync it, `rename` it into place and
//! sync the directory. The disk blocks are reserved with `fallocate` when the file is
//! built, so writing through the mapping cannot meet a full disk (on a file system
//! without `fallocate` the file stays sparse).
//!
//! ## File layout (format version 1, little-endian)
//!
//! | offset | size | field | written |
//! |---:|---:|---|---|
//! | 0 | 8 | magic `"TSHMSTOR"` | once |
//! | 8 | 4 | format version (1) | once |
//! | 12 | 4 | header page length (4096) | once |
//! | 16 | 8 | send-queue ring capacity in bytes (power of two) | once |
//! | 24 | 4 | frame alignment (8, the wire's) | once |
//! | 28 | 4 | reserved, 0 | once |
//! | 32 | 8 | creation time, ns since the Unix epoch (given by the caller) | once |
//! | 40 | 1 | local name length (1..=64) | once |
//! | 41 | 1 | remote name length (1..=64) | once |
//! | 42 | 1 | epoch length (0 = no epoch) | once |
//! | 43 | 5 | reserved, 0 | once |
//! | 48 | 64 | local name, zero-padded | once |
//! | 112 | 64 | remote name, zero-padded | once |
//! | 176 | 64 | epoch (the remote's identity, e.g. `Server20180714`), zero-padded | once |
//! | 240 | 4 | CRC32 (IEEE) of bytes 0..240 | once |
//! | 244 | 12 | reserved, 0 | — |
//! | 256 | 8 | `acked`: first unacknowledged seq (= the peer's consumed count) | atomic store |
//! | 264 | 8 | `consumed`: how many of the peer's messages our user consumed | atomic store |
//! | 272 | 8 | `send_cursor`: seq written to the wire (informational) | atomic store |
//! | 280 | 8 | `next_seq` hint (checked at open; the ring is authoritative) | atomic store |
//! | 288 | 3808 | zero | — |
//! | 4096 | 384 + capacity | the send queue: a [`tcpshm_ring::var`] region (its own header, then frames) | ring |
//!
//! Fields marked "once" are written when the file is built and never again in place;
//! the counters are aligned 8-byte words, each updated by one atomic store, all in the
//! file's first 512-byte sector. The file is exactly `4096 + 384 + capacity` bytes
//! ([`file_len`]).
//!
//! Each queued message of `n` bytes is a ring frame whose payload is
//! `seq (u64) ‖ ack (u64) ‖ message`, so the ring's bytes are exactly the wire frames
//! of [`tcpshm_proto::frame`] (24-byte header: length, type, flags, seq, ack; zero
//! padding to 8): [`Store::send_run`] returns runs of whole frames that a transport
//! `write`s straight from the mapping.
//!
//! ## Validation
//!
//! [`Store::open`] trusts nothing in the file and says exactly what is wrong
//! ([`OpenError`]): shorter than a header ([`OpenError::Truncated`]); not ours, another
//! version, damaged header checksum, an impossible field ([`OpenError::Header`]);
//! names other than asked ([`OpenError::NamesDiffer`]); another capacity than
//! configured ([`OpenError::CapacityDiffers`] — nothing of the queue is read; the
//! caller refuses, or calls [`Store::migrate`]); a length other than the header
//! implies ([`OpenError::LengthMismatch`]); a bad ring header ([`OpenError::Ring`]);
//! counters and frames that contradict each other ([`OpenError::Inconsistent`]:
//! every queued frame must be a valid user wire frame with zero padding, seqs must
//! be consecutive from `acked`, and no counter may be ahead of the queue).
//!
//! ## Crash safety
//!
//! Every state change has one commit point, a single aligned store into the shared
//! mapping; a process killed before it leaves the old state, after it the new one:
//!
//! * **push**: the message and its header (with seq and ack) are written in free ring
//!   space, invisible; the ring's write-index store publishes it. A batch
//!   ([`Store::push_more`] then [`Store::publish`]) is published by one store: all of
//!   it or none. The `next_seq` hint is stored after, so it may lag, never lead.
//! * **ack**: `acked` is stored first (the commit point), then the acknowledged frames
//!   are released (the ring's read-index store). A kill in between leaves frames
//!   below `acked` queued: `open` releases them.
//! * **consumed**, **send_cursor**: one store each.
//! * **create, epoch reset, migration**: a complete new file replaces the old one by
//!   `rename`, which is atomic.
//!
//! On open the ring is authoritative: `next_seq` is the last queued frame's seq + 1
//! (or `acked` if the queue is empty). `tests/crash.rs` kills a writer process with
//! SIGKILL at hundreds of random moments and checks, after each, that the store opens
//! in the state before or after the operation in flight, with every message's bytes.
//!
//! ## Durability
//!
//! The mapping *is* the kernel's page cache of the file, so a change is in the file
//! (for every process, and for a restart of ours) as soon as it is stored: no system
//! call on the hot path. What differs is when it reaches the disk:
//!
//! * [`Durability::Process`] (default): survives any crash of the process; a crash of
//!   the machine (power loss, kernel panic) loses what the kernel has not written back
//!   yet (dirty pages are written within ~30 s by default) unless [`Store::flush`] was
//!   called. Cost: none beyond the memory stores (see the bench table below). Creating,
//!   migrating or resetting a store is not synced either (the rename that publishes
//!   the new file is atomic for every process): a first login costs microseconds, not
//!   the milliseconds of an `fsync`.
//! * [`Durability::Sync { every }`](Durability::Sync): after every `every` operations
//!   (messages pushed, acks, consumed-count changes) and on [`Store::flush`], the store
//!   `msync(MS_SYNC)`s the dirty part of the mapping (the header pages and the ring
//!   data written since the last sync) and returns when the disk has it: after the
//!   call that triggered the sync (or `flush`) returns, that state survives power
//!   loss. Operations after the last sync may be lost on power loss. Cost: one disk
//!   flush per `every` operations (see below): group commit amortises it.
//!
//! Measured by `cargo xtask bench persist` (AMD EPYC VM, 2 vCPUs, ext4 on a virtual
//! disk where one `fdatasync` takes about 100 µs; one thread pushing messages, every
//! payload byte copied in, the peer acknowledging every 64; median of 5 runs). The
//! reference is the same wire-frame bytes written with one `write(2)` per message
//! (plus `fdatasync` every `g` messages), measured in the same run:
//!
//! | mode | 64 B messages | ratio to reference | 4 KiB messages | ratio to reference |
//! |---|---:|---:|---:|---:|
//! | `Process` | 111 M msg/s (9 ns, 7.1 GB/s) | 124× | 15.3 M msg/s (63 GB/s) | 19× |
//! | `Sync { every: 1 }` | 9.3 k msg/s | 0.92× | 8.7 k msg/s | 0.88× |
//! | `Sync { every: 8 }` | 74 k msg/s | 1.00× | 58 k msg/s | 0.85× |
//! | `Sync { every: 64 }` | 558 k msg/s | 1.55× | 204 k msg/s | 0.73× |
//! | `Sync { every: 256 }` | 2.0 M msg/s | 3.2× | 256 k msg/s | 0.59× |
//!
//! So a sync costs about one disk flush (~100 µs here) per `every` operations, and
//! group commit divides it. One cost is particular to a mapping: when the kernel
//! writes a dirty page back (a sync, or its periodic writeback in `Process` mode), it
//! write-protects the page again, so the next write to that page takes a fault (about
//! 2 µs). Small messages share pages and hardly notice; 4 KiB messages take about one
//! fault each, which is why `write` + `fdatasync` beats the store for large messages
//! at large group sizes (the bench counts ~1 minor fault per 4 KiB message).
//!
//! What power loss can and cannot do: the pages written after the last sync reach the
//! disk in an order the kernel chooses. `open` validates the file completely, so a
//! torn state that contradicts itself (e.g. a ring index written back before the
//! frame it covers) is reported as [`OpenError::Inconsistent`], never misread; but
//! the payload bytes of a message pushed after the last sync are not checksummed, so
//! to be sure of them after power loss, treat only what was synced as durable (call
//! `flush` at quiet moments). Under `Process` the same applies to a machine crash.
//!
//! ## Limits
//!
//! * One process at a time per store (the lock). Another program that ignores the
//!   lock and truncates the file makes the store's accesses fault (`SIGBUS`): the
//!   directory should be private to the application (it is created 0700).
//! * A message is at most about half the capacity ([`Store::max_payload`]).
//! * Little-endian targets only (the counters are native atomics).
#![cfg_attr(not(test), warn(clippy::undocumented_unsafe_blocks))]

mod cursor;
mod error;
mod files;
mod layout;
mod lifecycle;
mod options;
mod outcome;
mod store;

pub use cursor::{QueuedFrame, SendCursor, SendRun};
pub use error::{HeaderError, Inconsistency, OpenError, StoreError};
pub use files::{file_name, FILE_SUFFIX};
pub use layout::{file_len, HeaderInfo, FORMAT_VERSION, FRAME_ALIGN, HEADER_PAGE, MAGIC};
pub use options::{Durability, Options, MIN_CAPACITY};
pub use outcome::{EpochChange, Migration, OpenOutcome, ResetInfo, StoreEntry};
pub use store::Store;
