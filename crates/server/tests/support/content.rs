//! The two message streams and their content. Message `k` of a stream has a length,
//! a type and bytes that are functions of `k` alone, so a receiver verifies every
//! byte of every message, and a pusher restarted after a crash produces exactly the
//! bytes it would have produced before.

/// A good 64-bit mix of `x` (one SplitMix64 step).
pub fn mix(x: u64) -> u64 {
    tcpshm_test_support::Rng::new(x).next_u64()
}

/// One direction's stream of numbered messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    salt: u64,
    name: &'static str,
}

impl Stream {
    /// Client to server.
    pub const CLIENT: Stream = Stream { salt: 0xC11E_0000_5EED_0001, name: "client->server" };
    /// Server to client.
    pub const SERVER: Stream = Stream { salt: 0x5E4E_0000_5EED_0002, name: "server->client" };

    /// Which direction, for messages.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The largest payload of any message.
    pub const MAX_LEN: usize = 8 + 119;

    /// Payload length of message `k`: 8..=127 bytes (the number, then filler), so
    /// frames of many sizes interleave and the rings wrap at every offset.
    pub fn len(self, k: u64) -> usize {
        8 + (mix(k ^ self.salt) % 120) as usize
    }

    /// Message type of message `k` (a user type).
    pub fn msg_type(self, k: u64) -> u16 {
        (mix(k.wrapping_add(self.salt)) % 1000) as u16
    }

    fn byte(self, h: u64, i: usize) -> u8 {
        ((h >> ((i % 8) * 8)) as u8) ^ (i as u8).wrapping_mul(31)
    }

    /// Writes message `k`'s payload into `buf` (exactly [`len`](Self::len) bytes).
    pub fn fill(self, k: u64, buf: &mut [u8]) {
        debug_assert_eq!(buf.len(), self.len(k));
        buf[..8].copy_from_slice(&k.to_le_bytes());
        let h = mix(k ^ self.salt.rotate_left(17));
        for (i, b) in buf.iter_mut().enumerate().skip(8) {
            *b = self.byte(h, i);
        }
    }

    /// Checks that (`msg_type`, `payload`) is exactly message `expected`; the error
    /// names what differs (which message it is instead, if the number is readable).
    pub fn check(self, expected: u64, msg_type: u16, payload: &[u8]) -> Result<(), String> {
        if payload.len() < 8 {
            return Err(format!("{}: expected message {expected}, got a {}-byte payload", self.name, payload.len()));
        }
        let k = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        if k != expected {
            let what = if k < expected { "a DUPLICATE (already delivered)" } else { "a GAP (messages skipped)" };
            return Err(format!("{}: expected message {expected}, got message {k}: {what}", self.name));
        }
        if payload.len() != self.len(k) {
            return Err(format!("{}: message {k} has {} bytes, expected {}", self.name, payload.len(), self.len(k)));
        }
        if msg_type != self.msg_type(k) {
            return Err(format!("{}: message {k} has type {msg_type}, expected {}", self.name, self.msg_type(k)));
        }
        let h = mix(k ^ self.salt.rotate_left(17));
        if let Some(i) = (8..payload.len()).find(|&i| payload[i] != self.byte(h, i)) {
            return Err(format!("{}: message {k} is corrupt at byte {i}", self.name));
        }
        Ok(())
    }
}

/// How many server messages exist once the server handled `requests` client
/// messages: one reply per request plus one more every fourth (an independent
/// stream interleaved with the replies), so the server pushes more than it receives.
pub fn server_target(requests: u64) -> u64 {
    requests + requests / 4
}

#[test]
fn content_is_checked_byte_for_byte() {
    let s = Stream::CLIENT;
    let mut buf = vec![0u8; s.len(7)];
    s.fill(7, &mut buf);
    assert_eq!(s.check(7, s.msg_type(7), &buf), Ok(()));
    assert!(s.check(8, s.msg_type(7), &buf).unwrap_err().contains("DUPLICATE"));
    assert!(s.check(6, s.msg_type(7), &buf).unwrap_err().contains("GAP"));
    assert!(s.check(7, s.msg_type(7).wrapping_add(1), &buf).unwrap_err().contains("type"));
    let last = buf.len() - 1;
    buf[last] ^= 1;
    assert!(s.check(7, s.msg_type(7), &buf).unwrap_err().contains("corrupt"));
}
