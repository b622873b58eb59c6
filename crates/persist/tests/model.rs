//! Property test: random sequences of operations on a store, mirrored on a simple
//! model (a `VecDeque` of messages plus counters); after every operation the store
//! and the model must agree, including across reopen, migration and epoch reset.

mod common;

use common::{name, TempDir};
use proptest::prelude::*;
use std::collections::VecDeque;
use tcpshm_persist::{Durability, OpenError, OpenOutcome, Options, SessionWord, Store, StoreError};

const CAPS: [usize; 2] = [2048, 8192];

#[derive(Debug, Clone)]
enum Op {
    /// alloc + push.
    Push {
        len: usize,
        msg_type: u16,
        fill: u8,
    },
    /// alloc + push_more (left staged until a publish or push).
    Stage {
        len: usize,
        fill: u8,
    },
    Publish,
    /// Drop what is staged (an aborted batch).
    Discard,
    /// alloc never pushed.
    AllocOnly {
        len: usize,
    },
    /// ack to acked + (depth * num / 8) (num 9 = one beyond next_seq).
    Ack {
        num: u64,
    },
    Consume {
        n: u64,
    },
    SendCursor {
        num: u64,
    },
    /// Read the queue through send runs from a cursor part-way in.
    Runs {
        num: u64,
        max_bytes: usize,
    },
    Reopen,
    /// Migrate to the other capacity.
    Migrate,
    Reset,
    /// ack_beyond(next_seq + extra).
    AckBeyond {
        extra: u64,
    },
    Session {
        word: usize,
        value: u64,
    },
    /// `Sync { every }` (`every` 0..4) or `Process` (`None`).
    Durability {
        every: Option<u32>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![4 => 0usize..64, 2 => 64usize..400, 1 => 400usize..1200];
    prop_oneof![
        30 => (len.clone(), 0u16..0xFF00, any::<u8>())
            .prop_map(|(len, msg_type, fill)| Op::Push { len, msg_type, fill }),
        8 => (len.clone(), any::<u8>()).prop_map(|(len, fill)| Op::Stage { len, fill }),
        4 => Just(Op::Publish),
        2 => Just(Op::Discard),
        3 => len.prop_map(|len| Op::AllocOnly { len }),
        20 => (0u64..=9).prop_map(|num| Op::Ack { num }),
        6 => (0u64..5).prop_map(|n| Op::Consume { n }),
        3 => (0u64..=8).prop_map(|num| Op::SendCursor { num }),
        6 => (0u64..=8, prop_oneof![Just(1usize), 24usize..600, Just(usize::MAX)])
            .prop_map(|(num, max_bytes)| Op::Runs { num, max_bytes }),
        4 => Just(Op::Reopen),
        2 => Just(Op::Migrate),
        1 => Just(Op::Reset),
        2 => (1u64..10).prop_map(|extra| Op::AckBeyond { extra }),
        2 => (0usize..4, any::<u64>()).prop_map(|(word, value)| Op::Session { word, value }),
        2 => proptest::option::of(0u32..4).prop_map(|every| Op::Durability { every }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Msg {
    seq: u64,
    msg_type: u16,
    ack: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    acked: u64,
    next_seq: u64,
    consumed: u64,
    send_cursor: u64,
    queue: VecDeque<Msg>,
    staged: Vec<Msg>,
    epoch: u32,
    session: [u64; 4],
}

fn frame_size(len: usize) -> usize {
    (24 + len).next_multiple_of(8)
}

impl Model {
    fn queued_bytes(&self) -> usize {
        self.queue.iter().chain(&self.staged).map(|m| frame_size(m.bytes.len())).sum()
    }
}

fn bytes(len: usize, fill: u8, seq: u64) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add((i as u64 ^ seq) as u8)).collect()
}

struct World {
    dir: TempDir,
    cap_index: usize,
    store: Option<Store>,
    m: Model,
    durability: Durability,
}

impl World {
    fn opts(&self) -> Options {
        Options::new(CAPS[self.cap_index]).durability(self.durability)
    }

    fn s(&mut self) -> &mut Store {
        self.store.as_mut().unwrap()
    }

    fn reopen(&mut self) {
        self.store = None;
        let (s, o) = Store::open(self.dir.path(), name("l"), name("r"), &self.opts(), None, 0).unwrap();
        assert_eq!(o, OpenOutcome::Opened);
        self.store = Some(s);
        // Staged messages were never published: gone.
        self.m.staged.clear();
    }

    /// Allocs `len` bytes; checks the store's "full" answer against the model.
    fn alloc(&mut self, len: usize, fill: u8, seq: u64) -> bool {
        let cap = CAPS[self.cap_index];
        let used = self.m.queued_bytes();
        let max = self.s().max_payload();
        let free = self.s().free_bytes() as usize;
        // The ring holds at least the model's frames (plus perhaps a wrap skip).
        assert!(free <= cap - used, "free {free} of {cap} with {used} queued");
        match self.s().alloc(len) {
            Ok(Some(buf)) => {
                assert!(frame_size(len) <= free, "room the model does not have");
                buf.copy_from_slice(&bytes(len, fill, seq));
                true
            }
            // Full: the frame, plus less than a frame's worth skipped at the ring's
            // end, does not fit.
            Ok(None) => {
                assert!(2 * frame_size(len) > free, "refused with {free} free for {len}");
                false
            }
            Err(StoreError::TooLarge { .. }) => {
                assert!(len > max);
                false
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Push { len, msg_type, fill } => {
                let seq = self.m.next_seq + self.m.staged.len() as u64;
                if self.alloc(len, fill, seq) {
                    let ack = self.m.consumed;
                    assert_eq!(self.s().push(msg_type, ack).unwrap(), seq);
                    self.m.staged.push(Msg { seq, msg_type, ack, bytes: bytes(len, fill, seq) });
                    self.publish_model();
                }
            }
            Op::Stage { len, fill } => {
                let seq = self.m.next_seq + self.m.staged.len() as u64;
                if self.alloc(len, fill, seq) {
                    assert_eq!(self.s().push_more(7, 1234).unwrap(), seq);
                    self.m.staged.push(Msg { seq, msg_type: 7, ack: 1234, bytes: bytes(len, fill, seq) });
                }
            }
            Op::Publish => {
                self.s().publish().unwrap();
                self.publish_model();
            }
            Op::Discard => {
                let n = self.m.staged.len() as u64;
                assert_eq!(self.s().discard_staged(), n);
                assert_eq!(self.s().staged(), 0);
                self.m.staged.clear();
                assert!(matches!(self.s().push_more(1, 0), Err(StoreError::NothingAllocated)));
            }
            Op::AllocOnly { len } => {
                // Nothing changes: the next alloc replaces it, a reopen forgets it.
                self.alloc(len, 0, 0);
            }
            Op::Ack { num } => {
                let depth = self.m.next_seq - self.m.acked;
                let upto = if num == 9 { self.m.next_seq + 1 } else { self.m.acked + depth * num / 8 };
                match self.s().ack(upto) {
                    Ok(n) => {
                        assert!(upto <= self.m.next_seq);
                        assert_eq!(n, upto.saturating_sub(self.m.acked));
                        while self.m.queue.front().is_some_and(|f| f.seq < upto) {
                            self.m.queue.pop_front();
                        }
                        self.m.acked = self.m.acked.max(upto);
                    }
                    Err(StoreError::AckBeyondSent { .. }) => assert!(upto > self.m.next_seq),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Consume { n } => {
                let to = self.m.consumed + n;
                self.s().set_consumed(to).unwrap();
                self.m.consumed = to;
                if self.m.consumed > 0 {
                    assert!(matches!(self.s().set_consumed(to - 1), Err(StoreError::ConsumedBackwards { .. })));
                }
            }
            Op::SendCursor { num } => {
                let to = self.m.acked + (self.m.next_seq - self.m.acked) * num / 8;
                self.s().set_send_cursor(to).unwrap();
                self.m.send_cursor = to;
            }
            Op::Runs { num, max_bytes } => {
                let from = self.m.acked + (self.m.next_seq - self.m.acked) * num / 8;
                let expected: Vec<Msg> = self.m.queue.iter().filter(|m| m.seq >= from).cloned().collect();
                let s = self.store.as_mut().unwrap();
                let mut c = s.cursor_at(from).unwrap();
                let mut got = vec![];
                while let Some(run) = s.send_run(c, max_bytes).unwrap() {
                    assert!(run.count >= 1);
                    assert!(run.count == 1 || run.bytes.len() <= max_bytes);
                    let mut at = 0;
                    for _ in 0..run.count {
                        let h = tcpshm_proto::frame::Header::read(run.bytes[at..at + 24].try_into().unwrap());
                        let payload = run.bytes[at + 24..at + h.len as usize].to_vec();
                        assert!(run.bytes[at + h.len as usize..at + h.frame_len()].iter().all(|&b| b == 0));
                        got.push(Msg { seq: h.seq, msg_type: h.msg_type, ack: h.ack, bytes: payload });
                        at += h.frame_len();
                    }
                    assert_eq!(at, run.bytes.len());
                    c = run.next;
                }
                assert_eq!(got, expected);
            }
            Op::Reopen => self.reopen(),
            Op::Migrate => {
                // Publish nothing staged across a migration: reopen first (the model drops staged).
                self.reopen();
                self.store = None;
                let other = 1 - self.cap_index;
                let new_cap = CAPS[other];
                let fits =
                    self.m.queued_bytes() <= new_cap && self.m.queue.iter().all(|m| m.bytes.len() <= new_cap / 2 - 24);
                match Store::migrate(
                    self.dir.path(),
                    name("l"),
                    name("r"),
                    &Options::new(new_cap).durability(self.durability),
                ) {
                    Ok((s, mig)) => {
                        assert!(fits);
                        assert_eq!(mig.moved, self.m.queue.len() as u64);
                        self.store = Some(s);
                        self.cap_index = other;
                    }
                    Err(OpenError::DoesNotFit { .. }) => {
                        assert!(!fits);
                        self.reopen();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Reset => {
                self.m.epoch += 1;
                let e = name(&format!("epoch{}", self.m.epoch));
                let r = self.s().reset_epoch(e, 0).unwrap();
                assert_eq!(r.dropped, self.m.queue.len() as u64 + self.m.staged.len() as u64);
                self.m = Model { epoch: self.m.epoch, ..Model::default() };
            }
            Op::AckBeyond { extra } => {
                let upto = self.m.next_seq + extra;
                match self.s().ack_beyond(upto) {
                    Ok(n) => {
                        assert!(self.m.staged.is_empty());
                        assert_eq!(n, self.m.queue.len() as u64);
                        self.m.queue.clear();
                        (self.m.acked, self.m.next_seq) = (upto, upto);
                    }
                    Err(StoreError::Staged { staged }) => assert_eq!(staged, self.m.staged.len() as u64),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Session { word, value } => {
                self.s().set_session_word(SessionWord::ALL[word], value);
                self.m.session[word] = value;
            }
            Op::Durability { every } => {
                self.durability = every.map_or(Durability::Process, |every| Durability::Sync { every });
                let d = self.durability;
                self.s().set_durability(d).unwrap();
            }
        }
        self.check();
    }

    fn publish_model(&mut self) {
        let staged = std::mem::take(&mut self.m.staged);
        self.m.next_seq += staged.len() as u64;
        self.m.queue.extend(staged);
    }

    fn check(&mut self) {
        let m = &self.m;
        let s = self.store.as_ref().unwrap();
        assert_eq!(
            (s.first_unacked(), s.next_seq(), s.consumed(), s.send_cursor(), s.staged()),
            (m.acked, m.next_seq, m.consumed, m.send_cursor, m.staged.len() as u64)
        );
        assert_eq!(s.queue_depth(), m.queue.len() as u64);
        assert_eq!(SessionWord::ALL.map(|w| s.session_word(w)), m.session);
        let used: usize = m.queue.iter().map(|f| frame_size(f.bytes.len())).sum();
        // Queued bytes are the frames plus at most one wrap skip.
        assert!(s.queued_bytes() as usize >= used && (s.queued_bytes() as usize) < used + CAPS[self.cap_index] / 2 + 8);
        // Every queued message, read back one by one.
        let s = self.store.as_mut().unwrap();
        let mut c = s.cursor_at(s.first_unacked()).unwrap();
        for want in &self.m.queue {
            let (f, next) = s.frame(c).unwrap().unwrap();
            assert_eq!((f.seq, f.msg_type, f.ack, f.payload), (want.seq, want.msg_type, want.ack, &want.bytes[..]));
            c = next;
        }
        assert!(s.frame(c).unwrap().is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]

    #[cfg_attr(miri, ignore = "real files: miri supports neither mmap nor flock")]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..150)) {
        let dir = TempDir::in_memory("model");
        let (store, _) = Store::open(dir.path(), name("l"), name("r"), &Options::new(CAPS[0]), None, 0).unwrap();
        let mut w = World { dir, cap_index: 0, store: Some(store), m: Model::default(), durability: Durability::Process };
        for op in &ops {
            w.apply(op);
        }
        w.reopen();
        w.check();
    }
}
