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
    ClientRef, DSAuthData, DSRequestBody, DSResponseBody, SelfRemoveClientRequest,
    UploadProposalRequest,
};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::api::{decode_ds_request_with_auth, ds_response, peer};
use crate::error::GatewayError;
use crate::mls::key_package::foreign_handle;
use crate::service::remote::fresh_receiver;
use crate::state::State;

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
        DSRequestBody::RequestGroupId => {
            let id = state.services.groups.request_group_id().await?;
            return ds_response(DSResponseBody::GroupId(VLBytes::new(id)));
        }
        DSRequestBody::SignaturePublicKey => return signature_public_key(state),
        DSRequestBody::CreateGroup(create) => {
            state.services.groups.create_for_peer(peer, create).await?;
            return ds_response(DSResponseBody::Ok);
        }
        DSRequestBody::SelfRemoveClient(SelfRemoveClientRequest { proposal })
        | DSRequestBody::UploadProposal(UploadProposalRequest { proposal }) => {
            state
                .services
                .groups
                .proposal_from_peer(peer, operation, proposal.as_bytes())
                .await?;
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
            state
                .services
                .groups
                .route_from_peer(peer, send.application_message.as_bytes(), None)
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
            let sender = (Uuid::from_bytes(sender.application), handle.as_str());
            state
                .services
                .groups
                .route_from_peer(peer, send.application_message.as_bytes(), Some(sender))
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
            let receiver = fresh_receiver(peer);
            return crate::api::federation::connection_key_packages::answer_peer(
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
    state
        .services
        .groups
        .operation_commit(peer, operation, &update, &welcomes)
        .await?;
    ds_response(DSResponseBody::Ok)
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
