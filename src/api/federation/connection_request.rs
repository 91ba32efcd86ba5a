//! `POST /connection_request` from a peer (architecture draft, "Connection Requests"; the
//! delivery-service draft's `QueueingServiceRequest`): the request goes into the named
//! client's queue.

use crate::api::peer;
use crate::api::reply::{Reply, Request, encoded};
use crate::state::State;
use mimi_wire::ds::{QueueingServiceRequest, QueueingServiceResponse};

/// `POST /connection_request` from a peer: the request goes into the named client's queue.
pub async fn receive(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let queued: QueueingServiceRequest = mimi_wire::decode_exact(&request.body)?;
    state
        .services
        .messages
        .receive_connection_request(peer, &queued)
        .await?;
    encoded(&QueueingServiceResponse::Ok)
}
