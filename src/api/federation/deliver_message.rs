//! `POST /deliver_message` (MIMI Transport; DS draft "Server to server requests"): a hub's
//! `DSFanoutRequest`, signed by the hub, for clients of this gateway. Answers a
//! `DSFanoutResponse` `Ok` once the message is mirrored or filed (`service::mirror`).

use mimi_wire::ds::{DS_PROTOCOL_VERSION, DSFanoutResponse, DSFanoutResponseBody};

use crate::api::reply::{Reply, Request, encoded};
use crate::state::State;

use crate::api::peer;

pub async fn handle(state: &State, request: &Request) -> Reply {
    let hub = peer(request)?;
    state.services.mirror.deliver(hub, &request.body).await?;
    encoded(&DSFanoutResponse {
        version: DS_PROTOCOL_VERSION,
        body: DSFanoutResponseBody::Ok,
    })
}
