//! The replay cache and the rate counters in Redis: one key per (sender, request id) with a
//! TTL, and one per (caller, counter, window) living for its window. Both carry the caller as
//! hash tag, so a request's replay record and its rate count are one script on one slot.

use std::time::Duration;

use async_trait::async_trait;

use super::RedisStore;
use crate::store::{RateCounters, ReplayCache, RequestWindow, StoreError};

/// Records a request id unless present, and counts the request in its window.
/// KEYS[1]: the id's key; KEYS[2] (optional): the window's counter. ARGV[1]: the id's TTL in
/// seconds; ARGV[2]: the counter's. Returns -1 when already seen, else the count (0 without
/// a counter).
pub(super) const RECORD_REQUEST_ID: &str = include_str!("lua/record_request_id.lua");

/// Adds one to every counter in KEYS (all of one caller's slot); ARGV[1]: their TTL in
/// seconds. Returns the counts in order.
pub(super) const COUNT_IN_WINDOW: &str = include_str!("lua/count_in_window.lua");

pub(super) fn replay_key(sender: &str, request_id: &[u8; 16]) -> String {
    format!("mimi:replay:{{{sender}}}:{}", hex::encode(request_id))
}

pub(super) fn counter_key(scope: &str, window: &RequestWindow<'_>) -> String {
    format!(
        "mimi:rate:{{{scope}}}:{}:{}:{}",
        window.window_secs,
        window.index(),
        window.name
    )
}

#[async_trait]
impl ReplayCache for RedisStore {
    async fn record_request(
        &self,
        sender: &str,
        request_id: &[u8; 16],
        ttl: Duration,
        window: Option<RequestWindow<'_>>,
    ) -> Result<Option<u64>, StoreError> {
        let mut invocation = self.scripts.record_request_id.prepare_invoke();
        invocation
            .key(replay_key(sender, request_id))
            .arg(ttl.as_secs().max(1));
        if let Some(window) = &window {
            invocation
                .key(counter_key(sender, window))
                .arg(window.remaining_secs() + 1);
        }
        let recorded: i64 = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(u64::try_from(recorded).ok())
    }
}

#[async_trait]
impl RateCounters for RedisStore {
    async fn count_in_window(
        &self,
        scope: &str,
        names: &[&str],
        window_secs: u64,
        now: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut invocation = self.scripts.count_in_window.prepare_invoke();
        let mut ttl = 1;
        for name in names {
            let window = RequestWindow {
                name,
                window_secs,
                now,
            };
            ttl = window.remaining_secs() + 1;
            invocation.key(counter_key(scope, &window));
        }
        invocation.arg(ttl);
        let counts: Vec<u64> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keys_name_sender_and_id_under_the_senders_hash_tag() {
        let key = replay_key("peer:a.example", &[0xab; 16]);
        assert_eq!(
            key,
            format!("mimi:replay:{{peer:a.example}}:{}", "ab".repeat(16))
        );
    }

    #[test]
    fn counters_share_the_senders_hash_tag_and_name_their_window() {
        let window = RequestWindow {
            name: "requests:read",
            window_secs: 10,
            now: 1_000_005,
        };
        assert_eq!(
            counter_key("app:x", &window),
            "mimi:rate:{app:x}:10:100000:requests:read"
        );
        assert_eq!(window.remaining_secs(), 5);
    }
}
