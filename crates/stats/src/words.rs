//! Aligned 8-byte words of a shared mapping, accessed only atomically, and the
//! seqlock protocol over blocks of them (see the layout module).

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// How many times a reader tries a block that keeps changing before giving up.
pub const READ_ATTEMPTS: u32 = 1000;

/// A mapped region of 8-byte words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Words {
    base: *const u8,
    len: usize,
}

// SAFETY: the region is plain shared memory accessed only through atomics.
unsafe impl Send for Words {}
// SAFETY: as above.
unsafe impl Sync for Words {}

impl Words {
    /// # Safety
    /// `base` must be 8-aligned and `len` bytes mapped for as long as the value (and
    /// its copies) is used; the memory is accessed by others only through whole-word
    /// atomic operations.
    pub(crate) unsafe fn new(base: *const u8, len: usize) -> Words {
        Words { base, len }
    }

    pub(crate) fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len, "word {off} outside the {} byte mapping", self.len);
        // SAFETY: in bounds and aligned (checked above, `new`'s contract for the base);
        // mapped while `self` is used; every access to the word is atomic.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    pub(crate) fn load(&self, off: usize) -> u64 {
        self.word(off).load(Ordering::Acquire)
    }

    /// Writes the block at `off` (a version word, then `data.len()` words) as its one
    /// writer: version odd, fence, the words, version even.
    pub(crate) fn write_block(&self, off: usize, data: &[u64]) {
        let version = self.word(off);
        let v = version.load(Ordering::Relaxed);
        version.store(v.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, w) in data.iter().enumerate() {
            self.word(off + 8 + 8 * i).store(*w, Ordering::Relaxed);
        }
        version.store((v | 1).wrapping_add(1), Ordering::Release);
    }

    /// Reads the block at `off` into `out`, whole: `false` if every attempt met a
    /// write in progress.
    pub(crate) fn read_block(&self, off: usize, out: &mut [u64]) -> bool {
        let version = self.word(off);
        for _ in 0..READ_ATTEMPTS {
            let v1 = version.load(Ordering::Acquire);
            if v1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            for (i, w) in out.iter_mut().enumerate() {
                *w = self.word(off + 8 + 8 * i).load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if version.load(Ordering::Relaxed) == v1 {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A writer rewriting a block with words that all hold the same value, a reader
    /// copying it: every copy it accepts is one write, never a mix.
    #[test]
    fn a_reader_never_accepts_a_torn_block() {
        let mem: Arc<Vec<AtomicU64>> = Arc::new((0..16).map(|_| AtomicU64::new(0)).collect());
        // SAFETY: 16 aligned words, alive (the Arc) for the test; accessed atomically.
        let words = unsafe { Words::new(mem.as_ptr().cast(), 16 * 8) };
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, m, w) = (stop.clone(), mem.clone(), written.clone());
        let writer = std::thread::spawn(move || {
            let _keep = m;
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                words.write_block(0, &[n; 15]);
                w.store(n, Ordering::Relaxed);
            }
            n
        });
        // Until both sides made progress side by side (however the threads are
        // scheduled): many accepted copies taken while the writer kept writing.
        let (mut accepted, mut during) = (0u64, 0u64);
        while accepted < 10_000 || during < 100 {
            let before = written.load(Ordering::Relaxed);
            let mut out = [0u64; 15];
            if words.read_block(0, &mut out) {
                assert!(out.iter().all(|&w| w == out[0]), "torn copy {out:?}");
                accepted += 1;
                if written.load(Ordering::Relaxed) != before {
                    during += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().unwrap();
        assert!(writes > 0);
        let mut out = [0u64; 15];
        assert!(words.read_block(0, &mut out));
        assert_eq!(out, [writes; 15]);
    }
}
