//! Identity providers (MIMI Back-end Architecture, "Identity Providers"): which MLS
//! credentials an application accepts, whether one is valid, and the client handle, account
//! and domain it names.
//!
//! The draft's interface, as a trait:
//!
//! ```text
//! interface {
//!     fn supported_credentials() -> [CredentialType];
//!     fn validate(Identity identity, Extension group_context_ext[],
//!         ApplicationContext a_ctx) -> bool;
//!     fn client_handle(Identity identity) -> Vec<u8>;
//!     fn valid_successor(Identity predecessor, Identity successor) -> bool;
//! } IdentityProvider;
//! ```
//!
//! plus `client_account` and `client_domain` when the configuration supports them. Group
//! context extensions play no part in either provider here, so `validate` does not take them.

mod basic;
mod x509;

pub use basic::BasicProvider;
pub use x509::{X509Provider, X509Settings};

use mimi_wire::ErrorCode;
use mimi_wire::registry::IdentityConfiguration;

/// MLS credential types (RFC 9420, section 17.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialType {
    Basic,
    X509,
    Other(u16),
}

impl CredentialType {
    pub fn code_point(self) -> u16 {
        match self {
            CredentialType::Basic => 1,
            CredentialType::X509 => 2,
            CredentialType::Other(value) => value,
        }
    }
}

/// An MLS credential as the gateway sees it (RFC 9420, section 5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `opaque identity<V>`.
    Basic {
        identity: Vec<u8>,
    },
    /// `Certificate certificates<V>`: DER certificates, the leaf first.
    X509 {
        chain: Vec<Vec<u8>>,
    },
    Other {
        credential_type: u16,
    },
}

impl Credential {
    pub fn credential_type(&self) -> CredentialType {
        match self {
            Credential::Basic { .. } => CredentialType::Basic,
            Credential::X509 { .. } => CredentialType::X509,
            Credential::Other { credential_type } => CredentialType::Other(*credential_type),
        }
    }
}

/// The draft's `Identity`: a signature public key and the credential presented with it.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub signature_key: &'a [u8],
    pub credential: &'a Credential,
}

/// The draft's `X509ApplicationContext`: the time at which the credential must be valid.
#[derive(Debug, Clone, Copy)]
pub struct ApplicationContext {
    pub msg_timestamp: u64,
}

impl ApplicationContext {
    pub fn now() -> ApplicationContext {
        ApplicationContext {
            msg_timestamp: crate::keys::unix_now(),
        }
    }
}

/// What a credential names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub handle: String,
    pub account: Option<String>,
    pub domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("credential does not decode: {0}")]
    MalformedCredential(String),
    #[error("credential type {0} is not supported by this identity provider")]
    UnsupportedCredential(u16),
    #[error("certificate chain: {0}")]
    InvalidChain(String),
    #[error("certificate at offset {0} has no subject common name")]
    MissingCommonName(usize),
    #[error("common name at offset {0} contains one of @ / # $ :")]
    ForbiddenCharacter(usize),
    #[error("the leaf certificate does not certify the signature key")]
    KeyMismatch,
    #[error("derived client handle is invalid: {0}")]
    InvalidHandle(String),
}

impl IdentityError {
    pub fn code(&self) -> ErrorCode {
        match self {
            IdentityError::MalformedCredential(_) => ErrorCode::MalformedCredential,
            IdentityError::UnsupportedCredential(_) => ErrorCode::UnsupportedCredential,
            IdentityError::InvalidChain(_) => ErrorCode::InvalidCertificateChain,
            IdentityError::MissingCommonName(_) => ErrorCode::MissingCommonName,
            IdentityError::ForbiddenCharacter(_) => ErrorCode::ForbiddenCommonNameCharacter,
            IdentityError::KeyMismatch => ErrorCode::CredentialKeyMismatch,
            IdentityError::InvalidHandle(_) => ErrorCode::InvalidHandle,
        }
    }
}

pub trait IdentityProvider: Send + Sync {
    /// The configuration peers see (`ApplicationConfiguration.identity_configuration`).
    fn configuration(&self) -> IdentityConfiguration;

    fn supported_credentials(&self) -> &'static [CredentialType];

    /// What the credential names, without judging its validity.
    fn describe(&self, identity: &Identity<'_>) -> Result<ClientIdentity, IdentityError>;

    /// Whether the credential is valid at `context.msg_timestamp`, and what it names.
    fn validate(
        &self,
        identity: &Identity<'_>,
        context: &ApplicationContext,
    ) -> Result<ClientIdentity, IdentityError>;

    fn client_handle(&self, identity: &Identity<'_>) -> Result<String, IdentityError> {
        Ok(self.describe(identity)?.handle)
    }

    /// The account, when the configuration supports accounts.
    fn client_account(&self, identity: &Identity<'_>) -> Result<Option<String>, IdentityError> {
        Ok(self.describe(identity)?.account)
    }

    /// The domain, when the configuration supports domains.
    fn client_domain(&self, identity: &Identity<'_>) -> Result<Option<String>, IdentityError> {
        Ok(self.describe(identity)?.domain)
    }

    /// "A client is a valid successor of another client if their client identifiers are
    /// equal."
    fn valid_successor(
        &self,
        predecessor: &Identity<'_>,
        successor: &Identity<'_>,
    ) -> Result<bool, IdentityError> {
        Ok(self.client_handle(predecessor)? == self.client_handle(successor)?)
    }
}

/// Refuses credentials of types the provider does not support.
fn require_supported(
    provider: &dyn IdentityProvider,
    credential: &Credential,
) -> Result<(), IdentityError> {
    let credential_type = credential.credential_type();
    if provider.supported_credentials().contains(&credential_type) {
        Ok(())
    } else {
        Err(IdentityError::UnsupportedCredential(
            credential_type.code_point(),
        ))
    }
}
