//! `GET /apps/{appId}/groups/{groupId}/group-info` (architecture draft, "Joining"): the
//! current GroupInfo, if the last committer uploaded one, with the current ratchet tree,
//! for a client joining by external commit. No GroupInfo means an empty list.

use mimi_wire::WIRE_VERSION;
use mimi_wire::groups::{GroupInfoEntry, GroupInfoResponse};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::service::{Reply, Request, encoded};
use crate::state::State;
use crate::store::GroupStoreError;

use super::authorize;

pub async fn handle(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    authorize(state, request, app)?;
    let current = state
        .store
        .current_group_info(app, group_id)
        .await?
        .ok_or(GatewayError::GroupStore(GroupStoreError::UnknownGroup))?;
    let ratchet_tree = VLBytes::new(current.ratchet_tree);
    encoded(&GroupInfoResponse {
        version: WIRE_VERSION,
        group_infos: current
            .group_info
            .map(|group_info| GroupInfoEntry {
                group_info: VLBytes::new(group_info),
                ratchet_tree: Some(ratchet_tree),
            })
            .into_iter()
            .collect(),
    })
}
