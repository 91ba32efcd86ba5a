//! Groups at this gateway (architecture draft, "Groups", "Proposals", "Commits", "Group
//! Information", "Welcomes"; DESIGN.md "Ordering commits: exactly one winner per epoch" and
//! "Federation: one hub per group"): a group hosted here is ordered here, its hub; one
//! mirrored from another domain's hub has its proposals, commits and messages forwarded
//! there (`service::forward`).
//!
//! A commit is validated against the group's current epoch as a member would (openmls'
//! `PublicGroup`, without group secrets): proposals by reference must be held, added key
//! packages are checked like queue uploads, a commit with Adds needs a Welcome addressed to
//! exactly the added key packages, and an uploaded GroupInfo must describe the new epoch.
//! The store then applies it as one compare-and-set on the epoch: of concurrent commits for
//! one epoch exactly one wins, the others get "stale epoch" with the current epoch.
//! [`Groups::accept_commit`] is the hub's one way to apply a commit: for its own
//! applications here, and for the commits followers forward (`POST /group_operation`, the
//! delivery-service draft's operations).

use std::sync::Arc;

use mimi_wire::ds::{DSRequestType, MLSGroupUpdate};
use mimi_wire::groups::MAX_GROUP_ID_BYTES;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::config::Config;
use crate::error::GatewayError;
use crate::federation::delivery::Delivery;
use crate::federation::fanout as hub;
use crate::mls::group::{
    self, ActiveGroup, CommitUpload, GroupError, GroupInfoUpload, Joining, StagedCommitOutcome,
};
use crate::mls::key_package::{MemberRules, foreign_handle, is_of_domain, split_foreign};
use crate::mls::operations;
use crate::mls::provider::Crypto;
use crate::service::applications::{Application, Applications};
use crate::service::forward::Forwarder;
use crate::service::group_cache::GroupCache;
use crate::service::messages::Messages;
use crate::signatures::SignatureVerifier;
use crate::store::{CommitRecord, GroupStoreError, SharedStore, WelcomeRecord};
pub(crate) use crate::store::{CurrentGroupInfo, PendingWelcome};

/// Where a group stands here, for `GET .../status`.
pub struct GroupStatus {
    pub epoch: u64,
    pub member_count: usize,
    /// The hub's domain for a group mirrored here, `None` for one hosted here.
    pub hub: Option<String>,
    pub has_group_info: bool,
}

/// A group found by id alone, for operators (`GET /admin/groups/{groupId}`).
pub struct AdminGroupStatus {
    pub app: Uuid,
    pub status: GroupStatus,
    pub pending_proposals: usize,
    /// Welcomes into the group still waiting for a recipient.
    pub pending_welcomes: usize,
}

/// The groups of this gateway's applications: the hub's rules and the way to the hub.
#[derive(Clone)]
pub struct Groups {
    pub(crate) config: Arc<Config>,
    pub(crate) store: SharedStore,
    pub(crate) groups: Arc<GroupCache>,
    pub(crate) applications: Arc<Applications>,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) forwarder: Forwarder,
    pub(crate) messages: Messages,
    /// Verifies a commit's Ed25519 signatures in batches with other requests' (when
    /// `auth.batch_verification` is on).
    pub(crate) signatures: Arc<SignatureVerifier>,
}

impl Groups {
    /// Creates a group from its creator's GroupInfo and ratchet tree; answers its id.
    pub async fn create(
        &self,
        application: &Application,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) -> Result<Vec<u8>, GatewayError> {
        let rules = application.member_rules(&self.config);
        let (active, new_group) =
            tokio::task::block_in_place(|| group::create(group_info, ratchet_tree, &rules))?;
        if new_group.group_id.is_empty() || new_group.group_id.len() > MAX_GROUP_ID_BYTES {
            return Err(GatewayError::GroupIdTooLong);
        }
        self.store.create_group(application.id, &new_group).await?;
        tracing::info!(group = %mimi_wire::groups::group_id_to_path(&new_group.group_id), "group created");
        self.groups.put(application.id, &new_group.group_id, active);
        Ok(new_group.group_id)
    }

    /// An application's proposal: held here for a group hosted here, forwarded to the hub of a
    /// mirrored one. Answers the epoch.
    pub async fn upload_proposal(
        &self,
        application: &Application,
        group_id: &[u8],
        packet: &[u8],
    ) -> Result<u64, GatewayError> {
        let app = application.id;
        let rules = application.member_rules(&self.config);
        match self.forwarder.hub_of(app, group_id, &rules).await? {
            // A group mirrored from its hub on another domain: the hub holds its proposals.
            Some(hub) => {
                self.forwarder
                    .proposal(&hub, app, group_id, packet, &rules)
                    .await
            }
            None => {
                self.accept_proposal(app, group_id, packet, &rules, None)
                    .await
            }
        }
    }

    /// The current epoch's proposals, in upload order.
    pub async fn proposals(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<Vec<Vec<u8>>, GatewayError> {
        self.store
            .proposals(app, group_id)
            .await?
            .ok_or(GatewayError::GroupStore(GroupStoreError::UnknownGroup))
    }

    /// An application's commit: applied here for a group hosted here, forwarded to the hub of
    /// a mirrored one. Answers the new epoch.
    pub async fn upload_commit(
        &self,
        application: &Application,
        group_id: &[u8],
        upload: &CommitUpload<'_>,
    ) -> Result<u64, GatewayError> {
        let app = application.id;
        let rules = application.member_rules(&self.config);
        match self.forwarder.hub_of(app, group_id, &rules).await? {
            // A group mirrored from its hub on another domain: the hub orders its commits.
            Some(hub) => {
                self.forwarder
                    .commit(&hub, app, group_id, upload, &rules)
                    .await
            }
            None => {
                self.accept_commit(app, group_id, upload, &rules, None)
                    .await
            }
        }
    }

    /// The handshake messages of epochs `start` to `end`.
    pub async fn control_messages(
        &self,
        app: Uuid,
        group_id: &[u8],
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<Vec<u8>>, GatewayError> {
        Ok(self
            .store
            .control_messages(app, group_id, start, end)
            .await?)
    }

    /// The group's current GroupInfo (if one was uploaded) and ratchet tree.
    pub async fn group_info(
        &self,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<CurrentGroupInfo, GatewayError> {
        self.store
            .current_group_info(app, group_id)
            .await?
            .ok_or(GatewayError::GroupStore(GroupStoreError::UnknownGroup))
    }

    /// Where a group stands here.
    pub async fn status(
        &self,
        application: &Application,
        group_id: &[u8],
    ) -> Result<GroupStatus, GatewayError> {
        let app = application.id;
        let group = self
            .groups
            .checkout(self.store.as_ref(), app, group_id)
            .await?;
        let (epoch, member_count) = (group.epoch, group.member_count());
        self.groups.put(app, group_id, group);
        let rules = application.member_rules(&self.config);
        let hub = self.forwarder.hub_of(app, group_id, &rules).await?;
        let current = self.group_info(app, group_id).await?;
        Ok(GroupStatus {
            epoch,
            member_count,
            hub,
            has_group_info: current.group_info.is_some(),
        })
    }

    /// The group of this id in whichever hosted application has one, for operators.
    pub async fn admin_status(
        &self,
        group_id: &[u8],
    ) -> Result<Option<AdminGroupStatus>, GatewayError> {
        for app in self.applications.ids() {
            let Some(head) = self.store.group_head(*app, group_id).await? else {
                continue;
            };
            let Some(application) = self.applications.get(app) else {
                continue;
            };
            let status = self.status(application, group_id).await?;
            let pending_welcomes = self
                .store
                .pending_welcomes(*app, group_id, crate::keys::unix_now())
                .await?;
            return Ok(Some(AdminGroupStatus {
                app: *app,
                status,
                pending_proposals: head.proposals,
                pending_welcomes,
            }));
        }
        Ok(None)
    }

    /// The Welcomes waiting for `handle`, unexpired.
    pub async fn welcomes(
        &self,
        app: Uuid,
        handle: &str,
    ) -> Result<Vec<PendingWelcome>, GatewayError> {
        Ok(self
            .store
            .welcomes(app, handle, crate::keys::unix_now())
            .await?)
    }

    /// `handle` has taken the Welcome: it goes from its list.
    pub async fn acknowledge_welcome(
        &self,
        app: Uuid,
        handle: &str,
        welcome: Uuid,
    ) -> Result<(), GatewayError> {
        if !self.store.acknowledge_welcome(app, handle, welcome).await? {
            return Err(GatewayError::UnknownWelcome);
        }
        Ok(())
    }

    /// For a peer with members in a group hosted here: its current GroupInfo and ratchet tree,
    /// to join by external commit.
    pub async fn external_commit_info(
        &self,
        peer: &str,
        group_id: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), GatewayError> {
        let (app, _) = self.peer_members(peer, group_id).await?;
        let current = self.group_info(app, group_id).await?;
        let group_info = current.group_info.ok_or(GatewayError::GroupInfoRequired)?;
        Ok((group_info, current.ratchet_tree))
    }

    /// For a peer with members in a group hosted here: the ratchet tree of the Welcome of
    /// `epoch` waiting for one of its members.
    pub async fn welcome_info(
        &self,
        peer: &str,
        group_id: &[u8],
        epoch: u64,
    ) -> Result<Vec<u8>, GatewayError> {
        let (app, names) = self.peer_members(peer, group_id).await?;
        let now = crate::keys::unix_now();
        for name in &names {
            for pending in self.store.welcomes(app, name, now).await? {
                if pending.group_id == group_id && pending.epoch == epoch {
                    return Ok(pending.ratchet_tree);
                }
            }
        }
        Err(GatewayError::UnknownWelcome)
    }

    /// A peer's message for a group hosted here, routed to every member (`skipped`, a client of
    /// the peer, excepted).
    pub async fn route_from_peer(
        &self,
        peer: &str,
        packet: &[u8],
        sender: Option<(Uuid, &str)>,
    ) -> Result<(), GatewayError> {
        let (app, group_id, rules) = self.hosted_group(packet).await?;
        let skipped = match sender {
            Some((sender_app, handle)) => {
                if sender_app != app {
                    return Err(GatewayError::SenderNotOfPeer(foreign_handle(handle, peer)));
                }
                Some(foreign_handle(handle, peer))
            }
            None => None,
        };
        self.messages
            .route(
                app,
                &group_id,
                packet,
                &rules,
                Some(peer),
                skipped.as_deref(),
            )
            .await?;
        Ok(())
    }

    /// A peer's proposal (`ds_upload_proposal`, or the draft's self remove) for a group hosted here.
    pub async fn proposal_from_peer(
        &self,
        peer: &str,
        operation: DSRequestType,
        packet: &[u8],
    ) -> Result<(), GatewayError> {
        let (app, group_id, rules) = self.hosted_group(packet).await?;
        self.accept_proposal(app, &group_id, packet, &rules, Some((peer, operation)))
            .await?;
        Ok(())
    }

    /// The group deleted after the commit removing everyone else was applied and fanned out.
    /// The commit stands whatever happens here: a failed deletion is not the peer's to retry (its
    /// commit would now be stale); the state stays and the operator is told.
    async fn delete_after_commit(&self, peer: &str, app: Uuid, group_id: &[u8]) {
        self.groups.take_unchecked(app, group_id);
        match self.store.delete_group(app, group_id).await {
            Ok(_) => tracing::info!(peer, "group deleted"),
            Err(error) => tracing::error!(%error, peer, "group state left after its deletion"),
        }
    }

    /// Validates and holds a proposal at this gateway, the group's hub, whether an application
    /// uploaded it here or `forwarded` by a peer as an operation (its sender a client of that
    /// peer; as the draft's self remove, removing itself; as our `ds_upload_proposal`, under the
    /// rules for proposals of this gateway's own clients); followers with members get it too.
    /// Answers the epoch.
    pub async fn accept_proposal(
        &self,
        app: Uuid,
        group_id: &[u8],
        packet: &[u8],
        rules: &MemberRules<'_>,
        forwarded: Option<(&str, DSRequestType)>,
    ) -> Result<u64, GatewayError> {
        let mut group = self
            .groups
            .checkout(self.store.as_ref(), app, group_id)
            .await?;
        let accepted = group.accept_proposal(group_id, packet, rules);
        let held = match (accepted, forwarded) {
            (Ok((held, _)), None) => held,
            (Ok((held, shape)), Some((peer, operation))) => {
                let sender = shape.sender.clone().unwrap_or_default();
                // The copy's openmls queue now holds the proposal: refused, it is dropped.
                if !is_of_domain(&sender, peer) {
                    return Err(GatewayError::SenderNotOfPeer(sender));
                }
                if operation == DSRequestType::SelfRemoveClient {
                    operations::check_self_remove(&shape)?;
                }
                held
            }
            (Err(error), _) => {
                self.groups.put(app, group_id, group);
                return Err(error.into());
            }
        };
        let epoch = group.epoch;
        // Followers hold it too, so they can apply a commit citing it by reference.
        let fanout = if rules.federated {
            let members = group.member_names(rules)?;
            hub::proposal_fanout(app, &members, packet)?
        } else {
            Vec::new()
        };
        // Queued in the proposal's atomic step, so it precedes in each peer's queue any commit
        // that cites it.
        self.store
            .add_proposal(app, group_id, epoch, &held, &fanout)
            .await?;
        group.hold(held);
        self.groups.put(app, group_id, group);
        if !fanout.is_empty() {
            self.delivery.wake();
        }
        Ok(epoch)
    }
}

/// A commit forwarded by a peer as one of the delivery-service draft's operations: its
/// committer must be a client of that peer, and the commit must meet the operation's rules.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    pub peer: &'a str,
    pub operation: DSRequestType,
    /// Welcome messages the request carried.
    pub welcomes: usize,
}

impl Groups {
    /// Validates and applies a commit at this gateway, the group's hub, whether an application
    /// uploaded it here or a follower forwarded it (`forwarded`): one winner per epoch, and the
    /// fan-out to followers in the same atomic step. Answers the new epoch.
    pub async fn accept_commit(
        &self,
        app: Uuid,
        group_id: &[u8],
        upload: &CommitUpload<'_>,
        rules: &MemberRules<'_>,
        forwarded: Option<Forwarded<'_>>,
    ) -> Result<u64, GatewayError> {
        let upload = CommitUpload {
            describe: forwarded.is_some(),
            ..*upload
        };
        let (group, outcome) = self
            .staged_commit(app, group_id, &upload, rules, forwarded.as_ref())
            .await?;
        // From here on a refusal drops the copy, merged into an epoch the store never saw.
        if let Some(forwarded) = &forwarded {
            self.check_forwarded_outcome(app, group_id, forwarded, &outcome)
                .await?;
        }
        // A group with members on other domains: its hub fans the commit (and Welcome) out in
        // the same atomic step as the commit.
        let fanout = self.federated_fanout(app, &group, rules, upload.commit, &outcome)?;
        let record = self.commit_record(app, outcome, fanout).await?;
        let epoch = self.store.apply_commit(app, group_id, &record).await?;
        self.groups.put(app, group_id, group);
        if !record.fanout.is_empty() {
            self.delivery.wake();
        }
        // Per request, as the access line (issue 17: 2% of a small commit's CPU at `info`);
        // the commits counter and the access log (`logging.access_log`) have it too.
        tracing::debug!(
            epoch,
            forwarded_by = forwarded.map(|f| f.peer),
            "commit applied"
        );
        Ok(epoch)
    }

    /// The group checked out and the commit staged and merged on it: from the cached copy
    /// without a store round trip, and again against the store's head if the refusal depends
    /// on how current the copy is (another gateway may have committed or taken a proposal). A
    /// refused commit puts an intact copy back; a peer forwarding another domain's member's
    /// commit is refused before the work. With batched verification the commit's Ed25519
    /// signatures (its own, its leaves', its key packages', the GroupInfo's) are written down
    /// while staging and verified after it in one batch (`mls::provider`); if one fails, the
    /// copy merged on them is dropped and the commit staged again on a fresh one, each
    /// signature checked as openmls makes it, for the refusal that gives (also when staging
    /// refused it: the refusal may follow from the bad signature).
    async fn staged_commit(
        &self,
        app: Uuid,
        group_id: &[u8],
        upload: &CommitUpload<'_>,
        rules: &MemberRules<'_>,
        forwarded: Option<&Forwarded<'_>>,
    ) -> Result<(ActiveGroup, StagedCommitOutcome), GatewayError> {
        let stage_with = |group: &mut ActiveGroup, crypto: &Crypto| {
            // Validation and merge are CPU work that grows with the group (milliseconds at 1000
            // members): run them where they do not stall the reactor's other tasks.
            tokio::task::block_in_place(|| group.stage_commit_with(group_id, upload, rules, crypto))
        };
        let deferring = self.signatures.batched();
        let stage = |group: &mut ActiveGroup| {
            let crypto = if deferring {
                Crypto::deferring()
            } else {
                Crypto::checking()
            };
            let outcome = stage_with(group, &crypto);
            (outcome, crypto.take_deferred())
        };
        let cached = self.groups.take_unchecked(app, group_id);
        let checked = cached.is_none();
        let mut group = match cached {
            Some(group) => group,
            None => {
                self.groups
                    .checkout(self.store.as_ref(), app, group_id)
                    .await?
            }
        };
        if let Some(forwarded) = forwarded {
            let sender = group.member_sender(upload.commit, rules);
            if let Ok(Some(name)) = &sender
                && !is_of_domain(name, forwarded.peer)
            {
                let name = name.clone();
                self.groups.put(app, group_id, group);
                return Err(GatewayError::SenderNotOfPeer(name));
            }
        }
        let (mut outcome, mut deferred) = stage(&mut group);
        if !checked
            && let Err(error) = &outcome
            && depends_on_the_copys_epoch(error)
        {
            // These refusals come before the merge: the copy is intact and goes back, so the
            // checkout reuses it if the store's head says it is current after all.
            self.groups.put(app, group_id, group);
            group = self
                .groups
                .checkout(self.store.as_ref(), app, group_id)
                .await?;
            (outcome, deferred) = stage(&mut group);
        }
        if !self.signatures.verify_all(deferred).await {
            // Staged on a signature that does not hold: a copy merged on it is gone with it,
            // and a refusal may be its consequence (the transcript hash covers the commit's
            // signature), so the commit is staged again for the refusal it deserves.
            if outcome.is_err() && !group.spoiled() {
                self.groups.put(app, group_id, group);
            }
            group = self
                .groups
                .checkout(self.store.as_ref(), app, group_id)
                .await?;
            outcome = stage_with(&mut group, &Crypto::checking());
        }
        match outcome {
            Ok(outcome) => Ok((group, outcome)),
            Err(error) => {
                // A refusal before the merge leaves the copy as it was; after, it is spoiled.
                if !group.spoiled() {
                    self.groups.put(app, group_id, group);
                }
                Err(error.into())
            }
        }
    }

    /// What a forwarded commit may not do beyond a local one: the operation named must be the
    /// commit's, and a re-init must point to another group hosted on this hub ("The GroupID in
    /// the re-init proposal MUST point to another group on this hub").
    async fn check_forwarded_outcome(
        &self,
        app: Uuid,
        group_id: &[u8],
        forwarded: &Forwarded<'_>,
        outcome: &StagedCommitOutcome,
    ) -> Result<(), GatewayError> {
        check_forwarded(forwarded, outcome)?;
        if let Some(target) = outcome
            .shape
            .as_ref()
            .and_then(|shape| shape.reinit_group.as_ref())
        {
            let hosted = target.as_slice() != group_id
                && self.store.group_head(app, target).await?.is_some()
                && self.store.group_hub(app, target).await?.is_none();
            if !hosted {
                return Err(operations::OperationError::ReInitTarget.into());
            }
        }
        Ok(())
    }

    /// The store's record of a staged commit: its change, messages, GroupInfo, Welcome (kept
    /// `groups.welcome_retention_secs`), the removed handles, the key packages of this gateway's
    /// queues it used (to advance them), the retention and the fan-out.
    async fn commit_record(
        &self,
        app: Uuid,
        outcome: StagedCommitOutcome,
        fanout: Vec<(String, Vec<Vec<u8>>)>,
    ) -> Result<CommitRecord, GatewayError> {
        let now = crate::keys::unix_now();
        let mut used_key_packages = Vec::with_capacity(outcome.added.len());
        for (handle, reference) in &outcome.added {
            // A member whose key package came from elsewhere than this gateway's queues has
            // nothing to advance.
            if let Some(client) = self.store.client_by_handle(app, handle).await? {
                used_key_packages.push((client, reference.clone()));
            }
        }
        Ok(CommitRecord {
            from_epoch: outcome.from_epoch,
            change: outcome.change,
            messages: outcome.messages,
            group_info: outcome.group_info,
            welcome: outcome
                .welcome
                .map(|(packet, ratchet_tree, recipients)| WelcomeRecord {
                    id: Uuid::new_v4(),
                    packet,
                    ratchet_tree,
                    recipients,
                    expires_at: now.saturating_add(self.config.groups.welcome_retention_secs),
                }),
            removed_handles: outcome.removed_handles,
            used_key_packages,
            now,
            retained_epochs: self.config.groups.retained_epochs,
            fanout,
        })
    }
}

/// The checks a hub makes of a forwarded commit: committed by a client of the forwarding
/// peer, and meeting the rules of the operation the peer named it as.
fn check_forwarded(
    forwarded: &Forwarded<'_>,
    outcome: &StagedCommitOutcome,
) -> Result<(), GatewayError> {
    let shape = outcome
        .shape
        .as_ref()
        .ok_or_else(|| GatewayError::Internal("forwarded commit not described".into()))?;
    if !is_of_domain(&shape.committer, forwarded.peer) {
        return Err(GatewayError::SenderNotOfPeer(shape.committer.clone()));
    }
    operations::check_commit(forwarded.operation, shape, forwarded.welcomes)
        .map_err(GatewayError::OperationRules)
}

/// Refusals that depend on how current the copy is: a copy behind the store refuses a
/// commit for the store's epoch as "future", one citing a proposal held through another
/// gateway as unknown, and answers "stale" with its own epoch instead of the store's.
fn depends_on_the_copys_epoch(error: &GroupError) -> bool {
    matches!(
        error,
        GroupError::FutureEpoch { .. }
            | GroupError::StaleEpoch { .. }
            | GroupError::UnknownProposalReference
    )
}

impl Groups {
    /// The fan-out of an accepted commit when the application federates: refused if a member
    /// after it is of a domain outside the allow-list (removing such members stays possible),
    /// or if members on other domains would be left without a GroupInfo to mirror the group
    /// from.
    fn federated_fanout(
        &self,
        app: Uuid,
        group: &ActiveGroup,
        rules: &MemberRules<'_>,
        commit: &[u8],
        outcome: &StagedCommitOutcome,
    ) -> Result<hub::Fanout, GatewayError> {
        if !rules.federated {
            return Ok(Vec::new());
        }
        let members = group.member_names(rules)?;
        let peers = hub::by_peer(members.iter().chain(&outcome.removed_handles));
        if peers.is_empty() {
            return Ok(Vec::new());
        }
        let allowed = &self.config.federation.allowed_peers;
        if let Some(peer) = hub::by_peer(&members).into_keys().find(|peer| {
            !allowed.is_empty() && !allowed.iter().any(|name| name.eq_ignore_ascii_case(peer))
        }) {
            return Err(GatewayError::DomainNotAllowed(peer));
        }
        if outcome.group_info.is_none() && members.iter().any(|name| split_foreign(name).is_some())
        {
            return Err(GatewayError::GroupInfoRequired);
        }
        let welcome = outcome
            .welcome
            .as_ref()
            .map(|(packet, _, recipients)| (packet.as_slice(), recipients.as_slice()));
        hub::commit_fanout(
            app,
            &members,
            &outcome.removed_handles,
            commit,
            outcome.group_info.as_deref(),
            welcome,
        )
    }
    /// The application hosting `group_id` here, and the names of `peer`'s members in it;
    /// `UnknownGroup` unless the group is hosted here with a member of `peer`.
    async fn peer_members(
        &self,
        peer: &str,
        group_id: &[u8],
    ) -> Result<(Uuid, Vec<String>), GatewayError> {
        for app in self.applications.ids() {
            if self.store.group_head(*app, group_id).await?.is_none() {
                continue;
            }
            let application = self
                .applications
                .get(app)
                .ok_or(GatewayError::UnknownApplication)?;
            let group = self
                .groups
                .checkout(self.store.as_ref(), *app, group_id)
                .await?;
            let names = group.member_names(&application.member_rules(&self.config));
            self.groups.put(*app, group_id, group);
            let theirs: Vec<String> = names?
                .into_iter()
                .filter(|name| is_of_domain(name, peer))
                .collect();
            if theirs.is_empty() {
                break;
            }
            return Ok((*app, theirs));
        }
        Err(GatewayError::GroupStore(GroupStoreError::UnknownGroup))
    }

    /// A commit forwarded as one of the delivery-service draft's operations: applied as the
    /// hub applies its own applications' commits, with the GroupInfo rebuilt from the
    /// `PartialGroupInfo`. After a `DeleteGroup` the group goes.
    pub async fn operation_commit(
        &self,
        peer: &str,
        operation: DSRequestType,
        update: &MLSGroupUpdate,
        welcomes: &[mimi_wire::ds::MlsMessage],
    ) -> Result<(), GatewayError> {
        // Ours carries at most the one Welcome MLS makes: refused before any work.
        if operation == DSRequestType::Commit && welcomes.len() > 1 {
            return Err(crate::mls::operations::OperationError::WelcomeCount.into());
        }
        let packet = update.commit.as_bytes();
        let (app, group_id, rules) = self.hosted_group(packet).await?;
        let partial = &update.partial_group_info;
        let upload = CommitUpload {
            commit: packet,
            group_info: GroupInfoUpload::Partial {
                extensions: partial.group_info_extensions.as_bytes(),
                signature: partial.signature.as_slice(),
            },
            welcome: welcomes.first().map(|welcome| welcome.as_bytes()),
            joining: Joining::WelcomeRequired,
            describe: true,
        };
        let forwarded = Forwarded {
            peer,
            operation,
            welcomes: welcomes.len(),
        };
        self.accept_commit(app, &group_id, &upload, &rules, Some(forwarded))
            .await?;
        if operation == DSRequestType::DeleteGroup {
            self.delete_after_commit(peer, app, &group_id).await;
        }
        Ok(())
    }

    /// The application, id and member rules of the group a forwarded message is for: a group
    /// this gateway is the hub of (`UnknownGroup` for one it does not host or only mirrors).
    async fn hosted_group(
        &self,
        packet: &[u8],
    ) -> Result<(Uuid, Vec<u8>, MemberRules<'_>), GatewayError> {
        let message = MlsMessageIn::tls_deserialize_exact(packet)
            .map_err(|error| GroupError::Malformed(error.to_string()))?;
        // A PrivateMessage is an application message, or a handshake the staging refuses.
        let group_id = match message.extract() {
            MlsMessageBodyIn::PublicMessage(message) => message.group_id().as_slice().to_vec(),
            MlsMessageBodyIn::PrivateMessage(message) => message.group_id().as_slice().to_vec(),
            _ => return Err(GroupError::Malformed("not a PublicMessage".into()).into()),
        };
        let app = self
            .hosting_application(&group_id)
            .await?
            .ok_or(GatewayError::GroupStore(GroupStoreError::UnknownGroup))?;
        let application = self
            .applications
            .get(&app)
            .ok_or(GatewayError::UnknownApplication)?;
        Ok((app, group_id, application.member_rules(&self.config)))
    }

    /// The federating application that hosts `group_id` here as its hub, if any (groups of
    /// applications that do not federate are invisible to peers).
    async fn hosting_application(&self, group_id: &[u8]) -> Result<Option<Uuid>, GatewayError> {
        for app in self.applications.ids() {
            let federates = self
                .applications
                .get(app)
                .is_some_and(|application| application.federates());
            if !federates {
                continue;
            }
            if self.store.group_head(*app, group_id).await?.is_some() {
                if self.store.group_hub(*app, group_id).await?.is_none() {
                    return Ok(Some(*app));
                }
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// "Request group id": a fresh random id no hosted application uses.
    pub async fn request_group_id(&self) -> Result<Vec<u8>, GatewayError> {
        loop {
            let id = Uuid::new_v4().as_bytes().to_vec();
            if self.hosting_application(&id).await?.is_none() {
                return Ok(id);
            }
        }
    }

    /// "Create group": a one-member group hosted here for a client of `peer`, from its LeafNode
    /// (the whole tree of a new group) and GroupInfo. The draft's request names no application:
    /// the group goes to the first federating application (in configuration order) whose
    /// identity provider accepts the creator.
    pub async fn create_for_peer(
        &self,
        peer: &str,
        create: mimi_wire::ds::CreateGroupRequest,
    ) -> Result<(), GatewayError> {
        let group_id = create.group_id.as_slice();
        if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_BYTES {
            return Err(GatewayError::GroupIdTooLong);
        }
        // `optional<Node> ratchet_tree<V>` of one present leaf node (RFC 9420, 12.4.3.3).
        let mut nodes = vec![1u8, 1u8];
        nodes.extend_from_slice(create.leaf_node.as_bytes());
        let tree = tls_codec::Serialize::tls_serialize_detached(&VLBytes::new(nodes))
            .map_err(|error| GatewayError::Internal(error.to_string()))?;
        let mut refusal = GatewayError::UnknownApplication;
        for app in self.applications.ids() {
            let Some(application) = self.applications.get(app) else {
                continue;
            };
            let rules = application.member_rules(&self.config);
            if !rules.federated {
                continue;
            }
            let created = tokio::task::block_in_place(|| {
                group::create(create.group_info.as_bytes(), &tree, &rules)
            });
            let (active, new_group) = match created {
                Ok(created) => created,
                Err(error) => {
                    refusal = error.into();
                    continue;
                }
            };
            if new_group.group_id != group_id {
                return Err(GroupError::GroupIdMismatch.into());
            }
            let creator = active
                .member_names(&rules)?
                .into_iter()
                .next()
                .unwrap_or_default();
            if !is_of_domain(&creator, peer) {
                return Err(GatewayError::SenderNotOfPeer(creator));
            }
            if self.hosting_application(group_id).await?.is_some()
                || self.store.group_head(*app, group_id).await?.is_some()
            {
                return Err(GroupStoreError::GroupExists.into());
            }
            self.store.create_group(*app, &new_group).await?;
            self.groups.put(*app, group_id, active);
            tracing::info!(peer, "group created for a peer's client");
            return Ok(());
        }
        Err(refusal)
    }
}
