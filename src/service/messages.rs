//! What goes into clients' message queues (issue 7, "Queues and delivery that lose nothing";
//! architecture draft, "Group Messaging"; delivery-service draft, "Send an application
//! message to a group"): application messages the group's hub routes to every member (this
//! gateway's members directly, other domains' through `/deliver_message` to their gateway),
//! and connection requests. Handshake messages are not queued: applications read them as
//! control messages.
//!
//! Each entry's id is the SHA-256 of its message, so a redelivered fan-out is dropped while
//! the first copy is still queued or was acknowledged within `store::DEDUP_WINDOW_SECS`.

use mimi_wire::ds::{
    ClientId, ClientRef, MlsMessage, QueueingServiceRequest, QueueingServiceResponse,
};
use mimi_wire::messages::{MAX_FETCH, QueuedMessage, QueuedMessageKind};
use sha2::{Digest, Sha256};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::mls::group::{GroupError, application_message};
use crate::mls::key_package::{MemberRules, is_of_domain, split_foreign};
use std::sync::Arc;

use crate::config::Config;
use crate::federation::delivery::Delivery;
use crate::federation::{CONNECTION_REQUEST_PATH, Peers, client_id_text};
use crate::service::applications::Application;
use crate::service::applications::Applications;
use crate::service::forward::Forwarder;
use crate::service::group_cache::GroupCache;
use crate::service::registry::{Registry, check_client_handle};
use crate::service::remote::Remote;
use crate::store::SharedStore;
use crate::store::{self, GroupStoreError, RegistryError};

/// Clients' message queues: what is queued, routed from the hub, and delivered from it.
#[derive(Clone)]
pub struct Messages {
    pub(crate) config: Arc<Config>,
    pub(crate) store: SharedStore,
    pub(crate) groups: Arc<GroupCache>,
    pub(crate) applications: Arc<Applications>,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) registry: Registry,
    pub(crate) forwarder: Forwarder,
    pub(crate) remote: Remote,
    pub(crate) peers: Arc<Peers>,
}

impl Messages {
    /// An application message of `application`'s client `sender` (if named) to its group:
    /// routed by the hub here, or forwarded to the hub of a mirrored group. Answers the
    /// message's epoch.
    pub async fn send(
        &self,
        application: &Application,
        group_id: &[u8],
        message: &[u8],
        sender: Option<&str>,
    ) -> Result<u64, GatewayError> {
        let app = application.id;
        let rules = application.member_rules(&self.config);
        // The sender is one of the application's own clients here, never another domain's.
        if let Some(handle) = sender {
            check_client_handle(application, handle)?;
            self.registered(app, handle).await?;
        }
        match self.forwarder.hub_of(app, group_id, &rules).await? {
            Some(hub) => {
                self.forwarder
                    .message(&hub, app, group_id, message, sender)
                    .await
            }
            None => {
                self.route(app, group_id, message, &rules, None, sender)
                    .await
            }
        }
    }

    /// The queue's owner must be a registered client of the application.
    async fn registered(&self, app: Uuid, handle: &str) -> Result<(), GatewayError> {
        match self.registry.by_handle(app, handle).await? {
            Some(_) => Ok(()),
            None => Err(RegistryError::UnknownClient.into()),
        }
    }

    /// Up to `limit` (at most `MAX_FETCH`) entries of `handle`'s queue from `from_sequence`,
    /// and the sequence to fetch from next.
    pub async fn fetch(
        &self,
        app: Uuid,
        handle: &str,
        from_sequence: u64,
        limit: u16,
    ) -> Result<(Vec<QueuedMessage>, u64), GatewayError> {
        self.registered(app, handle).await?;
        let limit = usize::from(limit.clamp(1, MAX_FETCH));
        let entries = self
            .store
            .queued_messages(app, handle, from_sequence, limit)
            .await?;
        let next_sequence = entries
            .last()
            .map_or(from_sequence, |entry| entry.sequence.saturating_add(1));
        Ok((
            entries.into_iter().filter_map(queued).collect(),
            next_sequence,
        ))
    }

    /// Removes `handle`'s entries up to `up_to_sequence`; answers how many went.
    pub async fn acknowledge(
        &self,
        app: Uuid,
        handle: &str,
        up_to_sequence: u64,
    ) -> Result<u64, GatewayError> {
        self.registered(app, handle).await?;
        Ok(self
            .store
            .acknowledge_messages(app, handle, up_to_sequence, crate::keys::unix_now())
            .await?)
    }

    /// A connection request to `handle` at `domain`: queued here, or passed to that domain's
    /// gateway.
    pub async fn send_connection_request(
        &self,
        app: Uuid,
        domain: &str,
        handle: &str,
        message: MlsMessage,
    ) -> Result<(), GatewayError> {
        if self.config.serves(domain) {
            if self.registry.by_handle(app, handle).await?.is_none() {
                return Err(RegistryError::UnknownClient.into());
            }
            return self
                .enqueue(
                    app,
                    &[handle.to_owned()],
                    QueuedMessageKind::ConnectionRequest,
                    &[],
                    message.as_bytes(),
                )
                .await;
        }
        self.remote.check_peer(app, domain)?;
        let recipient = ClientId {
            application: *app.as_bytes(),
            domain: domain.to_owned(),
            client: ClientRef::Handle(handle.to_owned()),
        };
        let queued = QueueingServiceRequest::new(&recipient, message)
            .map_err(|error| GatewayError::Internal(error.to_string()))?;
        let bytes = mimi_wire::encode(&queued)
            .map_err(|error| GatewayError::Internal(error.to_string()))?;
        let answer: QueueingServiceResponse = self
            .peers
            .post(domain, CONNECTION_REQUEST_PATH, bytes)
            .await?;
        if answer != QueueingServiceResponse::Ok {
            return Err(GatewayError::PeerMalformedAnswer(domain.to_owned()));
        }
        Ok(())
    }

    /// A peer's connection request for a client of a federating application here: into the
    /// named client's queue.
    pub async fn receive_connection_request(
        &self,
        peer: &str,
        queued: &QueueingServiceRequest,
    ) -> Result<(), GatewayError> {
        // `client_queue_information` that is no ClientID is a malformed body.
        let recipient = queued.client()?;
        let app = Uuid::from_bytes(recipient.application);
        let named = client_id_text(&recipient);
        // Only clients of applications that federate take requests from peers.
        let federates = self
            .applications
            .get(&app)
            .is_some_and(|application| application.federates());
        if !recipient.domain.eq_ignore_ascii_case(&self.config.domain) || !federates {
            return Err(GatewayError::NotOurClient(named));
        }
        let handle = self
            .registry
            .local_handle(app, &recipient)
            .await?
            .ok_or(GatewayError::NotOurClient(named))?;
        self.enqueue(
            app,
            &[handle],
            QueuedMessageKind::ConnectionRequest,
            &[],
            queued.message.as_bytes(),
        )
        .await?;
        tracing::info!(peer, "connection request queued");
        Ok(())
    }

    /// Queues `message` (of `kind`, for `group_id`) for each of this gateway's `handles`.
    pub async fn enqueue(
        &self,
        app: Uuid,
        handles: &[String],
        kind: QueuedMessageKind,
        group_id: &[u8],
        message: &[u8],
    ) -> Result<(), GatewayError> {
        let (id, entry) = queue_entry(kind, group_id, message)?;
        self.store
            .enqueue_messages(app, handles, &id, &entry, crate::keys::unix_now())
            .await?;
        Ok(())
    }
}

/// A queue entry's id (the SHA-256 of the message) and encoding.
fn queue_entry(
    kind: QueuedMessageKind,
    group_id: &[u8],
    message: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), GatewayError> {
    let entry = mimi_wire::encode(&QueuedMessage {
        sequence: 0,
        kind,
        group_id: VLBytes::new(group_id.to_vec()),
        message: VLBytes::new(message.to_vec()),
    })
    .map_err(|error| GatewayError::Internal(error.to_string()))?;
    Ok((Sha256::digest(message).to_vec(), entry))
}

/// A queued entry as the application reads it, with its sequence number; `None` (logged)
/// for an entry that no longer decodes: the fetch's `next_sequence` still moves past it, so
/// it never blocks the queue and goes with the next acknowledgement past it.
pub fn queued(entry: store::QueuedMessage) -> Option<QueuedMessage> {
    match mimi_wire::decode_exact::<QueuedMessage>(&entry.entry) {
        Ok(mut message) => {
            message.sequence = entry.sequence;
            Some(message)
        }
        Err(error) => {
            tracing::warn!(sequence = entry.sequence, %error, "skipping a queued entry that does not decode");
            None
        }
    }
}

impl Messages {
    /// The hub routes an application message of its group to every member: queued here for its
    /// own members, and queued for each peer with members (delivered in order with the group's
    /// other fan-out). `from_peer` is the follower that forwarded it, which must have members in
    /// the group (the draft: the DS authenticates the request's sender, not the message's).
    /// `sender` is the sending member's name (its handle, `handle@domain` for another gateway's
    /// client), as its application gave it: that queue is skipped. Answers the message's epoch.
    pub async fn route(
        &self,
        app: Uuid,
        group_id: &[u8],
        message: &[u8],
        rules: &MemberRules<'_>,
        from_peer: Option<&str>,
        sender: Option<&str>,
    ) -> Result<u64, GatewayError> {
        let (message_group, epoch) = application_message(message)?;
        if message_group != group_id {
            return Err(GroupError::GroupIdMismatch.into());
        }
        let (members, current) = self
            .groups
            .member_names(self.store.as_ref(), app, group_id, rules)
            .await?;
        if let Some(peer) = from_peer {
            let has_members = members.iter().any(|name| is_of_domain(name, peer));
            if !has_members {
                return Err(GatewayError::SenderNotOfPeer(peer.to_owned()));
            }
        }
        if epoch > current {
            return Err(GroupError::FutureEpoch { current }.into());
        }
        // The sender's own queue is skipped (MLS clients cannot process their own messages).
        let members: Vec<String> = members
            .iter()
            .filter(|name| Some(name.as_str()) != sender)
            .cloned()
            .collect();
        // Without domains every member is this gateway's, whatever its handle holds.
        let (local, foreign): (Vec<String>, Vec<String>) = members
            .into_iter()
            .partition(|name| !rules.federated || split_foreign(name).is_none());
        let fanout = crate::federation::fanout::by_peer(&foreign)
            .into_iter()
            .map(|(peer, handles)| {
                let body =
                    crate::federation::fanout::fanout_request(app, &peer, &handles, message)?;
                Ok((peer, vec![body]))
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let (id, entry) = queue_entry(QueuedMessageKind::Application, group_id, message)?;
        // Accepted in one atomic step with every recipient's share: nothing accepted is lost.
        self.store
            .route_message(
                app,
                group_id,
                &local,
                &id,
                &entry,
                &fanout,
                crate::keys::unix_now(),
            )
            .await?;
        if !fanout.is_empty() {
            self.delivery.wake();
        }
        Ok(epoch)
    }

    /// A follower's share of its hub's application message: queued for the recipients (this
    /// gateway's clients, already checked) if the group is mirrored from that hub.
    pub async fn deliver_from_hub(
        &self,
        hub: &str,
        app: Uuid,
        handles: &[String],
        message: &[u8],
    ) -> Result<(), GatewayError> {
        let (group_id, _) = application_message(message)?;
        let recorded = self.store.group_hub(app, &group_id).await?;
        match recorded {
            Some(recorded) if recorded.eq_ignore_ascii_case(hub) => {}
            Some(_) => return Err(GatewayError::NotTheHub(hub.to_owned())),
            None => {
                return Err(if self.store.group_head(app, &group_id).await?.is_some() {
                    GatewayError::NotTheHub(hub.to_owned())
                } else {
                    GatewayError::GroupStore(GroupStoreError::UnknownGroup)
                });
            }
        }
        // The hub may only fill the queues of the mirror's members.
        let application = self
            .applications
            .get(&app)
            .ok_or(GatewayError::UnknownApplication)?;
        let rules = application.member_rules(&self.config);
        let (members, _) = self
            .groups
            .member_names(self.store.as_ref(), app, &group_id, &rules)
            .await?;
        if let Some(stranger) = handles.iter().find(|handle| !members.contains(handle)) {
            return Err(GatewayError::NotOurClient(stranger.clone()));
        }
        self.enqueue(
            app,
            handles,
            QueuedMessageKind::Application,
            &group_id,
            message,
        )
        .await
    }
}
