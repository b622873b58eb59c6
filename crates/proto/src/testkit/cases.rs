//! The conformance cases. Each takes the harness, builds its own pair, and returns
//! `Err(what went wrong)` on the first violation.

pub use super::session_cases::*;
use super::{Flow, Harness, Kit};
use crate::frame::msg_type;
use crate::{CloseReason, Counters, SendError, Transport};

/// Messages per direction in the streaming cases.
const STREAM: u64 = 3_000;
/// Largest message the streaming cases generate (besides `largest_message`).
const STREAM_MAX_LEN: usize = 64 * 1024;
/// Bytes pushed while trying to fill a send queue before concluding it never fills.
const FILL_LIMIT_BYTES: u64 = 256 << 20;

fn max_len<T: Transport>(a: &T, b: &T) -> usize {
    a.max_payload().min(b.max_payload()).min(STREAM_MAX_LEN)
}

/// Pushes on `a` (`b` never pops) until `a`'s queue is full: alloc returns `None` in
/// three consecutive rounds. Returns the number of messages pushed.
fn fill<H: Harness>(k: &mut Kit<'_, H>, a: &mut H::T, b: &mut H::T, f: &mut Flow, frozen: bool) -> Result<u64, String> {
    let start = f.pushed;
    let mut full_rounds = 0;
    while full_rounds < 3 {
        if f.push_upto(a, f.pushed + 64)? == 0 {
            full_rounds += 1;
        } else {
            full_rounds = 0;
        }
        if f.pushed_bytes > FILL_LIMIT_BYTES {
            return Err(format!(
                "the send queue never filled: {} messages ({} bytes) were accepted while the peer popped none \
                 (alloc must return None when the queue is full)",
                f.pushed, f.pushed_bytes
            ));
        }
        if frozen {
            k.frozen_round(a, b);
        } else {
            k.round(a, b);
        }
    }
    Ok(f.pushed - start)
}

/// Many messages of random sizes (0 bytes to 64 KiB) both ways at once: each
/// arrives once, in order, with its type, seq and content.
pub fn stream_both_ways<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 1);
    let (mut a, mut b) = k.pair()?;
    let max = max_len(&a, &b);
    let mut ab = Flow::new("a->b", k.flow_seed(), max);
    let mut ba = Flow::new("b->a", k.flow_seed(), max);
    k.run(&mut a, &mut b, false, "streaming both ways", |a, b| {
        ab.push_upto(a, STREAM)?;
        ba.push_upto(b, STREAM)?;
        ab.pop_all(b)?;
        ba.pop_all(a)?;
        Ok((ab.done(STREAM) && ba.done(STREAM), ab.pushed + ab.popped + ba.pushed + ba.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// The largest message `max_payload()` allows goes through intact both ways;
/// `max_payload() + 1` (and `usize::MAX`) is refused with `TooLarge`; an empty
/// message goes through.
pub fn largest_message<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 2);
    let (mut a, mut b) = k.pair()?;
    for dir in 0..2 {
        let (from, to) = if dir == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
        let max = from.max_payload();
        match from.alloc(max + 1) {
            Err(SendError::TooLarge { len, max: m, .. }) if len == max + 1 && m == max => {}
            other => return Err(format!("alloc(max_payload + 1 = {}) returned {other:?}, expected TooLarge", max + 1)),
        }
        match from.alloc(usize::MAX) {
            Err(SendError::TooLarge { .. }) => {}
            other => return Err(format!("alloc(usize::MAX) returned {other:?}, expected TooLarge")),
        }
        let pattern = |i: usize| (i.wrapping_mul(31) ^ (i >> 8) ^ dir) as u8;
        let mut pushed = 0;
        for (len, ty) in [(max, 0xABCD), (0, 7)] {
            let mut rounds = 0;
            loop {
                match from.alloc(len) {
                    Ok(Some(buf)) => {
                        if buf.len() != len {
                            return Err(format!("alloc({len}) returned {} bytes", buf.len()));
                        }
                        buf.iter_mut().enumerate().for_each(|(i, x)| *x = pattern(i));
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("alloc({len}) (max_payload) failed: {e}")),
                }
                rounds += 1;
                if rounds > k.h.max_rounds() {
                    return Err(format!("alloc({len}) never found room in an empty queue"));
                }
                k.round(from, to);
            }
            from.push(ty).map_err(|e| format!("push of a {len}-byte message failed: {e}"))?;
            pushed += 1;
        }
        let mut got = 0;
        let mut rounds = 0;
        while got < pushed {
            if let Some(m) = to.front() {
                let (want_len, want_ty) = if got == 0 { (max, 0xABCD) } else { (0, 7) };
                if m.msg_type != want_ty || m.payload.len() != want_len {
                    return Err(format!(
                        "message {got}: type {} with {} bytes, expected type {want_ty} with {want_len}",
                        m.msg_type,
                        m.payload.len()
                    ));
                }
                if let Some(i) = m.payload.iter().enumerate().position(|(i, &x)| x != pattern(i)) {
                    return Err(format!("the {want_len}-byte message differs at byte {i}"));
                }
                to.pop();
                got += 1;
                continue;
            }
            rounds += 1;
            if rounds > k.h.max_rounds() {
                return Err(format!("only {got} of {pushed} messages (the largest first) arrived"));
            }
            k.round(from, to);
        }
    }
    k.expect_quiet(&mut a, &mut b)
}

/// `push` and `push_more` with a reserved (control) type are refused with
/// `ReservedType` and send nothing; user types at both ends of the range work.
pub fn reserved_type_refused<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 3);
    let (mut a, mut b) = k.pair()?;
    for t in [msg_type::FIRST_CONTROL, msg_type::LOGIN, msg_type::ACK, msg_type::CLOSE, 0xFFFF] {
        for more in [false, true] {
            match a.alloc(3) {
                Ok(Some(buf)) => buf.copy_from_slice(b"bad"),
                other => return Err(format!("alloc(3) on an empty queue returned {other:?}")),
            }
            let r = if more { a.push_more(t) } else { a.push(t) };
            if r != Err(SendError::ReservedType(t)) {
                return Err(format!(
                    "{}({t:#06x}) returned {r:?}, expected ReservedType",
                    if more { "push_more" } else { "push" }
                ));
            }
        }
    }
    for (t, body) in [(msg_type::MAX_USER, b"max"), (0, b"min")] {
        match a.alloc(3) {
            Ok(Some(buf)) => buf.copy_from_slice(body),
            other => return Err(format!("alloc(3) returned {other:?}")),
        }
        a.push(t).map_err(|e| format!("push({t:#06x}), a user type, failed: {e}"))?;
    }
    let mut got = Vec::new();
    k.run(&mut a, &mut b, false, "delivering two user messages", |_, b| {
        while let Some(m) = b.front() {
            got.push((m.msg_type, m.payload.to_vec()));
            b.pop();
        }
        Ok((got.len() >= 2, got.len() as u64))
    })?;
    let want = vec![(msg_type::MAX_USER, b"max".to_vec()), (0, b"min".to_vec())];
    if got != want {
        return Err(format!("received {got:?}, expected only {want:?} (a refused push leaked?)"));
    }
    if a.counters().pushed != 2 {
        return Err(format!("counters.pushed is {} after 2 accepted pushes", a.counters().pushed));
    }
    k.expect_quiet(&mut a, &mut b)
}

/// `push` or `push_more` without a successful `alloc` is `NothingAllocated`.
pub fn push_without_alloc<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 4);
    let (mut a, mut b) = k.pair()?;
    for (what, r) in [("push", a.push(1)), ("push_more", a.push_more(1))] {
        if r != Err(SendError::NothingAllocated) {
            return Err(format!("{what} before any alloc returned {r:?}, expected NothingAllocated"));
        }
    }
    let mut f = Flow::new("a->b", k.flow_seed(), 64);
    f.push_upto(&mut a, 1)?;
    let r = a.push(1);
    if r != Err(SendError::NothingAllocated) {
        return Err(format!("a second push after one alloc returned {r:?}, expected NothingAllocated"));
    }
    k.run(&mut a, &mut b, false, "delivering one message", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(1), f.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// `front` returns the same message until `pop`; `pop` with nothing received does
/// nothing (it does not consume a later message).
pub fn front_stable_until_pop<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 5);
    let (mut a, mut b) = k.pair()?;
    b.pop();
    a.pop();
    if b.counters().popped != 0 || a.counters().popped != 0 {
        return Err("pop with nothing received counted a pop".into());
    }
    let mut f = Flow::new("a->b", k.flow_seed(), max_len(&a, &b).min(300));
    f.push_upto(&mut a, 3)?;
    k.run(&mut a, &mut b, false, "the first message to arrive", |_, b| Ok((b.front().is_some(), 0)))?;
    for _ in 0..3 {
        let first = b.front().map(|m| (m.seq, m.msg_type, m.payload.to_vec()));
        k.round(&mut a, &mut b);
        let again = b.front().map(|m| (m.seq, m.msg_type, m.payload.to_vec()));
        if first != again {
            return Err(format!("front changed without a pop: {first:?} then {again:?}"));
        }
        if let Some(m) = b.front() {
            f.check(&m)?;
            b.pop();
            f.popped += 1;
        }
        k.run(&mut a, &mut b, false, "the next message", |_, b| Ok((f.popped == 3 || b.front().is_some(), 0)))?;
    }
    if f.popped != 3 {
        return Err(format!("popped {} of 3 messages", f.popped));
    }
    b.pop();
    f.push_upto(&mut a, 4)?;
    k.run(&mut a, &mut b, false, "a message after an empty pop", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(4), f.popped))
    })?;
    if b.counters().popped != 4 {
        return Err(format!("counters.popped is {} after 4 pops (and 2 empty ones)", b.counters().popped));
    }
    k.expect_quiet(&mut a, &mut b)
}

/// Messages queued with `push_more` leave at the next `poll` (or `push`), in order.
pub fn push_more_batches<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 6);
    let (mut a, mut b) = k.pair()?;
    let mut f = Flow::new("a->b", k.flow_seed(), max_len(&a, &b).min(500));
    for _ in 0..10 {
        if !f.push_one(&mut a, true)? {
            return Err("alloc found no room for a 10-message batch in an empty queue".into());
        }
    }
    k.run(&mut a, &mut b, false, "a push_more batch to leave at poll", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(10), f.popped))
    })?;
    for i in 0..6 {
        if !f.push_one(&mut a, i < 5)? {
            return Err("alloc found no room for a 6-message batch in an empty queue".into());
        }
    }
    k.run(&mut a, &mut b, false, "a push_more batch ended by push", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(16), f.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// An all-or-nothing batch: messages staged with `push_more` and dropped with
/// `discard_staged` never arrive and give their seqs back (the next messages follow
/// without a gap) — a batch whose last message finds the queue full, a batch
/// dropped while disconnected; a batch already published by `poll` cannot be taken
/// back; room freed by a discard is used again.
pub fn discarded_batches_never_arrive<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 112);
    let (mut a, mut b) = k.pair()?;
    let mut f = Flow::new("a->b", k.flow_seed(), max_len(&a, &b).min(700));
    let discard = |f: &mut Flow, a: &mut H::T, staged: u64, what: &str| -> Result<(), String> {
        let n = a.discard_staged();
        if n != staged {
            return Err(format!("discard_staged {what} dropped {n} messages, {staged} were staged"));
        }
        f.forget(staged);
        if a.counters().next_seq != f.pushed {
            return Err(format!(
                "after discarding {staged} staged messages {what} the next seq is {}, expected {} (seqs must \
                 be given back)",
                a.counters().next_seq,
                f.pushed
            ));
        }
        Ok(())
    };
    // One published, three staged and an allocated one: the four go.
    f.push_one(&mut a, false)?;
    for _ in 0..3 {
        if !f.push_one(&mut a, true)? {
            return Err("no room for a 3-message batch in an empty queue".into());
        }
    }
    if !matches!(a.alloc(10), Ok(Some(_))) {
        return Err("alloc(10) found no room in an almost empty queue".into());
    }
    discard(&mut f, &mut a, 3, "after three push_more")?;
    if a.discard_staged() != 0 {
        return Err("a second discard_staged found messages to drop".into());
    }
    if a.push(1).is_ok() {
        return Err("push after discard_staged succeeded: the allocated message should be gone too".into());
    }
    f.push_upto(&mut a, f.pushed + 2)?;
    k.run(&mut a, &mut b, false, "the messages around a discarded batch", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(3), f.popped))
    })?;

    // Staged until the queue is full (nothing is sent while no one polls), all
    // dropped; the same room then takes the same batch, and it arrives whole.
    let start = f.pushed;
    while f.push_one(&mut a, true)? {
        if f.pushed - start > 100_000 {
            return Err("100000 staged messages and the queue is not full".into());
        }
    }
    let batch = f.pushed - start;
    if batch < 2 {
        return Err(format!("only {batch} message(s) staged before the queue was full"));
    }
    discard(&mut f, &mut a, batch, "when the queue was full")?;
    for i in 0..batch {
        if !f.push_one(&mut a, true)? {
            return Err(format!("the room of {batch} discarded messages took only {i} of them again"));
        }
    }
    k.run(&mut a, &mut b, false, "a batch staged in the room of a discarded one", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(start + batch), f.popped))
    })?;

    // A poll publishes what is staged: nothing left to take back.
    for _ in 0..2 {
        f.push_one(&mut a, true)?;
    }
    k.round(&mut a, &mut b);
    if a.discard_staged() != 0 {
        return Err("discard_staged dropped messages that a poll had published".into());
    }

    // While disconnected too.
    k.cut(&mut a, &mut b);
    for _ in 0..3 {
        k.round(&mut a, &mut b);
    }
    for _ in 0..2 {
        f.push_one(&mut a, true)?;
    }
    discard(&mut f, &mut a, 2, "while disconnected")?;
    f.push_upto(&mut a, f.pushed + 1)?;
    k.reconnect(&mut a, &mut b)?;
    let n = f.pushed;
    k.run(&mut a, &mut b, false, "the messages around a batch discarded while disconnected", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(n), f.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// A peer that never pops: the sender's queue fills and `alloc` returns `None`;
/// both stay connected for several timeouts (backpressure is not a disconnect, and
/// a full receiver does not take its peer for dead); nothing is lost; once the peer
/// pops, sending resumes.
pub fn backpressure<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 7);
    let (mut a, mut b) = k.pair()?;
    let len = max_len(&a, &b).min(1024);
    let mut f = Flow::new("a->b", k.flow_seed(), len);
    let filled = fill(&mut k, &mut a, &mut b, &mut f, false)?;
    let step = (k.h.heartbeat_interval() / 2).max(1);
    let until = k.now + 3 * k.h.timeout();
    while k.now < until {
        k.now += step;
        a.poll(k.now);
        b.poll(k.now);
        k.h.idle();
        if !a.is_connected() || !b.is_connected() {
            return Err(format!(
                "a connection under backpressure (receiver not popping) was closed: a {:?}, b {:?}",
                a.close_reason(),
                b.close_reason()
            ));
        }
        match a.alloc(len) {
            Ok(None) => {}
            other => {
                return Err(format!(
                    "alloc returned {other:?} on a full queue whose peer popped nothing (room appeared from nowhere)"
                ))
            }
        }
    }
    k.run(&mut a, &mut b, false, "draining the full queue", |_, b| {
        f.pop_all(b)?;
        Ok((f.popped == filled, f.popped))
    })?;
    let target = f.pushed + filled.max(10);
    k.run(&mut a, &mut b, false, "sending after the peer popped", |a, b| {
        f.push_upto(a, target)?;
        f.pop_all(b)?;
        Ok((f.done(target), f.pushed + f.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// A one-way stream with a frozen clock (so no heartbeat is ever due) of several
/// times the sender's queue capacity completes: the receiver sends standalone acks
/// as it pops, not only with heartbeats.
pub fn one_way_stream_acks<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 8);
    let (mut a, mut b) = k.pair()?;
    let mut f = Flow::new("a->b", k.flow_seed(), max_len(&a, &b).min(1024));
    let filled = fill(&mut k, &mut a, &mut b, &mut f, true)?;
    let target = f.pushed + 4 * filled + 256;
    k.run(&mut a, &mut b, true, "a one-way stream with a frozen clock (acks must not wait for heartbeats)", |a, b| {
        f.push_upto(a, target)?;
        f.pop_all(b)?;
        Ok((f.done(target), f.pushed + f.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// Messages pushed on both sides while disconnected are delivered exactly once, in
/// order, after the reconnect.
pub fn push_while_disconnected<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 9);
    let (mut a, mut b) = k.pair()?;
    let mut ab = Flow::new("a->b", k.flow_seed(), max_len(&a, &b).min(2000));
    let mut ba = Flow::new("b->a", k.flow_seed(), max_len(&a, &b).min(2000));
    k.run(&mut a, &mut b, false, "a first exchange", |a, b| {
        ab.push_upto(a, 20)?;
        ba.push_upto(b, 20)?;
        ab.pop_all(b)?;
        ba.pop_all(a)?;
        Ok((ab.done(20) && ba.done(20), ab.popped + ba.popped))
    })?;
    k.cut(&mut a, &mut b);
    for _ in 0..5 {
        k.round(&mut a, &mut b);
    }
    // Up to 50 and 30 messages, as many as the queues hold (at least one each).
    if ab.push_upto(&mut a, 70)? == 0 || ba.push_upto(&mut b, 50)? == 0 {
        return Err("alloc refused a message while disconnected although the queue was empty".into());
    }
    let (na, nb) = (ab.pushed, ba.pushed);
    for _ in 0..5 {
        k.round(&mut a, &mut b);
        ab.pop_all(&mut b)?;
        ba.pop_all(&mut a)?;
    }
    k.reconnect(&mut a, &mut b)?;
    k.run(&mut a, &mut b, false, "delivering what was pushed while disconnected", |a, b| {
        ab.pop_all(b)?;
        ba.pop_all(a)?;
        Ok((ab.done(na) && ba.done(nb), ab.popped + ba.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// Streams both ways are cut again and again at random moments — with messages in
/// flight, received but not popped, and pushed while down — and reconnected: every
/// message is popped exactly once, in order.
pub fn cut_mid_stream<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 10);
    let (mut a, mut b) = k.pair()?;
    let max = max_len(&a, &b).min(8192);
    let mut ab = Flow::new("a->b", k.flow_seed(), max);
    let mut ba = Flow::new("b->a", k.flow_seed(), max);
    let per_cut = STREAM / 6;
    for cut in 1..=6u64 {
        let rounds = k.rng.range(1, 60);
        for _ in 0..rounds {
            // Pop only some of what arrived, so some messages are received but not popped.
            let (pa, pb) = (k.rng.range(0, 3), k.rng.range(0, 3));
            ab.push_upto(&mut a, per_cut * cut)?;
            ba.push_upto(&mut b, per_cut * cut)?;
            ab.pop_upto(&mut b, pb)?;
            ba.pop_upto(&mut a, pa)?;
            k.round(&mut a, &mut b);
        }
        k.cut(&mut a, &mut b);
        if k.rng.one_in(2) {
            ab.pop_upto(&mut b, k.rng.range(0, 5))?;
            ba.pop_upto(&mut a, k.rng.range(0, 5))?;
        }
        ab.push_upto(&mut a, ab.pushed + k.rng.range(0, 5))?;
        ba.push_upto(&mut b, ba.pushed + k.rng.range(0, 5))?;
        for _ in 0..k.rng.range(0, 3) {
            k.round(&mut a, &mut b);
        }
        k.reconnect(&mut a, &mut b)?;
    }
    let (ta, tb) = (ab.pushed.max(STREAM), ba.pushed.max(STREAM));
    k.run(&mut a, &mut b, false, "finishing the streams after the cuts", |a, b| {
        ab.push_upto(a, ta)?;
        ba.push_upto(b, tb)?;
        ab.pop_all(b)?;
        ba.pop_all(a)?;
        Ok((ab.done(ta) && ba.done(tb), ab.pushed + ab.popped + ba.pushed + ba.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

fn check_remote_closed(side: &str, r: Option<&CloseReason>) -> Result<(), String> {
    match r {
        Some(CloseReason::RemoteRequested { .. } | CloseReason::RemoteClosed) => Ok(()),
        other => {
            Err(format!("{side}, whose peer closed on request, reports {other:?}, expected a remote-closed reason"))
        }
    }
}

/// `close(Requested)` on one side: that side reports `Requested` at once and stays
/// closed through polls; the other side reports a remote-closed reason. Messages
/// pushed before and after the close are delivered after a reconnect. Then the same
/// the other way round.
pub fn close_requested<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 11);
    let (mut a, mut b) = k.pair()?;
    let mut ab = Flow::new("a->b", k.flow_seed(), max_len(&a, &b).min(1000));
    let mut ba = Flow::new("b->a", k.flow_seed(), max_len(&a, &b).min(1000));
    for (round, closer) in [(1u64, 'a'), (2, 'b')] {
        ab.push_upto(&mut a, 40 * round - 10)?;
        ba.push_upto(&mut b, 40 * round - 10)?;
        k.round(&mut a, &mut b);
        let (closing, other) = if closer == 'a' { (&mut a, &mut b) } else { (&mut b, &mut a) };
        closing.close(CloseReason::Requested);
        if closing.is_connected() || closing.close_reason() != Some(&CloseReason::Requested) {
            return Err(format!(
                "{closer} after close(Requested): connected {}, reason {:?}",
                closing.is_connected(),
                closing.close_reason()
            ));
        }
        let mut rounds = 0;
        while other.is_connected() {
            rounds += 1;
            if rounds > k.h.max_rounds() {
                return Err(format!("the peer of {closer} never noticed the close"));
            }
            k.round(closing, other);
            if closing.poll(k.now) || closing.is_connected() || closing.close_reason() != Some(&CloseReason::Requested)
            {
                return Err(format!("{closer} reconnected or changed its reason by itself after close"));
            }
        }
        check_remote_closed(if closer == 'a' { "b" } else { "a" }, other.close_reason())?;
        ab.push_upto(&mut a, 40 * round)?;
        ba.push_upto(&mut b, 40 * round)?;
        k.reconnect(&mut a, &mut b)?;
        k.run(&mut a, &mut b, false, "delivering across a close and reconnect", |a, b| {
            ab.push_upto(a, 40 * round)?;
            ba.push_upto(b, 40 * round)?;
            ab.pop_all(b)?;
            ba.pop_all(a)?;
            Ok((ab.done(40 * round) && ba.done(40 * round), ab.popped + ba.popped))
        })?;
    }
    k.expect_quiet(&mut a, &mut b)
}

/// A peer that stops polling (silent): the other side stays connected while the
/// silence is shorter than the timeout and closes with `Timeout` (silent for at
/// least the timeout) once the fake clock passes it. A reconnect then works.
pub fn silent_peer_times_out<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 12);
    let (mut a, mut b) = k.pair()?;
    let timeout = k.h.timeout();
    for _ in 0..5 {
        k.round(&mut a, &mut b);
    }
    // From now on `b` is not polled: it sends nothing more. `a` reads (in as many
    // polls as it needs) what `b` sent before.
    let t0 = k.now;
    for _ in 0..k.h.max_rounds() {
        a.poll(t0 + timeout / 2);
        if !a.is_connected() {
            return Err(format!("closed after half the timeout of silence: {:?}", a.close_reason()));
        }
    }
    let late = t0 + 3 * timeout;
    a.poll(late);
    match a.close_reason() {
        Some(CloseReason::Timeout { silent_ns }) if *silent_ns >= timeout && !a.is_connected() => {}
        other => {
            return Err(format!(
                "after 3 timeouts of silence: connected {}, reason {other:?}, expected Timeout (silent >= {timeout})",
                a.is_connected()
            ))
        }
    }
    k.now = late;
    let mut f = Flow::new("a->b", k.flow_seed(), 100);
    f.push_upto(&mut a, 5)?;
    k.reconnect(&mut a, &mut b)?;
    k.run(&mut a, &mut b, false, "delivering after a timeout and reconnect", |_, b| {
        f.pop_all(b)?;
        Ok((f.done(5), f.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// Two idle ends polled regularly for four timeouts stay connected (heartbeats), and
/// still exchange messages afterwards.
pub fn heartbeats_keep_idle_alive<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 13);
    let (mut a, mut b) = k.pair()?;
    let step = (k.h.heartbeat_interval() / 2).max(1);
    let until = k.now + 4 * k.h.timeout();
    while k.now < until {
        k.now += step;
        a.poll(k.now);
        b.poll(k.now);
        k.h.idle();
        if !a.is_connected() || !b.is_connected() {
            return Err(format!(
                "an idle pair polled every half heartbeat interval disconnected: a {:?}, b {:?}",
                a.close_reason(),
                b.close_reason()
            ));
        }
    }
    let mut ab = Flow::new("a->b", k.flow_seed(), 100);
    let mut ba = Flow::new("b->a", k.flow_seed(), 100);
    k.run(&mut a, &mut b, false, "an exchange after idling", |a, b| {
        ab.push_upto(a, 10)?;
        ba.push_upto(b, 10)?;
        ab.pop_all(b)?;
        ba.pop_all(a)?;
        Ok((ab.done(10) && ba.done(10), ab.popped + ba.popped))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

fn check_invariants(side: &str, c: &Counters) -> Result<(), String> {
    // A fresh session in one process: the session's numbers are this process's.
    let ok = c.acked <= c.pushed
        && c.sent <= c.pushed
        && c.popped <= c.received
        && c.next_seq == c.pushed
        && c.consumed == c.popped
        && c.peer_consumed == c.acked;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{side} counters are inconsistent ({c}): expected acked <= pushed, sent <= pushed, popped <= received, \
             next_seq = pushed, consumed = popped, peer_consumed = acked"
        ))
    }
}

/// The counted fields, for comparisons that ignore heartbeats (their number depends
/// on timing).
fn counted(c: &Counters) -> [u64; 9] {
    [c.pushed, c.sent, c.resent, c.acked, c.received, c.popped, c.next_seq, c.consumed, c.peer_consumed]
}

/// Runs `ab` and `ba` up to `na` and `nb` messages, checking the counters against
/// what was done at every round, until everything is popped and acknowledged.
fn exchange_counted<H: Harness>(
    k: &mut Kit<'_, H>,
    a: &mut H::T,
    b: &mut H::T,
    ab: &mut Flow,
    ba: &mut Flow,
    (na, nb): (u64, u64),
) -> Result<(), String> {
    k.run(a, b, false, "an exchange, then the last acks", |a, b| {
        ab.push_upto(a, na)?;
        ba.push_upto(b, nb)?;
        ab.pop_all(b)?;
        ba.pop_all(a)?;
        let (ca, cb) = (a.counters(), b.counters());
        check_invariants("a", &ca)?;
        check_invariants("b", &cb)?;
        if ca.pushed != ab.pushed || cb.pushed != ba.pushed || ca.popped != ba.popped || cb.popped != ab.popped {
            return Err(format!(
                "counters disagree with what was done: a {ca} (pushed {}, popped {}), b {cb} (pushed {}, popped {})",
                ab.pushed, ba.popped, ba.pushed, ab.popped
            ));
        }
        let done = ab.done(na) && ba.done(nb) && ca.acked == na && cb.acked == nb;
        Ok((done, ab.pushed + ab.popped + ba.pushed + ba.popped + ca.acked + cb.acked))
    })
}

/// Counters start at zero, stay consistent at every round, and end exact: pushed,
/// sent (first time), acked, received, popped, queue depth; across a cut too.
pub fn counters_consistent<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 14);
    let (mut a, mut b) = k.pair()?;
    for (side, t) in [("a", &a), ("b", &b)] {
        if counted(&t.counters()) != [0; 9] {
            return Err(format!("{side} of a fresh pair has counters {}", t.counters()));
        }
    }
    let mut ab = Flow::new("a->b", k.flow_seed(), max_len(&a, &b).min(500));
    let mut ba = Flow::new("b->a", k.flow_seed(), max_len(&a, &b).min(500));
    exchange_counted(&mut k, &mut a, &mut b, &mut ab, &mut ba, (300, 200))?;
    let (ca, cb) = (a.counters(), b.counters());
    // pushed, sent, resent, acked, received, popped, next_seq, consumed, peer_consumed
    let want_a = [300, 300, 0, 300, 200, 200, 300, 200, 300];
    let want_b = [200, 200, 0, 200, 300, 300, 200, 300, 200];
    if counted(&ca) != want_a || counted(&cb) != want_b {
        return Err(format!(
            "after a clean exchange: a {ca} (expected {want_a:?}), b {cb} (expected {want_b:?}) in the order \
             pushed, sent, resent, acked, received, popped, next_seq, consumed, peer_consumed"
        ));
    }
    k.cut(&mut a, &mut b);
    ab.push_upto(&mut a, 350)?;
    for _ in 0..3 {
        k.round(&mut a, &mut b);
    }
    let ca = a.counters();
    if ca.pushed != ab.pushed || ca.queued() != ab.pushed - 300 || ca.acked != 300 {
        return Err(format!(
            "after {} pushes while disconnected: a {ca} (expected pushed {}, acked 300, queued {0})",
            ab.pushed - 300,
            ab.pushed
        ));
    }
    k.reconnect(&mut a, &mut b)?;
    exchange_counted(&mut k, &mut a, &mut b, &mut ab, &mut ba, (400, 250))?;
    let (ca, cb) = (a.counters(), b.counters());
    if ca.pushed != 400 || ca.sent != 400 || ca.acked != 400 || ca.queued() != 0 || cb.popped != 400 {
        return Err(format!(
            "after a cut and reconnect: a {ca} (expected pushed, sent (first time) and acked 400, queue 0), b {cb}"
        ));
    }
    k.expect_quiet(&mut a, &mut b)
}
