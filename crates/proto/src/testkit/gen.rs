//! Deterministic pseudo-random numbers and message contents, so a failing kit run is
//! reproducible from its seed and a message's expected bytes need not be stored.

use crate::frame::msg_type;

/// SplitMix64: tiny, fast, and good enough to spread test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next_u64().is_multiple_of(n.max(1))
    }
}

/// The `k`-th message of a flow: its type and length, and a byte generator that
/// reproduces its payload.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Message type (a user type).
    pub msg_type: u16,
    /// Payload length.
    pub len: usize,
    bytes: Rng,
}

impl Spec {
    /// Message `k` of the flow `flow` (seed and direction mixed in), at most
    /// `max_len` bytes long: mostly small, sometimes medium, rarely up to `max_len`.
    pub fn new(flow: u64, k: u64, max_len: usize) -> Spec {
        let mut r = Rng::new(flow ^ k.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let max = max_len as u64;
        let len = match r.range(0, 99) {
            0 => max,
            1..=2 => r.range(0, max),
            3..=12 => r.range(0, max.min(4096)),
            _ => r.range(0, max.min(200)),
        } as usize;
        let msg_type = (r.next_u64() % (msg_type::MAX_USER as u64 + 1)) as u16;
        Spec { msg_type, len, bytes: Rng::new(r.next_u64()) }
    }

    /// Writes the payload into `buf` (`len` bytes).
    pub fn fill(&self, buf: &mut [u8]) {
        let mut r = self.bytes.clone();
        for chunk in buf.chunks_mut(8) {
            let w = r.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }

    /// The offset of the first byte of `payload` that differs from the expected
    /// payload (a length difference counts as differing at the shorter length).
    pub fn first_difference(&self, payload: &[u8]) -> Option<usize> {
        let mut r = self.bytes.clone();
        let n = payload.len().min(self.len);
        for (i, chunk) in payload[..n].chunks(8).enumerate() {
            let w = r.next_u64().to_le_bytes();
            if let Some(j) = chunk.iter().zip(w.iter()).position(|(a, b)| a != b) {
                return Some(i * 8 + j);
            }
        }
        (payload.len() != self.len).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_fill_and_compare_agree() {
        for k in 0..200 {
            let s = Spec::new(42, k, 5000);
            assert!(s.len <= 5000);
            let mut b = vec![0u8; s.len];
            s.fill(&mut b);
            assert_eq!(s.first_difference(&b), None);
            if !b.is_empty() {
                let i = (k as usize * 7) % b.len();
                b[i] ^= 1;
                assert_eq!(s.first_difference(&b), Some(i));
                b[i] ^= 1;
                assert_eq!(s.first_difference(&b[..b.len() - 1]), Some(b.len() - 1));
            }
            b.push(0);
            assert_eq!(s.first_difference(&b), Some(s.len));
        }
    }

    #[test]
    fn rng_range_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let x = r.range(3, 9);
            assert!((3..=9).contains(&x));
        }
        assert_eq!(r.range(5, 5), 5);
        assert_eq!(r.range(5, 1), 5);
        r.range(0, u64::MAX);
    }
}
