//! `GET /apps/{appId}/groups/{groupId}/group-info` (architecture draft, "Joining"): the
//! current GroupInfo, if the last committer uploaded one, with the current ratchet tree,
//! for a client joining by external commit. No GroupInfo means an empty list.
//!
//! `GET /apps/{appId}/groups/{groupId}` (ours): what a client cannot learn otherwise: the
//! group's epoch, its hub and whether this gateway is that hub or mirrors it, how many members
//! it has and whether a GroupInfo is held (`mimi_wire::groups::GroupStatusResponse`).

use mimi_wire::WIRE_VERSION;
use mimi_wire::codec::WireBool;
use mimi_wire::groups::{GroupInfoEntry, GroupInfoResponse, GroupRole, GroupStatusResponse};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::authorize;
use crate::api::reply::{Reply, Request, encoded};
use crate::state::State;

pub async fn handle(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    authorize(state, request, app)?;
    let current = state.services.groups.group_info(app, group_id).await?;
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

pub async fn status(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let status = state.services.groups.status(application, group_id).await?;
    let (hub_domain, role) = match status.hub {
        Some(hub) => (hub, GroupRole::Mirror),
        None => (state.config.domain.clone(), GroupRole::Hub),
    };
    encoded(&GroupStatusResponse {
        version: WIRE_VERSION,
        group_id: VLBytes::new(group_id.to_vec()),
        epoch: status.epoch,
        hub_domain,
        role,
        member_count: u32::try_from(status.member_count).unwrap_or(u32::MAX),
        has_group_info: WireBool(status.has_group_info),
    })
}
