//! The store file is mode 0600 whatever the umask (its own binary: the umask is
//! process-wide).

mod common;

use common::{name, TempDir};
use std::os::unix::fs::PermissionsExt;
use tcpshm_persist::{Options, Store};

#[test]
#[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
fn mode_is_0600_under_a_hostile_umask() {
    let d = TempDir::new("umask");
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o277));
    let r = Store::open(d.path(), name("a"), name("b"), &Options::new(4096), None, 0);
    rustix::process::umask(old);
    let (s, _) = r.unwrap();
    // 0600 & !0277 would be 0400: the mode is set explicitly.
    assert_eq!(std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o7777, 0o600);
    // And a reset (a rebuilt file) keeps it.
    let mut s = s;
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    s.reset_epoch(name("e"), 0).unwrap();
    rustix::process::umask(old);
    assert_eq!(std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o7777, 0o600);
}
