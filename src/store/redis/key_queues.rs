//! Key queues in Redis: all of a client's queues share the hash tag `{c:<client>}`, so each
//! operation (create, update, retrieve, advance, delete) is one Lua script on one slot, and
//! clients spread over a Cluster.
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `mimi:{c:<client>}:queues:<app>` | hash | `<version>:<suite>:<label>` -> queue id |
//! | `mimi:{c:<client>}:retired` | string | the client is being deleted |
//! | `mimi:{c:<client>}:q:<queue>` | hash | app, version, suite, label, final, final_not_after, next_purge (at or before every stored package's `not_after`, free or assigned; `-` when there are none) |
//! | `mimi:{c:<client>}:q:<queue>:free` | zset | unassigned package refs by `not_after` |
//! | `mimi:{c:<client>}:q:<queue>:pkg` | hash | ref -> MLSMessage bytes (stored once) |
//! | `mimi:{c:<client>}:q:<queue>:assigned` | hash | `r` + receiver -> assigned ref; `p` + ref -> `<not_after> <receiver>` |
//!
//! A retrieval assigns a package with one `ZPOPMIN` and one `HSET` (issue 17: it wrote a
//! `taken` zset and two hashes before); an assigned package's expiry is found by a scan of
//! `assigned` when `next_purge` is due. Queues stored in the earlier layout (a `taken` zset,
//! `to` and `by` hashes, `purge_at`; no `next_purge`) are moved to this one by the first
//! script that touches them, and again when a process of the earlier release has touched
//! them since (a rolling upgrade: it writes `purge_at`), by `upgrade` in `lua/purge.lua`.

use async_trait::async_trait;
use redis::Value;
use uuid::Uuid;

use super::RedisStore;
use crate::store::{
    FreshAssignment, KeyQueueAttributes, KeyQueueError, KeyQueueUpdate, KeyQueues, RequestRecord,
    RequestWindow, Retrieval, RetrievedKeyPackage, StoreError, count_after_assignment,
};

/// The queue layout's helpers, shared by the scripts that read or change packages: moves a
/// queue of the earlier layout to this one (`upgrade`), names every key of a queue
/// (`queue_keys`), reads and forgets assignments (`receiver_of`, `unassign`), drops expired
/// packages (`not_after <= now`) once `next_purge` is due (nothing is read before) and
/// lowers `next_purge` when packages are added.
const PURGE: &str = include_str!("lua/purge.lua");

/// KEYS: index, queue hash, retired. ARGV: field, queue id, app, version, suite, label.
/// Returns -1 retired client, 0 attributes taken, 1 created.
pub(super) const CREATE_QUEUE: &str = include_str!("lua/create_queue.lua");

/// KEYS: queue hash. ARGV: app. Returns {} or {version, suite, label}.
pub(super) const READ_QUEUE: &str = include_str!("lua/read_queue.lua");

/// KEYS: queue hash, index, retired. ARGV: base, app, now, reset, has label, label,
/// has final, final bytes, final not_after, max packages, queue id, then (ref, not_after,
/// bytes) per package. Returns {-1} retired, {0} unknown queue, {2} label taken, {3} too
/// many packages, {1, count}.
pub(super) fn update_queue_script() -> String {
    format!("{PURGE}{}", include_str!("lua/update_queue.lua"))
}

/// KEYS: index, with a request record (single Redis only) its replay key and rate
/// counter, then the caller's fresh-assignment counters (single Redis only: on a Cluster
/// they live in another slot). ARGV: field, receiver, now, queue prefix, fresh ('1': a
/// package may be newly assigned), the counters' TTL, '1' with a request record, then its
/// replay TTL, its counter's TTL and its `work_up_to`. Returns {-1} replayed, {-2, count}
/// counted past `work_up_to` (both: nothing else done), {0} no queue,
/// {1, bytes, counts...} newly assigned package (each counter incremented),
/// {4, bytes} the package assigned before, {2, bytes} final key, {3} exhausted, {5} a fresh
/// package is there but `fresh` is off, and none was assigned before and no final key.
pub(super) fn retrieve_script() -> String {
    format!("{PURGE}{}", include_str!("lua/retrieve.lua"))
}

/// KEYS: index. ARGV: queue prefix, ref. Returns 1 if a queue held the package.
pub(super) fn advance_script() -> String {
    format!("{PURGE}{}", include_str!("lua/advance.lua"))
}

/// KEYS: queue hash, index. ARGV: base, app. Returns 1 when deleted.
pub(super) fn delete_queue_script() -> String {
    format!("{PURGE}{}", include_str!("lua/delete_queue.lua"))
}

/// KEYS: index, retired. ARGV: queue prefix.
pub(super) fn retire_client_script() -> String {
    format!("{PURGE}{}", include_str!("lua/retire_client.lua"))
}

struct QueueKeys {
    prefix: String,
}

impl QueueKeys {
    fn new(client: Uuid) -> QueueKeys {
        QueueKeys {
            prefix: format!("mimi:{{c:{client}}}:"),
        }
    }

    fn index(&self, app: Uuid) -> String {
        format!("{}queues:{app}", self.prefix)
    }

    fn retired(&self) -> String {
        format!("{}retired", self.prefix)
    }

    /// Prefix of every queue's keys; the queue id follows.
    fn queue_prefix(&self) -> String {
        format!("{}q:", self.prefix)
    }

    fn queue(&self, queue: Uuid) -> String {
        format!("{}q:{queue}", self.prefix)
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply from Redis: {what}"))
}

/// A script's `{status, payload?}` reply.
fn status_and_payload(reply: &[Value]) -> Result<(i64, Option<&Value>), StoreError> {
    match reply.first() {
        Some(Value::Int(status)) => Ok((*status, reply.get(1))),
        _ => Err(malformed("status")),
    }
}

#[async_trait]
impl KeyQueues for RedisStore {
    async fn create_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
        attributes: &KeyQueueAttributes,
    ) -> Result<(), KeyQueueError> {
        let keys = QueueKeys::new(client);
        let mut invocation = self.scripts.create_queue.prepare_invoke();
        invocation
            .key(keys.index(app))
            .key(keys.queue(queue))
            .key(keys.retired())
            .arg(attributes.field())
            .arg(queue.to_string())
            .arg(app.to_string())
            .arg(attributes.protocol_version)
            .arg(attributes.cipher_suite)
            .arg(&attributes.app_label);
        let created: i64 = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        match created {
            1 => Ok(()),
            0 => Err(KeyQueueError::QueueExists),
            _ => Err(KeyQueueError::UnknownClient),
        }
    }

    async fn key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    ) -> Result<Option<KeyQueueAttributes>, StoreError> {
        let keys = QueueKeys::new(client);
        let mut invocation = self.scripts.read_queue.prepare_invoke();
        invocation.key(keys.queue(queue)).arg(app.to_string());
        let fields: Vec<String> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        match fields.as_slice() {
            [] => Ok(None),
            [version, suite, label] => Ok(Some(KeyQueueAttributes {
                protocol_version: version.parse().map_err(|_| malformed("queue version"))?,
                cipher_suite: suite.parse().map_err(|_| malformed("queue suite"))?,
                app_label: label.clone(),
            })),
            _ => Err(malformed("queue attributes")),
        }
    }

    async fn update_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
        update: &KeyQueueUpdate,
        now: u64,
        max_packages: usize,
    ) -> Result<usize, KeyQueueError> {
        let keys = QueueKeys::new(client);
        let mut invocation = self.scripts.update_queue.prepare_invoke();
        let (final_bytes, final_not_after) = match &update.final_key {
            Some(final_key) => (final_key.bytes.as_slice(), final_key.not_after),
            None => (&[][..], 0),
        };
        invocation
            .key(keys.queue(queue))
            .key(keys.index(app))
            .key(keys.retired())
            .arg(keys.queue(queue))
            .arg(app.to_string())
            .arg(now)
            .arg(if update.reset { "1" } else { "0" })
            .arg(if update.app_label.is_some() { "1" } else { "0" })
            .arg(update.app_label.as_deref().unwrap_or(""))
            .arg(if update.final_key.is_some() { "1" } else { "0" })
            .arg(final_bytes)
            .arg(final_not_after)
            .arg(max_packages)
            .arg(queue.to_string());
        for package in &update.packages {
            invocation
                .arg(package.reference.as_slice())
                .arg(package.not_after)
                .arg(package.bytes.as_slice());
        }
        let reply: Vec<Value> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        match status_and_payload(&reply)? {
            (1, Some(Value::Int(count))) => {
                usize::try_from(*count).map_err(|_| malformed("count").into())
            }
            (0, _) => Err(KeyQueueError::UnknownQueue),
            (2, _) => Err(KeyQueueError::QueueExists),
            (3, _) => Err(KeyQueueError::TooManyPackages(max_packages)),
            (-1, _) => Err(KeyQueueError::UnknownClient),
            _ => Err(malformed("update status").into()),
        }
    }

    async fn delete_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    ) -> Result<bool, StoreError> {
        let keys = QueueKeys::new(client);
        let mut invocation = self.scripts.delete_queue.prepare_invoke();
        invocation
            .key(keys.queue(queue))
            .key(keys.index(app))
            .arg(keys.queue(queue))
            .arg(app.to_string());
        let deleted: i64 = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(deleted == 1)
    }

    async fn retrieve_key_package(
        &self,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        now: u64,
        fresh: FreshAssignment<'_>,
    ) -> Result<Retrieval, KeyQueueError> {
        self.retrieve(app, client, attributes, receiver, now, fresh, None)
            .await
    }

    async fn advance_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        reference: &[u8],
    ) -> Result<bool, StoreError> {
        let keys = QueueKeys::new(client);
        let mut invocation = self.scripts.advance.prepare_invoke();
        invocation
            .key(keys.index(app))
            .arg(keys.queue_prefix())
            .arg(reference);
        let advanced: i64 = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(advanced == 1)
    }

    async fn retire_client_key_queues(&self, app: Uuid, client: Uuid) -> Result<(), StoreError> {
        let keys = QueueKeys::new(client);
        let mut invocation = self.scripts.retire_client.prepare_invoke();
        invocation
            .key(keys.index(app))
            .key(keys.retired())
            .arg(keys.queue_prefix());
        let _: i64 = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(())
    }
}

impl RedisStore {
    /// The retrieval's script; with `record` (single Redis only) the request's replay record
    /// and rate count come first in it (`RequestRecord`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn retrieve(
        &self,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        now: u64,
        fresh: FreshAssignment<'_>,
        record: Option<&RequestRecord>,
    ) -> Result<Retrieval, KeyQueueError> {
        let keys = QueueKeys::new(client);
        // On a single Redis the counters join the retrieval's script: one round trip.
        let counted_here = !self.is_cluster();
        let mut invocation = self.scripts.retrieve.prepare_invoke();
        // No retired key: retiring a client deletes its index in the same step.
        invocation.key(keys.index(app));
        if let Some(record) = record {
            invocation
                .key(super::replay::replay_key(
                    &record.sender,
                    &record.request_id,
                ))
                .key(super::replay::counter_key(&record.sender, &record.window));
        }
        let mut ttl = 1;
        if counted_here {
            for name in fresh.counters {
                let window = RequestWindow {
                    name,
                    window_secs: fresh.window_secs,
                    now,
                };
                ttl = window.remaining_secs() + 1;
                invocation.key(super::replay::counter_key(fresh.scope, &window));
            }
        }
        invocation
            .arg(attributes.field())
            .arg(receiver)
            .arg(now)
            .arg(keys.queue_prefix())
            .arg(if fresh.may_assign { "1" } else { "0" })
            .arg(ttl);
        match record {
            Some(record) => invocation
                .arg("1")
                .arg(record.ttl.as_secs().max(1))
                .arg(record.window.remaining_secs() + 1)
                .arg(record.work_up_to),
            None => invocation.arg("0"),
        };
        let reply: Vec<Value> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let package = match status_and_payload(&reply)? {
            (-1, _) => return Err(KeyQueueError::Replayed),
            (-2, Some(Value::Int(count))) => {
                return Err(KeyQueueError::Held {
                    count: u64::try_from(*count).map_err(|_| malformed("count"))?,
                });
            }
            (1, Some(Value::BulkString(bytes))) => RetrievedKeyPackage::Assigned(bytes.clone()),
            (2, Some(Value::BulkString(bytes))) => RetrievedKeyPackage::FinalKey(bytes.clone()),
            (4, Some(Value::BulkString(bytes))) => {
                RetrievedKeyPackage::AssignedBefore(bytes.clone())
            }
            (5, _) => {
                return Err(KeyQueueError::Withheld {
                    retry_after_secs: 0,
                });
            }
            (0, _) => return Err(KeyQueueError::NoMatchingQueue),
            (3, _) => return Err(KeyQueueError::Exhausted),
            _ => return Err(malformed("retrieval status").into()),
        };
        let fresh_counts = match &package {
            RetrievedKeyPackage::Assigned(_) if fresh.counters.is_empty() => Vec::new(),
            RetrievedKeyPackage::Assigned(_) if counted_here => reply[2..]
                .iter()
                .map(|count| match count {
                    Value::Int(count) => u64::try_from(*count).map_err(|_| malformed("count")),
                    _ => Err(malformed("count")),
                })
                .collect::<Result<_, _>>()?,
            RetrievedKeyPackage::Assigned(_) => count_after_assignment(self, &fresh, now).await,
            _ => Vec::new(),
        };
        Ok(Retrieval {
            package,
            fresh_counts,
        })
    }
}
