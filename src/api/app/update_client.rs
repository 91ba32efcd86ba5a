//! `PATCH /apps/{appId}/clients/{clientId}` (architecture draft, "Identity Registration"):
//! changes the handle and adds or removes tags, atomically. 409 if the new handle is taken,
//! 404 for an unknown client; adding and removing the same tag is refused.

use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::{ClientResponse, UpdateClientRequest};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, decode_body};
use crate::service::registry::client_record;
use crate::state::State;

pub async fn handle(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UpdateClientRequest =
        decode_body(request, |body: &UpdateClientRequest| body.version)?;
    let updated = state
        .services
        .registry
        .update(
            application,
            client,
            body.client_handle,
            &body.tags_to_add,
            &body.tags_to_remove,
        )
        .await?;
    encoded(&ClientResponse {
        version: WIRE_VERSION,
        client: client_record(&updated),
    })
}
