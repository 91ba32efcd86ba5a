use http::StatusCode;
use mimi_wire::ds::{QueueingServiceRequest, QueueingServiceResponse};
use mimi_wire::messages::SendConnectionRequest;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded, octet_stream_response};
use crate::api::{authorize, decode_body, peer};
use crate::service::forward::mls_message;
use crate::state::State;

/// `POST /apps/{appId}/connection-requests`.
pub async fn send(state: &State, request: &Request, app: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: SendConnectionRequest =
        decode_body(request, |body: &SendConnectionRequest| body.version)?;
    let message = mls_message(body.message.as_slice())?;
    state
        .services
        .messages
        .send_connection_request(app, &body.domain, &body.client_handle, message)
        .await?;
    Ok(octet_stream_response(StatusCode::CREATED, Vec::new()))
}

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
