//! State of the gateway behind one async `Store` trait, grouped by concern, with two
//! implementations of one behaviour: `redis` (production; single node or Cluster) and
//! `memory` (the embedded default for a first run).
//!
//! DESIGN.md "State": every multi-key change is atomic (one Lua script in Redis), and every
//! Redis key carries a hash tag so each script touches one slot of a Cluster.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

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

/// Reachability, for `/readyz`.
#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything the gateway keeps. Later concerns (registry, key queues, groups) join here.
pub trait Store: ReplayCache + Health {
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
