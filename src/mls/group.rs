//! Group operations validated as a member would, without group secrets (architecture draft,
//! "Group Creation", "Proposals", "Commits"; RFC 9420 through openmls' `PublicGroup`, see
//! `../shared/OPENMLS.md`).
//!
//! A group is created once with `PublicGroup::from_external` and from then on restored with
//! `PublicGroup::load` from its stored TLS state (`group_state`), never imported again. The
//! functions here decide; the store applies (a compare-and-set on the epoch).

use std::collections::BTreeSet;

use openmls::group::GroupId;
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    ContentType, LeafNode, LeafNodeIndex, MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent,
    Proposal, ProposalOrRefType, ProposalStore, ProtocolMessage, PublicGroup,
    PublicProcessMessageError, Sender, StageCommitError, StagedCommit, ValidationError,
};
use openmls::treesync::RatchetTreeIn;
use openmls_traits::OpenMlsProvider;

use mimi_wire::ErrorCode;

use super::group_info::{GroupInfoCheckError, check_group_info, rebuild_group_info};
use super::group_state::{GroupStateError, GroupStorage, StateChange};
use super::key_package::{
    KeyPackageError, MemberIdentity, MemberRules, check_member_key_package, member_handle,
    member_identity,
};
use super::operations::{CommitShape, ProposalShape};
use super::provider::Crypto;
use super::records::{GroupHead, HeldProposal, NewGroup, StoredGroup};
use crate::identity::IdentityError;

/// Why a group operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("malformed MLS message: {0}")]
    Malformed(String),
    #[error("invalid group info: {0}")]
    InvalidGroupInfo(String),
    #[error("invalid ratchet tree: {0}")]
    InvalidRatchetTree(String),
    #[error("not a new group: {0}")]
    NotANewGroup(String),
    #[error("packet for another group")]
    GroupIdMismatch,
    #[error("stale epoch; current epoch {current}")]
    StaleEpoch { current: u64 },
    #[error("future epoch; current epoch {current}")]
    FutureEpoch { current: u64 },
    #[error("sender is not a member")]
    NotAMember,
    #[error("signature does not verify")]
    BadSignature,
    #[error("handshake sent as PrivateMessage")]
    PrivateMessageHandshake,
    #[error("not a proposal")]
    NotAProposal,
    #[error("not a commit")]
    NotACommit,
    #[error("invalid proposal: {0}")]
    InvalidProposal(String),
    #[error("invalid commit: {0}")]
    InvalidCommit(String),
    #[error("commit references a proposal the gateway does not hold")]
    UnknownProposalReference,
    #[error("commit adds members without a welcome")]
    WelcomeRequired,
    #[error("welcome recipients are not the added key packages: {0}")]
    WelcomeRecipientsMismatch(String),
    #[error("group info does not match the new epoch: {0}")]
    GroupInfoMismatch(GroupInfoCheckError),
    #[error("GREASE values are not supported: {0}")]
    Grease(String),
    #[error("credential: {0}")]
    Identity(#[from] IdentityError),
    /// An added member's key package (its position among the commit's Add proposals).
    #[error("added key package {index}: {error}")]
    KeyPackage {
        index: usize,
        error: KeyPackageError,
    },
    #[error("stored group state: {0}")]
    State(#[from] GroupStateError),
}

impl GroupError {
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::Malformed(_) => ErrorCode::MalformedMlsMessage,
            GroupError::InvalidGroupInfo(_) => ErrorCode::InvalidGroupInfo,
            GroupError::InvalidRatchetTree(_) => ErrorCode::InvalidRatchetTree,
            GroupError::NotANewGroup(_) => ErrorCode::NotANewGroup,
            GroupError::GroupIdMismatch => ErrorCode::GroupIdMismatch,
            GroupError::StaleEpoch { .. } => ErrorCode::StaleEpoch,
            GroupError::FutureEpoch { .. } => ErrorCode::FutureEpoch,
            GroupError::NotAMember => ErrorCode::NotAMember,
            GroupError::BadSignature => ErrorCode::PacketSignatureInvalid,
            GroupError::PrivateMessageHandshake => ErrorCode::PrivateMessageHandshake,
            GroupError::NotAProposal => ErrorCode::NotAProposal,
            GroupError::NotACommit => ErrorCode::NotACommit,
            GroupError::InvalidProposal(_) => ErrorCode::InvalidProposal,
            GroupError::InvalidCommit(_) => ErrorCode::InvalidCommit,
            GroupError::UnknownProposalReference => ErrorCode::UnknownProposalReference,
            GroupError::WelcomeRequired => ErrorCode::WelcomeRequired,
            GroupError::WelcomeRecipientsMismatch(_) => ErrorCode::WelcomeRecipientsMismatch,
            GroupError::GroupInfoMismatch(GroupInfoCheckError::Malformed(_)) => {
                ErrorCode::MalformedMlsMessage
            }
            GroupError::GroupInfoMismatch(_) => ErrorCode::GroupInfoMismatch,
            GroupError::Grease(_) => ErrorCode::GreaseUnsupported,
            GroupError::Identity(error) => error.code(),
            GroupError::KeyPackage { error, .. } => error.code(),
            GroupError::State(_) => ErrorCode::Internal,
        }
    }

    /// The detail sent with the code, where the caller needs more than the description.
    pub fn detail(&self) -> Option<String> {
        match self {
            GroupError::StaleEpoch { current } | GroupError::FutureEpoch { current } => {
                Some(format!("current epoch {current}"))
            }
            GroupError::KeyPackage { index, .. } => Some(format!(
                "added key package {index}: {}",
                self.code().description()
            )),
            _ => None,
        }
    }
}

/// A group ready to validate the next operation: openmls' public state on our storage, the
/// epoch, and the proposals held for it (re-processed into openmls' proposal queue).
pub struct ActiveGroup {
    pub public: PublicGroup,
    pub storage: GroupStorage,
    pub epoch: u64,
    pub proposals: Vec<HeldProposal>,
    /// A commit's merge began and did not finish: the copy matches no epoch.
    spoiled: bool,
}

impl std::fmt::Debug for ActiveGroup {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ActiveGroup")
            .field("epoch", &self.epoch)
            .field("proposals", &self.proposals.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of a validated commit: what the store must apply, still without the
/// bookkeeping only the handler knows (welcome id, client ids, time).
#[derive(Debug)]
pub struct StagedCommitOutcome {
    pub from_epoch: u64,
    pub change: StateChange,
    pub messages: Vec<Vec<u8>>,
    pub group_info: Option<Vec<u8>>,
    /// The welcome packet, the new epoch's tree, and the handles of its recipients.
    pub welcome: Option<(Vec<u8>, Vec<u8>, Vec<String>)>,
    pub removed_handles: Vec<String>,
    /// `(handle, KeyPackageRef)` of every added member.
    pub added: Vec<(String, Vec<u8>)>,
    /// What the commit does, for the delivery-service draft's operations (when asked for).
    pub shape: Option<CommitShape>,
}

/// The GroupInfo that comes with a commit: none, a whole one (architecture draft, "Commits"),
/// or the delivery-service draft's `PartialGroupInfo` (extensions and signature) from which
/// the hub rebuilds it with its own GroupContext, confirmation tag and the committer's index.
#[derive(Debug, Clone, Copy)]
pub enum GroupInfoUpload<'a> {
    Absent,
    Whole(&'a [u8]),
    Partial {
        extensions: &'a [u8],
        signature: &'a [u8],
    },
}

/// A commit and what comes with it, as `ActiveGroup::stage_commit` takes it.
#[derive(Debug, Clone, Copy)]
pub struct CommitUpload<'a> {
    pub commit: &'a [u8],
    pub group_info: GroupInfoUpload<'a>,
    pub welcome: Option<&'a [u8]>,
    pub joining: Joining,
    /// Whether to describe the commit ([`StagedCommitOutcome::shape`]): it reads every
    /// member's credential, so only forwarded operations pay for it.
    pub describe: bool,
}

fn decode(bytes: &[u8]) -> Result<MlsMessageBodyIn, GroupError> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map(MlsMessageIn::extract)
        .map_err(|error| GroupError::Malformed(error.to_string()))
}

/// The client handle of a leaf under the application's identity provider: an invalid
/// credential answers with its own code, a foreign domain as the key package check does.
fn leaf_handle(leaf: &LeafNode, rules: &MemberRules<'_>) -> Result<String, GroupError> {
    member_handle(leaf, rules).map_err(leaf_error)
}

fn leaf_identity(leaf: &LeafNode, rules: &MemberRules<'_>) -> Result<MemberIdentity, GroupError> {
    member_identity(leaf, rules).map_err(leaf_error)
}

fn leaf_error(error: KeyPackageError) -> GroupError {
    match error {
        KeyPackageError::Identity(error) => GroupError::Identity(error),
        error => GroupError::KeyPackage { index: 0, error },
    }
}

/// Whether a commit that adds members must come with their Welcome: always at the hub; a
/// follower mirroring a commit gets the Welcome only if it has members among the added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joining {
    WelcomeRequired,
    WelcomeIfAny,
}

/// Group creation ("Group Creation"): a valid GroupInfo, a valid tree consistent with it,
/// epoch 0 and a single member whose credential the identity provider accepts.
pub fn create(
    group_info: &[u8],
    ratchet_tree: &[u8],
    rules: &MemberRules<'_>,
) -> Result<(ActiveGroup, NewGroup), GroupError> {
    let (group_info_in, tree) = decode_group_info_and_tree(group_info, ratchet_tree)?;
    let epoch = group_info_in.group_context().epoch().as_u64();
    if epoch != 0 {
        return Err(GroupError::NotANewGroup(format!("epoch {epoch}")));
    }
    let members = tree.leaves().count();
    if members != 1 {
        return Err(GroupError::NotANewGroup(format!("{members} members")));
    }
    let (active, new_group) = from_external(group_info, ratchet_tree, group_info_in, tree, None)?;
    let creator = active
        .public
        .leaf(LeafNodeIndex::new(0))
        .ok_or_else(|| GroupError::NotANewGroup("leaf 0 is blank".into()))?;
    leaf_handle(creator, rules)?;
    Ok((active, new_group))
}

/// A follower's mirror of a group whose hub is `hub` (DESIGN.md "Federation: one hub per
/// group"), from the hub's GroupInfo and tree: openmls validates both as for an external
/// join, and every member's credential must be valid under the application's provider.
pub fn import(
    group_info: &[u8],
    ratchet_tree: &[u8],
    rules: &MemberRules<'_>,
    hub: &str,
) -> Result<(ActiveGroup, NewGroup), GroupError> {
    let (group_info_in, tree) = decode_group_info_and_tree(group_info, ratchet_tree)?;
    let (active, new_group) =
        from_external(group_info, ratchet_tree, group_info_in, tree, Some(hub))?;
    active.member_names(rules)?;
    Ok((active, new_group))
}

fn decode_group_info_and_tree(
    group_info: &[u8],
    ratchet_tree: &[u8],
) -> Result<(VerifiableGroupInfo, RatchetTreeIn), GroupError> {
    let group_info_in = match decode(group_info)? {
        MlsMessageBodyIn::GroupInfo(group_info) => group_info,
        _ => return Err(GroupError::Malformed("not a GroupInfo".into())),
    };
    let tree = RatchetTreeIn::tls_deserialize_exact(ratchet_tree)
        .map_err(|error| GroupError::InvalidRatchetTree(error.to_string()))?;
    Ok((group_info_in, tree))
}

fn from_external(
    group_info: &[u8],
    ratchet_tree: &[u8],
    group_info_in: VerifiableGroupInfo,
    tree: RatchetTreeIn,
    hub: Option<&str>,
) -> Result<(ActiveGroup, NewGroup), GroupError> {
    let epoch = group_info_in.group_context().epoch().as_u64();
    let provider = super::crypto();
    let storage = GroupStorage::default();
    let public = PublicGroup::from_external(
        provider.crypto(),
        &storage,
        tree,
        group_info_in,
        ProposalStore::new(),
    )
    .map(|(public, _extensions)| public)
    .map_err(|error| {
        use openmls::prelude::CreationFromExternalError as E;
        match error {
            E::InvalidGroupInfoSignature | E::UnknownSender => {
                GroupError::InvalidGroupInfo(error.to_string())
            }
            E::WriteToStorageError(error) => GroupError::State(error),
            E::LeafNodeValidation(_) if super::grease::in_tree(ratchet_tree).used => {
                GroupError::Grease(error.to_string())
            }
            other => GroupError::InvalidRatchetTree(other.to_string()),
        }
    })?;
    let state = storage.snapshot();
    let new_group = NewGroup {
        group_id: public.group_id().as_slice().to_vec(),
        epoch,
        hub: hub.map(str::to_owned),
        state,
        group_info: group_info.to_vec(),
    };
    Ok((
        ActiveGroup {
            public,
            storage,
            epoch,
            proposals: Vec::new(),
            spoiled: false,
        },
        new_group,
    ))
}

/// Members a commit adds: handle and key package reference.
type Added = Vec<(String, Vec<u8>)>;

impl ActiveGroup {
    /// Whether a refused commit got as far as changing this copy (then it must be dropped).
    pub fn spoiled(&self) -> bool {
        self.spoiled
    }

    /// Every member's name (`handle`, or `handle@domain` for another domain's), in leaf
    /// order; refused if a credential is not valid under the application's provider.
    pub fn member_names(&self, rules: &MemberRules<'_>) -> Result<Vec<String>, GroupError> {
        self.public
            .members()
            .filter_map(|member| self.public.leaf(member.index))
            .map(|leaf| leaf_handle(leaf, rules))
            .collect()
    }

    /// How many members the group has.
    pub fn member_count(&self) -> usize {
        self.public.members().count()
    }

    pub fn head(&self) -> GroupHead {
        GroupHead {
            epoch: self.epoch,
            proposals: self.proposals.len(),
        }
    }

    /// Restores a stored group with `PublicGroup::load` and re-processes its held proposals
    /// into openmls' queue (a proposal no longer valid, e.g. its key package has expired
    /// since, is left out: a commit citing it is then refused).
    pub fn restore(group_id: &[u8], stored: StoredGroup) -> Result<ActiveGroup, GroupError> {
        let storage = GroupStorage::new(stored.state);
        let mut public = PublicGroup::load(&storage, &GroupId::from_slice(group_id))?
            .ok_or_else(|| GroupStateError::Bridge("stored state is incomplete".into()))?;
        let provider = super::crypto();
        for held in &stored.proposals {
            let message = match protocol_message(&held.packet) {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "a held proposal no longer decodes");
                    continue;
                }
            };
            match public.process_message(provider.crypto(), message) {
                Ok(processed) => match processed.into_content() {
                    ProcessedMessageContent::ProposalMessage(queued)
                    | ProcessedMessageContent::ExternalJoinProposalMessage(queued) => {
                        public.add_proposal(&storage, *queued)?;
                    }
                    _ => tracing::warn!("a held proposal is not a proposal"),
                },
                Err(error) => tracing::warn!(%error, "a held proposal is no longer valid"),
            }
        }
        Ok(ActiveGroup {
            public,
            storage,
            epoch: stored.epoch,
            proposals: stored.proposals,
            spoiled: false,
        })
    }

    /// Framing checks with their own answers before openmls sees the message: a
    /// PublicMessage handshake of the expected content type, for this group and epoch.
    fn check_framing(
        &self,
        group_id: &[u8],
        packet: &[u8],
        expected: ContentType,
    ) -> Result<ProtocolMessage, GroupError> {
        let message = protocol_message(packet)?;
        if message.group_id().as_slice() != group_id {
            return Err(GroupError::GroupIdMismatch);
        }
        let content_type = message.content_type();
        if content_type != expected {
            return Err(match expected {
                ContentType::Commit => GroupError::NotACommit,
                _ => GroupError::NotAProposal,
            });
        }
        let epoch = message.epoch().as_u64();
        if epoch < self.epoch {
            return Err(GroupError::StaleEpoch {
                current: self.epoch,
            });
        }
        if epoch > self.epoch {
            return Err(GroupError::FutureEpoch {
                current: self.epoch,
            });
        }
        Ok(message)
    }

    /// A proposal for the current epoch ("Proposals"): validated by openmls, an added key
    /// package checked like a queue upload, then queued for commits that cite it.
    pub fn accept_proposal(
        &mut self,
        group_id: &[u8],
        packet: &[u8],
        rules: &MemberRules<'_>,
    ) -> Result<(HeldProposal, ProposalShape), GroupError> {
        let message = self.check_framing(group_id, packet, ContentType::Proposal)?;
        let provider = super::crypto();
        let processed = self
            .public
            .process_message(provider.crypto(), message)
            .map_err(|error| processing_error(error, packet, GroupError::InvalidProposal))?;
        let sender = processed.sender().clone();
        let queued = match processed.into_content() {
            ProcessedMessageContent::ProposalMessage(queued)
            | ProcessedMessageContent::ExternalJoinProposalMessage(queued) => *queued,
            _ => return Err(GroupError::NotAProposal),
        };
        if let openmls::prelude::Proposal::Add(add) = queued.proposal() {
            check_member_key_package(add.key_package(), rules)
                .map_err(|error| GroupError::KeyPackage { index: 0, error })?;
        }
        let shape = self.describe_proposal(&sender, queued.proposal(), rules);
        let reference = queued.proposal_reference_ref().as_slice().to_vec();
        let held = HeldProposal {
            reference,
            packet: packet.to_vec(),
        };
        if !self
            .proposals
            .iter()
            .any(|other| other.reference == held.reference)
        {
            self.public.add_proposal(&self.storage, queued)?;
        }
        Ok((held, shape))
    }

    /// The member name of a handshake message's sender when it is a member of this epoch
    /// (`None` for other senders, such as an external joiner, and for messages of another
    /// epoch), without processing it: a cheap look before the full validation.
    pub fn member_sender(
        &self,
        packet: &[u8],
        rules: &MemberRules<'_>,
    ) -> Result<Option<String>, GroupError> {
        let MlsMessageBodyIn::PublicMessage(message) = decode(packet)? else {
            return Ok(None);
        };
        // Only this epoch's leaves name its senders (a slot may hold another member later).
        if message.epoch().as_u64() != self.epoch {
            return Ok(None);
        }
        match message.sender() {
            Sender::Member(index) => self
                .public
                .leaf(*index)
                .map(|leaf| leaf_handle(leaf, rules))
                .transpose(),
            _ => Ok(None),
        }
    }

    /// Records a proposal the store accepted.
    pub fn hold(&mut self, proposal: HeldProposal) {
        if !self
            .proposals
            .iter()
            .any(|other| other.reference == proposal.reference)
        {
            self.proposals.push(proposal);
        }
    }

    /// Validates a commit for the current epoch and merges it into this copy ("Commits").
    /// Its steps: the proposals it takes by reference, the members it adds and removes, the
    /// Welcome for the added ones, its shape (for a forwarded commit), the merge, and the new
    /// epoch's GroupInfo.
    /// On an error after the merge began the copy is [`Self::spoiled`]: the caller drops it.
    pub fn stage_commit(
        &mut self,
        group_id: &[u8],
        upload: &CommitUpload<'_>,
        rules: &MemberRules<'_>,
    ) -> Result<StagedCommitOutcome, GroupError> {
        self.stage_commit_with(group_id, upload, rules, &Crypto::checking())
    }

    /// [`Self::stage_commit`] with the signatures checked by `crypto`: with
    /// [`Crypto::deferring`], the outcome holds only if every signature it wrote down does,
    /// and the caller drops the copy (merged into the new epoch) if one does not.
    pub fn stage_commit_with(
        &mut self,
        group_id: &[u8],
        upload: &CommitUpload<'_>,
        rules: &MemberRules<'_>,
        crypto: &Crypto,
    ) -> Result<StagedCommitOutcome, GroupError> {
        let CommitUpload {
            commit: commit_packet,
            group_info,
            welcome: welcome_packet,
            joining,
            describe,
        } = *upload;
        let message = self.check_framing(group_id, commit_packet, ContentType::Commit)?;
        let processed = self
            .public
            .process_message(crypto, message)
            .map_err(|error| processing_error(error, commit_packet, GroupError::InvalidCommit))?;
        let sender = processed.sender().clone();
        let staged = match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => *staged,
            _ => return Err(GroupError::NotACommit),
        };
        let mut messages = self.proposals_by_reference(&staged)?;
        messages.push(commit_packet.to_vec());
        let (added, removed_handles) = self.members_changed(&staged, rules)?;
        let welcome = self.checked_welcome(&added, welcome_packet, joining)?;
        let shape = if describe {
            Some(self.describe_commit(&sender, &staged, rules)?)
        } else {
            None
        };
        let signer = self.committer_leaf(&sender, &staged);
        let change = self.merge(staged)?;
        let from_epoch = self.epoch;
        self.epoch += 1;
        self.proposals.clear();
        let group_info = self.new_group_info(group_info, signer, crypto)?;
        let welcome = welcome.map(|packet| {
            let handles = added.iter().map(|(handle, _)| handle.clone()).collect();
            (packet, self.storage.ratchet_tree(), handles)
        });
        self.spoiled = false;
        Ok(StagedCommitOutcome {
            from_epoch,
            change,
            messages,
            group_info,
            welcome,
            removed_handles,
            added,
            shape,
        })
    }

    /// The proposals the commit takes by reference, in its order, as they were uploaded.
    fn proposals_by_reference(&self, staged: &StagedCommit) -> Result<Vec<Vec<u8>>, GroupError> {
        let mut messages = Vec::new();
        for queued in staged.queued_proposals() {
            if queued.proposal_or_ref_type() == ProposalOrRefType::Reference {
                let reference = queued.proposal_reference_ref().as_slice();
                let held = self
                    .proposals
                    .iter()
                    .find(|held| held.reference == reference)
                    .ok_or(GroupError::UnknownProposalReference)?;
                messages.push(held.packet.clone());
            }
        }
        Ok(messages)
    }

    /// The members the commit adds (handle and key package reference, each key package
    /// checked like a queue upload) and removes (by handle, while their leaves are still in
    /// the tree); new or changed leaves of members and external joiners are checked too.
    fn members_changed(
        &self,
        staged: &StagedCommit,
        rules: &MemberRules<'_>,
    ) -> Result<(Added, Vec<String>), GroupError> {
        let mut added = Vec::new();
        for (index, add) in staged.add_proposals().enumerate() {
            let member = check_member_key_package(add.add_proposal().key_package(), rules)
                .map_err(|error| GroupError::KeyPackage { index, error })?;
            added.push((member.handle, member.reference));
        }
        for update in staged.update_proposals() {
            leaf_handle(update.update_proposal().leaf_node(), rules)?;
        }
        if let Some(leaf) = staged.update_path_leaf_node() {
            leaf_handle(leaf, rules)?;
        }
        let mut removed_handles = Vec::new();
        for remove in staged.remove_proposals() {
            if let Some(leaf) = self.public.leaf(remove.remove_proposal().removed())
                && let Ok(handle) = leaf_handle(leaf, rules)
            {
                removed_handles.push(handle);
            }
        }
        Ok((added, removed_handles))
    }

    /// The Welcome that must come with a commit adding members (when `joining` requires one):
    /// of the group's cipher suite, for exactly the added key packages.
    fn checked_welcome(
        &self,
        added: &[(String, Vec<u8>)],
        welcome_packet: Option<&[u8]>,
        joining: Joining,
    ) -> Result<Option<Vec<u8>>, GroupError> {
        let packet = match (added.is_empty(), welcome_packet) {
            (true, None) => return Ok(None),
            (false, None) if joining == Joining::WelcomeRequired => {
                return Err(GroupError::WelcomeRequired);
            }
            (false, None) => return Ok(None),
            (true, Some(_)) => {
                return Err(GroupError::WelcomeRecipientsMismatch(
                    "the commit adds no member".into(),
                ));
            }
            (false, Some(packet)) => packet,
        };
        let welcome = match decode(packet)? {
            MlsMessageBodyIn::Welcome(welcome) => welcome,
            _ => return Err(GroupError::Malformed("not a Welcome".into())),
        };
        if welcome.ciphersuite() != self.public.ciphersuite() {
            return Err(GroupError::WelcomeRecipientsMismatch(
                "cipher suite differs from the group's".into(),
            ));
        }
        let recipients: BTreeSet<Vec<u8>> = welcome
            .secrets()
            .iter()
            .map(|secrets| secrets.new_member().as_slice().to_vec())
            .collect();
        let expected: BTreeSet<Vec<u8>> = added
            .iter()
            .map(|(_, reference)| reference.clone())
            .collect();
        if recipients != expected || welcome.secrets().len() != added.len() {
            return Err(GroupError::WelcomeRecipientsMismatch(format!(
                "{} recipients for {} added key packages",
                welcome.secrets().len(),
                added.len()
            )));
        }
        Ok(Some(packet.to_vec()))
    }

    /// The leaf that signs the new epoch's GroupInfo: the committer's.
    fn committer_leaf(&self, sender: &Sender, staged: &StagedCommit) -> Option<u32> {
        match sender {
            Sender::Member(index) => Some(index.u32()),
            Sender::NewMemberCommit => self
                .public
                .ext_commit_sender_index(staged)
                .ok()
                .map(|index| index.u32()),
            _ => None,
        }
    }

    /// Merges `staged` into this copy and answers the change to store; the copy is spoiled
    /// until the caller clears it. Test builds check the recorded change against a full
    /// comparison of the trees.
    fn merge(&mut self, staged: StagedCommit) -> Result<StateChange, GroupError> {
        #[cfg(debug_assertions)]
        let before = self.storage.snapshot();
        self.storage.clear_change();
        self.spoiled = true;
        self.public
            .merge_commit(&self.storage, staged)
            .map_err(|error| GroupError::InvalidCommit(error.to_string()))?;
        let change = self.storage.take_change();
        #[cfg(debug_assertions)]
        assert_eq!(change, before.change_to(&self.storage.snapshot()));
        Ok(change)
    }

    /// The new epoch's GroupInfo: as uploaded, or rebuilt from its extensions and the
    /// committer's signature, and checked against the merged state either way.
    fn new_group_info(
        &self,
        upload: GroupInfoUpload<'_>,
        signer: Option<u32>,
        crypto: &impl openmls_traits::crypto::OpenMlsCrypto,
    ) -> Result<Option<Vec<u8>>, GroupError> {
        let group_info = match upload {
            GroupInfoUpload::Absent => None,
            GroupInfoUpload::Whole(bytes) => Some(bytes.to_vec()),
            GroupInfoUpload::Partial {
                extensions,
                signature,
            } => {
                let signer = signer.ok_or_else(|| {
                    GroupError::InvalidCommit("no committer to sign the group info".into())
                })?;
                Some(
                    rebuild_group_info(&self.public, signer, extensions, signature)
                        .map_err(GroupError::GroupInfoMismatch)?,
                )
            }
        };
        if let Some(bytes) = &group_info {
            let group_info_in = match decode(bytes)? {
                MlsMessageBodyIn::GroupInfo(group_info) => group_info,
                _ => return Err(GroupError::Malformed("not a GroupInfo".into())),
            };
            check_group_info(&self.public, group_info_in, crypto)
                .map_err(GroupError::GroupInfoMismatch)?;
        }
        Ok(group_info)
    }

    /// What a staged (not yet merged) commit does, in the operations' terms.
    fn describe_commit(
        &self,
        sender: &Sender,
        staged: &StagedCommit,
        rules: &MemberRules<'_>,
    ) -> Result<CommitShape, GroupError> {
        let mut shape = CommitShape {
            external: matches!(sender, Sender::NewMemberCommit),
            path: staged.update_path_leaf_node().is_some(),
            ..CommitShape::default()
        };
        for member in self.public.members() {
            if let Some(leaf) = self.public.leaf(member.index) {
                let user = leaf_identity(leaf, rules)?.user;
                shape
                    .users_before
                    .entry(user)
                    .or_default()
                    .push(member.index.u32());
            }
        }
        let committer = match sender {
            Sender::Member(index) => {
                shape.committer_leaf = Some(index.u32());
                let leaf = self.public.leaf(*index).ok_or(GroupError::NotAMember)?;
                let before = leaf_identity(leaf, rules)?;
                if let Some(new_leaf) = staged.update_path_leaf_node() {
                    shape.credential_changed =
                        encoded(leaf.credential())? != encoded(new_leaf.credential())?;
                    if shape.credential_changed {
                        shape.committer_renamed = leaf_identity(new_leaf, rules)? != before;
                    }
                }
                before
            }
            _ => {
                let leaf = staged.update_path_leaf_node().ok_or_else(|| {
                    GroupError::InvalidCommit("external commit without path".into())
                })?;
                leaf_identity(leaf, rules)?
            }
        };
        shape.committer = committer.name;
        shape.committer_user = committer.user;
        for queued in staged.queued_proposals() {
            let proposal_type = queued.proposal().proposal_type();
            if queued.proposal_or_ref_type() == ProposalOrRefType::Reference {
                shape.by_reference.push(proposal_type);
            } else {
                shape.by_value.push(proposal_type);
            }
            match queued.proposal() {
                Proposal::Add(add) => {
                    let user = leaf_identity(add.key_package().leaf_node(), rules)?.user;
                    shape.added_users.push(user);
                }
                Proposal::Remove(remove)
                    if queued.proposal_or_ref_type() == ProposalOrRefType::Proposal =>
                {
                    let leaf = remove.removed();
                    if let Some(removed) = self.public.leaf(leaf) {
                        let user = leaf_identity(removed, rules)?.user;
                        shape.removed_by_value.push((leaf.u32(), user));
                    }
                }
                Proposal::ReInit(reinit) => {
                    // `struct { opaque group_id<V>; ... } ReInit` (RFC 9420, 12.1.5); openmls
                    // keeps the field crate-private, so it is read from the encoding.
                    let bytes = encoded(reinit)?;
                    let group_id = <tls_codec::VLBytes as tls_codec::Deserialize>::tls_deserialize(
                        &mut bytes.as_slice(),
                    )
                    .map_err(|error| GroupError::Malformed(error.to_string()))?;
                    shape.reinit_group = Some(group_id.as_slice().to_vec());
                }
                _ => {}
            }
        }
        Ok(shape)
    }

    /// What a proposal this group accepted does (for a self remove).
    fn describe_proposal(
        &self,
        sender: &Sender,
        proposal: &Proposal,
        rules: &MemberRules<'_>,
    ) -> ProposalShape {
        let sender_leaf = match sender {
            Sender::Member(index) => Some(*index),
            _ => None,
        };
        ProposalShape {
            proposal_type: proposal.proposal_type(),
            sender_leaf: sender_leaf.map(|index| index.u32()),
            removed_leaf: match proposal {
                Proposal::Remove(remove) => Some(remove.removed().u32()),
                _ => None,
            },
            sender: sender_leaf
                .and_then(|index| self.public.leaf(index))
                .and_then(|leaf| leaf_handle(leaf, rules).ok()),
        }
    }
}

fn encoded(value: &impl openmls::prelude::tls_codec::Serialize) -> Result<Vec<u8>, GroupError> {
    value
        .tls_serialize_detached()
        .map_err(|error| GroupError::Malformed(error.to_string()))
}

fn protocol_message(packet: &[u8]) -> Result<ProtocolMessage, GroupError> {
    match decode(packet)? {
        MlsMessageBodyIn::PublicMessage(message) => Ok(message.into()),
        MlsMessageBodyIn::PrivateMessage(_) => Err(GroupError::PrivateMessageHandshake),
        _ => Err(GroupError::Malformed(
            "not a PublicMessage handshake".into(),
        )),
    }
}

/// openmls' refusal of `packet` as the gateway's error; `invalid` wraps what has no code of
/// its own, unless the packet carries GREASE values (decided from its bytes, `mls::grease`).
fn processing_error(
    error: PublicProcessMessageError,
    packet: &[u8],
    invalid: fn(String) -> GroupError,
) -> GroupError {
    match error {
        PublicProcessMessageError::IncompatibleWireFormat => GroupError::PrivateMessageHandshake,
        PublicProcessMessageError::ValidationError(ValidationError::WrongGroupId) => {
            GroupError::GroupIdMismatch
        }
        PublicProcessMessageError::ValidationError(ValidationError::UnknownMember) => {
            GroupError::NotAMember
        }
        PublicProcessMessageError::ValidationError(
            ValidationError::InvalidSignature | ValidationError::InvalidLeafNodeSignature,
        ) => GroupError::BadSignature,
        PublicProcessMessageError::InvalidCommit(StageCommitError::MissingProposal) => {
            GroupError::UnknownProposalReference
        }
        other if super::grease::in_message(packet).used => GroupError::Grease(other.to_string()),
        other => invalid(other.to_string()),
    }
}

/// An application message's group and epoch, refused unless it is a PrivateMessage of
/// content type application (the only thing routed without being read).
pub fn application_message(message: &[u8]) -> Result<(Vec<u8>, u64), GroupError> {
    let protocol = openmls::prelude::MlsMessageIn::tls_deserialize_exact(message)
        .map_err(|error| GroupError::Malformed(error.to_string()))?
        .try_into_protocol_message()
        .map_err(|_| GroupError::Malformed("not a PrivateMessage".into()))?;
    if protocol.is_handshake_message()
        || protocol.content_type() != openmls::prelude::ContentType::Application
    {
        return Err(GroupError::Malformed("not an application message".into()));
    }
    if !matches!(
        protocol,
        openmls::prelude::ProtocolMessage::PrivateMessage(_)
    ) {
        return Err(GroupError::Malformed("not a PrivateMessage".into()));
    }
    Ok((
        protocol.group_id().as_slice().to_vec(),
        protocol.epoch().as_u64(),
    ))
}
