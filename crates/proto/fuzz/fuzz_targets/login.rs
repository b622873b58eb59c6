//! Fuzzes the login request/reply and close parsers on untrusted payloads.
//!
//! Checked: no panic; whatever parses re-encodes to exactly the same bytes (one
//! encoding per value, so two readers can never disagree on a login); a request's
//! parse error maps to a refusal status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshm_proto::close::CloseFrame;
use tcpshm_proto::login::{LoginReply, LoginRequest, LoginStatus};

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; 1024];
    match LoginRequest::parse(data) {
        Ok(r) => {
            let n = r.encode(&mut out).expect("a parsed request re-encodes");
            assert_eq!(&out[..n], data);
        }
        Err(e) => assert_ne!(e.refusal(), LoginStatus::Ok),
    }
    if let Ok(r) = LoginReply::parse(data) {
        let n = r.encode(&mut out).expect("a parsed reply re-encodes");
        assert_eq!(&out[..n], data);
    }
    if let Ok(c) = CloseFrame::parse(data) {
        let n = c.encode(&mut out).expect("a parsed close re-encodes");
        assert_eq!(&out[..n], data);
    }
});
