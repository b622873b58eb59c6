//! The boot id: which machine session (boot of the kernel) wrote the file.
//!
//! Recovery must tell two crashes apart that leave the same bytes behind:
//!
//! * the **process** died: the kernel's page cache still holds every store the
//!   process made, so the file is exactly as the process left it, and everything it
//!   did (synced or not) must be kept;
//! * the **machine** died (power loss, kernel panic, reset): the file is what had
//!   reached the disk, which may be any mix of old and new pages, so only what a
//!   completed sync made durable can be trusted.
//!
//! The store writes the kernel's boot id (`/proc/sys/kernel/random/boot_id`, random
//! for each boot) into the file when it opens it. At the next open, the same id means
//! "same machine session, the page cache is coherent"; another id, or none, means the
//! machine restarted since (or the file was copied from elsewhere, which is the same
//! as far as torn pages go). Without `/proc` the id is unknown and recovery assumes a
//! restart: the safe side for the data, at the cost of rolling a `Sync` store back to
//! its last completed sync after a mere process crash.

/// A kernel boot id (a random UUID per boot), or all zero for "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct BootId(pub [u8; 16]);

const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

impl BootId {
    /// The unknown boot id (never equal to a real one for recovery's purposes).
    pub const UNKNOWN: BootId = BootId([0; 16]);

    /// This machine session's boot id, or [`BootId::UNKNOWN`] if `/proc` cannot be
    /// read. (One small file read: only done when a store is opened or built.)
    ///
    /// ```
    /// let b = tcpshm_persist::BootId::current();
    /// assert_eq!(b, tcpshm_persist::BootId::current());
    /// ```
    pub fn current() -> BootId {
        std::fs::read_to_string(BOOT_ID_PATH).ok().and_then(|s| BootId::parse(&s)).unwrap_or(BootId::UNKNOWN)
    }

    /// Parses the text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (a trailing newline
    /// allowed).
    ///
    /// ```
    /// use tcpshm_persist::BootId;
    /// let b = BootId::parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n").unwrap();
    /// assert_eq!(b.0[0], 0x0f);
    /// assert_eq!(BootId::parse("nope"), None);
    /// ```
    pub fn parse(s: &str) -> Option<BootId> {
        let hex: Vec<u8> = s.trim_end().bytes().filter(|&c| c != b'-').collect();
        if hex.len() != 32 || s.trim_end().len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(BootId(out))
    }

    /// Whether this is a known id.
    pub fn is_known(&self) -> bool {
        *self != BootId::UNKNOWN
    }

    /// Whether a file whose recorded writer boot is `self` was written in the machine
    /// session `now` (both known and equal).
    pub(crate) fn same_session(&self, now: &BootId) -> bool {
        self.is_known() && self == now
    }
}

impl std::fmt::Display for BootId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let text = "6f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let b = BootId::parse(text).unwrap();
        assert_eq!(b.to_string(), text);
        for bad in
            ["", "6f1e2d3c4b5a69788796a5b4c3d2e1f0", "6f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg", "x".repeat(36).as_str()]
        {
            assert_eq!(BootId::parse(bad), None, "{bad}");
        }
        assert!(!BootId::UNKNOWN.same_session(&BootId::UNKNOWN));
        assert!(b.same_session(&b));
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn this_machine_has_a_boot_id() {
        // Linux with /proc: the id is known and stable within the boot.
        let b = BootId::current();
        assert!(b.is_known());
        assert_eq!(b, BootId::current());
    }
}
