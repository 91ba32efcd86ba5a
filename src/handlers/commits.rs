//! `PUT /apps/{appId}/groups/{groupId}/epochs` (architecture draft, "Commits"; DESIGN.md
//! "Ordering commits: exactly one winner per epoch").
//!
//! The commit is validated against the group's current epoch as a member would (openmls'
//! `PublicGroup`, without group secrets): proposals by reference must be held, added key
//! packages are checked like queue uploads, a commit with Adds needs a Welcome addressed to
//! exactly the added key packages, and an uploaded GroupInfo must describe the new epoch.
//! The store then applies it as one compare-and-set on the epoch: of concurrent commits for
//! one epoch exactly one wins, the others get "stale epoch" with the current epoch.

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::groups::{GroupEpochResponse, UploadCommitRequest};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::federation::hub;
use crate::mls::group::{ActiveGroup, GroupError, Joining, StagedCommitOutcome};
use crate::mls::key_package::{MemberRules, split_foreign};
use crate::service::{Reply, Request, encoded};
use crate::state::State;
use crate::store::{CommitRecord, WelcomeRecord};

use super::{authorize, decode_body, member_rules};

pub async fn upload(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UploadCommitRequest =
        decode_body(request, |body: &UploadCommitRequest| body.version)?;
    let rules = member_rules(state, application);
    // Only groups of federating applications can be mirrors (one more store read for them).
    if rules.federated
        && let Some(hub) = state.store.group_hub(app, group_id).await?
    {
        return Err(GatewayError::HubElsewhere(hub));
    }
    let stage = |group: &mut ActiveGroup| {
        // Validation and merge are CPU work that grows with the group (milliseconds at 1000
        // members): run them where they do not stall the reactor's other tasks.
        tokio::task::block_in_place(|| {
            group.stage_commit(
                group_id,
                body.commit_packet.as_slice(),
                body.group_info.as_ref().map(VLBytes::as_slice),
                body.welcome_packet.as_ref().map(VLBytes::as_slice),
                &rules,
                Joining::WelcomeRequired,
            )
        })
    };
    // A cached copy is used without a store round trip; if the refusal depends on how
    // current the copy is (another gateway may have committed or taken a proposal), the
    // commit is validated again against the store's head.
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
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            // A refusal before the merge leaves the copy as it was; after, it is spoiled.
            if !group.spoiled() {
                state.groups.put(app, group_id, group);
            }
            return Err(error.into());
        }
    };
    // A group with members on other domains: its hub fans the commit (and Welcome) out in
    // the same atomic step as the commit. On a refusal the copy, merged into an epoch the
    // store never saw, is dropped.
    let fanout = federated_fanout(state, app, &group, &rules, &body, &outcome)?;
    let now = crate::keys::unix_now();
    let mut used_key_packages = Vec::with_capacity(outcome.added.len());
    for (handle, reference) in &outcome.added {
        // A member whose key package came from elsewhere than this gateway's queues has
        // nothing to advance.
        if let Some(client) = state.store.client_by_handle(app, handle).await? {
            used_key_packages.push((client, reference.clone()));
        }
    }
    let record = CommitRecord {
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
        fanout,
    };
    let epoch = state.store.apply_commit(app, group_id, &record).await?;
    state.groups.put(app, group_id, group);
    if !record.fanout.is_empty() {
        state.delivery.wake();
    }
    tracing::info!(epoch, "commit applied");
    let mut response = encoded(&GroupEpochResponse {
        version: WIRE_VERSION,
        group_id: VLBytes::new(group_id.to_vec()),
        epoch,
    })?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
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
    body: &UploadCommitRequest,
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
        body.commit_packet.as_slice(),
        outcome.group_info.as_deref(),
        welcome,
    )
}
