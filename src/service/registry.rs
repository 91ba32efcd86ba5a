//! The client registry (architecture draft, "Identity Registration", "Client Discovery"):
//! clients, their handles and tags, looked up for the application API and for peers.

use std::collections::BTreeSet;
use std::sync::Arc;

use mimi_wire::ds::{ClientId, ClientRef};
use mimi_wire::registry::{ClientRecord, MAX_TAGS, check_handle, check_local_handle};
use uuid::Uuid;

use crate::config::Config;
use crate::error::GatewayError;
use crate::service::applications::{Application, Applications};
use crate::service::remote::Remote;
pub(crate) use crate::store::Client;
use crate::store::{ClientChange, RegistryError, SharedStore};

/// The wire's record of a client.
pub(crate) fn client_record(client: &Client) -> ClientRecord {
    ClientRecord {
        client_id: *client.id.as_bytes(),
        client_handle: client.handle.clone(),
        tags: client.tags.iter().cloned().collect(),
    }
}

/// Checks every tag and removes duplicates.
fn tag_set(tags: &[String]) -> Result<BTreeSet<String>, GatewayError> {
    for tag in tags {
        mimi_wire::registry::check_tag(tag).map_err(GatewayError::InvalidTag)?;
    }
    Ok(tags.iter().cloned().collect())
}

/// A handle the application may register: valid, and without `@` when its identity provider
/// has domains (there `handle@domain` names another gateway's client).
pub(crate) fn check_client_handle(
    application: &Application,
    handle: &str,
) -> Result<(), GatewayError> {
    if application.federates() {
        check_local_handle(handle)
    } else {
        check_handle(handle)
    }
    .map_err(GatewayError::InvalidHandle)
}

/// The registry of each application's clients.
#[derive(Clone)]
pub struct Registry {
    pub(crate) config: Arc<Config>,
    pub(crate) store: SharedStore,
    pub(crate) applications: Arc<Applications>,
    pub(crate) remote: Remote,
}

impl Registry {
    /// Registers a client under a fresh UUIDv4; handles are unique among the application's
    /// clients.
    pub async fn register(
        &self,
        application: &Application,
        handle: String,
        tags: &[String],
    ) -> Result<Client, GatewayError> {
        check_client_handle(application, &handle)?;
        let tags = tag_set(tags)?;
        if tags.len() > MAX_TAGS {
            return Err(GatewayError::TooManyTags(MAX_TAGS));
        }
        let client = Client {
            id: Uuid::new_v4(),
            handle,
            tags,
        };
        self.store.register_client(application.id, &client).await?;
        tracing::info!(app = %application.id, client = %client.id, "client registered");
        Ok(client)
    }

    pub async fn read(&self, app: Uuid, client: Uuid) -> Result<Client, GatewayError> {
        Ok(self
            .store
            .client(app, client)
            .await?
            .ok_or(RegistryError::UnknownClient)?)
    }

    /// A new handle and tags added and removed, in one step.
    pub async fn update(
        &self,
        application: &Application,
        client: Uuid,
        handle: Option<String>,
        add: &[String],
        remove: &[String],
    ) -> Result<Client, GatewayError> {
        if let Some(handle) = &handle {
            check_client_handle(application, handle)?;
        }
        let change = ClientChange {
            handle,
            add: tag_set(add)?,
            remove: tag_set(remove)?,
        };
        if let Some(tag) = change.add.intersection(&change.remove).next() {
            return Err(GatewayError::ConflictingTagChange(tag.clone()));
        }
        Ok(self
            .store
            .update_client(application.id, client, &change, MAX_TAGS)
            .await?)
    }

    /// Deletion in two steps, each atomic: first the client's key queues go and the client is
    /// marked retired in its own slot (no key package is handed out or accepted for it after
    /// that), then its registry entry goes. A crash between the two leaves a registered
    /// client without queues; deleting again completes it.
    pub async fn delete(&self, app: Uuid, client: Uuid) -> Result<(), GatewayError> {
        if self.store.client(app, client).await?.is_none() {
            return Err(GatewayError::Registry(RegistryError::UnknownClient));
        }
        self.store.retire_client_key_queues(app, client).await?;
        if !self.store.delete_client(app, client).await? {
            return Err(GatewayError::Registry(RegistryError::UnknownClient));
        }
        tracing::info!(%app, %client, "client deleted");
        Ok(())
    }

    /// The clients of `app` with `tag`: this gateway's, or those of the gateway of
    /// `domain` when it is another's.
    pub async fn discover(
        &self,
        app: Uuid,
        domain: Option<&str>,
        tag: &str,
    ) -> Result<Vec<ClientRecord>, GatewayError> {
        mimi_wire::registry::check_tag(tag).map_err(GatewayError::InvalidTag)?;
        match domain {
            Some(domain) if !self.config.serves(domain) => {
                self.remote.discover_at_peer(app, domain, tag).await
            }
            _ => self.with_tag(app, tag).await,
        }
    }

    /// A peer's discovery by tag among this gateway's clients of a hosted application.
    pub async fn for_peer(&self, app: Uuid, tag: &str) -> Result<Vec<ClientRecord>, GatewayError> {
        if !self.applications.contains(&app) {
            return Err(GatewayError::UnknownApplication);
        }
        self.with_tag(app, tag).await
    }

    /// This gateway's clients of `app` with `tag`.
    pub async fn with_tag(&self, app: Uuid, tag: &str) -> Result<Vec<ClientRecord>, GatewayError> {
        mimi_wire::registry::check_tag(tag).map_err(GatewayError::InvalidTag)?;
        let clients = self.store.clients_with_tag(app, tag).await?;
        Ok(clients.iter().map(client_record).collect())
    }

    /// A client of `app` by handle.
    pub async fn by_handle(&self, app: Uuid, handle: &str) -> Result<Option<Uuid>, GatewayError> {
        Ok(self.store.client_by_handle(app, handle).await?)
    }

    /// The handle of the client of this gateway a ClientID names (by handle or by id), if it is
    /// registered in `app`.
    pub async fn local_handle(
        &self,
        app: Uuid,
        client: &ClientId,
    ) -> Result<Option<String>, GatewayError> {
        Ok(match &client.client {
            ClientRef::Handle(handle) => self
                .store
                .client_by_handle(app, handle)
                .await?
                .map(|_| handle.clone()),
            ClientRef::ClientId(id) => self
                .store
                .client(app, Uuid::from_bytes(*id))
                .await?
                .map(|client| client.handle),
        })
    }
}
