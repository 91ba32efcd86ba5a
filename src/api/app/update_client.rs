//! `PATCH /apps/{appId}/clients/{clientId}` (architecture draft, "Identity Registration"):
//! changes the handle and adds or removes tags, atomically. 409 if the new handle is taken,
//! 404 for an unknown client; adding and removing the same tag is refused.

use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::{ClientResponse, MAX_TAGS, UpdateClientRequest};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;
use crate::state::State;
use crate::store::ClientChange;

use crate::api::app::client::client_record;
use crate::api::app::register_client::tag_set;
use crate::api::{authorize, decode_body};

pub async fn handle(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UpdateClientRequest =
        decode_body(request, |body: &UpdateClientRequest| body.version)?;
    if let Some(handle) = &body.client_handle {
        crate::api::app::register_client::check_client_handle(application, handle)?;
    }
    let change = ClientChange {
        handle: body.client_handle,
        add: tag_set(&body.tags_to_add)?,
        remove: tag_set(&body.tags_to_remove)?,
    };
    if let Some(tag) = change.add.intersection(&change.remove).next() {
        return Err(GatewayError::ConflictingTagChange(tag.clone()));
    }
    let updated = state
        .store
        .update_client(app, client, &change, MAX_TAGS)
        .await?;
    encoded(&ClientResponse {
        version: WIRE_VERSION,
        client: client_record(&updated),
    })
}
