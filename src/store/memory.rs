//! The embedded in-memory store: the default when no Redis is configured. State is lost at
//! exit; one process only. Same behaviour as the Redis store, checked by the same tests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    Client, ClientChange, ClientRegistry, Health, RegistryError, ReplayCache, Store, StoreError,
};

#[derive(Default)]
pub struct MemoryStore {
    // std Mutexes, not tokio ones: never held across an await.
    replay: Mutex<ReplayTable>,
    registries: Mutex<HashMap<Uuid, AppRegistry>>,
}

/// One application's clients with their handle and tag indexes.
#[derive(Default)]
struct AppRegistry {
    clients: HashMap<Uuid, Client>,
    handles: HashMap<String, Uuid>,
    tags: HashMap<String, BTreeSet<Uuid>>,
}

impl AppRegistry {
    fn index_tags<'a>(&mut self, client: Uuid, tags: impl IntoIterator<Item = &'a String>) {
        for tag in tags {
            self.tags.entry(tag.clone()).or_default().insert(client);
        }
    }

    fn unindex_tags<'a>(&mut self, client: Uuid, tags: impl IntoIterator<Item = &'a String>) {
        for tag in tags {
            if let Some(members) = self.tags.get_mut(tag) {
                members.remove(&client);
                if members.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
    }
}

#[derive(Default)]
struct ReplayTable {
    expiries: HashMap<(String, [u8; 16]), Instant>,
    /// Size after the last sweep; the next sweep runs when the table has doubled, so pruning
    /// costs O(1) amortized per insert.
    swept_at_len: usize,
}

impl ReplayTable {
    fn sweep_if_grown(&mut self, now: Instant) {
        if self.expiries.len() >= (self.swept_at_len * 2).max(1024) {
            self.expiries.retain(|_, expiry| *expiry > now);
            self.swept_at_len = self.expiries.len();
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("memory store lock poisoned".into())
}

#[async_trait]
impl ReplayCache for MemoryStore {
    async fn record_request_id(
        &self,
        sender: &str,
        request_id: &[u8; 16],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut table = self.replay.lock().map_err(|_| poisoned())?;
        table.sweep_if_grown(now);
        let entry = table
            .expiries
            .entry((sender.to_owned(), *request_id))
            .or_insert(now);
        if *entry > now {
            return Ok(false);
        }
        *entry = now + ttl;
        Ok(true)
    }
}

impl MemoryStore {
    fn registries(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<Uuid, AppRegistry>>, StoreError> {
        self.registries.lock().map_err(|_| poisoned())
    }
}

#[async_trait]
impl ClientRegistry for MemoryStore {
    async fn register_client(&self, app: Uuid, client: &Client) -> Result<(), RegistryError> {
        let mut registries = self.registries()?;
        let registry = registries.entry(app).or_default();
        if registry.handles.contains_key(&client.handle) {
            return Err(RegistryError::HandleTaken);
        }
        registry.handles.insert(client.handle.clone(), client.id);
        registry.index_tags(client.id, &client.tags);
        registry.clients.insert(client.id, client.clone());
        Ok(())
    }

    async fn update_client(
        &self,
        app: Uuid,
        client: Uuid,
        change: &ClientChange,
        max_tags: usize,
    ) -> Result<Client, RegistryError> {
        let mut registries = self.registries()?;
        let registry = registries
            .get_mut(&app)
            .ok_or(RegistryError::UnknownClient)?;
        let current = registry
            .clients
            .get(&client)
            .ok_or(RegistryError::UnknownClient)?;
        let new_handle = change
            .handle
            .as_ref()
            .filter(|handle| **handle != current.handle);
        if new_handle.is_some_and(|handle| registry.handles.contains_key(handle)) {
            return Err(RegistryError::HandleTaken);
        }
        let mut tags = current.tags.clone();
        tags.extend(change.add.iter().cloned());
        tags.retain(|tag| !change.remove.contains(tag));
        if tags.len() > max_tags {
            return Err(RegistryError::TooManyTags);
        }
        let old = current.clone();
        let updated = Client {
            id: client,
            handle: new_handle.cloned().unwrap_or(old.handle.clone()),
            tags,
        };
        if new_handle.is_some() {
            registry.handles.remove(&old.handle);
            registry.handles.insert(updated.handle.clone(), client);
        }
        registry.unindex_tags(client, old.tags.difference(&updated.tags));
        registry.index_tags(client, updated.tags.difference(&old.tags));
        registry.clients.insert(client, updated.clone());
        Ok(updated)
    }

    async fn client(&self, app: Uuid, client: Uuid) -> Result<Option<Client>, StoreError> {
        Ok(self
            .registries()?
            .get(&app)
            .and_then(|registry| registry.clients.get(&client))
            .cloned())
    }

    async fn clients_with_tag(&self, app: Uuid, tag: &str) -> Result<Vec<Client>, StoreError> {
        let registries = self.registries()?;
        let Some(registry) = registries.get(&app) else {
            return Ok(Vec::new());
        };
        let mut clients: Vec<Client> = registry
            .tags
            .get(tag)
            .into_iter()
            .flatten()
            .filter_map(|id| registry.clients.get(id).cloned())
            .collect();
        clients.sort_by(|a, b| a.handle.cmp(&b.handle));
        Ok(clients)
    }

    async fn delete_client(&self, app: Uuid, client: Uuid) -> Result<bool, StoreError> {
        let mut registries = self.registries()?;
        let Some(registry) = registries.get_mut(&app) else {
            return Ok(false);
        };
        let Some(removed) = registry.clients.remove(&client) else {
            return Ok(false);
        };
        registry.handles.remove(&removed.handle);
        registry.unindex_tags(client, &removed.tags);
        Ok(true)
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory (embedded; all state is lost when the gateway exits)".into()
    }
}
