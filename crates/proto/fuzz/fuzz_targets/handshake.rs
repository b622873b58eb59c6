//! Fuzzes the handshake verdicts of both sides on untrusted logins, against any
//! stored session.
//!
//! Input: a flags byte (bit 0: TCP served, bit 1: SHM served, bit 2: the server is
//! named as the request's last server, bit 3: the client last logged in to the
//! reply's server), the stored session (six u64: send queue first unacked and next
//! seq — ordered —, consumed, seen, acked, recorded pushes), the server's queue
//! capacity (u64), its largest accepted message and its largest queued message (two
//! u32), the request's length (u16), then the request payload and the reply payload. Checked: no panic; a
//! refusal is never `Ok` and says why; numbers the server's verdict accepts are
//! accepted by the session's `after_login` (the verdict and the engine agree); the
//! client's reading of a reply keeps its status, text, numbers and limits; the
//! client's `after_login` on them decides without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshm_proto::handshake::{client_verdict, mismatch_text, server_verdict, ServerRules};
use tcpshm_proto::login::{Limits, LoginReply, LoginRequest, LoginStatus};
use tcpshm_proto::session::{SeqRange, Session, SessionConfig};
use tcpshm_proto::Name;

/// Offsets in the head (see the module docs).
const QUEUE_CAPACITY: usize = 49;
const MAX_MESSAGE: usize = 57;
const LARGEST_QUEUED: usize = 61;
/// Bytes before the request: flags, seven u64, two u32, a u16.
const HEAD: usize = 1 + 7 * 8 + 2 * 4 + 2;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The stored session the head describes.
fn session(head: &[u8], queue_capacity: u64) -> Session {
    let (a, b) = (u64_at(head, 1), u64_at(head, 9));
    let range = SeqRange::new(a.min(b), a.max(b)).expect("ordered");
    let mut s = Session::new(SessionConfig::default(), queue_capacity, range, u64_at(head, 17));
    s.seq_mut().set_seen(u64_at(head, 25));
    s.seq_mut().restore_acked(u64_at(head, 33));
    s.seq_mut().set_recorded(u64_at(head, 41));
    s
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEAD {
        return;
    }
    let (head, rest) = data.split_at(HEAD);
    let flags = head[0];
    let req_len = (u16::from_le_bytes([head[HEAD - 2], head[HEAD - 1]]) as usize).min(rest.len());
    let (req_bytes, reply_bytes) = rest.split_at(req_len);
    let fallback = Name::new("fuzz-server").expect("valid");
    let req = LoginRequest::parse(req_bytes).ok();
    let reply = LoginReply::parse(reply_bytes).ok();

    if let Some(req) = req {
        let name = match req.last_server {
            Some(s) if flags & 4 != 0 => s,
            _ => reply.map_or(fallback, |r| r.server),
        };
        let limits = Limits { max_message: u32_at(head, MAX_MESSAGE), queue_capacity: u64_at(head, QUEUE_CAPACITY) };
        let rules = ServerRules { name, tcp: flags & 1 != 0, shm: flags & 2 != 0, limits };
        let mut ours = session(head, limits.queue_capacity);
        match server_verdict(&req, &rules, &ours, u32_at(head, LARGEST_QUEUED)) {
            Ok(peer) => {
                assert_eq!(peer.limits, req.limits);
                if let Err(m) = ours.after_login(&peer.numbers, peer.limits, 0) {
                    panic!("the verdict accepted numbers the session refuses: {m}");
                }
                assert!(ours.is_up());
            }
            Err(refusal) => {
                assert_ne!(refusal.status, LoginStatus::Ok);
                assert!(!refusal.text.is_empty(), "a refusal says why");
            }
        }
        if let Err(m) = ours.check_login(&req.numbers) {
            let _ = mismatch_text(&m, &req.client, &name);
        }
    }

    if let Some(reply) = reply {
        let last = if flags & 8 != 0 { Some(reply.server) } else { req.and_then(|r| r.last_server) };
        match client_verdict(&reply, last) {
            Ok(a) => {
                assert_eq!(reply.status, LoginStatus::Ok);
                assert_eq!(
                    (a.server, a.peer.numbers, a.peer.limits, a.shm_file_id),
                    (reply.server, reply.numbers, reply.limits, reply.shm_file_id)
                );
                let mut client = session(head, 0);
                let _ = client.after_login(&a.peer.numbers, a.peer.limits, 0);
            }
            Err(refusal) => assert_eq!((refusal.status, refusal.text.as_str()), (reply.status, reply.text)),
        }
    }
});
