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
use mimi_wire::key_queues::{ConnectionKeyPackagesResponse, RetrieveConnectionKeyPackagesRequest};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, caller_scope, decode_body};
use crate::state::State;

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
