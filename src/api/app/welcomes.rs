//! `GET /apps/{appId}/clients/{clientHandle}/welcome-msgs` (architecture draft, "Joining"):
//! for every group the client was added to, the Welcome and the ratchet tree of that epoch
//! (always served: the Welcome may lack the ratchet tree extension).
//!
//! The draft's TODO about downloading the same welcomes again and again: a welcome stays
//! listed until `DELETE .../welcome-msgs/{welcomeId}` acknowledges it (or it expires after
//! `groups.welcome_retention_secs`); the tree stored for it is pruned once every recipient
//! has acknowledged or the welcome expired. A client removed from the group before it
//! fetched its welcome no longer sees it.

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::groups::{JoinInfo, WelcomeMessagesResponse};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::authorize;
use crate::api::reply::{Reply, Request, encoded, octet_stream_response};
use crate::state::State;

pub async fn list(state: &State, request: &Request, app: Uuid, handle: &str) -> Reply {
    authorize(state, request, app)?;
    let welcomes = state.services.groups.welcomes(app, handle).await?;
    encoded(&WelcomeMessagesResponse {
        version: WIRE_VERSION,
        join_infos: welcomes
            .into_iter()
            .map(|welcome| JoinInfo {
                welcome_id: *welcome.id.as_bytes(),
                group_id: VLBytes::new(welcome.group_id),
                epoch: welcome.epoch,
                welcome: VLBytes::new(welcome.packet),
                ratchet_tree: Some(VLBytes::new(welcome.ratchet_tree)),
            })
            .collect(),
    })
}

pub async fn acknowledge(
    state: &State,
    request: &Request,
    app: Uuid,
    handle: &str,
    welcome: Uuid,
) -> Reply {
    authorize(state, request, app)?;
    state
        .services
        .groups
        .acknowledge_welcome(app, handle, welcome)
        .await?;
    Ok(octet_stream_response(StatusCode::NO_CONTENT, Vec::new()))
}
