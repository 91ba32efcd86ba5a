//! The delivery-service draft's structs (draft-robert-mimi-delivery-service, 2023-09,
//! "Framing and processing overview", "DS assisted joining", "Client-initiated operations";
//! the queueing-service pair from its 2023-05 revision): the bodies of the MIMI Transport
//! endpoints between gateways. This module owns their encoding, byte for byte where the draft
//! defines them; where it says TODO, our choice is documented in `docs/federation-wire.md` and
//! versioned by [`DS_PROTOCOL_VERSION`] (a receiver refuses any other version with
//! `ErrorCode::UnsupportedVersion`).
//!
//! MLS values (MLSMessage, LeafNode, `optional<Node> ratchet_tree<V>`, KeyPackage, extension
//! vectors) are embedded without a length prefix, as in the draft: [`Mls`] finds where one
//! ends by decoding it with openmls and keeps its exact bytes.
//!
//! ```text
//! uint16 DSProtocolVersion;                                  // 1
//!
//! enum { handle(1), client_id(2), (255) } ClientIdType;
//! struct {
//!     opaque application[16];    // the ApplicationId, the same on every federating gateway
//!     opaque domain<V>;          // the client's provider domain (UTF-8)
//!     ClientIdType type;
//!     select (type) {
//!         case handle:    opaque handle<V>;      // the identity provider's client handle (UTF-8)
//!         case client_id: opaque client_id[16];  // the registry's client UUID at its home gateway
//!     };
//! } ClientID;
//! struct { opaque application[16]; opaque domain<V>; opaque account<V>; } UserID;
//!
//! enum { Anonymous(0), ClientSignature(1), (255) } DSAuthType;
//! struct {
//!     DSAuthType auth_type;
//!     select (auth_type) {
//!         case Anonymous:       struct {};
//!         case ClientSignature: uint32 sender_index; opaque signature<0..255>;
//!     };
//! } DSAuthData;
//!
//! enum {
//!     ds_request_group_id(0), ds_create_group(1), ds_delete_group(2), ds_add_users(3),
//!     ds_remove_users(4), ds_add_clients(5), ds_remove_clients(6), ds_self_remove_client(7),
//!     ds_update_client(8), ds_external_join(9), ds_send_message(10),
//!     ds_signature_public_key(11), ds_key_packages(12), ds_connection_key_packages(13),
//!     ds_re_initialize_group(14),
//!     ds_welcome_info(15), ds_external_commit_info(16), ds_discover_clients(17),   // ours
//!     ds_select_key_packages(18), ds_select_connection_key_packages(19),           // ours
//!     ds_upload_proposal(20), ds_commit(21), ds_send_message_from(22),             // ours
//!     (255)
//! } DSRequestType;
//!
//! struct {
//!     DSRequestType request_type;
//!     select (request_type) {
//!         case ds_request_group_id:        struct {};
//!         case ds_create_group:            CreateGroupRequest;
//!         case ds_delete_group:            DeleteGroupRequest;
//!         case ds_add_users:               AddUsersRequest;
//!         case ds_remove_users:            RemoveUsersRequest;
//!         case ds_add_clients:             AddClientsRequest;
//!         case ds_remove_clients:          RemoveClientsRequest;
//!         case ds_self_remove_client:      SelfRemoveClientRequest;
//!         case ds_update_client:           UpdateClientRequest;
//!         case ds_external_join:           ExternalJoinRequest;
//!         case ds_send_message:            SendMessageRequest;
//!         case ds_signature_public_key:    struct {};
//!         case ds_key_packages:            KeyPackagesRequest;
//!         case ds_connection_key_packages: ConnectionKeyPackagesRequest;
//!         case ds_re_initialize_group:     ReInitializeGroupRequest;
//!         case ds_welcome_info:            WelcomeInfoRequest;
//!         case ds_external_commit_info:    ExternalCommitInfoRequest;
//!         case ds_discover_clients:        DiscoverClientsRequest;
//!         case ds_select_key_packages:     KeyPackagesRequest; KeyPackageSelector;
//!         case ds_select_connection_key_packages:
//!                                          ConnectionKeyPackagesRequest; ClientID receiver;
//!         case ds_upload_proposal:         UploadProposalRequest;  // MLSMessage proposal;
//!         case ds_commit:                  CommitRequest;          // as AddUsersRequest
//!         case ds_send_message_from:       SendMessageRequest; ClientID sender;
//!     };
//! } DSRequestBody;
//!
//! struct {
//!     DSProtocolVersion version;
//!     DSRequestBody request_body;
//!     DSAuthData authentication_data;
//! } DSRequest;
//! struct {
//!     DSProtocolVersion protocol_version;
//!     DSRequestBody request_body;
//!     uint32 sender_index;
//! } ClientSignatureTBS;
//!
//! struct { Extension group_info_extensions<V>; opaque signature<V>; } PartialGroupInfo;
//! struct { MLSMessage commit; PartialGroupInfo partial_group_info; } MLSGroupUpdate;
//! struct { opaque token<V>; } FanoutAuthToken;
//!
//! struct { opaque group_id<V>; LeafNode leaf_node; MLSMessage group_info; } CreateGroupRequest;
//! enum { invalid_group_id(0), invalid_leaf_node(1), invalid_group_info(2) } CreateGroupResponse;
//! struct { MLSGroupUpdate group_update; } DeleteGroupRequest;      // also RemoveUsersRequest,
//!                                         // RemoveClientsRequest, ExternalJoinRequest
//! struct { MLSGroupUpdate group_update; MLSMessage welcome_messages<V>; } AddUsersRequest;
//!                                         // also AddClientsRequest
//! struct { MLSMessage proposal; } SelfRemoveClientRequest;
//! struct { MLSGroupUpdate group_update; optional<FanoutAuthToken> token; } UpdateClientRequest;
//! struct { MLSMessage application_message; } SendMessageRequest;
//! struct { ClientID client_identifiers<V>; } KeyPackagesRequest;
//! struct { UserID user_identifier; } ConnectionKeyPackagesRequest;
//! struct { MLSGroupUpdate commit; } ReInitializeGroupRequest;
//! struct { opaque group_id<V>; uint64 epoch; } WelcomeInfoRequest;               // ours
//! struct { opaque group_id<V>; } ExternalCommitInfoRequest;                     // ours
//! struct { opaque application[16]; opaque tag<V>; } DiscoverClientsRequest;     // ours
//! struct {                                                                       // ours
//!     uint16 protocol_version; uint16 cipher_suite; opaque app_label<V>; ClientID receiver;
//! } KeyPackageSelector;
//!
//! enum {
//!     Ok(0), Error(1), GroupID(2), WelcomeInfo(3), ExternalCommitInfo(4),
//!     SignaturePublicKey(5), KeyPackages(6), ConnectionKeyPackages(7),
//!     Clients(8), SelectedKeyPackages(9),                                        // ours
//!     (255)
//! } DSResponseType;
//! struct { uint16 code; opaque detail<V>; } DSError;          // code: an ErrorCode; UTF-8 detail
//! struct { MLSMessage key_package; bool is_final_key; } SelectedKeyPackage;      // ours
//! struct {
//!     DSResponseType response_type;
//!     select (response_type) {
//!         case Ok:                    struct {};
//!         case Error:                 DSError error;
//!         case GroupID:               opaque group_id<V>;
//!         case WelcomeInfo:           optional<Node> ratchet_tree<V>;
//!         case ExternalCommitInfo:    MLSMessage group_info; optional<Node> ratchet_tree<V>;
//!         case SignaturePublicKey:    SignaturePublicKey signature_public_key;   // opaque<V>
//!         case KeyPackages:           KeyPackage key_packages<V>;
//!         case ConnectionKeyPackages: KeyPackage key_packages<V>;
//!         case Clients:               ClientRecord clients<V>;
//!         case SelectedKeyPackages:   SelectedKeyPackage key_packages<V>;
//!     };
//! } DSResponseBody;
//! struct { DSProtocolVersion protocol_version; DSResponseBody response_body; } DSResponse;
//!
//! struct {
//!     DSProtocolVersion protocol_version;
//!     ClientID recipient_ids<V>;               // the draft: opaque recipient_ids<V>
//!     FanoutAuthToken fanout_auth_tokens<V>;
//!     MLSMessage mls_message;
//! } DSFanoutRequest;
//! enum { Ok(0), Error(1), (255) } DSFanoutResponseType;
//! struct { uint16 code; opaque detail<V>; } DSFanoutError;
//! struct {
//!     DSFanoutResponseType response_type;
//!     select (response_type) { case Ok: struct {}; case Error: DSFanoutError error; };
//! } DSFanoutResponseBody;
//! struct {
//!     DSProtocolVersion protocol_version;
//!     DSFanoutResponseBody response_body;      // the draft: DSResponseBody, a slip
//! } DSFanoutResponse;
//!
//! struct {
//!     opaque client_queue_information<V>;      // the TLS encoding of a ClientID
//!     MLSMessage message;
//! } QueueingServiceRequest;
//! enum { ok(0), invalid_client_queue_information(1), (255) } QueueingServiceResponse;
//! ```

use std::io::Write;
use std::marker::PhantomData;

use tls_codec::{Deserialize, Serialize, Size, TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

use crate::codec::{DecodeError, WireBool};
use crate::error::ErrorCode;
use crate::registry::ClientRecord;

/// `DSProtocolVersion`: the leading `uint16` of every DS request and response.
pub type DSProtocolVersion = u16;

/// The format of these structs; a receiver refuses any other with `UnsupportedVersion`.
pub const DS_PROTOCOL_VERSION: DSProtocolVersion = 1;

/// Checks the leading `DSProtocolVersion` of a decoded DS body.
pub fn check_version(version: DSProtocolVersion) -> Result<(), DecodeError> {
    if version == DS_PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion(version))
    }
}

/// An MLS value embedded as its own TLS encoding, kept as the exact bytes received; `T` is
/// the openmls type whose decoder says where it ends (it is decoded only for that).
pub struct Mls<T> {
    bytes: Vec<u8>,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Mls<T> {
    fn clone(&self) -> Self {
        Mls {
            bytes: self.bytes.clone(),
            _kind: PhantomData,
        }
    }
}

impl<T> PartialEq for Mls<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<T> Eq for Mls<T> {}

impl<T> std::fmt::Debug for Mls<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mls({} bytes)", self.bytes.len())
    }
}

impl<T: Deserialize> Mls<T> {
    /// `bytes` must be exactly one `T`: truncated values and trailing bytes are refused.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        let mut reader = bytes.as_slice();
        T::tls_deserialize(&mut reader)?;
        if !reader.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Mls {
            bytes,
            _kind: PhantomData,
        })
    }
}

impl<T> Mls<T> {
    /// The value's TLS encoding, exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// A reader that keeps a copy of every byte read through it.
struct Recording<'r, R> {
    inner: &'r mut R,
    seen: Vec<u8>,
}

impl<R: std::io::Read> std::io::Read for Recording<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.seen.extend_from_slice(&buffer[..read]);
        Ok(read)
    }
}

impl<T: Deserialize> Deserialize for Mls<T> {
    fn tls_deserialize<R: std::io::Read>(bytes: &mut R) -> Result<Self, tls_codec::Error> {
        let mut recording = Recording {
            inner: bytes,
            seen: Vec::new(),
        };
        T::tls_deserialize(&mut recording)?;
        Ok(Mls {
            bytes: recording.seen,
            _kind: PhantomData,
        })
    }
}

impl<T> Size for Mls<T> {
    fn tls_serialized_len(&self) -> usize {
        self.bytes.len()
    }
}

impl<T> Serialize for Mls<T> {
    fn tls_serialize<W: Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        writer.write_all(&self.bytes)?;
        Ok(self.bytes.len())
    }
}

/// `MLSMessage` (RFC 9420, section 6).
pub type MlsMessage = Mls<openmls::prelude::MlsMessageIn>;
/// `optional<Node> ratchet_tree<V>` (RFC 9420, section 12.4.3.3).
pub type RatchetTree = Mls<openmls::prelude::RatchetTreeIn>;
/// A bare `KeyPackage` (not wrapped in an MLSMessage), as the draft's `KeyPackage key_packages<V>`.
pub type KeyPackage = Mls<openmls::prelude::KeyPackageIn>;
/// A bare `LeafNode`. openmls 0.9.2 keeps `LeafNodeIn` crate-private (its module
/// `treesync::node` is `pub(crate)` and nothing re-exports it), so the end is found by
/// `UpdateProposalIn`, RFC 9420's `struct { LeafNode leaf_node; } Update`: the same encoding,
/// decoded by openmls' own `LeafNodeIn`.
pub type LeafNode = Mls<openmls::prelude::UpdateProposalIn>;
/// `Extension group_info_extensions<V>`: openmls' GroupInfo extension list (duplicate
/// extension types and types not allowed in a GroupInfo are refused).
pub type Extensions = Mls<openmls::prelude::Extensions<openmls::messages::group_info::GroupInfo>>;

/// `opaque<0..255>`: a one-byte length prefix; longer contents are refused on encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShortBytes(pub Vec<u8>);

impl ShortBytes {
    /// Longest content a one-byte length can carry.
    pub const MAX_LEN: usize = 255;
}

impl Size for ShortBytes {
    fn tls_serialized_len(&self) -> usize {
        1 + self.0.len()
    }
}

impl Serialize for ShortBytes {
    fn tls_serialize<W: Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        let length =
            u8::try_from(self.0.len()).map_err(|_| tls_codec::Error::InvalidVectorLength)?;
        writer.write_all(&[length])?;
        writer.write_all(&self.0)?;
        Ok(1 + self.0.len())
    }
}

impl Deserialize for ShortBytes {
    fn tls_deserialize<R: std::io::Read>(bytes: &mut R) -> Result<Self, tls_codec::Error> {
        let length = usize::from(u8::tls_deserialize(bytes)?);
        let mut content = vec![0u8; length];
        bytes
            .read_exact(&mut content)
            .map_err(|_| tls_codec::Error::EndOfStream)?;
        Ok(ShortBytes(content))
    }
}

/// `ClientIdType`: the tag of [`ClientRef`].
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum ClientIdType {
    Handle = 1,
    ClientId = 2,
}

/// Which client a [`ClientId`] names at its home gateway.
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum ClientRef {
    /// The client handle the application's identity provider derives from its credential.
    #[tls_codec(discriminant = "ClientIdType::Handle")]
    Handle(String),
    /// The registry's client UUID at the client's home gateway.
    #[tls_codec(discriminant = "ClientIdType::ClientId")]
    ClientId([u8; 16]),
}

impl ClientRef {
    pub fn id_type(&self) -> ClientIdType {
        match self {
            ClientRef::Handle(_) => ClientIdType::Handle,
            ClientRef::ClientId(_) => ClientIdType::ClientId,
        }
    }
}

/// The draft's `ClientID` (TODO there): the shared application, the client's domain, and the
/// client by handle or by id.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ClientId {
    pub application: [u8; 16],
    pub domain: String,
    pub client: ClientRef,
}

/// The draft's `UserID` (TODO there): an account of the application's identity provider.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UserId {
    pub application: [u8; 16],
    pub domain: String,
    pub account: String,
}

/// `DSAuthType` (the draft gives no values; ours are 0 and 1).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSAuthType {
    Anonymous = 0,
    ClientSignature = 1,
}

/// `DSAuthData`, tagged by [`DSAuthType`].
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSAuthData {
    #[tls_codec(discriminant = "DSAuthType::Anonymous")]
    Anonymous,
    /// A signature over [`ClientSignatureTBS`] by the leaf at `sender_index`.
    #[tls_codec(discriminant = "DSAuthType::ClientSignature")]
    ClientSignature {
        sender_index: u32,
        signature: ShortBytes,
    },
}

impl DSAuthData {
    pub fn auth_type(&self) -> DSAuthType {
        match self {
            DSAuthData::Anonymous => DSAuthType::Anonymous,
            DSAuthData::ClientSignature { .. } => DSAuthType::ClientSignature,
        }
    }
}

/// The draft's "Enqueue authorization" token.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct FanoutAuthToken {
    pub token: VLBytes,
}

/// What a client adds to a commit so the DS can produce the new epoch's GroupInfo.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct PartialGroupInfo {
    pub group_info_extensions: Extensions,
    pub signature: VLBytes,
}

/// A commit and its [`PartialGroupInfo`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct MLSGroupUpdate {
    pub commit: MlsMessage,
    pub partial_group_info: PartialGroupInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct CreateGroupRequest {
    pub group_id: VLBytes,
    pub leaf_node: LeafNode,
    pub group_info: MlsMessage,
}

/// The draft's `CreateGroupResponse` (its failure reasons).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum CreateGroupResponse {
    InvalidGroupId = 0,
    InvalidLeafNode = 1,
    InvalidGroupInfo = 2,
}

/// `struct { MLSGroupUpdate group_update; }`: the draft's `DeleteGroupRequest`,
/// `RemoveUsersRequest`, `RemoveClientsRequest` and `ExternalJoinRequest` (one shape).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct GroupUpdateRequest {
    pub group_update: MLSGroupUpdate,
}

pub type DeleteGroupRequest = GroupUpdateRequest;
pub type RemoveUsersRequest = GroupUpdateRequest;
pub type RemoveClientsRequest = GroupUpdateRequest;
pub type ExternalJoinRequest = GroupUpdateRequest;

/// `struct { MLSGroupUpdate group_update; MLSMessage welcome_messages<V>; }`: the draft's
/// `AddUsersRequest` and `AddClientsRequest` (one shape).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct AddRequest {
    pub group_update: MLSGroupUpdate,
    pub welcome_messages: Vec<MlsMessage>,
}

pub type AddUsersRequest = AddRequest;
pub type AddClientsRequest = AddRequest;
/// Ours (`ds_commit`): a commit with the Welcome it may come with (none or one).
pub type CommitRequest = AddRequest;

/// Ours (`ds_upload_proposal`): a member's standalone proposal, as a PublicMessage.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UploadProposalRequest {
    pub proposal: MlsMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct SelfRemoveClientRequest {
    pub proposal: MlsMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UpdateClientRequest {
    pub group_update: MLSGroupUpdate,
    pub token: Option<FanoutAuthToken>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct SendMessageRequest {
    pub application_message: MlsMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct KeyPackagesRequest {
    pub client_identifiers: Vec<ClientId>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ConnectionKeyPackagesRequest {
    pub user_identifier: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ReInitializeGroupRequest {
    pub commit: MLSGroupUpdate,
}

/// Ours (`ds_welcome_info`): the tree of the epoch a Welcome brings its recipients into.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct WelcomeInfoRequest {
    pub group_id: VLBytes,
    pub epoch: u64,
}

/// Ours (`ds_external_commit_info`): the current GroupInfo and tree.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ExternalCommitInfoRequest {
    pub group_id: VLBytes,
}

/// Ours (`ds_discover_clients`): the architecture draft's client discovery by tag.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DiscoverClientsRequest {
    pub application: [u8; 16],
    pub tag: String,
}

/// Which key package a `ds_select_key_packages` request wants of each client, and for whom
/// (ours: the draft's request names clients only; a key queue is chosen by these attributes
/// and hands the same package to the same receiver until it is used).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct KeyPackageSelector {
    pub protocol_version: u16,
    pub cipher_suite: u16,
    pub app_label: String,
    pub receiver: ClientId,
}

/// `DSRequestType`: the draft's values 0-14, then ours.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSRequestType {
    RequestGroupId = 0,
    CreateGroup = 1,
    DeleteGroup = 2,
    AddUsers = 3,
    RemoveUsers = 4,
    AddClients = 5,
    RemoveClients = 6,
    SelfRemoveClient = 7,
    UpdateClient = 8,
    ExternalJoin = 9,
    SendMessage = 10,
    SignaturePublicKey = 11,
    KeyPackages = 12,
    ConnectionKeyPackages = 13,
    ReInitializeGroup = 14,
    /// Ours: `ds_welcome_info`.
    WelcomeInfo = 15,
    /// Ours: `ds_external_commit_info`.
    ExternalCommitInfo = 16,
    /// Ours: `ds_discover_clients`.
    DiscoverClients = 17,
    /// Ours: `ds_select_key_packages`.
    SelectKeyPackages = 18,
    /// Ours: `ds_select_connection_key_packages`.
    SelectConnectionKeyPackages = 19,
    /// Ours: `ds_upload_proposal`, any standalone proposal of a member (the draft has only the
    /// self remove); the hub holds it under the rules it applies to its own clients'.
    UploadProposal = 20,
    /// Ours: `ds_commit`, a commit no operation of the draft carries (an external join by a
    /// new user, a commit mixing changes); the hub applies the rules it applies to its own
    /// clients' commits.
    Commit = 21,
    /// Ours: `ds_send_message_from`, `ds_send_message` naming the sending client, whose queue
    /// the hub skips (an MLS client cannot process its own application message).
    SendMessageFrom = 22,
}

/// `DSRequestBody`, tagged by [`DSRequestType`].
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSRequestBody {
    #[tls_codec(discriminant = "DSRequestType::RequestGroupId")]
    RequestGroupId,
    #[tls_codec(discriminant = "DSRequestType::CreateGroup")]
    CreateGroup(CreateGroupRequest),
    #[tls_codec(discriminant = "DSRequestType::DeleteGroup")]
    DeleteGroup(DeleteGroupRequest),
    #[tls_codec(discriminant = "DSRequestType::AddUsers")]
    AddUsers(AddUsersRequest),
    #[tls_codec(discriminant = "DSRequestType::RemoveUsers")]
    RemoveUsers(RemoveUsersRequest),
    #[tls_codec(discriminant = "DSRequestType::AddClients")]
    AddClients(AddClientsRequest),
    #[tls_codec(discriminant = "DSRequestType::RemoveClients")]
    RemoveClients(RemoveClientsRequest),
    #[tls_codec(discriminant = "DSRequestType::SelfRemoveClient")]
    SelfRemoveClient(SelfRemoveClientRequest),
    #[tls_codec(discriminant = "DSRequestType::UpdateClient")]
    UpdateClient(UpdateClientRequest),
    #[tls_codec(discriminant = "DSRequestType::ExternalJoin")]
    ExternalJoin(ExternalJoinRequest),
    #[tls_codec(discriminant = "DSRequestType::SendMessage")]
    SendMessage(SendMessageRequest),
    #[tls_codec(discriminant = "DSRequestType::SignaturePublicKey")]
    SignaturePublicKey,
    #[tls_codec(discriminant = "DSRequestType::KeyPackages")]
    KeyPackages(KeyPackagesRequest),
    #[tls_codec(discriminant = "DSRequestType::ConnectionKeyPackages")]
    ConnectionKeyPackages(ConnectionKeyPackagesRequest),
    #[tls_codec(discriminant = "DSRequestType::ReInitializeGroup")]
    ReInitializeGroup(ReInitializeGroupRequest),
    #[tls_codec(discriminant = "DSRequestType::WelcomeInfo")]
    WelcomeInfo(WelcomeInfoRequest),
    #[tls_codec(discriminant = "DSRequestType::ExternalCommitInfo")]
    ExternalCommitInfo(ExternalCommitInfoRequest),
    #[tls_codec(discriminant = "DSRequestType::DiscoverClients")]
    DiscoverClients(DiscoverClientsRequest),
    /// `POST /group_key_packages`: `KeyPackagesRequest` with what to pick from each queue.
    #[tls_codec(discriminant = "DSRequestType::SelectKeyPackages")]
    SelectKeyPackages(KeyPackagesRequest, KeyPackageSelector),
    /// `POST /connection_key_packages` between our gateways: `ConnectionKeyPackagesRequest`
    /// and the client of the requesting gateway the packages are for, so the same receiver
    /// gets the same packages until they are used.
    #[tls_codec(discriminant = "DSRequestType::SelectConnectionKeyPackages")]
    SelectConnectionKeyPackages(ConnectionKeyPackagesRequest, ClientId),
    #[tls_codec(discriminant = "DSRequestType::UploadProposal")]
    UploadProposal(UploadProposalRequest),
    #[tls_codec(discriminant = "DSRequestType::Commit")]
    Commit(CommitRequest),
    #[tls_codec(discriminant = "DSRequestType::SendMessageFrom")]
    SendMessageFrom(SendMessageRequest, ClientId),
}

impl DSRequestBody {
    pub fn request_type(&self) -> DSRequestType {
        match self {
            DSRequestBody::RequestGroupId => DSRequestType::RequestGroupId,
            DSRequestBody::CreateGroup(_) => DSRequestType::CreateGroup,
            DSRequestBody::DeleteGroup(_) => DSRequestType::DeleteGroup,
            DSRequestBody::AddUsers(_) => DSRequestType::AddUsers,
            DSRequestBody::RemoveUsers(_) => DSRequestType::RemoveUsers,
            DSRequestBody::AddClients(_) => DSRequestType::AddClients,
            DSRequestBody::RemoveClients(_) => DSRequestType::RemoveClients,
            DSRequestBody::SelfRemoveClient(_) => DSRequestType::SelfRemoveClient,
            DSRequestBody::UpdateClient(_) => DSRequestType::UpdateClient,
            DSRequestBody::ExternalJoin(_) => DSRequestType::ExternalJoin,
            DSRequestBody::SendMessage(_) => DSRequestType::SendMessage,
            DSRequestBody::SignaturePublicKey => DSRequestType::SignaturePublicKey,
            DSRequestBody::KeyPackages(_) => DSRequestType::KeyPackages,
            DSRequestBody::ConnectionKeyPackages(_) => DSRequestType::ConnectionKeyPackages,
            DSRequestBody::ReInitializeGroup(_) => DSRequestType::ReInitializeGroup,
            DSRequestBody::WelcomeInfo(_) => DSRequestType::WelcomeInfo,
            DSRequestBody::ExternalCommitInfo(_) => DSRequestType::ExternalCommitInfo,
            DSRequestBody::DiscoverClients(_) => DSRequestType::DiscoverClients,
            DSRequestBody::SelectKeyPackages(..) => DSRequestType::SelectKeyPackages,
            DSRequestBody::SelectConnectionKeyPackages(..) => {
                DSRequestType::SelectConnectionKeyPackages
            }
            DSRequestBody::UploadProposal(_) => DSRequestType::UploadProposal,
            DSRequestBody::Commit(_) => DSRequestType::Commit,
            DSRequestBody::SendMessageFrom(..) => DSRequestType::SendMessageFrom,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DSRequest {
    pub version: DSProtocolVersion,
    pub body: DSRequestBody,
    pub auth: DSAuthData,
}

/// What a `ClientSignature` signs (encoded only; the DS rebuilds it from the request).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsSize)]
pub struct ClientSignatureTBS {
    pub version: DSProtocolVersion,
    pub body: DSRequestBody,
    pub sender_index: u32,
}

/// `DSError` (TODO in the draft): one of this gateway's documented error codes.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DSError {
    pub code: u16,
    pub detail: String,
}

impl DSError {
    /// The error for `code`, with its documented generic description as detail.
    pub fn new(code: ErrorCode) -> DSError {
        DSError {
            code: code.code(),
            detail: code.description().to_owned(),
        }
    }

    /// The code, if it is one this version knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

/// The `ExternalCommitInfo` answer: the current GroupInfo and `optional<Node> ratchet_tree<V>`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ExternalCommitInfo {
    pub group_info: MlsMessage,
    pub ratchet_tree: RatchetTree,
}

/// A key package handed out, and whether it is the queue's final key.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct SelectedKeyPackage {
    pub key_package: MlsMessage,
    pub is_final_key: WireBool,
}

/// `DSResponseType`: the draft's order as values 0-7, then ours.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSResponseType {
    Ok = 0,
    Error = 1,
    GroupId = 2,
    WelcomeInfo = 3,
    ExternalCommitInfo = 4,
    SignaturePublicKey = 5,
    KeyPackages = 6,
    ConnectionKeyPackages = 7,
    /// Ours: the clients a discovery found.
    Clients = 8,
    /// Ours: the answer to `ds_select_key_packages`.
    SelectedKeyPackages = 9,
}

/// `DSResponseBody`, tagged by [`DSResponseType`].
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSResponseBody {
    #[tls_codec(discriminant = "DSResponseType::Ok")]
    Ok,
    #[tls_codec(discriminant = "DSResponseType::Error")]
    Error(DSError),
    #[tls_codec(discriminant = "DSResponseType::GroupId")]
    GroupId(VLBytes),
    #[tls_codec(discriminant = "DSResponseType::WelcomeInfo")]
    WelcomeInfo(RatchetTree),
    #[tls_codec(discriminant = "DSResponseType::ExternalCommitInfo")]
    ExternalCommitInfo(ExternalCommitInfo),
    /// The DS's raw signature public key (`opaque SignaturePublicKey<V>`).
    #[tls_codec(discriminant = "DSResponseType::SignaturePublicKey")]
    SignaturePublicKey(VLBytes),
    #[tls_codec(discriminant = "DSResponseType::KeyPackages")]
    KeyPackages(Vec<KeyPackage>),
    #[tls_codec(discriminant = "DSResponseType::ConnectionKeyPackages")]
    ConnectionKeyPackages(Vec<KeyPackage>),
    #[tls_codec(discriminant = "DSResponseType::Clients")]
    Clients(Vec<ClientRecord>),
    /// The answer to `SelectKeyPackages`: one per client, in the request's order.
    #[tls_codec(discriminant = "DSResponseType::SelectedKeyPackages")]
    SelectedKeyPackages(Vec<SelectedKeyPackage>),
}

impl DSResponseBody {
    pub fn response_type(&self) -> DSResponseType {
        match self {
            DSResponseBody::Ok => DSResponseType::Ok,
            DSResponseBody::Error(_) => DSResponseType::Error,
            DSResponseBody::GroupId(_) => DSResponseType::GroupId,
            DSResponseBody::WelcomeInfo(_) => DSResponseType::WelcomeInfo,
            DSResponseBody::ExternalCommitInfo(_) => DSResponseType::ExternalCommitInfo,
            DSResponseBody::SignaturePublicKey(_) => DSResponseType::SignaturePublicKey,
            DSResponseBody::KeyPackages(_) => DSResponseType::KeyPackages,
            DSResponseBody::ConnectionKeyPackages(_) => DSResponseType::ConnectionKeyPackages,
            DSResponseBody::Clients(_) => DSResponseType::Clients,
            DSResponseBody::SelectedKeyPackages(_) => DSResponseType::SelectedKeyPackages,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DSResponse {
    pub version: DSProtocolVersion,
    pub body: DSResponseBody,
}

/// The hub's fan-out of one MLSMessage to clients of the receiving gateway. The draft writes
/// `opaque recipient_ids<V>`; we read it as `ClientID recipient_ids<V>`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DSFanoutRequest {
    pub version: DSProtocolVersion,
    pub recipient_ids: Vec<ClientId>,
    pub fanout_auth_tokens: Vec<FanoutAuthToken>,
    pub mls_message: MlsMessage,
}

/// `DSFanoutError` (TODO in the draft): one of this gateway's documented error codes.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DSFanoutError {
    pub code: u16,
    pub detail: String,
}

impl DSFanoutError {
    /// The error for `code`, with its documented generic description as detail.
    pub fn new(code: ErrorCode) -> DSFanoutError {
        DSFanoutError {
            code: code.code(),
            detail: code.description().to_owned(),
        }
    }

    /// The code, if it is one this version knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

/// `DSFanoutResponseType` (the draft gives no values; ours are 0 and 1).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSFanoutResponseType {
    Ok = 0,
    Error = 1,
}

/// `DSFanoutResponseBody`, tagged by [`DSFanoutResponseType`].
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum DSFanoutResponseBody {
    #[tls_codec(discriminant = "DSFanoutResponseType::Ok")]
    Ok,
    #[tls_codec(discriminant = "DSFanoutResponseType::Error")]
    Error(DSFanoutError),
}

impl DSFanoutResponseBody {
    pub fn response_type(&self) -> DSFanoutResponseType {
        match self {
            DSFanoutResponseBody::Ok => DSFanoutResponseType::Ok,
            DSFanoutResponseBody::Error(_) => DSFanoutResponseType::Error,
        }
    }
}

/// The draft's `DSFanoutResponse` names `DSResponseBody`, an evident slip: it carries a
/// [`DSFanoutResponseBody`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DSFanoutResponse {
    pub version: DSProtocolVersion,
    pub body: DSFanoutResponseBody,
}

/// From the draft's 2023-05 revision; `client_queue_information` is the TLS encoding of a
/// [`ClientId`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct QueueingServiceRequest {
    pub client_queue_information: VLBytes,
    pub message: MlsMessage,
}

impl QueueingServiceRequest {
    /// The request for `client`'s queue.
    pub fn new(client: &ClientId, message: MlsMessage) -> Result<Self, tls_codec::Error> {
        Ok(QueueingServiceRequest {
            client_queue_information: VLBytes::new(crate::encode(client)?),
            message,
        })
    }

    /// The client whose queue is meant, decoded exactly.
    pub fn client(&self) -> Result<ClientId, DecodeError> {
        crate::decode_exact(self.client_queue_information.as_slice())
    }
}

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum QueueingServiceResponse {
    Ok = 0,
    InvalidClientQueueInformation = 1,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_exact, encode};
    use openmls::prelude as mls;
    use openmls::prelude::OpenMlsProvider as _;
    use openmls::prelude::Verifiable as _;
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_rust_crypto::OpenMlsRustCrypto;

    const SUITE: mls::Ciphersuite = mls::Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

    /// Real MLS values from a two-member openmls group.
    struct Fixture {
        leaf_node: Vec<u8>,
        group_info: Vec<u8>,
        group_info_extensions: Vec<u8>,
        group_info_signature: Vec<u8>,
        /// A bare KeyPackage and the same wrapped in an MLSMessage.
        key_package: Vec<u8>,
        key_package_message: Vec<u8>,
        commit: Vec<u8>,
        welcome: Vec<u8>,
        ratchet_tree: Vec<u8>,
        proposal: Vec<u8>,
        application_message: Vec<u8>,
    }

    fn client(name: &str) -> (OpenMlsRustCrypto, SignatureKeyPair, mls::CredentialWithKey) {
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        let credential = mls::CredentialWithKey {
            credential: mls::BasicCredential::new(name.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        (OpenMlsRustCrypto::default(), signer, credential)
    }

    fn tls(value: &impl Serialize) -> Vec<u8> {
        value.tls_serialize_detached().unwrap()
    }

    fn fixture() -> Fixture {
        let (provider, signer, credential) = client("alice");
        let (bob_provider, bob_signer, bob_credential) = client("bob");
        let bundle = mls::KeyPackage::builder()
            .build(SUITE, &bob_provider, &bob_signer, bob_credential)
            .unwrap();
        let bob_key_package = bundle.key_package().clone();

        let config = mls::MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let mut group = mls::MlsGroup::new(&provider, &signer, &config, credential).unwrap();
        let leaf_node = tls(group.own_leaf_node().unwrap());
        let group_info = tls(&group
            .export_group_info(provider.crypto(), &signer, true)
            .unwrap());
        let mls::MlsMessageBodyIn::GroupInfo(verifiable) =
            mls::MlsMessageIn::tls_deserialize_exact(&group_info)
                .unwrap()
                .extract()
        else {
            panic!("not a group info")
        };
        let group_info_extensions = tls(verifiable.extensions());

        let (commit, welcome, _) = group
            .add_members(&provider, &signer, std::slice::from_ref(&bob_key_package))
            .unwrap();
        group.merge_pending_commit(&provider).unwrap();
        let new_group_info = group
            .export_group_info(provider.crypto(), &signer, false)
            .unwrap();
        let mls::MlsMessageBodyIn::GroupInfo(verifiable) =
            mls::MlsMessageIn::tls_deserialize_exact(tls(&new_group_info))
                .unwrap()
                .extract()
        else {
            panic!("not a group info")
        };
        let signed = verifiable
            .verify(
                provider.crypto(),
                &mls::OpenMlsSignaturePublicKey::new(
                    signer.to_public_vec().into(),
                    SUITE.signature_algorithm(),
                )
                .unwrap(),
            )
            .unwrap();
        // `Signature` is `opaque<V>`; the partial GroupInfo carries its content.
        let group_info_signature =
            <VLBytes as Deserialize>::tls_deserialize_exact(tls(signed.signature()))
                .unwrap()
                .as_slice()
                .to_vec();
        let ratchet_tree = tls(&mls::RatchetTreeIn::from(group.export_ratchet_tree()));
        let application_message = tls(&group.create_message(&provider, &signer, b"hi").unwrap());
        let proposal = tls(&group.leave_group(&provider, &signer).unwrap());
        Fixture {
            leaf_node,
            group_info,
            group_info_extensions,
            group_info_signature,
            key_package: tls(&bob_key_package),
            key_package_message: tls(&mls::MlsMessageOut::from(bob_key_package)),
            commit: tls(&commit),
            welcome: tls(&welcome),
            ratchet_tree,
            proposal,
            application_message,
        }
    }

    fn client_id(n: u8) -> ClientId {
        ClientId {
            application: [7; 16],
            domain: "b.localhost".into(),
            client: if n.is_multiple_of(2) {
                ClientRef::Handle(format!("client{n}"))
            } else {
                ClientRef::ClientId([n; 16])
            },
        }
    }

    fn user_id() -> UserId {
        UserId {
            application: [7; 16],
            domain: "b.localhost".into(),
            account: "carol".into(),
        }
    }

    fn message(bytes: &[u8]) -> MlsMessage {
        MlsMessage::from_bytes(bytes.to_vec()).unwrap()
    }

    fn group_update(f: &Fixture) -> MLSGroupUpdate {
        MLSGroupUpdate {
            commit: message(&f.commit),
            partial_group_info: PartialGroupInfo {
                group_info_extensions: Extensions::from_bytes(f.group_info_extensions.clone())
                    .unwrap(),
                signature: f.group_info_signature.clone().into(),
            },
        }
    }

    /// One body of every request type.
    fn request_bodies(f: &Fixture) -> Vec<DSRequestBody> {
        let add = AddRequest {
            group_update: group_update(f),
            welcome_messages: vec![message(&f.welcome), message(&f.welcome)],
        };
        let update = |token| UpdateClientRequest {
            group_update: group_update(f),
            token,
        };
        vec![
            DSRequestBody::RequestGroupId,
            DSRequestBody::CreateGroup(CreateGroupRequest {
                group_id: vec![1, 2, 3].into(),
                leaf_node: LeafNode::from_bytes(f.leaf_node.clone()).unwrap(),
                group_info: message(&f.group_info),
            }),
            DSRequestBody::DeleteGroup(DeleteGroupRequest {
                group_update: group_update(f),
            }),
            DSRequestBody::AddUsers(add.clone()),
            DSRequestBody::RemoveUsers(RemoveUsersRequest {
                group_update: group_update(f),
            }),
            DSRequestBody::AddClients(add.clone()),
            DSRequestBody::Commit(add),
            DSRequestBody::UploadProposal(UploadProposalRequest {
                proposal: message(&f.proposal),
            }),
            DSRequestBody::RemoveClients(RemoveClientsRequest {
                group_update: group_update(f),
            }),
            DSRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
                proposal: message(&f.proposal),
            }),
            DSRequestBody::UpdateClient(update(None)),
            DSRequestBody::UpdateClient(update(Some(FanoutAuthToken {
                token: vec![9; 32].into(),
            }))),
            DSRequestBody::ExternalJoin(ExternalJoinRequest {
                group_update: group_update(f),
            }),
            DSRequestBody::SendMessage(SendMessageRequest {
                application_message: message(&f.application_message),
            }),
            DSRequestBody::SendMessageFrom(
                SendMessageRequest {
                    application_message: message(&f.application_message),
                },
                client_id(8),
            ),
            DSRequestBody::SignaturePublicKey,
            DSRequestBody::KeyPackages(KeyPackagesRequest {
                client_identifiers: vec![client_id(1), client_id(2)],
            }),
            DSRequestBody::ConnectionKeyPackages(ConnectionKeyPackagesRequest {
                user_identifier: user_id(),
            }),
            DSRequestBody::ReInitializeGroup(ReInitializeGroupRequest {
                commit: group_update(f),
            }),
            DSRequestBody::WelcomeInfo(WelcomeInfoRequest {
                group_id: vec![1, 2, 3].into(),
                epoch: 1,
            }),
            DSRequestBody::ExternalCommitInfo(ExternalCommitInfoRequest {
                group_id: vec![1, 2, 3].into(),
            }),
            DSRequestBody::DiscoverClients(DiscoverClientsRequest {
                application: [7; 16],
                tag: "friends".into(),
            }),
            DSRequestBody::SelectKeyPackages(
                KeyPackagesRequest {
                    client_identifiers: vec![client_id(2)],
                },
                KeyPackageSelector {
                    protocol_version: 1,
                    cipher_suite: 1,
                    app_label: "chat".into(),
                    receiver: client_id(4),
                },
            ),
            DSRequestBody::SelectConnectionKeyPackages(
                ConnectionKeyPackagesRequest {
                    user_identifier: user_id(),
                },
                client_id(6),
            ),
        ]
    }

    /// One body of every response type.
    fn response_bodies(f: &Fixture) -> Vec<DSResponseBody> {
        let key_package = KeyPackage::from_bytes(f.key_package.clone()).unwrap();
        vec![
            DSResponseBody::Ok,
            DSResponseBody::Error(DSError::new(ErrorCode::UnknownGroup)),
            DSResponseBody::GroupId(vec![1, 2, 3].into()),
            DSResponseBody::WelcomeInfo(RatchetTree::from_bytes(f.ratchet_tree.clone()).unwrap()),
            DSResponseBody::ExternalCommitInfo(ExternalCommitInfo {
                group_info: message(&f.group_info),
                ratchet_tree: RatchetTree::from_bytes(f.ratchet_tree.clone()).unwrap(),
            }),
            DSResponseBody::SignaturePublicKey(vec![5; 32].into()),
            DSResponseBody::KeyPackages(vec![key_package.clone(), key_package.clone()]),
            DSResponseBody::ConnectionKeyPackages(vec![key_package]),
            DSResponseBody::Clients(vec![ClientRecord {
                client_id: [3; 16],
                client_handle: "carol".into(),
                tags: vec!["friends".into()],
            }]),
            DSResponseBody::SelectedKeyPackages(vec![SelectedKeyPackage {
                key_package: message(&f.key_package_message),
                is_final_key: WireBool(true),
            }]),
        ]
    }

    fn round_trip<T>(value: &T) -> Vec<u8>
    where
        T: Serialize + Deserialize + PartialEq + std::fmt::Debug,
    {
        let bytes = encode(value).unwrap();
        assert_eq!(bytes.len(), value.tls_serialized_len());
        assert_eq!(&decode_exact::<T>(&bytes).unwrap(), value);
        bytes
    }

    #[test]
    fn embedded_mls_values_keep_their_exact_bytes() {
        let f = fixture();
        for (bytes, kind) in [
            (&f.group_info, "group info"),
            (&f.key_package_message, "key package message"),
            (&f.commit, "commit"),
            (&f.welcome, "welcome"),
            (&f.proposal, "proposal"),
            (&f.application_message, "application message"),
        ] {
            assert_eq!(message(bytes).as_bytes(), &bytes[..], "{kind}");
        }
        assert_eq!(
            LeafNode::from_bytes(f.leaf_node.clone())
                .unwrap()
                .into_bytes(),
            f.leaf_node
        );
        assert_eq!(
            KeyPackage::from_bytes(f.key_package.clone())
                .unwrap()
                .as_bytes(),
            &f.key_package[..]
        );
        assert_eq!(
            RatchetTree::from_bytes(f.ratchet_tree.clone())
                .unwrap()
                .as_bytes(),
            &f.ratchet_tree[..]
        );
        assert_eq!(
            Extensions::from_bytes(f.group_info_extensions.clone())
                .unwrap()
                .as_bytes(),
            &f.group_info_extensions[..]
        );
        // The MLSMessage wrapper is not a bare KeyPackage, nor a KeyPackage a LeafNode.
        assert!(KeyPackage::from_bytes(f.key_package_message.clone()).is_err());
        assert!(LeafNode::from_bytes(f.key_package.clone()).is_err());
    }

    #[test]
    fn every_request_round_trips_with_its_tag() {
        let f = fixture();
        let bodies = request_bodies(&f);
        for body in bodies {
            let encoded = round_trip(&body);
            assert_eq!(encoded[0], body.request_type() as u8, "{body:?}");
            assert_eq!(
                decode_exact::<DSRequestType>(&encoded[..1]).unwrap(),
                body.request_type()
            );
            for auth in [
                DSAuthData::Anonymous,
                DSAuthData::ClientSignature {
                    sender_index: 1,
                    signature: ShortBytes(vec![0xab; 64]),
                },
            ] {
                let request = DSRequest {
                    version: DS_PROTOCOL_VERSION,
                    body: body.clone(),
                    auth: auth.clone(),
                };
                let bytes = round_trip(&request);
                // version || body || auth, nothing between.
                assert_eq!(bytes[..2], [0, 1]);
                assert_eq!(bytes[2..2 + encoded.len()], encoded[..]);
                assert_eq!(bytes[2 + encoded.len()..], encode(&auth).unwrap()[..]);
                assert_eq!(bytes[2 + encoded.len()], auth.auth_type() as u8);
            }
            let tbs = ClientSignatureTBS {
                version: DS_PROTOCOL_VERSION,
                body: body.clone(),
                sender_index: 0x0102_0304,
            };
            let mut expected = vec![0, 1];
            expected.extend_from_slice(&encoded);
            expected.extend_from_slice(&[1, 2, 3, 4]);
            assert_eq!(encode(&tbs).unwrap(), expected);
        }
    }

    #[test]
    fn every_response_round_trips_with_its_tag() {
        let f = fixture();
        for body in response_bodies(&f) {
            let encoded = round_trip(&body);
            assert_eq!(encoded[0], body.response_type() as u8, "{body:?}");
            let response = DSResponse {
                version: DS_PROTOCOL_VERSION,
                body,
            };
            let bytes = round_trip(&response);
            assert_eq!(bytes[2..], encoded[..]);
        }
        // The tree follows the tag with no prefix of its own.
        let mut expected = vec![0, 1, DSResponseType::WelcomeInfo as u8];
        expected.extend_from_slice(&f.ratchet_tree);
        let welcome_info = DSResponse {
            version: DS_PROTOCOL_VERSION,
            body: DSResponseBody::WelcomeInfo(
                RatchetTree::from_bytes(f.ratchet_tree.clone()).unwrap(),
            ),
        };
        assert_eq!(encode(&welcome_info).unwrap(), expected);
        let mut expected = vec![DSResponseType::ExternalCommitInfo as u8];
        expected.extend_from_slice(&f.group_info);
        expected.extend_from_slice(&f.ratchet_tree);
        assert_eq!(encode(&response_bodies(&f)[4]).unwrap(), expected);
    }

    #[test]
    fn fanout_and_queueing_bodies_round_trip() {
        let f = fixture();
        let fanout = DSFanoutRequest {
            version: DS_PROTOCOL_VERSION,
            recipient_ids: vec![client_id(2), client_id(3)],
            fanout_auth_tokens: vec![
                FanoutAuthToken {
                    token: Vec::new().into(),
                },
                FanoutAuthToken {
                    token: vec![1; 16].into(),
                },
            ],
            mls_message: message(&f.commit),
        };
        let bytes = round_trip(&fanout);
        assert!(bytes.ends_with(&f.commit), "the message is not prefixed");

        for body in [
            DSFanoutResponseBody::Ok,
            DSFanoutResponseBody::Error(DSFanoutError::new(ErrorCode::NotOurClient)),
        ] {
            let response = DSFanoutResponse {
                version: DS_PROTOCOL_VERSION,
                body: body.clone(),
            };
            let bytes = round_trip(&response);
            assert_eq!(bytes[2], body.response_type() as u8);
        }
        assert_eq!(
            encode(&DSFanoutResponse {
                version: DS_PROTOCOL_VERSION,
                body: DSFanoutResponseBody::Ok,
            })
            .unwrap(),
            vec![0, 1, 0]
        );
        let error = DSFanoutError::new(ErrorCode::NotOurClient);
        assert_eq!(error.error_code(), Some(ErrorCode::NotOurClient));
        let error = DSError::new(ErrorCode::StaleEpoch);
        assert_eq!(error.error_code(), Some(ErrorCode::StaleEpoch));
        assert_eq!(error.code, 507);

        let queued = QueueingServiceRequest::new(&client_id(2), message(&f.welcome)).unwrap();
        round_trip(&queued);
        assert_eq!(queued.client().unwrap(), client_id(2));
        assert_eq!(
            queued.client_queue_information.as_slice(),
            &encode(&client_id(2)).unwrap()[..]
        );
        for answer in [
            QueueingServiceResponse::Ok,
            QueueingServiceResponse::InvalidClientQueueInformation,
        ] {
            assert_eq!(round_trip(&answer), vec![answer as u8]);
        }
        for answer in [
            CreateGroupResponse::InvalidGroupId,
            CreateGroupResponse::InvalidLeafNode,
            CreateGroupResponse::InvalidGroupInfo,
        ] {
            assert_eq!(round_trip(&answer), vec![answer as u8]);
        }
        round_trip(&user_id());
        round_trip(&client_id(1));
        round_trip(&client_id(2));
    }

    #[test]
    fn client_ids_encode_as_documented() {
        let id = ClientId {
            application: [7; 16],
            domain: "b.localhost".into(),
            client: ClientRef::Handle("carol".into()),
        };
        let mut expected = vec![7; 16];
        expected.push(11);
        expected.extend_from_slice(b"b.localhost");
        expected.push(1);
        expected.push(5);
        expected.extend_from_slice(b"carol");
        assert_eq!(encode(&id).unwrap(), expected);
        assert_eq!(decode_exact::<ClientId>(&expected).unwrap(), id);
        assert_eq!(id.client.id_type(), ClientIdType::Handle);

        let mut by_id = vec![7; 16];
        by_id.extend_from_slice(&[1, b'x', 2]);
        by_id.extend_from_slice(&[9; 16]);
        let decoded = decode_exact::<ClientId>(&by_id).unwrap();
        assert_eq!(decoded.client, ClientRef::ClientId([9; 16]));
        assert_eq!(decoded.client.id_type(), ClientIdType::ClientId);
        assert_eq!(encode(&decoded).unwrap(), by_id);

        let user = UserId {
            application: [1; 16],
            domain: "a".into(),
            account: "bo".into(),
        };
        let mut expected = vec![1; 16];
        expected.extend_from_slice(&[1, b'a', 2, b'b', b'o']);
        assert_eq!(encode(&user).unwrap(), expected);
    }

    #[test]
    fn small_values_encode_exactly() {
        assert_eq!(encode(&DSResponseBody::Ok).unwrap(), vec![0]);
        assert_eq!(encode(&DSRequestBody::RequestGroupId).unwrap(), vec![0]);
        assert_eq!(
            encode(&DSRequestBody::SignaturePublicKey).unwrap(),
            vec![11]
        );
        assert_eq!(encode(&DSAuthData::Anonymous).unwrap(), vec![0]);
        assert_eq!(
            encode(&DSRequest {
                version: DS_PROTOCOL_VERSION,
                body: DSRequestBody::RequestGroupId,
                auth: DSAuthData::Anonymous,
            })
            .unwrap(),
            vec![0, 1, 0, 0]
        );
        // uint8 tag, group_id<V>, uint64 epoch.
        let welcome_info = DSRequestBody::WelcomeInfo(WelcomeInfoRequest {
            group_id: vec![0xaa, 0xbb].into(),
            epoch: 3,
        });
        assert_eq!(
            encode(&welcome_info).unwrap(),
            vec![15, 2, 0xaa, 0xbb, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(
            encode(&DSResponseBody::Error(DSError {
                code: 7,
                detail: "v".into(),
            }))
            .unwrap(),
            vec![1, 0, 7, 1, b'v']
        );

        // `opaque signature<0..255>`: one length byte.
        let auth = DSAuthData::ClientSignature {
            sender_index: 3,
            signature: ShortBytes(vec![0xaa, 0xbb]),
        };
        assert_eq!(encode(&auth).unwrap(), vec![1, 0, 0, 0, 3, 2, 0xaa, 0xbb]);
        assert_eq!(
            decode_exact::<DSAuthData>(&[1, 0, 0, 0, 3, 2, 0xaa, 0xbb]).unwrap(),
            auth
        );
        let longest = DSAuthData::ClientSignature {
            sender_index: 0,
            signature: ShortBytes(vec![0; ShortBytes::MAX_LEN]),
        };
        let bytes = round_trip(&longest);
        assert_eq!(bytes[5], 255);
        assert_eq!(bytes.len(), 1 + 4 + 1 + 255);
    }

    #[test]
    fn unknown_tags_are_refused() {
        assert_eq!(
            decode_exact::<DSRequestBody>(&[23]),
            Err(DecodeError::UnknownValue(23))
        );
        assert_eq!(
            decode_exact::<DSRequestBody>(&[200]),
            Err(DecodeError::UnknownValue(200))
        );
        assert_eq!(
            decode_exact::<DSRequest>(&[0, 1, 23, 0]),
            Err(DecodeError::UnknownValue(23))
        );
        assert_eq!(
            decode_exact::<DSRequestType>(&[23]),
            Err(DecodeError::UnknownValue(23))
        );
        assert_eq!(
            decode_exact::<DSResponseBody>(&[10]),
            Err(DecodeError::UnknownValue(10))
        );
        assert_eq!(
            decode_exact::<DSResponse>(&[0, 1, 255]),
            Err(DecodeError::UnknownValue(255))
        );
        assert_eq!(
            decode_exact::<DSAuthData>(&[2]),
            Err(DecodeError::UnknownValue(2))
        );
        assert_eq!(
            decode_exact::<DSFanoutResponseBody>(&[2]),
            Err(DecodeError::UnknownValue(2))
        );
        assert_eq!(
            decode_exact::<QueueingServiceResponse>(&[2]),
            Err(DecodeError::UnknownValue(2))
        );
        assert_eq!(
            decode_exact::<CreateGroupResponse>(&[3]),
            Err(DecodeError::UnknownValue(3))
        );
        for tag in [0, 3, 255] {
            let mut unknown = vec![7; 16];
            unknown.extend_from_slice(&[1, b'x', tag]);
            unknown.extend_from_slice(&[9; 16]);
            assert_eq!(
                decode_exact::<ClientId>(&unknown),
                Err(DecodeError::UnknownValue(u64::from(tag)))
            );
        }
        // `optional<FanoutAuthToken>`: a presence byte other than 0 or 1 is refused.
        let f = fixture();
        let mut update = encode(&UpdateClientRequest {
            group_update: group_update(&f),
            token: None,
        })
        .unwrap();
        *update.last_mut().unwrap() = 2;
        assert!(decode_exact::<UpdateClientRequest>(&update).is_err());
    }

    #[test]
    fn truncated_and_trailing_bytes_are_refused() {
        let f = fixture();
        // Every cut of a fan-out ends inside the unprefixed MLSMessage or before it.
        let fanout = encode(&DSFanoutRequest {
            version: DS_PROTOCOL_VERSION,
            recipient_ids: vec![client_id(2)],
            fanout_auth_tokens: vec![FanoutAuthToken {
                token: Vec::new().into(),
            }],
            mls_message: message(&f.application_message),
        })
        .unwrap();
        for cut in 0..fanout.len() {
            assert!(
                decode_exact::<DSFanoutRequest>(&fanout[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = fanout.clone();
        longer.push(0);
        assert_eq!(
            decode_exact::<DSFanoutRequest>(&longer),
            Err(DecodeError::TrailingBytes)
        );

        // A truncated MLSMessage inside a request is refused, not read as a shorter value.
        let request = encode(&DSRequest {
            version: DS_PROTOCOL_VERSION,
            body: DSRequestBody::SendMessage(SendMessageRequest {
                application_message: message(&f.application_message),
            }),
            auth: DSAuthData::Anonymous,
        })
        .unwrap();
        for cut in 3..request.len() {
            assert!(
                decode_exact::<DSRequest>(&request[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = request.clone();
        longer.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode_exact::<DSRequest>(&longer),
            Err(DecodeError::TrailingBytes)
        );

        // `from_bytes` takes exactly one value.
        for bytes in [&f.commit, &f.welcome, &f.group_info] {
            assert!(MlsMessage::from_bytes(bytes[..bytes.len() - 1].to_vec()).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                MlsMessage::from_bytes(longer),
                Err(DecodeError::TrailingBytes)
            );
        }
        assert!(MlsMessage::from_bytes(vec![0, 1, 0, 1]).is_err());
        assert!(RatchetTree::from_bytes(vec![0]).is_ok(), "an empty tree");
        assert_eq!(
            RatchetTree::from_bytes(vec![0, 0]),
            Err(DecodeError::TrailingBytes)
        );
        assert!(LeafNode::from_bytes(f.leaf_node[..f.leaf_node.len() - 1].to_vec()).is_err());
        assert!(KeyPackage::from_bytes(f.key_package[..f.key_package.len() - 1].to_vec()).is_err());
    }

    #[test]
    fn group_info_extensions_must_be_unique() {
        let unknown = mls::Extension::Unknown(0xff00, mls::UnknownExtension(vec![1]));
        let once = tls(&vec![unknown.clone()]);
        assert!(Extensions::from_bytes(once).is_ok());
        let twice = tls(&vec![unknown.clone(), unknown]);
        assert!(Extensions::from_bytes(twice).is_err());
    }

    #[test]
    fn long_signatures_and_bad_utf8_are_refused() {
        let too_long = DSAuthData::ClientSignature {
            sender_index: 0,
            signature: ShortBytes(vec![0; 256]),
        };
        assert!(encode(&too_long).is_err());
        assert!(encode(&ShortBytes(vec![0; 256])).is_err());
        // A one-byte length claiming more than there is.
        assert_eq!(
            decode_exact::<ShortBytes>(&[3, 1, 2]),
            Err(DecodeError::Truncated)
        );

        let mut bad_utf8 = vec![7; 16];
        bad_utf8.extend_from_slice(&[1, b'x', 1, 1, 0xff]);
        assert!(matches!(
            decode_exact::<ClientId>(&bad_utf8),
            Err(DecodeError::Malformed(_))
        ));
        let mut bad_domain = vec![7; 16];
        bad_domain.extend_from_slice(&[1, 0xc3, 1, 1, b'x']);
        assert!(matches!(
            decode_exact::<ClientId>(&bad_domain),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn only_version_one_is_spoken() {
        assert_eq!(check_version(DS_PROTOCOL_VERSION), Ok(()));
        assert_eq!(check_version(2), Err(DecodeError::UnsupportedVersion(2)));
        // The version is decoded, then checked by the receiver.
        let request: DSRequest = decode_exact(&[0, 2, 0, 0]).unwrap();
        assert_eq!(
            check_version(request.version),
            Err(DecodeError::UnsupportedVersion(2))
        );
    }
}
