//! `PUT /apps/{appId}/groups/{groupId}/proposals` and `GET` on the same path (architecture
//! draft, "Proposals"): a PublicMessage proposal valid in the current epoch is held until
//! the next commit; `GET` answers the current epoch's proposals in upload order.

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::groups::{GroupEpochResponse, MessagesResponse, UploadProposalRequest};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::federation::hub;
use crate::service::{Reply, Request, encoded};
use crate::state::State;
use crate::store::GroupStoreError;

use super::{authorize, decode_body, member_rules};

pub async fn upload(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UploadProposalRequest =
        decode_body(request, |body: &UploadProposalRequest| body.version)?;
    let rules = member_rules(state, application);
    if rules.federated
        && let Some(hub) = state.store.group_hub(app, group_id).await?
    {
        return Err(GatewayError::HubElsewhere(hub));
    }
    let mut group = state
        .groups
        .checkout(state.store.as_ref(), app, group_id)
        .await?;
    let held = group.accept_proposal(group_id, body.packet.as_slice(), &rules)?;
    let epoch = group.epoch;
    // Followers hold it too, so they can apply a commit citing it by reference.
    let fanout = if rules.federated {
        let members = group.member_names(&rules)?;
        hub::proposal_fanout(app, &members, body.packet.as_slice())?
    } else {
        Vec::new()
    };
    state
        .store
        .add_proposal(app, group_id, epoch, &held)
        .await?;
    group.hold(held);
    state.groups.put(app, group_id, group);
    // Queued after the proposal is held and before any commit can cite it is accepted, so
    // it precedes that commit in each peer's queue. Not in the proposal's atomic step: if
    // queueing fails, the proposal stands and a follower refuses the commit citing it.
    for (peer, bodies) in fanout {
        state.store.enqueue_outbound(&peer, &bodies).await?;
        state.delivery.wake();
    }
    let mut response = encoded(&GroupEpochResponse {
        version: WIRE_VERSION,
        group_id: VLBytes::new(group_id.to_vec()),
        epoch,
    })?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
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
