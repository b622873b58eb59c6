//! The decoder and encoder: every `FrameError`, exact `Need` values, split at every
//! byte boundary, many frames in one buffer, the pinned wire layout.

use tcpshm_proto::close::{CloseCode, CloseFrame};
use tcpshm_proto::decode::{frame_limit, MAX_CONTROL_FRAME_LEN, MAX_CONTROL_LEN};
use tcpshm_proto::encode::{self, encode_control, encode_frame, encode_frame_with};
use tcpshm_proto::frame::{frame_len, msg_type, Header, HEADER_LEN};
use tcpshm_proto::login::{self, Limits, LoginReply, LoginRequest, LoginStatus, SessionNumbers, TransportKind};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::{decode, Control, Decoded, EncodeError, FrameError, FrameKind, Name};

const MAX: u32 = 1 << 16;

/// A raw header with arbitrary fields, followed by `extra` bytes.
fn raw(len: u32, t: u16, flags: u16, extra: &[u8]) -> Vec<u8> {
    let mut b = [0u8; HEADER_LEN];
    Header { len, msg_type: t, flags, seq: 0x1122_3344_5566_7788, ack: 9 }.write(&mut b);
    let mut v = b.to_vec();
    v.extend_from_slice(extra);
    v
}

fn user(t: u16, seq: u64, ack: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; frame_len(payload.len())];
    let n = encode_frame(&mut buf, t, seq, ack, payload).unwrap();
    assert_eq!(n, buf.len());
    buf
}

fn control(c: &Control<'_>, seq: u64, ack: u64) -> Vec<u8> {
    let mut buf = [0u8; MAX_CONTROL_FRAME_LEN];
    let n = encode_control(&mut buf, c, seq, ack).unwrap();
    buf[..n].to_vec()
}

fn request() -> LoginRequest<'static> {
    LoginRequest {
        client: Name::new("client-1").unwrap(),
        last_server: Some(Name::new("Server20180714").unwrap()),
        transport: TransportKind::Shm,
        numbers: SessionNumbers { consumed: 5, seen: 8, send_range: SeqRange::new(2, 9).unwrap() },
        limits: Limits { max_message: 1 << 16, queue_capacity: 1 << 20 },
        largest_queued: 300,
        credential: b"\x00\xffsecret",
    }
}

fn reply() -> LoginReply<'static> {
    LoginReply {
        status: LoginStatus::Ok,
        server: Name::new("Server20180714").unwrap(),
        numbers: SessionNumbers { consumed: 2, seen: 2, send_range: SeqRange::new(5, 11).unwrap() },
        limits: Limits { max_message: 4096, queue_capacity: 4096 },
        shm_file_id: 0x0123_4567_89AB_CDEF,
        text: "welcome",
    }
}

/// A frame decoded into owned parts, for comparing sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    header: Header,
    kind: FrameKind,
    payload: Vec<u8>,
    consumed: usize,
}

fn decode_all(mut b: &[u8]) -> (Vec<Owned>, Decoded<'_>) {
    let mut out = Vec::new();
    loop {
        match decode(b, MAX).unwrap() {
            Decoded::Frame { frame, consumed } => {
                assert!(consumed > 0);
                out.push(Owned {
                    header: *frame.header(),
                    kind: frame.kind(),
                    payload: frame.payload().to_vec(),
                    consumed,
                });
                b = &b[consumed..];
            }
            need => return (out, need),
        }
    }
}

/// A buffer with one of every frame kind and a spread of user payload sizes.
fn mixed_stream() -> Vec<u8> {
    let mut s = Vec::new();
    for (i, len) in [0usize, 1, 7, 8, 9, 15, 16, 17, 100, 1000].into_iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
        s.extend(user(i as u16 * 1000, i as u64, 3, &payload));
        if i % 3 == 0 {
            s.extend(encode::heartbeat(i as u64, 4));
        }
    }
    s.extend(encode::ack(1, 2));
    s.extend(control(&Control::Login(request()), 9, 5));
    s.extend(control(&Control::LoginReply(reply()), 11, 2));
    s.extend(control(&Control::Close(CloseFrame { code: CloseCode::REQUESTED, text: "bye ✓" }), 11, 2));
    s
}

#[test]
fn the_header_layout_is_pinned() {
    let f = user(0x0102, 0x0A0B_0C0D_0E0F_1011, 0x2122_2324_2526_2728, b"xyz");
    #[rustfmt::skip]
    let want: [u8; 32] = [
        27, 0, 0, 0,                                    // len = 24 + 3
        0x02, 0x01,                                     // msg_type
        0, 0,                                           // flags
        0x11, 0x10, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, // seq
        0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21, // ack
        b'x', b'y', b'z',                               // payload
        0, 0, 0, 0, 0,                                  // padding to 32
    ];
    assert_eq!(f, want);
    let mut hb = vec![24, 0, 0, 0, 0x00, 0xFF, 0, 0];
    hb.extend(1u64.to_le_bytes());
    hb.extend(2u64.to_le_bytes());
    assert_eq!(encode::heartbeat(1, 2).to_vec(), hb);
    assert_eq!(&encode::ack(0, 0)[4..6], &0xFF03u16.to_le_bytes());
}

#[test]
fn control_types_are_fixed() {
    assert_eq!(
        [msg_type::HEARTBEAT, msg_type::LOGIN, msg_type::LOGIN_REPLY, msg_type::ACK, msg_type::CLOSE],
        [0xFF00, 0xFF01, 0xFF02, 0xFF03, 0xFF04]
    );
    for t in 0..=u16::MAX {
        let kind = FrameKind::of(t);
        assert_eq!(kind == Some(FrameKind::User), msg_type::is_user(t), "type {t:#x}");
        assert_eq!(kind.is_none(), t > msg_type::CLOSE, "type {t:#x}");
    }
}

#[test]
fn too_short_is_refused_with_four_bytes() {
    for len in [0u32, 1, 8, 23] {
        assert_eq!(decode(&len.to_le_bytes(), MAX), Err(FrameError::TooShort { len }));
        assert_eq!(decode(&raw(len, 1, 0, &[0; 64]), MAX), Err(FrameError::TooShort { len }));
    }
    // A zero-length frame can never make a reader loop: it is an error, not `consumed: 0`.
    assert_eq!(decode(&[0; 64], MAX), Err(FrameError::TooShort { len: 0 }));
}

#[test]
fn too_long_is_refused_with_four_bytes() {
    assert_eq!(decode(&(MAX + 1).to_le_bytes(), MAX), Err(FrameError::TooLong { len: MAX + 1, max: MAX }));
    assert_eq!(decode(&u32::MAX.to_le_bytes(), MAX), Err(FrameError::TooLong { len: u32::MAX, max: MAX }));
    // Exactly the maximum is fine.
    assert_eq!(decode(&MAX.to_le_bytes(), MAX), Ok(Decoded::Need(MAX as usize - 4)));
    // A max below the header refuses everything.
    assert_eq!(decode(&encode::heartbeat(0, 0), 23), Err(FrameError::TooLong { len: 24, max: 23 }));
}

#[test]
fn huge_length_does_not_overflow() {
    assert_eq!(decode(&u32::MAX.to_le_bytes(), u32::MAX), Ok(Decoded::Need((1usize << 32) - 4)));
    assert_eq!(decode(&raw(u32::MAX - 7, 5, 0, &[]), u32::MAX), Ok(Decoded::Need((u32::MAX - 7) as usize - 24)));
}

#[test]
fn bad_flags_are_refused_with_eight_bytes() {
    for flags in [1u16, 2, 0x8000, 0xFFFF] {
        let f = raw(32, 7, flags, &[0; 8]);
        assert_eq!(decode(&f[..8], MAX), Err(FrameError::BadFlags(flags)));
        assert_eq!(decode(&f, MAX), Err(FrameError::BadFlags(flags)));
    }
    assert!(matches!(decode(&raw(32, 7, 1, &[])[..7], MAX), Ok(Decoded::Need(25))));
}

#[test]
fn bad_padding_is_refused_at_every_padding_byte() {
    for payload_len in 1..8usize {
        let good = user(3, 0, 0, &vec![0xEE; payload_len]);
        for pad in HEADER_LEN + payload_len..good.len() {
            let mut bad = good.clone();
            bad[pad] = 1;
            assert_eq!(decode(&bad, MAX), Err(FrameError::BadPadding), "payload {payload_len}, byte {pad}");
        }
    }
}

#[test]
fn unknown_control_types_are_refused_with_six_bytes() {
    for t in (msg_type::CLOSE + 1)..=u16::MAX {
        let f = raw(24, t, 0, &[]);
        assert_eq!(decode(&f[..6], MAX), Err(FrameError::UnknownControl(t)));
        assert_eq!(decode(&f, MAX), Err(FrameError::UnknownControl(t)));
    }
}

#[test]
fn control_payload_bounds() {
    let cases = [
        (msg_type::HEARTBEAT, 0),
        (msg_type::ACK, 0),
        (msg_type::LOGIN, login::MAX_REQUEST_LEN),
        (msg_type::LOGIN_REPLY, login::MAX_REPLY_LEN),
        (msg_type::CLOSE, tcpshm_proto::close::MAX_PAYLOAD_LEN),
    ];
    for (t, max) in cases {
        let too_long = (HEADER_LEN + max + 1) as u32;
        assert_eq!(
            decode(&raw(too_long, t, 0, &[])[..6], u32::MAX),
            Err(FrameError::ControlPayload { msg_type: t, len: max + 1 }),
            "type {t:#x}"
        );
        // The longest allowed payload decodes (what it means is the parser's business).
        let ok = raw((HEADER_LEN + max) as u32, t, 0, &vec![0; frame_len(max) - HEADER_LEN]);
        assert!(matches!(decode(&ok, u32::MAX), Ok(Decoded::Frame { .. })), "type {t:#x}");
    }
    // User types have no bound besides max_frame_len.
    let big = user(0, 0, 0, &[1; 5000]);
    assert!(matches!(decode(&big, MAX), Ok(Decoded::Frame { .. })));
}

#[test]
fn checks_run_in_header_order() {
    // Bad length, type, flags and padding all at once: the length is reported.
    let mut f = raw(3, 0xFFFF, 1, &[1; 8]);
    assert_eq!(decode(&f, MAX), Err(FrameError::TooShort { len: 3 }));
    f[..4].copy_from_slice(&25u32.to_le_bytes());
    assert_eq!(decode(&f, MAX), Err(FrameError::UnknownControl(0xFFFF)));
    f[4..6].copy_from_slice(&msg_type::HEARTBEAT.to_le_bytes());
    assert_eq!(decode(&f, MAX), Err(FrameError::ControlPayload { msg_type: msg_type::HEARTBEAT, len: 1 }));
    f[4..6].copy_from_slice(&9u16.to_le_bytes());
    assert_eq!(decode(&f, MAX), Err(FrameError::BadFlags(1)));
    f[6..8].copy_from_slice(&[0, 0]);
    assert_eq!(decode(&f, MAX), Err(FrameError::BadPadding));
    f[25..32].fill(0);
    assert!(matches!(decode(&f, MAX), Ok(Decoded::Frame { consumed: 32, .. })));
}

#[test]
fn need_is_exact_for_every_prefix() {
    for payload_len in [0usize, 1, 8, 13, 300] {
        let f = user(1, 2, 3, &vec![7; payload_len]);
        for cut in 0..f.len() {
            let want = if cut < 4 { HEADER_LEN - cut } else { f.len() - cut };
            assert_eq!(decode(&f[..cut], MAX), Ok(Decoded::Need(want)), "payload {payload_len}, {cut} bytes");
        }
        assert!(matches!(decode(&f, MAX), Ok(Decoded::Frame { consumed, .. }) if consumed == f.len()));
    }
}

#[test]
fn fields_come_back() {
    let f = user(msg_type::MAX_USER, u64::MAX, 42, b"hello");
    let Ok(Decoded::Frame { frame, consumed }) = decode(&f, MAX) else { panic!() };
    assert_eq!(consumed, 32);
    assert_eq!(
        (frame.msg_type(), frame.seq(), frame.ack(), frame.payload(), frame.kind(), frame.is_user()),
        (msg_type::MAX_USER, u64::MAX, 42, &b"hello"[..], FrameKind::User, true)
    );
    assert_eq!(frame.header().len, 29);
    assert_eq!(frame.control(), Ok(None));
}

#[test]
fn many_frames_in_one_buffer() {
    let s = mixed_stream();
    let (frames, rest) = decode_all(&s);
    assert_eq!(rest, Decoded::Need(HEADER_LEN));
    assert_eq!(frames.len(), 10 + 4 + 1 + 3);
    assert_eq!(frames.iter().map(|f| f.consumed).sum::<usize>(), s.len());
    let kinds: Vec<FrameKind> = frames.iter().map(|f| f.kind).collect();
    assert_eq!(kinds[0], FrameKind::User);
    assert_eq!(kinds[1], FrameKind::Heartbeat);
    assert_eq!(&kinds[kinds.len() - 4..], [FrameKind::Ack, FrameKind::Login, FrameKind::LoginReply, FrameKind::Close]);
}

/// A receiver that appends arriving bytes and decodes what it can, as a transport does.
fn decode_in_pieces(s: &[u8], cuts: &[usize]) -> Vec<Owned> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&s.len())) {
        buf.extend_from_slice(&s[prev..cut]);
        prev = cut;
        let (frames, need) = decode_all(&buf);
        let used: usize = frames.iter().map(|f| f.consumed).sum();
        match need {
            Decoded::Need(n) => assert!(n > 0),
            Decoded::Frame { .. } => unreachable!(),
        }
        buf.drain(..used);
        out.extend(frames);
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn split_at_every_byte_boundary() {
    let s = mixed_stream();
    let (whole, _) = decode_all(&s);
    for cut in 0..=s.len() {
        assert_eq!(decode_in_pieces(&s, &[cut]), whole, "split at {cut}");
    }
    // And byte by byte.
    let all: Vec<usize> = (1..s.len()).collect();
    assert_eq!(decode_in_pieces(&s, &all), whole);
}

#[test]
fn control_messages_round_trip() {
    let req = request();
    let rep = reply();
    let close = CloseFrame { code: CloseCode(777), text: "" };
    for c in [Control::Heartbeat, Control::Ack, Control::Login(req), Control::LoginReply(rep), Control::Close(close)] {
        let f = control(&c, 7, 3);
        assert!(f.len() <= MAX_CONTROL_FRAME_LEN);
        let Ok(Decoded::Frame { frame, consumed }) = decode(&f, frame_limit(0)) else { panic!("{c:?}") };
        assert_eq!((consumed, frame.seq(), frame.ack(), frame.msg_type()), (f.len(), 7, 3, c.msg_type()));
        assert_eq!(frame.control(), Ok(Some(c)));
    }
}

#[test]
fn a_bad_control_payload_is_a_protocol_error() {
    let mut f = control(&Control::Login(request()), 0, 0);
    f[HEADER_LEN] ^= 1; // magic
    let Ok(Decoded::Frame { frame, .. }) = decode(&f, MAX) else { panic!() };
    assert!(matches!(
        frame.control(),
        Err(tcpshm_proto::ProtocolError::Login(tcpshm_proto::login::LoginParseError::BadMagic(_)))
    ));
    let f = user(msg_type::CLOSE, 0, 0, &[1]);
    let Ok(Decoded::Frame { frame, .. }) = decode(&f, MAX) else { panic!() };
    assert!(matches!(frame.control(), Err(tcpshm_proto::ProtocolError::Close(_))));
}

#[test]
fn frame_limit_always_admits_control_frames() {
    for max_payload in [0, 1, 100, 1 << 20] {
        let limit = frame_limit(max_payload);
        assert!(limit as usize >= MAX_CONTROL_LEN);
        assert!(limit as usize >= max_payload + HEADER_LEN);
        let login = control(&Control::Login(request()), 0, 0);
        assert!(matches!(decode(&login, limit), Ok(Decoded::Frame { .. })));
    }
}

#[test]
fn encoder_errors() {
    let mut small = [0u8; 31];
    assert_eq!(encode_frame(&mut small, 1, 0, 0, b"abcde"), Err(EncodeError::BufferTooSmall { need: 32, have: 31 }));
    assert_eq!(encode_frame(&mut small, 1, 0, 0, b"abcd"), Err(EncodeError::BufferTooSmall { need: 32, have: 31 }));
    assert_eq!(encode_frame(&mut small, 1, 0, 0, b""), Ok(24));
    // A payload the u32 length cannot describe is refused before the buffer is looked at.
    let too_long = u32::MAX as usize - HEADER_LEN + 1;
    assert_eq!(
        encode_frame_with(&mut small, 1, 0, 0, too_long, |_| unreachable!()),
        Err(EncodeError::FrameTooLong { len: u32::MAX as usize + 1 })
    );
    // An over-long field is reported as such, even with a big enough buffer.
    let cred = [0u8; 257];
    let req = LoginRequest { credential: &cred, ..request() };
    let mut buf = [0u8; 2 * MAX_CONTROL_FRAME_LEN];
    assert_eq!(
        encode_control(&mut buf, &Control::Login(req), 0, 0),
        Err(EncodeError::FieldTooLong { field: "credential", len: 257, max: 256 })
    );
    let text = "x".repeat(257);
    let rep = LoginReply { text: &text, ..reply() };
    assert!(matches!(encode_control(&mut buf, &Control::LoginReply(rep), 0, 0), Err(EncodeError::FieldTooLong { .. })));
    let close = CloseFrame { code: CloseCode::OTHER, text: &text };
    assert!(matches!(encode_control(&mut buf, &Control::Close(close), 0, 0), Err(EncodeError::FieldTooLong { .. })));
    let mut tiny = [0u8; 40];
    assert!(matches!(
        encode_control(&mut tiny, &Control::Login(request()), 0, 0),
        Err(EncodeError::BufferTooSmall { have: 40, .. })
    ));
}

#[test]
fn the_encoder_zeroes_padding_over_old_bytes() {
    let mut buf = [0xFFu8; 64];
    let n = encode_frame(&mut buf, 1, 0, 0, b"a").unwrap();
    assert_eq!(n, 32);
    assert!(buf[25..32].iter().all(|&b| b == 0));
    assert!(matches!(decode(&buf[..n], MAX), Ok(Decoded::Frame { .. })));
}
