//! `PUT /apps/{appId}/groups` (architecture draft, "Group Creation"): a one-member group at
//! epoch 0 from the creator's GroupInfo and ratchet tree. Each check has its own code: the
//! GroupInfo decodes and verifies, the tree is valid and the GroupInfo's, epoch 0 and one
//! member, the creator's credential valid under the application's identity provider, and
//! the group id not in use by the application.

use mimi_wire::groups::CreateGroupRequest;
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::api::{authorize, decode_body, group_epoch_created};
use crate::state::State;

pub async fn handle(state: &State, request: &Request, app: Uuid) -> Reply {
    let application = authorize(state, request, app)?;
    let body: CreateGroupRequest = decode_body(request, |body: &CreateGroupRequest| body.version)?;
    let group_id = state
        .services
        .groups
        .create(
            application,
            body.group_info.as_slice(),
            body.ratchet_tree.as_slice(),
        )
        .await?;
    group_epoch_created(&group_id, 0)
}
