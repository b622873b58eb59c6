//! The echo payloads: sizes drawn at random from 16/36/68/200 bytes (the reference
//! benchmark's method), content = the message's sequence number then a pattern, so
//! an echo can be checked byte for byte. The same seed gives every contender the
//! same sequence of sizes.

/// The payload sizes of the echo benchmark.
pub const SIZES: [usize; 4] = [16, 36, 68, 200];
/// The largest.
pub const MAX: usize = 200;

/// Generates the payloads.
pub struct Payloads {
    rng: u64,
    pattern: [u8; 320],
}

impl Payloads {
    /// A generator with a fixed seed.
    pub fn new() -> Payloads {
        let mut pattern = [0u8; 320];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in pattern.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        Payloads { rng: 0x2545_f491_4f6c_dd1d, pattern }
    }

    /// Writes message `seq` into `buf` and returns its length.
    #[inline]
    pub fn next(&mut self, seq: u64, buf: &mut [u8; MAX]) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let len = SIZES[(self.rng >> 33) as usize & 3];
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        let off = (seq % 97) as usize;
        buf[8..len].copy_from_slice(&self.pattern[off..off + len - 8]);
        len
    }
}

impl Default for Payloads {
    fn default() -> Self {
        Payloads::new()
    }
}
