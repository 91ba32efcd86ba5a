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
use std::sync::Arc;

use crate::config::Config;
use crate::federation::{Peers, client_id_text};
use crate::service::applications::Applications;
use crate::store::KeyQueueAttributes;

/// Key packages and client discovery at other gateways, checked as the draft asks.
#[derive(Clone)]
pub struct Remote {
    pub(crate) config: Arc<Config>,
    pub(crate) applications: Arc<Applications>,
    pub(crate) peers: Arc<Peers>,
}

impl Remote {
    /// A peer domain this gateway may talk to: any, unless an allow-list is configured.
    pub fn check_peer(&self, app: Uuid, domain: &str) -> Result<(), GatewayError> {
        // An application whose identity provider names no domains cannot tell a client of
        // another gateway from one of its own: it does not federate, and says so.
        let federates = self
            .applications
            .get(&app)
            .is_some_and(|application| application.federates());
        if !federates {
            return Err(GatewayError::ApplicationDoesNotFederate);
        }
        let allowed = &self.config.federation.allowed_peers;
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
        &self,
        app: Uuid,
        domain: &str,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
    ) -> Result<(Vec<u8>, bool), GatewayError> {
        self.check_peer(app, domain)?;
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
                        domain: self.config.domain.clone(),
                        client: ClientRef::Handle(receiver.to_owned()),
                    },
                },
            ),
            auth: DSAuthData::Anonymous,
        };
        let answer = self
            .peers
            .call(domain, crate::federation::GROUP_KEY_PACKAGES_PATH, &request)
            .await?;
        let DSResponseBody::SelectedKeyPackages(mut selected) = answer.body else {
            return Err(GatewayError::PeerMalformedAnswer(domain.to_owned()));
        };
        if selected.len() != 1 {
            return Err(GatewayError::PeerMalformedAnswer(domain.to_owned()));
        }
        let selected = selected.remove(0);
        let bytes = selected.key_package.into_bytes();
        self.check_peer_key_package(app, domain, &bytes, 0)?;
        Ok((bytes, selected.is_final_key.0))
    }

    /// A key package `peer` handed out (an MLSMessage; `index` in its answer), as the
    /// architecture draft's "Key Package Validation" says: valid under the application's rules,
    /// its credential naming a client of `peer`.
    fn check_peer_key_package(
        &self,
        app: Uuid,
        peer: &str,
        bytes: &[u8],
        index: usize,
    ) -> Result<String, GatewayError> {
        let application = self
            .applications
            .get(&app)
            .ok_or(GatewayError::UnknownApplication)?;
        let rules = application.member_rules(&self.config);
        let name = key_package::foreign_member(bytes, &rules).map_err(|error| {
            GatewayError::KeyPackage {
                index: Some(index),
                error,
            }
        })?;
        match split_foreign(&name) {
            Some((handle, named)) if named.eq_ignore_ascii_case(peer) => Ok(handle.to_owned()),
            other => Err(GatewayError::PeerKeyPackageDomain {
                peer: peer.to_owned(),
                found: other.map_or_else(|| self.config.domain.clone(), |(_, d)| d.to_owned()),
            }),
        }
    }

    /// The connection key packages of `account`'s clients at `domain`'s gateway for `receiver`
    /// of this gateway (`POST /connection_key_packages`), each checked as a key package of that
    /// peer and of that account; answered as MLSMessages.
    pub async fn connection_key_packages_from_peer(
        &self,
        app: Uuid,
        domain: &str,
        account: &str,
        receiver: &str,
    ) -> Result<Vec<Vec<u8>>, GatewayError> {
        self.check_peer(app, domain)?;
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
                    domain: self.config.domain.clone(),
                    client: ClientRef::Handle(receiver.to_owned()),
                },
            ),
            auth: DSAuthData::Anonymous,
        };
        let answer = self
            .peers
            .call(
                domain,
                crate::federation::CONNECTION_KEY_PACKAGES_PATH,
                &request,
            )
            .await?;
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
            let handle = self.check_peer_key_package(app, domain, &message, index)?;
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

impl Remote {
    /// Client discovery by tag at `domain`'s gateway.
    pub async fn discover_at_peer(
        &self,
        app: Uuid,
        domain: &str,
        tag: &str,
    ) -> Result<Vec<ClientRecord>, GatewayError> {
        self.check_peer(app, domain)?;
        let request = DSRequest {
            version: DS_PROTOCOL_VERSION,
            body: DSRequestBody::DiscoverClients(DiscoverClientsRequest {
                application: *app.as_bytes(),
                tag: tag.to_owned(),
            }),
            auth: DSAuthData::Anonymous,
        };
        let answer = self
            .peers
            .call(domain, crate::federation::DISCOVER_CLIENTS_PATH, &request)
            .await?;
        match answer.body {
            DSResponseBody::Clients(clients) => Ok(clients),
            _ => Err(GatewayError::PeerMalformedAnswer(domain.to_owned())),
        }
    }
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
