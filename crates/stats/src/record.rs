//! What the counters file holds, as plain values: one [`SessionRecord`] per session,
//! one [`ServerRecord`] for the server; and their encoding into the layout's words.

use crate::layout::*;
use tcpshm_proto::login::TransportKind;
use tcpshm_proto::{Name, Nanos};

/// The state of a session in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Logged in.
    Up,
    /// Disconnected; the session (its queue, its numbers) is kept for the next login.
    Down,
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionState::Up => "up",
            SessionState::Down => "down",
        })
    }
}

/// A short text of bounded length kept inline (no allocation to publish it).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortText<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> ShortText<N> {
    /// `s` cut at a character boundary to at most `N` bytes (and 255).
    ///
    /// ```
    /// let t = tcpshm_stats::ShortText::<3>::new("héllo");
    /// assert_eq!(t.as_str(), "hé"); // 3 bytes: "hél" would be 4
    /// ```
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(N).min(255);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; N];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        ShortText { len: end as u8, bytes }
    }

    fn from_bytes(b: &[u8]) -> Self {
        let s = String::from_utf8_lossy(b);
        Self::new(&s)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for ShortText<N> {
    fn default() -> Self {
        ShortText { len: 0, bytes: [0; N] }
    }
}

impl<const N: usize> std::fmt::Debug for ShortText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl<const N: usize> std::fmt::Display for ShortText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session last closed: the close code of `tcpshm_proto::close::CloseCode` and
/// its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastClose {
    /// The code (`tcpshm_proto::close::CloseCode`'s number).
    pub code: u16,
    /// The reason, as text (cut at [`MAX_CLOSE_TEXT`] bytes).
    pub text: ShortText<MAX_CLOSE_TEXT>,
}

/// One session's counters as the server publishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The client.
    pub client: Name,
    /// Up or down.
    pub state: SessionState,
    /// The transport of the current or last login (`None`: not logged in yet).
    pub transport: Option<TransportKind>,
    /// The group holding the session.
    pub group: u32,
    /// The client's address (text).
    pub peer: ShortText<MAX_PEER_TEXT>,
    /// The group's `now` when this record was written.
    pub now: Nanos,
    /// When a message or a heartbeat last moved either way (the server's `now`; seen
    /// at the server's record refreshes, so within one stats interval).
    pub last_activity: Nanos,
    /// The `now` of the last login.
    pub logged_in_at: Nanos,
    /// Logins in this server process.
    pub logins: u64,
    /// Messages pushed (the connection's `tcpshm_proto::Counters`, flattened, from
    /// here to `heartbeats_received`: in this server process).
    pub pushed: u64,
    /// Messages sent for the first time.
    pub sent: u64,
    /// Messages sent again after a reconnect.
    pub resent: u64,
    /// Messages acknowledged by the client.
    pub acked: u64,
    /// Messages received.
    pub received: u64,
    /// Messages popped by the handler.
    pub popped: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Session: next seq.
    pub next_seq: u64,
    /// Session: consumed count.
    pub consumed: u64,
    /// Session: the client's consumed count as last heard.
    pub peer_consumed: u64,
    /// Messages queued for the client (not yet consumed by it).
    pub queued: u64,
    /// Bytes queued (the store's ring and the outbound shared-memory ring).
    pub queued_bytes: u64,
    /// The last close, if the session closed since the server started.
    pub last_close: Option<LastClose>,
}

impl SessionRecord {
    /// A record for `client` with every counter zero, down, never logged in.
    ///
    /// ```
    /// let r = tcpshm_stats::SessionRecord::new("c1".parse().unwrap());
    /// assert_eq!((r.state, r.queued, r.last_close), (tcpshm_stats::SessionState::Down, 0, None));
    /// ```
    pub fn new(client: Name) -> SessionRecord {
        SessionRecord {
            client,
            state: SessionState::Down,
            transport: None,
            group: 0,
            peer: ShortText::default(),
            now: 0,
            last_activity: 0,
            logged_in_at: 0,
            logins: 0,
            pushed: 0,
            sent: 0,
            resent: 0,
            acked: 0,
            received: 0,
            popped: 0,
            heartbeats_sent: 0,
            heartbeats_received: 0,
            next_seq: 0,
            consumed: 0,
            peer_consumed: 0,
            queued: 0,
            queued_bytes: 0,
            last_close: None,
        }
    }

    /// Encodes the record into the words after the version word.
    pub(crate) fn encode(&self, w: &mut [u64; RECORD_WORDS]) {
        let at = |off: usize| off / 8 - 1;
        w.fill(0);
        w[at(R_STATE)] = match self.state {
            SessionState::Up => 1,
            SessionState::Down => 2,
        };
        w[at(R_TRANSPORT)] = match self.transport {
            None => 0,
            Some(TransportKind::Tcp) => 1,
            Some(TransportKind::Shm) => 2,
        };
        w[at(R_GROUP)] = self.group.into();
        let name = self.client.as_bytes();
        w[at(R_CLIENT_LEN)] = name.len() as u64;
        pack(name, &mut w[at(R_CLIENT)..at(R_CLIENT) + 8]);
        for (off, v) in [
            (R_NOW, self.now),
            (R_LAST_ACTIVITY, self.last_activity),
            (R_LOGGED_IN_AT, self.logged_in_at),
            (R_LOGINS, self.logins),
            (R_PUSHED, self.pushed),
            (R_SENT, self.sent),
            (R_RESENT, self.resent),
            (R_ACKED, self.acked),
            (R_RECEIVED, self.received),
            (R_POPPED, self.popped),
            (R_HB_SENT, self.heartbeats_sent),
            (R_HB_RECEIVED, self.heartbeats_received),
            (R_NEXT_SEQ, self.next_seq),
            (R_CONSUMED, self.consumed),
            (R_PEER_CONSUMED, self.peer_consumed),
            (R_QUEUED, self.queued),
            (R_QUEUED_BYTES, self.queued_bytes),
        ] {
            w[at(off)] = v;
        }
        match &self.last_close {
            None => w[at(R_CLOSE_CODE)] = u64::MAX,
            Some(c) => {
                w[at(R_CLOSE_CODE)] = c.code.into();
                w[at(R_CLOSE_LEN)] = c.text.len as u64;
                pack(
                    &c.text.bytes[..c.text.len as usize],
                    &mut w[at(R_CLOSE_TEXT)..at(R_CLOSE_TEXT) + MAX_CLOSE_TEXT / 8],
                );
            }
        }
        w[at(R_PEER_LEN)] = self.peer.len as u64;
        pack(&self.peer.bytes[..self.peer.len as usize], &mut w[at(R_PEER)..at(R_PEER) + MAX_PEER_TEXT / 8]);
    }

    /// Decodes a record; `None` for a free record or one that makes no sense (a
    /// reader never trusts the file).
    pub(crate) fn decode(w: &[u64; RECORD_WORDS]) -> Option<SessionRecord> {
        let at = |off: usize| off / 8 - 1;
        let state = match w[at(R_STATE)] {
            1 => SessionState::Up,
            2 => SessionState::Down,
            _ => return None,
        };
        let transport = match w[at(R_TRANSPORT)] {
            1 => Some(TransportKind::Tcp),
            2 => Some(TransportKind::Shm),
            _ => None,
        };
        let name = unpack(&w[at(R_CLIENT)..at(R_CLIENT) + 8], w[at(R_CLIENT_LEN)].min(64) as usize);
        let client = Name::new(std::str::from_utf8(&name).ok()?).ok()?;
        let text = |off: usize, len_off: usize, max: usize| {
            unpack(&w[at(off)..at(off) + max / 8], w[at(len_off)].min(max as u64) as usize)
        };
        let last_close = match w[at(R_CLOSE_CODE)] {
            u64::MAX => None,
            code => Some(LastClose {
                code: code.min(u16::MAX as u64) as u16,
                text: ShortText::from_bytes(&text(R_CLOSE_TEXT, R_CLOSE_LEN, MAX_CLOSE_TEXT)),
            }),
        };
        let v = |off: usize| w[at(off)];
        Some(SessionRecord {
            client,
            state,
            transport,
            group: v(R_GROUP).min(u32::MAX as u64) as u32,
            peer: ShortText::from_bytes(&text(R_PEER, R_PEER_LEN, MAX_PEER_TEXT)),
            now: v(R_NOW),
            last_activity: v(R_LAST_ACTIVITY),
            logged_in_at: v(R_LOGGED_IN_AT),
            logins: v(R_LOGINS),
            pushed: v(R_PUSHED),
            sent: v(R_SENT),
            resent: v(R_RESENT),
            acked: v(R_ACKED),
            received: v(R_RECEIVED),
            popped: v(R_POPPED),
            heartbeats_sent: v(R_HB_SENT),
            heartbeats_received: v(R_HB_RECEIVED),
            next_seq: v(R_NEXT_SEQ),
            consumed: v(R_CONSUMED),
            peer_consumed: v(R_PEER_CONSUMED),
            queued: v(R_QUEUED),
            queued_bytes: v(R_QUEUED_BYTES),
            last_close,
        })
    }
}

/// The server's own counters (its control thread's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerRecord {
    /// The control thread's `now` at this update.
    pub now: Nanos,
    /// Connections accepted.
    pub accepted: u64,
    /// Logins admitted.
    pub admitted: u64,
    /// Logins refused.
    pub refused: u64,
    /// Logins dropped by the login timeout.
    pub timed_out: u64,
    /// Logins pending.
    pub pending: u64,
    /// Connections live.
    pub live: u64,
    /// Sessions removed by the retention policy.
    pub sessions_removed: u64,
    /// Retention sweeps run.
    pub sweeps: u64,
}

impl ServerRecord {
    pub(crate) fn encode(&self) -> [u64; SERVER_WORDS] {
        [
            self.now,
            self.accepted,
            self.admitted,
            self.refused,
            self.timed_out,
            self.pending,
            self.live,
            self.sessions_removed,
            self.sweeps,
        ]
    }

    pub(crate) fn decode(w: &[u64; SERVER_WORDS]) -> ServerRecord {
        ServerRecord {
            now: w[0],
            accepted: w[1],
            admitted: w[2],
            refused: w[3],
            timed_out: w[4],
            pending: w[5],
            live: w[6],
            sessions_removed: w[7],
            sweeps: w[8],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut r = SessionRecord::new("trader-1".parse().unwrap());
        r.state = SessionState::Up;
        r.transport = Some(TransportKind::Shm);
        r.group = 3;
        r.peer = ShortText::new("[::1]:40522");
        (r.now, r.last_activity, r.logged_in_at, r.logins) = (9, 8, 7, 2);
        (r.pushed, r.sent, r.resent, r.acked, r.received, r.popped) = (1, 2, 3, 4, 5, 6);
        (r.heartbeats_sent, r.heartbeats_received, r.next_seq, r.consumed) = (10, 11, 12, 13);
        (r.peer_consumed, r.queued, r.queued_bytes) = (14, 15, 16);
        r.last_close = Some(LastClose { code: 2, text: ShortText::new(&"é".repeat(100)) });
        let mut w = [0u64; RECORD_WORDS];
        r.encode(&mut w);
        let back = SessionRecord::decode(&w).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.last_close.unwrap().text.as_str().len(), 128);
        let free = [0u64; RECORD_WORDS];
        assert_eq!(SessionRecord::decode(&free), None);
        let s = ServerRecord { now: 1, accepted: 2, sweeps: 9, ..Default::default() };
        assert_eq!(ServerRecord::decode(&s.encode()), s);
    }
}
