//! Group state in Redis (architecture draft, "Group State"): every key of a group carries the
//! hash tag `{g:<app>:<hex group id>}`, so creating, proposing and committing are each one
//! Lua script on one slot; a commit is a compare-and-set on the epoch inside that script.
//!
//! | key (prefix `mimi:{g:<app>:<group>}:`) | type | what |
//! | --- | --- | --- |
//! | `head` | hash | `epoch`, `leaf_slots`, `parent_slots`, `tree_hash`, `context`, `ith`, `tag`, `group_info` |
//! | `nodes` | hash | tree node index -> RFC 9420 `Node` bytes (blank nodes absent) |
//! | `proposal-refs`, `proposal-packets` | lists | the current epoch's proposals, in upload order |
//! | `epochs` | hash | epoch -> its control messages, TLS `opaque<V><V>` |
//! | `welcome:<epoch>` | hash | `id`, `packet`, `tree`, `expires` of the welcome into the epoch |
//! | `welcome:<epoch>:pending` | set | recipients' handles that have not acknowledged it |
//! | `welcomes` | zset | epochs with a welcome, scored by expiry |
//! | `outbox` | list | cross-slot actions of applied commits not yet carried out |
//! | `mimi:{w:<app>:<hex handle>}:welcomes` | list | a client's welcome references, oldest first |
//! | `mimi:outbox-groups` | set | groups whose outbox may hold actions (for start-up replay) |
//!
//! A commit's welcome index entries (slot of the recipient) and key queue advancements (slot
//! of the added client) cannot be in the commit's script on a Cluster. The script records
//! them in the group's `outbox` in the same atomic step; they are then carried out
//! (idempotently) and removed one by one. If the gateway dies in between, the next operation
//! on the group, or the next start (`replay_outboxes`), carries them out.

use async_trait::async_trait;
use redis::Value;
use tls_codec::{DeserializeBytes, Serialize as _, VLBytes};
use uuid::Uuid;

use super::RedisStore;
use crate::mls::group_state::PublicState;
use crate::store::{
    CommitRecord, CurrentGroupInfo, GroupHead, GroupStoreError, Groups, HeldProposal, KeyQueues,
    NewGroup, PendingWelcome, StoreError, StoredGroup,
};

const OUTBOX_GROUPS: &str = "mimi:outbox-groups";

/// KEYS: head. ARGV: prefix, leaf_slots, parent_slots, tree_hash, context, ith, tag,
/// group_info, then node index/bytes pairs. Returns 0 if the group exists, else 1.
pub(super) const CREATE_GROUP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local p = ARGV[1]
redis.call('HSET', KEYS[1], 'epoch', 0, 'leaf_slots', ARGV[2], 'parent_slots', ARGV[3],
  'tree_hash', ARGV[4], 'context', ARGV[5], 'ith', ARGV[6], 'tag', ARGV[7], 'group_info', ARGV[8])
for i = 9, #ARGV, 2 do redis.call('HSET', p .. 'nodes', ARGV[i], ARGV[i + 1]) end
return 1
";

/// KEYS: head. ARGV: prefix. Returns {} or {epoch, proposal count}.
pub(super) const GROUP_HEAD: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
return {tonumber(epoch), redis.call('LLEN', ARGV[1] .. 'proposal-refs')}
";

/// KEYS: head. ARGV: prefix. Returns {} or {epoch, leaf_slots, parent_slots, tree_hash,
/// context, ith, tag, group_info or '', has_group_info, {index, bytes, ...}, {refs}, {packets}}.
pub(super) const LOAD_GROUP: &str = r"
local p = ARGV[1]
local h = redis.call('HMGET', KEYS[1], 'epoch', 'leaf_slots', 'parent_slots', 'tree_hash',
  'context', 'ith', 'tag', 'group_info')
if not h[1] then return {} end
local has_info = 1
if not h[8] then h[8] = ''; has_info = 0 end
return {h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], has_info,
  redis.call('HGETALL', p .. 'nodes'), redis.call('LRANGE', p .. 'proposal-refs', 0, -1),
  redis.call('LRANGE', p .. 'proposal-packets', 0, -1)}
";

/// KEYS: head. ARGV: prefix, epoch, ref, packet. Returns {0} unknown group, {2, current}
/// stale, {3} duplicate, {1, count} held.
pub(super) const ADD_PROPOSAL: &str = r"
local p = ARGV[1]
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {0} end
if epoch ~= ARGV[2] then return {2, tonumber(epoch)} end
if redis.call('LPOS', p .. 'proposal-refs', ARGV[3]) then return {3} end
redis.call('RPUSH', p .. 'proposal-refs', ARGV[3])
return {1, redis.call('RPUSH', p .. 'proposal-packets', ARGV[4])}
";

/// KEYS: head. ARGV: prefix. Returns {} or {packets...} wrapped: {1, {packets}}.
pub(super) const PROPOSALS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
return {1, redis.call('LRANGE', ARGV[1] .. 'proposal-packets', 0, -1)}
";

/// KEYS: head. ARGV: prefix, from_epoch, now, leaf_slots, parent_slots, tree_hash, context,
/// ith, tag, has_group_info, group_info, messages, has_welcome, welcome id, packet, tree,
/// expires, then counted lists: recipients, removed handles, node changes (index, present,
/// bytes), outbox entries. Returns {0} unknown, {2, current} stale, {1, new epoch}.
pub(super) const APPLY_COMMIT: &str = r"
local p = ARGV[1]
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {0} end
if epoch ~= ARGV[2] then return {2, tonumber(epoch)} end
local new = tonumber(epoch) + 1
local now = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'epoch', new, 'leaf_slots', ARGV[4], 'parent_slots', ARGV[5],
  'tree_hash', ARGV[6], 'context', ARGV[7], 'ith', ARGV[8], 'tag', ARGV[9])
if ARGV[10] == '1' then redis.call('HSET', KEYS[1], 'group_info', ARGV[11])
else redis.call('HDEL', KEYS[1], 'group_info') end
redis.call('DEL', p .. 'proposal-refs', p .. 'proposal-packets')
redis.call('HSET', p .. 'epochs', new, ARGV[12])
local function drop_welcome(e)
  redis.call('DEL', p .. 'welcome:' .. e, p .. 'welcome:' .. e .. ':pending')
  redis.call('ZREM', p .. 'welcomes', e)
end
for _, e in ipairs(redis.call('ZRANGEBYSCORE', p .. 'welcomes', '-inf', now)) do
  drop_welcome(e)
end
local i = 18
local recipients = {}
for k = 1, tonumber(ARGV[i]) do recipients[k] = ARGV[i + k] end
i = i + tonumber(ARGV[i]) + 1
local removed = tonumber(ARGV[i])
if removed > 0 then
  for _, e in ipairs(redis.call('ZRANGE', p .. 'welcomes', 0, -1)) do
    local pending = p .. 'welcome:' .. e .. ':pending'
    for k = 1, removed do redis.call('SREM', pending, ARGV[i + k]) end
    if redis.call('SCARD', pending) == 0 then drop_welcome(e) end
  end
end
i = i + removed + 1
local changes = tonumber(ARGV[i])
for k = 0, changes - 1 do
  local at = i + 1 + k * 3
  if ARGV[at + 1] == '1' then redis.call('HSET', p .. 'nodes', ARGV[at], ARGV[at + 2])
  else redis.call('HDEL', p .. 'nodes', ARGV[at]) end
end
i = i + changes * 3 + 1
if ARGV[13] == '1' then
  redis.call('HSET', p .. 'welcome:' .. new, 'id', ARGV[14], 'packet', ARGV[15], 'tree', ARGV[16],
    'expires', ARGV[17])
  for _, handle in ipairs(recipients) do redis.call('SADD', p .. 'welcome:' .. new .. ':pending', handle) end
  redis.call('ZADD', p .. 'welcomes', ARGV[17], new)
end
for k = 1, tonumber(ARGV[i]) do redis.call('RPUSH', p .. 'outbox', ARGV[i + k]) end
return {1, new}
";

/// KEYS: head. ARGV: prefix, start, end (or ''). Returns {0} unknown, {2, current} out of
/// range, {1, {blobs}}.
pub(super) const CONTROL_MESSAGES: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {0} end
local current = tonumber(epoch)
local first = tonumber(ARGV[2])
local last = current
if ARGV[3] ~= '' then last = tonumber(ARGV[3]) end
if first > last or last > current then return {2, current} end
local out = {}
for e = math.max(first, 1), last do
  out[#out + 1] = redis.call('HGET', ARGV[1] .. 'epochs', e) or ''
end
return {1, out}
";

/// KEYS: head. ARGV: prefix, epoch, welcome id, handle, now. Returns {} or {packet, tree}.
pub(super) const READ_WELCOME: &str = r"
local w = ARGV[1] .. 'welcome:' .. ARGV[2]
local stored = redis.call('HMGET', w, 'id', 'packet', 'tree', 'expires')
if stored[1] ~= ARGV[3] or tonumber(stored[4]) <= tonumber(ARGV[5]) then return {} end
if redis.call('SISMEMBER', w .. ':pending', ARGV[4]) == 0 then return {} end
return {stored[2], stored[3]}
";

/// KEYS: head. ARGV: prefix, epoch, welcome id, handle. Drops the handle from the welcome's
/// recipients and the welcome (with its tree) once none is left.
pub(super) const ACKNOWLEDGE_WELCOME: &str = r"
local p = ARGV[1]
local w = p .. 'welcome:' .. ARGV[2]
if redis.call('HGET', w, 'id') ~= ARGV[3] then return 0 end
redis.call('SREM', w .. ':pending', ARGV[4])
if redis.call('SCARD', w .. ':pending') == 0 then
  redis.call('DEL', w, w .. ':pending')
  redis.call('ZREM', p .. 'welcomes', ARGV[2])
end
return 1
";

/// KEYS: a client's welcome index. ARGV: entry. Appends the entry once.
pub(super) const INDEX_WELCOME: &str = r"
if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
return redis.call('RPUSH', KEYS[1], ARGV[1])
";

fn malformed(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply from Redis: {what}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    mimi_wire::groups::group_id_from_path(text)
}

fn group_prefix(app: Uuid, group_id: &[u8]) -> String {
    format!("mimi:{{g:{app}:{}}}:", hex(group_id))
}

fn welcome_index(app: Uuid, handle: &str) -> String {
    format!("mimi:{{w:{app}:{}}}:welcomes", hex(handle.as_bytes()))
}

/// A welcome reference in a client's index: `<welcome id> <hex group id> <epoch> <expires>`.
struct WelcomeEntry {
    id: Uuid,
    group_id: Vec<u8>,
    epoch: u64,
    expires_at: u64,
}

impl WelcomeEntry {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.id,
            hex(&self.group_id),
            self.epoch,
            self.expires_at
        )
    }

    fn decode(text: &str) -> Option<WelcomeEntry> {
        let mut parts = text.split(' ');
        Some(WelcomeEntry {
            id: Uuid::parse_str(parts.next()?).ok()?,
            group_id: unhex(parts.next()?)?,
            epoch: parts.next()?.parse().ok()?,
            expires_at: parts.next()?.parse().ok()?,
        })
    }
}

/// A cross-slot action of an applied commit: `w <hex handle> <entry>` indexes a welcome,
/// `k <client> <hex ref>` advances a key queue.
enum OutboxAction {
    IndexWelcome { handle: String, entry: String },
    AdvanceKeyQueue { client: Uuid, reference: Vec<u8> },
}

impl OutboxAction {
    fn encode(&self) -> String {
        match self {
            OutboxAction::IndexWelcome { handle, entry } => {
                format!("w {} {entry}", hex(handle.as_bytes()))
            }
            OutboxAction::AdvanceKeyQueue { client, reference } => {
                format!("k {client} {}", hex(reference))
            }
        }
    }

    fn decode(text: &str) -> Option<OutboxAction> {
        let (kind, rest) = text.split_once(' ')?;
        let (first, second) = rest.split_once(' ')?;
        match kind {
            "w" => Some(OutboxAction::IndexWelcome {
                handle: String::from_utf8(unhex(first)?).ok()?,
                entry: second.to_owned(),
            }),
            "k" => Some(OutboxAction::AdvanceKeyQueue {
                client: Uuid::parse_str(first).ok()?,
                reference: unhex(second)?,
            }),
            _ => None,
        }
    }
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.as_bytes().to_vec()),
        Value::Int(number) => Some(number.to_string().into_bytes()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        other => String::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

fn array(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

/// The integer status of a `{status, ...}` reply.
fn status(reply: &[Value]) -> Result<u64, StoreError> {
    reply
        .first()
        .and_then(number)
        .ok_or_else(|| malformed("status"))
}

impl RedisStore {
    async fn invoke(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: Vec<Vec<u8>>,
    ) -> Result<Value, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        self.run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await
    }

    /// Carries out one group's pending outbox actions and removes each once done.
    async fn drain_outbox(&self, prefix: &str) -> Result<(), StoreError> {
        let key = format!("{prefix}outbox");
        let entries: Vec<String> = {
            let key = key.clone();
            self.run(|mut connection| async move {
                redis::cmd("LRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut connection)
                    .await
            })
            .await?
        };
        for entry in entries {
            match OutboxAction::decode(&entry) {
                Some(OutboxAction::IndexWelcome { handle, entry }) => {
                    let app = prefix
                        .strip_prefix("mimi:{g:")
                        .and_then(|rest| rest.get(..36))
                        .and_then(|app| Uuid::parse_str(app).ok())
                        .ok_or_else(|| malformed("group prefix"))?;
                    self.invoke(
                        &self.scripts.index_welcome,
                        &[welcome_index(app, &handle)],
                        vec![entry.into_bytes()],
                    )
                    .await?;
                }
                Some(OutboxAction::AdvanceKeyQueue { client, reference }) => {
                    let app = prefix
                        .strip_prefix("mimi:{g:")
                        .and_then(|rest| rest.get(..36))
                        .and_then(|app| Uuid::parse_str(app).ok())
                        .ok_or_else(|| malformed("group prefix"))?;
                    self.advance_key_queue(app, client, &reference).await?;
                }
                None => tracing::warn!(entry, "dropping an undecodable outbox entry"),
            }
            let (key, entry) = (key.clone(), entry.clone());
            let _: i64 = self
                .run(|mut connection| async move {
                    redis::cmd("LREM")
                        .arg(key)
                        .arg(1)
                        .arg(entry)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
        }
        Ok(())
    }

    /// Carries out every group's pending outbox (at start-up: a gateway may have died between
    /// a commit and its cross-slot actions). Answers how many groups were drained.
    pub async fn replay_outboxes(&self) -> Result<usize, StoreError> {
        let prefixes: Vec<String> = self
            .run(|mut connection| async move {
                redis::cmd("SMEMBERS")
                    .arg(OUTBOX_GROUPS)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        for prefix in &prefixes {
            self.drain_outbox(prefix).await?;
            self.forget_outbox(prefix).await?;
        }
        Ok(prefixes.len())
    }

    /// Drops the group from the start-up replay set once its outbox is empty.
    async fn forget_outbox(&self, prefix: &str) -> Result<(), StoreError> {
        let key = format!("{prefix}outbox");
        let pending: i64 = self
            .run(|mut connection| async move {
                redis::cmd("LLEN")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        if pending == 0 {
            let prefix = prefix.to_owned();
            let _: i64 = self
                .run(|mut connection| async move {
                    redis::cmd("SREM")
                        .arg(OUTBOX_GROUPS)
                        .arg(prefix)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
        }
        Ok(())
    }
}

fn state_args(state: &PublicState) -> Vec<Vec<u8>> {
    vec![
        state.leaf_slots.to_string().into_bytes(),
        state.parent_slots.to_string().into_bytes(),
        state.tree_hash.clone(),
        state.context.clone(),
        state.interim_transcript_hash.clone(),
        state.confirmation_tag.clone(),
    ]
}

/// The group's state from a LOAD_GROUP reply: (epoch, state, group info, proposals).
type Loaded = (u64, PublicState, Option<Vec<u8>>, Vec<HeldProposal>);

fn parse_loaded(reply: &Value) -> Result<Option<Loaded>, StoreError> {
    let items = array(reply).ok_or_else(|| malformed("group"))?;
    if items.is_empty() {
        return Ok(None);
    }
    let field = |at: usize| items.get(at).ok_or_else(|| malformed("group field"));
    let text_number = |at: usize| -> Result<u64, StoreError> {
        number(field(at)?).ok_or_else(|| malformed("group number"))
    };
    let raw = |at: usize| -> Result<Vec<u8>, StoreError> {
        bytes(field(at)?).ok_or_else(|| malformed("group bytes"))
    };
    let mut state = PublicState {
        leaf_slots: u32::try_from(text_number(1)?).map_err(|_| malformed("leaf slots"))?,
        parent_slots: u32::try_from(text_number(2)?).map_err(|_| malformed("parent slots"))?,
        tree_hash: raw(3)?,
        context: raw(4)?,
        interim_transcript_hash: raw(5)?,
        confirmation_tag: raw(6)?,
        ..PublicState::default()
    };
    let group_info = (text_number(8)? == 1).then(|| raw(7)).transpose()?;
    let nodes = array(field(9)?).ok_or_else(|| malformed("nodes"))?;
    for pair in nodes.chunks(2) {
        let [index, node] = pair else {
            return Err(malformed("node pair"));
        };
        let index = number(index)
            .and_then(|index| u32::try_from(index).ok())
            .ok_or_else(|| malformed("node index"))?;
        state
            .nodes
            .insert(index, bytes(node).ok_or_else(|| malformed("node"))?);
    }
    let refs = array(field(10)?).ok_or_else(|| malformed("refs"))?;
    let packets = array(field(11)?).ok_or_else(|| malformed("packets"))?;
    let proposals = refs
        .iter()
        .zip(packets)
        .map(|(reference, packet)| {
            Some(HeldProposal {
                reference: bytes(reference)?,
                packet: bytes(packet)?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| malformed("proposal"))?;
    Ok(Some((text_number(0)?, state, group_info, proposals)))
}

#[async_trait]
impl Groups for RedisStore {
    async fn recover_groups(&self) -> Result<usize, StoreError> {
        self.replay_outboxes().await
    }

    async fn create_group(&self, app: Uuid, group: &NewGroup) -> Result<(), GroupStoreError> {
        let prefix = group_prefix(app, &group.group_id);
        let mut args = vec![prefix.clone().into_bytes()];
        args.extend(state_args(&group.state));
        args.push(group.group_info.clone());
        for (index, node) in &group.state.nodes {
            args.push(index.to_string().into_bytes());
            args.push(node.clone());
        }
        let reply = self
            .invoke(&self.scripts.create_group, &[format!("{prefix}head")], args)
            .await?;
        match number(&reply) {
            Some(1) => Ok(()),
            Some(0) => Err(GroupStoreError::GroupExists),
            _ => Err(malformed("create status").into()),
        }
    }

    async fn group_head(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<GroupHead>, StoreError> {
        let prefix = group_prefix(app, group_id);
        let reply = self
            .invoke(
                &self.scripts.group_head,
                &[format!("{prefix}head")],
                vec![prefix.into_bytes()],
            )
            .await?;
        let items = array(&reply).ok_or_else(|| malformed("head"))?;
        match items {
            [] => Ok(None),
            [epoch, proposals] => Ok(Some(GroupHead {
                epoch: number(epoch).ok_or_else(|| malformed("epoch"))?,
                proposals: number(proposals).ok_or_else(|| malformed("count"))? as usize,
            })),
            _ => Err(malformed("head")),
        }
    }

    async fn load_group(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<StoredGroup>, StoreError> {
        let prefix = group_prefix(app, group_id);
        self.drain_outbox(&prefix).await?;
        let reply = self
            .invoke(
                &self.scripts.load_group,
                &[format!("{prefix}head")],
                vec![prefix.into_bytes()],
            )
            .await?;
        Ok(
            parse_loaded(&reply)?.map(|(epoch, state, _, proposals)| StoredGroup {
                epoch,
                state,
                proposals,
            }),
        )
    }

    async fn add_proposal(
        &self,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        proposal: &HeldProposal,
    ) -> Result<usize, GroupStoreError> {
        let prefix = group_prefix(app, group_id);
        let reply = self
            .invoke(
                &self.scripts.add_proposal,
                &[format!("{prefix}head")],
                vec![
                    prefix.into_bytes(),
                    epoch.to_string().into_bytes(),
                    proposal.reference.clone(),
                    proposal.packet.clone(),
                ],
            )
            .await?;
        let items = array(&reply).ok_or_else(|| malformed("proposal reply"))?;
        let second = || {
            items
                .get(1)
                .and_then(number)
                .ok_or_else(|| malformed("proposal reply"))
        };
        match status(items)? {
            0 => Err(GroupStoreError::UnknownGroup),
            2 => Err(GroupStoreError::StaleEpoch { current: second()? }),
            3 => Err(GroupStoreError::DuplicateProposal),
            1 => Ok(second()? as usize),
            _ => Err(malformed("proposal status").into()),
        }
    }

    async fn proposals(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let prefix = group_prefix(app, group_id);
        let reply = self
            .invoke(
                &self.scripts.proposals,
                &[format!("{prefix}head")],
                vec![prefix.into_bytes()],
            )
            .await?;
        let items = array(&reply).ok_or_else(|| malformed("proposals"))?;
        if status(items)? == 0 {
            return Ok(None);
        }
        let packets = items
            .get(1)
            .and_then(array)
            .ok_or_else(|| malformed("packets"))?;
        packets
            .iter()
            .map(|packet| bytes(packet).ok_or_else(|| malformed("packet")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn apply_commit(
        &self,
        app: Uuid,
        group_id: &[u8],
        commit: &CommitRecord,
    ) -> Result<u64, GroupStoreError> {
        let prefix = group_prefix(app, group_id);
        // Actions an earlier commit left undone come first.
        self.drain_outbox(&prefix).await?;
        let new_epoch = commit.from_epoch + 1;
        let mut outbox = Vec::new();
        if let Some(welcome) = &commit.welcome {
            let entry = WelcomeEntry {
                id: welcome.id,
                group_id: group_id.to_vec(),
                epoch: new_epoch,
                expires_at: welcome.expires_at,
            }
            .encode();
            for handle in &welcome.recipients {
                outbox.push(OutboxAction::IndexWelcome {
                    handle: handle.clone(),
                    entry: entry.clone(),
                });
            }
        }
        for (client, reference) in &commit.used_key_packages {
            outbox.push(OutboxAction::AdvanceKeyQueue {
                client: *client,
                reference: reference.clone(),
            });
        }
        let messages = commit
            .messages
            .iter()
            .map(|message| VLBytes::new(message.clone()))
            .collect::<Vec<_>>()
            .tls_serialize_detached()
            .map_err(|error| StoreError::Unavailable(format!("encoding messages: {error}")))?;
        let change = &commit.change;
        let flag = |set: bool| if set { b"1".to_vec() } else { b"0".to_vec() };
        let mut args = vec![
            prefix.clone().into_bytes(),
            commit.from_epoch.to_string().into_bytes(),
            commit.now.to_string().into_bytes(),
            change.leaf_slots.to_string().into_bytes(),
            change.parent_slots.to_string().into_bytes(),
            change.tree_hash.clone(),
            change.context.clone(),
            change.interim_transcript_hash.clone(),
            change.confirmation_tag.clone(),
            flag(commit.group_info.is_some()),
            commit.group_info.clone().unwrap_or_default(),
            messages,
            flag(commit.welcome.is_some()),
        ];
        match &commit.welcome {
            Some(welcome) => args.extend([
                welcome.id.to_string().into_bytes(),
                welcome.packet.clone(),
                welcome.ratchet_tree.clone(),
                welcome.expires_at.to_string().into_bytes(),
            ]),
            None => args.extend([Vec::new(), Vec::new(), Vec::new(), b"0".to_vec()]),
        }
        let recipients = commit
            .welcome
            .as_ref()
            .map(|welcome| welcome.recipients.clone())
            .unwrap_or_default();
        args.push(recipients.len().to_string().into_bytes());
        args.extend(recipients.into_iter().map(String::into_bytes));
        args.push(commit.removed_handles.len().to_string().into_bytes());
        args.extend(
            commit
                .removed_handles
                .iter()
                .map(|h| h.clone().into_bytes()),
        );
        args.push(change.nodes.len().to_string().into_bytes());
        for (index, node) in &change.nodes {
            args.push(index.to_string().into_bytes());
            args.push(flag(node.is_some()));
            args.push(node.clone().unwrap_or_default());
        }
        args.push(outbox.len().to_string().into_bytes());
        args.extend(outbox.iter().map(|action| action.encode().into_bytes()));

        if !outbox.is_empty() {
            let member = prefix.clone();
            let _: i64 = self
                .run(|mut connection| async move {
                    redis::cmd("SADD")
                        .arg(OUTBOX_GROUPS)
                        .arg(member)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
        }
        let reply = self
            .invoke(&self.scripts.apply_commit, &[format!("{prefix}head")], args)
            .await?;
        let items = array(&reply).ok_or_else(|| malformed("commit reply"))?;
        let second = || {
            items
                .get(1)
                .and_then(number)
                .ok_or_else(|| malformed("commit reply"))
        };
        let epoch = match status(items)? {
            0 => return Err(GroupStoreError::UnknownGroup),
            2 => return Err(GroupStoreError::StaleEpoch { current: second()? }),
            1 => second()?,
            _ => return Err(malformed("commit status").into()),
        };
        if !outbox.is_empty() {
            self.drain_outbox(&prefix).await?;
            self.forget_outbox(&prefix).await?;
        }
        Ok(epoch)
    }

    async fn control_messages(
        &self,
        app: Uuid,
        group_id: &[u8],
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<Vec<u8>>, GroupStoreError> {
        let prefix = group_prefix(app, group_id);
        let reply = self
            .invoke(
                &self.scripts.control_messages,
                &[format!("{prefix}head")],
                vec![
                    prefix.into_bytes(),
                    start.to_string().into_bytes(),
                    end.map(|end| end.to_string().into_bytes())
                        .unwrap_or_default(),
                ],
            )
            .await?;
        let items = array(&reply).ok_or_else(|| malformed("control reply"))?;
        match status(items)? {
            0 => return Err(GroupStoreError::UnknownGroup),
            2 => {
                let current = items
                    .get(1)
                    .and_then(number)
                    .ok_or_else(|| malformed("current epoch"))?;
                return Err(GroupStoreError::EpochOutOfRange { current });
            }
            1 => {}
            _ => return Err(malformed("control status").into()),
        }
        let blobs = items
            .get(1)
            .and_then(array)
            .ok_or_else(|| malformed("epochs"))?;
        let mut messages = Vec::new();
        for blob in blobs {
            let blob = bytes(blob).ok_or_else(|| malformed("epoch"))?;
            let decoded = Vec::<VLBytes>::tls_deserialize_exact_bytes(&blob)
                .map_err(|_| malformed("epoch messages"))?;
            messages.extend(
                decoded
                    .into_iter()
                    .map(|message| message.as_slice().to_vec()),
            );
        }
        Ok(messages)
    }

    async fn current_group_info(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<CurrentGroupInfo>, StoreError> {
        let prefix = group_prefix(app, group_id);
        let reply = self
            .invoke(
                &self.scripts.load_group,
                &[format!("{prefix}head")],
                vec![prefix.into_bytes()],
            )
            .await?;
        Ok(
            parse_loaded(&reply)?.map(|(_, state, group_info, _)| CurrentGroupInfo {
                group_info,
                ratchet_tree: state.ratchet_tree(),
            }),
        )
    }

    async fn welcomes(
        &self,
        app: Uuid,
        handle: &str,
        now: u64,
    ) -> Result<Vec<PendingWelcome>, StoreError> {
        let index = welcome_index(app, handle);
        let entries: Vec<String> = {
            let index = index.clone();
            self.run(|mut connection| async move {
                redis::cmd("LRANGE")
                    .arg(index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut connection)
                    .await
            })
            .await?
        };
        let mut pending = Vec::new();
        for text in entries {
            let found = match WelcomeEntry::decode(&text) {
                Some(entry) if entry.expires_at > now => {
                    let prefix = group_prefix(app, &entry.group_id);
                    let reply = self
                        .invoke(
                            &self.scripts.read_welcome,
                            &[format!("{prefix}head")],
                            vec![
                                prefix.into_bytes(),
                                entry.epoch.to_string().into_bytes(),
                                entry.id.to_string().into_bytes(),
                                handle.as_bytes().to_vec(),
                                now.to_string().into_bytes(),
                            ],
                        )
                        .await?;
                    match array(&reply) {
                        Some([packet, tree]) => Some(PendingWelcome {
                            id: entry.id,
                            group_id: entry.group_id,
                            epoch: entry.epoch,
                            packet: bytes(packet).ok_or_else(|| malformed("welcome"))?,
                            ratchet_tree: bytes(tree).ok_or_else(|| malformed("tree"))?,
                        }),
                        _ => None,
                    }
                }
                _ => None,
            };
            match found {
                Some(welcome) => pending.push(welcome),
                // Expired, withdrawn or acknowledged elsewhere: drop the reference.
                None => {
                    let index = index.clone();
                    let _: i64 = self
                        .run(|mut connection| async move {
                            redis::cmd("LREM")
                                .arg(index)
                                .arg(1)
                                .arg(text)
                                .query_async(&mut connection)
                                .await
                        })
                        .await?;
                }
            }
        }
        Ok(pending)
    }

    async fn acknowledge_welcome(
        &self,
        app: Uuid,
        handle: &str,
        welcome: Uuid,
    ) -> Result<bool, StoreError> {
        let index = welcome_index(app, handle);
        let entries: Vec<String> = {
            let index = index.clone();
            self.run(|mut connection| async move {
                redis::cmd("LRANGE")
                    .arg(index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut connection)
                    .await
            })
            .await?
        };
        let Some((text, entry)) = entries.into_iter().find_map(|text| {
            WelcomeEntry::decode(&text)
                .filter(|entry| entry.id == welcome)
                .map(|entry| (text, entry))
        }) else {
            return Ok(false);
        };
        // The group side first: a crash after it leaves a reference that reads skip.
        let prefix = group_prefix(app, &entry.group_id);
        self.invoke(
            &self.scripts.acknowledge_welcome,
            &[format!("{prefix}head")],
            vec![
                prefix.into_bytes(),
                entry.epoch.to_string().into_bytes(),
                entry.id.to_string().into_bytes(),
                handle.as_bytes().to_vec(),
            ],
        )
        .await?;
        let _: i64 = self
            .run(|mut connection| async move {
                redis::cmd("LREM")
                    .arg(index)
                    .arg(1)
                    .arg(text)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(true)
    }
}
