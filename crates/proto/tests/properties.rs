//! Property tests: every frame kind round-trips; arbitrary bytes never make the
//! decoder, the parsers or the handshake verdicts panic or stall, and whatever the
//! parsers accept re-encodes to the same bytes (one encoding per value); the
//! decoder's verdict on a stream does not depend on how reads split it.

use proptest::prelude::*;
use tcpshm_proto::close::{self, CloseCode, CloseFrame};
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::encode::{self, encode_control, encode_frame};
use tcpshm_proto::frame::{frame_len, msg_type, Header, HEADER_LEN};
use tcpshm_proto::handshake::{client_verdict, server_verdict, ServerRules};
use tcpshm_proto::login::{
    self, truncate_utf8, Limits, LoginParseError, LoginReply, LoginRequest, LoginStatus, SessionNumbers, TransportKind,
};
use tcpshm_proto::session::{SeqRange, Session, SessionConfig};
use tcpshm_proto::{decode, Control, Decoded, FrameError, Name};

fn name() -> impl Strategy<Value = Name> {
    "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}".prop_map(|s| Name::new(&s).unwrap())
}

fn range() -> impl Strategy<Value = SeqRange> {
    (any::<u64>(), any::<u64>()).prop_map(|(a, b)| SeqRange::new(a.min(b), a.max(b)).unwrap())
}

/// Valid numbers: `seen >= consumed`, the range not inverted.
fn numbers() -> impl Strategy<Value = SessionNumbers> {
    (any::<u64>(), any::<u64>(), range()).prop_map(|(a, b, send_range)| SessionNumbers {
        consumed: a.min(b),
        seen: a.max(b),
        send_range,
    })
}

fn limits() -> impl Strategy<Value = Limits> {
    (any::<u32>(), any::<u64>()).prop_map(|(max_message, queue_capacity)| Limits { max_message, queue_capacity })
}

fn text(max: usize) -> impl Strategy<Value = String> {
    ".{0,200}".prop_map(move |s| truncate_utf8(&s, max).to_owned())
}

prop_compose! {
    fn request()(
        client in name(),
        last_server in proptest::option::of(name()),
        shm in any::<bool>(),
        numbers in numbers(),
        limits in limits(),
        largest_queued in any::<u32>(),
        credential in proptest::collection::vec(any::<u8>(), 0..=login::MAX_CREDENTIAL_LEN),
    ) -> (LoginRequest<'static>, Vec<u8>) {
        let transport = if shm { TransportKind::Shm } else { TransportKind::Tcp };
        let r = LoginRequest { client, last_server, transport, numbers, limits, largest_queued, credential: &[] };
        (r, credential)
    }
}

prop_compose! {
    fn reply()(
        status in proptest::sample::select(LoginStatus::ALL.to_vec()),
        server in name(),
        numbers in numbers(),
        limits in limits(),
        shm_file_id in any::<u64>(),
        text in text(login::MAX_TEXT_LEN),
    ) -> (LoginReply<'static>, String) {
        (LoginReply { status, server, numbers, limits, shm_file_id, text: "" }, text)
    }
}

/// Decodes one whole frame that must fill `b` exactly.
fn decode_one(b: &[u8]) -> tcpshm_proto::Frame<'_> {
    match decode(b, u32::MAX) {
        Ok(Decoded::Frame { frame, consumed }) => {
            assert_eq!(consumed, b.len());
            frame
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn user_frames_round_trip(
        t in 0..=msg_type::MAX_USER,
        seq in any::<u64>(),
        ack in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let mut buf = vec![0xAB; frame_len(payload.len()) + 5];
        let n = encode_frame(&mut buf, t, seq, ack, &payload).unwrap();
        prop_assert_eq!(n, frame_len(payload.len()));
        prop_assert_eq!(n % 8, 0);
        let f = decode_one(&buf[..n]);
        prop_assert_eq!(
            (f.msg_type(), f.seq(), f.ack(), f.payload(), f.header().len as usize),
            (t, seq, ack, &payload[..], HEADER_LEN + payload.len())
        );
    }

    #[test]
    fn heartbeat_and_ack_round_trip(seq in any::<u64>(), ack in any::<u64>()) {
        for (bytes, c) in [(encode::heartbeat(seq, ack), Control::Heartbeat), (encode::ack(seq, ack), Control::Ack)] {
            let f = decode_one(&bytes);
            prop_assert_eq!((f.seq(), f.ack()), (seq, ack));
            prop_assert_eq!(f.control(), Ok(Some(c)));
            let mut buf = [0u8; 24];
            prop_assert_eq!(encode_control(&mut buf, &c, seq, ack), Ok(24));
            prop_assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn close_round_trips(code in any::<u16>(), text in text(close::MAX_TEXT_LEN), seq in any::<u64>(), ack in any::<u64>()) {
        let c = CloseFrame { code: CloseCode(code), text: &text };
        let mut p = [0u8; close::MAX_PAYLOAD_LEN];
        let n = c.encode(&mut p).unwrap();
        prop_assert_eq!(CloseFrame::parse(&p[..n]), Ok(c));
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let n = encode_control(&mut buf, &Control::Close(c), seq, ack).unwrap();
        let f = decode_one(&buf[..n]);
        prop_assert_eq!((f.seq(), f.ack()), (seq, ack));
        prop_assert_eq!(f.control(), Ok(Some(Control::Close(c))));
    }

    #[test]
    fn login_request_round_trips((r, cred) in request(), seq in any::<u64>(), ack in any::<u64>()) {
        let r = LoginRequest { credential: &cred, ..r };
        let mut p = [0u8; login::MAX_REQUEST_LEN];
        let n = r.encode(&mut p).unwrap();
        prop_assert_eq!(n, r.encoded_len());
        prop_assert_eq!(LoginRequest::parse(&p[..n]), Ok(r));
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let n = encode_control(&mut buf, &Control::Login(r), seq, ack).unwrap();
        let f = decode_one(&buf[..n]);
        prop_assert_eq!(f.control(), Ok(Some(Control::Login(r))));
    }

    #[test]
    fn login_reply_round_trips((r, text) in reply(), seq in any::<u64>(), ack in any::<u64>()) {
        let r = LoginReply { text: &text, ..r };
        let mut p = [0u8; login::MAX_REPLY_LEN];
        let n = r.encode(&mut p).unwrap();
        prop_assert_eq!(LoginReply::parse(&p[..n]), Ok(r));
        let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
        let n = encode_control(&mut buf, &Control::LoginReply(r), seq, ack).unwrap();
        let f = decode_one(&buf[..n]);
        prop_assert_eq!(f.control(), Ok(Some(Control::LoginReply(r))));
    }

    /// Arbitrary bytes: no panic, `Need(n)` with n > 0, or a frame with
    /// 0 < consumed <= len, a multiple of 8, whose fields re-encode to exactly the
    /// bytes consumed.
    #[test]
    fn decode_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600), max in any::<u32>()) {
        let mut b = &bytes[..];
        loop {
            match decode(b, max) {
                Err(_) => break,
                Ok(Decoded::Need(n)) => {
                    prop_assert!(n > 0);
                    break;
                }
                Ok(Decoded::Frame { frame, consumed }) => {
                    prop_assert!(consumed > 0 && consumed <= b.len() && consumed % 8 == 0);
                    let mut again = vec![0u8; consumed];
                    encode_frame(&mut again, frame.msg_type(), frame.seq(), frame.ack(), frame.payload()).unwrap();
                    prop_assert_eq!(&again[..], &b[..consumed]);
                    let _ = frame.control();
                    b = &b[consumed..];
                }
            }
        }
    }

    /// Bytes that start with a plausible header (so the decoder gets past the first
    /// checks more often than with uniform bytes).
    #[test]
    fn decode_near_valid_headers(
        len in 0u32..700,
        t in prop_oneof![0u16..10, 0xFEF0u16..=0xFFFF],
        flags in prop_oneof![Just(0u16), any::<u16>()],
        rest in proptest::collection::vec(any::<u8>(), 0..700),
    ) {
        let mut b = [0u8; HEADER_LEN].to_vec();
        let mut h = [0u8; HEADER_LEN];
        Header { len, msg_type: t, flags, seq: 1, ack: 2 }.write(&mut h);
        b.copy_from_slice(&h);
        b.extend(rest);
        match decode(&b, 1 << 16) {
            Ok(Decoded::Need(n)) => prop_assert!(n > 0 && b.len() + n == frame_len(len as usize - HEADER_LEN)),
            Ok(Decoded::Frame { consumed, frame }) => {
                prop_assert_eq!(consumed, frame_len(len as usize - HEADER_LEN));
                let _ = frame.control();
            }
            Err(_) => {}
        }
    }

    /// The parsers on arbitrary bytes: no panic; whatever parses re-encodes to the
    /// same bytes.
    #[test]
    fn parse_arbitrary_payloads(mut bytes in proptest::collection::vec(any::<u8>(), 0..500), fix in any::<bool>()) {
        if fix && bytes.len() >= 6 {
            // Often give it the right magic and version, to reach the later checks.
            bytes[..4].copy_from_slice(&login::MAGIC.to_le_bytes());
            bytes[4..6].copy_from_slice(&login::VERSION.to_le_bytes());
        }
        let mut out = [0u8; 1024];
        if let Ok(r) = LoginRequest::parse(&bytes) {
            let n = r.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &bytes[..]);
        }
        if let Ok(r) = LoginReply::parse(&bytes) {
            let n = r.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &bytes[..]);
        }
        if let Ok(c) = CloseFrame::parse(&bytes) {
            let n = c.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &bytes[..]);
        }
    }

    /// One byte of a valid login changed: an error, or a value that re-encodes to
    /// the changed bytes — never a panic, never a silently different reading.
    #[test]
    fn mutated_logins((r, cred) in request(), at in any::<prop::sample::Index>(), x in any::<u8>()) {
        let r = LoginRequest { credential: &cred, ..r };
        let mut p = [0u8; login::MAX_REQUEST_LEN];
        let n = r.encode(&mut p).unwrap();
        let i = at.index(n);
        p[i] ^= x | 1;
        if let Ok(m) = LoginRequest::parse(&p[..n]) {
            let mut q = [0u8; login::MAX_REQUEST_LEN];
            let k = m.encode(&mut q).unwrap();
            prop_assert_eq!(&q[..k], &p[..n]);
        }
    }

    /// One byte of a valid reply changed: an error, or a value that re-encodes to
    /// the changed bytes.
    #[test]
    fn mutated_replies((r, text) in reply(), at in any::<prop::sample::Index>(), x in any::<u8>()) {
        let r = LoginReply { text: &text, ..r };
        let mut p = [0u8; login::MAX_REPLY_LEN];
        let n = r.encode(&mut p).unwrap();
        let i = at.index(n);
        p[i] ^= x | 1;
        if let Ok(m) = LoginReply::parse(&p[..n]) {
            let mut q = [0u8; login::MAX_REPLY_LEN];
            let k = m.encode(&mut q).unwrap();
            prop_assert_eq!(&q[..k], &p[..n]);
        }
    }

    /// A parsed login always satisfies the layout's rules (`seen >= consumed`, a
    /// range that is not inverted); a refused one maps to a refusal, never `Ok`.
    #[test]
    fn parsed_numbers_are_consistent(mut bytes in proptest::collection::vec(any::<u8>(), 70)) {
        bytes[..4].copy_from_slice(&login::MAGIC.to_le_bytes());
        bytes[4..6].copy_from_slice(&login::VERSION.to_le_bytes());
        // Short valid names, no credential or text, the reserved bytes zero: the
        // numbers decide.
        for b in &mut bytes[60..] {
            *b = b'a';
        }
        let mut req = bytes.clone();
        req[6] &= 1;
        req[7] = 5;
        req[56..60].copy_from_slice(&[0, 0, 5, 0]);
        match LoginRequest::parse(&req) {
            Ok(r) => prop_assert!(r.numbers.seen >= r.numbers.consumed),
            Err(e) => {
                prop_assert!(matches!(e, LoginParseError::SeenBelowConsumed { .. } | LoginParseError::InvertedRange { .. }), "{:?}", e);
                prop_assert_ne!(e.refusal(), LoginStatus::Ok);
            }
        }
        let mut rep = bytes;
        rep[6..8].copy_from_slice(&0u16.to_le_bytes());
        rep[52..56].fill(0);
        rep[64..68].copy_from_slice(&[0, 0, 2, 0]);
        rep.truncate(70);
        match LoginReply::parse(&rep) {
            Ok(r) => prop_assert!(r.numbers.seen >= r.numbers.consumed),
            Err(e) => prop_assert!(matches!(e, LoginParseError::SeenBelowConsumed { .. } | LoginParseError::InvertedRange { .. }), "{:?}", e),
        }
    }

    /// The handshake's verdicts on any login that parses, against any stored session
    /// and any server rules: no panic; an accepted request's numbers are exactly
    /// what the session then accepts at `after_login`; an accepting reply is read
    /// back with its numbers.
    #[test]
    fn verdicts_on_any_login(
        (r, cred) in request(),
        (p, text) in reply(),
        ours in (range(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        rules in (any::<bool>(), any::<bool>(), limits(), any::<u32>(), any::<bool>()),
        last in proptest::option::of(name()),
        fit in any::<bool>(),
    ) {
        let r = LoginRequest { credential: &cred, ..r };
        let p = LoginReply { text: &text, ..p };
        let (mut send_range, mut consumed, mut seen, mut acked, mut recorded) = ours;
        let (mut tcp, mut shm, mut limits, mut our_largest, same_name) = rules;
        if fit {
            // A session whose numbers fit the request's and limits that admit both
            // queues, so the accepting path is taken as often as the refusing ones.
            send_range = SeqRange::new(r.numbers.consumed, r.numbers.seen).unwrap();
            (consumed, seen, acked, recorded) = (r.numbers.send_range.first_unacked(), 0, 0, 0);
            (tcp, shm) = (true, true);
            limits.max_message = limits.max_message.max(r.largest_queued);
            our_largest = our_largest.min(r.limits.max_message);
        }
        let server = if same_name { r.last_server.unwrap_or(p.server) } else { p.server };
        let rules = ServerRules { name: server, tcp, shm, limits };
        let mut session = Session::new(SessionConfig::default(), limits.queue_capacity, send_range, consumed);
        session.seq_mut().set_seen(seen);
        session.seq_mut().restore_acked(acked);
        session.seq_mut().set_recorded(recorded);
        match server_verdict(&r, &rules, &session, our_largest) {
            Ok(peer) => {
                prop_assert_eq!(peer.limits, r.limits);
                prop_assert!(peer.numbers == r.numbers || peer.numbers == SessionNumbers::default());
                let resume = session.after_login(&peer.numbers, peer.limits, 0);
                prop_assert!(resume.is_ok(), "accepted by the verdict, refused by the session: {:?}", resume);
            }
            Err(refusal) => {
                prop_assert_ne!(refusal.status, LoginStatus::Ok);
                prop_assert!(!refusal.text.is_empty());
            }
        }
        match client_verdict(&p, last) {
            Ok(a) => {
                prop_assert_eq!(p.status, LoginStatus::Ok);
                prop_assert_eq!((a.server, a.peer.numbers, a.peer.limits, a.shm_file_id), (p.server, p.numbers, p.limits, p.shm_file_id));
            }
            Err(refusal) => prop_assert_eq!((refusal.status, refusal.text.as_str()), (p.status, p.text)),
        }
    }

    /// Arbitrary received bytes delivered in two reads give the same frames and the
    /// same final verdict (need more, or the same error) as in one read.
    #[test]
    fn decode_verdict_independent_of_reads(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        at in any::<prop::sample::Index>(),
        max in prop_oneof![Just(u32::MAX), 0u32..1024],
    ) {
        let whole = decode_stream(&bytes, max);
        let at = at.index(bytes.len() + 1);
        let (mut frames, end) = decode_stream(&bytes[..at], max);
        let split = if let End::Error(_) = end {
            // An error on a prefix is final: the whole must report it too.
            (frames, end)
        } else {
            let used: usize = frames.iter().map(Vec::len).sum();
            let (more, end) = decode_stream(&bytes[used..], max);
            frames.extend(more);
            (frames, end)
        };
        prop_assert_eq!(split, whole, "split at {}", at);
    }

    /// Frames of random kinds and sizes, delivered in random pieces, decode to the
    /// same sequence as the whole buffer.
    #[test]
    fn random_splits(
        sizes in proptest::collection::vec(0usize..300, 1..40),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let mut s = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            if len % 5 == 0 {
                s.extend(encode::heartbeat(i as u64, len as u64));
            } else {
                let mut f = vec![0u8; frame_len(len)];
                let payload: Vec<u8> = (0..len).map(|j| (i ^ j) as u8).collect();
                encode_frame(&mut f, i as u16, i as u64, 0, &payload).unwrap();
                s.extend(f);
            }
        }
        let whole = collect(&s, &[]);
        prop_assert_eq!(whole.len(), sizes.len());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(s.len() + 1)).collect();
        points.sort_unstable();
        prop_assert_eq!(collect(&s, &points), whole);
    }
}

/// How decoding a stream ended.
#[derive(Debug, PartialEq)]
enum End {
    Need,
    Error(FrameError),
}

/// The frames (as their bytes) of a stream, and how it ended.
fn decode_stream(stream: &[u8], max: u32) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    let mut b = stream;
    loop {
        match decode(b, max) {
            Err(e) => return (frames, End::Error(e)),
            Ok(Decoded::Need(_)) => return (frames, End::Need),
            Ok(Decoded::Frame { consumed, .. }) => {
                frames.push(b[..consumed].to_vec());
                b = &b[consumed..];
            }
        }
    }
}

/// Decodes `s` delivered in pieces ending at `points`, as a receiver would.
fn collect(s: &[u8], points: &[usize]) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut prev = 0;
    for &p in points.iter().chain(std::iter::once(&s.len())) {
        buf.extend_from_slice(&s[prev..p]);
        prev = p;
        let mut at = 0;
        while let Ok(Decoded::Frame { frame, consumed }) = decode(&buf[at..], 1 << 20) {
            out.push((*frame.header(), frame.payload().to_vec()));
            at += consumed;
        }
        buf.drain(..at);
    }
    assert!(buf.is_empty());
    out
}
