//! Group state in Redis (architecture draft, "Group State"): every key of a group carries the
//! hash tag `{g:<app>:<hex group id>}`, so creating, proposing and committing are each one
//! Lua script on one slot; a commit is a compare-and-set on the epoch inside that script.
//! Scripts declare the group's `head` and build the group's other key names from its prefix
//! (same hash tag, same slot).
//!
//! | key (prefix `mimi:{g:<app>:<hex group id>}:`) | type | what |
//! | --- | --- | --- |
//! | `head` | hash | `epoch`, `pruned` (epochs `1..=pruned` no longer kept), `leaf_slots`, `parent_slots`, `tree_hash`, `context`, `ith` (interim transcript hash), `tag` (confirmation tag) |
//! | `group-info` | string | the current GroupInfo (absent if none) |
//! | `nodes` | hash | tree node index (decimal) -> RFC 9420 `Node` bytes (blank nodes absent) |
//! | `proposal-refs`, `proposal-packets` | lists | the current epoch's ProposalRefs and packets, in upload order (cleared by a commit) |
//! | `epoch:<n>` | string | epoch n's control messages, TLS `opaque<V><V>` |
//! | `welcome:<epoch>` | hash | `id`, `expires_at` of the welcome into the epoch |
//! | `welcome:<epoch>:packet`, `welcome:<epoch>:tree` | strings | the Welcome and the epoch's ratchet tree |
//! | `welcome:<epoch>:pending` | set | recipients' handles that have not acknowledged it |
//! | `staged:<id>:<blob>` | string, expires | a commit's large values on their way in (below) |
//! | `welcomes` | zset | epochs with a welcome, scored by `expires_at` |
//! | `outbox` | list | cross-slot actions of applied commits not yet carried out |
//! | `outbox-lease` | string, expires | the id of the operation settling the outbox |
//!
//! The head's optional `hub` field names the hub of a group this gateway mirrors (absent
//! for a group created here).
//!
//! | other key | type | what |
//! | --- | --- | --- |
//! | `mimi:{w:<app>:<hex handle>}:welcomes` | list | a client's welcome references `<id> <hex group id> <epoch> <expires_at>`, oldest first |
//! | `mimi:outbox-groups` | set | group prefixes whose outbox may hold actions (start-up replay) |
//! | `mimi:{o:<hex peer>}:queue` | list | `DSFanoutRequest`s waiting for delivery to the peer, oldest first |
//! | `mimi:{o:<hex peer>}:note` | string | what a follower remembers of the peer between deliveries |
//! | `mimi:outbound-peers` | set | peers whose queue may hold deliveries |
//!
//! Large values do not travel through Lua: a commit's messages, GroupInfo, Welcome and tree
//! (tens to hundreds of KB at 1000 members; each KB passed as a script argument costs Redis
//! about as much again in Lua) are written with plain `SET ... PX` under `staged:<id>:` in
//! the same pipeline, just before the commit script, which checks they are all there and
//! `RENAME`s them into place (O(1)) or, losing the compare-and-set, deletes them. If the
//! gateway dies in between they expire.
//!
//! A welcome (its packet and the epoch's tree) is stored once, in the group's slot; it goes
//! when its last recipient acknowledges it, when its last pending recipient is removed from
//! the group, or, once expired, at the group's next commit.
//!
//! Outbox. A commit's welcome index entries (slot of each recipient), key queue
//! advancements (slot of each added client) and fan-out (slot of each peer) cannot be in the
//! commit's script on a Cluster; nor can a held proposal's fan-out, nor a routed application
//! message's queue entries (slot of each recipient) and fan-out.
//! The commit script appends them to the group's `outbox` in the same atomic step (`w <hex
//! handle> <reference>` and `k <client> <hex KeyPackageRef>`); the gateway then carries
//! them out, in order, and removes each once done. Both actions are idempotent (an index
//! entry is appended only if absent; advancing a queue whose package is gone does nothing),
//! so carrying one out twice is harmless. Before a commit with such actions the group is
//! added to `mimi:outbox-groups`; it leaves once its outbox is empty. If a gateway dies
//! between the script and the actions, they are carried out by the next operation on the
//! group (every group script answers the outbox's length, and a non-empty outbox is drained,
//! oldest action first), by [`RedisStore::replay_outboxes`] at the next start and every 5 s
//! in a running gateway (`serve::sweep_outboxes`).

use async_trait::async_trait;
use redis::Value;
use tls_codec::{Serialize as _, VLBytes};
use uuid::Uuid;

use super::RedisStore;
use crate::mls::group_state::PublicState;
use crate::store::{
    CommitRecord, CurrentGroupInfo, GroupHead, GroupStoreError, Groups, HeldProposal, KeyQueues,
    MessageQueues, NewGroup, OutboundQueues, PendingWelcome, StoreError, StoredGroup,
    WelcomeRecord,
};

/// Recipients of a routed message per outbox action.
const RECIPIENTS_PER_ACTION: usize = 64;

/// The set of groups whose outbox may hold actions: one key, touched alone.
const OUTBOX_GROUPS: &str = "mimi:outbox-groups";

/// KEYS: head. ARGV: prefix, leaf_slots, parent_slots, tree_hash, context, ith, tag,
/// group_info, epoch, hub ('' for a group created here), then node index/bytes pairs.
/// Returns 0 if the group exists, else 1.
pub(super) const CREATE_GROUP: &str = include_str!("lua/create_group.lua");

/// KEYS: head. ARGV: prefix, epoch, welcome id, expires_at, packet, tree, then recipients.
/// Registers a welcome into a mirrored group's epoch. Returns 0 for an unknown group, 2 if
/// this welcome is already there, 1 if registered.
pub(super) const ADD_WELCOME: &str = include_str!("lua/add_welcome.lua");

/// KEYS: head. ARGV: prefix. Returns {} or {epoch, proposal count}.
pub(super) const GROUP_HEAD: &str = include_str!("lua/group_head.lua");

/// KEYS: head. ARGV: prefix. Returns {} or {epoch, leaf_slots, parent_slots, tree_hash,
/// context, ith, tag, group_info or '', has_group_info (0/1), {index, bytes, ...}, {refs},
/// {packets}, outbox length}.
pub(super) const LOAD_GROUP: &str = include_str!("lua/load_group.lua");

/// KEYS: head. ARGV: prefix, epoch, ref, packet, outbox entries (the proposal's fan-out)...
/// Returns {status, value, outbox length}:
/// status 0 unknown group, 2 stale (value: current epoch), 3 duplicate, 1 held (value: how
/// many proposals the epoch holds).
pub(super) const ADD_PROPOSAL: &str = include_str!("lua/add_proposal.lua");

/// KEYS: head. ARGV: prefix, outbox entries... Returns {status, 0, outbox length}: status 0
/// unknown group, 1 accepted (the entries are in the outbox).
pub(super) const ROUTE_MESSAGE: &str = include_str!("lua/route_message.lua");

/// How long the lease on a group's outbox holds: a gateway that dies settling it leaves it
/// to the next operation on the group after this.
const OUTBOX_LEASE_MS: u64 = 30_000;

/// Times one settling of an outbox takes the lease at most (entries added while it held
/// the lease are carried out in the next): past it, what is left waits for the next
/// operation on the group or the running gateways' sweep (`serve::sweep_outboxes`).
const OUTBOX_PASSES: usize = 64;

/// KEYS: head. ARGV: prefix. Returns {0} for an unknown group, else {1, {packets}}.
pub(super) const PROPOSALS: &str = include_str!("lua/proposals.lua");

/// KEYS: head. ARGV: prefix, from_epoch, now, leaf_slots, parent_slots, tree_hash, context,
/// ith, tag, has_group_info (0/1), staged id, has_welcome (0/1), welcome id, expires_at,
/// retained epochs (0: all), then four counted lists (a count, then the items): recipients, removed handles, node
/// changes (index, present 0/1, bytes: three items each), outbox entries. The staged
/// values (`staged:<id>:messages`, and `group-info`, `welcome-packet`, `welcome-tree` as
/// flagged) must exist. Returns {status, value, outbox length}: status 0 unknown group, 2
/// stale (value: current epoch; nothing changed), 3 staged values missing (nothing changed),
/// 1 applied (value: the new epoch).
pub(super) const APPLY_COMMIT: &str = include_str!("lua/apply_commit.lua");

/// KEYS: head. ARGV: prefix, start, end (or '' for the current epoch). Returns {0} unknown
/// group, {2, current} out of range, {3, current, pruned} before the retained epochs, {1,
/// {one blob per epoch, in order}}.
pub(super) const CONTROL_MESSAGES: &str = include_str!("lua/control_messages.lua");

/// KEYS: head. ARGV: prefix, epoch, welcome id, handle, now. Returns {packet, tree} if the
/// welcome exists with this id, has not expired and still waits for the handle, else {}.
pub(super) const READ_WELCOME: &str = include_str!("lua/read_welcome.lua");

/// KEYS: head. ARGV: prefix, epoch, welcome id, handle. Drops the handle from the welcome's
/// pending recipients, and the welcome (with its tree) once none is left. Returns 1 if the
/// welcome was there, else 0.
pub(super) const ACKNOWLEDGE_WELCOME: &str = include_str!("lua/acknowledge_welcome.lua");

/// KEYS: head. ARGV: prefix. Deletes every key of the group but its outbox (accepted
/// cross-slot actions are still carried out). Returns 0 for an unknown group, else 1.
pub(super) const DELETE_GROUP: &str = include_str!("lua/delete_group.lua");

/// KEYS: a client's welcome index. ARGV: reference. Appends the reference unless present
/// (outbox actions may be carried out twice). Returns 1 if appended, else 0.
pub(super) const INDEX_WELCOME: &str = include_str!("lua/index_welcome.lua");

fn malformed(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply from Redis: {what}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes of even-length hex (any length, empty included).
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| {
            let pair = text.get(at..at + 2)?;
            pair.bytes()
                .all(|byte| byte.is_ascii_hexdigit())
                .then(|| u8::from_str_radix(pair, 16).ok())?
        })
        .collect()
}

fn group_prefix(app: Uuid, group_id: &[u8]) -> String {
    format!("mimi:{{g:{app}:{}}}:", hex(group_id))
}

/// The application of a group prefix built by `group_prefix`.
fn prefix_app(prefix: &str) -> Option<Uuid> {
    let rest = prefix.strip_prefix("mimi:{g:")?;
    let (app, _) = rest.split_once(':')?;
    Uuid::parse_str(app).ok()
}

fn welcome_index(app: Uuid, handle: &str) -> String {
    format!("mimi:{{w:{app}:{}}}:welcomes", hex(handle.as_bytes()))
}

/// A welcome reference in a client's index: `<welcome id> <hex group id> <epoch>
/// <expires_at>`.
#[derive(Debug, PartialEq, Eq)]
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
        let entry = WelcomeEntry {
            id: Uuid::parse_str(parts.next()?).ok()?,
            group_id: unhex(parts.next()?)?,
            epoch: parts.next()?.parse().ok()?,
            expires_at: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(entry)
    }
}

/// A cross-slot action of an applied commit, held proposal or routed application message:
/// `w <hex handle> <reference>` indexes a welcome for a recipient, `k <client> <hex
/// KeyPackageRef>` advances a key queue, `f <hex peer> <hex body>,...` queues a fan-out for a
/// peer, `m <hex handle>,... <hex id>.<hex entry>` queues a message for clients (the entry
/// once, however many recipients).
#[derive(Debug, PartialEq, Eq)]
enum OutboxAction {
    IndexWelcome {
        handle: String,
        entry: String,
    },
    AdvanceKeyQueue {
        client: Uuid,
        reference: Vec<u8>,
    },
    FanOut {
        peer: String,
        bodies: Vec<Vec<u8>>,
    },
    /// `now`: when the hub accepted the message, on the gateway's clock, which the queues'
    /// dedup window is measured on whenever the action is carried out.
    Enqueue {
        handles: Vec<String>,
        id: Vec<u8>,
        entry: Vec<u8>,
        now: u64,
    },
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
            OutboxAction::FanOut { peer, bodies } => {
                let bodies: Vec<String> = bodies.iter().map(|body| hex(body)).collect();
                format!("f {} {}", hex(peer.as_bytes()), bodies.join(","))
            }
            OutboxAction::Enqueue {
                handles,
                id,
                entry,
                now,
            } => {
                let handles: Vec<String> = handles
                    .iter()
                    .map(|handle| hex(handle.as_bytes()))
                    .collect();
                format!("m {} {}.{}.{now}", handles.join(","), hex(id), hex(entry))
            }
        }
    }

    fn decode(text: &str) -> Option<OutboxAction> {
        let (kind, rest) = text.split_once(' ')?;
        let (first, second) = rest.split_once(' ')?;
        match kind {
            "w" => Some(OutboxAction::IndexWelcome {
                handle: String::from_utf8(unhex(first)?).ok()?,
                entry: WelcomeEntry::decode(second)?.encode(),
            }),
            "k" => Some(OutboxAction::AdvanceKeyQueue {
                client: Uuid::parse_str(first).ok()?,
                reference: unhex(second)?,
            }),
            "f" => Some(OutboxAction::FanOut {
                peer: String::from_utf8(unhex(first)?).ok()?,
                bodies: second.split(',').map(unhex).collect::<Option<_>>()?,
            }),
            "m" => {
                let mut parts = second.splitn(3, '.');
                let (id, entry) = (parts.next()?, parts.next()?);
                // An action written by a gateway before the acceptance time was recorded
                // (an upgrade mid-flight): measured from now, as that gateway would have.
                let now = match parts.next() {
                    Some(now) => now.parse().ok()?,
                    None => crate::keys::unix_now(),
                };
                Some(OutboxAction::Enqueue {
                    handles: first
                        .split(',')
                        .map(|handle| {
                            String::from_utf8(unhex(handle)?)
                                .ok()
                                .filter(|handle| !handle.is_empty())
                        })
                        .collect::<Option<_>>()?,
                    id: unhex(id)?,
                    entry: unhex(entry)?,
                    now,
                })
            }
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

fn count(value: &Value) -> Option<usize> {
    number(value).and_then(|number| usize::try_from(number).ok())
}

fn array(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

/// A `{status, value, outbox length}` reply.
fn status_reply(reply: &Value, what: &str) -> Result<(u64, u64, u64), StoreError> {
    match array(reply) {
        Some([status, value, pending]) => Ok((
            number(status).ok_or_else(|| malformed(what))?,
            number(value).ok_or_else(|| malformed(what))?,
            number(pending).ok_or_else(|| malformed(what))?,
        )),
        _ => Err(malformed(what)),
    }
}

/// A reply that is an array of byte strings.
fn byte_strings(value: &Value, what: &str) -> Result<Vec<Vec<u8>>, StoreError> {
    array(value)
        .ok_or_else(|| malformed(what))?
        .iter()
        .map(|item| bytes(item).ok_or_else(|| malformed(what)))
        .collect()
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

    /// `SET`s each staged value under `staged_prefix` (same slot as `key`) with an expiry,
    /// then runs `script` on `key`: one pipeline, one round trip. A server that does not
    /// have the script yet gets it by the usual `EVAL` fallback; the staged values are in
    /// place by then.
    async fn invoke_with_staged(
        &self,
        script: &redis::Script,
        key: &str,
        staged_prefix: &str,
        staged: Vec<(&'static str, Vec<u8>)>,
        args: Vec<Vec<u8>>,
    ) -> Result<Value, StoreError> {
        let mut pipeline = redis::pipe();
        // Errors come back as values: a SET's failure shows as missing staged values (the
        // script answers that), the script's as its reply.
        pipeline.ignore_errors();
        for (name, value) in staged {
            pipeline
                .cmd("SET")
                .arg(format!("{staged_prefix}{name}"))
                .arg(value)
                .arg("PX")
                .arg(STAGED_TTL_MS)
                .ignore();
        }
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(script.get_hash()).arg(1).arg(key);
        for arg in &args {
            evalsha.arg(arg.as_slice());
        }
        pipeline.add_command(evalsha);
        let (reply,): (Value,) = self
            .run(|mut connection| async move { pipeline.query_async(&mut connection).await })
            .await?;
        match reply {
            Value::ServerError(error) if error.kind() == Some(redis::ServerErrorKind::NoScript) => {
                self.invoke(script, &[key.to_owned()], args).await
            }
            Value::ServerError(error) => Err(StoreError::Unavailable(format!(
                "commit script failed: {error:?}"
            ))),
            reply => Ok(reply),
        }
    }

    /// One command on one key (or none), no script.
    pub(super) async fn command<T: redis::FromRedisValue>(
        &self,
        name: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<T, StoreError> {
        let mut command = redis::cmd(name);
        for arg in args {
            command.arg(arg);
        }
        self.run(|mut connection| async move { command.query_async(&mut connection).await })
            .await
    }

    async fn list(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.command(
            "LRANGE",
            vec![key.as_bytes().to_vec(), b"0".to_vec(), b"-1".to_vec()],
        )
        .await
    }

    async fn remove_from_list(&self, key: &str, entry: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .command(
                "LREM",
                vec![
                    key.as_bytes().to_vec(),
                    b"1".to_vec(),
                    entry.as_bytes().to_vec(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Lists the group for the start-up replay before a script can fill its outbox with
    /// `outbox`, so a gateway dying right after the script leaves nothing stranded.
    async fn list_for_replay(
        &self,
        prefix: &str,
        outbox: &[OutboxAction],
    ) -> Result<(), StoreError> {
        if outbox.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .command(
                "SADD",
                vec![
                    OUTBOX_GROUPS.as_bytes().to_vec(),
                    prefix.as_bytes().to_vec(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Takes the group off the start-up replay set.
    async fn unlist_for_replay(&self, prefix: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .command(
                "SREM",
                vec![
                    OUTBOX_GROUPS.as_bytes().to_vec(),
                    prefix.as_bytes().to_vec(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Carries out the group's pending outbox actions, oldest first, removing each once
    /// done; then drops the group from the start-up replay set if its outbox is empty. One
    /// operation at a time settles a group's outbox (it holds the group's `outbox-lease`):
    /// operations side by side would each carry out every entry they saw (64 routed
    /// messages queued up to 64 times each for a peer), and could push a peer's fan-out out
    /// of order. An operation that finds the lease held leaves the outbox to its holder,
    /// which looks again after letting the lease go; a holder that died leaves it to the
    /// next operation, or to the sweep of a running gateway, once the lease lapses.
    async fn settle_outbox(&self, prefix: &str) -> Result<(), StoreError> {
        let app = prefix_app(prefix).ok_or_else(|| malformed("group prefix"))?;
        let key = format!("{prefix}outbox");
        let lease = format!("{prefix}outbox-lease");
        let holder = Uuid::new_v4().to_string();
        for _ in 0..OUTBOX_PASSES {
            if !self.hold_outbox(&lease, &holder).await? {
                return Ok(());
            }
            let drained = self.drain_outbox(app, &key, &lease, &holder).await;
            let released = self
                .invoke(
                    &self.scripts.release_outbound,
                    std::slice::from_ref(&lease),
                    vec![holder.clone().into_bytes()],
                )
                .await;
            drained?;
            released?;
            let left: i64 = self.command("LLEN", vec![key.clone().into_bytes()]).await?;
            if left == 0 {
                self.unlist_for_replay(prefix).await?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Takes the outbox's lease for `holder` (for `OUTBOX_LEASE_MS`) unless another holds it.
    async fn hold_outbox(&self, lease: &str, holder: &str) -> Result<bool, StoreError> {
        let reply = self
            .invoke(
                &self.scripts.lease_outbound,
                &[lease.to_owned()],
                vec![
                    holder.as_bytes().to_vec(),
                    OUTBOX_LEASE_MS.to_string().into_bytes(),
                ],
            )
            .await?;
        Ok(redis::from_redis_value::<i64>(reply).map_err(|_| malformed("outbox lease"))? == 1)
    }

    /// Carries out every entry of the outbox `key` (of `app`'s group), oldest first,
    /// removing each once done. A long drain renews `holder`'s lease as it goes (a third
    /// of the lease at a time), so that no other settler takes over while it works; one
    /// that finds the lease taken (it lapsed meanwhile) stops and leaves the rest.
    async fn drain_outbox(
        &self,
        app: Uuid,
        key: &str,
        lease: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let renew_every = std::time::Duration::from_millis(OUTBOX_LEASE_MS / 3);
        let mut renewed = std::time::Instant::now();
        for entry in self.list(key).await? {
            if renewed.elapsed() >= renew_every {
                if !self.hold_outbox(lease, holder).await? {
                    return Ok(());
                }
                renewed = std::time::Instant::now();
            }
            self.carry_out(app, &entry).await?;
            self.remove_from_list(key, &entry).await?;
        }
        Ok(())
    }

    /// Carries out one outbox action of `app`'s group.
    async fn carry_out(&self, app: Uuid, entry: &str) -> Result<(), StoreError> {
        match OutboxAction::decode(entry) {
            Some(OutboxAction::IndexWelcome { handle, entry }) => {
                self.invoke(
                    &self.scripts.index_welcome,
                    &[welcome_index(app, &handle)],
                    vec![entry.into_bytes()],
                )
                .await?;
            }
            Some(OutboxAction::AdvanceKeyQueue { client, reference }) => {
                self.advance_key_queue(app, client, &reference).await?;
            }
            // Carried out twice (a gateway died before removing the entry), the peer
            // receives it twice and drops the second by its message id.
            Some(OutboxAction::FanOut { peer, bodies }) => {
                self.enqueue_outbound(&peer, &bodies).await?;
            }
            // Carried out twice, the queue keeps one: the message's id is still queued.
            Some(OutboxAction::Enqueue {
                handles,
                id,
                entry,
                now,
            }) => {
                self.enqueue_messages(app, &handles, &id, &entry, now)
                    .await?;
            }
            None => tracing::warn!(entry, "dropping an undecodable group outbox entry"),
        }
        Ok(())
    }

    /// `settle_outbox` after an operation that succeeded: a failure leaves the actions in
    /// the outbox for the next operation on the group or the sweep, and does not
    /// turn the operation into a failure.
    async fn settle_outbox_after(&self, prefix: &str) {
        if let Err(error) = self.settle_outbox(prefix).await {
            tracing::warn!(%error, prefix, "group outbox left for later");
        }
    }

    /// Carries out every group's pending outbox (at start-up: a gateway may have died between
    /// a commit and its cross-slot actions; and every few seconds in a running gateway, for
    /// what a dead or failed lease holder left). Answers how many groups were listed.
    pub async fn replay_outboxes(&self) -> Result<usize, StoreError> {
        let prefixes: Vec<String> = self
            .command("SMEMBERS", vec![OUTBOX_GROUPS.as_bytes().to_vec()])
            .await?;
        for prefix in &prefixes {
            if prefix_app(prefix).is_none() {
                tracing::warn!(prefix, "dropping a malformed entry of {OUTBOX_GROUPS}");
                self.unlist_for_replay(prefix).await?;
                continue;
            }
            self.settle_outbox(prefix).await?;
        }
        Ok(prefixes.len())
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

/// A group as LOAD_GROUP reads it.
struct Loaded {
    epoch: u64,
    state: PublicState,
    group_info: Option<Vec<u8>>,
    proposals: Vec<HeldProposal>,
    outbox: u64,
}

fn parse_loaded(reply: &Value) -> Result<Option<Loaded>, StoreError> {
    let items = array(reply).ok_or_else(|| malformed("group"))?;
    if items.is_empty() {
        return Ok(None);
    }
    if items.len() != 13 {
        return Err(malformed("group fields"));
    }
    let text_number = |at: usize| -> Result<u64, StoreError> {
        number(&items[at]).ok_or_else(|| malformed("group number"))
    };
    let slots = |at: usize| -> Result<u32, StoreError> {
        u32::try_from(text_number(at)?).map_err(|_| malformed("slots"))
    };
    let raw = |at: usize| -> Result<Vec<u8>, StoreError> {
        bytes(&items[at]).ok_or_else(|| malformed("group bytes"))
    };
    let mut state = PublicState {
        leaf_slots: slots(1)?,
        parent_slots: slots(2)?,
        tree_hash: raw(3)?,
        context: raw(4)?,
        interim_transcript_hash: raw(5)?,
        confirmation_tag: raw(6)?,
        ..PublicState::default()
    };
    let group_info = match text_number(8)? {
        1 => Some(raw(7)?),
        0 => None,
        _ => return Err(malformed("group info flag")),
    };
    let nodes = array(&items[9]).ok_or_else(|| malformed("nodes"))?;
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
    let refs = byte_strings(&items[10], "proposal refs")?;
    let packets = byte_strings(&items[11], "proposal packets")?;
    if refs.len() != packets.len() {
        return Err(malformed("proposal lists differ in length"));
    }
    let proposals = refs
        .into_iter()
        .zip(packets)
        .map(|(reference, packet)| HeldProposal { reference, packet })
        .collect();
    Ok(Some(Loaded {
        epoch: text_number(0)?,
        state,
        group_info,
        proposals,
        outbox: text_number(12)?,
    }))
}

impl RedisStore {
    async fn read_group(&self, app: Uuid, group_id: &[u8]) -> Result<Option<Loaded>, StoreError> {
        let prefix = group_prefix(app, group_id);
        let reply = self
            .invoke(
                &self.scripts.load_group,
                &[format!("{prefix}head")],
                vec![prefix.clone().into_bytes()],
            )
            .await?;
        let loaded = parse_loaded(&reply)?;
        if loaded.as_ref().is_some_and(|loaded| loaded.outbox > 0) {
            self.settle_outbox_after(&prefix).await;
        }
        Ok(loaded)
    }
}

/// The outbox actions of a commit: a welcome index entry per recipient (once per handle),
/// then the key queue advancements.
fn outbox_actions(group_id: &[u8], commit: &CommitRecord) -> Vec<OutboxAction> {
    let mut actions = Vec::new();
    if let Some(welcome) = &commit.welcome {
        let entry = WelcomeEntry {
            id: welcome.id,
            group_id: group_id.to_vec(),
            epoch: commit.from_epoch + 1,
            expires_at: welcome.expires_at,
        }
        .encode();
        let mut seen = std::collections::BTreeSet::new();
        for handle in &welcome.recipients {
            if seen.insert(handle) {
                actions.push(OutboxAction::IndexWelcome {
                    handle: handle.clone(),
                    entry: entry.clone(),
                });
            }
        }
    }
    for (client, reference) in &commit.used_key_packages {
        actions.push(OutboxAction::AdvanceKeyQueue {
            client: *client,
            reference: reference.clone(),
        });
    }
    actions.extend(fanout_actions(&commit.fanout));
    actions
}

fn fanout_actions(fanout: &[(String, Vec<Vec<u8>>)]) -> impl Iterator<Item = OutboxAction> + '_ {
    fanout.iter().map(|(peer, bodies)| OutboxAction::FanOut {
        peer: peer.clone(),
        bodies: bodies.clone(),
    })
}

/// APPLY_COMMIT's arguments.
/// How long a commit's staged values live if its script never runs (a gateway that died
/// between the two): far past any request's time.
const STAGED_TTL_MS: u64 = 10 * 60 * 1000;

/// The large values of a commit, written under `staged:<id>:` before its script: the
/// control messages always, then the GroupInfo and the Welcome with its tree when present.
fn staged_values(commit: &CommitRecord) -> Result<Vec<(&'static str, Vec<u8>)>, StoreError> {
    let messages = commit
        .messages
        .iter()
        .map(|message| VLBytes::new(message.clone()))
        .collect::<Vec<_>>()
        .tls_serialize_detached()
        .map_err(|error| StoreError::Unavailable(format!("encoding messages: {error}")))?;
    let mut values = vec![("messages", messages)];
    if let Some(group_info) = &commit.group_info {
        values.push(("group-info", group_info.clone()));
    }
    if let Some(welcome) = &commit.welcome {
        values.push(("welcome-packet", welcome.packet.clone()));
        values.push(("welcome-tree", welcome.ratchet_tree.clone()));
    }
    Ok(values)
}

fn commit_args(
    prefix: &str,
    staged_id: &str,
    commit: &CommitRecord,
    outbox: &[OutboxAction],
) -> Vec<Vec<u8>> {
    let change = &commit.change;
    let flag = |set: bool| if set { b"1".to_vec() } else { b"0".to_vec() };
    let mut args = vec![
        prefix.as_bytes().to_vec(),
        commit.from_epoch.to_string().into_bytes(),
        commit.now.to_string().into_bytes(),
        change.leaf_slots.to_string().into_bytes(),
        change.parent_slots.to_string().into_bytes(),
        change.tree_hash.clone(),
        change.context.clone(),
        change.interim_transcript_hash.clone(),
        change.confirmation_tag.clone(),
        flag(commit.group_info.is_some()),
        staged_id.as_bytes().to_vec(),
        flag(commit.welcome.is_some()),
    ];
    match &commit.welcome {
        Some(welcome) => args.extend([
            welcome.id.to_string().into_bytes(),
            welcome.expires_at.to_string().into_bytes(),
        ]),
        None => args.extend([Vec::new(), b"0".to_vec()]),
    }
    args.push(commit.retained_epochs.to_string().into_bytes());
    let recipients: &[String] = commit
        .welcome
        .as_ref()
        .map_or(&[], |welcome| &welcome.recipients);
    args.push(recipients.len().to_string().into_bytes());
    args.extend(recipients.iter().map(|handle| handle.as_bytes().to_vec()));
    args.push(commit.removed_handles.len().to_string().into_bytes());
    args.extend(
        commit
            .removed_handles
            .iter()
            .map(|handle| handle.as_bytes().to_vec()),
    );
    args.push(change.nodes.len().to_string().into_bytes());
    for (index, node) in &change.nodes {
        args.push(index.to_string().into_bytes());
        args.push(flag(node.is_some()));
        args.push(node.clone().unwrap_or_default());
    }
    args.push(outbox.len().to_string().into_bytes());
    args.extend(outbox.iter().map(|action| action.encode().into_bytes()));
    args
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
        args.push(group.epoch.to_string().into_bytes());
        args.push(group.hub.clone().unwrap_or_default().into_bytes());
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
        match array(&reply).ok_or_else(|| malformed("head"))? {
            [] => Ok(None),
            [epoch, proposals] => Ok(Some(GroupHead {
                epoch: number(epoch).ok_or_else(|| malformed("epoch"))?,
                proposals: count(proposals).ok_or_else(|| malformed("count"))?,
            })),
            _ => Err(malformed("head")),
        }
    }

    async fn pending_welcomes(
        &self,
        app: Uuid,
        group_id: &[u8],
        now: u64,
    ) -> Result<usize, StoreError> {
        // The `welcomes` zset holds an epoch while its welcome has a pending recipient,
        // scored by when it expires.
        let prefix = group_prefix(app, group_id);
        self.command(
            "ZCOUNT",
            vec![
                format!("{prefix}welcomes").into_bytes(),
                format!("({now}").into_bytes(),
                b"+inf".to_vec(),
            ],
        )
        .await
    }

    async fn group_hub(&self, app: Uuid, group_id: &[u8]) -> Result<Option<String>, StoreError> {
        let prefix = group_prefix(app, group_id);
        self.command(
            "HGET",
            vec![format!("{prefix}head").into_bytes(), b"hub".to_vec()],
        )
        .await
    }

    async fn add_welcome(
        &self,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        welcome: &WelcomeRecord,
    ) -> Result<(), GroupStoreError> {
        let prefix = group_prefix(app, group_id);
        let mut args = vec![
            prefix.clone().into_bytes(),
            epoch.to_string().into_bytes(),
            welcome.id.to_string().into_bytes(),
            welcome.expires_at.to_string().into_bytes(),
            welcome.packet.clone(),
            welcome.ratchet_tree.clone(),
        ];
        args.extend(
            welcome
                .recipients
                .iter()
                .map(|handle| handle.as_bytes().to_vec()),
        );
        let reply = self
            .invoke(&self.scripts.add_welcome, &[format!("{prefix}head")], args)
            .await?;
        if number(&reply) == Some(0) {
            return Err(GroupStoreError::UnknownGroup);
        }
        // The index entries live in each recipient's slot; appending one twice is a no-op,
        // so a redelivered welcome that finds itself registered still completes them.
        let entry = WelcomeEntry {
            id: welcome.id,
            group_id: group_id.to_vec(),
            epoch,
            expires_at: welcome.expires_at,
        }
        .encode();
        for handle in welcome
            .recipients
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
        {
            self.invoke(
                &self.scripts.index_welcome,
                &[welcome_index(app, handle)],
                vec![entry.clone().into_bytes()],
            )
            .await?;
        }
        Ok(())
    }

    async fn load_group(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<StoredGroup>, StoreError> {
        Ok(self
            .read_group(app, group_id)
            .await?
            .map(|loaded| StoredGroup {
                epoch: loaded.epoch,
                state: loaded.state,
                proposals: loaded.proposals,
            }))
    }

    async fn add_proposal(
        &self,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        proposal: &HeldProposal,
        fanout: &[(String, Vec<Vec<u8>>)],
    ) -> Result<usize, GroupStoreError> {
        let prefix = group_prefix(app, group_id);
        let outbox: Vec<OutboxAction> = fanout_actions(fanout).collect();
        self.list_for_replay(&prefix, &outbox).await?;
        let mut args = vec![
            prefix.clone().into_bytes(),
            epoch.to_string().into_bytes(),
            proposal.reference.clone(),
            proposal.packet.clone(),
        ];
        args.extend(outbox.iter().map(|action| action.encode().into_bytes()));
        let reply = self
            .invoke(&self.scripts.add_proposal, &[format!("{prefix}head")], args)
            .await?;
        let (status, value, pending) = status_reply(&reply, "proposal reply")?;
        if pending > 0 {
            self.settle_outbox_after(&prefix).await;
        }
        match status {
            0 => Err(GroupStoreError::UnknownGroup),
            2 => Err(GroupStoreError::StaleEpoch { current: value }),
            3 => Err(GroupStoreError::DuplicateProposal),
            1 => Ok(usize::try_from(value).map_err(|_| malformed("proposal count"))?),
            _ => Err(malformed("proposal status").into()),
        }
    }

    async fn route_message(
        &self,
        app: Uuid,
        group_id: &[u8],
        recipients: &[String],
        id: &[u8],
        entry: &[u8],
        fanout: &[(String, Vec<Vec<u8>>)],
        now: u64,
    ) -> Result<(), GroupStoreError> {
        let prefix = group_prefix(app, group_id);
        // The entry once per chunk of recipients: the outbox grows slowly with the group, and
        // an action carried out again after a failure repeats at most one chunk (each queue
        // drops the repeat by the message's id).
        let outbox: Vec<OutboxAction> = recipients
            .chunks(RECIPIENTS_PER_ACTION)
            .map(|handles| OutboxAction::Enqueue {
                handles: handles.to_vec(),
                id: id.to_vec(),
                entry: entry.to_vec(),
                now,
            })
            .chain(fanout_actions(fanout))
            .collect();
        self.list_for_replay(&prefix, &outbox).await?;
        let mut args = vec![prefix.clone().into_bytes()];
        args.extend(outbox.iter().map(|action| action.encode().into_bytes()));
        let reply = self
            .invoke(
                &self.scripts.route_message,
                &[format!("{prefix}head")],
                args,
            )
            .await?;
        let (status, _, pending) = status_reply(&reply, "route reply")?;
        if pending > 0 {
            self.settle_outbox_after(&prefix).await;
        }
        match status {
            0 => Err(GroupStoreError::UnknownGroup),
            1 => Ok(()),
            _ => Err(malformed("route status").into()),
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
        match array(&reply).ok_or_else(|| malformed("proposals"))? {
            [status] if number(status) == Some(0) => Ok(None),
            [status, packets] if number(status) == Some(1) => {
                byte_strings(packets, "proposal packets").map(Some)
            }
            _ => Err(malformed("proposals")),
        }
    }

    async fn apply_commit(
        &self,
        app: Uuid,
        group_id: &[u8],
        commit: &CommitRecord,
    ) -> Result<u64, GroupStoreError> {
        let prefix = group_prefix(app, group_id);
        let outbox = outbox_actions(group_id, commit);
        let staged_id = Uuid::new_v4().simple().to_string();
        let staged = staged_values(commit)?;
        let args = commit_args(&prefix, &staged_id, commit, &outbox);
        self.list_for_replay(&prefix, &outbox).await?;
        let reply = self
            .invoke_with_staged(
                &self.scripts.apply_commit,
                &format!("{prefix}head"),
                &format!("{prefix}staged:{staged_id}:"),
                staged,
                args,
            )
            .await?;
        let (status, value, pending) = status_reply(&reply, "commit reply")?;
        // The commit's own actions and any an earlier commit left, oldest first; a lost
        // compare-and-set also unlists the group again if its outbox is empty.
        if pending > 0 || !outbox.is_empty() {
            self.settle_outbox_after(&prefix).await;
        }
        match status {
            0 => Err(GroupStoreError::UnknownGroup),
            2 => Err(GroupStoreError::StaleEpoch { current: value }),
            3 => Err(StoreError::Unavailable(
                "the commit's staged values were gone before its script ran".into(),
            )
            .into()),
            1 => Ok(value),
            _ => Err(malformed("commit status").into()),
        }
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
        let blobs = match items {
            [status] if number(status) == Some(0) => return Err(GroupStoreError::UnknownGroup),
            [status, current] if number(status) == Some(2) => {
                let current = number(current).ok_or_else(|| malformed("current epoch"))?;
                return Err(GroupStoreError::EpochOutOfRange { current });
            }
            [status, current, pruned] if number(status) == Some(3) => {
                return Err(GroupStoreError::EpochPruned {
                    pruned: number(pruned).ok_or_else(|| malformed("pruned epoch"))?,
                    current: number(current).ok_or_else(|| malformed("current epoch"))?,
                });
            }
            [status, blobs] if number(status) == Some(1) => byte_strings(blobs, "epochs")?,
            _ => return Err(malformed("control reply").into()),
        };
        let mut messages = Vec::new();
        for blob in blobs {
            let decoded = <Vec<VLBytes> as tls_codec::Deserialize>::tls_deserialize_exact(&blob)
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
        Ok(self
            .read_group(app, group_id)
            .await?
            .map(|loaded| CurrentGroupInfo {
                group_info: loaded.group_info,
                ratchet_tree: loaded.state.ratchet_tree(),
            }))
    }

    async fn welcomes(
        &self,
        app: Uuid,
        handle: &str,
        now: u64,
    ) -> Result<Vec<PendingWelcome>, StoreError> {
        let index = welcome_index(app, handle);
        let mut pending = Vec::new();
        for text in self.list(&index).await? {
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
                    match array(&reply).ok_or_else(|| malformed("welcome"))? {
                        [] => None,
                        [packet, tree] => Some(PendingWelcome {
                            id: entry.id,
                            group_id: entry.group_id,
                            epoch: entry.epoch,
                            packet: bytes(packet).ok_or_else(|| malformed("welcome"))?,
                            ratchet_tree: bytes(tree).ok_or_else(|| malformed("tree"))?,
                        }),
                        _ => return Err(malformed("welcome")),
                    }
                }
                _ => None,
            };
            match found {
                Some(welcome) => pending.push(welcome),
                // Expired, withdrawn or acknowledged: the reference goes too.
                None => self.remove_from_list(&index, &text).await?,
            }
        }
        Ok(pending)
    }

    async fn delete_group(&self, app: Uuid, group_id: &[u8]) -> Result<bool, StoreError> {
        let prefix = group_prefix(app, group_id);
        let reply = self
            .invoke(
                &self.scripts.delete_group,
                &[format!("{prefix}head")],
                vec![prefix.clone().into_bytes()],
            )
            .await?;
        Ok(number(&reply) == Some(1))
    }

    async fn acknowledge_welcome(
        &self,
        app: Uuid,
        handle: &str,
        welcome: Uuid,
    ) -> Result<bool, StoreError> {
        let index = welcome_index(app, handle);
        let Some((text, entry)) = self.list(&index).await?.into_iter().find_map(|text| {
            WelcomeEntry::decode(&text)
                .filter(|entry| entry.id == welcome)
                .map(|entry| (text, entry))
        }) else {
            return Ok(false);
        };
        // The group side first: a crash between the two leaves a reference reads drop.
        let prefix = group_prefix(app, &entry.group_id);
        let reply = self
            .invoke(
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
        number(&reply).ok_or_else(|| malformed("acknowledgement"))?;
        self.remove_from_list(&index, &text).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_any_length() {
        for bytes in [vec![], vec![0u8], vec![0x00, 0xab, 0xff], vec![7; 300]] {
            assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        }
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("+1"), None);
        assert_eq!(unhex("é0"), None);
    }

    #[test]
    fn key_names_hex_what_they_embed() {
        let app = Uuid::from_u128(7);
        let prefix = group_prefix(app, &[0x01, 0xfe]);
        assert_eq!(
            prefix,
            "mimi:{g:00000000-0000-0000-0000-000000000007:01fe}:"
        );
        assert_eq!(prefix_app(&prefix), Some(app));
        assert_eq!(prefix_app("mimi:{c:x}:"), None);
        assert_eq!(
            welcome_index(app, "a{b}:"),
            "mimi:{w:00000000-0000-0000-0000-000000000007:617b627d3a}:welcomes"
        );
    }

    #[test]
    fn outbox_entries_round_trip() {
        let entry = WelcomeEntry {
            id: Uuid::from_u128(42),
            group_id: vec![1, 2, 3],
            epoch: 9,
            expires_at: 1_700_000_000,
        };
        assert_eq!(WelcomeEntry::decode(&entry.encode()), Some(entry));
        let entry = WelcomeEntry {
            id: Uuid::from_u128(1),
            group_id: vec![],
            epoch: 1,
            expires_at: 2,
        }
        .encode();
        assert!(WelcomeEntry::decode(&format!("{entry} extra")).is_none());
        let actions = [
            OutboxAction::IndexWelcome {
                handle: "ü {x}: y".into(),
                entry: entry.clone(),
            },
            OutboxAction::AdvanceKeyQueue {
                client: Uuid::from_u128(3),
                reference: vec![0xde, 0xad],
            },
            OutboxAction::FanOut {
                peer: "b.localhost".into(),
                bodies: vec![vec![0, 1, 0xff], vec![2]],
            },
            // Handles with the separators of the encoding in them, and an empty entry.
            OutboxAction::Enqueue {
                handles: vec!["a,b".into(), "c.d e".into(), "ü".into()],
                id: vec![7; 32],
                entry: vec![],
                now: 1_700_000_000,
            },
        ];
        for action in actions {
            assert_eq!(OutboxAction::decode(&action.encode()), Some(action));
        }
        assert!(OutboxAction::decode("x a b").is_none());
        assert!(OutboxAction::decode("w 61 not-an-entry").is_none());
        // A message for nobody, or for an empty handle, is no action.
        assert!(OutboxAction::decode("m  07.").is_none());
        assert!(OutboxAction::decode("m 61, 07.").is_none());
        assert!(OutboxAction::decode("m 61 07").is_none());
        assert!(OutboxAction::decode("m 61 07.08.soon").is_none());
        // Written before the acceptance time was recorded: measured from the time it is
        // carried out.
        let before = crate::keys::unix_now();
        let Some(OutboxAction::Enqueue {
            handles,
            id,
            entry,
            now,
        }) = OutboxAction::decode("m 61 07.08")
        else {
            panic!("a legacy entry decodes");
        };
        assert_eq!(
            (handles, id, entry),
            (vec!["a".to_owned()], vec![7], vec![8])
        );
        assert!((before..=before + 5).contains(&now), "{now}");
    }
}
