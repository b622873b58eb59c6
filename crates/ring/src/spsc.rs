//! A typed, fixed-capacity, lock-free single-producer single-consumer queue.
//!
//! [`channel`] returns a [`Producer`] and a [`Consumer`]. Each is `Send` and neither is
//! `Clone`, so ownership enforces one producer and one consumer. Push and pop are
//! wait-free: a few loads and one release store, no lock, no allocation.
//!
//! The two indices are free-running `usize` counters, each on its own cache line. Each
//! side keeps a private copy of the other side's index and rereads the shared one only
//! when the queue looks full (producer) or empty (consumer), so in steady state the two
//! cores touch each other's line only once per lap, not once per item.
//!
//! Batches ([`Producer::push_slice`], [`Producer::push_iter`], [`Consumer::pop_slice`],
//! [`Consumer::pop_batch`]) move many items with a single index publish.
//!
//! Each end learns when the other is dropped with `is_abandoned()` (a flag the other
//! end's `Drop` sets, on a line of its own; nothing on the push/pop path reads it).
//! With the `wait` feature, `push_wait`/`pop_wait` wait (spin, yield, then park) instead
//! of returning at once, and report a dropped peer instead of waiting for it forever.
//!
//! ```
//! use tcpshm_ring::spsc;
//!
//! let (mut tx, mut rx) = spsc::channel::<String>(2);
//! tx.push("a".to_string()).unwrap();
//! tx.push("b".to_string()).unwrap();
//! // Full is a value, not a panic: the item comes back.
//! let back = tx.push("c".to_string()).unwrap_err();
//! assert_eq!(back.0, "c");
//! assert_eq!(rx.pop().as_deref(), Some("a"));
//! ```

use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicUsize, CachePadded, Ordering, UnsafeCell};
use core::fmt;
use core::mem::MaybeUninit;

/// The queue was full; the value that could not be pushed is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue is full")
    }
}

impl<T: fmt::Debug> std::error::Error for Full<T> {}

// `repr(C)`: the hot fields keep the offsets they had before `ends` was added (the
// liveness line comes last), so push and pop compile to the same code.
#[repr(C)]
pub(crate) struct Shared<T> {
    /// Next slot the consumer reads (count of items ever popped).
    head: CachePadded<AtomicUsize>,
    /// Next slot the producer writes (count of items ever pushed).
    tail: CachePadded<AtomicUsize>,
    mask: usize,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Liveness and parking; on its own line, away from the indices and the slots.
    pub(crate) ends: CachePadded<Ends>,
}

/// What each end learns about the other outside the hot path: whether it was dropped,
/// and whether it is parked (the futex words of the `wait` feature). Written only when
/// an end is dropped or parks.
#[derive(Debug, Default)]
pub(crate) struct Ends {
    /// Set (release) by the producer's `Drop`, after its last push.
    pub(crate) producer_gone: AtomicBool,
    /// Set (release) by the consumer's `Drop`, after its last pop.
    pub(crate) consumer_gone: AtomicBool,
    /// 1 while the consumer is parked (or about to park) waiting for an item.
    #[cfg_attr(not(feature = "wait"), allow(dead_code))]
    pub(crate) consumer_parked: AtomicU32,
    /// 1 while the producer is parked (or about to park) waiting for room.
    #[cfg_attr(not(feature = "wait"), allow(dead_code))]
    pub(crate) producer_parked: AtomicU32,
}

// SAFETY: the slots are only accessed under the SPSC protocol (the producer writes slot
// `i` only while `i - head < capacity`, the consumer reads it only while `i < tail`),
// with release/acquire on the indices ordering each write before its read; the items
// move between threads, so `T: Send` is required and sufficient.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: as above; `Shared` owns `T`s that may be dropped on either thread.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Shared<T> {
    #[inline(always)]
    fn capacity(&self) -> usize {
        self.mask + 1
    }

    #[inline(always)]
    fn slot(&self, index: usize) -> &UnsafeCell<MaybeUninit<T>> {
        // `mask + 1 == slots.len()`, so the masked index is always in bounds; the
        // compiler cannot see it, and the bounds check is one predictable branch.
        &self.slots[index & self.mask]
    }
}

impl<T: Copy> Shared<T> {
    /// Copies `items` into the slots from index `start` on, as at most two contiguous
    /// `memcpy`s (before and after the wrap). The caller guarantees the slots are free.
    #[cfg(not(all(loom, test)))]
    #[inline]
    fn copy_in(&self, start: usize, items: &[T]) {
        let first = (self.capacity() - (start & self.mask)).min(items.len());
        // `UnsafeCell<MaybeUninit<T>>` has the layout of `T`, so the slots are an array
        // of `T`; `first <= capacity - offset`, the rest starts at 0.
        let base = self.slots.as_ptr() as *mut T;
        // SAFETY: both ranges lie within the slots; the producer owns these free slots
        // (`start - head + len <= capacity`) until it publishes.
        unsafe {
            core::ptr::copy_nonoverlapping(items.as_ptr(), base.add(start & self.mask), first);
            core::ptr::copy_nonoverlapping(items.as_ptr().add(first), base, items.len() - first);
        }
    }

    /// Copies the slots from index `start` on into `out` (at most two `memcpy`s). The
    /// caller guarantees the slots are published.
    #[cfg(not(all(loom, test)))]
    #[inline]
    fn copy_out(&self, start: usize, out: &mut [T]) {
        let first = (self.capacity() - (start & self.mask)).min(out.len());
        let base = self.slots.as_ptr() as *const T;
        // SAFETY: as in `copy_in`; the slots hold initialised `T`s published by the
        // producer (acquire on `tail`), which it does not reuse before we release them;
        // `T: Copy`, so copying leaves nothing to drop.
        unsafe {
            core::ptr::copy_nonoverlapping(base.add(start & self.mask), out.as_mut_ptr(), first);
            core::ptr::copy_nonoverlapping(base, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// Under loom, slot by slot, so that loom sees (and checks) every cell access.
    #[cfg(all(loom, test))]
    fn copy_in(&self, start: usize, items: &[T]) {
        for (k, v) in items.iter().enumerate() {
            // SAFETY: as above; each free slot is written once.
            self.slot(start.wrapping_add(k)).with_mut(|p| unsafe { (*p).write(*v) });
        }
    }

    #[cfg(all(loom, test))]
    fn copy_out(&self, start: usize, out: &mut [T]) {
        for (k, o) in out.iter_mut().enumerate() {
            // SAFETY: as above; each published slot is read once.
            *o = self.slot(start.wrapping_add(k)).with(|p| unsafe { (*p).assume_init_read() });
        }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both handles are gone (this is the last `Arc`), so nothing races with us.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut i = head;
        while i != tail {
            // SAFETY: slots in `head..tail` were written by `push` and not yet read by
            // `pop`, so each holds an initialised `T` that is dropped exactly once here.
            self.slot(i).with_mut(|p| unsafe { (*p).assume_init_drop() });
            i = i.wrapping_add(1);
        }
    }
}

/// Creates a queue holding at least `capacity` items (rounded up to a power of two,
/// at least 1) and returns its two ends.
///
/// # Panics
/// If the rounded capacity overflows `usize` or the allocation fails.
///
/// ```
/// let (tx, rx) = tcpshm_ring::spsc::channel::<u32>(100);
/// assert_eq!(tx.capacity(), 128);
/// assert!(rx.is_empty());
/// ```
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(1).checked_next_power_of_two().expect("spsc capacity overflows usize");
    let slots = (0..cap).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(0)),
        tail: CachePadded(AtomicUsize::new(0)),
        mask: cap - 1,
        slots,
        ends: CachePadded(Ends::default()),
    });
    (Producer { shared: shared.clone(), tail: 0, cached_head: 0 }, Consumer { shared, head: 0, cached_tail: 0 })
}

/// The sending end of a [`channel`]. `Send`, not `Clone`.
pub struct Producer<T> {
    pub(crate) shared: Arc<Shared<T>>,
    /// Our own index (the shared `tail` always equals it between calls).
    tail: usize,
    /// Last value of the consumer's `head` we read; `<=` the real one.
    cached_head: usize,
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").field("capacity", &self.capacity()).field("len", &self.len()).finish()
    }
}

impl<T> Producer<T> {
    /// Number of free slots, rereading the consumer's index only if the cached copy
    /// says fewer than `want` are free.
    #[inline(always)]
    pub(crate) fn free(&mut self, want: usize) -> usize {
        let cap = self.shared.capacity();
        let mut free = cap - self.tail.wrapping_sub(self.cached_head);
        if free < want {
            // Acquire: the consumer's reads of the slots it released happen before
            // we overwrite them.
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            free = cap - self.tail.wrapping_sub(self.cached_head);
        }
        free
    }

    /// Pushes `value`, or returns it in [`Full`] if the queue is full.
    ///
    /// ```
    /// let (mut tx, mut rx) = tcpshm_ring::spsc::channel(1);
    /// assert!(tx.push(1u8).is_ok());
    /// assert_eq!(tx.push(2u8), Err(tcpshm_ring::spsc::Full(2)));
    /// assert_eq!(rx.pop(), Some(1));
    /// ```
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        if self.free(1) == 0 {
            return Err(Full(value));
        }
        // SAFETY: `tail - head < capacity`, so the consumer is not reading this slot
        // and will not until we publish `tail + 1`; we are the only producer.
        self.shared.slot(self.tail).with_mut(|p| unsafe { (*p).write(value) });
        self.tail = self.tail.wrapping_add(1);
        // Release: the slot write above happens before the consumer sees the index.
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Pushes items from `iter` while there is room, publishing them with one index
    /// store; returns how many were pushed. Items the queue had no room for stay in
    /// the iterator (pass `&mut iter` to keep them).
    ///
    /// ```
    /// let (mut tx, rx) = tcpshm_ring::spsc::channel(4);
    /// let mut items = 0..10u32;
    /// assert_eq!(tx.push_iter(&mut items), 4);
    /// assert_eq!(items.next(), Some(4));
    /// assert_eq!(rx.len(), 4);
    /// ```
    pub fn push_iter<I: IntoIterator<Item = T>>(&mut self, iter: I) -> usize {
        let cap = self.shared.capacity();
        let room = self.free(cap);
        let mut n = 0;
        let mut iter = iter.into_iter();
        while n < room {
            let Some(value) = iter.next() else { break };
            let i = self.tail.wrapping_add(n);
            // SAFETY: `i - head < capacity` (n < room), so the consumer is not reading
            // this slot; it becomes visible only with the store below.
            self.shared.slot(i).with_mut(|p| unsafe { (*p).write(value) });
            n += 1;
        }
        if n > 0 {
            self.tail = self.tail.wrapping_add(n);
            self.shared.tail.store(self.tail, Ordering::Release);
        }
        n
    }

    /// Number of items in the queue (may be stale by the time it returns: the
    /// consumer may have popped since).
    pub fn len(&self) -> usize {
        self.tail.wrapping_sub(self.shared.head.load(Ordering::Acquire))
    }

    /// Whether the queue is empty (see [`Producer::len`] about staleness).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full right now.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Maximum number of items the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Whether the [`Consumer`] was dropped: nothing pushed from now on will be read.
    /// One load of a flag on its own cache line; no push or pop reads it.
    ///
    /// ```
    /// let (tx, rx) = tcpshm_ring::spsc::channel::<u8>(4);
    /// assert!(!tx.is_abandoned());
    /// drop(rx);
    /// assert!(tx.is_abandoned());
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.shared.ends.consumer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Release: every push happens before a consumer that sees the flag.
        self.shared.ends.producer_gone.store(true, Ordering::Release);
        #[cfg(feature = "wait")]
        crate::wait::bell::notify(&self.shared.ends.consumer_parked, crate::wait::bell::Scope::Process);
    }
}

impl<T: Copy> Producer<T> {
    /// Copies as many items of `items` as fit, publishing them with one index store;
    /// returns how many were pushed.
    ///
    /// ```
    /// let (mut tx, mut rx) = tcpshm_ring::spsc::channel(4);
    /// assert_eq!(tx.push_slice(&[1u64, 2, 3, 4, 5]), 4);
    /// let mut out = [0u64; 8];
    /// assert_eq!(rx.pop_slice(&mut out), 4);
    /// assert_eq!(&out[..4], &[1, 2, 3, 4]);
    /// ```
    pub fn push_slice(&mut self, items: &[T]) -> usize {
        let n = self.free(items.len()).min(items.len());
        self.shared.copy_in(self.tail, &items[..n]);
        if n > 0 {
            self.tail = self.tail.wrapping_add(n);
            self.shared.tail.store(self.tail, Ordering::Release);
        }
        n
    }
}

/// The receiving end of a [`channel`]. `Send`, not `Clone`. Dropping the queue (both
/// ends) drops the items still in it.
pub struct Consumer<T> {
    pub(crate) shared: Arc<Shared<T>>,
    /// Our own index (the shared `head` always equals it between calls).
    head: usize,
    /// Last value of the producer's `tail` we read; `<=` the real one.
    cached_tail: usize,
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("capacity", &self.capacity()).field("len", &self.len()).finish()
    }
}

impl<T> Consumer<T> {
    /// Number of readable items, rereading the producer's index only if the cached
    /// copy says fewer than `want` are available.
    #[inline(always)]
    pub(crate) fn available(&mut self, want: usize) -> usize {
        let mut avail = self.cached_tail.wrapping_sub(self.head);
        if avail < want {
            // Acquire: the producer's slot writes happen before our reads.
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            avail = self.cached_tail.wrapping_sub(self.head);
        }
        avail
    }

    /// Pops the oldest item, or `None` if the queue is empty.
    ///
    /// ```
    /// let (mut tx, mut rx) = tcpshm_ring::spsc::channel(2);
    /// assert_eq!(rx.pop(), None);
    /// tx.push('x').unwrap();
    /// assert_eq!(rx.pop(), Some('x'));
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: `head < tail`: the producer wrote this slot and published it
        // (acquire in `available`), and will not touch it until we publish `head + 1`.
        let v = self.shared.slot(self.head).with(|p| unsafe { (*p).assume_init_read() });
        self.head = self.head.wrapping_add(1);
        // Release: our read of the slot happens before the producer reuses it.
        self.shared.head.store(self.head, Ordering::Release);
        Some(v)
    }

    /// A reference to the oldest item without popping it.
    ///
    /// ```
    /// let (mut tx, mut rx) = tcpshm_ring::spsc::channel(2);
    /// tx.push(5).unwrap();
    /// assert_eq!(rx.peek(), Some(&5));
    /// assert_eq!(rx.pop(), Some(5));
    /// ```
    pub fn peek(&mut self) -> Option<&T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: as in `pop`; the slot stays valid while `&self` is borrowed, because
        // only `pop` (which needs `&mut self`) releases it.
        Some(self.shared.slot(self.head).with(|p| unsafe { (*p).assume_init_ref() }))
    }

    /// Pops up to `max` items, handing each to `f`, and releases their slots with one
    /// index store; returns how many were popped.
    ///
    /// ```
    /// let (mut tx, mut rx) = tcpshm_ring::spsc::channel(8);
    /// tx.push_slice(&[1, 2, 3]);
    /// let mut sum = 0;
    /// assert_eq!(rx.pop_batch(usize::MAX, |v| sum += v), 3);
    /// assert_eq!(sum, 6);
    /// ```
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let n = self.available(max).min(max);
        for k in 0..n {
            let i = self.head.wrapping_add(k);
            // SAFETY: `i < tail`, published and untouched by the producer until the
            // store below; each slot is read exactly once.
            f(self.shared.slot(i).with(|p| unsafe { (*p).assume_init_read() }));
        }
        if n > 0 {
            self.head = self.head.wrapping_add(n);
            self.shared.head.store(self.head, Ordering::Release);
        }
        n
    }

    /// Number of items in the queue (the producer may have pushed more since).
    pub fn len(&self) -> usize {
        self.shared.tail.load(Ordering::Acquire).wrapping_sub(self.head)
    }

    /// Whether the queue is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (see [`Consumer::len`] about staleness).
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Maximum number of items the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Whether the [`Producer`] was dropped: once the queue is empty, nothing more will
    /// come. Every item pushed before the drop is visible to a `pop` after this returns
    /// `true` (the flag is stored with release and loaded with acquire).
    ///
    /// ```
    /// let (mut tx, mut rx) = tcpshm_ring::spsc::channel(4);
    /// tx.push(1).unwrap();
    /// drop(tx);
    /// assert!(rx.is_abandoned());
    /// assert_eq!(rx.pop(), Some(1)); // drain what was pushed before the drop
    /// assert_eq!(rx.pop(), None);
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.shared.ends.producer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.ends.consumer_gone.store(true, Ordering::Release);
        #[cfg(feature = "wait")]
        crate::wait::bell::notify(&self.shared.ends.producer_parked, crate::wait::bell::Scope::Process);
    }
}

impl<T: Copy> Consumer<T> {
    /// Copies up to `out.len()` items into `out`, releasing them with one index store;
    /// returns how many were popped.
    ///
    /// ```
    /// let (mut tx, mut rx) = tcpshm_ring::spsc::channel(4);
    /// tx.push_slice(&[7u8, 8]);
    /// let mut out = [0u8; 1];
    /// assert_eq!(rx.pop_slice(&mut out), 1);
    /// assert_eq!(out, [7]);
    /// ```
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize {
        let n = self.available(out.len()).min(out.len());
        self.shared.copy_out(self.head, &mut out[..n]);
        if n > 0 {
            self.head = self.head.wrapping_add(n);
            self.shared.head.store(self.head, Ordering::Release);
        }
        n
    }
}
