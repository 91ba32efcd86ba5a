//! `PUT /apps/{appId}/groups/{groupId}/epochs` (architecture draft, "Commits"; DESIGN.md
//! "Ordering commits: exactly one winner per epoch").
//!
//! The commit is validated against the group's current epoch as a member would (openmls'
//! `PublicGroup`, without group secrets): proposals by reference must be held, added key
//! packages are checked like queue uploads, a commit with Adds needs a Welcome addressed to
//! exactly the added key packages, and an uploaded GroupInfo must describe the new epoch.
//! The store then applies it as one compare-and-set on the epoch: of concurrent commits for
//! one epoch exactly one wins, the others get "stale epoch" with the current epoch.
//!
//! [`accept`] is the hub's one way to apply a commit: for its own applications here, and for
//! the commits followers forward (`POST /group_operation`, the delivery-service draft's
//! operations). A commit for a group mirrored from another hub is forwarded there
//! (`federation::forward`).

use mimi_wire::ds::DSRequestType;
use mimi_wire::groups::UploadCommitRequest;
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::error::GatewayError;
use crate::federation::fanout as hub;
use crate::mls::group::{
    ActiveGroup, CommitUpload, GroupError, GroupInfoUpload, Joining, StagedCommitOutcome,
};
use crate::mls::key_package::{MemberRules, is_of_domain, split_foreign};
use crate::mls::operations;
use crate::service::forward;
use crate::state::State;
use crate::store::{CommitRecord, WelcomeRecord};

use crate::api::{authorize, decode_body, mirrored_from};

pub async fn upload(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UploadCommitRequest =
        decode_body(request, |body: &UploadCommitRequest| body.version)?;
    let rules = application.member_rules(&state.config);
    let upload = CommitUpload {
        commit: body.commit_packet.as_slice(),
        group_info: body
            .group_info
            .as_ref()
            .map_or(GroupInfoUpload::Absent, |bytes| {
                GroupInfoUpload::Whole(bytes.as_slice())
            }),
        welcome: body.welcome_packet.as_ref().map(VLBytes::as_slice),
        joining: Joining::WelcomeRequired,
        describe: false,
    };
    let epoch = match mirrored_from(state, app, group_id, &rules).await? {
        // A group mirrored from its hub on another domain: the hub orders its commits.
        Some(hub) => forward::commit(state, &hub, app, group_id, &upload, &rules).await?,
        None => accept(state, app, group_id, &upload, &rules, None).await?,
    };
    crate::api::group_epoch_created(group_id, epoch)
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

/// Validates and applies a commit at this gateway, the group's hub, whether an application
/// uploaded it here or a follower forwarded it (`forwarded`): one winner per epoch, and the
/// fan-out to followers in the same atomic step. Answers the new epoch.
pub async fn accept(
    state: &State,
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
    let (group, outcome) =
        staged_commit(state, app, group_id, &upload, rules, forwarded.as_ref()).await?;
    // From here on a refusal drops the copy, merged into an epoch the store never saw.
    if let Some(forwarded) = &forwarded {
        check_forwarded_outcome(state, app, group_id, forwarded, &outcome).await?;
    }
    // A group with members on other domains: its hub fans the commit (and Welcome) out in
    // the same atomic step as the commit.
    let fanout = federated_fanout(state, app, &group, rules, upload.commit, &outcome)?;
    let record = commit_record(state, app, outcome, fanout).await?;
    let epoch = state.store.apply_commit(app, group_id, &record).await?;
    state.groups.put(app, group_id, group);
    if !record.fanout.is_empty() {
        state.delivery.wake();
    }
    tracing::info!(
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
/// commit is refused before the work.
async fn staged_commit(
    state: &State,
    app: Uuid,
    group_id: &[u8],
    upload: &CommitUpload<'_>,
    rules: &MemberRules<'_>,
    forwarded: Option<&Forwarded<'_>>,
) -> Result<(ActiveGroup, StagedCommitOutcome), GatewayError> {
    let stage = |group: &mut ActiveGroup| {
        // Validation and merge are CPU work that grows with the group (milliseconds at 1000
        // members): run them where they do not stall the reactor's other tasks.
        tokio::task::block_in_place(|| group.stage_commit(group_id, upload, rules))
    };
    let cached = state.groups.take_unchecked(app, group_id);
    let checked = cached.is_none();
    let mut group = match cached {
        Some(group) => group,
        None => {
            state
                .groups
                .checkout(state.store.as_ref(), app, group_id)
                .await?
        }
    };
    if let Some(forwarded) = forwarded {
        let sender = group.member_sender(upload.commit, rules);
        if let Ok(Some(name)) = &sender
            && !is_of_domain(name, forwarded.peer)
        {
            let name = name.clone();
            state.groups.put(app, group_id, group);
            return Err(GatewayError::SenderNotOfPeer(name));
        }
    }
    let mut outcome = stage(&mut group);
    if !checked
        && let Err(error) = &outcome
        && depends_on_the_copys_epoch(error)
    {
        // These refusals come before the merge: the copy is intact and goes back, so the
        // checkout reuses it if the store's head says it is current after all.
        state.groups.put(app, group_id, group);
        group = state
            .groups
            .checkout(state.store.as_ref(), app, group_id)
            .await?;
        outcome = stage(&mut group);
    }
    match outcome {
        Ok(outcome) => Ok((group, outcome)),
        Err(error) => {
            // A refusal before the merge leaves the copy as it was; after, it is spoiled.
            if !group.spoiled() {
                state.groups.put(app, group_id, group);
            }
            Err(error.into())
        }
    }
}

/// What a forwarded commit may not do beyond a local one: the operation named must be the
/// commit's, and a re-init must point to another group hosted on this hub ("The GroupID in
/// the re-init proposal MUST point to another group on this hub").
async fn check_forwarded_outcome(
    state: &State,
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
            && state.store.group_head(app, target).await?.is_some()
            && state.store.group_hub(app, target).await?.is_none();
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
    state: &State,
    app: Uuid,
    outcome: StagedCommitOutcome,
    fanout: Vec<(String, Vec<Vec<u8>>)>,
) -> Result<CommitRecord, GatewayError> {
    let now = crate::keys::unix_now();
    let mut used_key_packages = Vec::with_capacity(outcome.added.len());
    for (handle, reference) in &outcome.added {
        // A member whose key package came from elsewhere than this gateway's queues has
        // nothing to advance.
        if let Some(client) = state.store.client_by_handle(app, handle).await? {
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
                expires_at: now.saturating_add(state.config.groups.welcome_retention_secs),
            }),
        removed_handles: outcome.removed_handles,
        used_key_packages,
        now,
        retained_epochs: state.config.groups.retained_epochs,
        fanout,
    })
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

/// The fan-out of an accepted commit when the application federates: refused if a member
/// after it is of a domain outside the allow-list (removing such members stays possible),
/// or if members on other domains would be left without a GroupInfo to mirror the group
/// from.
fn federated_fanout(
    state: &State,
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
    let allowed = &state.config.federation.allowed_peers;
    if let Some(peer) = hub::by_peer(&members).into_keys().find(|peer| {
        !allowed.is_empty() && !allowed.iter().any(|name| name.eq_ignore_ascii_case(peer))
    }) {
        return Err(GatewayError::DomainNotAllowed(peer));
    }
    if outcome.group_info.is_none() && members.iter().any(|name| split_foreign(name).is_some()) {
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
