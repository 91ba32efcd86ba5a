//! Connection key packages (delivery-service draft, "Connection KeyPackages", "Fetch
//! connection KeyPackages of one or more clients"; MIMI Transport
//! `POST /connection_key_packages` with `ConnectionKeyPackagesRequest`): one key package of
//! every client of an account, for a user who has no connection with it yet. They come from
//! the clients' key queues labelled `connection` (`mimi_wire::key_queues::CONNECTION_APP_LABEL`)
//! of any supported cipher suite; a client without such a queue is left out.
//!
//! `POST /apps/{appId}/connection-key-packages` is the application's side: an account of this
//! gateway is answered here, one of another gateway is asked there and each package checked
//! to name that gateway's domain.
//!
//! Users are the identity provider's accounts: with accounts, the clients whose handles are
//! `<account>/<device>`; without, the one client whose handle is the account. As for
//! ordinary key packages, each is assigned to a receiver (the asking application's
//! `receiver_client_id`, named `handle@domain` across domains through our
//! `ds_select_connection_key_packages`) and handed to it again until used; the draft's bare
//! request names no receiver and takes fresh packages each time.

use mimi_wire::WIRE_VERSION;
use mimi_wire::ds::{DSRequestBody, DSResponseBody};
use mimi_wire::key_queues::{ConnectionKeyPackagesResponse, RetrieveConnectionKeyPackagesRequest};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, caller_scope, decode_body, decode_ds_request, ds_response, peer};
use crate::service::remote::{fresh_receiver, peer_receiver};
use crate::state::State;

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

/// `POST /apps/{appId}/connection-key-packages`.
pub async fn for_application(state: &State, request: &Request, app: Uuid) -> Reply {
    authorize(state, request, app)?;
    let asked: RetrieveConnectionKeyPackagesRequest =
        decode_body(request, |body: &RetrieveConnectionKeyPackagesRequest| {
            body.version
        })?;
    let packages = state
        .services
        .key_queues
        .connection_key_packages(
            caller_scope(request),
            app,
            asked.domain.as_deref(),
            &asked.account,
            &asked.receiver_client_id,
        )
        .await?;
    encoded(&ConnectionKeyPackagesResponse {
        version: WIRE_VERSION,
        key_packages: packages.into_iter().map(VLBytes::new).collect(),
    })
}
