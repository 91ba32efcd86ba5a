//! `POST /connection_key_packages` from a peer (architecture draft, "Connection Key
//! Packages"): one connection key package of each client of the account asked for.

use crate::api::reply::{Reply, Request};
use crate::api::{decode_ds_request, ds_response, peer};
use crate::service::remote::{fresh_receiver, peer_receiver};
use crate::state::State;
use mimi_wire::ds::{DSRequestBody, DSResponseBody};

/// `POST /connection_key_packages` from a peer: ours with the receiver
/// (`ds_select_connection_key_packages`), or the draft's bare request, which names none and so
/// takes fresh packages each time.
pub async fn for_peer(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    match decode_ds_request(request)? {
        DSRequestBody::SelectConnectionKeyPackages(asked, receiver) => {
            let receiver = peer_receiver(peer, &receiver)?;
            answer_peer(state, peer, asked, &receiver).await
        }
        DSRequestBody::ConnectionKeyPackages(asked) => {
            answer_peer(state, peer, asked, &fresh_receiver(peer)).await
        }
        _ => Err(
            mimi_wire::DecodeError::Malformed("not a connection key packages request".into())
                .into(),
        ),
    }
}

/// A peer's `ConnectionKeyPackagesRequest` (at `/connection_key_packages` or
/// `/group_operation`) for `receiver`, answered as `ConnectionKeyPackages`.
pub(crate) async fn answer_peer(
    state: &State,
    peer: &str,
    asked: mimi_wire::ds::ConnectionKeyPackagesRequest,
    receiver: &str,
) -> Reply {
    let packages = state
        .services
        .key_queues
        .connection_key_packages_for_peer(peer, asked, receiver)
        .await?;
    ds_response(DSResponseBody::ConnectionKeyPackages(packages))
}
