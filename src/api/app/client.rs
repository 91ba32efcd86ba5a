//! `GET` and `DELETE /apps/{appId}/clients/{clientId}`: retrieval and deletion of one
//! client, which the architecture draft leaves TODO ("Identity Retrieval", "Identity
//! Deletion"). Deletion removes the client, its handle and its tag index entries atomically.

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::{ClientRecord, ClientResponse};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded, octet_stream_response};
use crate::error::GatewayError;
use crate::state::State;
use crate::store::{Client, RegistryError};

use crate::api::authorize;

pub(crate) fn client_record(client: &Client) -> ClientRecord {
    ClientRecord {
        client_id: *client.id.as_bytes(),
        client_handle: client.handle.clone(),
        tags: client.tags.iter().cloned().collect(),
    }
}

pub async fn read(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    let found = state
        .store
        .client(app, client)
        .await?
        .ok_or(RegistryError::UnknownClient)?;
    encoded(&ClientResponse {
        version: WIRE_VERSION,
        client: client_record(&found),
    })
}

/// Deletion in two steps, each atomic: first the client's key queues go and the client is
/// marked retired in its own slot (no key package is handed out or accepted for it after
/// that), then its registry entry goes. A crash between the two leaves a registered client
/// without queues; deleting again completes it.
pub async fn delete(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    if state.store.client(app, client).await?.is_none() {
        return Err(GatewayError::Registry(RegistryError::UnknownClient));
    }
    state.store.retire_client_key_queues(app, client).await?;
    if !state.store.delete_client(app, client).await? {
        return Err(GatewayError::Registry(RegistryError::UnknownClient));
    }
    tracing::info!(%app, %client, "client deleted");
    Ok(octet_stream_response(StatusCode::NO_CONTENT, Vec::new()))
}
