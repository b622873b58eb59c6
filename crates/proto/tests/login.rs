//! Login request/reply and close frame: the pinned layouts, every parse error, the
//! encoder's bounds.

use tcpshm_proto::close::{self, CloseCode, CloseFrame, CloseParseError, TextBuf};
use tcpshm_proto::login::{
    LoginParseError, LoginReply, LoginRequest, LoginStatus, NameField, TransportKind, FIXED_LEN, MAGIC, MAX_REPLY_LEN,
    MAX_REQUEST_LEN, VERSION,
};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::{CloseReason, EncodeError, Name, NameError};

fn request() -> LoginRequest<'static> {
    LoginRequest {
        client: Name::new("cli").unwrap(),
        last_server: Some(Name::new("srv").unwrap()),
        transport: TransportKind::Shm,
        consumed: 0x0102,
        send_range: SeqRange::new(3, 4).unwrap(),
        queue_capacity: 0x8000,
        credential: b"pw",
    }
}

fn reply() -> LoginReply<'static> {
    LoginReply {
        status: LoginStatus::Rejected,
        server: Name::new("srv").unwrap(),
        consumed: 7,
        send_range: SeqRange::new(1, 2).unwrap(),
        queue_capacity: 0,
        text: "no",
    }
}

fn enc_req(r: &LoginRequest<'_>) -> Vec<u8> {
    let mut b = vec![0u8; MAX_REQUEST_LEN];
    let n = r.encode(&mut b).unwrap();
    assert_eq!(n, r.encoded_len());
    b.truncate(n);
    b
}

fn enc_rep(r: &LoginReply<'_>) -> Vec<u8> {
    let mut b = vec![0u8; MAX_REPLY_LEN];
    let n = r.encode(&mut b).unwrap();
    assert_eq!(n, r.encoded_len());
    b.truncate(n);
    b
}

#[test]
fn request_layout_is_pinned() {
    let mut want = Vec::new();
    want.extend(b"TSHM");
    want.extend(1u16.to_le_bytes());
    want.extend([1, 3]); // transport SHM, client name length
    want.extend(0x0102u64.to_le_bytes());
    want.extend(3u64.to_le_bytes());
    want.extend(4u64.to_le_bytes());
    want.extend(0x8000u64.to_le_bytes());
    want.extend(2u16.to_le_bytes()); // credential length
    want.push(3); // last server name length
    assert_eq!(want.len(), FIXED_LEN);
    want.extend(b"clisrvpw");
    assert_eq!(enc_req(&request()), want);
    assert_eq!(MAGIC, u32::from_le_bytes(*b"TSHM"));
    assert_eq!(VERSION, 1);
}

#[test]
fn reply_layout_is_pinned() {
    let mut want = Vec::new();
    want.extend(b"TSHM");
    want.extend(1u16.to_le_bytes());
    want.extend(4u16.to_le_bytes()); // Rejected
    want.extend(7u64.to_le_bytes());
    want.extend(1u64.to_le_bytes());
    want.extend(2u64.to_le_bytes());
    want.extend(0u64.to_le_bytes());
    want.extend(2u16.to_le_bytes()); // text length
    want.push(3); // server name length
    want.extend(b"srvno");
    assert_eq!(enc_rep(&reply()), want);
}

#[test]
fn round_trips_at_the_limits() {
    let long = Name::new(&"n".repeat(64)).unwrap();
    let cred = [0xA5u8; 256];
    let r = LoginRequest { client: long, last_server: Some(long), credential: &cred, ..request() };
    let b = enc_req(&r);
    assert_eq!(b.len(), MAX_REQUEST_LEN);
    assert_eq!(LoginRequest::parse(&b), Ok(r));
    let r = LoginRequest { last_server: None, credential: b"", transport: TransportKind::Tcp, ..request() };
    assert_eq!(LoginRequest::parse(&enc_req(&r)), Ok(r));

    let text = "é".repeat(128);
    let p = LoginReply { server: long, text: &text, status: LoginStatus::Ok, ..reply() };
    let b = enc_rep(&p);
    assert_eq!(b.len(), MAX_REPLY_LEN);
    assert_eq!(LoginReply::parse(&b), Ok(p));
}

#[test]
fn every_status_round_trips() {
    for (i, s) in LoginStatus::ALL.into_iter().enumerate() {
        assert_eq!(s.code() as usize, i);
        assert_eq!(LoginStatus::from_code(s.code()), Some(s));
        assert_eq!(s.is_ok(), s == LoginStatus::Ok);
        let r = LoginReply { status: s, ..reply() };
        assert_eq!(LoginReply::parse(&enc_rep(&r)).unwrap().status, s);
    }
    let names: std::collections::HashSet<String> = LoginStatus::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(names.len(), LoginStatus::ALL.len(), "every status reads differently");
    assert_eq!(LoginStatus::from_code(LoginStatus::ALL.len() as u16), None);
}

#[test]
fn truncated() {
    let b = enc_req(&request());
    assert_eq!(LoginRequest::parse(&[]), Err(LoginParseError::Truncated { need: 4, have: 0 }));
    assert_eq!(LoginRequest::parse(&b[..5]), Err(LoginParseError::Truncated { need: 6, have: 5 }));
    assert_eq!(LoginRequest::parse(&b[..42]), Err(LoginParseError::Truncated { need: 43, have: 42 }));
    assert_eq!(
        LoginRequest::parse(&b[..b.len() - 1]),
        Err(LoginParseError::Truncated { need: b.len(), have: b.len() - 1 })
    );
    for cut in 0..b.len() {
        assert!(matches!(LoginRequest::parse(&b[..cut]), Err(LoginParseError::Truncated { .. })), "cut {cut}");
    }
    let b = enc_rep(&reply());
    for cut in 0..b.len() {
        assert!(matches!(LoginReply::parse(&b[..cut]), Err(LoginParseError::Truncated { .. })), "cut {cut}");
    }
}

#[test]
fn bad_magic_and_version_are_checked_first() {
    let mut b = enc_req(&request());
    b[0] = b'X';
    let magic = u32::from_le_bytes(b[..4].try_into().unwrap());
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::BadMagic(magic)));
    assert_eq!(LoginRequest::parse(&b[..4]), Err(LoginParseError::BadMagic(magic)));
    let mut b = enc_req(&request());
    b[4..6].copy_from_slice(&2u16.to_le_bytes());
    // A version-2 request of any length is reported as such, not as malformed.
    assert_eq!(LoginRequest::parse(&b[..6]), Err(LoginParseError::BadVersion { found: 2 }));
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::BadVersion { found: 2 }));
    let mut b = enc_rep(&reply());
    b[4..6].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::BadVersion { found: 0 }));
    b[3] = 0;
    assert!(matches!(LoginReply::parse(&b), Err(LoginParseError::BadMagic(_))));
}

#[test]
fn unknown_transport_and_status() {
    let mut b = enc_req(&request());
    b[6] = 2;
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::UnknownTransport(2)));
    let mut b = enc_rep(&reply());
    b[6..8].copy_from_slice(&11u16.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::UnknownStatus(11)));
    b[6..8].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::UnknownStatus(u16::MAX)));
}

#[test]
fn bad_names() {
    let bad = |field, error| Some(LoginParseError::BadName { field, error });
    // Client name length 0.
    let mut b = enc_req(&request());
    b[7] = 0;
    b.drain(43..46);
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::Empty));
    // Client name length 65 is refused before the bytes are even looked at.
    let mut b = enc_req(&request());
    b[7] = 65;
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::TooLong(65)));
    // A path-traversal attempt in the client name.
    let mut b = enc_req(&request());
    b[43..46].copy_from_slice(b"../");
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::LeadingDot));
    b[43..46].copy_from_slice(b"a/b");
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::BadByte { pos: 1, byte: b'/' }));
    // Last server name.
    let mut b = enc_req(&request());
    b[46] = b'.';
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::LastServer, NameError::LeadingDot));
    let mut b = enc_req(&request());
    b[42] = 200;
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::LastServer, NameError::TooLong(200)));
    // Reply server name.
    let mut b = enc_rep(&reply());
    b[42] = 0;
    assert_eq!(LoginReply::parse(&b[..b.len() - 3]).err(), bad(NameField::Server, NameError::Empty));
    let mut b = enc_rep(&reply());
    b[44] = 0;
    assert_eq!(LoginReply::parse(&b).err(), bad(NameField::Server, NameError::BadByte { pos: 1, byte: 0 }));
}

#[test]
fn bounded_fields() {
    let mut b = enc_req(&request());
    b[40..42].copy_from_slice(&257u16.to_le_bytes());
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::CredentialTooLong(257)));
    let mut b = enc_rep(&reply());
    b[40..42].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::TextTooLong(65535)));
    let mut b = enc_rep(&reply());
    let last = b.len() - 1;
    b[last] = 0xFF;
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::TextNotUtf8 { valid_up_to: 1 }));
}

#[test]
fn inverted_range() {
    let mut b = enc_req(&request());
    b[16..24].copy_from_slice(&5u64.to_le_bytes());
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::InvertedRange { first_unacked: 5, next: 4 }));
    let mut b = enc_rep(&reply());
    b[24..32].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::InvertedRange { first_unacked: 1, next: 0 }));
}

#[test]
fn trailing_bytes() {
    let mut b = enc_req(&request());
    b.push(0);
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::TrailingBytes(1)));
    let mut b = enc_rep(&reply());
    b.extend([0; 10]);
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::TrailingBytes(10)));
}

#[test]
fn refusals_for_parse_errors() {
    use LoginParseError as E;
    let cases = [
        (E::Truncated { need: 4, have: 0 }, LoginStatus::Malformed),
        (E::BadMagic(0), LoginStatus::BadMagic),
        (E::BadVersion { found: 9 }, LoginStatus::BadVersion),
        (E::UnknownTransport(7), LoginStatus::Malformed),
        (E::UnknownStatus(7), LoginStatus::Malformed),
        (E::BadName { field: NameField::Client, error: NameError::Empty }, LoginStatus::BadName),
        (E::CredentialTooLong(300), LoginStatus::Malformed),
        (E::TextTooLong(300), LoginStatus::Malformed),
        (E::TextNotUtf8 { valid_up_to: 0 }, LoginStatus::Malformed),
        (E::InvertedRange { first_unacked: 1, next: 0 }, LoginStatus::Malformed),
        (E::TrailingBytes(1), LoginStatus::Malformed),
    ];
    for (e, s) in cases {
        assert_eq!(e.refusal(), s, "{e}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn encoder_bounds() {
    let cred = [0u8; 257];
    let r = LoginRequest { credential: &cred, ..request() };
    let mut b = [0u8; 1024];
    assert_eq!(r.encode(&mut b), Err(EncodeError::FieldTooLong { field: "credential", len: 257, max: 256 }));
    let mut small = [0u8; 10];
    assert_eq!(request().encode(&mut small), Err(EncodeError::BufferTooSmall { need: 51, have: 10 }));
    let text = "x".repeat(257);
    let r = LoginReply { text: &text, ..reply() };
    assert_eq!(r.encode(&mut b), Err(EncodeError::FieldTooLong { field: "text", len: 257, max: 256 }));
}

#[test]
fn close_layout_and_round_trip() {
    let f = CloseFrame { code: CloseCode::PROTOCOL, text: "ack beyond sent" };
    let mut b = [0u8; close::MAX_PAYLOAD_LEN];
    let n = f.encode(&mut b).unwrap();
    assert_eq!(&b[..n], b"\x01\x00ack beyond sent");
    assert_eq!(CloseFrame::parse(&b[..n]), Ok(f));
    // Unknown codes from a newer peer are kept.
    assert_eq!(CloseFrame::parse(b"\x39\x30"), Ok(CloseFrame { code: CloseCode(12345), text: "" }));
    assert_eq!(CloseCode(12345).to_string(), "code 12345");
    assert_eq!(CloseCode(12345).name(), None);
}

#[test]
fn close_parse_errors() {
    assert_eq!(CloseFrame::parse(b""), Err(CloseParseError::Truncated(0)));
    assert_eq!(CloseFrame::parse(b"\x01"), Err(CloseParseError::Truncated(1)));
    let mut long = vec![0u8, 0];
    long.extend([b'x'; 257]);
    assert_eq!(CloseFrame::parse(&long), Err(CloseParseError::TextTooLong(257)));
    assert!(CloseFrame::parse(&long[..258]).is_ok());
    assert_eq!(CloseFrame::parse(b"\x00\x00ok\xC3"), Err(CloseParseError::TextNotUtf8 { valid_up_to: 2 }));
    let text = "y".repeat(257);
    let mut b = [0u8; 512];
    assert!(matches!(
        CloseFrame { code: CloseCode::OTHER, text: &text }.encode(&mut b),
        Err(EncodeError::FieldTooLong { .. })
    ));
    assert_eq!(
        CloseFrame { code: CloseCode::OTHER, text: "abc" }.encode(&mut b[..4]),
        Err(EncodeError::BufferTooSmall { need: 5, have: 4 })
    );
}

#[test]
fn close_reasons_map_to_codes_and_back() {
    let cases = [
        (CloseReason::Requested, CloseCode::REQUESTED),
        (CloseReason::Protocol(tcpshm_proto::ProtocolError::AckBeyondSent { ack: 5, sent: 2 }), CloseCode::PROTOCOL),
        (CloseReason::Timeout { silent_ns: 7 }, CloseCode::TIMEOUT),
        (CloseReason::Replaced, CloseCode::REPLACED),
        (CloseReason::Storage("disk".into()), CloseCode::STORAGE),
        (CloseReason::Corrupt("ring".into()), CloseCode::CORRUPT),
        (CloseReason::RemoteClosed, CloseCode::OTHER),
    ];
    for (reason, code) in cases {
        let mut t = TextBuf::new();
        let f = CloseFrame::for_reason(&reason, &mut t);
        assert_eq!(f.code, code);
        assert_eq!(f.text, reason.to_string());
        let CloseReason::RemoteRequested(s) = f.to_reason() else { panic!() };
        assert!(s.starts_with(&code.to_string()) && s.ends_with(&reason.to_string()), "{s}");
        assert!(!s.starts_with(&format!("{code}: {code}")), "the code's name is not repeated: {s}");
    }
    assert_eq!(
        CloseFrame { code: CloseCode::TIMEOUT, text: "" }.to_reason(),
        CloseReason::RemoteRequested("timeout".into())
    );
}

#[test]
fn text_buf_truncates_at_a_char_boundary_and_stays_a_prefix() {
    use core::fmt::Write;
    let mut t = TextBuf::new();
    write!(t, "{}", "a".repeat(255)).unwrap();
    write!(t, "é and more").unwrap();
    assert_eq!(t.as_str(), "a".repeat(255), "the 2-byte char does not fit, and nothing after it is taken");
    t.clear();
    write!(t, "ok").unwrap();
    assert_eq!(t.as_str(), "ok");
    let long = CloseReason::Storage("z".repeat(1000));
    let f = CloseFrame::for_reason(&long, &mut t);
    assert_eq!(f.text.len(), close::MAX_TEXT_LEN);
    let mut b = [0u8; close::MAX_PAYLOAD_LEN];
    let n = f.encode(&mut b).unwrap();
    assert_eq!(CloseFrame::parse(&b[..n]), Ok(f));
}

#[test]
fn name_limits() {
    assert!(Name::from_bytes(&[b'a'; 64]).is_ok());
    assert_eq!(Name::from_bytes(&[b'a'; 65]), Err(NameError::TooLong(65)));
    assert_eq!(Name::from_bytes(b""), Err(NameError::Empty));
    assert_eq!(Name::new(".."), Err(NameError::LeadingDot));
    assert_eq!(Name::new("a b"), Err(NameError::BadByte { pos: 1, byte: b' ' }));
    assert_eq!(Name::from_bytes("é".as_bytes()), Err(NameError::BadByte { pos: 0, byte: 0xC3 }));
    assert_eq!("x.y-z_1".parse::<Name>().unwrap().to_string(), "x.y-z_1");
}
