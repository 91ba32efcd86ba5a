//! The embedded in-memory store: the default when no Redis is configured. State is lost at
//! exit; one process only. Same behaviour as the Redis store, checked by the same tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Health, ReplayCache, Store, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    // A std Mutex, not a tokio one: it is never held across an await.
    replay: Mutex<ReplayTable>,
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
