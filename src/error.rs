//! The gateway's request error and its one mapping to a stable wire code (`mimi-wire`'s
//! `ErrorCode`), which fixes the HTTP status and the generic detail the caller sees. The
//! precise reason stays in the log.

use mimi_wire::registry::NameError;
use mimi_wire::{DecodeError, ErrorCode};

use crate::identity::IdentityError;
use crate::mls::group::GroupError;
use crate::mls::key_package::KeyPackageError;
use crate::net::auth::AuthError;
use crate::store::{GroupStoreError, KeyQueueError, RegistryError, StoreError};

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

impl From<crate::service::group_cache::CheckoutError> for GatewayError {
    fn from(error: crate::service::group_cache::CheckoutError) -> Self {
        match error {
            crate::service::group_cache::CheckoutError::Store(error) => {
                GatewayError::GroupStore(error)
            }
            crate::service::group_cache::CheckoutError::Group(error) => GatewayError::Group(error),
        }
    }
}

/// A store failure's code: nothing changed, or the change may have been applied.
fn store_code(error: &StoreError) -> ErrorCode {
    if error.outcome_unknown() {
        ErrorCode::OutcomeUnknown
    } else {
        ErrorCode::StoreUnavailable
    }
}

impl GatewayError {
    /// When a refused request may be tried again (the `Retry-After` header).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited { retry_after_secs }
            | GatewayError::PeerRateLimited {
                retry_after_secs, ..
            }
            | GatewayError::KeyQueue(KeyQueueError::Withheld { retry_after_secs }) => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::Decode(DecodeError::UnsupportedVersion(_)) => {
                ErrorCode::UnsupportedVersion
            }
            GatewayError::Decode(_) => ErrorCode::MalformedBody,
            GatewayError::BodyTooLarge => ErrorCode::BodyTooLarge,
            GatewayError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            GatewayError::NotFound => ErrorCode::NotFound,
            GatewayError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            GatewayError::RequestTimeout => ErrorCode::RequestTimeout,
            GatewayError::Auth(AuthError::Store(error))
            | GatewayError::Store(error)
            | GatewayError::Registry(RegistryError::Store(error)) => store_code(error),
            GatewayError::Auth(_) => ErrorCode::Unauthenticated,
            GatewayError::Forbidden(_) => ErrorCode::Forbidden,
            GatewayError::MalformedPath => ErrorCode::MalformedPath,
            GatewayError::UnknownApplication => ErrorCode::UnknownApplication,
            GatewayError::UnknownDomain(_) => ErrorCode::UnknownDomain,
            GatewayError::InvalidHandle(_) => ErrorCode::InvalidHandle,
            GatewayError::InvalidTag(_) => ErrorCode::InvalidTag,
            GatewayError::TooManyTags(_) | GatewayError::Registry(RegistryError::TooManyTags) => {
                ErrorCode::TooManyTags
            }
            GatewayError::ConflictingTagChange(_) => ErrorCode::ConflictingTagChange,
            GatewayError::Registry(RegistryError::UnknownClient) => ErrorCode::UnknownClient,
            GatewayError::Registry(RegistryError::HandleTaken) => ErrorCode::HandleTaken,
            GatewayError::Identity(error) => error.code(),
            GatewayError::InvalidLabel(_) => ErrorCode::InvalidLabel,
            GatewayError::InvalidReceiver(_) => ErrorCode::InvalidReceiver,
            GatewayError::UnsupportedProtocolVersion(_) => ErrorCode::UnsupportedProtocolVersion,
            GatewayError::UnsupportedCipherSuite(_) => ErrorCode::UnsupportedCipherSuite,
            GatewayError::KeyQueue(error) => match error {
                KeyQueueError::UnknownClient => ErrorCode::UnknownClient,
                KeyQueueError::QueueExists => ErrorCode::KeyQueueExists,
                KeyQueueError::UnknownQueue => ErrorCode::UnknownKeyQueue,
                KeyQueueError::NoMatchingQueue => ErrorCode::NoMatchingQueue,
                KeyQueueError::Exhausted => ErrorCode::QueueExhausted,
                KeyQueueError::Withheld { .. } => ErrorCode::RateLimited,
                KeyQueueError::TooManyPackages(_) => ErrorCode::TooManyKeyPackages,
                KeyQueueError::Store(error) => store_code(error),
            },
            GatewayError::KeyPackage { error, .. } => error.code(),
            GatewayError::Group(error) => error.code(),
            GatewayError::GroupStore(error) => match error {
                GroupStoreError::UnknownGroup => ErrorCode::UnknownGroup,
                GroupStoreError::GroupExists => ErrorCode::GroupExists,
                GroupStoreError::StaleEpoch { .. } => ErrorCode::StaleEpoch,
                GroupStoreError::DuplicateProposal => ErrorCode::DuplicateProposal,
                GroupStoreError::EpochOutOfRange { .. } => ErrorCode::EpochOutOfRange,
                GroupStoreError::EpochPruned { .. } => ErrorCode::EpochPruned,
                GroupStoreError::Store(error) => store_code(error),
            },
            GatewayError::GroupIdTooLong => ErrorCode::InvalidGroupInfo,
            GatewayError::UnknownWelcome => ErrorCode::UnknownWelcome,
            GatewayError::Overloaded => ErrorCode::Overloaded,
            GatewayError::OutcomeUnknown => ErrorCode::OutcomeUnknown,
            GatewayError::PeerUnavailable { .. } => ErrorCode::PeerUnavailable,
            GatewayError::PeerRefused { .. } => ErrorCode::PeerRefused,
            GatewayError::PeerMalformedAnswer(_) => ErrorCode::PeerMalformedAnswer,
            GatewayError::PeerKeyPackageDomain { .. } => ErrorCode::PeerKeyPackageDomain,
            GatewayError::PeerWrongAccount { .. } => ErrorCode::PeerWrongAccount,
            GatewayError::NotOurClient(_) => ErrorCode::NotOurClient,
            GatewayError::NotTheHub(_) => ErrorCode::NotTheHub,
            GatewayError::GroupInfoRequired => ErrorCode::GroupInfoRequired,
            GatewayError::DomainNotAllowed(_) => ErrorCode::DomainNotAllowed,
            GatewayError::OperationRules(_) => ErrorCode::OperationRulesViolated,
            GatewayError::SenderNotOfPeer(_) => ErrorCode::SenderNotOfPeer,
            GatewayError::Relayed { code, .. } => *code,
            GatewayError::ApplicationDoesNotFederate => ErrorCode::ApplicationDoesNotFederate,
            GatewayError::Internal(_) => ErrorCode::Internal,
            GatewayError::RateLimited { .. } | GatewayError::PeerRateLimited { .. } => {
                ErrorCode::RateLimited
            }
        }
    }
}

impl GatewayError {
    /// The `detail` sent with the code: its generic description, except where the caller
    /// needs to know which part of its input was refused (never internal detail).
    pub fn detail(&self) -> String {
        let description = self.code().description();
        match self {
            GatewayError::KeyPackage {
                index: Some(index), ..
            } => format!("key package {index}: {description}"),
            GatewayError::KeyPackage { index: None, .. } => format!("final key: {description}"),
            GatewayError::Group(error) => error.detail().unwrap_or_else(|| description.to_owned()),
            GatewayError::GroupStore(
                GroupStoreError::StaleEpoch { current }
                | GroupStoreError::EpochOutOfRange { current },
            ) => format!("current epoch {current}"),
            GatewayError::GroupStore(GroupStoreError::EpochPruned { pruned, current }) => {
                format!(
                    "oldest retained epoch {}, current epoch {current}",
                    pruned + 1
                )
            }
            GatewayError::PeerRefused { code, .. } => format!("{description}: code {code}"),
            GatewayError::PeerRateLimited { .. }
            | GatewayError::KeyQueue(KeyQueueError::Withheld { .. }) => self.to_string(),
            GatewayError::OperationRules(error) => format!("{description}: {error}"),
            GatewayError::Relayed { detail, .. } => detail.clone(),
            _ => description.to_owned(),
        }
    }

    /// The structured fields sent with the code: the current epoch of a stale commit (also
    /// in `detail` as text), and whatever a hub's relayed refusal carried.
    pub fn fields(&self) -> Vec<mimi_wire::ErrorField> {
        match self {
            GatewayError::GroupStore(
                GroupStoreError::StaleEpoch { current }
                | GroupStoreError::EpochOutOfRange { current },
            ) => vec![mimi_wire::ErrorField::current_epoch(*current)],
            GatewayError::Group(
                crate::mls::group::GroupError::StaleEpoch { current }
                | crate::mls::group::GroupError::FutureEpoch { current },
            ) => vec![mimi_wire::ErrorField::current_epoch(*current)],
            GatewayError::GroupStore(GroupStoreError::EpochPruned { pruned, current }) => vec![
                mimi_wire::ErrorField::current_epoch(*current),
                mimi_wire::ErrorField::oldest_epoch(pruned + 1),
            ],
            GatewayError::Relayed { fields, .. } => fields.clone(),
            _ => Vec::new(),
        }
    }
}
