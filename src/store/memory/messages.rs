//! Clients' message queues in memory (`MessageQueues`): the reference model of the
//! trait's contract.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use uuid::Uuid;

use super::{MemoryStore, poisoned};
use crate::store::{MessageQueues, QueuedMessage, StoreError};

/// One client's message queue.
#[derive(Default)]
pub(super) struct ClientMessages {
    pub(super) last_sequence: u64,
    pub(super) entries: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    /// Id -> sequence number, for the entries still queued.
    pub(super) ids: HashMap<Vec<u8>, u64>,
    /// Ids acknowledged within the dedup window, with when.
    pub(super) acked: HashMap<Vec<u8>, u64>,
}

impl ClientMessages {
    /// Appends `entry` unless `id` is still queued; answers its sequence number.
    pub(super) fn enqueue(&mut self, id: &[u8], entry: &[u8], now: u64) -> u64 {
        if let Some(sequence) = self.ids.get(id) {
            return *sequence;
        }
        if self
            .acked
            .get(id)
            .is_some_and(|at| now.saturating_sub(*at) < crate::store::DEDUP_WINDOW_SECS)
        {
            return 0;
        }
        self.last_sequence += 1;
        let sequence = self.last_sequence;
        self.entries.insert(sequence, (id.to_vec(), entry.to_vec()));
        self.ids.insert(id.to_vec(), sequence);
        sequence
    }
}

#[async_trait]
impl MessageQueues for MemoryStore {
    async fn enqueue_message(
        &self,
        app: Uuid,
        handle: &str,
        id: &[u8],
        entry: &[u8],
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut table = self.messages.lock().map_err(|_| poisoned())?;
        Ok(table
            .entry((app, handle.to_owned()))
            .or_default()
            .enqueue(id, entry, now))
    }

    async fn queued_messages(
        &self,
        app: Uuid,
        handle: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let table = self.messages.lock().map_err(|_| poisoned())?;
        Ok(table
            .get(&(app, handle.to_owned()))
            .map(|queue| {
                queue
                    .entries
                    .range(from..)
                    .take(limit)
                    .map(|(sequence, (_, entry))| QueuedMessage {
                        sequence: *sequence,
                        entry: entry.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn acknowledge_messages(
        &self,
        app: Uuid,
        handle: &str,
        up_to: u64,
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut table = self.messages.lock().map_err(|_| poisoned())?;
        let Some(queue) = table.get_mut(&(app, handle.to_owned())) else {
            return Ok(0);
        };
        let kept = queue.entries.split_off(&up_to.saturating_add(1));
        let removed = std::mem::replace(&mut queue.entries, kept);
        for (id, _) in removed.values() {
            queue.ids.remove(id);
            queue.acked.insert(id.clone(), now);
        }
        queue
            .acked
            .retain(|_, at| now.saturating_sub(*at) < crate::store::DEDUP_WINDOW_SECS);
        Ok(removed.len() as u64)
    }
}
