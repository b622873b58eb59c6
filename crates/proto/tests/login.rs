//! Login request/reply and close frame: the pinned layouts (protocol version 2, as
//! the tables in `login`'s module docs say), every parse error, the encoder's bounds.

use tcpshm_proto::close::{self, CloseCode, CloseFrame, CloseParseError, TextBuf};
use tcpshm_proto::login::{
    Limits, LoginParseError, LoginReply, LoginRequest, LoginStatus, NameField, SessionNumbers, TransportKind, MAGIC,
    MAX_REPLY_LEN, MAX_REQUEST_LEN, REPLY_FIXED_LEN, REQUEST_FIXED_LEN, VERSION,
};
use tcpshm_proto::session::SeqRange;
use tcpshm_proto::{CloseReason, EncodeError, Fault, Name, NameError};

/// A request whose every number differs from every other, so a field read at the
/// wrong offset shows.
fn request() -> LoginRequest<'static> {
    LoginRequest {
        client: Name::new("cli").unwrap(),
        last_server: Some(Name::new("srv").unwrap()),
        transport: TransportKind::Shm,
        numbers: SessionNumbers { consumed: 0x0102, seen: 0x0304, send_range: SeqRange::new(3, 4).unwrap() },
        limits: Limits { max_message: 0x0506_0708, queue_capacity: 0x8000 },
        largest_queued: 0x090A,
        credential: b"pw",
    }
}

fn reply() -> LoginReply<'static> {
    LoginReply {
        status: LoginStatus::Rejected,
        server: Name::new("srv").unwrap(),
        numbers: SessionNumbers { consumed: 7, seen: 8, send_range: SeqRange::new(1, 2).unwrap() },
        limits: Limits { max_message: 0x0B0C, queue_capacity: 0x0D0E_0F10 },
        shm_file_id: 0x1112_1314_1516_1718,
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

/// Request offsets (the table in `login`'s docs): name lengths and variable parts.
const REQ_CLIENT_LEN: usize = 7;
const REQ_CRED_LEN: usize = 56;
const REQ_LAST_LEN: usize = 58;
const REQ_RESERVED: usize = 59;
/// Reply offsets.
const REP_TEXT_LEN: usize = 64;
const REP_SERVER_LEN: usize = 66;

#[test]
fn request_layout_is_pinned() {
    let mut want = Vec::new();
    want.extend(b"TSHM"); // 0: magic
    want.extend(2u16.to_le_bytes()); // 4: version
    want.extend([1, 3]); // 6: transport SHM, 7: client name length
    want.extend(0x0102u64.to_le_bytes()); // 8: consumed
    want.extend(0x0304u64.to_le_bytes()); // 16: seen
    want.extend(3u64.to_le_bytes()); // 24: first unacked
    want.extend(4u64.to_le_bytes()); // 32: next seq
    want.extend(0x8000u64.to_le_bytes()); // 40: queue capacity
    want.extend(0x0506_0708u32.to_le_bytes()); // 48: max message
    want.extend(0x090Au32.to_le_bytes()); // 52: largest queued
    want.extend(2u16.to_le_bytes()); // 56: credential length
    want.push(3); // 58: last server name length
    want.push(0); // 59: reserved
    assert_eq!(want.len(), REQUEST_FIXED_LEN);
    assert_eq!(REQUEST_FIXED_LEN, 60);
    want.extend(b"clisrvpw"); // 60: client, last server, credential
    assert_eq!(enc_req(&request()), want);
    assert_eq!(LoginRequest::parse(&want), Ok(request()));
    assert_eq!(MAGIC, u32::from_le_bytes(*b"TSHM"));
    assert_eq!(VERSION, 2);
    assert_eq!(MAX_REQUEST_LEN, 60 + 64 + 64 + 256);
}

#[test]
fn reply_layout_is_pinned() {
    let mut want = Vec::new();
    want.extend(b"TSHM"); // 0: magic
    want.extend(2u16.to_le_bytes()); // 4: version
    want.extend(4u16.to_le_bytes()); // 6: status Rejected
    want.extend(7u64.to_le_bytes()); // 8: consumed
    want.extend(8u64.to_le_bytes()); // 16: seen
    want.extend(1u64.to_le_bytes()); // 24: first unacked
    want.extend(2u64.to_le_bytes()); // 32: next seq
    want.extend(0x0D0E_0F10u64.to_le_bytes()); // 40: queue capacity
    want.extend(0x0B0Cu32.to_le_bytes()); // 48: max message
    want.extend([0; 4]); // 52: reserved
    want.extend(0x1112_1314_1516_1718u64.to_le_bytes()); // 56: shm file id
    want.extend(2u16.to_le_bytes()); // 64: text length
    want.push(3); // 66: server name length
    want.push(0); // 67: reserved
    assert_eq!(want.len(), REPLY_FIXED_LEN);
    assert_eq!(REPLY_FIXED_LEN, 68);
    want.extend(b"srvno"); // 68: server name, text
    assert_eq!(enc_rep(&reply()), want);
    assert_eq!(LoginReply::parse(&want), Ok(reply()));
    assert_eq!(MAX_REPLY_LEN, 68 + 64 + 256);
}

/// Writes `v` (little-endian, its width) at `at`.
fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// Each number of the request read from its own offset: a new value written there
/// changes that field and no other.
#[test]
fn every_request_field_is_read_at_its_offset() {
    type Change = fn(&mut LoginRequest<'static>);
    let cases: [(usize, Vec<u8>, Change); 7] = [
        (8, 0x0300u64.to_le_bytes().to_vec(), |r| r.numbers.consumed = 0x0300),
        (16, 0xFFFF_FFFF_FFFFu64.to_le_bytes().to_vec(), |r| r.numbers.seen = 0xFFFF_FFFF_FFFF),
        (24, 4u64.to_le_bytes().to_vec(), |r| r.numbers.send_range = SeqRange::new(4, 4).unwrap()),
        (32, u64::MAX.to_le_bytes().to_vec(), |r| r.numbers.send_range = SeqRange::new(3, u64::MAX).unwrap()),
        (40, u64::MAX.to_le_bytes().to_vec(), |r| r.limits.queue_capacity = u64::MAX),
        (48, 0u32.to_le_bytes().to_vec(), |r| r.limits.max_message = 0),
        (52, u32::MAX.to_le_bytes().to_vec(), |r| r.largest_queued = u32::MAX),
    ];
    for (at, bytes, change) in cases {
        let mut b = enc_req(&request());
        put(&mut b, at, &bytes);
        let mut want = request();
        change(&mut want);
        assert_eq!(LoginRequest::parse(&b), Ok(want), "field at offset {at}");
        assert_eq!(enc_req(&want), b, "field at offset {at}");
    }
    let mut b = enc_req(&request());
    b[6] = 0;
    assert_eq!(LoginRequest::parse(&b), Ok(LoginRequest { transport: TransportKind::Tcp, ..request() }));
}

#[test]
fn every_reply_field_is_read_at_its_offset() {
    type Change = fn(&mut LoginReply<'static>);
    let cases: [(usize, Vec<u8>, Change); 8] = [
        (6, 11u16.to_le_bytes().to_vec(), |r| r.status = LoginStatus::LimitExceeded),
        (8, 8u64.to_le_bytes().to_vec(), |r| r.numbers.consumed = 8),
        (16, u64::MAX.to_le_bytes().to_vec(), |r| r.numbers.seen = u64::MAX),
        (24, 0u64.to_le_bytes().to_vec(), |r| r.numbers.send_range = SeqRange::new(0, 2).unwrap()),
        (32, 1u64.to_le_bytes().to_vec(), |r| r.numbers.send_range = SeqRange::new(1, 1).unwrap()),
        (40, 0u64.to_le_bytes().to_vec(), |r| r.limits.queue_capacity = 0),
        (48, u32::MAX.to_le_bytes().to_vec(), |r| r.limits.max_message = u32::MAX),
        (56, 0u64.to_le_bytes().to_vec(), |r| r.shm_file_id = 0),
    ];
    for (at, bytes, change) in cases {
        let mut b = enc_rep(&reply());
        put(&mut b, at, &bytes);
        let mut want = reply();
        change(&mut want);
        assert_eq!(LoginReply::parse(&b), Ok(want), "field at offset {at}");
        assert_eq!(enc_rep(&want), b, "field at offset {at}");
    }
}

#[test]
fn round_trips_at_the_limits() {
    let long = Name::new(&"n".repeat(64)).unwrap();
    let cred = [0xA5u8; 256];
    let max =
        SessionNumbers { consumed: u64::MAX, seen: u64::MAX, send_range: SeqRange::new(u64::MAX, u64::MAX).unwrap() };
    let limits = Limits { max_message: u32::MAX, queue_capacity: u64::MAX };
    let r = LoginRequest {
        client: long,
        last_server: Some(long),
        credential: &cred,
        numbers: max,
        limits,
        largest_queued: u32::MAX,
        ..request()
    };
    let b = enc_req(&r);
    assert_eq!(b.len(), MAX_REQUEST_LEN);
    assert_eq!(LoginRequest::parse(&b), Ok(r));
    // A fresh client: no last server, no credential, zero numbers and limits.
    let r = LoginRequest {
        last_server: None,
        credential: b"",
        transport: TransportKind::Tcp,
        numbers: SessionNumbers::default(),
        limits: Limits::default(),
        largest_queued: 0,
        ..request()
    };
    let b = enc_req(&r);
    assert_eq!(b.len(), REQUEST_FIXED_LEN + 3);
    assert_eq!(LoginRequest::parse(&b), Ok(r));

    let text = "é".repeat(128);
    let p =
        LoginReply { server: long, text: &text, status: LoginStatus::Ok, numbers: max, limits, shm_file_id: u64::MAX };
    let b = enc_rep(&p);
    assert_eq!(b.len(), MAX_REPLY_LEN);
    assert_eq!(LoginReply::parse(&b), Ok(p));
}

#[test]
fn a_refusal_carries_zero_numbers() {
    let r = LoginReply::refusal(LoginStatus::LimitExceeded, Name::new("srv").unwrap(), "too big");
    assert_eq!(
        (r.numbers, r.limits, r.shm_file_id, r.text),
        (SessionNumbers::default(), Limits::default(), 0, "too big")
    );
    let b = enc_rep(&r);
    assert!(b[8..REPLY_FIXED_LEN - 4].iter().all(|&x| x == 0), "numbers, limits and file id are zero");
    assert_eq!(LoginReply::parse(&b), Ok(r));
    // The text is cut to the field's bound at a character boundary.
    let long = "é".repeat(200);
    let r = LoginReply::refusal(LoginStatus::Rejected, Name::new("srv").unwrap(), &long);
    assert_eq!(r.text.len(), 256);
    assert_eq!(LoginReply::parse(&enc_rep(&r)).unwrap().text, r.text);
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
fn limit_exceeded_is_the_newest_status() {
    assert_eq!(LoginStatus::LimitExceeded.code(), 11);
    assert_eq!(LoginStatus::ALL.len(), 12);
    assert_eq!(LoginStatus::from_code(11), Some(LoginStatus::LimitExceeded));
    assert!(!LoginStatus::LimitExceeded.is_ok());
    assert!(LoginStatus::LimitExceeded.to_string().contains("limit"));
    let mut b = enc_rep(&reply());
    put(&mut b, 6, &11u16.to_le_bytes());
    assert_eq!(LoginReply::parse(&b).unwrap().status, LoginStatus::LimitExceeded);
}

#[test]
fn truncated() {
    let b = enc_req(&request());
    assert_eq!(LoginRequest::parse(&[]), Err(LoginParseError::Truncated { need: 4, have: 0 }));
    assert_eq!(LoginRequest::parse(&b[..5]), Err(LoginParseError::Truncated { need: 6, have: 5 }));
    assert_eq!(LoginRequest::parse(&b[..59]), Err(LoginParseError::Truncated { need: 60, have: 59 }));
    assert_eq!(
        LoginRequest::parse(&b[..b.len() - 1]),
        Err(LoginParseError::Truncated { need: b.len(), have: b.len() - 1 })
    );
    for cut in 0..b.len() {
        assert!(matches!(LoginRequest::parse(&b[..cut]), Err(LoginParseError::Truncated { .. })), "cut {cut}");
    }
    let b = enc_rep(&reply());
    assert_eq!(LoginReply::parse(&b[..67]), Err(LoginParseError::Truncated { need: 68, have: 67 }));
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
    b[4..6].copy_from_slice(&3u16.to_le_bytes());
    // A request of another version, of any length, is reported as such, not as malformed.
    assert_eq!(LoginRequest::parse(&b[..6]), Err(LoginParseError::BadVersion { found: 3 }));
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::BadVersion { found: 3 }));
    let mut b = enc_rep(&reply());
    b[4..6].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::BadVersion { found: 0 }));
    b[3] = 0;
    assert!(matches!(LoginReply::parse(&b), Err(LoginParseError::BadMagic(_))));
}

/// A version-1 peer (43-byte request, 41-byte reply) is told its version, not
/// misread as a truncated or malformed version-2 login.
#[test]
fn a_version_1_login_is_refused_as_such() {
    // The version-1 request of `request-fresh` before the layout changed.
    let mut v1 = Vec::new();
    v1.extend(b"TSHM");
    v1.extend(1u16.to_le_bytes());
    v1.extend([0, 8]);
    v1.extend([0u8; 32]);
    v1.extend(0u16.to_le_bytes());
    v1.push(0);
    v1.extend(b"client-1");
    let e = LoginRequest::parse(&v1).unwrap_err();
    assert_eq!(e, LoginParseError::BadVersion { found: 1 });
    assert_eq!(e.refusal(), LoginStatus::BadVersion);
    assert_eq!(LoginReply::parse(&v1), Err(LoginParseError::BadVersion { found: 1 }));
}

#[test]
fn unknown_transport_and_status() {
    let mut b = enc_req(&request());
    b[6] = 2;
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::UnknownTransport(2)));
    b[6] = 0xFF;
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::UnknownTransport(0xFF)));
    let mut b = enc_rep(&reply());
    b[6..8].copy_from_slice(&12u16.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::UnknownStatus(12)));
    b[6..8].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::UnknownStatus(u16::MAX)));
}

#[test]
fn bad_names() {
    let bad = |field, error| Some(LoginParseError::BadName { field, error });
    let client = REQUEST_FIXED_LEN..REQUEST_FIXED_LEN + 3;
    // Client name length 0.
    let mut b = enc_req(&request());
    b[REQ_CLIENT_LEN] = 0;
    b.drain(client.clone());
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::Empty));
    // Client name length 65 is refused before the bytes are even looked at.
    let mut b = enc_req(&request());
    b[REQ_CLIENT_LEN] = 65;
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::TooLong(65)));
    b[REQ_CLIENT_LEN] = 0xFF;
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::TooLong(255)));
    // A path-traversal attempt in the client name.
    let mut b = enc_req(&request());
    b[client.clone()].copy_from_slice(b"../");
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::LeadingDot));
    b[client].copy_from_slice(b"a/b");
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::Client, NameError::BadByte { pos: 1, byte: b'/' }));
    // Last server name.
    let mut b = enc_req(&request());
    b[REQUEST_FIXED_LEN + 3] = b'.';
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::LastServer, NameError::LeadingDot));
    let mut b = enc_req(&request());
    b[REQ_LAST_LEN] = 200;
    assert_eq!(LoginRequest::parse(&b).err(), bad(NameField::LastServer, NameError::TooLong(200)));
    // Last server name length 0 is "none": the bytes that were its name are then
    // the credential's, one too many.
    let mut b = enc_req(&request());
    b[REQ_LAST_LEN] = 0;
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::TrailingBytes(3)));
    // Reply server name.
    let mut b = enc_rep(&reply());
    b[REP_SERVER_LEN] = 0;
    assert_eq!(LoginReply::parse(&b[..b.len() - 3]).err(), bad(NameField::Server, NameError::Empty));
    let mut b = enc_rep(&reply());
    b[REP_SERVER_LEN] = 65;
    assert_eq!(LoginReply::parse(&b).err(), bad(NameField::Server, NameError::TooLong(65)));
    let mut b = enc_rep(&reply());
    b[REPLY_FIXED_LEN + 1] = 0;
    assert_eq!(LoginReply::parse(&b).err(), bad(NameField::Server, NameError::BadByte { pos: 1, byte: 0 }));
}

#[test]
fn bounded_fields() {
    let mut b = enc_req(&request());
    b[REQ_CRED_LEN..REQ_CRED_LEN + 2].copy_from_slice(&257u16.to_le_bytes());
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::CredentialTooLong(257)));
    let mut b = enc_rep(&reply());
    b[REP_TEXT_LEN..REP_TEXT_LEN + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::TextTooLong(65535)));
    let mut b = enc_rep(&reply());
    let last = b.len() - 1;
    b[last] = 0xFF;
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::TextNotUtf8 { valid_up_to: 1 }));
}

#[test]
fn inverted_range() {
    let mut b = enc_req(&request());
    b[24..32].copy_from_slice(&5u64.to_le_bytes());
    assert_eq!(LoginRequest::parse(&b), Err(LoginParseError::InvertedRange { first_unacked: 5, next: 4 }));
    let mut b = enc_rep(&reply());
    b[32..40].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::InvertedRange { first_unacked: 1, next: 0 }));
}

#[test]
fn seen_below_consumed_is_refused() {
    // Equal is fine (nothing held beyond what was consumed).
    let mut b = enc_req(&request());
    b[16..24].copy_from_slice(&0x0102u64.to_le_bytes());
    assert_eq!(LoginRequest::parse(&b).unwrap().numbers.seen, 0x0102);
    b[16..24].copy_from_slice(&0x0101u64.to_le_bytes());
    let e = LoginRequest::parse(&b).unwrap_err();
    assert_eq!(e, LoginParseError::SeenBelowConsumed { consumed: 0x0102, seen: 0x0101 });
    assert_eq!(e.refusal(), LoginStatus::Malformed);
    let mut b = enc_rep(&reply());
    b[16..24].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::SeenBelowConsumed { consumed: 7, seen: 0 }));
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    b[16..24].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
    assert_eq!(
        LoginReply::parse(&b),
        Err(LoginParseError::SeenBelowConsumed { consumed: u64::MAX, seen: u64::MAX - 1 })
    );
}

#[test]
fn reserved_bytes_must_be_zero() {
    for bit in 0..8 {
        let mut b = enc_req(&request());
        b[REQ_RESERVED] = 1 << bit;
        let e = LoginRequest::parse(&b).unwrap_err();
        assert_eq!(e, LoginParseError::Reserved(REQ_RESERVED));
        assert_eq!(e.refusal(), LoginStatus::Malformed);
    }
    for at in [52, 53, 54, 55, 67] {
        let mut b = enc_rep(&reply());
        b[at] = 0x80;
        assert_eq!(LoginReply::parse(&b), Err(LoginParseError::Reserved(at)), "offset {at}");
    }
    // The first non-zero one is named.
    let mut b = enc_rep(&reply());
    b[54] = 1;
    b[67] = 1;
    assert_eq!(LoginReply::parse(&b), Err(LoginParseError::Reserved(54)));
    // No other byte of the fixed parts is reserved: each non-zero value either parses
    // or is refused for what it means, never as reserved.
    for at in 0..REQUEST_FIXED_LEN {
        let mut b = enc_req(&request());
        b[at] ^= 0x10;
        if at != REQ_RESERVED {
            assert!(!matches!(LoginRequest::parse(&b), Err(LoginParseError::Reserved(_))), "request offset {at}");
        }
    }
    for at in 0..REPLY_FIXED_LEN {
        let mut b = enc_rep(&reply());
        b[at] ^= 0x10;
        if !(52..56).contains(&at) && at != 67 {
            assert!(!matches!(LoginReply::parse(&b), Err(LoginParseError::Reserved(_))), "reply offset {at}");
        }
    }
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
        (E::SeenBelowConsumed { consumed: 2, seen: 1 }, LoginStatus::Malformed),
        (E::Reserved(59), LoginStatus::Malformed),
    ];
    for (e, s) in cases {
        assert_eq!(e.refusal(), s, "{e}");
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(E::Reserved(59).to_string(), "reserved byte at offset 59 is not zero");
    assert_eq!(E::SeenBelowConsumed { consumed: 2, seen: 1 }.to_string(), "seen count 1 is below the consumed count 2");
}

#[test]
fn encoder_bounds() {
    let cred = [0u8; 257];
    let r = LoginRequest { credential: &cred, ..request() };
    let mut b = [0u8; 1024];
    assert_eq!(r.encode(&mut b), Err(EncodeError::FieldTooLong { field: "credential", len: 257, max: 256 }));
    let mut small = [0u8; 10];
    assert_eq!(request().encode(&mut small), Err(EncodeError::BufferTooSmall { need: 68, have: 10 }));
    assert_eq!(reply().encode(&mut small), Err(EncodeError::BufferTooSmall { need: 73, have: 10 }));
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
        (CloseReason::Storage(Fault::msg("disk")), CloseCode::STORAGE),
        (CloseReason::Corrupt(Fault::msg("ring")), CloseCode::CORRUPT),
        (CloseReason::LimitExceeded { seq: 3, len: 2000, max: 1000 }, CloseCode::LIMIT),
        (CloseReason::RemoteClosed, CloseCode::OTHER),
    ];
    for (reason, code) in cases {
        let mut t = TextBuf::new();
        let f = CloseFrame::for_reason(&reason, &mut t);
        assert_eq!(f.code, code);
        assert_eq!(f.text, reason.to_string());
        let remote = f.to_reason();
        assert_eq!(remote, CloseReason::RemoteRequested { code, text: reason.to_string() });
        let s = remote.to_string();
        assert!(s.contains(&code.to_string()) && s.ends_with(&reason.to_string()), "{s}");
    }
    let bare = CloseFrame { code: CloseCode::TIMEOUT, text: "" }.to_reason();
    assert_eq!(bare, CloseReason::RemoteRequested { code: CloseCode::TIMEOUT, text: String::new() });
    assert_eq!(bare.to_string(), "the peer closed the connection: timeout");
    // A code this side does not know (from a newer peer) is kept and shown as a number.
    let newer = CloseFrame { code: CloseCode(4242), text: "later" }.to_reason();
    assert_eq!(newer.to_string(), "the peer closed the connection: code 4242: later");
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
    let long = CloseReason::Storage(Fault::msg("z".repeat(1000)));
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

/// The fuzz targets' seeds (`fuzz/seeds/`) are logins of this version: a seed the
/// parser refuses would only teach the fuzzer the version check.
#[test]
fn fuzz_seeds_are_current() {
    use tcpshm_proto::{decode, Decoded};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap_or_else(|e| panic!("seed {p}: {e}"));
    for seed in ["request", "request-fresh"] {
        let b = read(&format!("login/{seed}"));
        let r = LoginRequest::parse(&b).unwrap_or_else(|e| panic!("seed login/{seed}: {e}"));
        assert_eq!(enc_req(&r), b);
    }
    for seed in ["reply-ok", "reply-rejected", "reply-limit-exceeded"] {
        let b = read(&format!("login/{seed}"));
        let r = LoginReply::parse(&b).unwrap_or_else(|e| panic!("seed login/{seed}: {e}"));
        assert_eq!(enc_rep(&r), b);
    }
    assert!(CloseFrame::parse(&read("login/close")).is_ok());
    // decode: max frame length (4 bytes), a split point (1 byte), whole frames whose
    // control payloads all parse.
    let b = read("decode/mixed-stream");
    let (mut s, mut logins) = (&b[5..], 0);
    while !s.is_empty() {
        let Ok(Decoded::Frame { frame, consumed }) = decode(s, u32::MAX) else { panic!("seed decode/mixed-stream") };
        let control = frame.control().expect("seed decode/mixed-stream: a control payload parses");
        logins += usize::from(matches!(
            control,
            Some(tcpshm_proto::Control::Login(_) | tcpshm_proto::Control::LoginReply(_))
        ));
        s = &s[consumed..];
    }
    assert_eq!(logins, 2);
    // handshake: a 67-byte head ending with the request's length, the request, the reply.
    for seed in ["resume", "server-lost-state", "limit-exceeded", "renamed"] {
        let b = read(&format!("handshake/{seed}"));
        let req_len = u16::from_le_bytes([b[65], b[66]]) as usize;
        let (req, rep) = b[67..].split_at(req_len);
        LoginRequest::parse(req).unwrap_or_else(|e| panic!("seed handshake/{seed}: request: {e}"));
        LoginReply::parse(rep).unwrap_or_else(|e| panic!("seed handshake/{seed}: reply: {e}"));
    }
}
