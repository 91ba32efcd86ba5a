//! The client registry in memory (`ClientRegistry`): the reference model of the trait's
//! contract.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use uuid::Uuid;

use super::replay::RateWindows;
use super::{MemoryStore, poisoned};
use crate::store::{Client, ClientChange, ClientRegistry, RegistryError, StoreError};

/// One application's clients with their handle and tag indexes.
#[derive(Default)]
pub(super) struct AppRegistry {
    pub(super) clients: HashMap<Uuid, Client>,
    /// Ordered, so the clients of an account (a handle prefix) are one range.
    pub(super) handles: BTreeMap<String, Uuid>,
    pub(super) tags: HashMap<String, BTreeSet<Uuid>>,
}

impl AppRegistry {
    pub(super) fn index_tags<'a>(
        &mut self,
        client: Uuid,
        tags: impl IntoIterator<Item = &'a String>,
    ) {
        for tag in tags {
            self.tags.entry(tag.clone()).or_default().insert(client);
        }
    }

    pub(super) fn unindex_tags<'a>(
        &mut self,
        client: Uuid,
        tags: impl IntoIterator<Item = &'a String>,
    ) {
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

impl MemoryStore {
    pub(super) fn rate_windows(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, RateWindows>, StoreError> {
        self.rate_windows.lock().map_err(|_| poisoned())
    }

    pub(super) fn registries(
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

    async fn clients_with_handle_prefix(
        &self,
        app: Uuid,
        prefix: &str,
    ) -> Result<Vec<(String, Uuid)>, StoreError> {
        let registries = self.registries()?;
        Ok(registries
            .get(&app)
            .map(|registry| {
                registry
                    .handles
                    .range(prefix.to_owned()..)
                    .take_while(|(handle, _)| handle.starts_with(prefix))
                    .map(|(handle, id)| (handle.clone(), *id))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn client_by_handle(&self, app: Uuid, handle: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .registries()?
            .get(&app)
            .and_then(|registry| registry.handles.get(handle).copied()))
    }
}
