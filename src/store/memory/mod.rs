//! The embedded in-memory store: the default when no Redis is configured. State is lost at
//! exit; one process only. Split by concern like the Redis store (registry, key queues,
//! groups, messages, outbound, replay), each file the readable reference model of its
//! trait's contract (`store/mod.rs`), which the contract tests hold on memory, Redis and a
//! Redis Cluster alike.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use uuid::Uuid;

mod groups;
mod key_queues;
mod messages;
mod outbound;
mod registry;
mod replay;

use groups::GroupTable;
use key_queues::KeyQueueTable;
use messages::ClientMessages;
use outbound::OutboundTable;
use registry::AppRegistry;
use replay::{RateWindows, ReplayTable};

use super::{Health, Store, StoreError};

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

fn poisoned() -> StoreError {
    StoreError::Unavailable("memory store lock poisoned".into())
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory (embedded; all state is lost when the gateway exits)".into()
    }
}
