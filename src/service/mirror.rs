//! What a follower does with its hub's fan-out (DESIGN.md "Federation: one hub per group";
//! DS draft "Server to server requests"): checks the version and that every recipient is a
//! client of this gateway, then mirrors the group's public state so its applications read
//! control messages, welcomes and group info locally.
//!
//! Per commit the hub queues, for each follower: the new epoch's GroupInfo, the Welcome (if
//! the commit adds members here), then the commit. The first two are kept as notes of the
//! hub until the commit arrives; the commit is then validated against the mirror as the
//! hub validated it (openmls' `PublicGroup`) and applied with them in one atomic step. A
//! follower without a mirror (its first member is joining) imports the group from the hub's
//! `/external_commit_information`. An application message (a PrivateMessage) goes into
//! its recipients' message queues (`service::messages`). Every step is idempotent, so a redelivered message (the
//! hub retries until acknowledged) changes nothing: a commit for an epoch the mirror has
//! passed is skipped, a Welcome's id is derived from its bytes.

use mimi_wire::ds::{
    DS_PROTOCOL_VERSION, DSAuthData, DSFanoutRequest, DSRequest, DSRequestBody, DSResponse,
    DSResponseBody, ExternalCommitInfoRequest, WelcomeInfoRequest,
};
use mimi_wire::{DecodeError, decode_exact};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{ContentType, MlsMessageBodyIn, MlsMessageIn, ProtocolMessage};
use sha2::{Digest, Sha256};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::mls::group::{self, ActiveGroup, CommitUpload, GroupError, GroupInfoUpload, Joining};
use std::sync::Arc;

use crate::config::Config;
use crate::federation::Peers;
use crate::service::applications::Applications;
use crate::service::group_cache::GroupCache;
use crate::service::messages::Messages;
use crate::service::registry::Registry;
use crate::store::SharedStore;
use crate::store::{CommitRecord, GroupStoreError, WelcomeRecord};

const NOTE_GROUP_INFO: &str = "group-info";
const NOTE_WELCOME: &str = "welcome";
const NOTE_WELCOME_RECIPIENTS: &str = "welcome-recipients";

/// RFC 9420 `WireFormat` values.
const WIRE_PUBLIC_MESSAGE: u16 = 1;
const WIRE_PRIVATE_MESSAGE: u16 = 2;
const WIRE_WELCOME: u16 = 3;
const WIRE_GROUP_INFO: u16 = 4;

fn wire_format(message: &[u8]) -> Option<u16> {
    message
        .get(2..4)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
}

/// The follower: mirrors the groups whose hub is another gateway from the hub's fan-out.
#[derive(Clone)]
pub struct Mirror {
    pub(crate) config: Arc<Config>,
    pub(crate) store: SharedStore,
    pub(crate) groups: Arc<GroupCache>,
    pub(crate) applications: Arc<Applications>,
    pub(crate) peers: Arc<Peers>,
    pub(crate) registry: Registry,
    pub(crate) messages: Messages,
}

/// Recipients of a fan-out looked up in the registry at once.
const LOOKUPS_SIDE_BY_SIDE: usize = 128;

impl Mirror {
    /// The one application all recipients belong to, and their handles here. Refused unless
    /// every recipient names this gateway's domain, one hosted application and a registered
    /// client.
    async fn local_recipients(
        &self,
        request: &DSFanoutRequest,
    ) -> Result<(Uuid, Vec<String>), GatewayError> {
        let first = request
            .recipient_ids
            .first()
            .ok_or_else(|| GatewayError::Decode(DecodeError::Malformed("no recipients".into())))?;
        let app = Uuid::from_bytes(first.application);
        if !self.applications.contains(&app) {
            return Err(GatewayError::UnknownApplication);
        }
        if let Some(stranger) = request.recipient_ids.iter().find(|recipient| {
            !recipient.domain.eq_ignore_ascii_case(&self.config.domain)
                || Uuid::from_bytes(recipient.application) != app
        }) {
            return Err(GatewayError::NotOurClient(
                crate::federation::client_id_text(stranger),
            ));
        }
        // Looked up side by side: a chunk of recipients goes to the store at once, not one
        // round trip each.
        let mut handles = Vec::with_capacity(request.recipient_ids.len());
        for chunk in request.recipient_ids.chunks(LOOKUPS_SIDE_BY_SIDE) {
            let found = futures_util::future::try_join_all(chunk.iter().map(|recipient| async {
                self.registry
                    .local_handle(app, recipient)
                    .await?
                    .ok_or_else(|| {
                        GatewayError::NotOurClient(crate::federation::client_id_text(recipient))
                    })
            }))
            .await?;
            handles.extend(found);
        }
        Ok((app, handles))
    }

    /// `POST /deliver_message` from `hub`: one `DSFanoutRequest`, already authenticated as the
    /// hub's.
    pub async fn deliver(&self, hub: &str, body: &[u8]) -> Result<(), GatewayError> {
        let request: DSFanoutRequest = decode_exact(body)?;
        mimi_wire::ds::check_version(request.version)?;
        let (app, handles) = self.local_recipients(&request).await?;
        let message = request.mls_message.as_bytes();
        match wire_format(message) {
            Some(WIRE_GROUP_INFO) => {
                self.store
                    .set_peer_note(hub, NOTE_GROUP_INFO, message)
                    .await?;
            }
            Some(WIRE_WELCOME) => {
                self.store.set_peer_note(hub, NOTE_WELCOME, message).await?;
                self.store
                    .set_peer_note(hub, NOTE_WELCOME_RECIPIENTS, handles.join("\n").as_bytes())
                    .await?;
            }
            Some(WIRE_PUBLIC_MESSAGE) => {
                let outcome = self.handshake(hub, app, message).await;
                // The notes belong to this commit alone. Taken, or refused for good, they go: a
                // refused commit must not hand its GroupInfo and Welcome to the next one. On a
                // passing failure (store, hub unreachable) they stay for the hub's retry.
                let settled = match &outcome {
                    Ok(()) => true,
                    Err(error) => error.code().http_status() < 500,
                };
                if settled
                    && framing(message)
                        .is_ok_and(|framed| framed.content_type() == ContentType::Commit)
                {
                    self.clear_notes(hub).await?;
                }
                outcome?
            }
            // Application messages go to the recipients' queues; nothing is mirrored.
            Some(WIRE_PRIVATE_MESSAGE) => {
                self.messages
                    .deliver_from_hub(hub, app, &handles, message)
                    .await?;
            }
            Some(_) | None => {
                return Err(GroupError::Malformed("not a message a hub fans out".into()).into());
            }
        }
        Ok(())
    }
}

fn framing(message: &[u8]) -> Result<ProtocolMessage, GatewayError> {
    let message = MlsMessageIn::tls_deserialize_exact(message)
        .map_err(|error| GroupError::Malformed(error.to_string()))?;
    match message.extract() {
        MlsMessageBodyIn::PublicMessage(message) => Ok(message.into()),
        _ => Err(GroupError::Malformed("not a PublicMessage".into()).into()),
    }
}

impl Mirror {
    /// A proposal or commit of the hub's group.
    async fn handshake(&self, hub: &str, app: Uuid, message: &[u8]) -> Result<(), GatewayError> {
        let framed = framing(message)?;
        let group_id = framed.group_id().as_slice().to_vec();
        let epoch = framed.epoch().as_u64();
        let content_type = framed.content_type();
        let head = self.store.group_head(app, &group_id).await?;
        if head.is_some() {
            let recorded = self.store.group_hub(app, &group_id).await?;
            if !recorded.is_some_and(|recorded| recorded.eq_ignore_ascii_case(hub)) {
                return Err(GatewayError::NotTheHub(hub.to_owned()));
            }
        }
        let application = self
            .applications
            .get(&app)
            .ok_or(GatewayError::UnknownApplication)?;
        let rules = application.member_rules(&self.config);
        match (content_type, head) {
            (ContentType::Commit, None) => {
                let imported = self.import(hub, app, &group_id).await?;
                self.file_welcome_after_import(hub, app, &group_id, epoch + 1, imported)
                    .await
            }
            (ContentType::Commit, Some(head)) if epoch < head.epoch => Ok(()),
            (ContentType::Commit, Some(head)) if epoch > head.epoch => {
                // A gap the mirror cannot bridge: it would need re-importing over its own state.
                Err(GatewayError::GroupStore(GroupStoreError::EpochOutOfRange {
                    current: head.epoch,
                }))
            }
            (ContentType::Commit, Some(_)) => {
                self.mirror_commit(hub, app, &group_id, message, &rules)
                    .await
            }
            (ContentType::Proposal, Some(head)) if epoch == head.epoch => {
                let mut group = self
                    .groups
                    .checkout(self.store.as_ref(), app, &group_id)
                    .await?;
                let (held, _) = group.accept_proposal(&group_id, message, &rules)?;
                match self
                    .store
                    .add_proposal(app, &group_id, epoch, &held, &[])
                    .await
                {
                    Ok(_) => group.hold(held),
                    Err(GroupStoreError::DuplicateProposal) => {}
                    Err(error) => return Err(error.into()),
                }
                self.groups.put(app, &group_id, group);
                Ok(())
            }
            // A proposal for a group not mirrored yet, or for another epoch: the commit that
            // follows brings the state.
            _ => Ok(()),
        }
    }

    async fn clear_notes(&self, hub: &str) -> Result<(), GatewayError> {
        for name in [NOTE_GROUP_INFO, NOTE_WELCOME, NOTE_WELCOME_RECIPIENTS] {
            self.store.set_peer_note(hub, name, &[]).await?;
        }
        Ok(())
    }
}

/// The welcome's id: derived from its bytes, so a redelivery registers it once.
fn welcome_id(packet: &[u8]) -> Uuid {
    let digest = Sha256::digest(packet);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

impl Mirror {
    fn welcome_record(&self, packet: Vec<u8>, tree: Vec<u8>, recipients: &[u8]) -> WelcomeRecord {
        let recipients = String::from_utf8_lossy(recipients)
            .split('\n')
            .filter(|handle| !handle.is_empty())
            .map(str::to_owned)
            .collect();
        WelcomeRecord {
            id: welcome_id(&packet),
            packet,
            ratchet_tree: tree,
            recipients,
            expires_at: crate::keys::unix_now()
                .saturating_add(self.config.groups.welcome_retention_secs),
        }
    }

    /// A commit the mirror is at the epoch of: validated and applied like at the hub, with the
    /// GroupInfo and Welcome that preceded it.
    async fn mirror_commit(
        &self,
        hub: &str,
        app: Uuid,
        group_id: &[u8],
        commit: &[u8],
        rules: &crate::mls::key_package::MemberRules<'_>,
    ) -> Result<(), GatewayError> {
        let group_info = self.store.peer_note(hub, NOTE_GROUP_INFO).await?;
        let welcome = self.store.peer_note(hub, NOTE_WELCOME).await?;
        let recipients = self
            .store
            .peer_note(hub, NOTE_WELCOME_RECIPIENTS)
            .await?
            .unwrap_or_default();
        let mut group = self
            .groups
            .checkout(self.store.as_ref(), app, group_id)
            .await?;
        let staged = tokio::task::block_in_place(|| {
            group.stage_commit(
                group_id,
                &CommitUpload {
                    commit,
                    group_info: group_info
                        .as_deref()
                        .map_or(GroupInfoUpload::Absent, GroupInfoUpload::Whole),
                    welcome: welcome.as_deref(),
                    joining: Joining::WelcomeIfAny,
                    describe: false,
                },
                rules,
            )
        });
        let outcome = match staged {
            Ok(outcome) => outcome,
            Err(error) => {
                if !group.spoiled() {
                    self.groups.put(app, group_id, group);
                }
                return Err(error.into());
            }
        };
        let now = crate::keys::unix_now();
        let mut used_key_packages = Vec::new();
        for (handle, reference) in &outcome.added {
            if let Some(client) = self.store.client_by_handle(app, handle).await? {
                used_key_packages.push((client, reference.clone()));
            }
        }
        let welcome = outcome
            .welcome
            .map(|(packet, tree, _)| self.welcome_record(packet, tree, &recipients));
        let record = CommitRecord {
            from_epoch: outcome.from_epoch,
            change: outcome.change,
            messages: outcome.messages,
            group_info: outcome.group_info,
            welcome,
            removed_handles: outcome.removed_handles,
            used_key_packages,
            now,
            retained_epochs: self.config.groups.retained_epochs,
            fanout: Vec::new(),
        };
        match self.store.apply_commit(app, group_id, &record).await {
            Ok(epoch) => {
                self.groups.put(app, group_id, group);
                // Per operation, as `commit applied` (issue 17, "Logging"): `debug`.
                tracing::debug!(epoch, hub, "mirrored a commit");
                Ok(())
            }
            // A concurrent delivery of the same commit won: nothing left to do.
            Err(GroupStoreError::StaleEpoch { current }) if current > outcome.from_epoch => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Asks `hub` for the group's current GroupInfo and tree and starts the mirror from them.
    async fn import(
        &self,
        hub: &str,
        app: Uuid,
        group_id: &[u8],
    ) -> Result<ActiveGroup, GatewayError> {
        let request = DSRequest {
            version: DS_PROTOCOL_VERSION,
            body: DSRequestBody::ExternalCommitInfo(ExternalCommitInfoRequest {
                group_id: VLBytes::new(group_id.to_vec()),
            }),
            auth: DSAuthData::Anonymous,
        };
        let answer = self
            .peers
            .call(
                hub,
                crate::federation::EXTERNAL_COMMIT_INFORMATION_PATH,
                &request,
            )
            .await?;
        let DSResponseBody::ExternalCommitInfo(info) = answer.body else {
            return Err(GatewayError::PeerMalformedAnswer(hub.to_owned()));
        };
        let application = self
            .applications
            .get(&app)
            .ok_or(GatewayError::UnknownApplication)?;
        let rules = application.member_rules(&self.config);
        let (active, new_group) = tokio::task::block_in_place(|| {
            group::import(
                info.group_info.as_bytes(),
                info.ratchet_tree.as_bytes(),
                &rules,
                hub,
            )
        })?;
        if new_group.group_id != group_id {
            return Err(GatewayError::PeerMalformedAnswer(hub.to_owned()));
        }
        match self.store.create_group(app, &new_group).await {
            Ok(()) | Err(GroupStoreError::GroupExists) => {}
            Err(error) => return Err(error.into()),
        }
        tracing::info!(epoch = new_group.epoch, hub, "imported a group to mirror");
        Ok(active)
    }

    /// After an import, the Welcome noted before the commit is filed for `epoch`: with the
    /// mirror's tree if the import landed there, else with the tree the hub kept for it.
    async fn file_welcome_after_import(
        &self,
        hub: &str,
        app: Uuid,
        group_id: &[u8],
        epoch: u64,
        imported: ActiveGroup,
    ) -> Result<(), GatewayError> {
        let imported_epoch = imported.epoch;
        let tree = (imported_epoch == epoch).then(|| imported.storage.ratchet_tree());
        self.groups.put(app, group_id, imported);
        let Some(packet) = self.store.peer_note(hub, NOTE_WELCOME).await? else {
            return Ok(());
        };
        let recipients = self
            .store
            .peer_note(hub, NOTE_WELCOME_RECIPIENTS)
            .await?
            .unwrap_or_default();
        let tree = match tree {
            Some(tree) => tree,
            None => {
                let request = DSRequest {
                    version: DS_PROTOCOL_VERSION,
                    body: DSRequestBody::WelcomeInfo(WelcomeInfoRequest {
                        group_id: VLBytes::new(group_id.to_vec()),
                        epoch,
                    }),
                    auth: DSAuthData::Anonymous,
                };
                let answer: DSResponse = self
                    .peers
                    .call(hub, crate::federation::WELCOME_INFORMATION_PATH, &request)
                    .await?;
                match answer.body {
                    DSResponseBody::WelcomeInfo(tree) => tree.into_bytes(),
                    _ => return Err(GatewayError::PeerMalformedAnswer(hub.to_owned())),
                }
            }
        };
        let record = self.welcome_record(packet, tree, &recipients);
        self.store
            .add_welcome(app, group_id, epoch, &record)
            .await?;
        Ok(())
    }
}
