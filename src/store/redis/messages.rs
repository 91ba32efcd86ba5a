//! Client message queues in Redis (issue 7, "Queues and delivery that lose nothing"): each
//! client's queue under its own hash tag, `mimi:{q:<app>:<hex handle>}:...`, so every script
//! touches one slot of a Cluster:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `...:seq` | string | the last sequence number handed out |
//! | `...:entries` | hash | sequence number -> entry |
//! | `...:order` | sorted set | queued sequence numbers (score = sequence number) |
//! | `...:ids` | hash | message id -> sequence number, while queued |
//! | `...:id-of` | hash | sequence number -> message id |
//! | `...:acked` | sorted set | ids acknowledged within the dedup window (score = Unix time) |

use async_trait::async_trait;
use uuid::Uuid;

use super::RedisStore;
use crate::store::{MessageQueues, QueuedMessage, StoreError};

fn keys(app: Uuid, handle: &str) -> [String; 6] {
    let prefix = format!("mimi:{{q:{app}:{}}}:", hex::encode(handle.as_bytes()));
    ["seq", "entries", "order", "ids", "id-of", "acked"].map(|name| format!("{prefix}{name}"))
}

/// KEYS: seq, entries, order, ids, id-of, acked. ARGV: id, entry, dedup window (seconds),
/// now (the gateway's clock).
/// Returns the sequence number, 0 for an id acknowledged within the window.
pub(super) const ENQUEUE_MESSAGE: &str = include_str!("lua/enqueue_message.lua");

/// KEYS: entries, order. ARGV: from, limit. Returns sequence, entry, sequence, entry, ...
pub(super) const QUEUED_MESSAGES: &str = include_str!("lua/queued_messages.lua");

/// KEYS: entries, order, ids, id-of, acked. ARGV: up_to, dedup window (seconds), now (the
/// gateway's clock). Returns how many entries went; their ids are remembered for the window,
/// as acknowledged at `now`.
pub(super) const ACKNOWLEDGE_MESSAGES: &str = include_str!("lua/acknowledge_messages.lua");

/// A message's copies sent to Redis at once (`enqueue_messages`).
const ENQUEUE_SIDE_BY_SIDE: usize = 128;

#[async_trait]
impl MessageQueues for RedisStore {
    async fn enqueue_message(
        &self,
        app: Uuid,
        handle: &str,
        id: &[u8],
        entry: &[u8],
        now: u64,
    ) -> Result<u64, StoreError> {
        let keys = keys(app, handle);
        let script = &self.scripts.enqueue_message;
        self.run(|mut connection| async move {
            script
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .key(&keys[3])
                .key(&keys[4])
                .key(&keys[5])
                .arg(id)
                .arg(entry)
                .arg(crate::store::DEDUP_WINDOW_SECS)
                .arg(now)
                .invoke_async(&mut connection)
                .await
        })
        .await
    }

    /// Side by side, at most `ENQUEUE_SIDE_BY_SIDE` at once: on the multiplexed connection
    /// they go out together instead of one round trip per member (each queue is its own
    /// slot, so one script cannot take them all on a Cluster).
    async fn enqueue_messages(
        &self,
        app: Uuid,
        handles: &[String],
        id: &[u8],
        entry: &[u8],
        now: u64,
    ) -> Result<(), StoreError> {
        for chunk in handles.chunks(ENQUEUE_SIDE_BY_SIDE) {
            futures_util::future::try_join_all(
                chunk
                    .iter()
                    .map(|handle| self.enqueue_message(app, handle, id, entry, now)),
            )
            .await?;
        }
        Ok(())
    }

    async fn queued_messages(
        &self,
        app: Uuid,
        handle: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let keys = keys(app, handle);
        let script = &self.scripts.queued_messages;
        let flat: Vec<Vec<u8>> = self
            .run(|mut connection| async move {
                script
                    .key(&keys[1])
                    .key(&keys[2])
                    .arg(from)
                    .arg(limit)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        flat.chunks(2)
            .map(|pair| match pair {
                [sequence, entry] => Ok(QueuedMessage {
                    sequence: std::str::from_utf8(sequence)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .ok_or_else(|| {
                            StoreError::Unavailable("a queued sequence number is malformed".into())
                        })?,
                    entry: entry.clone(),
                }),
                _ => Err(StoreError::Unavailable("a queue reply is malformed".into())),
            })
            .collect()
    }

    async fn acknowledge_messages(
        &self,
        app: Uuid,
        handle: &str,
        up_to: u64,
        now: u64,
    ) -> Result<u64, StoreError> {
        let keys = keys(app, handle);
        let script = &self.scripts.acknowledge_messages;
        self.run(|mut connection| async move {
            script
                .key(&keys[1])
                .key(&keys[2])
                .key(&keys[3])
                .key(&keys[4])
                .key(&keys[5])
                .arg(up_to)
                .arg(crate::store::DEDUP_WINDOW_SECS)
                .arg(now)
                .invoke_async(&mut connection)
                .await
        })
        .await
    }
}
