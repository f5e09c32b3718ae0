//! A broadcast channel that holds only what some receiver has not read yet: a chat's local
//! channel on one node (both buses), and a user's.
//!
//! Why not `tokio::sync::broadcast`: it allocates all `capacity` slots when the channel is
//! made, so every chat with a member on the node held 256 × 32 bytes whether or not anything
//! was said in it (2 KiB of each idle socket in chats of 4, bench/README.md). This ring grows
//! as messages wait for a reader and gives the room back once everyone has read them. Its
//! contract is broadcast's: every receiver sees every message sent after it subscribed, in
//! order, unless it falls more than `capacity` messages behind, in which case it is told how
//! many it lost ([`RecvError::Lagged`]) and goes on from the oldest one kept. Senders never
//! wait.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// A channel whose receivers may each fall up to `capacity` (at least 1) messages behind.
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            head: 0,
            receivers: 1,
            senders: 1,
        }),
        capacity: capacity.max(1),
        arrived: Notify::new(),
    });
    let rx = Receiver {
        shared: shared.clone(),
        next: 0,
    };
    (Sender { shared }, rx)
}

/// Why [`Receiver::recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The receiver fell behind and this many messages were dropped before it read them; the
    /// next call returns the oldest one still kept.
    #[error("receiver lagged by {0} messages")]
    Lagged(u64),
    /// Every sender is gone and everything sent was read.
    #[error("channel closed")]
    Closed,
}

/// Why [`Receiver::try_recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    #[error("no message waiting")]
    Empty,
    #[error("receiver lagged by {0} messages")]
    Lagged(u64),
    #[error("channel closed")]
    Closed,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// A message was sent, or the last sender left.
    arrived: Notify,
}

struct State<T> {
    /// Messages some receiver has not read; `queue[i]` is the message at position `head + i`.
    queue: VecDeque<Slot<T>>,
    head: u64,
    receivers: usize,
    senders: usize,
}

struct Slot<T> {
    /// Taken by the last receiver to read it.
    value: Option<T>,
    /// Receivers that have not read it yet.
    unread: usize,
}

/// Room a drained queue keeps; past it, a burst's room is given back.
const KEPT_ROOM: usize = 16;

impl<T> State<T> {
    fn tail(&self) -> u64 {
        self.head + self.queue.len() as u64
    }

    /// Drops the read messages at the front, and a drained burst's room.
    fn trim(&mut self) {
        while self.queue.front().is_some_and(|s| s.unread == 0) {
            self.queue.pop_front();
            self.head += 1;
        }
        if self.queue.is_empty() && self.queue.capacity() > KEPT_ROOM {
            self.queue.shrink_to(KEPT_ROOM);
        }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Plain counters and a queue: a panic elsewhere leaves them consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends to every receiver subscribed at the time.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Clone> Sender<T> {
    /// Sends `value` to every current receiver, dropping the oldest kept message if the
    /// slowest receiver is `capacity` behind; returns how many receivers there are (none: the
    /// value is dropped).
    pub fn send(&self, value: T) -> usize {
        let mut state = self.shared.lock();
        let receivers = state.receivers;
        if receivers == 0 {
            return 0;
        }
        if state.queue.len() >= self.shared.capacity {
            // Whoever had not read it lags.
            state.queue.pop_front();
            state.head += 1;
            state.trim();
        }
        state.queue.push_back(Slot {
            value: Some(value),
            unread: receivers,
        });
        drop(state);
        self.shared.arrived.notify_waiters();
        receivers
    }

    /// A receiver of every message sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        let mut state = self.shared.lock();
        state.receivers += 1;
        Receiver {
            shared: self.shared.clone(),
            next: state.tail(),
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.shared.lock().receivers
    }

    /// Makes every current receiver lag, as if it had fallen `capacity` behind: each one's
    /// next call says so, and it resyncs from elsewhere.
    pub fn lag_receivers(&self) {
        let mut state = self.shared.lock();
        let past_tail = state.tail() + 1;
        state.queue.clear();
        state.head = past_tail;
        state.trim();
        drop(state);
        self.shared.arrived.notify_waiters();
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let last = state.senders == 0;
        drop(state);
        if last {
            self.shared.arrived.notify_waiters();
        }
    }
}

/// Reads the messages sent since it subscribed, in order.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The position of the next message to read.
    next: u64,
}

impl<T: Clone> Receiver<T> {
    /// The next message, if one is waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        take(&self.shared, &mut self.next)
    }

    /// Waits for the next message. Cancel-safe: dropping the future loses no message.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        let Receiver { shared, next } = self;
        loop {
            // Registered before looking, so a send in between still wakes us.
            let mut arrived = pin!(shared.arrived.notified());
            arrived.as_mut().enable();
            match take(shared, next) {
                Ok(value) => return Ok(value),
                Err(TryRecvError::Lagged(lost)) => return Err(RecvError::Lagged(lost)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => arrived.await,
            }
        }
    }
}

/// Reads the message at position `next` for one receiver, and moves it on.
fn take<T: Clone>(shared: &Shared<T>, next: &mut u64) -> Result<T, TryRecvError> {
    let mut state = shared.lock();
    if *next < state.head {
        let lost = state.head - *next;
        *next = state.head;
        return Err(TryRecvError::Lagged(lost));
    }
    // `next` is at most the tail, so the offset fits the queue's length.
    let offset = (*next - state.head) as usize;
    let Some(slot) = state.queue.get_mut(offset) else {
        return Err(if state.senders == 0 {
            TryRecvError::Closed
        } else {
            TryRecvError::Empty
        });
    };
    slot.unread -= 1;
    let value = if slot.unread == 0 {
        slot.value.take()
    } else {
        slot.value.clone()
    };
    *next += 1;
    if offset == 0 {
        state.trim();
    }
    // Every slot holds its value until its last reader, who is this one at most.
    value.ok_or(TryRecvError::Empty)
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receivers -= 1;
        let from = self.next.saturating_sub(state.head) as usize;
        for slot in state.queue.iter_mut().skip(from) {
            slot.unread -= 1;
            if slot.unread == 0 {
                slot.value = None;
            }
        }
        state.trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receiver_gets_every_message_and_the_ring_empties() {
        let (tx, mut a) = channel::<u32>(4);
        let mut b = tx.subscribe();
        assert_eq!(tx.send(1), 2);
        assert_eq!(tx.send(2), 2);
        assert_eq!(a.try_recv(), Ok(1));
        assert_eq!(a.try_recv(), Ok(2));
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(tx.shared.lock().queue.len(), 2, "b has not read them");
        assert_eq!(b.try_recv(), Ok(1));
        assert_eq!(b.try_recv(), Ok(2));
        assert_eq!(tx.shared.lock().queue.len(), 0);
    }

    #[test]
    fn a_receiver_more_than_capacity_behind_lags_then_reads_the_oldest_kept() {
        let (tx, mut slow) = channel::<u32>(3);
        let mut fast = tx.subscribe();
        for i in 0..5 {
            tx.send(i);
            assert_eq!(fast.try_recv(), Ok(i));
        }
        assert_eq!(slow.try_recv(), Err(TryRecvError::Lagged(2)));
        assert_eq!(slow.try_recv(), Ok(2));
        assert_eq!(slow.try_recv(), Ok(3));
        assert_eq!(slow.try_recv(), Ok(4));
        assert_eq!(slow.try_recv(), Err(TryRecvError::Empty));
        assert!(tx.shared.lock().queue.is_empty());
    }

    #[test]
    fn a_new_receiver_starts_at_the_next_message() {
        let (tx, mut a) = channel::<u32>(4);
        tx.send(1);
        let mut late = tx.subscribe();
        tx.send(2);
        assert_eq!(late.try_recv(), Ok(2));
        assert_eq!(a.try_recv(), Ok(1));
        assert_eq!(a.try_recv(), Ok(2));
        assert!(tx.shared.lock().queue.is_empty());
    }

    #[test]
    fn a_dropped_receiver_releases_what_it_had_not_read() {
        let (tx, a) = channel::<Arc<u32>>(8);
        let mut b = tx.subscribe();
        let value = Arc::new(7);
        tx.send(value.clone());
        assert_eq!(b.try_recv().as_deref(), Ok(&7));
        assert_eq!(Arc::strong_count(&value), 2, "a still holds it");
        drop(a);
        assert_eq!(Arc::strong_count(&value), 1);
        assert_eq!(tx.receiver_count(), 1);
        drop(b);
        assert_eq!(tx.send(Arc::new(8)), 0, "nobody listens");
    }

    #[test]
    fn a_burst_gives_its_room_back() {
        let (tx, mut rx) = channel::<u32>(1024);
        for i in 0..500 {
            tx.send(i);
        }
        while rx.try_recv().is_ok() {}
        assert!(tx.shared.lock().queue.capacity() <= KEPT_ROOM * 2);
    }

    #[test]
    fn lag_receivers_makes_each_current_one_lag_once() {
        let (tx, mut a) = channel::<u32>(4);
        tx.send(1);
        tx.lag_receivers();
        assert!(matches!(a.try_recv(), Err(TryRecvError::Lagged(_))));
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
        let mut late = tx.subscribe();
        tx.send(2);
        assert_eq!(late.try_recv(), Ok(2));
        assert_eq!(a.try_recv(), Ok(2));
    }

    #[tokio::test]
    async fn recv_waits_for_a_send_and_sees_the_close() {
        let (tx, mut rx) = channel::<u32>(4);
        let reader = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.send(5);
        drop(tx);
        let (first, second) = reader.await.unwrap_or((Err(RecvError::Closed), Ok(0)));
        assert_eq!(first, Ok(5));
        assert_eq!(second, Err(RecvError::Closed));
    }
}
