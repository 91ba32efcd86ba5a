//! The delivery-service draft's structs (draft-robert-mimi-delivery-service, 2023-09,
//! "Framing and processing overview", "DS assisted joining", "Client-initiated operations"):
//! the bodies of the MIMI Transport endpoints. Byte for byte where the draft defines them;
//! where it says TODO, our choice is documented in `docs/federation-wire.md` and versioned by
//! [`DS_PROTOCOL_VERSION`].
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
//!     opaque application[16];
//!     opaque domain<V>;
//!     ClientIdType type;
//!     select (type) {
//!         case handle:    opaque handle<V>;
//!         case client_id: opaque client_id[16];
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
//! struct { DSProtocolVersion version; DSRequestBody request_body; DSAuthData authentication_data; } DSRequest;
//! struct { DSProtocolVersion protocol_version; DSResponseBody response_body; } DSResponse;
//! struct {
//!     DSProtocolVersion protocol_version;
//!     ClientID recipient_ids<V>;
//!     FanoutAuthToken fanout_auth_tokens<V>;
//!     MLSMessage mls_message;
//! } DSFanoutRequest;
//! struct { DSProtocolVersion protocol_version; DSFanoutResponseBody response_body; } DSFanoutResponse;
//! ```
//!
//! The request and response bodies (`DSRequestBody`, `DSResponseBody`) and the operation
//! structs follow the draft's text; see the types below and `docs/federation-wire.md`.

use std::io::Write;
use std::marker::PhantomData;

use tls_codec::{
    Deserialize, DeserializeBytes, Serialize, Size, TlsDeserializeBytes, TlsSerialize, TlsSize,
    VLBytes,
};

use crate::codec::{DecodeError, WireBool};
use crate::error::ErrorCode;
use crate::registry::ClientRecord;

/// The format of these structs; a receiver refuses any other with `UnsupportedVersion`.
pub const DS_PROTOCOL_VERSION: u16 = 1;

/// An MLS value embedded as its own TLS encoding, kept as the exact bytes received; `T` is
/// the openmls type that says where it ends.
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
    /// `bytes` must be exactly one `T`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        let (value, rest) = Self::tls_deserialize_bytes(&bytes)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(value)
    }
}

impl<T> Mls<T> {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl<T: Deserialize> DeserializeBytes for Mls<T> {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let mut reader = bytes;
        T::tls_deserialize(&mut reader)?;
        let consumed = bytes.len() - reader.len();
        Ok((
            Mls {
                bytes: bytes[..consumed].to_vec(),
                _kind: PhantomData,
            },
            &bytes[consumed..],
        ))
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

pub type MlsMessage = Mls<openmls::prelude::MlsMessageIn>;
pub type RatchetTree = Mls<openmls::prelude::RatchetTreeIn>;
pub type KeyPackage = Mls<openmls::prelude::KeyPackageIn>;
pub type LeafNode = Mls<LeafNodeShape>;
/// `Extension group_info_extensions<V>`.
pub type Extensions = Mls<Vec<openmls::prelude::Extension>>;

/// RFC 9420's `LeafNode` layout, only to find where one ends (openmls 0.9 keeps its own
/// `LeafNodeIn` private); the gateway validates leaves with openmls.
#[doc(hidden)]
#[derive(tls_codec::TlsDeserialize, TlsSize)]
pub struct LeafNodeShape {
    encryption_key: VLBytes,
    signature_key: VLBytes,
    credential: openmls::prelude::Credential,
    capabilities: openmls::prelude::Capabilities,
    source: LeafNodeSourceShape,
    extensions: Vec<openmls::prelude::Extension>,
    signature: VLBytes,
}

#[repr(u8)]
#[derive(tls_codec::TlsDeserialize, TlsSize)]
enum LeafNodeSourceShape {
    #[tls_codec(discriminant = 1)]
    KeyPackage {
        not_before: u64,
        not_after: u64,
    },
    Update,
    Commit(VLBytes),
}

/// `opaque<0..255>`: a one-byte length prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShortBytes(pub Vec<u8>);

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

impl DeserializeBytes for ShortBytes {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (&length, rest) = bytes.split_first().ok_or(tls_codec::Error::EndOfStream)?;
        let length = usize::from(length);
        if rest.len() < length {
            return Err(tls_codec::Error::EndOfStream);
        }
        Ok((ShortBytes(rest[..length].to_vec()), &rest[length..]))
    }
}

/// Which client a [`ClientId`] names at its home gateway.
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub enum ClientRef {
    /// The client handle the application's identity provider derives from its credential.
    #[tls_codec(discriminant = 1)]
    Handle(String),
    /// The registry's client UUID at the client's home gateway.
    ClientId([u8; 16]),
}

/// The draft's `ClientID` (TODO there): the shared application, the client's domain, and the
/// client by handle or by id.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ClientId {
    pub application: [u8; 16],
    pub domain: String,
    pub client: ClientRef,
}

/// The draft's `UserID` (TODO there): an account of the application's identity provider.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct UserId {
    pub application: [u8; 16],
    pub domain: String,
    pub account: String,
}

#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub enum DSAuthData {
    #[tls_codec(discriminant = 0)]
    Anonymous,
    ClientSignature {
        sender_index: u32,
        signature: ShortBytes,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct FanoutAuthToken {
    pub token: VLBytes,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct PartialGroupInfo {
    pub group_info_extensions: Extensions,
    pub signature: VLBytes,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct MLSGroupUpdate {
    pub commit: MlsMessage,
    pub partial_group_info: PartialGroupInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct CreateGroupRequest {
    pub group_id: VLBytes,
    pub leaf_node: LeafNode,
    pub group_info: MlsMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct GroupUpdateRequest {
    pub group_update: MLSGroupUpdate,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct AddRequest {
    pub group_update: MLSGroupUpdate,
    pub welcome_messages: Vec<MlsMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SelfRemoveClientRequest {
    pub proposal: MlsMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct UpdateClientRequest {
    pub group_update: MLSGroupUpdate,
    pub token: Option<FanoutAuthToken>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SendMessageRequest {
    pub application_message: MlsMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct KeyPackagesRequest {
    pub client_identifiers: Vec<ClientId>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ConnectionKeyPackagesRequest {
    pub user_identifier: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ReInitializeGroupRequest {
    pub commit: MLSGroupUpdate,
}

/// Ours (`ds_welcome_info`): the tree of the epoch a Welcome brings its recipients into.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct WelcomeInfoRequest {
    pub group_id: VLBytes,
    pub epoch: u64,
}

/// Ours (`ds_external_commit_info`): the current GroupInfo and tree.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ExternalCommitInfoRequest {
    pub group_id: VLBytes,
}

/// Ours (`ds_discover_clients`): the architecture draft's client discovery by tag.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DiscoverClientsRequest {
    pub application: [u8; 16],
    pub tag: String,
}

/// Which key package a `ds_key_packages` request wants of each client, and for whom (ours:
/// the draft's request names clients only; a key queue is chosen by these attributes and
/// hands the same package to the same receiver until it is used).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct KeyPackageSelector {
    pub protocol_version: u16,
    pub cipher_suite: u16,
    pub app_label: String,
    pub receiver: ClientId,
}

/// `DSRequestBody`, tagged by the draft's `DSRequestType` (uint8) plus ours (15-18).
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub enum DSRequestBody {
    #[tls_codec(discriminant = 0)]
    RequestGroupId,
    CreateGroup(CreateGroupRequest),
    DeleteGroup(GroupUpdateRequest),
    AddUsers(AddRequest),
    RemoveUsers(GroupUpdateRequest),
    AddClients(AddRequest),
    RemoveClients(GroupUpdateRequest),
    SelfRemoveClient(SelfRemoveClientRequest),
    UpdateClient(UpdateClientRequest),
    ExternalJoin(GroupUpdateRequest),
    SendMessage(SendMessageRequest),
    SignaturePublicKey,
    KeyPackages(KeyPackagesRequest),
    ConnectionKeyPackages(ConnectionKeyPackagesRequest),
    ReInitializeGroup(ReInitializeGroupRequest),
    WelcomeInfo(WelcomeInfoRequest),
    ExternalCommitInfo(ExternalCommitInfoRequest),
    DiscoverClients(DiscoverClientsRequest),
    /// `POST /group_key_packages`: `KeyPackagesRequest` with what to pick from each queue.
    SelectKeyPackages(KeyPackagesRequest, KeyPackageSelector),
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DSRequest {
    pub version: u16,
    pub body: DSRequestBody,
    pub auth: DSAuthData,
}

/// `DSError` (TODO in the draft): one of this gateway's documented error codes.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DSError {
    pub code: u16,
    pub detail: String,
}

impl DSError {
    pub fn new(code: ErrorCode) -> DSError {
        DSError {
            code: code.code(),
            detail: code.description().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ExternalCommitInfo {
    pub group_info: MlsMessage,
    pub ratchet_tree: RatchetTree,
}

/// A key package handed out, and whether it is the queue's final key.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SelectedKeyPackage {
    pub key_package: MlsMessage,
    pub is_final_key: WireBool,
}

/// `DSResponseBody`, tagged by the draft's `DSResponseType` (uint8) plus ours (8, 9).
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub enum DSResponseBody {
    #[tls_codec(discriminant = 0)]
    Ok,
    Error(DSError),
    GroupId(VLBytes),
    WelcomeInfo(RatchetTree),
    ExternalCommitInfo(ExternalCommitInfo),
    SignaturePublicKey(VLBytes),
    KeyPackages(Vec<KeyPackage>),
    ConnectionKeyPackages(Vec<KeyPackage>),
    Clients(Vec<ClientRecord>),
    /// The answer to `SelectKeyPackages`: one per client, in the request's order.
    SelectedKeyPackages(Vec<SelectedKeyPackage>),
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DSResponse {
    pub version: u16,
    pub body: DSResponseBody,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DSFanoutRequest {
    pub version: u16,
    pub recipient_ids: Vec<ClientId>,
    pub fanout_auth_tokens: Vec<FanoutAuthToken>,
    pub mls_message: MlsMessage,
}

/// `DSFanoutError` (TODO in the draft): one of this gateway's documented error codes.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DSFanoutError {
    pub code: u16,
    pub detail: String,
}

#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub enum DSFanoutResponseBody {
    #[tls_codec(discriminant = 0)]
    Ok,
    Error(DSFanoutError),
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DSFanoutResponse {
    pub version: u16,
    pub body: DSFanoutResponseBody,
}

/// From the draft's 2023-05 revision; `client_queue_information` is a TLS-encoded
/// [`ClientId`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct QueueingServiceRequest {
    pub client_queue_information: VLBytes,
    pub message: MlsMessage,
}

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub enum QueueingServiceResponse {
    Ok = 0,
    InvalidClientQueueInformation = 1,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_exact, encode};

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

        let mut by_id = vec![7; 16];
        by_id.extend_from_slice(&[1, b'x', 2]);
        by_id.extend_from_slice(&[9; 16]);
        assert_eq!(
            decode_exact::<ClientId>(&by_id).unwrap().client,
            ClientRef::ClientId([9; 16])
        );
    }

    #[test]
    fn tags_and_short_vectors_are_checked() {
        // Unknown ClientIdType, DSRequestType, DSResponseType and DSAuthType are refused.
        let mut unknown = vec![7; 16];
        unknown.extend_from_slice(&[1, b'x', 3]);
        assert!(decode_exact::<ClientId>(&unknown).is_err());
        assert!(decode_exact::<DSRequestBody>(&[200]).is_err());
        assert!(decode_exact::<DSResponseBody>(&[200]).is_err());
        assert!(decode_exact::<DSAuthData>(&[2]).is_err());

        // Unit variants are their tag alone; trailing bytes are refused.
        assert_eq!(encode(&DSResponseBody::Ok).unwrap(), vec![0]);
        assert_eq!(encode(&DSRequestBody::RequestGroupId).unwrap(), vec![0]);
        assert!(decode_exact::<DSResponseBody>(&[0, 0]).is_err());

        // `opaque signature<0..255>`: one length byte, refused beyond 255 on encode.
        let auth = DSAuthData::ClientSignature {
            sender_index: 3,
            signature: ShortBytes(vec![0xaa, 0xbb]),
        };
        assert_eq!(encode(&auth).unwrap(), vec![1, 0, 0, 0, 3, 2, 0xaa, 0xbb]);
        assert_eq!(
            decode_exact::<DSAuthData>(&[1, 0, 0, 0, 3, 2, 0xaa, 0xbb]).unwrap(),
            auth
        );
        let too_long = DSAuthData::ClientSignature {
            sender_index: 0,
            signature: ShortBytes(vec![0; 256]),
        };
        assert!(encode(&too_long).is_err());

        // Invalid UTF-8 in a handle is refused.
        let mut bad_utf8 = vec![7; 16];
        bad_utf8.extend_from_slice(&[1, b'x', 1, 1, 0xff]);
        assert!(decode_exact::<ClientId>(&bad_utf8).is_err());
    }

    #[test]
    fn embedded_mls_values_must_be_whole() {
        // An MLSMessage is not length-prefixed: a truncated one fails to decode, and
        // `from_bytes` refuses anything but exactly one value.
        assert!(MlsMessage::from_bytes(vec![0, 1, 0, 1]).is_err());
        assert!(
            RatchetTree::from_bytes(vec![0]).is_ok(),
            "an empty tree vector"
        );
        assert!(
            RatchetTree::from_bytes(vec![0, 0]).is_err(),
            "trailing bytes"
        );
        let response = DSResponse {
            version: DS_PROTOCOL_VERSION,
            body: DSResponseBody::WelcomeInfo(RatchetTree::from_bytes(vec![0]).unwrap()),
        };
        let bytes = encode(&response).unwrap();
        assert_eq!(bytes, vec![0, 1, 3, 0]);
        assert_eq!(decode_exact::<DSResponse>(&bytes).unwrap(), response);
        assert!(decode_exact::<DSResponse>(&bytes[..3]).is_err());
    }
}
