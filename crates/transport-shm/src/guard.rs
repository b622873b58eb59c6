//! A truncated file under a live mapping is a typed error of that session, not the
//! end of the process.
//!
//! When another process of the same user shrinks a mapped file (`truncate`, or a
//! careless `cp` over it), the pages past the new end are gone and the next access to
//! them is a `SIGBUS`, whose default action ends the whole process — every session of
//! a server with it. File permissions keep other users out; nothing keeps the same
//! user out. So the connection files' mappings are registered here, and a `SIGBUS`
//! handler (installed once, process-wide, when the first file is mapped) that finds
//! the faulting address in a registered mapping replaces the lost page with a page of
//! zeros (`mmap(MAP_FIXED | MAP_ANONYMOUS)`), marks the mapping, and returns: the
//! access is retried and reads zeros, which the rings' validation refuses as corrupt,
//! and the session that owns the mapping closes with a typed reason
//! ([`Mapping::truncated`]). A fault anywhere else is handed to the handler that was
//! installed before (or to the default action), as if this one were not there.
//!
//! What is lost: what the truncation destroyed (the file's contents past its new
//! end), and what the session writes into the zero pages before it notices — nothing
//! else. A truncated file needs a reset.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// How many mappings can be guarded at once (each connection file is one; a server
/// with more shared-memory sessions leaves the rest unguarded, as before).
const SLOTS: usize = 1 << 16;

struct Slot {
    /// Start address of the mapping; 0 = free.
    start: AtomicUsize,
    len: AtomicUsize,
    hit: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot { start: AtomicUsize::new(0), len: AtomicUsize::new(0), hit: AtomicBool::new(false) };

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
/// One past the highest slot ever used (the handler scans no further).
static HIGH: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
/// The action that was installed before ours (for faults that are not ours).
static PREVIOUS: std::sync::OnceLock<nix::sys::signal::SigAction> = std::sync::OnceLock::new();

/// A registered mapping: unregistered on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    slot: Option<usize>,
}

impl Mapping {
    /// Guards `len` bytes at `start` (installs the handler the first time).
    pub(crate) fn register(start: *mut u8, len: usize) -> Mapping {
        install();
        let start = start as usize;
        for (i, s) in TABLE.iter().enumerate() {
            if s.start.load(Ordering::Relaxed) == 0 {
                s.len.store(len, Ordering::Relaxed);
                s.hit.store(false, Ordering::Relaxed);
                if s.start.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    HIGH.fetch_max(i + 1, Ordering::AcqRel);
                    return Mapping { slot: Some(i) };
                }
            }
        }
        Mapping { slot: None }
    }

    /// Whether a page of this mapping was lost to a truncation since it was mapped.
    #[inline]
    pub(crate) fn truncated(&self) -> bool {
        self.slot.is_some_and(|i| TABLE[i].hit.load(Ordering::Acquire))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            TABLE[i].start.store(0, Ordering::Release);
        }
    }
}

fn install() {
    INSTALL.call_once(|| {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let ours = SigAction::new(
            SigHandler::SigAction(on_sigbus),
            SaFlags::SA_SIGINFO | SaFlags::SA_NODEFER,
            SigSet::empty(),
        );
        // SAFETY: the handler only reads atomics, makes an mmap system call and stores
        // an atomic: async-signal-safe.
        if let Ok(previous) = unsafe { sigaction(Signal::SIGBUS, &ours) } {
            let _ = PREVIOUS.set(previous);
        }
    });
}

/// The registered mapping that contains `addr`, if any.
fn find(addr: usize) -> Option<&'static Slot> {
    let high = HIGH.load(Ordering::Acquire).min(SLOTS);
    TABLE[..high].iter().find(|s| {
        let start = s.start.load(Ordering::Acquire);
        start != 0 && addr >= start && addr - start < s.len.load(Ordering::Acquire)
    })
}

extern "C" fn on_sigbus(sig: nix::libc::c_int, info: *mut nix::libc::siginfo_t, ctx: *mut nix::libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(slot) = find(addr) {
        let page = rustix::param::page_size();
        let at = addr & !(page - 1);
        // SAFETY: `at` is a page of a registered mapping of ours (it is mapped until
        // its owner unregisters it, which happens before the unmap); replacing it with
        // a private zero page is what the module docs describe: the file's page is
        // gone already.
        let mapped = unsafe {
            rustix::mm::mmap_anonymous(
                at as *mut _,
                page,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::FIXED,
            )
        };
        if mapped.is_ok() {
            slot.hit.store(true, Ordering::Release);
            return;
        }
    }
    // Not ours (or the page could not be replaced): what would have happened without
    // this handler happens.
    match PREVIOUS.get().map(|p| p.handler()) {
        Some(nix::sys::signal::SigHandler::SigAction(f)) => f(sig, info, ctx),
        Some(nix::sys::signal::SigHandler::Handler(f)) => f(sig),
        Some(nix::sys::signal::SigHandler::SigIgn) => {}
        _ => {
            // The default action: restore it and return; the faulting access runs
            // again and the kernel applies it.
            let dfl = nix::sys::signal::SigAction::new(
                nix::sys::signal::SigHandler::SigDfl,
                nix::sys::signal::SaFlags::empty(),
                nix::sys::signal::SigSet::empty(),
            );
            // SAFETY: restoring the default disposition is async-signal-safe.
            let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGBUS, &dfl) };
        }
    }
}
