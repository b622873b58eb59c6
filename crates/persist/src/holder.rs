//! Who holds a store open: the process whose exclusive `flock` is on the file, read
//! from the kernel's lock table (`/proc/locks`) — a look that takes no lock, so it
//! never disturbs an owner that is opening the store at that moment (a probe with
//! `flock` would make that open fail with `Locked`).

use crate::store::Store;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The holder of a store's lock, as [`Store::holder`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: no process has the store open.
    Nobody,
    /// This process id holds it (0: a process of another pid namespace, which the
    /// kernel does not name to this one).
    Process(u32),
}

impl Holder {
    /// Whether a process holds the store.
    pub fn is_held(&self) -> bool {
        matches!(self, Holder::Process(_))
    }
}

impl Store {
    /// Which process, if any, holds the store file at `path` open (its lock), read
    /// from `/proc/locks` without taking or probing the lock. Racy by nature: the
    /// answer may be stale by the time it is read; removal and reset take the lock
    /// themselves and refuse a held store.
    ///
    /// ```
    /// use tcpshm_persist::{Holder, Options, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-holder-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let (s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// let path = s.path().to_path_buf();
    /// assert_eq!(Store::holder(&path).unwrap(), Holder::Process(std::process::id()));
    /// drop(s);
    /// assert_eq!(Store::holder(&path).unwrap(), Holder::Nobody);
    /// # Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn holder(path: impl AsRef<Path>) -> std::io::Result<Holder> {
        let st = std::fs::symlink_metadata(path.as_ref())?;
        let table = std::fs::read_to_string("/proc/locks")?;
        Ok(flock_holder(&table, st.dev(), st.ino()))
    }
}

/// The pid of the `FLOCK` lock on the inode `(dev, ino)` in a `/proc/locks` text.
/// A line reads `id: [-> ]FLOCK ADVISORY WRITE pid MAJ:MIN:INO start end`, the device
/// numbers in hex; `->` marks a waiter, not a holder.
pub(crate) fn flock_holder(table: &str, dev: u64, ino: u64) -> Holder {
    let want = (rustix::fs::major(dev), rustix::fs::minor(dev), ino);
    for line in table.lines() {
        let mut f = line.split_whitespace().skip(1);
        let Some(kind) = f.next() else { continue };
        if kind != "FLOCK" {
            continue; // waiters ("->"), POSIX and OFD locks
        }
        let (Some(_mode), Some(_rw), Some(pid), Some(id)) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let mut parts = id.split(':');
        let (Some(maj), Some(min), Some(i)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let parsed = (u32::from_str_radix(maj, 16), u32::from_str_radix(min, 16), i.parse::<u64>());
        if let (Ok(maj), Ok(min), Ok(i)) = parsed {
            if (maj, min, i) == want {
                return Holder::Process(pid.parse::<i64>().ok().and_then(|p| u32::try_from(p).ok()).unwrap_or(0));
            }
        }
    }
    Holder::Nobody
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_lock_table() {
        let dev = rustix::fs::makedev(0x103, 0x2a);
        let table = "1: POSIX  ADVISORY  WRITE 77 103:2a:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 103:2a:99 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 103:2a:99 0 EOF\n\
                     3: OFDLCK ADVISORY  WRITE -1 103:2a:100 0 0\n";
        assert_eq!(flock_holder(table, dev, 99), Holder::Process(1234));
        assert_eq!(flock_holder(table, dev, 100), Holder::Nobody);
        assert_eq!(flock_holder(table, rustix::fs::makedev(1, 2), 99), Holder::Nobody);
        assert_eq!(flock_holder("garbage\n\n4: FLOCK x\n", dev, 99), Holder::Nobody);
    }
}
