//! Endpoint names, validated in one place before they touch a path or a wire.

use core::fmt;

/// Longest name in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is {0} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong(usize),
    /// The name starts with a dot (it would be a hidden file, or `.`/`..`).
    #[error("name starts with a dot")]
    LeadingDot,
    /// A byte outside ASCII letters, digits, `_`, `-` and `.`.
    #[error("name has byte {byte:#04x} at position {pos}; only ASCII letters, digits, '_', '-' and '.' are allowed")]
    BadByte {
        /// Position of the byte.
        pos: usize,
        /// The byte.
        byte: u8,
    },
}

/// A validated endpoint name: 1 to 64 bytes of ASCII letters, digits, `_`, `-`, `.`,
/// not starting with a dot. Safe to use as a file-name component: it cannot contain
/// `/`, cannot be `.` or `..`, and cannot be hidden. `Copy`, no allocation.
///
/// ```
/// use tcpshm_proto::{Name, NameError};
/// let n = Name::new("Server20180714").unwrap();
/// assert_eq!(n.as_str(), "Server20180714");
/// assert_eq!(Name::new("../etc"), Err(NameError::LeadingDot));
/// assert!(matches!(Name::new("a/b"), Err(NameError::BadByte { pos: 1, byte: b'/' })));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl Name {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Name, NameError> {
        Name::from_bytes(s.as_bytes())
    }

    /// Validates raw bytes (from the wire or a file).
    ///
    /// ```
    /// assert!(tcpshm_proto::Name::from_bytes(b"client-1.a_b").is_ok());
    /// assert!(tcpshm_proto::Name::from_bytes(b"").is_err());
    /// ```
    pub fn from_bytes(b: &[u8]) -> Result<Name, NameError> {
        if b.is_empty() {
            return Err(NameError::Empty);
        }
        if b.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(b.len()));
        }
        if b[0] == b'.' {
            return Err(NameError::LeadingDot);
        }
        if let Some(pos) = b.iter().position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))) {
            return Err(NameError::BadByte { pos, byte: b[pos] });
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Name { len: b.len() as u8, bytes })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Validation admitted only ASCII.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({:?})", self.as_str())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::new(s)
    }
}
