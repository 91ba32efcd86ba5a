//! Key queues (architecture draft, "Key Queue Creation", "Key Queue Update", "Key Pool
//! Deletion", "Key Package Retrieval"): queues per (client, version, suite, label), their
//! packages validated before any is stored, and retrieval, here under the caps on fresh
//! assignments or through the gateway of another domain.

use std::sync::Arc;

use mimi_wire::codec::WireBool;
use mimi_wire::ds::{ClientId, KeyPackage, MlsMessage, SelectedKeyPackage};
use mimi_wire::key_queues::{CONNECTION_APP_LABEL, MAX_LABEL_BYTES, MAX_RECEIVER_BYTES};
use uuid::Uuid;

use crate::config::Config;
use crate::error::GatewayError;
use crate::federation::client_id_text;
use crate::metrics::Metrics;
use crate::mls::key_package::{self, MLS_10, QueueRules, SUPPORTED_CIPHER_SUITES};
use crate::rate_limits::CallerLimits;
use crate::service::applications::{Application, Applications};
use crate::service::registry::Registry;
use crate::service::remote::{Remote, bare_key_package, fresh_receiver, peer_receiver};
use crate::store::{
    FreshAssignment, KeyQueueError, KeyQueueUpdate, RegistryError, SharedStore, StoredKeyPackage,
};
pub(crate) use crate::store::{KeyQueueAttributes, RequestRecord, RetrievedKeyPackage};

/// An application label: at most 255 bytes, no control characters (empty is the default).
pub(crate) fn check_label(label: &str) -> Result<(), GatewayError> {
    if label.len() > MAX_LABEL_BYTES {
        return Err(GatewayError::InvalidLabel(format!(
            "longer than {MAX_LABEL_BYTES} bytes"
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(GatewayError::InvalidLabel(
            "contains a control character".into(),
        ));
    }
    Ok(())
}

/// A receiver's name as a retrieval gives it: 1 to `MAX_RECEIVER_BYTES` bytes.
pub(crate) fn check_receiver(receiver: &str) -> Result<(), GatewayError> {
    if receiver.is_empty() || receiver.len() > MAX_RECEIVER_BYTES {
        return Err(GatewayError::InvalidReceiver(format!(
            "must be 1 to {MAX_RECEIVER_BYTES} bytes"
        )));
    }
    Ok(())
}

/// What an update of a queue carries, still as bytes.
pub struct QueueUpload<'a> {
    pub reset: bool,
    pub key_packages: Vec<&'a [u8]>,
    pub app_label: Option<String>,
    pub final_key: Option<&'a [u8]>,
}

/// The key queues of this gateway's clients.
#[derive(Clone)]
pub struct KeyQueues {
    pub(crate) config: Arc<Config>,
    pub(crate) store: SharedStore,
    pub(crate) caller_limits: Arc<CallerLimits>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) remote: Remote,
    pub(crate) applications: Arc<Applications>,
    pub(crate) registry: Registry,
}

impl KeyQueues {
    /// A new queue of `client`: at most one per (version, suite, label).
    pub async fn create(
        &self,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
    ) -> Result<Uuid, GatewayError> {
        if attributes.protocol_version != MLS_10 {
            return Err(GatewayError::UnsupportedProtocolVersion(
                attributes.protocol_version,
            ));
        }
        if !SUPPORTED_CIPHER_SUITES.contains(&attributes.cipher_suite) {
            return Err(GatewayError::UnsupportedCipherSuite(
                attributes.cipher_suite,
            ));
        }
        check_label(&attributes.app_label)?;
        if self.store.client(app, client).await?.is_none() {
            return Err(GatewayError::Registry(RegistryError::UnknownClient));
        }
        let queue = Uuid::new_v4();
        self.store
            .create_key_queue(app, client, queue, attributes)
            .await?;
        Ok(queue)
    }

    /// Every package validated first (nothing changes if any is refused, and the error names
    /// the first bad one), then reset, insert, relabel and final key in one atomic step.
    /// Answers the number of packages in the pool.
    pub async fn update(
        &self,
        application: &Application,
        client: Uuid,
        queue: Uuid,
        upload: QueueUpload<'_>,
    ) -> Result<usize, GatewayError> {
        let app = application.id;
        if let Some(label) = &upload.app_label {
            check_label(label)?;
        }
        let owner = self
            .store
            .client(app, client)
            .await?
            .ok_or(RegistryError::UnknownClient)?;
        let attributes = self
            .store
            .key_queue(app, client, queue)
            .await?
            .ok_or(KeyQueueError::UnknownQueue)?;
        let rules = |final_key| QueueRules {
            protocol_version: attributes.protocol_version,
            cipher_suite: attributes.cipher_suite,
            max_lifetime_secs: self.config.key_packages.max_lifetime_secs,
            identity: application.identity.as_ref(),
            owner_handle: &owner.handle,
            domain: &self.config.domain,
            final_key,
        };
        let ordinary = rules(false);
        let mut packages = Vec::with_capacity(upload.key_packages.len());
        for (index, bytes) in upload.key_packages.iter().enumerate() {
            let valid = key_package::validate(bytes, &ordinary).map_err(|error| {
                GatewayError::KeyPackage {
                    index: Some(index),
                    error,
                }
            })?;
            packages.push(StoredKeyPackage {
                reference: valid.reference,
                not_after: valid.not_after,
                bytes: valid.bytes,
            });
        }
        let final_key = match upload.final_key {
            Some(bytes) => {
                let valid = key_package::validate(bytes, &rules(true))
                    .map_err(|error| GatewayError::KeyPackage { index: None, error })?;
                Some(StoredKeyPackage {
                    reference: valid.reference,
                    not_after: valid.not_after,
                    bytes: valid.bytes,
                })
            }
            None => None,
        };
        let update = KeyQueueUpdate {
            reset: upload.reset,
            packages,
            app_label: upload.app_label,
            final_key,
        };
        Ok(self
            .store
            .update_key_queue(
                app,
                client,
                queue,
                &update,
                crate::keys::unix_now(),
                self.config.key_packages.max_per_queue,
            )
            .await?)
    }

    /// The queue and its packages.
    pub async fn delete(&self, app: Uuid, client: Uuid, queue: Uuid) -> Result<(), GatewayError> {
        if !self.store.delete_key_queue(app, client, queue).await? {
            return Err(GatewayError::KeyQueue(KeyQueueError::UnknownQueue));
        }
        Ok(())
    }

    /// The draft's retrieval of a key package of `client` for `receiver`, by the caller
    /// `scope`: from this gateway's queue, or from the gateway of `domain` when it is
    /// another's (its answer checked to name that domain). Answers the package and whether it
    /// is the final key. With `record` (the request's replay record and rate count, left to
    /// this step by the pipeline) the retrieval records it first in its own store step, or,
    /// from another gateway, before the request goes out.
    #[allow(clippy::too_many_arguments)]
    pub async fn retrieve(
        &self,
        scope: &str,
        app: Uuid,
        client: Uuid,
        domain: Option<&str>,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        record: Option<&RequestRecord>,
    ) -> Result<(Vec<u8>, bool), GatewayError> {
        check_receiver(receiver)?;
        check_label(&attributes.app_label)?;
        if let Some(domain) = domain.filter(|domain| !self.config.serves(domain)) {
            if let Some(record) = record {
                record.record_apart(&*self.store).await?;
            }
            return self
                .remote
                .retrieve_from_peer(app, domain, client, attributes, receiver)
                .await;
        }
        let now = crate::keys::unix_now();
        Ok(
            match self
                .retrieve_capped(scope, app, client, attributes, receiver, now, record)
                .await?
            {
                RetrievedKeyPackage::Assigned(bytes)
                | RetrievedKeyPackage::AssignedBefore(bytes) => (bytes, false),
                RetrievedKeyPackage::FinalKey(bytes) => (bytes, true),
            },
        )
    }

    /// The draft's retrieval for `receiver` on behalf of the caller `scope` (`app:<id>`,
    /// `peer:<domain>`), under the caps on fresh assignments
    /// (`rate_limits.fresh_key_packages_per_receiver` and `_per_caller`): past either, only the
    /// package assigned to the receiver before and final keys are served, else `Withheld` with
    /// the seconds until the window ends. With `record`, as in [`Self::retrieve`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn retrieve_capped(
        &self,
        scope: &str,
        app: Uuid,
        client: Uuid,
        attributes: &KeyQueueAttributes,
        receiver: &str,
        now: u64,
        record: Option<&RequestRecord>,
    ) -> Result<RetrievedKeyPackage, KeyQueueError> {
        let limits = &self.caller_limits;
        let (counters, window_secs) = limits.fresh_counter_names(receiver);
        let names: Vec<&str> = counters.iter().map(|(name, _)| name.as_str()).collect();
        let fresh = FreshAssignment {
            may_assign: limits.may_assign_fresh(scope, receiver, now),
            scope,
            counters: &names,
            window_secs,
        };
        let retrieved = match record {
            Some(record) => {
                self.store
                    .retrieve_key_package_recorded(
                        app, client, attributes, receiver, now, fresh, record,
                    )
                    .await
            }
            None => {
                self.store
                    .retrieve_key_package(app, client, attributes, receiver, now, fresh)
                    .await
            }
        };
        match retrieved {
            Ok(retrieval) => {
                limits.note_fresh_counts(scope, &counters, &retrieval.fresh_counts, now);
                Ok(retrieval.package)
            }
            Err(KeyQueueError::Withheld { .. }) => {
                self.metrics
                    .count_rate_limited(scope, "fresh_key_packages", "fresh_withheld");
                Err(KeyQueueError::Withheld {
                    retry_after_secs: limits.fresh_retry_after(now),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// The clients (handle, id) of `account` in `app`.
    async fn account_clients(
        &self,
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
            Ok(self
                .store
                .clients_with_handle_prefix(app, &format!("{account}/"))
                .await?)
        } else {
            Ok(self
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
        &self,
        scope: &str,
        app: Uuid,
        account: &str,
        receiver: &str,
    ) -> Result<Vec<Vec<u8>>, GatewayError> {
        let application = self
            .applications
            .get(&app)
            .ok_or(GatewayError::UnknownApplication)?;
        let clients = self.account_clients(app, application, account).await?;
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
                match self
                    .retrieve_capped(scope, app, client, &attributes, receiver, now, None)
                    .await
                {
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

    /// A peer's `ConnectionKeyPackagesRequest` (at `/connection_key_packages` or
    /// `/group_operation`) for `receiver`, answered as `ConnectionKeyPackages`.
    pub async fn connection_key_packages_for_peer(
        &self,
        peer: &str,
        asked: mimi_wire::ds::ConnectionKeyPackagesRequest,
        receiver: &str,
    ) -> Result<Vec<KeyPackage>, GatewayError> {
        let user = asked.user_identifier;
        let app = Uuid::from_bytes(user.application);
        let named = format!("{}@{}", user.account, user.domain);
        let federates = self
            .applications
            .get(&app)
            .is_some_and(|application| application.federates());
        if !user.domain.eq_ignore_ascii_case(&self.config.domain) || !federates {
            return Err(GatewayError::NotOurClient(named));
        }
        let scope = crate::rate_limits::peer_scope(peer);
        let packages = self
            .local_connection_key_packages(&scope, app, &user.account, receiver)
            .await
            .map_err(|error| match error {
                GatewayError::Registry(RegistryError::UnknownClient) => {
                    GatewayError::NotOurClient(named)
                }
                other => other,
            })?;
        packages
            .iter()
            .map(|message| {
                bare_key_package(message)
                    .and_then(|bytes| KeyPackage::from_bytes(bytes.to_vec()).ok())
                    .ok_or_else(|| {
                        GatewayError::Internal("a stored key package does not decode".into())
                    })
            })
            .collect::<Result<Vec<_>, _>>()
    }

    /// One connection key package of each client of `account` for `receiver`: here, or through
    /// the gateway of `domain` when it is another's.
    pub async fn connection_key_packages(
        &self,
        scope: &str,
        app: Uuid,
        domain: Option<&str>,
        account: &str,
        receiver: &str,
    ) -> Result<Vec<Vec<u8>>, GatewayError> {
        check_receiver(receiver)?;
        match domain.filter(|domain| !self.config.serves(domain)) {
            Some(domain) => {
                self.remote.check_peer(app, domain)?;
                self.remote
                    .connection_key_packages_from_peer(app, domain, account, receiver)
                    .await
            }
            None => {
                self.local_connection_key_packages(scope, app, account, receiver)
                    .await
            }
        }
    }

    /// A peer's `SelectKeyPackagesRequest`: of each client named, a package of the queue the
    /// selector names, for the peer's receiver.
    pub async fn selected_for_peer(
        &self,
        peer: &str,
        asked: mimi_wire::ds::KeyPackagesRequest,
        selector: mimi_wire::ds::KeyPackageSelector,
    ) -> Result<Vec<SelectedKeyPackage>, GatewayError> {
        check_label(&selector.app_label)?;
        let receiver = peer_receiver(peer, &selector.receiver)?;
        let attributes = KeyQueueAttributes {
            protocol_version: selector.protocol_version,
            cipher_suite: selector.cipher_suite,
            app_label: selector.app_label,
        };
        let now = crate::keys::unix_now();
        let scope = crate::rate_limits::peer_scope(peer);
        let mut selected = Vec::with_capacity(asked.client_identifiers.len());
        for client in &asked.client_identifiers {
            let (app, id) = self.local_client(client).await?;
            let retrieved = self
                .retrieve_capped(&scope, app, id, &attributes, &receiver, now, None)
                .await?;
            let (bytes, is_final) = match retrieved {
                RetrievedKeyPackage::Assigned(bytes)
                | RetrievedKeyPackage::AssignedBefore(bytes) => (bytes, false),
                RetrievedKeyPackage::FinalKey(bytes) => (bytes, true),
            };
            selected.push(SelectedKeyPackage {
                key_package: MlsMessage::from_bytes(bytes).map_err(|_| {
                    GatewayError::Internal("a stored key package does not decode".into())
                })?,
                is_final_key: WireBool(is_final),
            });
        }
        Ok(selected)
    }

    /// The application and registry id of a client of this gateway a peer names: of this domain,
    /// of a hosted application, registered.
    async fn local_client(&self, client: &ClientId) -> Result<(Uuid, Uuid), GatewayError> {
        let app = Uuid::from_bytes(client.application);
        let not_ours = || GatewayError::NotOurClient(client_id_text(client));
        if !client.domain.eq_ignore_ascii_case(&self.config.domain) {
            return Err(not_ours());
        }
        if !self.applications.contains(&app) {
            return Err(GatewayError::UnknownApplication);
        }
        let handle = self
            .registry
            .local_handle(app, client)
            .await?
            .ok_or_else(not_ours)?;
        let id = self
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
    pub async fn draft_key_packages_for_peer(
        &self,
        peer: &str,
        asked: mimi_wire::ds::KeyPackagesRequest,
    ) -> Result<Vec<KeyPackage>, GatewayError> {
        let receiver = fresh_receiver(peer);
        let scope = crate::rate_limits::peer_scope(peer);
        let now = crate::keys::unix_now();
        let mut packages = Vec::with_capacity(asked.client_identifiers.len());
        for client in &asked.client_identifiers {
            let (app, id) = self.local_client(client).await?;
            let mut found = None;
            let mut last = KeyQueueError::NoMatchingQueue;
            for cipher_suite in SUPPORTED_CIPHER_SUITES {
                let attributes = KeyQueueAttributes {
                    protocol_version: MLS_10,
                    cipher_suite,
                    app_label: String::new(),
                };
                match self
                    .retrieve_capped(&scope, app, id, &attributes, &receiver, now, None)
                    .await
                {
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
                .ok_or_else(|| {
                    GatewayError::Internal("a stored key package does not decode".into())
                })?;
            packages.push(bare);
        }
        Ok(packages)
    }
}
