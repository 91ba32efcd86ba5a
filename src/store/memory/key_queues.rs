//! Key queues in memory (`KeyQueues`): the reference model of the trait's contract.

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use uuid::Uuid;

use super::{MemoryStore, poisoned};
use crate::store::{
    FreshAssignment, KeyQueueAttributes, KeyQueueError, KeyQueueUpdate, KeyQueues, Retrieval,
    RetrievedKeyPackage, StoreError, StoredKeyPackage, count_after_assignment,
};

#[derive(Default)]
pub(super) struct KeyQueueTable {
    pub(super) queues: HashMap<Uuid, MemoryKeyQueue>,
    /// (app, client) -> attributes field -> queue id.
    pub(super) index: HashMap<(Uuid, Uuid), HashMap<String, Uuid>>,
    /// Clients being deleted: no queue operation succeeds on them any more.
    pub(super) retired: HashSet<Uuid>,
}

impl KeyQueueTable {
    /// Deletes the package `reference` from whichever of the client's queues holds it.
    pub(super) fn advance(&mut self, app: Uuid, client: Uuid, reference: &[u8]) -> bool {
        let Some(index) = self.index.get(&(app, client)) else {
            return false;
        };
        index.values().any(|queue| {
            self.queues
                .get_mut(queue)
                .is_some_and(|found| found.remove(reference))
        })
    }
}

pub(super) struct MemoryKeyQueue {
    pub(super) app: Uuid,
    pub(super) client: Uuid,
    pub(super) attributes: KeyQueueAttributes,
    /// reference -> (not_after, bytes)
    pub(super) packages: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    /// Unassigned packages in retrieval order.
    pub(super) free: BTreeSet<(u64, Vec<u8>)>,
    pub(super) assigned_to: HashMap<String, Vec<u8>>,
    pub(super) assigned_by: HashMap<Vec<u8>, String>,
    pub(super) final_key: Option<(u64, Vec<u8>)>,
}

impl MemoryKeyQueue {
    pub(super) fn remove(&mut self, reference: &[u8]) -> bool {
        let Some((not_after, _)) = self.packages.remove(reference) else {
            return false;
        };
        self.free.remove(&(not_after, reference.to_vec()));
        if let Some(receiver) = self.assigned_by.remove(reference) {
            self.assigned_to.remove(&receiver);
        }
        true
    }

    /// Drops every package whose `not_after` has passed (openmls: expired at `not_after`).
    pub(super) fn purge_expired(&mut self, now: u64) {
        let expired: Vec<Vec<u8>> = self
            .packages
            .iter()
            .filter(|(_, (not_after, _))| *not_after <= now)
            .map(|(reference, _)| reference.clone())
            .collect();
        for reference in expired {
            self.remove(&reference);
        }
    }

    pub(super) fn clear(&mut self) {
        self.packages.clear();
        self.free.clear();
        self.assigned_to.clear();
        self.assigned_by.clear();
    }
}

impl MemoryStore {
    pub(super) fn key_queue_table(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, KeyQueueTable>, StoreError> {
        self.key_queues.lock().map_err(|_| poisoned())
    }
}

#[async_trait]
impl KeyQueues for MemoryStore {
    async fn create_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
        attributes: &KeyQueueAttributes,
    ) -> Result<(), KeyQueueError> {
        let mut table = self.key_queue_table()?;
        if table.retired.contains(&client) {
            return Err(KeyQueueError::UnknownClient);
        }
        let index = table.index.entry((app, client)).or_default();
        if index.contains_key(&attributes.field()) {
            return Err(KeyQueueError::QueueExists);
        }
        index.insert(attributes.field(), queue);
        table.queues.insert(
            queue,
            MemoryKeyQueue {
                app,
                client,
                attributes: attributes.clone(),
                packages: HashMap::new(),
                free: BTreeSet::new(),
                assigned_to: HashMap::new(),
                assigned_by: HashMap::new(),
                final_key: None,
            },
        );
        Ok(())
    }

    async fn key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    ) -> Result<Option<KeyQueueAttributes>, StoreError> {
        let table = self.key_queue_table()?;
        Ok(table
            .queues
            .get(&queue)
            .filter(|found| found.app == app && found.client == client)
            .map(|found| found.attributes.clone()))
    }

    async fn update_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
        update: &KeyQueueUpdate,
        now: u64,
        max_packages: usize,
    ) -> Result<usize, KeyQueueError> {
        let mut table = self.key_queue_table()?;
        if table.retired.contains(&client) {
            return Err(KeyQueueError::UnknownClient);
        }
        let KeyQueueTable { queues, index, .. } = &mut *table;
        let found = queues
            .get_mut(&queue)
            .filter(|found| found.app == app && found.client == client)
            .ok_or(KeyQueueError::UnknownQueue)?;
        let index = index.entry((app, client)).or_default();
        // Every check before any change: the update is all or nothing (but for dropping
        // expired packages, below, which no application can see).
        let relabel = update
            .app_label
            .as_ref()
            .filter(|label| **label != found.attributes.app_label)
            .map(|label| KeyQueueAttributes {
                app_label: label.clone(),
                ..found.attributes.clone()
            });
        if relabel
            .as_ref()
            .is_some_and(|attributes| index.contains_key(&attributes.field()))
        {
            return Err(KeyQueueError::QueueExists);
        }
        // Expired packages go first (unusable, so dropping them changes nothing an
        // application can see): they count toward no cap.
        found.purge_expired(now);
        let kept = if update.reset {
            0
        } else {
            found.packages.len()
        };
        if kept + update.packages.len() > max_packages {
            return Err(KeyQueueError::TooManyPackages(max_packages));
        }
        if let Some(attributes) = relabel {
            index.remove(&found.attributes.field());
            index.insert(attributes.field(), queue);
            found.attributes = attributes;
        }
        if update.reset {
            found.clear();
        }
        for StoredKeyPackage {
            reference,
            not_after,
            bytes,
        } in &update.packages
        {
            if !found.packages.contains_key(reference) {
                found
                    .packages
                    .insert(reference.clone(), (*not_after, bytes.clone()));
                found.free.insert((*not_after, reference.clone()));
            }
        }
        if let Some(final_key) = &update.final_key {
            found.final_key = Some((final_key.not_after, final_key.bytes.clone()));
        }
        Ok(found.packages.len())
    }

    async fn delete_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    ) -> Result<bool, StoreError> {
        let mut table = self.key_queue_table()?;
        let owned = table
            .queues
            .get(&queue)
            .is_some_and(|found| found.app == app && found.client == client);
        if !owned {
            return Ok(false);
        }
        if let Some(removed) = table.queues.remove(&queue)
            && let Some(index) = table.index.get_mut(&(app, client))
        {
            index.remove(&removed.attributes.field());
        }
        Ok(true)
    }

    async fn retrieve_key_package(
        &self,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        now: u64,
        fresh: FreshAssignment<'_>,
    ) -> Result<Retrieval, KeyQueueError> {
        let package =
            self.retrieve_now(app, client, attributes, receiver, now, fresh.may_assign)?;
        let fresh_counts = match package {
            RetrievedKeyPackage::Assigned(_) if !fresh.counters.is_empty() => {
                count_after_assignment(self, &fresh, now).await
            }
            _ => Vec::new(),
        };
        Ok(Retrieval {
            package,
            fresh_counts,
        })
    }

    async fn advance_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        reference: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(self.key_queue_table()?.advance(app, client, reference))
    }

    async fn retire_client_key_queues(&self, app: Uuid, client: Uuid) -> Result<(), StoreError> {
        let mut table = self.key_queue_table()?;
        table.retired.insert(client);
        if let Some(index) = table.index.remove(&(app, client)) {
            for queue in index.values() {
                table.queues.remove(queue);
            }
        }
        Ok(())
    }
}

impl MemoryStore {
    /// The retrieval itself, under the key queues' lock.
    fn retrieve_now(
        &self,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        now: u64,
        fresh: bool,
    ) -> Result<RetrievedKeyPackage, KeyQueueError> {
        let mut table = self.key_queue_table()?;
        if table.retired.contains(&client) {
            return Err(KeyQueueError::NoMatchingQueue);
        }
        let queue = table
            .index
            .get(&(app, client))
            .and_then(|index| index.get(&attributes.field()))
            .copied()
            .ok_or(KeyQueueError::NoMatchingQueue)?;
        let found = table
            .queues
            .get_mut(&queue)
            .ok_or(KeyQueueError::NoMatchingQueue)?;
        found.purge_expired(now);
        if let Some(reference) = found.assigned_to.get(receiver)
            && let Some((_, bytes)) = found.packages.get(reference)
        {
            return Ok(RetrievedKeyPackage::AssignedBefore(bytes.clone()));
        }
        // purge_expired just ran, so the first free package is unexpired.
        if fresh && let Some((_, reference)) = found.free.pop_first() {
            found
                .assigned_to
                .insert(receiver.to_owned(), reference.clone());
            found
                .assigned_by
                .insert(reference.clone(), receiver.to_owned());
            let bytes = found
                .packages
                .get(&reference)
                .map(|(_, bytes)| bytes.clone())
                .unwrap_or_default();
            return Ok(RetrievedKeyPackage::Assigned(bytes));
        }
        match &found.final_key {
            Some((not_after, bytes)) if *not_after > now => {
                Ok(RetrievedKeyPackage::FinalKey(bytes.clone()))
            }
            // Withheld only if a fresh package would have been there.
            _ if !fresh && !found.free.is_empty() => Err(KeyQueueError::Withheld {
                retry_after_secs: 0,
            }),
            _ => Err(KeyQueueError::Exhausted),
        }
    }
}
