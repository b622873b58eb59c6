//! Fuzzes the frame decoder on untrusted bytes, as a receive loop uses it.
//!
//! The first 4 input bytes are the `max_frame_len`, the rest the received stream;
//! the stream is also decoded again in two pieces split where byte 4 says. Checked:
//! no panic; `Need(n)` has n > 0; `consumed` is in `1..=len` and a multiple of 8; a
//! decoded frame re-encodes to exactly the bytes it was read from; a control
//! payload that parses re-encodes to the same bytes; and the split delivery yields
//! the same frames and the same final outcome as the whole buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpshm_proto::decode::MAX_CONTROL_FRAME_LEN;
use tcpshm_proto::encode::{encode_control, encode_frame};
use tcpshm_proto::{decode, Decoded, FrameError};

/// What decoding a stream gives: the frames (as their bytes) and how it ended.
#[derive(Debug, PartialEq)]
enum End {
    Need,
    Error(FrameError),
}

fn decode_stream(stream: &[u8], max: u32) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    let mut b = stream;
    loop {
        match decode(b, max) {
            Err(e) => return (frames, End::Error(e)),
            Ok(Decoded::Need(n)) => {
                assert!(n > 0, "Need(0)");
                return (frames, End::Need);
            }
            Ok(Decoded::Frame { frame, consumed }) => {
                assert!(consumed > 0 && consumed <= b.len() && consumed % 8 == 0, "consumed {consumed} of {}", b.len());
                let bytes = &b[..consumed];
                let mut again = vec![0u8; consumed];
                let n = encode_frame(&mut again, frame.msg_type(), frame.seq(), frame.ack(), frame.payload())
                    .expect("a decoded frame re-encodes");
                assert_eq!((n, &again[..]), (consumed, bytes), "re-encoding differs");
                if let Ok(Some(control)) = frame.control() {
                    let mut c = [0u8; MAX_CONTROL_FRAME_LEN];
                    let n = encode_control(&mut c, &control, frame.seq(), frame.ack())
                        .expect("a parsed control re-encodes");
                    assert_eq!(&c[..n], bytes, "control re-encoding differs");
                }
                frames.push(bytes.to_vec());
                b = &b[consumed..];
            }
        }
    }
}

/// The same stream arriving in two reads, decoded by a receiver that keeps the
/// unfinished tail between reads.
fn decode_split(stream: &[u8], at: usize, max: u32) -> (Vec<Vec<u8>>, End) {
    let (first, _) = stream.split_at(at);
    let (mut frames, end) = decode_stream(first, max);
    if let End::Error(_) = end {
        // An error on a prefix is final: the whole stream must report the same.
        return (frames, end);
    }
    let used: usize = frames.iter().map(Vec::len).sum();
    let (more, end) = decode_stream(&stream[used..], max);
    frames.extend(more);
    (frames, end)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let max = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let stream = &data[5..];
    let whole = decode_stream(stream, max);
    let at = data[4] as usize % (stream.len() + 1);
    assert_eq!(decode_split(stream, at, max), whole, "split at {at} differs");
});
