//! Message contents. The echo payloads: sizes drawn at random from 16/36/68/200
//! bytes (the reference benchmark's method), content = the message's sequence number
//! then a pattern, so an echo can be checked byte for byte; the same seed gives every
//! contender the same sequence of sizes. The stream messages: filled by the sender,
//! read whole and checked by the receiver, the same work for tcpshm and for the bare
//! references ([`fill`], [`fold`], [`check`]).

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

/// Reads every byte of `p`, eight at a time, as a consumer would (over shared memory
/// this is what brings the payload to the consumer's core): a sum of its 8-byte words
/// (little-endian) and of its trailing bytes. Plain loads: no call per word.
#[inline]
pub fn fold(p: &[u8]) -> u64 {
    let mut words = p.chunks_exact(8);
    let mut x = 0u64;
    for w in &mut words {
        x = x.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    for &b in words.remainder() {
        x = x.wrapping_add(u64::from(b));
    }
    x
}

/// Whether stream message `p` is number `expected`: its first 8 bytes (little-endian),
/// or for a shorter message its first byte (the number's low byte).
#[inline]
pub fn check(p: &[u8], expected: u64) -> bool {
    match p.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w) == expected,
        None => p.first().is_none_or(|b| *b == expected as u8),
    }
}

/// Fills stream message number `seq` of `buf.len()` bytes: the bytes of `src`, then
/// the number over its first 8 bytes (or its low byte over a shorter message).
#[inline]
pub fn fill(buf: &mut [u8], src: &[u8], seq: u64) {
    let n = buf.len();
    buf.copy_from_slice(&src[..n]);
    match buf.first_chunk_mut::<8>() {
        Some(w) => *w = seq.to_le_bytes(),
        None => {
            if let Some(b) = buf.first_mut() {
                *b = seq as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_check_and_fold_agree() {
        let src: Vec<u8> = (0..64u8).collect();
        for len in [0usize, 1, 7, 8, 9, 64] {
            let mut buf = vec![0u8; len];
            fill(&mut buf, &src, 300);
            assert!(check(&buf, 300), "len {len}");
            assert_eq!(check(&buf, 301), len == 0, "len {len}");
        }
        assert_eq!(fold(&[1, 0, 0, 0, 0, 0, 0, 0, 5]), 6);
        assert_eq!(fold(&[]), 0);
    }

    #[test]
    fn echo_payloads_carry_their_number() {
        let mut p = Payloads::new();
        let mut buf = [0u8; MAX];
        let n = p.next(42, &mut buf);
        assert!(SIZES.contains(&n));
        assert!(check(&buf[..n], 42));
    }
}
