//! `POST /apps/{appId}/clients` (architecture draft, "Identity Registration"): registers
//! `{ clientHandle, tags }` and answers `{ clientId }`, a fresh UUIDv4. Handles are unique
//! among the application's clients (409 otherwise).

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::{RegisterClientRequest, RegisterClientResponse};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, decode_body};
use crate::state::State;

pub async fn handle(state: &State, request: &Request, app: Uuid) -> Reply {
    let application = authorize(state, request, app)?;
    let body: RegisterClientRequest =
        decode_body(request, |body: &RegisterClientRequest| body.version)?;
    let client = state
        .services
        .registry
        .register(application, body.client_handle, &body.tags)
        .await?;
    let mut response = encoded(&RegisterClientResponse {
        version: WIRE_VERSION,
        client_id: *client.id.as_bytes(),
    })?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}
