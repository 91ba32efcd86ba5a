//! Connection requests (delivery-service draft, "Connection establishment flow"; MIMI
//! Transport `POST /connection_request` with the draft's 2023-05 `QueueingServiceRequest`):
//! an application hands a connection request (an MLSMessage, typically the Welcome of a
//! connection group) to a client of this or another gateway, with
//! `POST /apps/{appId}/connection-requests` (`mimi_wire::messages::SendConnectionRequest`);
//! this gateway queues it for its own client, or delivers it to the client's gateway, which
//! queues it in that client's message queue.

use http::StatusCode;
use mimi_wire::messages::SendConnectionRequest;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, octet_stream_response};
use crate::api::{authorize, decode_body};
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
