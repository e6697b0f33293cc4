//! Fair turns at a limited resource: a fixed number of permits, and when
//! they are all taken, waiters queue per key and are served round-robin over
//! the keys. Inbound SMTP keys by client network, so a flood from one
//! network (or a run from many addresses of one) waits behind itself, while
//! a sender from anywhere else is served within one round.
//!
//! tokio's `Semaphore` is FIFO over all waiters, which is exactly what lets
//! one busy source delay everyone; nothing in tokio or a small crate does
//! per-key round-robin, hence this.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Permits shared round-robin by key.
pub struct FairQueue<K> {
    inner: Arc<Mutex<Inner<K>>>,
}

struct Inner<K> {
    available: usize,
    /// Waiters per key, oldest first.
    waiting: HashMap<K, VecDeque<oneshot::Sender<()>>>,
    /// Keys with waiters, in the order they are served next.
    turns: VecDeque<K>,
}

/// A taken permit; dropping it hands it to the next waiter.
pub struct Permit<K: Hash + Eq + Clone> {
    inner: Arc<Mutex<Inner<K>>>,
}

impl<K: Hash + Eq + Clone> FairQueue<K> {
    pub fn new(permits: usize) -> Self {
        FairQueue {
            inner: Arc::new(Mutex::new(Inner {
                available: permits.max(1),
                waiting: HashMap::new(),
                turns: VecDeque::new(),
            })),
        }
    }

    /// Waits for a permit, in `key`'s queue.
    pub async fn acquire(&self, key: K) -> Permit<K> {
        let receiver = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.available > 0 && inner.turns.is_empty() {
                inner.available -= 1;
                return Permit {
                    inner: Arc::clone(&self.inner),
                };
            }
            let (sender, receiver) = oneshot::channel();
            let queue = inner.waiting.entry(key.clone()).or_default();
            let first = queue.is_empty();
            queue.push_back(sender);
            if first {
                inner.turns.push_back(key);
            }
            receiver
        };
        let mut wait = Wait {
            receiver: Some(receiver),
            inner: Arc::clone(&self.inner),
        };
        if let Some(receiver) = wait.receiver.as_mut() {
            // An error means the sender was dropped, which only a torn-down
            // queue does; go ahead rather than wait forever.
            let _ = receiver.await;
        }
        wait.receiver = None;
        Permit {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Waiters in all queues (for metrics).
    pub fn waiting(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.waiting.values().map(VecDeque::len).sum()
    }
}

/// A waiter; if its task is dropped after a permit was handed to it but
/// before it woke, the permit is passed on instead of being lost.
struct Wait<K: Hash + Eq + Clone> {
    receiver: Option<oneshot::Receiver<()>>,
    inner: Arc<Mutex<Inner<K>>>,
}

impl<K: Hash + Eq + Clone> Drop for Wait<K> {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                drop(Permit {
                    inner: Arc::clone(&self.inner),
                });
            }
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Hand the permit to the first live waiter in round-robin order; a
        // waiter whose task was cancelled has dropped its receiver.
        while let Some(key) = inner.turns.pop_front() {
            let Some(queue) = inner.waiting.get_mut(&key) else {
                continue;
            };
            let mut handed = false;
            while let Some(sender) = queue.pop_front() {
                if sender.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            if queue.is_empty() {
                inner.waiting.remove(&key);
            } else {
                inner.turns.push_back(key);
            }
            if handed {
                return;
            }
        }
        inner.available += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With one permit held, waiters from a busy key and a quiet key are
    /// served alternately, not in arrival order.
    #[tokio::test]
    async fn waiters_are_served_round_robin_by_key() {
        let queue = Arc::new(FairQueue::new(1));
        let held = queue.acquire("busy").await;
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (i, key) in ["busy", "busy", "busy", "quiet"].into_iter().enumerate() {
            let waiter = Arc::clone(&queue);
            let done_tx = done_tx.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = waiter.acquire(key).await;
                let _ = done_tx.send((i, key));
            }));
            // Each waiter is queued before the next one starts.
            while queue.waiting() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        let mut order = Vec::new();
        for _ in 0..4 {
            if let Some((_, key)) = done_rx.recv().await {
                order.push(key);
            }
        }
        // The quiet key's one waiter goes second, though it came last.
        assert_eq!(order, ["busy", "quiet", "busy", "busy"]);
        for task in tasks {
            let _ = task.await;
        }
        assert_eq!(queue.waiting(), 0);
    }

    /// A waiter dropped while queued, or right after being handed a permit,
    /// does not lose the permit.
    #[tokio::test]
    async fn cancelled_waiters_pass_their_permit_on() {
        let queue = Arc::new(FairQueue::new(1));
        let held = queue.acquire(1u8).await;
        let cancelled = {
            let waiter = Arc::clone(&queue);
            tokio::spawn(async move {
                let _permit = waiter.acquire(2u8).await;
            })
        };
        while queue.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        // The permit is free again: this does not wait.
        let again =
            tokio::time::timeout(std::time::Duration::from_secs(5), queue.acquire(3u8)).await;
        assert!(again.is_ok(), "the permit was lost");
    }
}
