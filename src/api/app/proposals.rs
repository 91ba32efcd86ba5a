//! `PUT /apps/{appId}/groups/{groupId}/proposals` and `GET` on the same path (architecture
//! draft, "Proposals"): a PublicMessage proposal valid in the current epoch is held until
//! the next commit; `GET` answers the current epoch's proposals in upload order. For a group
//! mirrored from a hub on another domain, the proposal is forwarded to the hub
//! (`federation::forward`).

use mimi_wire::WIRE_VERSION;
use mimi_wire::ds::DSRequestType;
use mimi_wire::groups::{MessagesResponse, UploadProposalRequest};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;
use crate::federation::fanout as hub;
use crate::mls::key_package::{MemberRules, is_of_domain};
use crate::mls::operations;
use crate::service::forward;
use crate::state::State;
use crate::store::GroupStoreError;

use crate::api::{authorize, decode_body, mirrored_from};

pub async fn upload(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UploadProposalRequest =
        decode_body(request, |body: &UploadProposalRequest| body.version)?;
    let rules = application.member_rules(&state.config);
    let packet = body.packet.as_slice();
    let epoch = match mirrored_from(state, app, group_id, &rules).await? {
        // A group mirrored from its hub on another domain: the hub holds its proposals.
        Some(hub) => forward::proposal(state, &hub, app, group_id, packet, &rules).await?,
        None => accept(state, app, group_id, packet, &rules, None).await?,
    };
    crate::api::group_epoch_created(group_id, epoch)
}

/// Validates and holds a proposal at this gateway, the group's hub, whether an application
/// uploaded it here or `forwarded` by a peer as an operation (its sender a client of that
/// peer; as the draft's self remove, removing itself; as our `ds_upload_proposal`, under the
/// rules for proposals of this gateway's own clients); followers with members get it too.
/// Answers the epoch.
pub async fn accept(
    state: &State,
    app: Uuid,
    group_id: &[u8],
    packet: &[u8],
    rules: &MemberRules<'_>,
    forwarded: Option<(&str, DSRequestType)>,
) -> Result<u64, GatewayError> {
    let mut group = state
        .groups
        .checkout(state.store.as_ref(), app, group_id)
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
            state.groups.put(app, group_id, group);
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
    state
        .store
        .add_proposal(app, group_id, epoch, &held, &fanout)
        .await?;
    group.hold(held);
    state.groups.put(app, group_id, group);
    if !fanout.is_empty() {
        state.delivery.wake();
    }
    Ok(epoch)
}

pub async fn list(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    authorize(state, request, app)?;
    let proposals = state
        .store
        .proposals(app, group_id)
        .await?
        .ok_or(GatewayError::GroupStore(GroupStoreError::UnknownGroup))?;
    encoded(&MessagesResponse {
        version: WIRE_VERSION,
        messages: proposals.into_iter().map(VLBytes::new).collect(),
    })
}
