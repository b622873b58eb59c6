//! Open-file-description (OFD) byte-range locks: each side's claim on a region.
//!
//! An OFD lock belongs to one `open` of the file, not to a process or a thread: two
//! opens conflict even inside one process, and the kernel drops the lock when the last
//! descriptor of that open is closed, which includes the death of the process by any
//! signal, SIGKILL included. That is what makes a dead peer observable without a
//! heartbeat: its lock is gone. Public so that other shared-memory files (tcpshm's
//! session files) keep the same rule in this one place.
//!
//! ```
//! use tcpshm_ring::shm::lock;
//! // A write lock needs a descriptor open for writing.
//! use std::os::fd::AsFd;
//! let path = std::env::temp_dir().join(format!("lock-doc-{}", std::process::id()));
//! let a = std::fs::File::create(&path).unwrap();
//! let b = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
//! assert!(lock::try_lock(a.as_fd(), 0).unwrap());
//! assert!(!lock::try_lock(b.as_fd(), 0).unwrap(), "another open holds byte 0");
//! assert!(lock::held_by_other(b.as_fd(), 0).unwrap());
//! drop(a); // closing the last descriptor of that open releases its lock
//! assert!(!lock::held_by_other(b.as_fd(), 0).unwrap());
//! std::fs::remove_file(&path).unwrap();
//! ```

use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn range(l_type: libc::c_int, byte: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are valid.
    let mut f: libc::flock = unsafe { core::mem::zeroed() };
    f.l_type = l_type as _;
    f.l_whence = libc::SEEK_SET as _;
    f.l_start = byte as _;
    f.l_len = 1;
    // OFD locks require l_pid = 0 on input (zeroed above).
    f
}

fn os(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Takes a write lock on `byte` without waiting; `Ok(false)` if another open file
/// description holds a conflicting lock.
pub fn try_lock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    match fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_SETLK(&range(libc::F_WRLCK, byte))) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(os(e)),
    }
}

/// Releases our lock on `byte` (if we hold one).
pub fn unlock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_SETLK(&range(libc::F_UNLCK, byte))).map(drop).map_err(os)
}

/// Whether an open file description other than `fd`'s holds a lock on `byte`.
pub fn held_by_other(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut f = range(libc::F_WRLCK, byte);
    fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut f)).map_err(os)?;
    Ok(f.l_type as libc::c_int != libc::F_UNLCK)
}
