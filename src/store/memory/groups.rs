//! Groups, their proposals, commits and Welcomes in memory (`Groups`): the reference model
//! of the trait's contract.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use uuid::Uuid;

use crate::mls::group_state::PublicState;

use super::outbound::OutboundTable;
use super::{MemoryStore, poisoned};
use crate::store::{
    CommitRecord, CurrentGroupInfo, GroupHead, GroupStoreError, Groups, HeldProposal, NewGroup,
    PendingWelcome, StoreError, StoredGroup, WelcomeRecord,
};

#[derive(Default)]
pub(super) struct GroupTable {
    pub(super) groups: HashMap<(Uuid, Vec<u8>), MemoryGroup>,
    /// (app, handle) -> the client's welcome references, oldest first.
    pub(super) welcome_index: HashMap<(Uuid, String), Vec<WelcomeReference>>,
}

pub(super) struct WelcomeReference {
    pub(super) id: Uuid,
    pub(super) group_id: Vec<u8>,
    pub(super) epoch: u64,
    pub(super) expires_at: u64,
}

pub(super) struct MemoryGroup {
    pub(super) epoch: u64,
    pub(super) hub: Option<String>,
    pub(super) state: PublicState,
    pub(super) proposals: Vec<HeldProposal>,
    /// Epoch -> its control messages (epoch 0 has none).
    pub(super) epochs: BTreeMap<u64, Vec<Vec<u8>>>,
    /// Epochs `1..=pruned` no longer have their control messages.
    pub(super) pruned: u64,
    pub(super) group_info: Option<Vec<u8>>,
    /// Epoch -> the welcome into it, with the recipients that have not acknowledged it.
    pub(super) welcomes: BTreeMap<u64, MemoryWelcome>,
}

pub(super) struct MemoryWelcome {
    pub(super) id: Uuid,
    pub(super) packet: Vec<u8>,
    pub(super) ratchet_tree: Vec<u8>,
    pub(super) pending: BTreeSet<String>,
    pub(super) expires_at: u64,
}

impl MemoryStore {
    pub(super) fn outbound_table(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, OutboundTable>, StoreError> {
        self.outbound.lock().map_err(|_| poisoned())
    }

    pub(super) fn group_table(&self) -> Result<std::sync::MutexGuard<'_, GroupTable>, StoreError> {
        self.groups.lock().map_err(|_| poisoned())
    }
}

/// Stores a welcome into `epoch` and indexes it for each recipient.
pub(super) fn register_welcome(
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

    async fn pending_welcomes(
        &self,
        app: Uuid,
        group_id: &[u8],
        now: u64,
    ) -> Result<usize, StoreError> {
        Ok(self
            .group_table()?
            .groups
            .get(&(app, group_id.to_vec()))
            .map_or(0, |group| {
                group
                    .welcomes
                    .values()
                    .filter(|welcome| welcome.expires_at > now && !welcome.pending.is_empty())
                    .count()
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
