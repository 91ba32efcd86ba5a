//! The one mapping of the gateway's errors (`GatewayError`: service, store, MLS, identity,
//! authentication) to a stable wire code (`mimi-wire`'s `ErrorCode`, MIMI Transport "Error
//! responses"; `docs/errors.md`), which fixes the HTTP status and the generic detail the
//! caller sees. The precise reason stays in the log.

use mimi_wire::{DecodeError, ErrorCode};

use crate::error::{AuthError, GatewayError};
use crate::store::{GroupStoreError, KeyQueueError, RegistryError, StoreError};

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
                KeyQueueError::Replayed => ErrorCode::Unauthenticated,
                // Judged by the pipeline before any answer; should it get out, it is what
                // the verdict would say at worst.
                KeyQueueError::Held { .. } => ErrorCode::RateLimited,
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
