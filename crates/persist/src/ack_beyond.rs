//! Acknowledging seqs that were carried by another medium.
//!
//! A connection that moved to shared memory sends its messages through the rings,
//! not through this store: the seqs `next_seq()..upto` were never queued here. When
//! the peer reports that it consumed everything below `upto`, the store must drop its
//! whole queue and continue numbering at `upto`.

use crate::error::StoreError;
use crate::layout::{COUNTER_LIMIT, OFF_ACKED, OFF_NEXT_SEQ};
use crate::store::Store;
use std::sync::atomic::Ordering;

impl Store {
    /// The peer consumed every message below `upto`, and the seqs
    /// [`next_seq`](Self::next_seq)`..upto` were carried by another medium (the
    /// shared-memory rings) and never queued here: drops every queued message, and the
    /// queue continues at `upto` (the next push gets seq `upto`;
    /// `first_unacked() == next_seq() == upto`). Returns how many queued messages were
    /// dropped. `upto <= next_seq()` is exactly [`ack`](Self::ack).
    ///
    /// Refused while messages are staged by [`push_more`](Self::push_more) (they
    /// already hold seqs from `next_seq()`: publish them first), and for `upto` of
    /// 2^63 or more.
    ///
    /// Crash- and power-loss-safe like `ack`: the `next_seq` hint is raised first,
    /// then `acked` is stored (the commit point); a crash before it leaves the store
    /// as it was (the hint is repaired), after it `open` finishes the rest. It counts
    /// as one operation toward [`Durability::Sync`](crate::Durability::Sync).
    ///
    /// ```
    /// use tcpshm_persist::{Options, Store};
    /// use tcpshm_proto::Name;
    /// # let dir = std::env::temp_dir().join(format!("tcpshm-persist-doc-beyond-{}", std::process::id()));
    /// let (me, peer) = (Name::new("a").unwrap(), Name::new("b").unwrap());
    /// let (mut s, _) = Store::open(&dir, me, peer, &Options::new(4096), None, 0).unwrap();
    /// for _ in 0..3 {
    ///     s.alloc(1).unwrap().unwrap();
    ///     s.push(1, 0).unwrap();
    /// }
    /// // Seqs 3..10 went through shared memory; the peer consumed all of them.
    /// assert_eq!(s.ack_beyond(10).unwrap(), 3);
    /// assert_eq!((s.first_unacked(), s.next_seq(), s.queue_depth()), (10, 10, 0));
    /// s.alloc(1).unwrap().unwrap();
    /// assert_eq!(s.push(1, 0).unwrap(), 10);
    /// # drop(s); Store::remove(&dir, me, peer).unwrap(); std::fs::remove_dir(&dir).ok();
    /// ```
    pub fn ack_beyond(&mut self, upto: u64) -> Result<u64, StoreError> {
        if upto <= self.next_seq {
            return self.ack(upto);
        }
        if self.staged > 0 {
            return Err(StoreError::Staged { staged: self.staged });
        }
        if upto >= COUNTER_LIMIT {
            return Err(StoreError::SeqOutOfRange { seq: upto, acked: self.acked, next_seq: COUNTER_LIMIT - 1 });
        }
        // The hint first: recovery accepts `acked` beyond the queued frames only when
        // the hint vouches for it.
        self.counter(OFF_NEXT_SEQ).store(upto, Ordering::Relaxed);
        self.counter(OFF_ACKED).store(upto, Ordering::Release);
        let n = self.drop_acked(upto)?;
        self.next_seq = upto;
        self.note_ops(1)?;
        Ok(n)
    }
}
