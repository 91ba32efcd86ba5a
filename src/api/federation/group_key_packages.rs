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
use mimi_wire::codec::WireBool;
use mimi_wire::ds::{
    ClientId, ClientRef, DSRequestBody, DSResponseBody, KeyPackage, MlsMessage, SelectedKeyPackage,
};
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::error::GatewayError;
use crate::federation::key_packages::bare_key_package;
use crate::federation::{client_id_text, local_handle};
use crate::mls::key_package::{MLS_10, SUPPORTED_CIPHER_SUITES};
use crate::state::State;
use crate::store::{KeyQueueAttributes, KeyQueueError, RetrievedKeyPackage};

use crate::api::app::client::client_record;
use crate::api::app::key_queues::{check_label, retrieve_capped};
use crate::api::{decode_ds_request, ds_response, peer};

pub async fn key_packages(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let (asked, selector) = match decode_ds_request(request)? {
        DSRequestBody::SelectKeyPackages(asked, selector) => (asked, selector),
        DSRequestBody::KeyPackages(asked) => return draft_key_packages(state, peer, asked).await,
        _ => return Err(DecodeError::Malformed("not a key packages request".into()).into()),
    };
    check_label(&selector.app_label)?;
    let receiver = peer_receiver(peer, &selector.receiver)?;
    let attributes = KeyQueueAttributes {
        protocol_version: selector.protocol_version,
        cipher_suite: selector.cipher_suite,
        app_label: selector.app_label,
    };
    let now = crate::keys::unix_now();
    let scope = crate::net::auth::peer_scope(peer);
    let mut selected = Vec::with_capacity(asked.client_identifiers.len());
    for client in &asked.client_identifiers {
        let (app, id) = local_client(state, client).await?;
        let retrieved =
            retrieve_capped(state, &scope, app, id, &attributes, &receiver, now).await?;
        let (bytes, is_final) = match retrieved {
            RetrievedKeyPackage::Assigned(bytes) | RetrievedKeyPackage::AssignedBefore(bytes) => {
                (bytes, false)
            }
            RetrievedKeyPackage::FinalKey(bytes) => (bytes, true),
        };
        selected.push(SelectedKeyPackage {
            key_package: MlsMessage::from_bytes(bytes).map_err(|_| {
                GatewayError::Internal("a stored key package does not decode".into())
            })?,
            is_final_key: WireBool(is_final),
        });
    }
    ds_response(DSResponseBody::SelectedKeyPackages(selected))
}

/// The application and registry id of a client of this gateway a peer names: of this domain,
/// of a hosted application, registered.
async fn local_client(state: &State, client: &ClientId) -> Result<(Uuid, Uuid), GatewayError> {
    let app = Uuid::from_bytes(client.application);
    let not_ours = || GatewayError::NotOurClient(client_id_text(client));
    if !client.domain.eq_ignore_ascii_case(&state.config.domain) {
        return Err(not_ours());
    }
    if !state.applications.contains(&app) {
        return Err(GatewayError::UnknownApplication);
    }
    let handle = local_handle(state, app, client)
        .await?
        .ok_or_else(not_ours)?;
    let id = state
        .store
        .client_by_handle(app, &handle)
        .await?
        .ok_or_else(not_ours)?;
    Ok((app, id))
}

/// The draft's bare `ds_key_packages` (`KeyPackagesRequest`, no selector): of each client,
/// a package from its MLS 1.0 queue with the empty label, of the first supported cipher
/// suite it has one for; answered as `KeyPackages` (bare KeyPackages, in the request's order).
/// The request names no receiver, so each takes fresh packages.
pub(crate) async fn draft_key_packages(
    state: &State,
    peer: &str,
    asked: mimi_wire::ds::KeyPackagesRequest,
) -> Reply {
    let receiver = fresh_receiver(peer);
    let scope = crate::net::auth::peer_scope(peer);
    let now = crate::keys::unix_now();
    let mut packages = Vec::with_capacity(asked.client_identifiers.len());
    for client in &asked.client_identifiers {
        let (app, id) = local_client(state, client).await?;
        let mut found = None;
        let mut last = KeyQueueError::NoMatchingQueue;
        for cipher_suite in SUPPORTED_CIPHER_SUITES {
            let attributes = KeyQueueAttributes {
                protocol_version: MLS_10,
                cipher_suite,
                app_label: String::new(),
            };
            match retrieve_capped(state, &scope, app, id, &attributes, &receiver, now).await {
                Ok(
                    RetrievedKeyPackage::Assigned(bytes)
                    | RetrievedKeyPackage::AssignedBefore(bytes)
                    | RetrievedKeyPackage::FinalKey(bytes),
                ) => {
                    found = Some(bytes);
                    break;
                }
                // No such queue, or an empty one of this suite: try the next suite.
                // A withheld package (a fresh-assignment cap) says more than an exhausted
                // queue, which says more than a missing one of another suite.
                Err(error @ KeyQueueError::Withheld { .. }) => last = error,
                Err(error @ (KeyQueueError::NoMatchingQueue | KeyQueueError::Exhausted)) => {
                    if matches!(last, KeyQueueError::NoMatchingQueue) {
                        last = error;
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        let message = found.ok_or(GatewayError::KeyQueue(last))?;
        let bare = bare_key_package(&message)
            .and_then(|bytes| KeyPackage::from_bytes(bytes.to_vec()).ok())
            .ok_or_else(|| GatewayError::Internal("a stored key package does not decode".into()))?;
        packages.push(bare);
    }
    ds_response(DSResponseBody::KeyPackages(packages))
}

/// The receiver a peer names for its key packages: a client of that peer, by a non-empty
/// handle or id, recorded as `handle@domain` (or `id@domain`).
pub(crate) fn peer_receiver(peer: &str, receiver: &ClientId) -> Result<String, GatewayError> {
    if !receiver.domain.eq_ignore_ascii_case(peer) {
        return Err(GatewayError::Forbidden(format!(
            "{peer} asked on behalf of {}",
            client_id_text(receiver)
        )));
    }
    if matches!(&receiver.client, ClientRef::Handle(handle) if handle.is_empty()) {
        return Err(GatewayError::InvalidReceiver("an empty handle".into()));
    }
    Ok(client_id_text(receiver))
}

/// For a peer's request that names no receiver (the draft's bare forms): a name no other
/// request uses, so each takes fresh packages. Draining a queue by repetition is a matter
/// for per-peer rate limits.
pub(crate) fn fresh_receiver(peer: &str) -> String {
    format!("{}#{}", peer.to_ascii_lowercase(), Uuid::new_v4())
}

pub async fn discover(state: &State, request: &Request) -> Reply {
    peer(request)?;
    let DSRequestBody::DiscoverClients(asked) = decode_ds_request(request)? else {
        return Err(DecodeError::Malformed("not a discovery request".into()).into());
    };
    let app = Uuid::from_bytes(asked.application);
    if !state.applications.contains(&app) {
        return Err(GatewayError::UnknownApplication);
    }
    mimi_wire::registry::check_tag(&asked.tag).map_err(GatewayError::InvalidTag)?;
    let clients = state.store.clients_with_tag(app, &asked.tag).await?;
    ds_response(DSResponseBody::Clients(
        clients.iter().map(client_record).collect(),
    ))
}
