//! Connection requests (delivery-service draft, "Connection establishment flow"; MIMI
//! Transport `POST /connection_request` with the draft's 2023-05 `QueueingServiceRequest`):
//! an application hands a connection request (an MLSMessage, typically the Welcome of a
//! connection group) to a client of this or another gateway, with
//! `POST /apps/{appId}/connection-requests` (`mimi_wire::messages::SendConnectionRequest`);
//! this gateway queues it for its own client, or delivers it to the client's gateway, which
//! queues it in that client's message queue.

use http::StatusCode;
use mimi_wire::ds::{ClientId, ClientRef, QueueingServiceRequest, QueueingServiceResponse};
use mimi_wire::messages::{QueuedMessageKind, SendConnectionRequest};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded, octet_stream_response};
use crate::error::GatewayError;
use crate::federation::{
    CONNECTION_REQUEST_PATH, client_id_text, key_packages::check_peer, local_handle,
};
use crate::service::forward::mls_message;
use crate::state::State;
use crate::store::RegistryError;

use crate::api::{authorize, decode_body, peer};

/// `POST /apps/{appId}/connection-requests`.
pub async fn send(state: &State, request: &Request, app: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: SendConnectionRequest =
        decode_body(request, |body: &SendConnectionRequest| body.version)?;
    let message = mls_message(body.message.as_slice())?;
    if state.config.serves(&body.domain) {
        if state
            .store
            .client_by_handle(app, &body.client_handle)
            .await?
            .is_none()
        {
            return Err(RegistryError::UnknownClient.into());
        }
        crate::service::messages::enqueue(
            state,
            app,
            std::slice::from_ref(&body.client_handle),
            QueuedMessageKind::ConnectionRequest,
            &[],
            message.as_bytes(),
        )
        .await?;
    } else {
        check_peer(state, app, &body.domain)?;
        let recipient = ClientId {
            application: *app.as_bytes(),
            domain: body.domain.clone(),
            client: ClientRef::Handle(body.client_handle.clone()),
        };
        let queued = QueueingServiceRequest::new(&recipient, message)
            .map_err(|error| GatewayError::Internal(error.to_string()))?;
        let bytes = mimi_wire::encode(&queued)
            .map_err(|error| GatewayError::Internal(error.to_string()))?;
        let answer: QueueingServiceResponse =
            crate::federation::post(state, &body.domain, CONNECTION_REQUEST_PATH, bytes).await?;
        if answer != QueueingServiceResponse::Ok {
            return Err(GatewayError::PeerMalformedAnswer(body.domain));
        }
    }
    Ok(octet_stream_response(StatusCode::CREATED, Vec::new()))
}

/// `POST /connection_request` from a peer: the request goes into the named client's queue.
pub async fn receive(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let queued: QueueingServiceRequest = mimi_wire::decode_exact(&request.body)?;
    // `client_queue_information` that is no ClientID is a malformed body.
    let recipient = queued.client()?;
    let app = Uuid::from_bytes(recipient.application);
    let named = client_id_text(&recipient);
    // Only clients of applications that federate take requests from peers.
    let federates = state
        .applications
        .get(&app)
        .is_some_and(|application| application.federates());
    if !recipient.domain.eq_ignore_ascii_case(&state.config.domain) || !federates {
        return Err(GatewayError::NotOurClient(named));
    }
    let handle = local_handle(state, app, &recipient)
        .await?
        .ok_or(GatewayError::NotOurClient(named))?;
    crate::service::messages::enqueue(
        state,
        app,
        &[handle],
        QueuedMessageKind::ConnectionRequest,
        &[],
        queued.message.as_bytes(),
    )
    .await?;
    tracing::info!(peer, "connection request queued");
    encoded(&QueueingServiceResponse::Ok)
}
