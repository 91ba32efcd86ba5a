//! The client registry in Redis: one hash tag per application, one Lua script per change.

use std::collections::BTreeSet;

use async_trait::async_trait;
use redis::Value;
use uuid::Uuid;

use super::RedisStore;
use crate::store::{Client, ClientChange, ClientRegistry, RegistryError, StoreError};

/// KEYS: client hash, client tags, handle key. ARGV: prefix, client id, handle, tags...
/// Returns 0 when the handle is taken, 1 when registered.
pub(super) const REGISTER_CLIENT: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', ARGV[1] .. 'handles', 0, ARGV[3])
redis.call('HSET', KEYS[1], 'handle', ARGV[3])
for i = 4, #ARGV do
  redis.call('SADD', KEYS[2], ARGV[i])
  redis.call('SADD', ARGV[1] .. 'tag:' .. ARGV[i], ARGV[2])
end
return 1
";

/// KEYS: client hash, client tags. ARGV: prefix, client id, has-new-handle (0/1), new
/// handle, max tags, number of tags to add, tags to add..., tags to remove...
/// Returns {0} unknown client, {2} handle taken, {3} too many tags, {1, handle, tags...}.
pub(super) const UPDATE_CLIENT: &str = r"
local prefix, id = ARGV[1], ARGV[2]
local old = redis.call('HGET', KEYS[1], 'handle')
if not old then return {0} end
local new = ARGV[4]
local rename = ARGV[3] == '1' and new ~= old
if rename and redis.call('EXISTS', prefix .. 'handle:' .. new) == 1 then return {2} end
local add_count = tonumber(ARGV[6])
local adds, removes = {}, {}
for i = 7, 6 + add_count do adds[#adds + 1] = ARGV[i] end
for i = 7 + add_count, #ARGV do removes[#removes + 1] = ARGV[i] end
local count = redis.call('SCARD', KEYS[2])
for _, tag in ipairs(adds) do
  if redis.call('SISMEMBER', KEYS[2], tag) == 0 then count = count + 1 end
end
for _, tag in ipairs(removes) do
  if redis.call('SISMEMBER', KEYS[2], tag) == 1 then count = count - 1 end
end
if count > tonumber(ARGV[5]) then return {3} end
if rename then
  redis.call('DEL', prefix .. 'handle:' .. old)
  redis.call('SET', prefix .. 'handle:' .. new, id)
  redis.call('ZREM', prefix .. 'handles', old)
  redis.call('ZADD', prefix .. 'handles', 0, new)
  redis.call('HSET', KEYS[1], 'handle', new)
end
for _, tag in ipairs(adds) do
  redis.call('SADD', KEYS[2], tag)
  redis.call('SADD', prefix .. 'tag:' .. tag, id)
end
for _, tag in ipairs(removes) do
  redis.call('SREM', KEYS[2], tag)
  redis.call('SREM', prefix .. 'tag:' .. tag, id)
end
local result = {1, redis.call('HGET', KEYS[1], 'handle')}
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do result[#result + 1] = tag end
return result
";

/// KEYS: client hash, client tags. Returns {} for an unknown client, else {handle, tags...}.
pub(super) const READ_CLIENT: &str = r"
local handle = redis.call('HGET', KEYS[1], 'handle')
if not handle then return {} end
local result = {handle}
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do result[#result + 1] = tag end
return result
";

/// KEYS: the tag's index. ARGV: prefix. Returns {{id, handle, {tags...}}, ...}.
pub(super) const CLIENTS_WITH_TAG: &str = r"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local client = ARGV[1] .. 'client:' .. id
  local handle = redis.call('HGET', client, 'handle')
  if handle then
    out[#out + 1] = {id, handle, redis.call('SMEMBERS', client .. ':tags')}
  end
end
return out
";

/// KEYS: client hash, client tags. ARGV: prefix, client id. Returns 0 if unknown, else 1.
pub(super) const DELETE_CLIENT: &str = r"
local handle = redis.call('HGET', KEYS[1], 'handle')
if not handle then return 0 end
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('SREM', ARGV[1] .. 'tag:' .. tag, ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2], ARGV[1] .. 'handle:' .. handle)
redis.call('ZREM', ARGV[1] .. 'handles', handle)
return 1
";

/// KEYS: the handles index. ARGV: prefix, handle prefix. Returns {handle, id, ...} of the
/// handles starting with the handle prefix (no UTF-8 byte is 0xff, so `(p\xff` ends the range).
pub(super) const CLIENTS_WITH_HANDLE_PREFIX: &str = r"
local out = {}
local handles = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2], '(' .. ARGV[2] .. '\255')
for _, handle in ipairs(handles) do
  local id = redis.call('GET', ARGV[1] .. 'handle:' .. handle)
  if id then
    out[#out + 1] = handle
    out[#out + 1] = id
  end
end
return out
";

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
