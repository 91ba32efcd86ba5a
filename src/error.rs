//! The gateway's request error: every refusal of every layer, named once. Its one mapping to
//! a stable wire code, detail and fields is `api::error`.

use mimi_wire::registry::NameError;
use mimi_wire::{DecodeError, ErrorCode};

use crate::identity::IdentityError;
use crate::mls::group::GroupError;
use crate::mls::key_package::KeyPackageError;
use crate::store::{GroupStoreError, KeyQueueError, RegistryError, StoreError};
use mimi_wire::signing::{SenderKind, SignatureError};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("body does not decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("body larger than the cap")]
    BodyTooLarge,
    #[error("content type is not application/octet-stream")]
    UnsupportedMediaType,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("body did not arrive in time")]
    RequestTimeout,
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("malformed id in the path")]
    MalformedPath,
    #[error("unknown application")]
    UnknownApplication,
    #[error("unknown domain `{0}`")]
    UnknownDomain(String),
    #[error("client handle: {0}")]
    InvalidHandle(NameError),
    #[error("tag: {0}")]
    InvalidTag(NameError),
    #[error("more than {0} tags")]
    TooManyTags(usize),
    #[error("tag `{0}` both added and removed")]
    ConflictingTagChange(String),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("application label: {0}")]
    InvalidLabel(String),
    #[error("receiver client id: {0}")]
    InvalidReceiver(String),
    #[error("protocol version {0} is not supported")]
    UnsupportedProtocolVersion(u16),
    #[error("cipher suite {0:#06x} is not supported")]
    UnsupportedCipherSuite(u16),
    #[error("key queue: {0}")]
    KeyQueue(#[from] KeyQueueError),
    /// A refused key package: `index` in the upload, or `None` for the final key.
    #[error("key package {index:?}: {error}")]
    KeyPackage {
        index: Option<usize>,
        error: KeyPackageError,
    },
    #[error("group: {0}")]
    Group(#[from] GroupError),
    #[error("group store: {0}")]
    GroupStore(#[from] GroupStoreError),
    #[error("group id longer than 255 bytes")]
    GroupIdTooLong,
    #[error("unknown welcome")]
    UnknownWelcome,
    #[error("handler did not finish in time")]
    Overloaded,
    /// Federation (issue 7): a peer unreachable, or its refusal with the peer's own code.
    #[error("peer {peer}: {reason}")]
    PeerUnavailable { peer: String, reason: String },
    /// `detail` is the peer's, kept to relay a hub's refusal (`Relayed`), never logged raw.
    #[error("peer {peer} refused with code {code}")]
    PeerRefused {
        peer: String,
        code: u16,
        detail: String,
        /// The peer's structured fields (the hub's current epoch of a stale commit).
        fields: Vec<mimi_wire::ErrorField>,
    },
    #[error("peer {0} answered something malformed")]
    PeerMalformedAnswer(String),
    #[error("key package from {peer} names domain `{found}`")]
    PeerKeyPackageDomain { peer: String, found: String },
    #[error("connection key package {index} from {peer} is of another account")]
    PeerWrongAccount { peer: String, index: usize },
    #[error("`{0}` is not a client of this gateway")]
    NotOurClient(String),
    #[error("{0} is not the hub of this group")]
    NotTheHub(String),
    #[error("a commit in a federated group needs a group info")]
    GroupInfoRequired,
    #[error("domain `{0}` is not an allowed peer")]
    DomainNotAllowed(String),
    #[error("operation rules: {0}")]
    OperationRules(#[from] crate::mls::operations::OperationError),
    #[error("`{0}` is not a client of the requesting peer")]
    SenderNotOfPeer(String),
    /// The hub's refusal of an operation this gateway forwarded, passed on as the hub gave
    /// it (a code this version knows, and its short detail).
    #[error("the hub refused: {code:?} ({detail})")]
    Relayed {
        code: ErrorCode,
        detail: String,
        fields: Vec<mimi_wire::ErrorField>,
    },
    #[error("the application's identity provider names no domains: it does not federate")]
    ApplicationDoesNotFederate,
    #[error("internal: {0}")]
    Internal(String),
    /// The handler did not finish within the request timeout; it goes on, so its change may
    /// yet be applied.
    #[error("the handler did not finish in time; its outcome is unknown")]
    OutcomeUnknown,
    /// Refused before any work; try again after this many seconds.
    #[error("rate limited for {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    /// The peer a request needed refused this gateway under its own rate limits.
    #[error("{peer} is rate-limiting this gateway for {retry_after_secs}s")]
    PeerRateLimited { peer: String, retry_after_secs: u64 },
}

/// Why a request was not authenticated (`net::auth`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("request is not signed")]
    Unsigned,
    #[error("signature envelope is malformed: {0}")]
    MalformedEnvelope(SignatureError),
    #[error("sender kind {0:?} is not accepted on this listener")]
    WrongSenderKind(SenderKind),
    #[error("request is meant for `{0}`, not this gateway")]
    WrongRecipient(String),
    #[error("timestamp {timestamp} is more than {window}s away from now ({now})")]
    StaleTimestamp {
        timestamp: u64,
        now: u64,
        window: u64,
    },
    #[error("request id was already used")]
    Replayed,
    #[error("sender `{0}` is not known")]
    UnknownSender(String),
    #[error("peer `{0}` is not on the federation allow-list")]
    PeerNotAllowed(String),
    #[error("peer keys: {0}")]
    PeerKeys(String),
    #[error("key `{0}` is not known for this sender")]
    UnknownKey(String),
    #[error("key `{0}` is not valid at the request's time")]
    ExpiredKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("replay cache: {0}")]
    Store(StoreError),
    /// Mutual TLS on the federation listener: the client certificate does not name the
    /// sender domain of the signed request (or there is none).
    #[error("client certificate does not name `{0}`")]
    ClientCertificateMismatch(String),
}

impl AuthError {
    /// The label of the reason in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unsigned => "unsigned",
            AuthError::MalformedEnvelope(_) => "malformed_envelope",
            AuthError::WrongSenderKind(_) => "wrong_sender_kind",
            AuthError::WrongRecipient(_) => "wrong_recipient",
            AuthError::StaleTimestamp { .. } => "stale_timestamp",
            AuthError::Replayed => "replayed_request_id",
            AuthError::UnknownSender(_) => "unknown_sender",
            AuthError::PeerNotAllowed(_) => "peer_not_allowed",
            AuthError::PeerKeys(_) => "peer_keys_unavailable",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::ExpiredKey(_) => "expired_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Store(_) => "store_unavailable",
            AuthError::ClientCertificateMismatch(_) => "client_certificate_mismatch",
        }
    }
}
