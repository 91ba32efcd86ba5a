//! A group member for the tests: a real openmls `MlsGroup` (plaintext handshakes, no ratchet
//! tree extension, so joiners depend on the trees the gateway serves) and the calls an
//! application server makes on its behalf to the group endpoints.

use http::{Method, StatusCode};
use mimi_wire::groups::{
    ControlMessagesRequest, CreateGroupRequest, GroupInfoResponse, JoinInfo, MessagesResponse,
    UploadCommitRequest, UploadProposalRequest, group_id_to_path,
};
use mimi_wire::{ErrorResponse, decode_exact, encode};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls::treesync::RatchetTreeIn;
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::support::mls_client::{MlsClient, SUITE};
use crate::support::{Answer, Harness, Target};
use mimi_wire::groups::GroupStatusResponse;

pub fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(SUITE)
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(false)
        .capabilities(crate::support::mls_client::capabilities(&[]))
        .build()
}

pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build()
}

pub fn bytes(message: &MlsMessageOut) -> Vec<u8> {
    message.tls_serialize_detached().unwrap()
}

pub fn tree_bytes(group: &MlsGroup) -> Vec<u8> {
    RatchetTreeIn::from(group.export_ratchet_tree())
        .tls_serialize_detached()
        .unwrap()
}

/// A validated KeyPackage from its MLSMessage bytes.
pub fn key_package(bytes: &[u8]) -> KeyPackage {
    let MlsMessageBodyIn::KeyPackage(key_package) = MlsMessageIn::tls_deserialize_exact(bytes)
        .unwrap()
        .extract()
    else {
        panic!("not a key package")
    };
    key_package
        .validate(
            openmls_rust_crypto::OpenMlsRustCrypto::default().crypto(),
            ProtocolVersion::Mls10,
        )
        .unwrap()
}

/// One member: its openmls client and, once in, its group.
pub struct Member {
    pub mls: MlsClient,
    pub group: Option<MlsGroup>,
}

impl Member {
    pub fn new(identity: &str) -> Member {
        Member {
            mls: MlsClient::basic(identity),
            group: None,
        }
    }

    /// Creates a new group; answers (GroupInfo, ratchet tree) to upload.
    pub fn create_group(&mut self) -> (Vec<u8>, Vec<u8>) {
        let group = MlsGroup::new(
            &self.mls.provider,
            &self.mls.signer,
            &create_config(),
            self.mls.credential.clone(),
        )
        .unwrap();
        let group_info = bytes(
            &group
                .export_group_info(self.mls.provider.crypto(), &self.mls.signer, false)
                .unwrap(),
        );
        let tree = tree_bytes(&group);
        self.group = Some(group);
        (group_info, tree)
    }

    pub fn group_id(&self) -> Vec<u8> {
        self.group.as_ref().unwrap().group_id().as_slice().to_vec()
    }

    pub fn epoch(&self) -> u64 {
        self.group.as_ref().unwrap().epoch().as_u64()
    }

    /// A secret every member of the epoch derives alike.
    pub fn secret(&self) -> Vec<u8> {
        self.group
            .as_ref()
            .unwrap()
            .export_secret(self.mls.provider.crypto(), "mimi test", b"", 32)
            .unwrap()
    }

    /// Joins from a welcome and tree the gateway served.
    pub fn join(&mut self, join_info: &JoinInfo) {
        let MlsMessageBodyIn::Welcome(welcome) =
            MlsMessageIn::tls_deserialize_exact(join_info.welcome.as_slice())
                .unwrap()
                .extract()
        else {
            panic!("not a welcome")
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(
            join_info.ratchet_tree.as_ref().unwrap().as_slice(),
        )
        .unwrap();
        let group = StagedWelcome::new_from_welcome(
            &self.mls.provider,
            &join_config(),
            welcome,
            Some(tree),
        )
        .unwrap()
        .into_group(&self.mls.provider)
        .unwrap();
        self.group = Some(group);
    }

    /// Processes a proposal or commit the gateway served; answers whether a commit removed
    /// this member.
    pub fn apply(&mut self, packet: &[u8]) -> bool {
        let message = MlsMessageIn::tls_deserialize_exact(packet)
            .unwrap()
            .try_into_protocol_message()
            .unwrap();
        let provider = &self.mls.provider;
        let group = self.group.as_mut().unwrap();
        let processed = group.process_message(provider, message).unwrap();
        match processed.into_content() {
            ProcessedMessageContent::ProposalMessage(proposal) => {
                group
                    .store_pending_proposal(provider.storage(), *proposal)
                    .unwrap();
                false
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let removed = staged.self_removed();
                group.merge_staged_commit(provider, *staged).unwrap();
                removed
            }
            _ => panic!("unexpected message"),
        }
    }

    /// The GroupInfo of the member's current epoch (openmls only builds one with a commit
    /// when the ratchet tree extension is on, which these clients leave off).
    pub fn export_group_info(&self) -> Vec<u8> {
        bytes(
            &self
                .group
                .as_ref()
                .unwrap()
                .export_group_info(self.mls.provider.crypto(), &self.mls.signer, false)
                .unwrap(),
        )
    }

    /// Merges the member's own pending commit and answers the new epoch's GroupInfo. The
    /// commit methods below do this at once: the tests upload a commit after its committer
    /// moved on, and drop a committer whose commit the gateway refused.
    fn merge_and_export(&mut self) -> Vec<u8> {
        self.group
            .as_mut()
            .unwrap()
            .merge_pending_commit(&self.mls.provider)
            .unwrap();
        self.export_group_info()
    }

    /// Adds members: (commit, welcome, group info).
    pub fn add(&mut self, key_packages: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let packages: Vec<KeyPackage> = key_packages.iter().map(|kp| key_package(kp)).collect();
        let (commit, welcome, _) = self
            .group
            .as_mut()
            .unwrap()
            .add_members(&self.mls.provider, &self.mls.signer, &packages)
            .unwrap();
        (bytes(&commit), bytes(&welcome), self.merge_and_export())
    }

    /// A self-update commit: (commit, group info).
    pub fn update(&mut self) -> (Vec<u8>, Vec<u8>) {
        let bundle = self
            .group
            .as_mut()
            .unwrap()
            .self_update(
                &self.mls.provider,
                &self.mls.signer,
                LeafNodeParameters::default(),
            )
            .unwrap();
        let (commit, _welcome, _) = bundle.into_contents();
        (bytes(&commit), self.merge_and_export())
    }

    /// A self-update commit kept pending until [`Self::confirm`] or [`Self::discard`], as a
    /// client does until the gateway answers: (commit, the new epoch's GroupInfo).
    pub fn update_pending(&mut self) -> (Vec<u8>, Vec<u8>) {
        let provider = &self.mls.provider;
        let bundle = self
            .group
            .as_mut()
            .unwrap()
            .commit_builder()
            .force_self_update(true)
            .load_psks(provider.storage())
            .unwrap()
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), &self.mls.signer, |_| {
                true
            })
            .unwrap()
            .stage_commit(provider)
            .unwrap();
        let (commit, _welcome, group_info) = bundle.into_contents();
        let group_info = MlsMessageOut::from(group_info.expect("asked for a GroupInfo"));
        (bytes(&commit), bytes(&group_info))
    }

    /// The gateway accepted the pending commit.
    pub fn confirm(&mut self) {
        self.group
            .as_mut()
            .unwrap()
            .merge_pending_commit(&self.mls.provider)
            .unwrap();
    }

    /// The gateway refused the pending commit.
    pub fn discard(&mut self) {
        self.group
            .as_mut()
            .unwrap()
            .clear_pending_commit(self.mls.provider.storage())
            .unwrap();
    }

    pub fn remove(&mut self, leaf: u32) -> (Vec<u8>, Vec<u8>) {
        self.remove_leaves(&[leaf])
    }

    /// One commit removing every member at `leaves`.
    pub fn remove_leaves(&mut self, leaves: &[u32]) -> (Vec<u8>, Vec<u8>) {
        let leaves: Vec<LeafNodeIndex> = leaves
            .iter()
            .map(|leaf| LeafNodeIndex::new(*leaf))
            .collect();
        let (commit, _welcome, _) = self
            .group
            .as_mut()
            .unwrap()
            .remove_members(&self.mls.provider, &self.mls.signer, &leaves)
            .unwrap();
        (bytes(&commit), self.merge_and_export())
    }

    pub fn propose_update(&mut self) -> Vec<u8> {
        let (proposal, _) = self
            .group
            .as_mut()
            .unwrap()
            .propose_self_update(
                &self.mls.provider,
                &self.mls.signer,
                LeafNodeParameters::default(),
            )
            .unwrap();
        bytes(&proposal)
    }

    /// A proposal to remove the member at `leaf`, kept pending for `commit_pending`.
    pub fn propose_remove(&mut self, leaf: u32) -> Vec<u8> {
        let (proposal, _) = self
            .group
            .as_mut()
            .unwrap()
            .propose_remove_member(
                &self.mls.provider,
                &self.mls.signer,
                LeafNodeIndex::new(leaf),
            )
            .unwrap();
        bytes(&proposal)
    }

    /// A proposal to remove this member itself (the draft's self remove).
    pub fn propose_leave(&mut self) -> Vec<u8> {
        let proposal = self
            .group
            .as_mut()
            .unwrap()
            .leave_group(&self.mls.provider, &self.mls.signer)
            .unwrap();
        bytes(&proposal)
    }

    /// An application message (a PrivateMessage) carrying `text`.
    pub fn send_message(&mut self, text: &[u8]) -> Vec<u8> {
        let message = self
            .group
            .as_mut()
            .unwrap()
            .create_message(&self.mls.provider, &self.mls.signer, text)
            .unwrap();
        bytes(&message)
    }

    /// Decrypts an application message of another member.
    pub fn read_message(&mut self, packet: &[u8]) -> Vec<u8> {
        let message = MlsMessageIn::tls_deserialize_exact(packet)
            .unwrap()
            .try_into_protocol_message()
            .unwrap();
        let processed = self
            .group
            .as_mut()
            .unwrap()
            .process_message(&self.mls.provider, message)
            .unwrap();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(message) => message.into_bytes(),
            _ => panic!("not an application message"),
        }
    }

    /// Drops the member's pending proposals (made only to be uploaded, never committed).
    pub fn forget_proposals(&mut self) {
        self.group
            .as_mut()
            .unwrap()
            .clear_pending_proposals(self.mls.provider.storage())
            .unwrap();
    }

    pub fn commit_pending(&mut self) -> (Vec<u8>, Vec<u8>) {
        let (commit, _welcome, _) = self
            .group
            .as_mut()
            .unwrap()
            .commit_to_pending_proposals(&self.mls.provider, &self.mls.signer)
            .unwrap();
        (bytes(&commit), self.merge_and_export())
    }

    /// Joins by external commit from what the gateway served: (commit, group info).
    pub fn join_external(&mut self, response: &GroupInfoResponse) -> (Vec<u8>, Vec<u8>) {
        let entry = &response.group_infos[0];
        let MlsMessageBodyIn::GroupInfo(group_info) =
            MlsMessageIn::tls_deserialize_exact(entry.group_info.as_slice())
                .unwrap()
                .extract()
        else {
            panic!("not a group info")
        };
        let tree =
            RatchetTreeIn::tls_deserialize_exact(entry.ratchet_tree.as_ref().unwrap().as_slice())
                .unwrap();
        let provider = &self.mls.provider;
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(tree)
            .with_config(join_config())
            .build_group(provider, group_info, self.mls.credential.clone())
            .unwrap()
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(crate::support::mls_client::capabilities(&[]))
                    .build(),
            )
            .load_psks(provider.storage())
            .unwrap()
            .build(provider.rand(), provider.crypto(), &self.mls.signer, |_| {
                true
            })
            .unwrap()
            .finalize(provider)
            .unwrap();
        self.group = Some(group);
        let (commit, _welcome, _) = bundle.into_contents();
        (bytes(&commit), self.export_group_info())
    }
}

/// The group endpoints of one gateway for its application.
pub struct GroupApi {
    pub target: Target,
    /// The `mimi-client` the accepted paths go through.
    pub client: mimi_client::Client,
    pub app: Uuid,
    pub group: String,
    pub group_id: Vec<u8>,
}

pub fn error(answer: &Answer) -> ErrorResponse {
    decode_exact(&answer.body).expect("an ErrorResponse")
}

impl GroupApi {
    pub fn new(harness: &Harness, group_id: &[u8]) -> GroupApi {
        GroupApi::at(harness.target(), group_id)
    }

    pub fn at(target: Target, group_id: &[u8]) -> GroupApi {
        GroupApi {
            app: target.app.id,
            client: target.client(),
            target,
            group: group_id_to_path(group_id),
            group_id: group_id.to_vec(),
        }
    }

    pub async fn create(harness: &Harness, group_info: &[u8], tree: &[u8]) -> Answer {
        let body = encode(&CreateGroupRequest {
            version: 1,
            group_info: VLBytes::new(group_info.to_vec()),
            ratchet_tree: VLBytes::new(tree.to_vec()),
        })
        .unwrap();
        harness
            .call(
                Method::PUT,
                &format!("/apps/{}/groups", harness.app.id),
                body,
            )
            .await
    }

    fn path(&self, tail: &str) -> String {
        format!("/apps/{}/groups/{}/{tail}", self.app, self.group)
    }

    pub async fn propose(&self, packet: &[u8]) -> Answer {
        let body = encode(&UploadProposalRequest {
            version: 1,
            packet: VLBytes::new(packet.to_vec()),
        })
        .unwrap();
        self.target
            .call(Method::PUT, &self.path("proposals"), body)
            .await
    }

    pub async fn proposals(&self) -> Vec<Vec<u8>> {
        self.client
            .list_proposals(&self.group_id)
            .await
            .unwrap_or_else(|error| panic!("proposals: {error}"))
    }

    pub async fn commit(
        &self,
        commit: &[u8],
        group_info: Option<&[u8]>,
        welcome: Option<&[u8]>,
    ) -> Answer {
        let body = encode(&UploadCommitRequest {
            version: 1,
            commit_packet: VLBytes::new(commit.to_vec()),
            group_info: group_info.map(|bytes| VLBytes::new(bytes.to_vec())),
            welcome_packet: welcome.map(|bytes| VLBytes::new(bytes.to_vec())),
        })
        .unwrap();
        self.target
            .call(Method::PUT, &self.path("epochs"), body)
            .await
    }

    /// Uploads a commit that must be accepted; answers the new epoch.
    pub async fn commit_ok(
        &self,
        commit: &[u8],
        group_info: Option<&[u8]>,
        welcome: Option<&[u8]>,
    ) -> u64 {
        let commit = mimi_client::Commit {
            commit: commit.to_vec(),
            group_info: group_info.map(<[u8]>::to_vec),
            welcome: welcome.map(<[u8]>::to_vec),
        };
        self.client
            .upload_commit(&self.group_id, &commit)
            .await
            .unwrap_or_else(|error| panic!("commit: {error}"))
    }

    pub async fn control(&self, start: u64, end: Option<u64>) -> Answer {
        let body = encode(&ControlMessagesRequest {
            version: 1,
            start_epoch_id: start,
            end_epoch_id: end,
        })
        .unwrap();
        self.target
            .call(Method::POST, &self.path("control-msgs"), body)
            .await
    }

    pub async fn control_ok(&self, start: u64, end: Option<u64>) -> Vec<Vec<u8>> {
        self.client
            .control_messages(&self.group_id, start, end)
            .await
            .unwrap_or_else(|error| panic!("control messages {start}..{end:?}: {error}"))
    }

    pub async fn group_info(&self) -> GroupInfoResponse {
        self.client
            .group_info(&self.group_id)
            .await
            .unwrap_or_else(|error| panic!("group info: {error}"))
    }

    /// The current epoch, as the gateway's control messages show it.
    pub async fn epoch(&self) -> u64 {
        // A range ending at `e` is valid exactly when `e` <= the current epoch.
        let mut epoch = 0;
        while self.control(0, Some(epoch + 1)).await.status == StatusCode::OK {
            epoch += 1;
        }
        epoch
    }
}

pub fn messages(answer: &Answer) -> Vec<Vec<u8>> {
    decode_exact::<MessagesResponse>(&answer.body)
        .unwrap()
        .messages
        .into_iter()
        .map(|message| message.as_slice().to_vec())
        .collect()
}

fn handle_path(harness: &Harness, handle: &str) -> String {
    let encoded: String = handle
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect();
    format!("/apps/{}/clients/{encoded}/welcome-msgs", harness.app.id)
}

pub async fn welcomes(harness: &Harness, handle: &str) -> Vec<JoinInfo> {
    harness
        .app_client()
        .welcomes(handle)
        .await
        .unwrap_or_else(|error| panic!("welcomes of {handle}: {error}"))
}

pub async fn acknowledge(harness: &Harness, handle: &str, welcome: [u8; 16]) -> Answer {
    let path = format!(
        "{}/{}",
        handle_path(harness, handle),
        Uuid::from_bytes(welcome)
    );
    harness.call(Method::DELETE, &path, Vec::new()).await
}

pub async fn group_status(api: &GroupApi) -> GroupStatusResponse {
    api.client
        .group_status(&api.group_id)
        .await
        .unwrap_or_else(|error| panic!("group status: {error}"))
}
