//! Hot groups kept validated in memory, keyed by (application, group id) and checked against
//! the store's (epoch, proposal count) before use (DESIGN.md "MLS": the cache is only an
//! accelerator, the store decides; architecture draft "Group State"). A commit first tries
//! the copy unchecked, since its compare-and-set on the epoch decides anyway
//! ([`GroupCache::take_unchecked`]).
//!
//! A request takes its group out of the cache and puts it back only after the store accepted
//! the change, so a copy spoiled by a refused commit or a lost compare-and-set is dropped,
//! and two requests on one group never share a copy. Two gateways sharing a Redis never act
//! on a stale copy: the head check sees the other gateway's commits and proposals.
//!
//! Routing an application message only reads the group's member names: those are kept per
//! head and shared by the requests routing to the group side by side
//! ([`GroupCache::member_names`]), which would otherwise each restore the whole group while
//! another holds the copy (a 1000-member group's state is megabytes); their credentials are
//! checked again after `NAMES_FRESH` (10 s), since a certificate's validity ends in time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::mls::group::{ActiveGroup, GroupError};
use crate::mls::key_package::MemberRules;
use crate::mls::records::GroupHead;
use crate::store::{GroupStoreError, Store};

/// Why a group could not be checked out: the store (no such group, unavailable) or the
/// stored state (it no longer restores).
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Store(#[from] GroupStoreError),
    #[error(transparent)]
    Group(#[from] GroupError),
}

impl From<crate::store::StoreError> for CheckoutError {
    fn from(error: crate::store::StoreError) -> Self {
        CheckoutError::Store(error.into())
    }
}

/// A group's member names at one head.
/// Member names at a head, and when their credentials were checked.
type Names = (GroupHead, std::time::Instant, Arc<Vec<String>>);

/// How long member names checked once are taken as still valid at the same head: a
/// credential's validity depends on the time (an X.509 certificate's `notAfter`), so a
/// member whose certificate expires is refused at most this late. A 1000-member group's
/// credentials are checked at most once per this while messages are routed to it.
const NAMES_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

pub struct GroupCache {
    capacity: usize,
    groups: Mutex<HashMap<(Uuid, Vec<u8>), ActiveGroup>>,
    /// Member names per group, under the application's member rules (fixed for the
    /// process: applications' identity providers and the domain come from its config).
    names: Mutex<HashMap<(Uuid, Vec<u8>), Names>>,
}

impl GroupCache {
    pub fn new(capacity: usize) -> GroupCache {
        GroupCache {
            capacity,
            groups: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The names of the group's members (`ActiveGroup::member_names` under `rules`) and the
    /// group's epoch, as the store has them now: worked out once per head, then shared.
    pub async fn member_names(
        &self,
        store: &dyn Store,
        app: Uuid,
        group_id: &[u8],
        rules: &MemberRules<'_>,
    ) -> Result<(Arc<Vec<String>>, u64), CheckoutError> {
        let head = store
            .group_head(app, group_id)
            .await?
            .ok_or(GroupStoreError::UnknownGroup)?;
        let key = (app, group_id.to_vec());
        if let Some((known, checked, names)) = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            && *known == head
            && checked.elapsed() < NAMES_FRESH
        {
            return Ok((names.clone(), head.epoch));
        }
        let group = self.checkout(store, app, group_id).await?;
        // Every member's credential is checked: CPU work that grows with the group.
        let checked = std::time::Instant::now();
        let names = tokio::task::block_in_place(|| group.member_names(rules));
        let at = group.head();
        self.put(app, group_id, group);
        let names = Arc::new(names?);
        if self.capacity > 0 {
            let mut cached = self
                .names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cached.len() >= self.capacity
                && let Some(victim) = cached.keys().next().cloned()
            {
                cached.remove(&victim);
            }
            cached.insert(key, (at, checked, names.clone()));
        }
        Ok((names, at.epoch))
    }

    /// Keeps `group` for the next request; when full, an arbitrary other group makes room
    /// (cheap, and any loss is only a reload).
    pub fn put(&self, app: Uuid, group_id: &[u8], group: ActiveGroup) {
        if self.capacity == 0 {
            return;
        }
        let mut groups = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if groups.len() >= self.capacity
            && let Some(victim) = groups.keys().next().cloned()
        {
            groups.remove(&victim);
        }
        groups.insert((app, group_id.to_vec()), group);
    }

    /// The cached copy without asking the store, for a commit: the store's compare-and-set
    /// on the epoch decides anyway, and the state at one epoch is the same on every gateway
    /// (one winner per epoch), so a commit valid against a cached epoch that is still the
    /// store's is valid. A copy behind the store shows as a commit for a "future" epoch or a
    /// proposal it does not hold: the caller then checks out again with [`Self::checkout`].
    /// `None` when nothing is cached.
    pub fn take_unchecked(&self, app: Uuid, group_id: &[u8]) -> Option<ActiveGroup> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(app, group_id.to_vec()))
    }

    /// The group as the store has it now: the cached copy if its head matches, else
    /// restored from the store with `PublicGroup::load`.
    pub async fn checkout(
        &self,
        store: &dyn Store,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<ActiveGroup, CheckoutError> {
        let head = store
            .group_head(app, group_id)
            .await?
            .ok_or(GroupStoreError::UnknownGroup)?;
        if let Some(cached) = self.take_unchecked(app, group_id)
            && cached.head() == head
        {
            return Ok(cached);
        }
        let stored = store
            .load_group(app, group_id)
            .await?
            .ok_or(GroupStoreError::UnknownGroup)?;
        let group_id = group_id.to_vec();
        // Decoding a large tree is CPU work: keep it off the reactor's other tasks.
        Ok(tokio::task::block_in_place(|| {
            ActiveGroup::restore(&group_id, stored)
        })?)
    }
}

impl From<CheckoutError> for crate::error::GatewayError {
    fn from(error: CheckoutError) -> Self {
        match error {
            CheckoutError::Store(error) => crate::error::GatewayError::GroupStore(error),
            CheckoutError::Group(error) => crate::error::GatewayError::Group(error),
        }
    }
}
