//! `POST /group_key_packages` (MIMI Transport; DS draft "Fetch KeyPackages of one or more
//! clients") and `POST /discover_clients` (this gateway's extension: the architecture
//! draft's client discovery for a peer): a peer's application asks, through its gateway, for
//! key packages of clients of this gateway, or for the clients carrying a tag.
//!
//! Key packages come from the same key queues as local retrieval (one atomic step each);
//! the receiver is named `handle@domain`, so a queue hands the same package to the same
//! foreign receiver until a commit uses it. The draft's bare `ds_key_packages` (no selector,
//! no receiver) is served too, from each client's default queue.

use mimi_wire::DecodeError;
use mimi_wire::ds::{DSRequestBody, DSResponseBody};
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::api::{decode_ds_request, ds_response, peer};
use crate::state::State;

pub async fn key_packages(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    match decode_ds_request(request)? {
        DSRequestBody::SelectKeyPackages(asked, selector) => {
            let selected = state
                .services
                .key_queues
                .selected_for_peer(peer, asked, selector)
                .await?;
            ds_response(DSResponseBody::SelectedKeyPackages(selected))
        }
        DSRequestBody::KeyPackages(asked) => draft_key_packages(state, peer, asked).await,
        _ => Err(DecodeError::Malformed("not a key packages request".into()).into()),
    }
}

/// The draft's bare `ds_key_packages` (at `/group_key_packages` or `/group_operation`),
/// answered as `KeyPackages`.
pub(crate) async fn draft_key_packages(
    state: &State,
    peer: &str,
    asked: mimi_wire::ds::KeyPackagesRequest,
) -> Reply {
    let packages = state
        .services
        .key_queues
        .draft_key_packages_for_peer(peer, asked)
        .await?;
    ds_response(DSResponseBody::KeyPackages(packages))
}

pub async fn discover(state: &State, request: &Request) -> Reply {
    peer(request)?;
    let DSRequestBody::DiscoverClients(asked) = decode_ds_request(request)? else {
        return Err(DecodeError::Malformed("not a discovery request".into()).into());
    };
    let app = Uuid::from_bytes(asked.application);
    let clients = state.services.registry.for_peer(app, &asked.tag).await?;
    ds_response(DSResponseBody::Clients(clients))
}
