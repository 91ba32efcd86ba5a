//! Key package retrieval and client discovery across domains (architecture draft, "Key
//! Package Retrieval" and "Client Discovery": a `domain` of another gateway is passed on to
//! it and its answer passed back; "Key Package Validation": a key package received from a
//! peer must name that peer's domain).
//!
//! The request side builds the `DSRequest` a peer's `/group_key_packages` or
//! `/discover_clients` takes; the serving side answers it from this gateway's registry and
//! key queues, with the receiver named as `handle@domain` so a queue's assignment to a
//! receiver holds across domains.

use mimi_wire::ds::{
    ClientId, ClientRef, DS_PROTOCOL_VERSION, DSAuthData, DSRequest, DSRequestBody, DSResponseBody,
    DiscoverClientsRequest, KeyPackageSelector, KeyPackagesRequest,
};
use mimi_wire::registry::ClientRecord;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::mls::key_package::{self, split_foreign};
use crate::state::State;
use crate::store::KeyQueueAttributes;

/// A peer domain this gateway may talk to: any, unless an allow-list is configured.
pub fn check_peer(state: &State, domain: &str) -> Result<(), GatewayError> {
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
    check_peer(state, domain)?;
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
    let application = state
        .applications
        .get(&app)
        .ok_or(GatewayError::UnknownApplication)?;
    let rules = crate::handlers::member_rules(state, application);
    let name =
        key_package::foreign_member(&bytes, &rules).map_err(|error| GatewayError::KeyPackage {
            index: Some(0),
            error,
        })?;
    match split_foreign(&name) {
        Some((_, named)) if named.eq_ignore_ascii_case(domain) => {
            Ok((bytes, selected.is_final_key.0))
        }
        other => Err(GatewayError::PeerKeyPackageDomain {
            peer: domain.to_owned(),
            found: other.map_or_else(|| state.config.domain.clone(), |(_, d)| d.to_owned()),
        }),
    }
}

/// Client discovery by tag at `domain`'s gateway.
pub async fn discover_at_peer(
    state: &State,
    app: Uuid,
    domain: &str,
    tag: &str,
) -> Result<Vec<ClientRecord>, GatewayError> {
    check_peer(state, domain)?;
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
