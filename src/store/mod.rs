//! State of the gateway behind one async `Store` trait, grouped by concern, with two
//! implementations of one behaviour: `redis` (production; single node or Cluster) and
//! `memory` (the embedded default for a first run).
//!
//! DESIGN.md "State": every multi-key change is atomic (one Lua script in Redis), and every
//! Redis key carries a hash tag so each script touches one slot of a Cluster.

pub mod memory;
pub mod redis;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::StoreConfig;
use crate::mls::group_state::StateChange;
pub use crate::mls::records::{GroupHead, HeldProposal, NewGroup, StoredGroup};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached; nothing was changed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The operation was sent and not answered (in time, or the connection broke): being
    /// one atomic step it happened entirely or not at all, and which is unknown.
    #[error("store did not answer: {0}")]
    Unanswered(String),
}

impl StoreError {
    /// Whether the operation may have been applied.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::Unanswered(_))
    }
}

/// The replay cache of the signed-request envelope (DESIGN.md "Peer and application
/// authentication": "request id unseen (replay cache in the store, with TTL)").
#[async_trait]
pub trait ReplayCache: Send + Sync {
    /// Records that `sender` used `request_id` unless it was already recorded within `ttl`
    /// (`None`: a replay), and in the same atomic step counts the request in `window`, the
    /// sender's counter of its class (`rate_limits`): `Some(count in the window)`, 0 without
    /// a window. A replay is not counted.
    async fn record_request(
        &self,
        sender: &str,
        request_id: &[u8; 16],
        ttl: Duration,
        window: Option<RequestWindow<'_>>,
    ) -> Result<Option<u64>, StoreError>;

    /// `record_request` without a window: `false` for a replay.
    async fn record_request_id(
        &self,
        sender: &str,
        request_id: &[u8; 16],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(self
            .record_request(sender, request_id, ttl, None)
            .await?
            .is_some())
    }
}

/// A counter in fixed windows of `window_secs` (the window holding `now`, Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct RequestWindow<'a> {
    pub name: &'a str,
    pub window_secs: u64,
    pub now: u64,
}

impl RequestWindow<'_> {
    /// The window's number since the epoch; a counter lives for its window only.
    pub fn index(&self) -> u64 {
        self.now / self.window_secs.max(1)
    }

    /// Seconds from `now` to the window's end (at least 1).
    pub fn remaining_secs(&self) -> u64 {
        let length = self.window_secs.max(1);
        (length - self.now % length).max(1)
    }
}

/// Counters of one caller (`scope`, as the replay cache names senders) in fixed windows: the
/// key-package draining caps (`rate_limits.fresh_key_packages_*`). In Redis a scope's
/// counters share the hash tag of its replay records, so they count in one step with them.
#[async_trait]
pub trait RateCounters: Send + Sync {
    /// Adds one to each of `names`' counters in the window of `window_secs` holding `now`
    /// and answers their counts, in order; one atomic step.
    async fn count_in_window(
        &self,
        scope: &str,
        names: &[&str],
        window_secs: u64,
        now: u64,
    ) -> Result<Vec<u64>, StoreError>;
}

/// A registered client (architecture draft, "Managing Identities").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: Uuid,
    pub handle: String,
    pub tags: BTreeSet<String>,
}

/// A change to a client: a new handle (or none), tags to add and tags to remove (disjoint).
#[derive(Debug, Clone, Default)]
pub struct ClientChange {
    pub handle: Option<String>,
    pub add: BTreeSet<String>,
    pub remove: BTreeSet<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("no such client")]
    UnknownClient,
    #[error("client handle already taken")]
    HandleTaken,
    #[error("too many tags")]
    TooManyTags,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The client registry of one gateway: clients per application, unique handles, and an
/// index per tag so discovery never scans. Every change is atomic.
#[async_trait]
pub trait ClientRegistry: Send + Sync {
    /// Registers a new client; `HandleTaken` if another client of `app` has its handle.
    async fn register_client(&self, app: Uuid, client: &Client) -> Result<(), RegistryError>;

    /// Applies `change` atomically: all of it or nothing. The client may end with at most
    /// `max_tags` tags.
    async fn update_client(
        &self,
        app: Uuid,
        client: Uuid,
        change: &ClientChange,
        max_tags: usize,
    ) -> Result<Client, RegistryError>;

    async fn client(&self, app: Uuid, client: Uuid) -> Result<Option<Client>, StoreError>;

    /// Every client of `app` carrying `tag`, ordered by handle.
    async fn clients_with_tag(&self, app: Uuid, tag: &str) -> Result<Vec<Client>, StoreError>;

    /// Removes the client, its handle and its tag index entries; `false` if it did not exist.
    async fn delete_client(&self, app: Uuid, client: Uuid) -> Result<bool, StoreError>;

    /// The id of the client of `app` with this handle.
    async fn client_by_handle(&self, app: Uuid, handle: &str) -> Result<Option<Uuid>, StoreError>;

    /// Every client of `app` whose handle starts with `prefix`, ordered by handle: the
    /// clients of an account (handles `<account>/<device>`) without a scan.
    async fn clients_with_handle_prefix(
        &self,
        app: Uuid,
        prefix: &str,
    ) -> Result<Vec<(String, Uuid)>, StoreError>;
}

/// The attributes a key queue is chosen by (architecture draft, "Key Queue Creation").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyQueueAttributes {
    pub protocol_version: u16,
    pub cipher_suite: u16,
    pub app_label: String,
}

impl KeyQueueAttributes {
    /// The one string that identifies these attributes among a client's queues.
    pub fn field(&self) -> String {
        format!(
            "{}:{}:{}",
            self.protocol_version, self.cipher_suite, self.app_label
        )
    }
}

/// A validated key package as stored: its bytes and the few fields retrieval needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeyPackage {
    pub reference: Vec<u8>,
    pub not_after: u64,
    pub bytes: Vec<u8>,
}

/// A key queue update (architecture draft, "Key Queue Update"), already validated.
#[derive(Debug, Clone, Default)]
pub struct KeyQueueUpdate {
    pub reset: bool,
    pub packages: Vec<StoredKeyPackage>,
    pub app_label: Option<String>,
    pub final_key: Option<StoredKeyPackage>,
}

/// What a retrieval hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetrievedKeyPackage {
    /// An ordinary package, assigned to the receiver by this retrieval.
    Assigned(Vec<u8>),
    /// The ordinary package assigned to the receiver by an earlier retrieval, again.
    AssignedBefore(Vec<u8>),
    /// The queue's final key (reusable; only once ordinary packages are gone).
    FinalKey(Vec<u8>),
}

/// What a retrieval may assign, and what it counts when it does (issue 17: the count is
/// part of the retrieval's step, not a round trip of its own): with `may_assign` false only
/// the package assigned before or the final key is served; a fresh assignment adds one to
/// each of the caller's `counters` (rate counters of `scope` in its `window_secs` window)
/// and answers their counts.
#[derive(Debug, Clone, Copy)]
pub struct FreshAssignment<'a> {
    pub may_assign: bool,
    pub scope: &'a str,
    pub counters: &'a [&'a str],
    pub window_secs: u64,
}

/// Counts a fresh assignment in `fresh.counters` right after the retrieval (where the store
/// cannot count in the retrieval's own step). The package is assigned already: a failed
/// count is logged and must not lose it.
pub(crate) async fn count_after_assignment(
    counters: &dyn RateCounters,
    fresh: &FreshAssignment<'_>,
    now: u64,
) -> Vec<u64> {
    counters
        .count_in_window(fresh.scope, fresh.counters, fresh.window_secs, now)
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "could not count a fresh key-package assignment");
            Vec::new()
        })
}

/// A signed request's replay record and rate count, left by the pipeline to the store step
/// of an endpoint that takes them (key-package retrieval; issue 17: one Redis round trip per
/// retrieval). The step records `request_id` for `sender` before anything else (a replay
/// changes nothing: `KeyQueueError::Replayed`), counts the request in `window`, and does its
/// work only while the count is at most `work_up_to`, the class's first threshold (past it
/// nothing changes: `KeyQueueError::Held`, and the pipeline judges the count).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub sender: String,
    pub request_id: [u8; 16],
    pub ttl: Duration,
    pub window: RequestWindow<'static>,
    pub work_up_to: u64,
}

impl RequestRecord {
    /// The record in a round trip of its own, before the work (a store, or a path, that
    /// cannot take it into the work's step).
    pub(crate) async fn record_apart<C: ReplayCache + ?Sized>(
        &self,
        cache: &C,
    ) -> Result<(), KeyQueueError> {
        let recorded = cache
            .record_request(&self.sender, &self.request_id, self.ttl, Some(self.window))
            .await?;
        self.judge(recorded)
    }

    /// What the record's answer means for the step: `None` is a replay.
    pub(crate) fn judge(&self, recorded: Option<u64>) -> Result<(), KeyQueueError> {
        match recorded {
            None => Err(KeyQueueError::Replayed),
            Some(count) if count > self.work_up_to => Err(KeyQueueError::Held { count }),
            Some(_) => Ok(()),
        }
    }
}

/// A retrieval's answer: the package, and after a fresh assignment the counts of
/// [`FreshAssignment::counters`] in order (empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrieval {
    pub package: RetrievedKeyPackage,
    pub fresh_counts: Vec<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyQueueError {
    #[error("no such client")]
    UnknownClient,
    #[error("a key queue with these attributes exists")]
    QueueExists,
    #[error("no such key queue")]
    UnknownQueue,
    #[error("no key queue matches")]
    NoMatchingQueue,
    #[error("key queue exhausted")]
    Exhausted,
    /// A retrieval that may not assign a fresh package (`rate_limits.fresh_key_packages_*`)
    /// found none assigned before and no final key.
    #[error("no fresh key package before the rate-limit window ends in {retry_after_secs}s")]
    Withheld { retry_after_secs: u64 },
    #[error("more than {0} key packages")]
    TooManyPackages(usize),
    /// The request's id was recorded before (`RequestRecord`): nothing was done.
    #[error("request id seen before")]
    Replayed,
    /// The caller's count in its window passed its class's first threshold
    /// (`RequestRecord::work_up_to`): nothing was done; the pipeline judges the count.
    #[error("request {count} of the caller's window held for the rate verdict")]
    Held { count: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Key queues (architecture draft, "Managing Key Packages"): every operation is one atomic
/// step; a client's queues share one hash tag in Redis.
#[async_trait]
pub trait KeyQueues: Send + Sync {
    async fn create_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
        attributes: &KeyQueueAttributes,
    ) -> Result<(), KeyQueueError>;

    /// The queue's attributes, if it exists and belongs to `app`'s `client`.
    async fn key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    ) -> Result<Option<KeyQueueAttributes>, StoreError>;

    /// Applies an update; answers the number of ordinary packages in the queue after it.
    /// Expired packages (`not_after <= now`) are dropped first, so they count toward no
    /// cap; then the update is refused whole (`TooManyPackages`) if the queue would hold
    /// more than `max_packages`.
    async fn update_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
        update: &KeyQueueUpdate,
        now: u64,
        max_packages: usize,
    ) -> Result<usize, KeyQueueError>;

    async fn delete_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    ) -> Result<bool, StoreError>;

    /// The draft's retrieval, in one atomic step: the package already assigned to
    /// `receiver`, else the unassigned one with the earliest `not_after` (now assigned),
    /// else the final key; expired packages are dropped on the way. With `fresh` false no
    /// package is newly assigned: the one assigned before, else the final key, else
    /// `Withheld` (with `retry_after_secs` 0, for the caller to fill in). A fresh assignment
    /// is counted in `fresh.counters` (on a single Redis in the same script; on a Cluster,
    /// whose counters live in the caller's slot, right after).
    #[allow(clippy::too_many_arguments)]
    async fn retrieve_key_package(
        &self,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        now: u64,
        fresh: FreshAssignment<'_>,
    ) -> Result<Retrieval, KeyQueueError>;

    /// Advances the queue holding the package `reference` (a commit added it): the package
    /// is deleted, and its receiver gets a new one next time. `false` if no queue has it.
    async fn advance_key_queue(
        &self,
        app: Uuid,
        client: Uuid,
        reference: &[u8],
    ) -> Result<bool, StoreError>;

    /// Deletes every key queue of the client and refuses any later queue operation on it:
    /// the first step of deleting a client.
    async fn retire_client_key_queues(&self, app: Uuid, client: Uuid) -> Result<(), StoreError>;
}

/// The joining information a commit registers (architecture draft, "Commits" and
/// "Joining"): one Welcome and the tree of the new epoch, stored once, for every recipient.
#[derive(Debug, Clone)]
pub struct WelcomeRecord {
    pub id: Uuid,
    pub packet: Vec<u8>,
    /// The new epoch's `ratchet_tree<V>`, stored once per epoch and served to each recipient.
    pub ratchet_tree: Vec<u8>,
    /// The recipients' client handles.
    pub recipients: Vec<String>,
    /// Unix seconds after which the welcome (and its tree, once no other welcome needs it)
    /// is pruned even if not acknowledged.
    pub expires_at: u64,
}

/// A validated commit, applied as one atomic step (architecture draft, "Commits").
#[derive(Debug, Clone)]
pub struct CommitRecord {
    /// The epoch the commit was validated against; the apply is a compare-and-set on it.
    pub from_epoch: u64,
    pub change: StateChange,
    /// The new epoch's control messages in processing order: the proposals it committed by
    /// reference, then the commit.
    pub messages: Vec<Vec<u8>>,
    /// The new `currentGroupInfo` (none if the committer gave none).
    pub group_info: Option<Vec<u8>>,
    pub welcome: Option<WelcomeRecord>,
    /// Handles of removed members: their pending welcomes into this group are dropped.
    pub removed_handles: Vec<String>,
    /// Key packages the commit consumed: `(client, KeyPackageRef)`, advanced in their queues.
    pub used_key_packages: Vec<(Uuid, Vec<u8>)>,
    /// Unix seconds, for pruning expired welcomes.
    pub now: u64,
    /// How many epochs' control messages the group keeps (the newest ones; 0 keeps all):
    /// applying the commit prunes the older ones (`groups.retained_epochs`).
    pub retained_epochs: u64,
    /// `DSFanoutRequest`s for peers, `(peer domain, bodies)`, queued for delivery in the
    /// same atomic step (issue 7: "Queues and delivery that lose nothing"); one peer's bodies
    /// stay together in its queue.
    pub fanout: Vec<(String, Vec<Vec<u8>>)>,
}

/// One pending welcome for a client (architecture draft, "Joining").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWelcome {
    pub id: Uuid,
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub packet: Vec<u8>,
    pub ratchet_tree: Vec<u8>,
}

/// The current GroupInfo (if a member gave one) and tree of a group, for external joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentGroupInfo {
    pub group_info: Option<Vec<u8>>,
    pub ratchet_tree: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupStoreError {
    #[error("no such group")]
    UnknownGroup,
    #[error("a group with this id exists")]
    GroupExists,
    /// The compare-and-set lost: the group is at `current`, not at the expected epoch.
    #[error("stale epoch; current epoch {current}")]
    StaleEpoch { current: u64 },
    #[error("proposal already held")]
    DuplicateProposal,
    #[error("epoch range outside the group; current epoch {current}")]
    EpochOutOfRange { current: u64 },
    /// The range starts before the oldest epoch whose control messages are retained.
    #[error("epochs up to {pruned} are no longer retained; current epoch {current}")]
    EpochPruned { pruned: u64, current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Group state (architecture draft, "Managing Groups without Metadata Protection"): every
/// change is one atomic step on one group, decided by a compare-and-set on its epoch, so
/// of concurrent commits for one epoch exactly one is applied.
#[async_trait]
pub trait Groups: Send + Sync {
    /// Records a new group at epoch 0; `GroupExists` if `app` has one with this id.
    async fn create_group(&self, app: Uuid, group: &NewGroup) -> Result<(), GroupStoreError>;

    async fn group_head(&self, app: Uuid, group_id: &[u8])
    -> Result<Option<GroupHead>, StoreError>;

    /// How many Welcomes into the group still wait for a recipient (unexpired at `now`, not
    /// yet acknowledged by all of theirs); 0 for an unknown group.
    async fn pending_welcomes(
        &self,
        app: Uuid,
        group_id: &[u8],
        now: u64,
    ) -> Result<usize, StoreError>;

    /// The hub of a group this gateway mirrors; `None` for a group created here (or unknown).
    async fn group_hub(&self, app: Uuid, group_id: &[u8]) -> Result<Option<String>, StoreError>;

    /// Registers a welcome into `epoch` of a mirrored group, as a commit does at the hub
    /// (a follower receives the commit and its Welcome separately). Idempotent: a welcome
    /// with the same id already there changes nothing. `UnknownGroup` if not mirrored.
    async fn add_welcome(
        &self,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        welcome: &WelcomeRecord,
    ) -> Result<(), GroupStoreError>;

    async fn load_group(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<StoredGroup>, StoreError>;

    /// Holds a proposal for `epoch`, which must be the current one, and queues its `fanout`
    /// for peers in the same atomic step. Answers how many proposals the epoch then holds.
    async fn add_proposal(
        &self,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        proposal: &HeldProposal,
        fanout: &[(String, Vec<Vec<u8>>)],
    ) -> Result<usize, GroupStoreError>;

    /// An application message the hub accepted for the group: `entry` (id `id`) queued for
    /// each of this gateway's `recipients` and `fanout` for peers, accepted in one atomic step
    /// (the queues are filled right after, or by the next operation on the group, or at the
    /// next start: nothing accepted is lost). `UnknownGroup` if the group is gone. `now` is
    /// the gateway's clock, which the queues' dedup window is measured on
    /// ([`MessageQueues::enqueue_message`]).
    #[allow(clippy::too_many_arguments)]
    async fn route_message(
        &self,
        app: Uuid,
        group_id: &[u8],
        recipients: &[String],
        id: &[u8],
        entry: &[u8],
        fanout: &[(String, Vec<Vec<u8>>)],
        now: u64,
    ) -> Result<(), GroupStoreError>;

    /// The current epoch's proposal packets, in upload order.
    async fn proposals(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError>;

    /// Applies a commit if the group is still at `commit.from_epoch`: new epoch with its
    /// messages, state change, proposals cleared, group info replaced, welcome registered
    /// for each recipient, welcomes of removed members dropped, used key packages advanced.
    /// Answers the new epoch; `StaleEpoch` (changing nothing) if another commit won.
    async fn apply_commit(
        &self,
        app: Uuid,
        group_id: &[u8],
        commit: &CommitRecord,
    ) -> Result<u64, GroupStoreError>;

    /// The control messages of epochs `start..=end` (`end` defaults to the current epoch),
    /// in order. Epoch 0 has none.
    async fn control_messages(
        &self,
        app: Uuid,
        group_id: &[u8],
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<Vec<u8>>, GroupStoreError>;

    async fn current_group_info(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Option<CurrentGroupInfo>, StoreError>;

    /// The client's pending, unexpired welcomes, oldest first.
    async fn welcomes(
        &self,
        app: Uuid,
        handle: &str,
        now: u64,
    ) -> Result<Vec<PendingWelcome>, StoreError>;

    /// Deletes the group's state: head, tree, proposals, epochs, welcomes (the delivery-service
    /// draft's "Delete group", after its commit). Cross-slot actions already accepted are
    /// still carried out. `false` for an unknown group.
    async fn delete_group(&self, app: Uuid, group_id: &[u8]) -> Result<bool, StoreError>;

    /// Carries out what a gateway that died mid-commit left undone (Redis: the outboxes of
    /// cross-slot actions). Answers how many groups needed it.
    async fn recover_groups(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Drops one pending welcome of the client; its tree goes once no recipient needs it.
    /// `false` if the client had no such welcome.
    async fn acknowledge_welcome(
        &self,
        app: Uuid,
        handle: &str,
        welcome: Uuid,
    ) -> Result<bool, StoreError>;
}

/// Durable outbound delivery to peers, one FIFO queue per peer (issue 7: "Outbound
/// federation delivery is durable"). Commits fill it through [`CommitRecord::fanout`] in
/// their own atomic step; other deliveries are queued here.
#[async_trait]
pub trait OutboundQueues: Send + Sync {
    async fn enqueue_outbound(&self, peer: &str, bodies: &[Vec<u8>]) -> Result<(), StoreError>;

    /// The oldest undelivered body for `peer`.
    async fn outbound_head(&self, peer: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// How many bodies wait for `peer` (the outbound queue's depth, for metrics).
    async fn outbound_len(&self, peer: &str) -> Result<u64, StoreError>;

    /// Removes the oldest body for `peer` if it is `body` (the peer acknowledged it).
    async fn pop_outbound(&self, peer: &str, body: &[u8]) -> Result<(), StoreError>;

    /// Peers with queued deliveries.
    async fn outbound_peers(&self) -> Result<Vec<String>, StoreError>;

    /// Takes or renews the lease on `peer`'s queue for `holder` (a gateway process) for
    /// `ttl`: `true` if `holder` holds it now (it was free, expired or `holder`'s already).
    /// One walker per peer queue across every process on the store, so a peer receives its
    /// queue in order and once; a dead holder's lease lapses after `ttl`.
    async fn lease_outbound(
        &self,
        peer: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives the lease on `peer`'s queue up, if `holder` holds it.
    async fn release_outbound(&self, peer: &str, holder: &str) -> Result<(), StoreError>;

    /// What a walker does between two deliveries, in one step where the store can (one
    /// script on Redis): `pop_outbound` of `body`, then `lease_outbound` for `holder`, then
    /// the new head if it holds the lease.
    async fn pop_and_next(
        &self,
        peer: &str,
        body: &[u8],
        holder: &str,
        ttl: Duration,
    ) -> Result<NextDelivery, StoreError> {
        self.pop_outbound(peer, body).await?;
        if !self.lease_outbound(peer, holder, ttl).await? {
            return Ok(NextDelivery::LeaseLost);
        }
        Ok(match self.outbound_head(peer).await? {
            Some(head) => NextDelivery::Head(head),
            None => NextDelivery::Empty,
        })
    }

    /// What a follower keeps between one hub's deliveries: the GroupInfo and Welcome that
    /// precede their commit in the hub's queue. Named notes, replaced or (empty) cleared.
    async fn set_peer_note(&self, peer: &str, name: &str, note: &[u8]) -> Result<(), StoreError>;
    async fn peer_note(&self, peer: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// What follows a delivery for its walker (`OutboundQueues::pop_and_next`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextDelivery {
    /// Another process holds the queue's lease now: this walker stops.
    LeaseLost,
    /// The queue is empty.
    Empty,
    /// The next body to deliver; the lease is renewed.
    Head(Vec<u8>),
}

/// How long a queue remembers the ids of acknowledged messages, so a late redelivery of one
/// is still dropped (a hub retries a delivery it got no answer for).
pub const DEDUP_WINDOW_SECS: u64 = 24 * 60 * 60;

/// A message in a client's queue, with its sequence number there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub sequence: u64,
    /// The message's own encoding: the kind, the group, the MLSMessage
    /// (`mimi_wire::messages::QueuedMessage` without its sequence number).
    pub entry: Vec<u8>,
}

/// Each client's message queue (issue 7, "Queues and delivery that lose nothing"): FIFO with
/// sequence numbers from 1, entries removed only by acknowledgement. An entry carries an id
/// (a digest of the message): enqueuing an id the queue still holds, or acknowledged within
/// [`DEDUP_WINDOW_SECS`], changes nothing, which is how a redelivered fan-out is dropped.
/// The window is measured on one clock, the gateway's: `now` (Unix seconds) is passed in and
/// recorded with each acknowledgement; no backend reads a clock of its own. An id
/// acknowledged at `t` is dropped by an enqueue at `now < t + DEDUP_WINDOW_SECS` and taken
/// again from `t + DEDUP_WINDOW_SECS` on.
#[async_trait]
pub trait MessageQueues: Send + Sync {
    /// Appends `entry` to the queue of `handle`; answers its sequence number (the earlier
    /// one if `id` is still queued, 0 if it was acknowledged within the window before `now`).
    async fn enqueue_message(
        &self,
        app: Uuid,
        handle: &str,
        id: &[u8],
        entry: &[u8],
        now: u64,
    ) -> Result<u64, StoreError>;

    /// `enqueue_message` for each of `handles` (a message's copies for a group's members).
    /// Each queue takes its copy on its own: a failure may leave some queues with it, and
    /// the same call again adds it to the others only (the id is still queued).
    async fn enqueue_messages(
        &self,
        app: Uuid,
        handles: &[String],
        id: &[u8],
        entry: &[u8],
        now: u64,
    ) -> Result<(), StoreError> {
        for handle in handles {
            self.enqueue_message(app, handle, id, entry, now).await?;
        }
        Ok(())
    }

    /// Up to `limit` entries from sequence number `from` on, in order.
    async fn queued_messages(
        &self,
        app: Uuid,
        handle: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError>;

    /// Removes every entry up to and including sequence number `up_to`, remembering their
    /// ids as acknowledged at `now` (and forgetting those acknowledged a window before it);
    /// answers how many.
    async fn acknowledge_messages(
        &self,
        app: Uuid,
        handle: &str,
        up_to: u64,
        now: u64,
    ) -> Result<u64, StoreError>;
}

/// Reachability, for `/readyz`.
#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything the gateway keeps. Later concerns (registry, key queues, groups) join here.
#[async_trait]
pub trait Store:
    ReplayCache
    + RateCounters
    + ClientRegistry
    + KeyQueues
    + Groups
    + OutboundQueues
    + MessageQueues
    + Health
{
    /// A short description for the start-up banner and logs.
    fn describe(&self) -> String;

    /// [`KeyQueues::retrieve_key_package`] with the request's replay record and rate count
    /// taken into the same step ([`RequestRecord`]); a store that cannot (memory, Cluster)
    /// records first.
    #[allow(clippy::too_many_arguments)]
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
        record.record_apart(self).await?;
        self.retrieve_key_package(app, client, attributes, receiver, now, fresh)
            .await
    }
}

pub type SharedStore = Arc<dyn Store>;

/// Builds the store the configuration asks for.
pub async fn open(config: &StoreConfig) -> Result<SharedStore, StoreError> {
    let timeout = Duration::from_millis(config.command_timeout_ms);
    if let Some(url) = &config.redis_url {
        Ok(Arc::new(
            redis::RedisStore::connect_single(url, timeout).await?,
        ))
    } else if !config.redis_cluster_urls.is_empty() {
        Ok(Arc::new(
            redis::RedisStore::connect_cluster(&config.redis_cluster_urls, timeout).await?,
        ))
    } else {
        Ok(Arc::new(memory::MemoryStore::default()))
    }
}
