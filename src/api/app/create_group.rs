//! `PUT /apps/{appId}/groups` (architecture draft, "Group Creation"): a one-member group at
//! epoch 0 from the creator's GroupInfo and ratchet tree. Each check has its own code: the
//! GroupInfo decodes and verifies, the tree is valid and the GroupInfo's, epoch 0 and one
//! member, the creator's credential valid under the application's identity provider, and
//! the group id not in use by the application.

use mimi_wire::groups::{CreateGroupRequest, MAX_GROUP_ID_BYTES};
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::error::GatewayError;
use crate::mls::group;
use crate::state::State;

use crate::api::{authorize, decode_body};

pub async fn handle(state: &State, request: &Request, app: Uuid) -> Reply {
    let application = authorize(state, request, app)?;
    let body: CreateGroupRequest = decode_body(request, |body: &CreateGroupRequest| body.version)?;
    let rules = application.member_rules(&state.config);
    let (active, new_group) = tokio::task::block_in_place(|| {
        group::create(
            body.group_info.as_slice(),
            body.ratchet_tree.as_slice(),
            &rules,
        )
    })?;
    if new_group.group_id.is_empty() || new_group.group_id.len() > MAX_GROUP_ID_BYTES {
        return Err(GatewayError::GroupIdTooLong);
    }
    state.store.create_group(app, &new_group).await?;
    tracing::info!(group = %mimi_wire::groups::group_id_to_path(&new_group.group_id), "group created");
    state.groups.put(app, &new_group.group_id, active);
    crate::api::group_epoch_created(&new_group.group_id, 0)
}
