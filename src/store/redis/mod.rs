//! The Redis store: a single node through a reconnecting `ConnectionManager`, or a Redis
//! Cluster through the cluster client; one code path for both.
//!
//! Every change is one Lua script called with EVALSHA (redis-rs loads it again on NOSCRIPT,
//! e.g. after a restart or SCRIPT FLUSH). Keys are hash-tagged so each script touches one
//! slot. Key layout (all under the `mimi:` prefix):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `mimi:replay:<sender>:<request id hex>` | string, TTL | a seen signed-request id |
//! | `mimi:{app:<app>}:client:<client>` | hash `handle` | a registered client |
//! | `mimi:{app:<app>}:client:<client>:tags` | set | its tags |
//! | `mimi:{app:<app>}:handle:<handle>` | string | the client id holding a handle |
//! | `mimi:{app:<app>}:tag:<tag>` | set | ids of the clients carrying a tag |
//! | `mimi:{app:<app>}:handles` | sorted set, score 0 | every handle, for prefix (account) ranges |
//! | `mimi:{c:<client>}:...` | | the client's key queues (see `key_queues.rs`) |
//! | `mimi:{g:<app>:<hex group id>}:...` | | a group's state (see `groups.rs`) |
//! | `mimi:{w:<app>:<hex handle>}:welcomes` | list | a client's welcome references (see `groups.rs`) |
//! | `mimi:{q:<app>:<hex handle>}:...` | | a client's message queue (see `messages.rs`) |
//! | `mimi:outbox-groups` | set | groups whose commit left cross-slot actions to carry out (see `groups.rs`) |
//!
//! Replay keys are deliberately untagged: each is touched alone, and tagging them by sender
//! would pile a busy peer's keys onto one Cluster node. An application's registry shares one
//! hash tag, so registering, renaming, tagging and deleting a client are each one script on
//! one slot (the scripts build those key names from a declared key's prefix, all in the
//! same slot); applications spread over the Cluster.

mod groups;
mod key_queues;
mod messages;
mod outbound;
mod registry;
mod replay;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Script, Value};

use super::{
    FreshAssignment, Health, KeyQueueAttributes, KeyQueueError, RequestRecord, Retrieval, Store,
    StoreError,
};
use uuid::Uuid;

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

pub struct RedisStore {
    connection: Connection,
    timeout: Duration,
    description: String,
    scripts: Scripts,
}

/// Every Lua script, compiled (hashed) once per store.
struct Scripts {
    record_request_id: Script,
    count_in_window: Script,
    register_client: Script,
    update_client: Script,
    read_client: Script,
    clients_with_tag: Script,
    clients_with_handle_prefix: Script,
    delete_client: Script,
    create_queue: Script,
    read_queue: Script,
    update_queue: Script,
    retrieve: Script,
    advance: Script,
    delete_queue: Script,
    retire_client: Script,
    create_group: Script,
    group_head: Script,
    load_group: Script,
    add_proposal: Script,
    route_message: Script,
    delete_group: Script,
    proposals: Script,
    apply_commit: Script,
    control_messages: Script,
    read_welcome: Script,
    acknowledge_welcome: Script,
    index_welcome: Script,
    add_welcome: Script,
    pop_outbound: Script,
    pop_and_next: Script,
    lease_outbound: Script,
    release_outbound: Script,
    enqueue_message: Script,
    queued_messages: Script,
    acknowledge_messages: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            record_request_id: Script::new(replay::RECORD_REQUEST_ID),
            count_in_window: Script::new(replay::COUNT_IN_WINDOW),
            register_client: Script::new(registry::REGISTER_CLIENT),
            update_client: Script::new(registry::UPDATE_CLIENT),
            read_client: Script::new(registry::READ_CLIENT),
            clients_with_tag: Script::new(registry::CLIENTS_WITH_TAG),
            clients_with_handle_prefix: Script::new(registry::CLIENTS_WITH_HANDLE_PREFIX),
            delete_client: Script::new(registry::DELETE_CLIENT),
            create_queue: Script::new(key_queues::CREATE_QUEUE),
            read_queue: Script::new(key_queues::READ_QUEUE),
            update_queue: Script::new(&key_queues::update_queue_script()),
            retrieve: Script::new(&key_queues::retrieve_script()),
            advance: Script::new(&key_queues::advance_script()),
            delete_queue: Script::new(&key_queues::delete_queue_script()),
            retire_client: Script::new(&key_queues::retire_client_script()),
            create_group: Script::new(groups::CREATE_GROUP),
            group_head: Script::new(groups::GROUP_HEAD),
            load_group: Script::new(groups::LOAD_GROUP),
            add_proposal: Script::new(groups::ADD_PROPOSAL),
            route_message: Script::new(groups::ROUTE_MESSAGE),
            delete_group: Script::new(groups::DELETE_GROUP),
            proposals: Script::new(groups::PROPOSALS),
            apply_commit: Script::new(groups::APPLY_COMMIT),
            control_messages: Script::new(groups::CONTROL_MESSAGES),
            read_welcome: Script::new(groups::READ_WELCOME),
            acknowledge_welcome: Script::new(groups::ACKNOWLEDGE_WELCOME),
            index_welcome: Script::new(groups::INDEX_WELCOME),
            add_welcome: Script::new(groups::ADD_WELCOME),
            pop_outbound: Script::new(outbound::POP_OUTBOUND),
            pop_and_next: Script::new(outbound::POP_AND_NEXT),
            lease_outbound: Script::new(outbound::LEASE_OUTBOUND),
            release_outbound: Script::new(outbound::RELEASE_OUTBOUND),
            enqueue_message: Script::new(messages::ENQUEUE_MESSAGE),
            queued_messages: Script::new(messages::QUEUED_MESSAGES),
            acknowledge_messages: Script::new(messages::ACKNOWLEDGE_MESSAGES),
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl RedisStore {
    /// A single Redis. The connection is made lazily and remade after every failure, so the
    /// gateway starts while Redis is down and recovers when it returns, without a restart.
    pub async fn connect_single(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let info = url
            .into_connection_info()
            .map_err(unavailable)?
            .set_tcp_settings(tcp_settings());
        let client = redis::Client::open(info).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(RedisStore::new(
            Connection::Single(connection),
            timeout,
            format!("redis {}", redact(url)),
        ))
    }

    /// A Redis Cluster from its seed nodes.
    pub async fn connect_cluster(
        urls: &[String],
        timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        let client = redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .tcp_settings(tcp_settings())
            .build()
            .map_err(unavailable)?;
        let connection = client.get_async_connection().await.map_err(unavailable)?;
        let seeds: Vec<String> = urls.iter().map(|url| redact(url)).collect();
        Ok(RedisStore::new(
            Connection::Cluster(connection),
            timeout,
            format!("redis cluster {}", seeds.join(",")),
        ))
    }

    fn new(connection: Connection, timeout: Duration, description: String) -> RedisStore {
        RedisStore {
            connection,
            timeout,
            description,
            scripts: Scripts::new(),
        }
    }

    /// Whether this is a Redis Cluster (keys of different slots never share a script).
    fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }

    /// Runs one store operation under the command timeout. The operation happened atomically
    /// or not at all; when its answer did not come in time the error is `Unanswered` (either
    /// may be), otherwise `Unavailable` (nothing changed; a connection that broke after the
    /// command was written is reported so too, though the command may have run).
    async fn run<T, F>(&self, operation: impl FnOnce(Connection) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, operation(self.connection.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if error.is_timeout() => Err(StoreError::Unanswered(error.to_string())),
            Ok(Err(error)) => Err(unavailable(error)),
            Err(_) => Err(StoreError::Unanswered(
                "redis did not answer in time".into(),
            )),
        }
    }
}

/// Small pipelined commands on one multiplexed connection: without TCP_NODELAY, Nagle's
/// algorithm meets Redis' delayed ACKs and each command waits ~40 ms (measured: 728
/// retrievals/s at p50 44 ms before, see the key-queue benchmark).
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

/// A URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl Health for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let _: String =
            self.run(|mut connection| async move {
                redis::cmd("PING").query_async(&mut connection).await
            })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for RedisStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    /// On a single Redis one script records, counts and retrieves; on a Cluster the replay
    /// record lives in the caller's slot and the queue in the client's: two round trips.
    async fn retrieve_key_package_recorded(
        &self,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        now: u64,
        fresh: FreshAssignment<'_>,
        record: &RequestRecord,
    ) -> Result<Retrieval, KeyQueueError> {
        let record = if self.is_cluster() {
            record.record_apart(self).await?;
            None
        } else {
            Some(record)
        };
        self.retrieve(app, client, attributes, receiver, now, fresh, record)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
