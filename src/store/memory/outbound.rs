//! Peers' outbound queues and follower notes in memory (`OutboundQueues`): the reference
//! model of the trait's contract.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryStore;
use crate::store::{OutboundQueues, StoreError};

/// Outbound queues per peer and the per-peer notes of a follower. Commits queue their
/// fan-out while holding the group table, so both change in one step.
#[derive(Default)]
pub(super) struct OutboundTable {
    pub(super) queues: BTreeMap<String, std::collections::VecDeque<Vec<u8>>>,
    pub(super) notes: HashMap<(String, String), Vec<u8>>,
    /// Peer -> (holder, until).
    pub(super) leases: HashMap<String, (String, Instant)>,
}

impl OutboundTable {
    /// Appends each peer's bodies to its queue, together.
    pub(super) fn extend(&mut self, fanout: &[(String, Vec<Vec<u8>>)]) {
        for (peer, bodies) in fanout {
            self.queues
                .entry(peer.clone())
                .or_default()
                .extend(bodies.iter().cloned());
        }
    }
}

#[async_trait]
impl OutboundQueues for MemoryStore {
    async fn lease_outbound(
        &self,
        peer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut table = self.outbound_table()?;
        let now = Instant::now();
        let taken = table
            .leases
            .get(peer)
            .is_some_and(|(current, until)| current != holder && *until > now);
        if !taken {
            table
                .leases
                .insert(peer.to_owned(), (holder.to_owned(), now + ttl));
        }
        Ok(!taken)
    }

    async fn release_outbound(&self, peer: &str, holder: &str) -> Result<(), StoreError> {
        let mut table = self.outbound_table()?;
        if table
            .leases
            .get(peer)
            .is_some_and(|(current, _)| current == holder)
        {
            table.leases.remove(peer);
        }
        Ok(())
    }

    async fn enqueue_outbound(&self, peer: &str, bodies: &[Vec<u8>]) -> Result<(), StoreError> {
        self.outbound_table()?
            .extend(&[(peer.to_owned(), bodies.to_vec())]);
        Ok(())
    }

    async fn outbound_head(&self, peer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .outbound_table()?
            .queues
            .get(peer)
            .and_then(|queue| queue.front().cloned()))
    }

    async fn outbound_len(&self, peer: &str) -> Result<u64, StoreError> {
        Ok(self
            .outbound_table()?
            .queues
            .get(peer)
            .map_or(0, |queue| queue.len() as u64))
    }

    async fn pop_outbound(&self, peer: &str, body: &[u8]) -> Result<(), StoreError> {
        let mut table = self.outbound_table()?;
        if let Some(queue) = table.queues.get_mut(peer)
            && queue.front().is_some_and(|head| head == body)
        {
            queue.pop_front();
        }
        Ok(())
    }

    async fn outbound_peers(&self) -> Result<Vec<String>, StoreError> {
        let mut table = self.outbound_table()?;
        table.queues.retain(|_, queue| !queue.is_empty());
        Ok(table.queues.keys().cloned().collect())
    }

    async fn set_peer_note(&self, peer: &str, name: &str, note: &[u8]) -> Result<(), StoreError> {
        let mut table = self.outbound_table()?;
        let key = (peer.to_owned(), name.to_owned());
        if note.is_empty() {
            table.notes.remove(&key);
        } else {
            table.notes.insert(key, note.to_vec());
        }
        Ok(())
    }

    async fn peer_note(&self, peer: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .outbound_table()?
            .notes
            .get(&(peer.to_owned(), name.to_owned()))
            .cloned())
    }
}
