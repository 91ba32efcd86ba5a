//! `POST /apps/{appId}/clients` (architecture draft, "Identity Registration"): registers
//! `{ clientHandle, tags }` and answers `{ clientId }`, a fresh UUIDv4. Handles are unique
//! among the application's clients (409 otherwise).

use std::collections::BTreeSet;

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::{
    MAX_TAGS, RegisterClientRequest, RegisterClientResponse, check_handle, check_local_handle,
};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;
use crate::state::State;
use crate::store::Client;

use crate::api::{authorize, decode_body};

/// Checks every tag and removes duplicates.
pub(crate) fn tag_set(tags: &[String]) -> Result<BTreeSet<String>, GatewayError> {
    for tag in tags {
        mimi_wire::registry::check_tag(tag).map_err(GatewayError::InvalidTag)?;
    }
    Ok(tags.iter().cloned().collect())
}

/// A handle the application may register: valid, and without `@` when its identity provider
/// has domains (there `handle@domain` names another gateway's client).
pub(crate) fn check_client_handle(
    application: &crate::service::applications::Application,
    handle: &str,
) -> Result<(), GatewayError> {
    if application.federates() {
        check_local_handle(handle)
    } else {
        check_handle(handle)
    }
    .map_err(GatewayError::InvalidHandle)
}

pub async fn handle(state: &State, request: &Request, app: Uuid) -> Reply {
    let application = authorize(state, request, app)?;
    let body: RegisterClientRequest =
        decode_body(request, |body: &RegisterClientRequest| body.version)?;
    check_client_handle(application, &body.client_handle)?;
    let tags = tag_set(&body.tags)?;
    if tags.len() > MAX_TAGS {
        return Err(GatewayError::TooManyTags(MAX_TAGS));
    }
    let client = Client {
        id: Uuid::new_v4(),
        handle: body.client_handle,
        tags,
    };
    state.store.register_client(app, &client).await?;
    tracing::info!(%app, client = %client.id, "client registered");
    let mut response = encoded(&RegisterClientResponse {
        version: WIRE_VERSION,
        client_id: *client.id.as_bytes(),
    })?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}
