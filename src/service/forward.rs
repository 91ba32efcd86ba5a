//! What a follower does with its applications' proposals and commits for a group it mirrors
//! (DESIGN.md "Federation: one hub per group"; delivery-service draft, "Client-initiated
//! operations"): it validates them against its mirror as the hub would, names the draft's
//! operation that carries them (or, where none does, our `ds_commit` / `ds_upload_proposal`,
//! so every application endpoint behaves the same whichever gateway is the hub), and
//! forwards them to the hub as a `DSRequest` on `POST /group_operation`. The hub's answer is the application's: the new epoch, or the
//! hub's refusal with its code and detail (a lost race is `StaleEpoch` with the hub's
//! current epoch). The mirror itself moves when the hub's fan-out of the accepted message
//! arrives, as for every other commit; the answer waits for that (boundedly), so the
//! application reads its own change here.

use std::time::Duration;

use mimi_wire::ErrorCode;
use mimi_wire::ds::{
    AddRequest, ClientId, ClientRef, DS_PROTOCOL_VERSION, DSAuthData, DSRequest, DSRequestBody,
    DSRequestType, DSResponseBody, Extensions, GroupUpdateRequest, MLSGroupUpdate, MlsMessage,
    PartialGroupInfo, ReInitializeGroupRequest, SelfRemoveClientRequest, SendMessageRequest,
    UpdateClientRequest, UploadProposalRequest,
};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};
use uuid::Uuid;

use crate::error::GatewayError;
use crate::mls::group::{CommitUpload, GroupError, GroupInfoUpload};
use crate::mls::group_info::split_group_info;
use crate::mls::key_package::{MemberRules, split_foreign};
use crate::mls::operations;
use std::sync::Arc;

use crate::config::Config;
use crate::federation::Peers;
use crate::service::group_cache::GroupCache;
use crate::store::SharedStore;
use crate::store::{GroupHead, RegistryError};

/// A follower's way to the hub: commits, proposals and messages of mirrored groups,
/// validated against the mirror and forwarded.
#[derive(Clone)]
pub struct Forwarder {
    pub(crate) config: Arc<Config>,
    pub(crate) store: SharedStore,
    pub(crate) groups: Arc<GroupCache>,
    pub(crate) peers: Arc<Peers>,
}

impl Forwarder {
    /// The hub of a group this gateway only mirrors (its hub on another domain orders its
    /// proposals and commits), `None` for a group hosted here. Only federating applications
    /// have mirrors, so only they pay the store read.
    pub async fn hub_of(
        &self,
        app: Uuid,
        group_id: &[u8],
        rules: &MemberRules<'_>,
    ) -> Result<Option<String>, GatewayError> {
        if !rules.federated {
            return Ok(None);
        }
        Ok(self.store.group_hub(app, group_id).await?)
    }

    /// Forwards an application's commit for a group mirrored from `hub`; answers the new epoch.
    pub async fn commit(
        &self,
        hub: &str,
        app: Uuid,
        group_id: &[u8],
        upload: &CommitUpload<'_>,
        rules: &MemberRules<'_>,
    ) -> Result<u64, GatewayError> {
        // Every MLSGroupUpdate carries a PartialGroupInfo: followers of the hub mirror from it.
        let GroupInfoUpload::Whole(group_info) = upload.group_info else {
            return Err(GatewayError::GroupInfoRequired);
        };
        let partial_group_info = partial_group_info(group_info)?;
        let mut group = self
            .groups
            .checkout(self.store.as_ref(), app, group_id)
            .await?;
        let described = CommitUpload {
            describe: true,
            ..*upload
        };
        let staged =
            tokio::task::block_in_place(|| group.stage_commit(group_id, &described, rules));
        // The copy only served to judge the commit: the mirror moves with the hub's fan-out.
        if !group.spoiled() && staged.is_err() {
            self.groups.put(app, group_id, group);
        }
        let outcome = staged?;
        let shape = outcome
            .shape
            .as_ref()
            .ok_or_else(|| GatewayError::Internal("commit not described".into()))?;
        // Whoever the commit brings in at this gateway must be registered here: the hub's
        // fan-out names them, and this gateway takes fan-out only for its own clients.
        let joiner = shape.external.then_some(shape.committer.as_str());
        let newcomers = outcome
            .added
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(joiner);
        for name in newcomers.filter(|name| split_foreign(name).is_none()) {
            if self.store.client_by_handle(app, name).await?.is_none() {
                return Err(RegistryError::UnknownClient.into());
            }
        }
        let welcomes = usize::from(upload.welcome.is_some());
        // The draft's operation when one carries the commit under its rules; otherwise our
        // `ds_commit`, which the hub judges as it judges its own clients' commits.
        let operation = operations::classify_commit(shape)
            .filter(|operation| operations::check_commit(*operation, shape, welcomes).is_ok())
            .unwrap_or(DSRequestType::Commit);
        let group_update = MLSGroupUpdate {
            commit: mls_message(upload.commit)?,
            partial_group_info,
        };
        let welcome_messages: Vec<MlsMessage> = upload
            .welcome
            .map(mls_message)
            .transpose()?
            .into_iter()
            .collect();
        let body = match operation {
            DSRequestType::AddUsers => DSRequestBody::AddUsers(AddRequest {
                group_update,
                welcome_messages,
            }),
            DSRequestType::AddClients => DSRequestBody::AddClients(AddRequest {
                group_update,
                welcome_messages,
            }),
            DSRequestType::RemoveUsers => {
                DSRequestBody::RemoveUsers(GroupUpdateRequest { group_update })
            }
            DSRequestType::RemoveClients => {
                DSRequestBody::RemoveClients(GroupUpdateRequest { group_update })
            }
            DSRequestType::ExternalJoin => {
                DSRequestBody::ExternalJoin(GroupUpdateRequest { group_update })
            }
            DSRequestType::UpdateClient => DSRequestBody::UpdateClient(UpdateClientRequest {
                group_update,
                token: None,
            }),
            DSRequestType::ReInitializeGroup => {
                DSRequestBody::ReInitializeGroup(ReInitializeGroupRequest {
                    commit: group_update,
                })
            }
            _ => DSRequestBody::Commit(AddRequest {
                group_update,
                welcome_messages,
            }),
        };
        self.send(hub, body).await?;
        let epoch = outcome.from_epoch + 1;
        // Per operation, as `commit applied` (issue 17, "Logging"): `debug`.
        tracing::debug!(hub, ?operation, epoch, "commit forwarded");
        self.await_mirror(app, group_id, |head| head.epoch >= epoch)
            .await;
        Ok(epoch)
    }

    /// Forwards an application's proposal for a group mirrored from `hub`: a self remove as the
    /// draft's operation, any other as `ds_upload_proposal`. Answers the proposal's epoch.
    pub async fn proposal(
        &self,
        hub: &str,
        app: Uuid,
        group_id: &[u8],
        packet: &[u8],
        rules: &MemberRules<'_>,
    ) -> Result<u64, GatewayError> {
        let mut group = self
            .groups
            .checkout(self.store.as_ref(), app, group_id)
            .await?;
        let (epoch, held) = (group.epoch, group.proposals.len());
        // Judged on the mirror's copy, which is then dropped: the mirror holds the proposal once
        // the hub fans it out.
        let (_, shape) = group.accept_proposal(group_id, packet, rules)?;
        // The draft's self remove when it is one; any other proposal as our `ds_upload_proposal`.
        let proposal = mls_message(packet)?;
        let body = if operations::check_self_remove(&shape).is_ok() {
            DSRequestBody::SelfRemoveClient(SelfRemoveClientRequest { proposal })
        } else {
            DSRequestBody::UploadProposal(UploadProposalRequest { proposal })
        };
        let operation = body.request_type();
        self.send(hub, body).await?;
        // Per operation, as `commit applied` (issue 17, "Logging"): `debug`.
        tracing::debug!(hub, epoch, ?operation, "proposal forwarded");
        self.await_mirror(app, group_id, |head| {
            head.epoch > epoch || head.proposals > held
        })
        .await;
        Ok(epoch)
    }

    /// Forwards an application message for a group mirrored from `hub` (the draft's
    /// `ds_send_message`, or our `ds_send_message_from` naming the sender to skip): the hub routes
    /// it to every member, this gateway's included, through their queues. Answers the message's
    /// epoch.
    pub async fn message(
        &self,
        hub: &str,
        app: Uuid,
        group_id: &[u8],
        message: &[u8],
        sender: Option<&str>,
    ) -> Result<u64, GatewayError> {
        let (message_group, epoch) = crate::mls::group::application_message(message)?;
        if message_group != group_id {
            return Err(GroupError::GroupIdMismatch.into());
        }
        let request = SendMessageRequest {
            application_message: mls_message(message)?,
        };
        // The draft's request names no sender: ours does, so the hub skips the sender's queue.
        let body = match sender {
            Some(handle) => DSRequestBody::SendMessageFrom(
                request,
                ClientId {
                    application: *app.as_bytes(),
                    domain: self.config.domain.clone(),
                    client: ClientRef::Handle(handle.to_owned()),
                },
            ),
            None => DSRequestBody::SendMessage(request),
        };
        self.send(hub, body).await?;
        Ok(epoch)
    }

    /// Waits (at most `federation.mirror_wait_ms`, store calls included) until the mirror's head
    /// shows what the hub accepted, so the application reads its own change here once answered.
    /// The store is polled, from every 2 ms up to every 50 ms, since the hub's fan-out may reach
    /// another process of this gateway. Past the bound the answer goes anyway: the change is the
    /// hub's, the mirror follows.
    async fn await_mirror(&self, app: Uuid, group_id: &[u8], shows: impl Fn(&GroupHead) -> bool) {
        let bound = Duration::from_millis(self.config.federation.mirror_wait_ms);
        if bound.is_zero() {
            return;
        }
        let poll = async {
            let mut pause = Duration::from_millis(2);
            loop {
                match self.store.group_head(app, group_id).await {
                    Ok(Some(head)) if shows(&head) => return,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the mirror's head");
                        return;
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        };
        if tokio::time::timeout(bound, poll).await.is_err() {
            tracing::info!(
                ?bound,
                "answered before the hub's fan-out reached the mirror"
            );
        }
    }

    /// `POST /group_operation` to the hub; its refusal becomes the application's answer.
    async fn send(&self, hub: &str, body: DSRequestBody) -> Result<(), GatewayError> {
        let request = DSRequest {
            version: DS_PROTOCOL_VERSION,
            body,
            auth: DSAuthData::Anonymous,
        };
        match self
            .peers
            .call(hub, crate::federation::GROUP_OPERATION_PATH, &request)
            .await
        {
            Ok(answer) => match answer.body {
                DSResponseBody::Ok => Ok(()),
                _ => Err(GatewayError::PeerMalformedAnswer(hub.to_owned())),
            },
            Err(GatewayError::PeerRefused {
                peer,
                code,
                detail,
                fields,
            }) => Err(relay(peer, code, detail, fields)),
            Err(error) => Err(error),
        }
    }
}

/// The hub's refusal of a forwarded operation, for the application: a known code of the
/// caller's making (4xx) passes through with the hub's short detail, anything else stays
/// `PeerRefused`.
fn relay(
    peer: String,
    code: u16,
    detail: String,
    fields: Vec<mimi_wire::ErrorField>,
) -> GatewayError {
    const MAX_DETAIL: usize = 200;
    match ErrorCode::from_code(code) {
        Some(known) if (400..500).contains(&known.http_status()) => {
            let mut detail = detail;
            if detail.len() > MAX_DETAIL {
                let mut end = MAX_DETAIL;
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                detail.truncate(end);
            }
            // Only what this version knows goes on to the application: the current epoch of
            // an epoch refusal.
            let epoch_refusal = matches!(
                known,
                ErrorCode::StaleEpoch | ErrorCode::FutureEpoch | ErrorCode::EpochOutOfRange
            );
            let fields = fields
                .into_iter()
                .filter(|field| {
                    epoch_refusal
                        && field.field_type == mimi_wire::error::FIELD_CURRENT_EPOCH
                        && field.value.as_slice().len() == 8
                })
                .take(1)
                .collect();
            GatewayError::Relayed {
                code: known,
                detail,
                fields,
            }
        }
        _ => GatewayError::PeerRefused {
            peer,
            code,
            detail,
            fields,
        },
    }
}

/// An MLSMessage an application handed over, for a delivery-service body.
pub fn mls_message(bytes: &[u8]) -> Result<MlsMessage, GatewayError> {
    MlsMessage::from_bytes(bytes.to_vec())
        .map_err(|error| GroupError::Malformed(error.to_string()).into())
}

/// The `PartialGroupInfo` of an application's whole GroupInfo.
fn partial_group_info(group_info: &[u8]) -> Result<PartialGroupInfo, GatewayError> {
    let malformed = |reason: String| GatewayError::from(GroupError::Malformed(reason));
    let message = MlsMessageIn::tls_deserialize_exact(group_info)
        .map_err(|error| malformed(error.to_string()))?;
    let MlsMessageBodyIn::GroupInfo(group_info) = message.extract() else {
        return Err(malformed("not a GroupInfo".into()));
    };
    let (extensions, signature) =
        split_group_info(&group_info).map_err(|error| malformed(error.to_string()))?;
    Ok(PartialGroupInfo {
        group_info_extensions: Extensions::from_bytes(extensions)
            .map_err(|error| malformed(error.to_string()))?,
        signature: signature.into(),
    })
}
