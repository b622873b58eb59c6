//! Open-file-description (OFD) byte-range locks: the liveness and exclusivity of
//! each side.
//!
//! An OFD lock belongs to the open file description (one `open` call), not to the
//! process: two opens of the same file conflict even inside one process, and the
//! kernel releases the lock when the last descriptor of that open is closed — which
//! includes the death of the process by any signal, SIGKILL included.

use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn flock(l_type: libc::c_int, byte: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are valid.
    let mut f: libc::flock = unsafe { core::mem::zeroed() };
    f.l_type = l_type as _;
    f.l_whence = libc::SEEK_SET as _;
    f.l_start = byte as _;
    f.l_len = 1;
    // OFD locks require l_pid = 0 on input (zeroed above).
    f
}

/// Takes a write lock on `byte` without waiting. `Ok(false)` if another open file
/// description holds a conflicting lock.
pub(crate) fn try_lock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let f = flock(libc::F_WRLCK, byte);
    match fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_SETLK(&f)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// Releases our lock on `byte` (if we hold one).
pub(crate) fn unlock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    let f = flock(libc::F_UNLCK, byte);
    fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_SETLK(&f)).map(drop).map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Whether an open file description other than `fd`'s holds a lock on `byte`.
pub(crate) fn held_by_other(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut f = flock(libc::F_WRLCK, byte);
    fcntl(fd.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut f)).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    Ok(f.l_type as libc::c_int != libc::F_UNLCK)
}
