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
use mimi_wire::ds::{DSRequestBody, DSResponseBody, KeyPackage};
use mimi_wire::key_queues::{
    CONNECTION_APP_LABEL, ConnectionKeyPackagesResponse, MAX_RECEIVER_BYTES,
    RetrieveConnectionKeyPackagesRequest,
};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;
use crate::federation::key_packages::{
    bare_key_package, check_peer, connection_key_packages_from_peer,
};
use crate::mls::key_package::{MLS_10, SUPPORTED_CIPHER_SUITES};
use crate::service::applications::Application;
use crate::state::State;
use crate::store::{KeyQueueAttributes, KeyQueueError, RegistryError, RetrievedKeyPackage};

use crate::api::app::key_queues::retrieve_capped;
use crate::api::{authorize, decode_body, decode_ds_request, ds_response, peer};

/// The clients (handle, id) of `account` in `app`.
async fn account_clients(
    state: &State,
    app: Uuid,
    application: &Application,
    account: &str,
) -> Result<Vec<(String, Uuid)>, GatewayError> {
    if account.is_empty() {
        return Err(RegistryError::UnknownClient.into());
    }
    if application.identity.configuration().supports_accounts.0 {
        // Accounts and devices are certificate Common Names, which never hold a `/`.
        if account.contains('/') {
            return Err(RegistryError::UnknownClient.into());
        }
        Ok(state
            .store
            .clients_with_handle_prefix(app, &format!("{account}/"))
            .await?)
    } else {
        Ok(state
            .store
            .client_by_handle(app, account)
            .await?
            .map(|id| vec![(account.to_owned(), id)])
            .unwrap_or_default())
    }
}

/// One connection key package (an MLSMessage) of each client of `account` here that has a
/// connection queue, taken for `receiver`. `UnknownClient` for an account without clients.
async fn local_connection_key_packages(
    state: &State,
    scope: &str,
    app: Uuid,
    account: &str,
    receiver: &str,
) -> Result<Vec<Vec<u8>>, GatewayError> {
    let application = state
        .applications
        .get(&app)
        .ok_or(GatewayError::UnknownApplication)?;
    let clients = account_clients(state, app, application, account).await?;
    if clients.is_empty() {
        return Err(RegistryError::UnknownClient.into());
    }
    let now = crate::keys::unix_now();
    let mut packages = Vec::with_capacity(clients.len());
    for (_, client) in clients {
        let mut withheld = None;
        let mut found = false;
        for cipher_suite in SUPPORTED_CIPHER_SUITES {
            let attributes = KeyQueueAttributes {
                protocol_version: MLS_10,
                cipher_suite,
                app_label: CONNECTION_APP_LABEL.to_owned(),
            };
            match retrieve_capped(state, scope, app, client, &attributes, receiver, now).await {
                Ok(
                    RetrievedKeyPackage::Assigned(bytes)
                    | RetrievedKeyPackage::AssignedBefore(bytes)
                    | RetrievedKeyPackage::FinalKey(bytes),
                ) => {
                    packages.push(bytes);
                    found = true;
                    break;
                }
                // No connection queue of this suite, or an empty one: try the next suite.
                Err(KeyQueueError::NoMatchingQueue | KeyQueueError::Exhausted) => {}
                // Past a fresh-assignment cap: another suite may still have a final key.
                Err(error @ KeyQueueError::Withheld { .. }) => withheld = Some(error),
                Err(error) => return Err(error.into()),
            }
        }
        if let (false, Some(error)) = (found, withheld) {
            return Err(error.into());
        }
    }
    Ok(packages)
}

/// `POST /connection_key_packages` from a peer: ours with the receiver
/// (`ds_select_connection_key_packages`), or the draft's bare request, which names none and so
/// takes fresh packages each time.
pub async fn for_peer(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    match decode_ds_request(request)? {
        DSRequestBody::SelectConnectionKeyPackages(asked, receiver) => {
            let receiver =
                crate::api::federation::group_key_packages::peer_receiver(peer, &receiver)?;
            answer_peer(state, peer, asked, &receiver).await
        }
        DSRequestBody::ConnectionKeyPackages(asked) => {
            answer_peer(
                state,
                peer,
                asked,
                &crate::api::federation::group_key_packages::fresh_receiver(peer),
            )
            .await
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
    let user = asked.user_identifier;
    let app = Uuid::from_bytes(user.application);
    let named = format!("{}@{}", user.account, user.domain);
    let federates = state
        .applications
        .get(&app)
        .is_some_and(|application| application.federates());
    if !user.domain.eq_ignore_ascii_case(&state.config.domain) || !federates {
        return Err(GatewayError::NotOurClient(named));
    }
    let scope = crate::net::auth::peer_scope(peer);
    let packages = local_connection_key_packages(state, &scope, app, &user.account, receiver)
        .await
        .map_err(|error| match error {
            GatewayError::Registry(RegistryError::UnknownClient) => {
                GatewayError::NotOurClient(named)
            }
            other => other,
        })?;
    let bare = packages
        .iter()
        .map(|message| {
            bare_key_package(message)
                .and_then(|bytes| KeyPackage::from_bytes(bytes.to_vec()).ok())
                .ok_or_else(|| {
                    GatewayError::Internal("a stored key package does not decode".into())
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    ds_response(DSResponseBody::ConnectionKeyPackages(bare))
}

/// `POST /apps/{appId}/connection-key-packages`.
pub async fn for_application(state: &State, request: &Request, app: Uuid) -> Reply {
    authorize(state, request, app)?;
    let asked: RetrieveConnectionKeyPackagesRequest =
        decode_body(request, |body: &RetrieveConnectionKeyPackagesRequest| {
            body.version
        })?;
    let receiver = &asked.receiver_client_id;
    if receiver.is_empty() || receiver.len() > MAX_RECEIVER_BYTES {
        return Err(GatewayError::InvalidReceiver(format!(
            "must be 1 to {MAX_RECEIVER_BYTES} bytes"
        )));
    }
    let packages = match asked
        .domain
        .as_deref()
        .filter(|domain| !state.config.serves(domain))
    {
        Some(domain) => {
            check_peer(state, app, domain)?;
            connection_key_packages_from_peer(state, app, domain, &asked.account, receiver).await?
        }
        None => {
            let scope = crate::api::caller_scope(request);
            local_connection_key_packages(state, &scope, app, &asked.account, receiver).await?
        }
    };
    encoded(&ConnectionKeyPackagesResponse {
        version: WIRE_VERSION,
        key_packages: packages.into_iter().map(VLBytes::new).collect(),
    })
}
