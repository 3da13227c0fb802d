//! Sharing one engine among many clients: requests wait in one queue per
//! client and are served round-robin (someone sending many requests does not
//! starve someone sending one), one at a time, each in its client's KV cache
//! slot (the least recently used slot is handed over when all are taken).
//!
//! A client is whoever the request says it is (`user`), or its address.

use std::collections::{HashMap, VecDeque};

use tokio::sync::{mpsc, oneshot};

use crate::engine::{Completion, EngineError, EngineHandle, GenerationRequest, TextSink};

/// Queues of waiting items, one per client, taken round-robin.
#[derive(Debug)]
pub struct FairQueue<T> {
    queues: HashMap<String, VecDeque<T>>,
    /// Clients with waiting items, in the order they will be served.
    turn: VecDeque<String>,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self { queues: HashMap::new(), turn: VecDeque::new() }
    }
}

impl<T> FairQueue<T> {
    /// Adds an item behind the client's earlier ones.
    pub fn push(&mut self, client: &str, item: T) {
        let queue = self.queues.entry(client.to_string()).or_default();
        if queue.is_empty() {
            self.turn.push_back(client.to_string());
        }
        queue.push_back(item);
    }

    /// The next client's oldest item; that client then waits for everyone else.
    pub fn pop(&mut self) -> Option<(String, T)> {
        let client = self.turn.pop_front()?;
        let queue = self.queues.get_mut(&client)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&client);
        } else {
            self.turn.push_back(client.clone());
        }
        Some((client, item))
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }
}

/// Which client's prompt prefix each KV cache slot holds.
#[derive(Debug)]
pub struct Slots {
    owners: Vec<Option<(String, u64)>>,
    clock: u64,
}

impl Slots {
    /// `count` empty slots (at least one).
    pub fn new(count: usize) -> Self {
        Self { owners: vec![None; count.max(1)], clock: 0 }
    }

    /// The client's slot: the one it had, else a free one, else the one
    /// used longest ago (whose client starts over next time).
    pub fn slot_for(&mut self, client: &str) -> usize {
        self.clock += 1;
        let index = self
            .owners
            .iter()
            .position(|o| o.as_ref().is_some_and(|(c, _)| c == client))
            .or_else(|| self.owners.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                let mut oldest = 0;
                for (i, owner) in self.owners.iter().enumerate() {
                    if owner.as_ref().map_or(0, |o| o.1) < self.owners[oldest].as_ref().map_or(0, |o| o.1) {
                        oldest = i;
                    }
                }
                oldest
            });
        self.owners[index] = Some((client.to_string(), self.clock));
        index
    }
}

/// A request waiting for the engine.
pub struct Queued {
    /// Who asked.
    pub client: String,
    /// What to generate.
    pub request: GenerationRequest,
    /// Where the text goes as it is generated (streaming answers).
    pub text: Option<TextSink>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Completion, EngineError>>,
}

/// Feeds the engine from the fair queue, one job at a time, until every
/// sender is gone. Jobs whose client left (reply dropped, or cancelled) are
/// skipped without taking a slot.
pub async fn dispatch(engine: EngineHandle, slots: usize, mut incoming: mpsc::UnboundedReceiver<Queued>) {
    let mut queue = FairQueue::default();
    let mut slots = Slots::new(slots);
    loop {
        while let Ok(job) = incoming.try_recv() {
            queue.push(&job.client.clone(), job);
        }
        let Some((client, job)) = queue.pop() else {
            match incoming.recv().await {
                Some(job) => {
                    queue.push(&job.client.clone(), job);
                    continue;
                }
                None => return,
            }
        };
        if job.reply.is_closed() || job.request.cancel.is_cancelled() {
            continue;
        }
        let slot = slots.slot_for(&client);
        tracing::debug!(client = %client, slot, waiting = queue.len(), "dispatching");
        let answer = engine.generate_in(job.request, slot, job.text).await;
        let _ = job.reply.send(answer.unwrap_or(Err(EngineError::WorkerGone)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_take_turns_whatever_they_queued() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push("alice", format!("a{i}"));
        }
        q.push("bob", "b0".to_string());
        q.push("carol", "c0".to_string());
        q.push("bob", "b1".to_string());
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(_, item)| item)).collect();
        assert_eq!(order, ["a0", "b0", "c0", "a1", "b1", "a2"]);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_client_coming_back_queues_behind_the_others() {
        let mut q = FairQueue::default();
        q.push("alice", 1);
        q.push("bob", 2);
        assert_eq!(q.pop(), Some(("alice".into(), 1)));
        q.push("alice", 3);
        assert_eq!(q.pop(), Some(("bob".into(), 2)));
        assert_eq!(q.pop(), Some(("alice".into(), 3)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn clients_keep_their_slot_and_the_least_recently_used_is_handed_over() {
        let mut s = Slots::new(2);
        assert_eq!(s.slot_for("alice"), 0);
        assert_eq!(s.slot_for("bob"), 1);
        assert_eq!(s.slot_for("alice"), 0);
        assert_eq!(s.slot_for("carol"), 1, "bob's slot was used longest ago");
        assert_eq!(s.slot_for("alice"), 0);
        assert_eq!(s.slot_for("bob"), 1);
        assert_eq!(Slots::new(0).slot_for("x"), 0, "there is always one slot");
    }
}
