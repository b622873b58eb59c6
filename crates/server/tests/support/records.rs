//! The reporting channel from a child process to the parent: one line per record,
//! each written with one `write(2)` straight to the child's stdout pipe (no user-space
//! buffer), so a record whose `write` returned is in the kernel's pipe and survives a
//! SIGKILL of the child a nanosecond later. A record never reported is simply
//! missing; the checker ([`super::check`]) is built around exactly that.
//!
//! Lines start with `@` and a tag; anything else on stdout (the test harness of the
//! child prints a few lines) is kept as noise for diagnostics.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec {
    /// `@R consumed pushed`: the first record of an incarnation, before it pops or
    /// pushes anything: the session's persisted commit points as the library resumes
    /// them when the session is opened — its `counters()`: how many of the peer's
    /// messages were popped (`consumed`), how many of ours were pushed (`next_seq`).
    Resume {
        /// Inbound messages popped, per the persistent state.
        consumed: u64,
        /// Outbound messages pushed, per the persistent state.
        pushed: u64,
    },
    /// `@D k`: inbound message `k` arrived with the right content; it is about to be
    /// popped (written BEFORE `pop`).
    Delivered(u64),
    /// `@P k`: the `pop` of inbound message `k` (and all before) returned.
    Popped(u64),
    /// `@Q n`: the pushes of outbound messages `0..n` returned.
    Pushed(u64),
    /// `@F`: everything was received and pushed.
    Finished,
    /// `@C text`: connected / logged on.
    Connected(String),
    /// `@X text`: disconnected, with the reason.
    Disconnected(String),
    /// `@W text`: a connect attempt failed (retried).
    Retry(String),
    /// `@E text`: the child found an error (and exits non-zero).
    Error(String),
    /// `@L text`: the outcome of a single login attempt (`ok ...` or `err ...`).
    Login(String),
}

impl Rec {
    /// Parses one line; `None` for a line that is not a record.
    pub fn parse(line: &str) -> Option<Rec> {
        let rest = line.strip_prefix('@')?;
        let mut chars = rest.chars();
        let tag = chars.next()?;
        let body = chars.as_str().strip_prefix(' ').unwrap_or(chars.as_str());
        let num = || body.trim().parse::<u64>().ok();
        Some(match tag {
            'R' => {
                let mut it = body.split_whitespace().map(|s| s.parse::<u64>().ok());
                let (Some(Some(consumed)), Some(Some(pushed)), None) = (it.next(), it.next(), it.next()) else {
                    return None;
                };
                Rec::Resume { consumed, pushed }
            }
            'D' => Rec::Delivered(num()?),
            'P' => Rec::Popped(num()?),
            'Q' => Rec::Pushed(num()?),
            'F' => Rec::Finished,
            'C' => Rec::Connected(body.to_string()),
            'X' => Rec::Disconnected(body.to_string()),
            'W' => Rec::Retry(body.to_string()),
            'E' => Rec::Error(body.to_string()),
            'L' => Rec::Login(body.to_string()),
            _ => return None,
        })
    }
}

/// The child's writer: its own descriptor for stdout, one `write` per record.
pub struct Reporter {
    out: File,
    buf: Vec<u8>,
}

impl Reporter {
    /// A reporter on a duplicate of stdout (`std::io::stdout()` buffers lines in user
    /// space and takes a lock; this writes each record with exactly one system call).
    pub fn stdout() -> Reporter {
        let fd = std::io::stdout().as_fd().try_clone_to_owned().expect("dup stdout");
        Reporter { out: File::from(fd), buf: Vec::with_capacity(256) }
    }

    fn emit(&mut self) {
        // Records are far below PIPE_BUF (4096 bytes): one write is atomic. A parent
        // that is gone (EPIPE) ends the child.
        if self.out.write_all(&self.buf).is_err() {
            std::process::exit(70);
        }
    }

    fn num(&mut self, tag: u8, n: u64) {
        use std::io::Write as _;
        self.buf.clear();
        let _ = writeln!(self.buf, "@{} {n}", tag as char);
        self.emit();
    }

    /// `@R`.
    pub fn resume(&mut self, consumed: u64, pushed: u64) {
        use std::io::Write as _;
        self.buf.clear();
        let _ = writeln!(self.buf, "@R {consumed} {pushed}");
        self.emit();
    }

    /// `@D k`.
    pub fn delivered(&mut self, k: u64) {
        self.num(b'D', k);
    }

    /// `@P k`.
    pub fn popped(&mut self, k: u64) {
        self.num(b'P', k);
    }

    /// `@Q n`.
    pub fn pushed(&mut self, n: u64) {
        self.num(b'Q', n);
    }

    /// `@F`.
    pub fn finished(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(b"@F\n");
        self.emit();
    }

    /// A text record (`C`, `X`, `W`, `E`, `L`), on one line.
    pub fn text(&mut self, tag: char, text: &str) {
        self.buf.clear();
        self.buf.push(b'@');
        let mut t = [0u8; 4];
        self.buf.extend_from_slice(tag.encode_utf8(&mut t).as_bytes());
        self.buf.push(b' ');
        let clean: String = text.chars().map(|c| if c == '\n' { ' ' } else { c }).take(1000).collect();
        self.buf.extend_from_slice(clean.as_bytes());
        self.buf.push(b'\n');
        self.emit();
    }

    /// Reports an error and exits with status 3 (the parent fails the test).
    pub fn fail(&mut self, text: &str) -> ! {
        self.text('E', text);
        std::process::exit(3);
    }
}
