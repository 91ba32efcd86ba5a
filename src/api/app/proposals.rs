//! `PUT /apps/{appId}/groups/{groupId}/proposals` and `GET` on the same path (architecture
//! draft, "Proposals"): a PublicMessage proposal valid in the current epoch is held until
//! the next commit; `GET` answers the current epoch's proposals in upload order. For a group
//! mirrored from a hub on another domain, the proposal is forwarded to the hub
//! (`service::forward`).

use mimi_wire::WIRE_VERSION;
use mimi_wire::groups::{MessagesResponse, UploadProposalRequest};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, decode_body, group_epoch_created};
use crate::state::State;

pub async fn upload(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UploadProposalRequest =
        decode_body(request, |body: &UploadProposalRequest| body.version)?;
    let epoch = state
        .services
        .groups
        .upload_proposal(application, group_id, body.packet.as_slice())
        .await?;
    group_epoch_created(group_id, epoch)
}

pub async fn list(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    authorize(state, request, app)?;
    let proposals = state.services.groups.proposals(app, group_id).await?;
    encoded(&MessagesResponse {
        version: WIRE_VERSION,
        messages: proposals.into_iter().map(VLBytes::new).collect(),
    })
}
