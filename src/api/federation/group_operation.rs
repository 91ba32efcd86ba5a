//! `POST /group_operation` (MIMI Transport; delivery-service draft, "Client-initiated
//! operations"): a peer's `DSRequest` for a group this gateway is the hub of. Commits travel
//! as `MLSGroupUpdate` (commit + `PartialGroupInfo`, from which the hub rebuilds the new
//! epoch's GroupInfo and verifies its signature); each operation's rules are checked
//! (`mls::operations`) and its sender must be a client of the requesting peer. An accepted
//! commit or proposal is applied exactly as one uploaded by a local application: one winner
//! per epoch, fanned out to every follower (the requesting one included) in the same step.
//!
//! What the draft has no operation for comes as ours (`docs/federation-wire.md`): any
//! standalone proposal as `ds_upload_proposal`, any other commit (an external join by a new
//! user, say) as `ds_commit`; the hub holds them to the rules it applies to its own clients,
//! plus the sender check.
//!
//! An application message (`ds_send_message`) is routed to every member's queue
//! (`service::messages`). Also served: `ds_request_group_id` (a fresh 16-byte id),
//! `ds_signature_public_key` (the raw key this gateway currently signs with),
//! `ds_create_group` (a group hosted here, created for a client of the peer), and
//! `ds_key_packages` / `ds_connection_key_packages` (as at their own endpoints). Welcome and
//! external-commit information, selected key packages and discovery have their own endpoints
//! only (`docs/federation-wire.md`).

use mimi_wire::DecodeError;
use mimi_wire::ds::{
    ClientRef, DSAuthData, DSRequestBody, DSRequestType, DSResponseBody, MLSGroupUpdate,
    SelfRemoveClientRequest, UploadProposalRequest,
};
use mimi_wire::groups::MAX_GROUP_ID_BYTES;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::error::GatewayError;
use crate::mls::group::{self, CommitUpload, GroupError, GroupInfoUpload, Joining};
use crate::mls::key_package::{MemberRules, foreign_handle, is_of_domain};
use crate::state::State;
use crate::store::GroupStoreError;

use crate::api::app::commits::{self, Forwarded};
use crate::api::app::proposals;
use crate::api::{decode_ds_request_with_auth, ds_response, peer};

pub async fn handle(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let (body, auth) = decode_ds_request_with_auth(request)?;
    // Gateways authenticate each other by the signed-request envelope; a client signature
    // has no place between them (docs/federation-wire.md).
    if auth != DSAuthData::Anonymous {
        return Err(
            DecodeError::Malformed("DSAuthData between gateways is Anonymous".into()).into(),
        );
    }
    let operation = body.request_type();
    let (update, welcomes) = match body {
        DSRequestBody::RequestGroupId => return request_group_id(state).await,
        DSRequestBody::SignaturePublicKey => return signature_public_key(state),
        DSRequestBody::CreateGroup(create) => {
            return create_group(state, peer, create).await;
        }
        DSRequestBody::SelfRemoveClient(SelfRemoveClientRequest { proposal })
        | DSRequestBody::UploadProposal(UploadProposalRequest { proposal }) => {
            let packet = proposal.as_bytes();
            let (app, group_id, rules) = hosted_group(state, packet).await?;
            let forwarded = Some((peer, operation));
            proposals::accept(state, app, &group_id, packet, &rules, forwarded).await?;
            return ds_response(DSResponseBody::Ok);
        }
        DSRequestBody::AddUsers(add)
        | DSRequestBody::AddClients(add)
        | DSRequestBody::Commit(add) => (add.group_update, add.welcome_messages),
        DSRequestBody::DeleteGroup(request)
        | DSRequestBody::RemoveUsers(request)
        | DSRequestBody::RemoveClients(request)
        | DSRequestBody::ExternalJoin(request) => (request.group_update, Vec::new()),
        DSRequestBody::UpdateClient(update) => (update.group_update, Vec::new()),
        DSRequestBody::ReInitializeGroup(reinit) => (reinit.commit, Vec::new()),
        DSRequestBody::SendMessage(send) => {
            let packet = send.application_message.as_bytes();
            let (app, group_id, rules) = hosted_group(state, packet).await?;
            crate::service::messages::route(
                state,
                app,
                &group_id,
                packet,
                &rules,
                Some(peer),
                None,
            )
            .await?;
            return ds_response(DSResponseBody::Ok);
        }
        DSRequestBody::SendMessageFrom(send, sender) => {
            // The sender to skip is a client of the requesting peer, named by its handle.
            let ClientRef::Handle(handle) = &sender.client else {
                return Err(
                    DecodeError::Malformed("the sender is named by its handle".into()).into(),
                );
            };
            if !sender.domain.eq_ignore_ascii_case(peer) {
                return Err(GatewayError::SenderNotOfPeer(foreign_handle(
                    handle,
                    &sender.domain,
                )));
            }
            let packet = send.application_message.as_bytes();
            let (app, group_id, rules) = hosted_group(state, packet).await?;
            if Uuid::from_bytes(sender.application) != app {
                return Err(GatewayError::SenderNotOfPeer(foreign_handle(handle, peer)));
            }
            let skipped = foreign_handle(handle, peer);
            crate::service::messages::route(
                state,
                app,
                &group_id,
                packet,
                &rules,
                Some(peer),
                Some(&skipped),
            )
            .await?;
            return ds_response(DSResponseBody::Ok);
        }
        // The draft lists key package retrieval among the operations too: served as at
        // `/group_key_packages` and `/connection_key_packages`.
        DSRequestBody::KeyPackages(asked) => {
            return crate::api::federation::group_key_packages::draft_key_packages(
                state, peer, asked,
            )
            .await;
        }
        DSRequestBody::ConnectionKeyPackages(asked) => {
            let receiver = crate::api::federation::group_key_packages::fresh_receiver(peer);
            return crate::api::app::connection_key_packages::answer_peer(
                state, peer, asked, &receiver,
            )
            .await;
        }
        DSRequestBody::WelcomeInfo(_)
        | DSRequestBody::ExternalCommitInfo(_)
        | DSRequestBody::DiscoverClients(_)
        | DSRequestBody::SelectKeyPackages(..)
        | DSRequestBody::SelectConnectionKeyPackages(..) => {
            return Err(DecodeError::Malformed(format!(
                "{operation:?} is served at its own endpoint"
            ))
            .into());
        }
    };
    let (app, group_id) = commit(state, peer, operation, &update, &welcomes).await?;
    if operation == DSRequestType::DeleteGroup {
        // The commit removing everyone else is applied and fanned out: the group goes.
        state.groups.take_unchecked(app, &group_id);
        // The commit stands whatever happens here: a failed deletion is not the peer's to
        // retry (its commit would now be stale); the state stays and the operator is told.
        match state.store.delete_group(app, &group_id).await {
            Ok(_) => tracing::info!(peer, "group deleted"),
            Err(error) => tracing::error!(%error, peer, "group state left after its deletion"),
        }
    }
    ds_response(DSResponseBody::Ok)
}

/// A forwarded commit: applied as the hub applies its own applications' commits, with the
/// GroupInfo rebuilt from the `PartialGroupInfo`.
async fn commit(
    state: &State,
    peer: &str,
    operation: DSRequestType,
    update: &MLSGroupUpdate,
    welcomes: &[mimi_wire::ds::MlsMessage],
) -> Result<(Uuid, Vec<u8>), GatewayError> {
    // Ours carries at most the one Welcome MLS makes: refused before any work.
    if operation == DSRequestType::Commit && welcomes.len() > 1 {
        return Err(crate::mls::operations::OperationError::WelcomeCount.into());
    }
    let packet = update.commit.as_bytes();
    let (app, group_id, rules) = hosted_group(state, packet).await?;
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
    commits::accept(state, app, &group_id, &upload, &rules, Some(forwarded)).await?;
    Ok((app, group_id))
}

/// The application, id and member rules of the group a forwarded message is for: a group
/// this gateway is the hub of (`UnknownGroup` for one it does not host or only mirrors).
async fn hosted_group<'s>(
    state: &'s State,
    packet: &[u8],
) -> Result<(Uuid, Vec<u8>, MemberRules<'s>), GatewayError> {
    let message = MlsMessageIn::tls_deserialize_exact(packet)
        .map_err(|error| GroupError::Malformed(error.to_string()))?;
    // A PrivateMessage is an application message, or a handshake the staging refuses.
    let group_id = match message.extract() {
        MlsMessageBodyIn::PublicMessage(message) => message.group_id().as_slice().to_vec(),
        MlsMessageBodyIn::PrivateMessage(message) => message.group_id().as_slice().to_vec(),
        _ => return Err(GroupError::Malformed("not a PublicMessage".into()).into()),
    };
    let app = hosting_application(state, &group_id)
        .await?
        .ok_or(GatewayError::GroupStore(GroupStoreError::UnknownGroup))?;
    let application = state
        .applications
        .get(&app)
        .ok_or(GatewayError::UnknownApplication)?;
    Ok((app, group_id, application.member_rules(&state.config)))
}

/// The federating application that hosts `group_id` here as its hub, if any (groups of
/// applications that do not federate are invisible to peers).
async fn hosting_application(state: &State, group_id: &[u8]) -> Result<Option<Uuid>, GatewayError> {
    for app in state.applications.ids() {
        let federates = state
            .applications
            .get(app)
            .is_some_and(|application| application.federates());
        if !federates {
            continue;
        }
        if state.store.group_head(*app, group_id).await?.is_some() {
            if state.store.group_hub(*app, group_id).await?.is_none() {
                return Ok(Some(*app));
            }
            return Ok(None);
        }
    }
    Ok(None)
}

/// "Request group id": a fresh random id no hosted application uses.
async fn request_group_id(state: &State) -> Reply {
    loop {
        let id = Uuid::new_v4().as_bytes().to_vec();
        if hosting_application(state, &id).await?.is_none() {
            return ds_response(DSResponseBody::GroupId(VLBytes::new(id)));
        }
    }
}

/// "Fetch the DS' signature public key": the Ed25519 key this gateway signs with now.
fn signature_public_key(state: &State) -> Reply {
    let now = crate::keys::unix_now();
    let key = state
        .keys
        .read()
        .map_err(|_| GatewayError::Internal("key ring lock poisoned".into()))?
        .current(now)
        .map(|entry| entry.key.verifying_key().as_bytes().to_vec())
        .ok_or_else(|| GatewayError::Internal("no current signing key".into()))?;
    ds_response(DSResponseBody::SignaturePublicKey(VLBytes::new(key)))
}

/// "Create group": a one-member group hosted here for a client of `peer`, from its LeafNode
/// (the whole tree of a new group) and GroupInfo. The draft's request names no application:
/// the group goes to the first federating application (in configuration order) whose
/// identity provider accepts the creator.
async fn create_group(
    state: &State,
    peer: &str,
    create: mimi_wire::ds::CreateGroupRequest,
) -> Reply {
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
    for app in state.applications.ids() {
        let Some(application) = state.applications.get(app) else {
            continue;
        };
        let rules = application.member_rules(&state.config);
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
        if hosting_application(state, group_id).await?.is_some()
            || state.store.group_head(*app, group_id).await?.is_some()
        {
            return Err(GroupStoreError::GroupExists.into());
        }
        state.store.create_group(*app, &new_group).await?;
        state.groups.put(*app, group_id, active);
        tracing::info!(peer, "group created for a peer's client");
        return ds_response(DSResponseBody::Ok);
    }
    Err(refusal)
}
