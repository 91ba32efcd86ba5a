//! Key package retrieval and client discovery across domains (architecture draft, "Key
//! Package Retrieval" and "Client Discovery": a `domain` of another gateway is passed on to
//! it and its answer passed back; "Key Package Validation": a key package received from a
//! peer must name that peer's domain).
//!
//! The request side builds the `DSRequest` a peer's `/group_key_packages`,
//! `/connection_key_packages` or `/discover_clients` takes; the serving side answers it from this gateway's registry and
//! key queues, with the receiver named as `handle@domain` so a queue's assignment to a
//! receiver holds across domains.

use mimi_wire::ds::{
    ClientId, ClientRef, ConnectionKeyPackagesRequest, DS_PROTOCOL_VERSION, DSAuthData, DSRequest,
    DSRequestBody, DSResponseBody, DiscoverClientsRequest, KeyPackageSelector, KeyPackagesRequest,
    UserId,
};
use mimi_wire::registry::ClientRecord;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::mls::key_package::{self, split_foreign};
use crate::state::State;
use crate::store::KeyQueueAttributes;

/// A peer domain this gateway may talk to: any, unless an allow-list is configured.
pub fn check_peer(state: &State, app: Uuid, domain: &str) -> Result<(), GatewayError> {
    // An application whose identity provider names no domains cannot tell a client of
    // another gateway from one of its own: it does not federate, and says so.
    let federates = state
        .applications
        .get(&app)
        .is_some_and(|application| application.federates());
    if !federates {
        return Err(GatewayError::ApplicationDoesNotFederate);
    }
    let allowed = &state.config.federation.allowed_peers;
    if allowed.is_empty() || allowed.iter().any(|peer| peer.eq_ignore_ascii_case(domain)) {
        Ok(())
    } else {
        Err(GatewayError::UnknownDomain(domain.to_owned()))
    }
}

/// Retrieves a key package of `client` (a client id at `domain`) through that domain's
/// gateway, for `receiver` of this gateway. Answers the MLSMessage and whether it is a final
/// key, after checking that it is a valid key package naming a client of `domain`.
pub async fn retrieve_from_peer(
    state: &State,
    app: Uuid,
    domain: &str,
    client: Uuid,
    attributes: &KeyQueueAttributes,
    receiver: &str,
) -> Result<(Vec<u8>, bool), GatewayError> {
    check_peer(state, app, domain)?;
    let request = DSRequest {
        version: DS_PROTOCOL_VERSION,
        body: DSRequestBody::SelectKeyPackages(
            KeyPackagesRequest {
                client_identifiers: vec![ClientId {
                    application: *app.as_bytes(),
                    domain: domain.to_owned(),
                    client: ClientRef::ClientId(*client.as_bytes()),
                }],
            },
            KeyPackageSelector {
                protocol_version: attributes.protocol_version,
                cipher_suite: attributes.cipher_suite,
                app_label: attributes.app_label.clone(),
                receiver: ClientId {
                    application: *app.as_bytes(),
                    domain: state.config.domain.clone(),
                    client: ClientRef::Handle(receiver.to_owned()),
                },
            },
        ),
        auth: DSAuthData::Anonymous,
    };
    let answer = super::call(state, domain, super::GROUP_KEY_PACKAGES_PATH, &request).await?;
    let DSResponseBody::SelectedKeyPackages(mut selected) = answer.body else {
        return Err(GatewayError::PeerMalformedAnswer(domain.to_owned()));
    };
    if selected.len() != 1 {
        return Err(GatewayError::PeerMalformedAnswer(domain.to_owned()));
    }
    let selected = selected.remove(0);
    let bytes = selected.key_package.into_bytes();
    check_peer_key_package(state, app, domain, &bytes, 0)?;
    Ok((bytes, selected.is_final_key.0))
}

/// A key package `peer` handed out (an MLSMessage; `index` in its answer), as the
/// architecture draft's "Key Package Validation" says: valid under the application's rules,
/// its credential naming a client of `peer`.
fn check_peer_key_package(
    state: &State,
    app: Uuid,
    peer: &str,
    bytes: &[u8],
    index: usize,
) -> Result<String, GatewayError> {
    let application = state
        .applications
        .get(&app)
        .ok_or(GatewayError::UnknownApplication)?;
    let rules = application.member_rules(&state.config);
    let name =
        key_package::foreign_member(bytes, &rules).map_err(|error| GatewayError::KeyPackage {
            index: Some(index),
            error,
        })?;
    match split_foreign(&name) {
        Some((handle, named)) if named.eq_ignore_ascii_case(peer) => Ok(handle.to_owned()),
        other => Err(GatewayError::PeerKeyPackageDomain {
            peer: peer.to_owned(),
            found: other.map_or_else(|| state.config.domain.clone(), |(_, d)| d.to_owned()),
        }),
    }
}

/// The connection key packages of `account`'s clients at `domain`'s gateway for `receiver`
/// of this gateway (`POST /connection_key_packages`), each checked as a key package of that
/// peer and of that account; answered as MLSMessages.
pub async fn connection_key_packages_from_peer(
    state: &State,
    app: Uuid,
    domain: &str,
    account: &str,
    receiver: &str,
) -> Result<Vec<Vec<u8>>, GatewayError> {
    check_peer(state, app, domain)?;
    let request = DSRequest {
        version: DS_PROTOCOL_VERSION,
        body: DSRequestBody::SelectConnectionKeyPackages(
            ConnectionKeyPackagesRequest {
                user_identifier: UserId {
                    application: *app.as_bytes(),
                    domain: domain.to_owned(),
                    account: account.to_owned(),
                },
            },
            ClientId {
                application: *app.as_bytes(),
                domain: state.config.domain.clone(),
                client: ClientRef::Handle(receiver.to_owned()),
            },
        ),
        auth: DSAuthData::Anonymous,
    };
    let answer = super::call(state, domain, super::CONNECTION_KEY_PACKAGES_PATH, &request).await?;
    let DSResponseBody::ConnectionKeyPackages(packages) = answer.body else {
        return Err(GatewayError::PeerMalformedAnswer(domain.to_owned()));
    };
    let mut messages: Vec<Vec<u8>> = Vec::with_capacity(packages.len());
    for (index, package) in packages.into_iter().enumerate() {
        let message = key_package_message(package.as_bytes());
        // One package per client: the same one twice is no answer to this request.
        if messages.contains(&message) {
            return Err(GatewayError::PeerMalformedAnswer(domain.to_owned()));
        }
        let handle = check_peer_key_package(state, app, domain, &message, index)?;
        // A client of that account: the account itself, or `<account>/<device>`.
        let of_account = handle == account
            || handle
                .strip_prefix(account)
                .is_some_and(|rest| rest.starts_with('/'));
        if !of_account {
            return Err(GatewayError::PeerWrongAccount {
                peer: domain.to_owned(),
                index,
            });
        }
        messages.push(message);
    }
    Ok(messages)
}

/// RFC 9420 `MLSMessage` header of a KeyPackage: version mls10 (1), wire format
/// mls_key_package (5).
const KEY_PACKAGE_MESSAGE_HEADER: [u8; 4] = [0, 1, 0, 5];

/// A bare KeyPackage (as the delivery-service structs carry it) as an MLSMessage.
pub fn key_package_message(key_package: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(4 + key_package.len());
    message.extend_from_slice(&KEY_PACKAGE_MESSAGE_HEADER);
    message.extend_from_slice(key_package);
    message
}

/// The bare KeyPackage of an MLSMessage holding one, `None` for any other message.
pub fn bare_key_package(message: &[u8]) -> Option<&[u8]> {
    message.strip_prefix(&KEY_PACKAGE_MESSAGE_HEADER)
}

/// Client discovery by tag at `domain`'s gateway.
pub async fn discover_at_peer(
    state: &State,
    app: Uuid,
    domain: &str,
    tag: &str,
) -> Result<Vec<ClientRecord>, GatewayError> {
    check_peer(state, app, domain)?;
    let request = DSRequest {
        version: DS_PROTOCOL_VERSION,
        body: DSRequestBody::DiscoverClients(DiscoverClientsRequest {
            application: *app.as_bytes(),
            tag: tag.to_owned(),
        }),
        auth: DSAuthData::Anonymous,
    };
    let answer = super::call(state, domain, super::DISCOVER_CLIENTS_PATH, &request).await?;
    match answer.body {
        DSResponseBody::Clients(clients) => Ok(clients),
        _ => Err(GatewayError::PeerMalformedAnswer(domain.to_owned())),
    }
}
