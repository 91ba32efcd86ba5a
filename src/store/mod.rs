//! State of the gateway behind one async `Store` trait, grouped by concern, with two
//! implementations of one behaviour: `redis` (production; single node or Cluster) and
//! `memory` (the embedded default for a first run).
//!
//! DESIGN.md "State": every multi-key change is atomic (one Lua script in Redis), and every
//! Redis key carries a hash tag so each script touches one slot of a Cluster.

pub mod memory;
pub mod redis;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::StoreConfig;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time; nothing was changed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The replay cache of the signed-request envelope (DESIGN.md "Peer and application
/// authentication": "request id unseen (replay cache in the store, with TTL)").
#[async_trait]
pub trait ReplayCache: Send + Sync {
    /// Records that `sender` used `request_id`; `false` when it was already recorded within
    /// `ttl`. Check and record are one atomic step.
    async fn record_request_id(
        &self,
        sender: &str,
        request_id: &[u8; 16],
        ttl: Duration,
    ) -> Result<bool, StoreError>;
}

/// A registered client (architecture draft, "Managing Identities").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: Uuid,
    pub handle: String,
    pub tags: BTreeSet<String>,
}

/// A change to a client: a new handle (or none), tags to add and tags to remove (disjoint).
#[derive(Debug, Clone, Default)]
pub struct ClientChange {
    pub handle: Option<String>,
    pub add: BTreeSet<String>,
    pub remove: BTreeSet<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("no such client")]
    UnknownClient,
    #[error("client handle already taken")]
    HandleTaken,
    #[error("too many tags")]
    TooManyTags,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The client registry of one gateway: clients per application, unique handles, and an
/// index per tag so discovery never scans. Every change is atomic.
#[async_trait]
pub trait ClientRegistry: Send + Sync {
    /// Registers a new client; `HandleTaken` if another client of `app` has its handle.
    async fn register_client(&self, app: Uuid, client: &Client) -> Result<(), RegistryError>;

    /// Applies `change` atomically: all of it or nothing. The client may end with at most
    /// `max_tags` tags.
    async fn update_client(
        &self,
        app: Uuid,
        client: Uuid,
        change: &ClientChange,
        max_tags: usize,
    ) -> Result<Client, RegistryError>;

    async fn client(&self, app: Uuid, client: Uuid) -> Result<Option<Client>, StoreError>;

    /// Every client of `app` carrying `tag`, ordered by handle.
    async fn clients_with_tag(&self, app: Uuid, tag: &str) -> Result<Vec<Client>, StoreError>;

    /// Removes the client, its handle and its tag index entries; `false` if it did not exist.
    async fn delete_client(&self, app: Uuid, client: Uuid) -> Result<bool, StoreError>;
}

/// Reachability, for `/readyz`.
#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything the gateway keeps. Later concerns (registry, key queues, groups) join here.
pub trait Store: ReplayCache + ClientRegistry + Health {
    /// A short description for the start-up banner and logs.
    fn describe(&self) -> String;
}

pub type SharedStore = Arc<dyn Store>;

/// Builds the store the configuration asks for.
pub async fn open(config: &StoreConfig) -> Result<SharedStore, StoreError> {
    let timeout = Duration::from_millis(config.command_timeout_ms);
    if let Some(url) = &config.redis_url {
        Ok(Arc::new(
            redis::RedisStore::connect_single(url, timeout).await?,
        ))
    } else if !config.redis_cluster_urls.is_empty() {
        Ok(Arc::new(
            redis::RedisStore::connect_cluster(&config.redis_cluster_urls, timeout).await?,
        ))
    } else {
        Ok(Arc::new(memory::MemoryStore::default()))
    }
}
