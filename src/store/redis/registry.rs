//! The client registry in Redis: one hash tag per application, one Lua script per change.

use std::collections::BTreeSet;

use async_trait::async_trait;
use redis::Value;
use uuid::Uuid;

use super::RedisStore;
use crate::store::{Client, ClientChange, ClientRegistry, RegistryError, StoreError};

/// KEYS: client hash, client tags, handle key. ARGV: prefix, client id, handle, tags...
/// Returns 0 when the handle is taken, 1 when registered.
pub(super) const REGISTER_CLIENT: &str = include_str!("lua/register_client.lua");

/// KEYS: client hash, client tags. ARGV: prefix, client id, has-new-handle (0/1), new
/// handle, max tags, number of tags to add, tags to add..., tags to remove...
/// Returns {0} unknown client, {2} handle taken, {3} too many tags, {1, handle, tags...}.
pub(super) const UPDATE_CLIENT: &str = include_str!("lua/update_client.lua");

/// KEYS: client hash, client tags. Returns {} for an unknown client, else {handle, tags...}.
pub(super) const READ_CLIENT: &str = include_str!("lua/read_client.lua");

/// KEYS: the tag's index. ARGV: prefix. Returns {{id, handle, {tags...}}, ...}.
pub(super) const CLIENTS_WITH_TAG: &str = include_str!("lua/clients_with_tag.lua");

/// KEYS: client hash, client tags. ARGV: prefix, client id. Returns 0 if unknown, else 1.
pub(super) const DELETE_CLIENT: &str = include_str!("lua/delete_client.lua");

/// KEYS: the handles index. ARGV: prefix, handle prefix. Returns {handle, id, ...} of the
/// handles starting with the handle prefix (no UTF-8 byte is 0xff, so `(p\xff` ends the range).
pub(super) const CLIENTS_WITH_HANDLE_PREFIX: &str =
    include_str!("lua/clients_with_handle_prefix.lua");

/// Key names of one application's registry; all share the `{app:<id>}` hash tag.
struct RegistryKeys {
    prefix: String,
}

impl RegistryKeys {
    fn new(app: Uuid) -> RegistryKeys {
        RegistryKeys {
            prefix: format!("mimi:{{app:{app}}}:"),
        }
    }

    fn client(&self, client: Uuid) -> String {
        format!("{}client:{client}", self.prefix)
    }

    fn client_tags(&self, client: Uuid) -> String {
        format!("{}client:{client}:tags", self.prefix)
    }

    fn handle(&self, handle: &str) -> String {
        format!("{}handle:{handle}", self.prefix)
    }

    fn tag(&self, tag: &str) -> String {
        format!("{}tag:{tag}", self.prefix)
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply from Redis: {what}"))
}

/// `{handle, tags...}` as the scripts return it.
fn client_from_strings(id: Uuid, mut fields: Vec<String>) -> Result<Client, StoreError> {
    if fields.is_empty() {
        return Err(malformed("client without handle"));
    }
    let handle = fields.remove(0);
    Ok(Client {
        id,
        handle,
        tags: fields.into_iter().collect::<BTreeSet<_>>(),
    })
}

#[async_trait]
impl ClientRegistry for RedisStore {
    async fn register_client(&self, app: Uuid, client: &Client) -> Result<(), RegistryError> {
        let keys = RegistryKeys::new(app);
        let mut invocation = self.scripts.register_client.prepare_invoke();
        invocation
            .key(keys.client(client.id))
            .key(keys.client_tags(client.id))
            .key(keys.handle(&client.handle))
            .arg(&keys.prefix)
            .arg(client.id.to_string())
            .arg(&client.handle);
        for tag in &client.tags {
            invocation.arg(tag);
        }
        let registered: i64 = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        if registered == 1 {
            Ok(())
        } else {
            Err(RegistryError::HandleTaken)
        }
    }

    async fn update_client(
        &self,
        app: Uuid,
        client: Uuid,
        change: &ClientChange,
        max_tags: usize,
    ) -> Result<Client, RegistryError> {
        let keys = RegistryKeys::new(app);
        let mut invocation = self.scripts.update_client.prepare_invoke();
        invocation
            .key(keys.client(client))
            .key(keys.client_tags(client))
            .arg(&keys.prefix)
            .arg(client.to_string())
            .arg(if change.handle.is_some() { "1" } else { "0" })
            .arg(change.handle.as_deref().unwrap_or(""))
            .arg(max_tags)
            .arg(change.add.len());
        for tag in change.add.iter().chain(&change.remove) {
            invocation.arg(tag);
        }
        let reply: Vec<Value> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let status = match reply.first() {
            Some(Value::Int(status)) => *status,
            _ => return Err(malformed("update status").into()),
        };
        match status {
            0 => Err(RegistryError::UnknownClient),
            2 => Err(RegistryError::HandleTaken),
            3 => Err(RegistryError::TooManyTags),
            1 => {
                let fields: Vec<String> =
                    redis::from_redis_value(Value::Array(reply[1..].to_vec()))
                        .map_err(|_| malformed("updated client"))?;
                Ok(client_from_strings(client, fields)?)
            }
            _ => Err(malformed("update status").into()),
        }
    }

    async fn client(&self, app: Uuid, client: Uuid) -> Result<Option<Client>, StoreError> {
        let keys = RegistryKeys::new(app);
        let mut invocation = self.scripts.read_client.prepare_invoke();
        invocation
            .key(keys.client(client))
            .key(keys.client_tags(client));
        let fields: Vec<String> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        if fields.is_empty() {
            Ok(None)
        } else {
            client_from_strings(client, fields).map(Some)
        }
    }

    async fn clients_with_tag(&self, app: Uuid, tag: &str) -> Result<Vec<Client>, StoreError> {
        let keys = RegistryKeys::new(app);
        let mut invocation = self.scripts.clients_with_tag.prepare_invoke();
        invocation.key(keys.tag(tag)).arg(&keys.prefix);
        let rows: Vec<(String, String, Vec<String>)> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let mut clients = rows
            .into_iter()
            .map(|(id, handle, tags)| {
                let id = Uuid::parse_str(&id).map_err(|_| malformed("client id"))?;
                Ok(Client {
                    id,
                    handle,
                    tags: tags.into_iter().collect(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        clients.sort_by(|a, b| a.handle.cmp(&b.handle));
        Ok(clients)
    }

    async fn delete_client(&self, app: Uuid, client: Uuid) -> Result<bool, StoreError> {
        let keys = RegistryKeys::new(app);
        let mut invocation = self.scripts.delete_client.prepare_invoke();
        invocation
            .key(keys.client(client))
            .key(keys.client_tags(client))
            .arg(&keys.prefix)
            .arg(client.to_string());
        let deleted: i64 = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(deleted == 1)
    }

    async fn clients_with_handle_prefix(
        &self,
        app: Uuid,
        prefix: &str,
    ) -> Result<Vec<(String, Uuid)>, StoreError> {
        let keys = RegistryKeys::new(app);
        let mut invocation = self.scripts.clients_with_handle_prefix.prepare_invoke();
        invocation
            .key(format!("{}handles", keys.prefix))
            .arg(&keys.prefix)
            .arg(prefix);
        let flat: Vec<String> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        flat.chunks(2)
            .map(|pair| match pair {
                [handle, id] => Uuid::parse_str(id)
                    .map(|id| (handle.clone(), id))
                    .map_err(|_| malformed("client id")),
                _ => Err(malformed("handle index reply")),
            })
            .collect()
    }

    async fn client_by_handle(&self, app: Uuid, handle: &str) -> Result<Option<Uuid>, StoreError> {
        let key = RegistryKeys::new(app).handle(handle);
        let id: Option<String> = self
            .run(|mut connection| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        id.map(|id| Uuid::parse_str(&id).map_err(|_| malformed("client id")))
            .transpose()
    }
}
