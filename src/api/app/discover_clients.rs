//! `GET /apps/{appId}/clients` (or `POST ...?discover`) (architecture draft, "Client
//! Discovery"): every client carrying a tag, with its id, handle and all its tags, read from
//! the tag's index (no scan). A `domain` other than this gateway's is passed to that
//! gateway's `/discover_clients` and its answer passed back.

use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::{DiscoverClientsRequest, DiscoverClientsResponse};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, decode_body};
use crate::state::State;

pub async fn handle(state: &State, request: &Request, app: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: DiscoverClientsRequest =
        decode_body(request, |body: &DiscoverClientsRequest| body.version)?;
    let identities = state
        .services
        .registry
        .discover(app, body.domain.as_deref(), &body.tag)
        .await?;
    encoded(&DiscoverClientsResponse {
        version: WIRE_VERSION,
        identities,
    })
}
