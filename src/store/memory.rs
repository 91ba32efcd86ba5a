//! The embedded in-memory store: the default when no Redis is configured. State is lost at
//! exit; one process only. Same behaviour as the Redis store, checked by the same tests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use crate::mls::group_state::PublicState;

use super::{
    Client, ClientChange, ClientRegistry, CommitRecord, CurrentGroupInfo, GroupHead,
    GroupStoreError, Groups, Health, HeldProposal, KeyQueueAttributes, KeyQueueError,
    KeyQueueUpdate, KeyQueues, MessageQueues, NewGroup, OutboundQueues, PendingWelcome,
    QueuedMessage, RateCounters, RegistryError, ReplayCache, RequestWindow, RetrievedKeyPackage,
    Store, StoreError, StoredGroup, StoredKeyPackage, WelcomeRecord,
};

#[derive(Default)]
pub struct MemoryStore {
    // std Mutexes, not tokio ones: never held across an await.
    replay: Mutex<ReplayTable>,
    rate_windows: Mutex<RateWindows>,
    registries: Mutex<HashMap<Uuid, AppRegistry>>,
    key_queues: Mutex<KeyQueueTable>,
    /// Locked before `key_queues` when both are needed (a commit advances key queues).
    groups: Mutex<GroupTable>,
    outbound: Mutex<OutboundTable>,
    messages: Mutex<HashMap<(Uuid, String), ClientMessages>>,
}

/// One client's message queue.
#[derive(Default)]
struct ClientMessages {
    last_sequence: u64,
    entries: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    /// Id -> sequence number, for the entries still queued.
    ids: HashMap<Vec<u8>, u64>,
    /// Ids acknowledged within the dedup window, with when.
    acked: HashMap<Vec<u8>, u64>,
}

impl ClientMessages {
    /// Appends `entry` unless `id` is still queued; answers its sequence number.
    fn enqueue(&mut self, id: &[u8], entry: &[u8], now: u64) -> u64 {
        if let Some(sequence) = self.ids.get(id) {
            return *sequence;
        }
        if self
            .acked
            .get(id)
            .is_some_and(|at| now.saturating_sub(*at) < super::DEDUP_WINDOW_SECS)
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

/// Outbound queues per peer and the per-peer notes of a follower. Commits queue their
/// fan-out while holding the group table, so both change in one step.
#[derive(Default)]
struct OutboundTable {
    queues: BTreeMap<String, std::collections::VecDeque<Vec<u8>>>,
    notes: HashMap<(String, String), Vec<u8>>,
    /// Peer -> (holder, until).
    leases: HashMap<String, (String, Instant)>,
}

impl OutboundTable {
    /// Appends each peer's bodies to its queue, together.
    fn extend(&mut self, fanout: &[(String, Vec<Vec<u8>>)]) {
        for (peer, bodies) in fanout {
            self.queues
                .entry(peer.clone())
                .or_default()
                .extend(bodies.iter().cloned());
        }
    }
}

#[derive(Default)]
struct GroupTable {
    groups: HashMap<(Uuid, Vec<u8>), MemoryGroup>,
    /// (app, handle) -> the client's welcome references, oldest first.
    welcome_index: HashMap<(Uuid, String), Vec<WelcomeReference>>,
}

struct WelcomeReference {
    id: Uuid,
    group_id: Vec<u8>,
    epoch: u64,
    expires_at: u64,
}

struct MemoryGroup {
    epoch: u64,
    hub: Option<String>,
    state: PublicState,
    proposals: Vec<HeldProposal>,
    /// Epoch -> its control messages (epoch 0 has none).
    epochs: BTreeMap<u64, Vec<Vec<u8>>>,
    /// Epochs `1..=pruned` no longer have their control messages.
    pruned: u64,
    group_info: Option<Vec<u8>>,
    /// Epoch -> the welcome into it, with the recipients that have not acknowledged it.
    welcomes: BTreeMap<u64, MemoryWelcome>,
}

struct MemoryWelcome {
    id: Uuid,
    packet: Vec<u8>,
    ratchet_tree: Vec<u8>,
    pending: BTreeSet<String>,
    expires_at: u64,
}

#[derive(Default)]
struct KeyQueueTable {
    queues: HashMap<Uuid, MemoryKeyQueue>,
    /// (app, client) -> attributes field -> queue id.
    index: HashMap<(Uuid, Uuid), HashMap<String, Uuid>>,
    /// Clients being deleted: no queue operation succeeds on them any more.
    retired: HashSet<Uuid>,
}

impl KeyQueueTable {
    /// Deletes the package `reference` from whichever of the client's queues holds it.
    fn advance(&mut self, app: Uuid, client: Uuid, reference: &[u8]) -> bool {
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

struct MemoryKeyQueue {
    app: Uuid,
    client: Uuid,
    attributes: KeyQueueAttributes,
    /// reference -> (not_after, bytes)
    packages: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    /// Unassigned packages in retrieval order.
    free: BTreeSet<(u64, Vec<u8>)>,
    assigned_to: HashMap<String, Vec<u8>>,
    assigned_by: HashMap<Vec<u8>, String>,
    final_key: Option<(u64, Vec<u8>)>,
}

impl MemoryKeyQueue {
    fn remove(&mut self, reference: &[u8]) -> bool {
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
    fn purge_expired(&mut self, now: u64) {
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

    fn clear(&mut self) {
        self.packages.clear();
        self.free.clear();
        self.assigned_to.clear();
        self.assigned_by.clear();
    }
}

/// One application's clients with their handle and tag indexes.
#[derive(Default)]
struct AppRegistry {
    clients: HashMap<Uuid, Client>,
    /// Ordered, so the clients of an account (a handle prefix) are one range.
    handles: BTreeMap<String, Uuid>,
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
    async fn record_request(
        &self,
        sender: &str,
        request_id: &[u8; 16],
        ttl: Duration,
        window: Option<RequestWindow<'_>>,
    ) -> Result<Option<u64>, StoreError> {
        let now = Instant::now();
        {
            let mut table = self.replay.lock().map_err(|_| poisoned())?;
            table.sweep_if_grown(now);
            let entry = table
                .expiries
                .entry((sender.to_owned(), *request_id))
                .or_insert(now);
            if *entry > now {
                return Ok(None);
            }
            *entry = now + ttl;
        }
        match window {
            None => Ok(Some(0)),
            Some(window) => Ok(Some(self.rate_windows()?.count(
                sender,
                window.name,
                &window,
            ))),
        }
    }
}

/// Counters per (scope, name): the window they count in, their count, and when their window
/// ends (Unix seconds; windows of several lengths share the table).
#[derive(Default)]
struct RateWindows {
    counters: HashMap<(String, String), (u64, u64, u64)>,
    swept_at_len: usize,
}

impl RateWindows {
    fn count(&mut self, scope: &str, name: &str, window: &RequestWindow<'_>) -> u64 {
        let index = window.index();
        let now = window.now;
        if self.counters.len() >= (self.swept_at_len * 2).max(1024) {
            self.counters.retain(|_, (_, _, ends)| *ends > now);
            self.swept_at_len = self.counters.len();
        }
        let ends = now + window.remaining_secs();
        let counter = self
            .counters
            .entry((scope.to_owned(), name.to_owned()))
            .or_insert((index, 0, ends));
        if counter.0 != index {
            *counter = (index, 0, ends);
        }
        counter.1 += 1;
        counter.1
    }
}

#[async_trait]
impl RateCounters for MemoryStore {
    async fn count_in_window(
        &self,
        scope: &str,
        names: &[&str],
        window_secs: u64,
        now: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut windows = self.rate_windows()?;
        Ok(names
            .iter()
            .map(|name| {
                let window = RequestWindow {
                    name,
                    window_secs,
                    now,
                };
                windows.count(scope, name, &window)
            })
            .collect())
    }
}

impl MemoryStore {
    fn rate_windows(&self) -> Result<std::sync::MutexGuard<'_, RateWindows>, StoreError> {
        self.rate_windows.lock().map_err(|_| poisoned())
    }

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

impl MemoryStore {
    fn key_queue_table(&self) -> Result<std::sync::MutexGuard<'_, KeyQueueTable>, StoreError> {
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
        // Every check before any change: the update is all or nothing.
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
        found.purge_expired(now);
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
    fn outbound_table(&self) -> Result<std::sync::MutexGuard<'_, OutboundTable>, StoreError> {
        self.outbound.lock().map_err(|_| poisoned())
    }

    fn group_table(&self) -> Result<std::sync::MutexGuard<'_, GroupTable>, StoreError> {
        self.groups.lock().map_err(|_| poisoned())
    }
}

/// Stores a welcome into `epoch` and indexes it for each recipient.
fn register_welcome(
    group: &mut MemoryGroup,
    welcome_index: &mut HashMap<(Uuid, String), Vec<WelcomeReference>>,
    app: Uuid,
    group_id: &[u8],
    epoch: u64,
    welcome: &WelcomeRecord,
) {
    group.welcomes.insert(
        epoch,
        MemoryWelcome {
            id: welcome.id,
            packet: welcome.packet.clone(),
            ratchet_tree: welcome.ratchet_tree.clone(),
            pending: welcome.recipients.iter().cloned().collect(),
            expires_at: welcome.expires_at,
        },
    );
    // One reference per handle, however often it is among the recipients (as on Redis,
    // whose index entries are appended only if absent).
    let handles: BTreeSet<&String> = welcome.recipients.iter().collect();
    for handle in handles {
        welcome_index
            .entry((app, handle.clone()))
            .or_default()
            .push(WelcomeReference {
                id: welcome.id,
                group_id: group_id.to_vec(),
                epoch,
                expires_at: welcome.expires_at,
            });
    }
}

#[async_trait]
impl Groups for MemoryStore {
    async fn create_group(&self, app: Uuid, group: &NewGroup) -> Result<(), GroupStoreError> {
        let mut table = self.group_table()?;
        let key = (app, group.group_id.clone());
        if table.groups.contains_key(&key) {
            return Err(GroupStoreError::GroupExists);
        }
        table.groups.insert(
            key,
            MemoryGroup {
                epoch: group.epoch,
                hub: group.hub.clone(),
                state: group.state.clone(),
                proposals: Vec::new(),
                epochs: BTreeMap::new(),
                pruned: 0,
                group_info: Some(group.group_info.clone()),
                welcomes: BTreeMap::new(),
            },
        );
        Ok(())
    }

    async fn group_head(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<GroupHead>, StoreError> {
        Ok(self
            .group_table()?
            .groups
            .get(&(app, group_id.to_vec()))
            .map(|group| GroupHead {
                epoch: group.epoch,
                proposals: group.proposals.len(),
            }))
    }

    async fn group_hub(&self, app: Uuid, group_id: &[u8]) -> Result<Option<String>, StoreError> {
        Ok(self
            .group_table()?
            .groups
            .get(&(app, group_id.to_vec()))
            .and_then(|group| group.hub.clone()))
    }

    async fn add_welcome(
        &self,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        welcome: &WelcomeRecord,
    ) -> Result<(), GroupStoreError> {
        let mut table = self.group_table()?;
        let GroupTable {
            groups,
            welcome_index,
        } = &mut *table;
        let group = groups
            .get_mut(&(app, group_id.to_vec()))
            .ok_or(GroupStoreError::UnknownGroup)?;
        if group
            .welcomes
            .get(&epoch)
            .is_some_and(|stored| stored.id == welcome.id)
        {
            return Ok(());
        }
        register_welcome(group, welcome_index, app, group_id, epoch, welcome);
        Ok(())
    }

    async fn load_group(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<StoredGroup>, StoreError> {
        Ok(self
            .group_table()?
            .groups
            .get(&(app, group_id.to_vec()))
            .map(|group| StoredGroup {
                epoch: group.epoch,
                state: group.state.clone(),
                proposals: group.proposals.clone(),
            }))
    }

    async fn add_proposal(
        &self,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        proposal: &HeldProposal,
        fanout: &[(String, Vec<Vec<u8>>)],
    ) -> Result<usize, GroupStoreError> {
        let mut table = self.group_table()?;
        let group = table
            .groups
            .get_mut(&(app, group_id.to_vec()))
            .ok_or(GroupStoreError::UnknownGroup)?;
        if group.epoch != epoch {
            return Err(GroupStoreError::StaleEpoch {
                current: group.epoch,
            });
        }
        if group
            .proposals
            .iter()
            .any(|held| held.reference == proposal.reference)
        {
            return Err(GroupStoreError::DuplicateProposal);
        }
        // Queued while the group table is held: one step with the proposal (the lock is
        // taken first, so a poisoned one changes nothing).
        let mut outbound = self.outbound_table()?;
        group.proposals.push(proposal.clone());
        outbound.extend(fanout);
        Ok(group.proposals.len())
    }

    async fn route_message(
        &self,
        app: Uuid,
        group_id: &[u8],
        recipients: &[String],
        id: &[u8],
        entry: &[u8],
        fanout: &[(String, Vec<Vec<u8>>)],
        now: u64,
    ) -> Result<(), GroupStoreError> {
        let table = self.group_table()?;
        if !table.groups.contains_key(&(app, group_id.to_vec())) {
            return Err(GroupStoreError::UnknownGroup);
        }
        let mut messages = self.messages.lock().map_err(|_| poisoned())?;
        let mut outbound = self.outbound_table()?;
        for handle in recipients {
            messages
                .entry((app, handle.clone()))
                .or_default()
                .enqueue(id, entry, now);
        }
        outbound.extend(fanout);
        Ok(())
    }

    async fn proposals(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(self
            .group_table()?
            .groups
            .get(&(app, group_id.to_vec()))
            .map(|group| {
                group
                    .proposals
                    .iter()
                    .map(|held| held.packet.clone())
                    .collect()
            }))
    }

    async fn apply_commit(
        &self,
        app: Uuid,
        group_id: &[u8],
        commit: &CommitRecord,
    ) -> Result<u64, GroupStoreError> {
        let mut table = self.group_table()?;
        let GroupTable {
            groups,
            welcome_index,
        } = &mut *table;
        let group = groups
            .get_mut(&(app, group_id.to_vec()))
            .ok_or(GroupStoreError::UnknownGroup)?;
        if group.epoch != commit.from_epoch {
            return Err(GroupStoreError::StaleEpoch {
                current: group.epoch,
            });
        }
        // Locks first: the only step that can fail (a poisoned lock), so a failure leaves
        // everything untouched.
        let mut outbound = self.outbound_table()?;
        {
            let mut queues = self.key_queue_table()?;
            for (client, reference) in &commit.used_key_packages {
                queues.advance(app, *client, reference);
            }
        }
        outbound.extend(&commit.fanout);
        let epoch = group.epoch + 1;
        group.epoch = epoch;
        group.state.apply(&commit.change);
        group.proposals.clear();
        group.epochs.insert(epoch, commit.messages.clone());
        if commit.retained_epochs > 0 && epoch > commit.retained_epochs {
            group.pruned = group.pruned.max(epoch - commit.retained_epochs);
            let kept = group.epochs.split_off(&(group.pruned + 1));
            group.epochs = kept;
        }
        group.group_info = commit.group_info.clone();
        group
            .welcomes
            .retain(|_, welcome| welcome.expires_at > commit.now);
        for welcome in group.welcomes.values_mut() {
            for handle in &commit.removed_handles {
                welcome.pending.remove(handle);
            }
        }
        group
            .welcomes
            .retain(|_, welcome| !welcome.pending.is_empty());
        if let Some(welcome) = &commit.welcome {
            register_welcome(group, welcome_index, app, group_id, epoch, welcome);
        }
        Ok(epoch)
    }

    async fn control_messages(
        &self,
        app: Uuid,
        group_id: &[u8],
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<Vec<u8>>, GroupStoreError> {
        let table = self.group_table()?;
        let group = table
            .groups
            .get(&(app, group_id.to_vec()))
            .ok_or(GroupStoreError::UnknownGroup)?;
        let end = end.unwrap_or(group.epoch);
        if start > end || end > group.epoch {
            return Err(GroupStoreError::EpochOutOfRange {
                current: group.epoch,
            });
        }
        if group.pruned > 0 && start <= group.pruned {
            return Err(GroupStoreError::EpochPruned {
                pruned: group.pruned,
                current: group.epoch,
            });
        }
        Ok(group
            .epochs
            .range(start..=end)
            .flat_map(|(_, messages)| messages.iter().cloned())
            .collect())
    }

    async fn current_group_info(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<CurrentGroupInfo>, StoreError> {
        Ok(self
            .group_table()?
            .groups
            .get(&(app, group_id.to_vec()))
            .map(|group| CurrentGroupInfo {
                group_info: group.group_info.clone(),
                ratchet_tree: group.state.ratchet_tree(),
            }))
    }

    async fn delete_group(&self, app: Uuid, group_id: &[u8]) -> Result<bool, StoreError> {
        // Welcome references of its recipients find no group and are dropped when read.
        Ok(self
            .group_table()?
            .groups
            .remove(&(app, group_id.to_vec()))
            .is_some())
    }

    async fn welcomes(
        &self,
        app: Uuid,
        handle: &str,
        now: u64,
    ) -> Result<Vec<PendingWelcome>, StoreError> {
        let mut table = self.group_table()?;
        let GroupTable {
            groups,
            welcome_index,
        } = &mut *table;
        let Some(references) = welcome_index.get_mut(&(app, handle.to_owned())) else {
            return Ok(Vec::new());
        };
        let mut pending = Vec::new();
        // References whose welcome is gone (expired, or the client was removed) are dropped.
        references.retain(|reference| {
            let welcome = groups
                .get(&(app, reference.group_id.clone()))
                .and_then(|group| group.welcomes.get(&reference.epoch))
                .filter(|welcome| {
                    welcome.id == reference.id
                        && welcome.pending.contains(handle)
                        && reference.expires_at > now
                });
            if let Some(welcome) = welcome {
                pending.push(PendingWelcome {
                    id: welcome.id,
                    group_id: reference.group_id.clone(),
                    epoch: reference.epoch,
                    packet: welcome.packet.clone(),
                    ratchet_tree: welcome.ratchet_tree.clone(),
                });
            }
            welcome.is_some()
        });
        Ok(pending)
    }

    async fn acknowledge_welcome(
        &self,
        app: Uuid,
        handle: &str,
        welcome: Uuid,
    ) -> Result<bool, StoreError> {
        let mut table = self.group_table()?;
        let GroupTable {
            groups,
            welcome_index,
        } = &mut *table;
        let Some(references) = welcome_index.get_mut(&(app, handle.to_owned())) else {
            return Ok(false);
        };
        let Some(position) = references
            .iter()
            .position(|reference| reference.id == welcome)
        else {
            return Ok(false);
        };
        let reference = references.remove(position);
        if let Some(group) = groups.get_mut(&(app, reference.group_id.clone()))
            && let Some(stored) = group.welcomes.get_mut(&reference.epoch)
            && stored.id == welcome
        {
            stored.pending.remove(handle);
            if stored.pending.is_empty() {
                group.welcomes.remove(&reference.epoch);
            }
        }
        Ok(true)
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
            .retain(|_, at| now.saturating_sub(*at) < super::DEDUP_WINDOW_SECS);
        Ok(removed.len() as u64)
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
