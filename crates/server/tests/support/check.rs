//! The parent's exactly-once checker: it replays what one side (a server or a client
//! process, over all its incarnations) reported, and fails at the first record that
//! shows a message lost, duplicated, reordered, or a push lost.
//!
//! Per side and direction it keeps bounds `lo..=hi` on the number of inbound messages
//! popped durably so far (the persistent consumed count):
//!
//! * `@D k` (written before `pop`): message `k` was given to the user, so at most
//!   `k + 1` can have been popped (`hi = k + 1`); and since the user only reaches `k`
//!   after the `pop` of `k - 1` returned, at least `k` were (`lo = k`).
//! * `@P k` (written after `pop` returned): at least `k + 1` were popped (`lo`).
//! * A kill between `@D k` and `@P k` leaves `lo = k`, `hi = k + 1`: whether that
//!   pop took effect is decided by the transport's commit point, which the next
//!   incarnation reads from the persistent state before doing anything and reports
//!   as `@R consumed pushed`. The check requires `lo <= consumed <= hi`, then every
//!   delivery of the new incarnation to be exactly `consumed`, `consumed + 1`, ...
//!
//! So a redelivered message fails (a `@D` below the next expected number, or a
//! consumed count below `lo`: a popped message's commit lost), and so does a lost one
//! (a `@D` above the next expected number, or a consumed count above `hi`: a message
//! counted as popped that the user never got). The one message in doubt at a kill is
//! resolved by the commit point itself, never by a tolerance.
//!
//! Outbound: `@Q n` says the pushes of messages `0..n` returned; the persistent send
//! state read at the next start must account for at least those (a push that returned
//! is never lost), and at most the stream's length. The content of every message is
//! a function of its number (checked byte for byte by the receiving child), so a
//! restarted pusher that resumed at the wrong number shows up as a gap or a duplicate
//! at the receiver.

use super::records::Rec;

/// The checker of one side (all its incarnations).
#[derive(Debug)]
pub struct SideCheck {
    name: &'static str,
    /// Messages the peer sends us in total.
    n_in: u64,
    /// Messages we send in total.
    n_out: u64,
    /// Bounds on the durable consumed count.
    lo: u64,
    hi: u64,
    /// The next inbound message expected in this incarnation (`None` before `@R`).
    next: Option<u64>,
    /// Pushes known to have returned (a lower bound on the durable pushed count).
    pushed_lo: u64,
    /// `@F` seen in the current incarnation.
    finished: bool,
    /// Bounds on the durable pushed count implied by the durable consumed count
    /// (the server pushes the replies to a request before popping it).
    replies: Option<fn(u64) -> (u64, u64)>,
    /// Incarnations begun.
    pub incarnations: u64,
    /// Incarnations whose `@R` was seen.
    pub resumed: u64,
    /// Restarts at which the last message's pop was in doubt (killed between its
    /// `@D` and `@P`) and the commit point said it was popped / not popped.
    pub doubtful_popped: u64,
    /// See `doubtful_popped`.
    pub doubtful_not_popped: u64,
    /// Deliveries seen (all incarnations; a message delivered, not popped, and
    /// delivered again after a restart counts twice).
    pub deliveries: u64,
    /// Connections and disconnections reported.
    pub connects: u64,
    /// See `connects`.
    pub disconnects: u64,
    /// Failed connect attempts reported.
    pub retries: u64,
}

impl SideCheck {
    /// A side that receives `n_in` messages and sends `n_out`.
    pub fn new(name: &'static str, n_in: u64, n_out: u64) -> SideCheck {
        SideCheck {
            name,
            n_in,
            n_out,
            lo: 0,
            hi: 0,
            next: None,
            pushed_lo: 0,
            finished: false,
            replies: None,
            incarnations: 0,
            resumed: 0,
            doubtful_popped: 0,
            doubtful_not_popped: 0,
            deliveries: 0,
            connects: 0,
            disconnects: 0,
            retries: 0,
        }
    }

    /// Requires, at each restart, the durable pushed count to lie in
    /// `bounds(consumed)`: a side that pushes its replies to a message before popping
    /// it must find them all pushed for every message popped (a reply lost while its
    /// request's pop survived is a LOST REPLY).
    pub fn with_replies(mut self, bounds: fn(u64) -> (u64, u64)) -> SideCheck {
        self.replies = Some(bounds);
        self
    }

    /// A new process of this side starts.
    pub fn begin(&mut self) {
        self.next = None;
        self.finished = false;
        self.incarnations += 1;
    }

    /// The next inbound message expected (the progress), if known.
    pub fn next_expected(&self) -> Option<u64> {
        self.next
    }

    /// Whether the current incarnation reported `@F`.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Applies one record of the current incarnation.
    pub fn apply(&mut self, rec: &Rec) -> Result<(), String> {
        let name = self.name;
        let inc = self.incarnations;
        match *rec {
            Rec::Resume { consumed, pushed } => {
                if self.next.is_some() {
                    return Err(format!("{name} #{inc}: a second @R"));
                }
                if consumed < self.lo {
                    return Err(format!(
                        "{name} #{inc}: DUPLICATE: restarted with consumed count {consumed}, but the previous \
                         incarnation had popped at least {} (pop of message {} returned): messages {consumed}..{} \
                         would be delivered again",
                        self.lo,
                        self.lo - 1,
                        self.lo
                    ));
                }
                if consumed > self.hi {
                    return Err(format!(
                        "{name} #{inc}: LOSS: restarted with consumed count {consumed}, but only messages 0..{} were \
                         ever given to the user: messages {}..{consumed} were never delivered",
                        self.hi, self.hi
                    ));
                }
                if self.lo != self.hi {
                    if consumed == self.hi {
                        self.doubtful_popped += 1;
                    } else {
                        self.doubtful_not_popped += 1;
                    }
                }
                if pushed < self.pushed_lo {
                    return Err(format!(
                        "{name} #{inc}: LOST PUSH: restarted with {pushed} messages pushed per the persistent state, \
                         but pushes of 0..{} had returned",
                        self.pushed_lo
                    ));
                }
                if pushed > self.n_out {
                    return Err(format!("{name} #{inc}: {pushed} pushed, more than the stream's {}", self.n_out));
                }
                if let Some(bounds) = self.replies {
                    let (min, max) = bounds(consumed);
                    if pushed < min {
                        return Err(format!(
                            "{name} #{inc}: LOST REPLY: restarted with {consumed} requests popped but only {pushed} \
                             replies pushed (at least {min} were pushed before those pops returned)"
                        ));
                    }
                    if pushed > max {
                        return Err(format!(
                            "{name} #{inc}: restarted with {pushed} pushed, more than the {max} possible after \
                             {consumed} requests popped"
                        ));
                    }
                }
                self.lo = consumed;
                self.hi = consumed;
                self.pushed_lo = pushed;
                self.next = Some(consumed);
                self.resumed += 1;
            }
            Rec::Delivered(k) => {
                let Some(next) = self.next else {
                    return Err(format!("{name} #{inc}: @D {k} before @R"));
                };
                if k != next {
                    let what = if k < next { "DUPLICATE" } else { "GAP" };
                    return Err(format!("{name} #{inc}: {what}: delivered message {k}, expected {next}"));
                }
                if k >= self.n_in {
                    return Err(format!("{name} #{inc}: delivered message {k} beyond the stream's {}", self.n_in));
                }
                self.next = Some(k + 1);
                self.hi = k + 1;
                self.lo = self.lo.max(k);
                self.deliveries += 1;
            }
            Rec::Popped(k) => {
                let Some(next) = self.next else {
                    return Err(format!("{name} #{inc}: @P {k} before @R"));
                };
                if k >= next {
                    return Err(format!(
                        "{name} #{inc}: popped {k}, but only up to {} was delivered",
                        next as i128 - 1
                    ));
                }
                self.lo = self.lo.max(k + 1);
            }
            Rec::Pushed(n) => {
                if self.next.is_none() {
                    return Err(format!("{name} #{inc}: @Q {n} before @R"));
                }
                if n < self.pushed_lo || n > self.n_out {
                    return Err(format!(
                        "{name} #{inc}: pushed count {n} out of order (had {}, stream {})",
                        self.pushed_lo, self.n_out
                    ));
                }
                self.pushed_lo = n;
            }
            Rec::Finished => {
                if self.next != Some(self.n_in) || self.lo != self.n_in || self.pushed_lo != self.n_out {
                    return Err(format!(
                        "{name} #{inc}: finished early: next {:?}, popped >= {}, pushed {} (of {} / {})",
                        self.next, self.lo, self.pushed_lo, self.n_in, self.n_out
                    ));
                }
                self.finished = true;
            }
            Rec::Connected(_) => self.connects += 1,
            Rec::Disconnected(_) => self.disconnects += 1,
            Rec::Retry(_) => self.retries += 1,
            Rec::Error(ref e) => return Err(format!("{name} #{inc} reported: {e}")),
            Rec::Login(_) => {}
        }
        Ok(())
    }

    /// At the end: the last incarnation received and pushed everything.
    pub fn finish(&self) -> Result<(), String> {
        if !self.finished {
            return Err(format!(
                "{}: did not finish: next {:?} of {}, pushed {} of {}",
                self.name, self.next, self.n_in, self.pushed_lo, self.n_out
            ));
        }
        Ok(())
    }
}
