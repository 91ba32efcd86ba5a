//! `GET|POST /apps/{appId}/groups/{groupId}/control-msgs` (architecture draft, "Commits"):
//! every commit, preceded by the proposals it committed by reference, of the epochs
//! `startEpochId..=endEpochId` (`endEpochId` defaults to the current epoch), in order. An
//! empty range or one reaching past the current epoch is "epoch out of range".

use mimi_wire::WIRE_VERSION;
use mimi_wire::groups::{ControlMessagesRequest, MessagesResponse};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, decode_body};
use crate::state::State;

pub async fn handle(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    authorize(state, request, app)?;
    let body: ControlMessagesRequest =
        decode_body(request, |body: &ControlMessagesRequest| body.version)?;
    let messages = state
        .services
        .groups
        .control_messages(app, group_id, body.start_epoch_id, body.end_epoch_id)
        .await?;
    encoded(&MessagesResponse {
        version: WIRE_VERSION,
        messages: messages.into_iter().map(VLBytes::new).collect(),
    })
}
