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
//! ## File layout (format version 2, little-endian)
//!
//! | offset | size | field | written |
//! |---:|---:|---|---|
//! | 0 | 8 | magic `"TSHMSTOR"` | once |
//! | 8 | 4 | format version (2) | once |
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
//! | 280 | 8 | `next_seq` hint (repaired at open; the ring is authoritative) | atomic store |
//! | 288 | 32 | the 4 [session words](SessionWord) | atomic store |
//! | 320 | 16 | [boot id](BootId) of the machine session that last opened the file | at open |
//! | 512 | 128 | commit record slot 0 (alone in its 512-byte sector) | at a sync |
//! | 1024 | 128 | commit record slot 1 (alone in its 512-byte sector) | at a sync |
//! | 4096 | 384 + capacity | the send queue: a [`tcpshm_ring::var`] region (its own header, then frames) | ring |
//!
//! Fields marked "once" are written when the file is built and never again in place;
//! the live words are aligned 8-byte words, each updated by one atomic store. A commit
//! record holds the whole logical state at a sync (`acked`, `next_seq`, `consumed`,
//! `send_cursor`, the session words, the ring's read and write indices), the CRC32 of
//! the ring bytes published since the previous sync, its number, its mode and its own
//! CRC32. The file is exactly `4096 + 384 + capacity` bytes ([`file_len`]).
//!
//! Each queued message of `n` bytes is a ring frame whose payload is
//! `seq (u64) ‖ ack (u64) ‖ message`, so the ring's bytes are exactly the wire frames
//! of [`tcpshm_proto::frame`] (24-byte header: length, type, flags, seq, ack; zero
//! padding to 8): [`Store::send_run`] returns runs of whole frames that a transport
//! `write`s straight from the mapping.
//!
//! ## Validation and recovery
//!
//! [`Store::open`] trusts nothing in the file and says exactly what is wrong
//! ([`OpenError`]): shorter than a header ([`OpenError::Truncated`]); not ours, another
//! version, damaged header checksum, an impossible field ([`OpenError::Header`]);
//! names other than asked ([`OpenError::NamesDiffer`]); another capacity than
//! configured ([`OpenError::CapacityDiffers`] — nothing of the queue is read; the
//! caller refuses, or calls [`Store::migrate`]); a length other than the header
//! implies ([`OpenError::LengthMismatch`]); a bad ring header ([`OpenError::Ring`]).
//!
//! Then it decides on the bytes as they are (a pure function of the file and of the
//! machine's [boot id](BootId), shared with [`Store::inspect`], [`check`] and
//! [`Store::salvage`]), installs the state and tells how in [`Store::recovery`]:
//!
//! * **same machine session** ([`Recovery::Resumed`]): the page cache holds exactly
//!   what the last writer stored (a process crash loses nothing of it), so the live
//!   words and the ring are authoritative, checked strictly: every queued frame a
//!   valid user wire frame with zero padding, seqs consecutive from `acked`, no
//!   counter ahead of the queue ([`OpenError::Inconsistent`] otherwise); an
//!   interrupted acknowledgement is finished, the `next_seq` hint repaired;
//! * **after a machine restart, `Sync`** ([`Recovery::RolledBack`]): the live words
//!   and ring indices may mix old and new pages, so they are ignored; the store takes
//!   exactly the state of its newest commit record whose batch matches its checksum
//!   (the previous record when the last sync was cut by the power loss), and says how
//!   many unsynced messages it dropped;
//! * **after a machine restart, `Process`** ([`Recovery::Unverified`]): no promise
//!   was made; the live state is taken if consistent, hints repaired.
//!
//! A file that no crash can produce — synced data damaged, or a live state that
//! contradicts itself — is refused with the [`Inconsistency`], and
//! [`Store::salvage`] keeps its valid prefix in a fresh file.
//!
//! ## Crash safety
//!
//! Every state change has one commit point, a single aligned store into the shared
//! mapping; a process killed before it leaves the old state, after it the new one:
//!
//! * **push**: the message and its header (with seq and ack) are written in free ring
//!   space, invisible; the ring's write-index store publishes it. A batch
//!   ([`Store::push_more`] then [`Store::publish`]) is published by one store: all of
//!   it or none. The `next_seq` hint is stored after, so it may lag.
//! * **ack**: `acked` is stored first (the commit point), then the acknowledged frames
//!   are consumed; their space is released at once in `Process` mode, at the next sync
//!   in `Sync` mode. A kill in between leaves frames below `acked` queued: `open`
//!   drops them.
//! * **[`ack_beyond`](Store::ack_beyond)**: the `next_seq` hint is raised first, then
//!   `acked` is stored (the commit point).
//! * **consumed**, **send_cursor**, **session words**: one store each.
//! * **create, epoch reset, migration, salvage**: a complete new file replaces the old
//!   one by `rename`, which is atomic.
//!
//! `tests/crash.rs` kills a writer process with SIGKILL at hundreds of random moments
//! and checks, after each, that the store opens in the state before or after the
//! operation in flight, with every message's bytes.
//!
//! ## Durability
//!
//! The mapping *is* the kernel's page cache of the file, so a change is in the file
//! (for every process, and for a restart of ours) as soon as it is stored: no system
//! call on the hot path. What differs is when it reaches the disk:
//!
//! * [`Durability::Process`] (default): survives any crash of the process; a crash of
//!   the machine (power loss, kernel panic) makes no promise: the store opens with
//!   what reached the disk if it is consistent ([`Recovery::Unverified`]), or is
//!   refused and can be salvaged. Cost: none beyond the memory stores (no checksum:
//!   a CRC per push would cost as much as the push). Creating, migrating or resetting
//!   a store is not synced either (the rename that publishes the new file is atomic
//!   for every process): a first login costs microseconds, not an `fsync`.
//! * [`Durability::Sync { every }`](Durability::Sync): after every `every` operations
//!   (messages pushed, acks, consumed-count changes) and on [`Store::flush`], the store
//!   commits: it writes a checksummed commit record and `msync(MS_SYNC)`s it with the
//!   data published since the last commit, in one call (one disk flush), and returns
//!   when the disk has it. After a machine crash the store opens with **exactly** the
//!   state of its last completed sync (or of a sync the crash cut, if all of it
//!   reached the disk) — never a damaged message. Space freed by an ack is reused only
//!   after the next sync ([`Store::alloc`] syncs to reclaim it when the queue is
//!   full), so a sync never overwrites what the last one promised.
//!
//! Why this holds for every torn write, the invariants and the tests that explore
//! the torn states (`tests/powerloss.rs`, `cargo xtask powerloss`) are in the
//! repository's `docs/durability.md` and in the `sync` module.
//!
//! Measured by `cargo xtask bench persist` (AMD EPYC VM, 2 vCPUs, ext4 on a shared
//! virtual disk that was busy: one `fdatasync` took 0.3–4 ms during this run, against
//! about 100 µs when it is quiet; one thread pushing messages, every payload byte
//! copied in, the peer acknowledging every 64; medians of 7 runs). The reference is
//! the same wire-frame bytes written with one `write(2)` per message (plus `fdatasync`
//! every `g` messages), measured in the same run; "before" is the store without commit
//! records (format 1), measured back-to-back with it in the same session:
//!
//! | mode | 64 B messages | ratio to reference | before | 4 KiB messages | ratio to reference | before |
//! |---|---:|---:|---:|---:|---:|---:|
//! | `Process` | 57.8 M msg/s | 172× | 150× | 3.52 M msg/s | 14.6× | 14.9× |
//! | `Sync { every: 1 }` | 3.66 k msg/s | 0.88× | 0.92× | 245 msg/s | 1.00× | 0.97× |
//! | `Sync { every: 8 }` | 2.39 k msg/s | 0.98× | 0.97× | 3.45 k msg/s | 0.95× | 0.96× |
//! | `Sync { every: 64 }` | 15.9 k msg/s | 0.98× | 1.01× | 23.7 k msg/s | 0.93× | 0.94× |
//! | `Sync { every: 256 }` | 61.0 k msg/s | 1.01× | 1.02× | 57.2 k msg/s | 0.92× | 0.91× |
//!
//! (Ratios are medians of the per-run ratios, each run timing the store and the
//! reference back-to-back: the disk swung between fast and slow states within the
//! session — 64 B at `every: 8` ran at 2 k to 68 k msg/s — which the absolute figures
//! show and the ratios mostly cancel. With a disk this slow both the store and the
//! reference wait on the flush at every group size, so the ratios sit near 1; on a
//! quiet disk the store's larger groups pulled ahead, 1.55× at `every: 64` and 3.2× at
//! 256 for 64 B, before and after alike.) So a sync costs about one disk flush per
//! `every` operations, and group commit divides it; the commit record's CRC32 of the
//! batch (about 20 µs per MiB) is lost in the flush. One cost is particular to a mapping: when the kernel
//! writes a dirty page back (a sync, or its periodic writeback in `Process` mode), it
//! write-protects the page again, so the next write to that page takes a fault (about
//! 2 µs). Small messages share pages and hardly notice; 4 KiB messages take about one
//! fault each, which is why `write` + `fdatasync` beats the store for large messages
//! at large group sizes (the bench counts ~1 minor fault per 4 KiB message).
//!
//! ## Tools
//!
//! [`Store::inspect`] (header, words, commit records, the messages `open` would
//! resume with), [`Store::summary`] (header and words only: one page) and [`check`]
//! (the verdict and typed [`Finding`]s) read a file without its lock, repairing
//! nothing, safe on a live store; [`Store::holder`] names the process holding a store
//! (from the kernel's lock table, without probing the lock); [`Store::reset`] starts
//! one session afresh; [`Store::salvage`] recovers a refused file's valid prefix.
//!
//! ## Limits
//!
//! * One process at a time per store (the lock). Another program that ignores the
//!   lock and truncates the file makes the store's accesses fault (`SIGBUS`): the
//!   directory should be private to the application (it is created 0700).
//! * A message is at most about half the capacity ([`Store::max_payload`]).
//! * Little-endian targets only (the counters are native atomics).
//! * Linux: the boot id comes from `/proc`; without it recovery assumes a machine
//!   restart, so a `Sync` store rolls back to its last sync even after a process crash.
//! * Format version 1 files (before commit records) are refused
//!   ([`HeaderError::Version`]).
#![cfg_attr(not(test), warn(clippy::undocumented_unsafe_blocks))]

mod ack_beyond;
mod boot;
mod check;
mod commit;
mod cursor;
mod error;
mod files;
mod holder;
mod inspect;
mod layout;
mod lifecycle;
mod options;
mod outcome;
mod recovery;
mod salvage;
mod session;
mod snapshot;
mod store;
mod summary;
mod sync;
mod walk;

pub use boot::BootId;
pub use check::{check, CheckReport, Finding, Verdict};
pub use cursor::{QueuedFrame, SendCursor, SendRun};
pub use error::{HeaderError, Inconsistency, InspectError, OpenError, StoreError};
pub use files::{file_name, parse_file_name, FILE_SUFFIX};
pub use holder::Holder;
pub use inspect::{CommitInfo, InspectedFrame, Inspection, LiveWords, StoreState};
pub use layout::{file_len, HeaderInfo, FORMAT_VERSION, FRAME_ALIGN, HEADER_PAGE, MAGIC, SESSION_WORDS};
pub use options::{Durability, Options, MIN_CAPACITY};
pub use outcome::{EpochChange, Migration, OpenOutcome, Recovery, ResetInfo, StoreEntry};
pub use salvage::{Salvage, SalvageSource, DAMAGED_SUFFIX};
pub use session::SessionWord;
pub use store::Store;
pub use summary::Summary;
