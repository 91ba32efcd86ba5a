//! Outbound federation queues in Redis (issue 7, "Queues and delivery that lose nothing"):
//! one list per peer under its own hash tag (`mimi:{o:<hex peer>}:queue`), so each peer's
//! queue is one slot of a Cluster, and the set `mimi:outbound-peers` of peers to visit.
//! A commit's fan-out reaches the list through the group's outbox (see `groups`). One walker
//! at a time holds the queue's lease (`mimi:{o:<hex peer>}:lease`, the holder's id, with a
//! TTL).

use async_trait::async_trait;

use super::RedisStore;
use crate::store::{NextDelivery, OutboundQueues, StoreError};

const OUTBOUND_PEERS: &str = "mimi:outbound-peers";

fn peer_prefix(peer: &str) -> String {
    format!("mimi:{{o:{}}}:", hex::encode(peer.as_bytes()))
}

/// KEYS: queue. ARGV: body. Removes the head if it is `body`. Returns 1 if removed.
pub(super) const POP_OUTBOUND: &str = include_str!("lua/pop_outbound.lua");

/// KEYS: the queue's lease. ARGV: holder, ttl in milliseconds. Returns 1 if the holder holds
/// the lease now (taken or renewed).
pub(super) const LEASE_OUTBOUND: &str = include_str!("lua/lease_outbound.lua");

/// KEYS: the queue, its lease. ARGV: body, holder, ttl in milliseconds. Pops the head if it
/// is `body`, takes or renews the lease; returns {1, next head}, {1} when empty, {0} if
/// another holds the lease.
pub(super) const POP_AND_NEXT: &str = include_str!("lua/pop_and_next.lua");

/// KEYS: the queue's lease. ARGV: holder. Deletes the lease if the holder holds it.
pub(super) const RELEASE_OUTBOUND: &str = include_str!("lua/release_outbound.lua");

#[async_trait]
impl OutboundQueues for RedisStore {
    async fn lease_outbound(
        &self,
        peer: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let key = format!("{}lease", peer_prefix(peer));
        let script = &self.scripts.lease_outbound;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .run(|mut connection| async move {
                script
                    .key(key)
                    .arg(holder)
                    .arg(millis)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        Ok(held == 1)
    }

    async fn pop_and_next(
        &self,
        peer: &str,
        body: &[u8],
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<NextDelivery, StoreError> {
        let prefix = peer_prefix(peer);
        let script = &self.scripts.pop_and_next;
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Vec<redis::Value> = self
            .run(|mut connection| async move {
                script
                    .key(format!("{prefix}queue"))
                    .key(format!("{prefix}lease"))
                    .arg(body)
                    .arg(holder)
                    .arg(millis)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        match reply.as_slice() {
            [redis::Value::Int(0)] => Ok(NextDelivery::LeaseLost),
            [redis::Value::Int(1)] => Ok(NextDelivery::Empty),
            [redis::Value::Int(1), redis::Value::BulkString(head)] => {
                Ok(NextDelivery::Head(head.clone()))
            }
            _ => Err(StoreError::Unavailable(
                "unexpected reply from Redis: pop_and_next".into(),
            )),
        }
    }

    async fn release_outbound(&self, peer: &str, holder: &str) -> Result<(), StoreError> {
        let key = format!("{}lease", peer_prefix(peer));
        let script = &self.scripts.release_outbound;
        let _: i64 = self
            .run(|mut connection| async move {
                script
                    .key(key)
                    .arg(holder)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn enqueue_outbound(&self, peer: &str, bodies: &[Vec<u8>]) -> Result<(), StoreError> {
        if bodies.is_empty() {
            return Ok(());
        }
        // Listed first, so a peer with deliveries is always found by the delivery loop.
        let _: i64 = self
            .command(
                "SADD",
                vec![OUTBOUND_PEERS.as_bytes().to_vec(), peer.as_bytes().to_vec()],
            )
            .await?;
        let mut args = vec![format!("{}queue", peer_prefix(peer)).into_bytes()];
        args.extend(bodies.iter().cloned());
        let _: i64 = self.command("RPUSH", args).await?;
        Ok(())
    }

    async fn outbound_head(&self, peer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.command(
            "LINDEX",
            vec![
                format!("{}queue", peer_prefix(peer)).into_bytes(),
                b"0".to_vec(),
            ],
        )
        .await
    }

    async fn outbound_len(&self, peer: &str) -> Result<u64, StoreError> {
        self.command(
            "LLEN",
            vec![format!("{}queue", peer_prefix(peer)).into_bytes()],
        )
        .await
    }

    async fn pop_outbound(&self, peer: &str, body: &[u8]) -> Result<(), StoreError> {
        let key = format!("{}queue", peer_prefix(peer));
        let script = &self.scripts.pop_outbound;
        let _: i64 = self
            .run(|mut connection| async move {
                script
                    .key(key)
                    .arg(body)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn outbound_peers(&self) -> Result<Vec<String>, StoreError> {
        // Peers stay in the set once they had a delivery (a handful of federating peers):
        // removing an empty one could race with an enqueue on another process and strand
        // its queue, since the set and the queue live in different slots.
        let peers: Vec<String> = self
            .command("SMEMBERS", vec![OUTBOUND_PEERS.as_bytes().to_vec()])
            .await?;
        let mut waiting = Vec::with_capacity(peers.len());
        for peer in peers {
            let length: i64 = self
                .command(
                    "LLEN",
                    vec![format!("{}queue", peer_prefix(&peer)).into_bytes()],
                )
                .await?;
            if length > 0 {
                waiting.push(peer);
            }
        }
        Ok(waiting)
    }

    async fn set_peer_note(&self, peer: &str, name: &str, note: &[u8]) -> Result<(), StoreError> {
        let key = format!("{}note:{name}", peer_prefix(peer)).into_bytes();
        if note.is_empty() {
            let _: i64 = self.command("DEL", vec![key]).await?;
        } else {
            let _: () = self.command("SET", vec![key, note.to_vec()]).await?;
        }
        Ok(())
    }

    async fn peer_note(&self, peer: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.command(
            "GET",
            vec![format!("{}note:{name}", peer_prefix(peer)).into_bytes()],
        )
        .await
    }
}
