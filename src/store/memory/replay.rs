//! Replay records and rate counters in memory (`ReplayCache`, `RateCounters`): the
//! reference model of the traits' contracts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{MemoryStore, poisoned};
use crate::store::{RateCounters, ReplayCache, RequestWindow, StoreError};

#[derive(Default)]
pub(super) struct ReplayTable {
    pub(super) expiries: HashMap<(String, [u8; 16]), Instant>,
    /// Size after the last sweep; the next sweep runs when the table has doubled, so pruning
    /// costs O(1) amortized per insert.
    pub(super) swept_at_len: usize,
}

impl ReplayTable {
    pub(super) fn sweep_if_grown(&mut self, now: Instant) {
        if self.expiries.len() >= (self.swept_at_len * 2).max(1024) {
            self.expiries.retain(|_, expiry| *expiry > now);
            self.swept_at_len = self.expiries.len();
        }
    }
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
pub(super) struct RateWindows {
    pub(super) counters: HashMap<(String, String), (u64, u64, u64)>,
    pub(super) swept_at_len: usize,
}

impl RateWindows {
    pub(super) fn count(&mut self, scope: &str, name: &str, window: &RequestWindow<'_>) -> u64 {
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
