//! The session-level conformance cases: what survives restarts, what a lost state
//! or a renamed server does, limits — the same on every medium.

use super::{Flow, Harness, Kit, LoginFailure, Side};
use crate::{CloseReason, Limit, SendError, Transport};

/// Polls until `ab` and `ba` reach their targets (pushing on their senders as room
/// allows, popping and checking on their receivers).
fn exchange<H: Harness>(
    k: &mut Kit<'_, H>,
    a: &mut H::T,
    b: &mut H::T,
    ab: &mut Flow,
    ba: &mut Flow,
    (na, nb): (u64, u64),
    what: &str,
) -> Result<(), String> {
    k.run(a, b, false, what, |a, b| {
        ab.push_upto(a, na)?;
        ba.push_upto(b, nb)?;
        ab.pop_all(b)?;
        ba.pop_all(a)?;
        Ok((ab.done(na) && ba.done(nb), ab.pushed + ab.popped + ba.pushed + ba.popped))
    })
}

/// A session in which both sides have consumed some of the other's messages (so
/// both persisted records are non-zero): the start of the state-loss cases.
fn established<H: Harness>(k: &mut Kit<'_, H>) -> Result<(H::T, H::T), String> {
    let (mut a, mut b) = k.pair()?;
    let mut ab = Flow::new("a->b", k.flow_seed(), 200);
    let mut ba = Flow::new("b->a", k.flow_seed(), 200);
    exchange(k, &mut a, &mut b, &mut ab, &mut ba, (40, 30), "a first exchange")?;
    // Let the acks arrive, so each side's record of the other's consumption moves.
    for _ in 0..20 {
        k.round(&mut a, &mut b);
    }
    Ok((a, b))
}

/// A login refused with a sequence mismatch, after which neither end is (or
/// becomes, polled a while) connected, and nothing is delivered: a user who loops
/// `while !is_connected() { login }` must not stop there and push into a session
/// that does not exist.
fn expect_mismatch<H: Harness>(k: &mut Kit<'_, H>, a: &mut H::T, b: &mut H::T, what: &str) -> Result<(), String> {
    match k.login(a, b)? {
        Err(LoginFailure::SeqMismatch(_)) => {}
        Err(other) => return Err(format!("{what}: the login failed, but not with a sequence mismatch: {other}")),
        Ok(ok) => {
            return Err(format!(
                "{what}: the login succeeded ({ok:?}) although a side lost its state; resuming loses or repeats \
                 messages"
            ))
        }
    }
    expect_refused_ends(k, a, b, what)
}

/// After a refused login: neither end is connected, nor becomes so when polled,
/// and nothing arrives on either.
fn expect_refused_ends<H: Harness>(k: &mut Kit<'_, H>, a: &mut H::T, b: &mut H::T, what: &str) -> Result<(), String> {
    for round in 0..=5 {
        if a.is_connected() || b.is_connected() {
            return Err(format!(
                "{what}: the ends report connected after a refused login: client {} (reason {:?}), server {} \
                 (reason {:?})",
                a.is_connected(),
                a.close_reason(),
                b.is_connected(),
                b.close_reason()
            ));
        }
        if a.front().is_some() || b.front().is_some() {
            return Err(format!("{what}: a message arrived after a refused login"));
        }
        if round < 5 {
            k.round(a, b);
        }
    }
    Ok(())
}

/// Messages pushed by a client that has never logged in (no server exists yet), and
/// by the server before the client logs in, are delivered once the two log in; an
/// end is never connected before a login.
pub fn pushes_before_first_login<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 101);
    let mut a = k.open(Side::Client);
    if a.is_connected() || a.close_reason() != Some(&CloseReason::NotConnected) {
        return Err(format!(
            "a client end that never logged in reports connected {} with reason {:?} (expected not connected, \
             NotConnected)",
            a.is_connected(),
            a.close_reason()
        ));
    }
    let mut ab = Flow::new("a->b", k.flow_seed(), 300);
    let pushed = ab.push_upto(&mut a, 50)?;
    if pushed != 50 {
        return Err(format!("only {pushed} of 50 messages could be pushed before the first login"));
    }
    for _ in 0..5 {
        a.poll(k.now);
    }
    if a.is_connected() {
        return Err("a client end became connected without a login".into());
    }
    let mut b = k.open(Side::Server);
    let mut ba = Flow::new("b->a", k.flow_seed(), 300);
    ba.push_upto(&mut b, 20)?;
    if let Err(e) = k.login(&mut a, &mut b)? {
        return Err(format!("the first login failed: {e}"));
    }
    exchange(&mut k, &mut a, &mut b, &mut ab, &mut ba, (80, 40), "delivering messages pushed before the login")?;
    k.expect_quiet(&mut a, &mut b)
}

/// An end opened from an earlier session's state is not connected until it logs in
/// (whatever its medium), its pushes wait, and they are delivered after the login.
pub fn not_connected_until_login<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 102);
    let (mut a, mut b) = established(&mut k)?;
    drop((a, b));
    a = k.open(Side::Client);
    b = k.open(Side::Server);
    for (side, t) in [("client", &a), ("server", &b)] {
        if t.is_connected() || t.close_reason() != Some(&CloseReason::NotConnected) {
            return Err(format!(
                "the {side} end reopened from an earlier session reports connected {} with reason {:?} before any \
                 login (expected not connected, NotConnected)",
                t.is_connected(),
                t.close_reason()
            ));
        }
    }
    let next = a.counters().next_seq;
    let mut ab = Flow::new("a->b (after reopening)", k.flow_seed(), 300);
    ab.push_upto(&mut a, 10)?;
    for _ in 0..5 {
        k.round(&mut a, &mut b);
    }
    if b.front().is_some() || a.is_connected() || b.is_connected() {
        return Err("a message arrived, or an end connected, without a login".into());
    }
    if let Err(e) = k.login(&mut a, &mut b)? {
        return Err(format!("the login after reopening failed: {e}"));
    }
    let mut got = 0;
    k.run(&mut a, &mut b, false, "the messages pushed before the login", |_, b| {
        while let Some(m) = b.front() {
            if m.seq != next + got {
                return Err(format!("expected seq {}, got {}", next + got, m.seq));
            }
            b.pop();
            got += 1;
        }
        Ok((got == 10, got))
    })?;
    k.expect_quiet(&mut a, &mut b)
}

/// After a restart (the ends dropped and reopened from their state), each side's
/// counters say where the session is — how many messages it pushed and consumed —
/// before any login; the session resumes exactly there.
pub fn resume_point_after_restart<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 103);
    let (mut a, mut b) = k.pair()?;
    let mut ab = Flow::new("a->b", k.flow_seed(), 200);
    let mut ba = Flow::new("b->a", k.flow_seed(), 200);
    exchange(&mut k, &mut a, &mut b, &mut ab, &mut ba, (30, 20), "a first exchange")?;
    ab.push_upto(&mut a, 50)?;
    // Some of the 20 in flight arrive; b pops none of them.
    for _ in 0..10 {
        k.round(&mut a, &mut b);
    }
    drop((a, b));
    let mut a = k.open(Side::Client);
    let mut b = k.open(Side::Server);
    let (ca, cb) = (a.counters(), b.counters());
    if (ca.next_seq, ca.consumed) != (50, 20) || (cb.next_seq, cb.consumed) != (20, 30) {
        return Err(format!(
            "after a restart: client next_seq {} consumed {} (expected 50, 20), server next_seq {} consumed {} \
             (expected 20, 30)",
            ca.next_seq, ca.consumed, cb.next_seq, cb.consumed
        ));
    }
    if let Err(e) = k.login(&mut a, &mut b)? {
        return Err(format!("the login after a restart failed: {e}"));
    }
    exchange(&mut k, &mut a, &mut b, &mut ab, &mut ba, (60, 25), "resuming after a restart")?;
    k.expect_quiet(&mut a, &mut b)
}

/// The server loses its state (files) while the client's process stays up: the
/// client's next login is refused with a sequence mismatch, never resumed silently,
/// and neither end is connected afterwards (so for the other state-loss cases).
pub fn server_state_loss_live_client<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 104);
    let (mut a, b) = established(&mut k)?;
    drop(b);
    k.h.lose_state(Side::Server);
    let mut b = k.open(Side::Server);
    expect_mismatch(&mut k, &mut a, &mut b, "server state lost, client process kept")
}

/// The server loses its state and the client restarts too: the login is refused with
/// a sequence mismatch.
pub fn server_state_loss_restarted_client<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 105);
    let (a, b) = established(&mut k)?;
    drop((a, b));
    k.h.lose_state(Side::Server);
    let mut a = k.open(Side::Client);
    let mut b = k.open(Side::Server);
    expect_mismatch(&mut k, &mut a, &mut b, "server state lost, client restarted")
}

/// The client loses its state (and restarts): the login is refused with a sequence
/// mismatch, the server's session is not silently reset.
pub fn client_state_loss_restarted<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 106);
    let (a, b) = established(&mut k)?;
    drop((a, b));
    k.h.lose_state(Side::Client);
    let mut a = k.open(Side::Client);
    let mut b = k.open(Side::Server);
    expect_mismatch(&mut k, &mut a, &mut b, "client state lost, both restarted")
}

/// The client loses its state while the server's process stays up: refused with a
/// sequence mismatch.
pub fn client_state_loss_live_server<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 107);
    let (a, mut b) = established(&mut k)?;
    drop(a);
    k.h.lose_state(Side::Client);
    let mut a = k.open(Side::Client);
    expect_mismatch(&mut k, &mut a, &mut b, "client state lost, server process kept")
}

/// A server started under a new name: the client's login drops its old session and
/// says exactly how many queued messages went with it (those queued before the
/// rename and those pushed before this login); numbering restarts at 0; messages
/// pushed after the login are delivered, none of the old ones.
pub fn server_rename_drops_the_old_session<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 108);
    let (mut a, mut b) = established(&mut k)?;
    // Queued before the rename: the old server never pops them.
    let mut old = Flow::new("a->old server", k.flow_seed(), 200);
    old.push_upto(&mut a, 10)?;
    for _ in 0..5 {
        k.round(&mut a, &mut b);
    }
    drop(b);
    k.h.rename_server();
    // Pushed after the rename, before the login: still the old session's.
    old.push_upto(&mut a, 15)?;
    let mut b = k.open(Side::Server);
    match k.login(&mut a, &mut b)? {
        Ok(ok) if ok.reset_dropped == Some(15) => {}
        Ok(ok) => {
            return Err(format!(
                "the login to a renamed server reported {:?} dropped messages; 15 were queued for the old one",
                ok.reset_dropped
            ))
        }
        Err(e) => return Err(format!("the login to a renamed server failed: {e}")),
    }
    let c = a.counters();
    if (c.next_seq, c.consumed) != (0, 0) {
        return Err(format!(
            "after the reset the client's session is at next_seq {} consumed {}",
            c.next_seq, c.consumed
        ));
    }
    let mut ab = Flow::new("a->new server", k.flow_seed(), 200);
    let mut ba = Flow::new("new server->a", k.flow_seed(), 200);
    exchange(&mut k, &mut a, &mut b, &mut ab, &mut ba, (20, 20), "the fresh session with the renamed server")?;
    k.expect_quiet(&mut a, &mut b)
}

/// A message above the limit the peer told at login is refused at `alloc` with a
/// typed error naming the peer's limit, and nothing is sent.
pub fn over_peer_limit_refused_at_alloc<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 109);
    k.h.limit_server_message(1000);
    let (mut a, mut b) = k.pair()?;
    match a.alloc(1001) {
        Err(SendError::TooLarge { len: 1001, max: 1000, limit: Limit::Peer }) => {}
        other => {
            return Err(format!(
                "alloc(1001) towards a peer that accepts 1000 returned {other:?}, expected TooLarge naming the \
                 peer's limit"
            ))
        }
    }
    if a.max_payload() != 1000 {
        return Err(format!("max_payload() is {} towards a peer that accepts 1000", a.max_payload()));
    }
    let mut ab = Flow::new("a->b", k.flow_seed(), 1000);
    let mut ba = Flow::new("b->a", k.flow_seed(), 1000);
    exchange(&mut k, &mut a, &mut b, &mut ab, &mut ba, (20, 20), "messages within the limits")?;
    k.expect_quiet(&mut a, &mut b)
}

/// The peer's limits are part of the persisted session: after a restart, before any
/// login of the new process, a message over the peer's last known limit is refused at
/// alloc, naming the peer's limit (it could never be delivered, and a login would be
/// refused because of it).
pub fn peer_limit_survives_a_restart<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 111);
    k.h.limit_server_message(1000);
    let (a, b) = k.pair()?;
    drop((a, b));
    let mut a = k.open(Side::Client);
    match a.alloc(1001) {
        Err(SendError::TooLarge { len: 1001, max: 1000, limit: Limit::Peer }) => {}
        other => {
            return Err(format!(
                "after a restart, before any login, alloc(1001) towards a peer that accepted 1000 returned \
                 {other:?}, expected TooLarge naming the peer's limit"
            ))
        }
    }
    let mut b = k.open(Side::Server);
    if let Err(e) = k.login(&mut a, &mut b)? {
        return Err(format!("the login after a restart failed: {e}"));
    }
    let mut ab = Flow::new("a->b", k.flow_seed(), 1000);
    let mut ba = Flow::new("b->a", k.flow_seed(), 1000);
    exchange(&mut k, &mut a, &mut b, &mut ab, &mut ba, (10, 10), "messages within the limits after a restart")?;
    k.expect_quiet(&mut a, &mut b)
}

/// A message queued before the first login (the peer's limit unknown then) that is
/// above the limit the peer tells: the login is refused (it could never be
/// delivered), the message stays queued, neither end is connected, nothing is sent.
pub fn queued_over_peer_limit_refuses_login<H: Harness>(h: &mut H) -> Result<(), String> {
    let mut k = Kit::new(h, 110);
    k.h.limit_server_message(1000);
    let mut a = k.open(Side::Client);
    match a.alloc(2000) {
        Ok(Some(buf)) => buf.fill(7),
        other => return Err(format!("alloc(2000) before any login returned {other:?}")),
    }
    a.push(1).map_err(|e| format!("push: {e}"))?;
    let mut b = k.open(Side::Server);
    match k.login(&mut a, &mut b)? {
        Err(LoginFailure::LimitExceeded(_)) => {}
        Err(other) => return Err(format!("the login failed, but not for the limit: {other}")),
        Ok(_) => return Err("a login succeeded with a queued message above the peer's limit".into()),
    }
    if a.counters().next_seq != 1 || a.is_connected() || b.is_connected() {
        return Err(format!(
            "after the refusal: client next_seq {} (expected 1, the message kept), connected {} / {}",
            a.counters().next_seq,
            a.is_connected(),
            b.is_connected()
        ));
    }
    expect_refused_ends(&mut k, &mut a, &mut b, "a queued message over the peer's limit")
}
