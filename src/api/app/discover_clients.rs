//! `GET /apps/{appId}/clients` (or `POST ...?discover`) (architecture draft, "Client
//! Discovery"): every client carrying a tag, with its id, handle and all its tags, read from
//! the tag's index (no scan). A `domain` other than this gateway's is passed to that
//! gateway's `/discover_clients` and its answer passed back.

use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::{DiscoverClientsRequest, DiscoverClientsResponse, check_tag};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;
use crate::state::State;

use crate::api::app::client::client_record;
use crate::api::{authorize, decode_body};

pub async fn handle(state: &State, request: &Request, app: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: DiscoverClientsRequest =
        decode_body(request, |body: &DiscoverClientsRequest| body.version)?;
    check_tag(&body.tag).map_err(GatewayError::InvalidTag)?;
    if let Some(domain) = &body.domain
        && !state.config.serves(domain)
    {
        let identities =
            crate::federation::key_packages::discover_at_peer(state, app, domain, &body.tag)
                .await?;
        return encoded(&DiscoverClientsResponse {
            version: WIRE_VERSION,
            identities,
        });
    }
    let clients = state.store.clients_with_tag(app, &body.tag).await?;
    encoded(&DiscoverClientsResponse {
        version: WIRE_VERSION,
        identities: clients.iter().map(client_record).collect(),
    })
}
