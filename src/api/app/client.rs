//! `GET` and `DELETE /apps/{appId}/clients/{clientId}`: retrieval and deletion of one
//! client, which the architecture draft leaves TODO ("Identity Retrieval", "Identity
//! Deletion"). Deletion removes the client, its handle and its tag index entries atomically.

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::ClientResponse;
use uuid::Uuid;

use crate::api::authorize;
use crate::api::reply::{Reply, Request, encoded, octet_stream_response};
use crate::service::registry::client_record;
use crate::state::State;

pub async fn read(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    let found = state.services.registry.read(app, client).await?;
    encoded(&ClientResponse {
        version: WIRE_VERSION,
        client: client_record(&found),
    })
}

pub async fn delete(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    state.services.registry.delete(app, client).await?;
    Ok(octet_stream_response(StatusCode::NO_CONTENT, Vec::new()))
}
