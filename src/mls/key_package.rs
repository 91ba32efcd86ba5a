//! Key package validation for key queues (architecture draft, "Key Package Validation" and
//! "Key Queue Update"): openmls' `KeyPackageIn::validate` (signatures, version, lifetime,
//! extensions), then the gateway's own checks, each with its own error code: version and
//! cipher suite equal the queue's, lifetime window within the configured maximum, no
//! last-resort package among ordinary ones, credential valid under the application's
//! identity provider, naming the queue's client, and of this gateway's domain when the
//! application uses domains.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    KeyPackage, KeyPackageVerifyError, MlsMessageBodyIn, MlsMessageIn, ProtocolVersion,
};
use openmls_traits::OpenMlsProvider;

use mimi_wire::ErrorCode;

use crate::identity::{ApplicationContext, Identity, IdentityError, IdentityProvider};

/// The cipher suites whose key packages this gateway can validate (openmls_rust_crypto).
pub const SUPPORTED_CIPHER_SUITES: [u16; 3] = [0x0001, 0x0002, 0x0003];
/// MLS 1.0.
pub const MLS_10: u16 = 1;

/// Why a key package was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPackageError {
    #[error("not an MLSMessage holding a KeyPackage: {0}")]
    Malformed(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("GREASE values (RFC 9420, section 13.5) are not supported")]
    Grease,
    #[error("lifetime ended or not begun: {0}")]
    Expired(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("cipher suite {found:#06x}, queue has {expected:#06x}")]
    CipherSuiteMismatch { found: u16, expected: u16 },
    #[error("protocol version {found}, queue has {expected}")]
    ProtocolVersionMismatch { found: u16, expected: u16 },
    #[error("lifetime window {window}s is over the maximum {max}s")]
    LifetimeTooLong { window: u64, max: u64 },
    #[error("last-resort key package offered as an ordinary one")]
    LastResort,
    #[error("credential: {0}")]
    Identity(#[from] IdentityError),
    #[error("credential names `{found}`, the queue belongs to `{expected}`")]
    NotOwner { found: String, expected: String },
    #[error("credential domain `{found}` is not `{expected}`")]
    ForeignDomain { found: String, expected: String },
}

impl KeyPackageError {
    pub fn code(&self) -> ErrorCode {
        match self {
            KeyPackageError::Malformed(_) => ErrorCode::MalformedKeyPackage,
            KeyPackageError::BadSignature => ErrorCode::KeyPackageSignatureInvalid,
            KeyPackageError::Grease => ErrorCode::GreaseUnsupported,
            KeyPackageError::Expired(_) => ErrorCode::KeyPackageExpired,
            KeyPackageError::Invalid(_) => ErrorCode::KeyPackageInvalid,
            KeyPackageError::CipherSuiteMismatch { .. } => ErrorCode::CipherSuiteMismatch,
            KeyPackageError::ProtocolVersionMismatch { .. } => ErrorCode::ProtocolVersionMismatch,
            KeyPackageError::LifetimeTooLong { .. } => ErrorCode::LifetimeTooLong,
            KeyPackageError::LastResort => ErrorCode::LastResortNotAllowed,
            KeyPackageError::Identity(error) => error.code(),
            KeyPackageError::NotOwner { .. } => ErrorCode::CredentialNotOwner,
            KeyPackageError::ForeignDomain { .. } => ErrorCode::ForeignDomain,
        }
    }
}

/// What the queue a package is for requires of it.
pub struct QueueRules<'a> {
    pub protocol_version: u16,
    pub cipher_suite: u16,
    pub max_lifetime_secs: u64,
    pub identity: &'a dyn IdentityProvider,
    /// The handle of the client owning the queue.
    pub owner_handle: &'a str,
    /// The domain credentials must name, when the application uses domains.
    pub domain: &'a str,
    /// Final keys may be last-resort packages; ordinary ones may not.
    pub final_key: bool,
}

/// A key package that passed every check: what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKeyPackage {
    /// The MLSMessage bytes as uploaded.
    pub bytes: Vec<u8>,
    /// KeyPackageRef (RFC 9420, section 5.2).
    pub reference: Vec<u8>,
    pub not_after: u64,
}

/// The wire format of an MLSMessage carrying a KeyPackage (RFC 9420, section 6).
const WIRE_FORMAT_KEY_PACKAGE: u16 = 5;

/// The KeyPackage's own protocol version and cipher suite, read from the leading bytes of an
/// MLSMessage carrying one: `uint16 version; uint16 wire_format;` then the KeyPackage's
/// `uint16 version; uint16 cipher_suite;`. Checking them first refuses a mismatch with its
/// own code (openmls does not decode unknown versions at all) and before any signature work.
fn version_and_suite(bytes: &[u8]) -> Option<(u16, u16)> {
    let field = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    };
    (field(2)? == WIRE_FORMAT_KEY_PACKAGE).then_some(())?;
    Some((field(4)?, field(6)?))
}

/// Decodes and validates one key package for a queue.
pub fn validate(bytes: &[u8], rules: &QueueRules<'_>) -> Result<ValidKeyPackage, KeyPackageError> {
    let not_a_key_package =
        || KeyPackageError::Malformed("the MLSMessage is not a KeyPackage".into());
    let (version, suite) = version_and_suite(bytes).ok_or_else(not_a_key_package)?;
    if version != rules.protocol_version {
        return Err(KeyPackageError::ProtocolVersionMismatch {
            found: version,
            expected: rules.protocol_version,
        });
    }
    if suite != rules.cipher_suite {
        return Err(KeyPackageError::CipherSuiteMismatch {
            found: suite,
            expected: rules.cipher_suite,
        });
    }
    let key_package = decode_and_verify(bytes, || KeyPackageError::ProtocolVersionMismatch {
        found: version,
        expected: rules.protocol_version,
    })?;
    if key_package.last_resort() && !rules.final_key {
        return Err(KeyPackageError::LastResort);
    }
    let member = check_member_key_package(
        &key_package,
        &MemberRules {
            max_lifetime_secs: rules.max_lifetime_secs,
            identity: rules.identity,
            domain: rules.domain,
            federated: false,
        },
    )?;
    if member.handle != rules.owner_handle {
        return Err(KeyPackageError::NotOwner {
            found: member.handle,
            expected: rules.owner_handle.to_owned(),
        });
    }
    let reference = member.reference;
    let lifetime = key_package.life_time();
    Ok(ValidKeyPackage {
        bytes: bytes.to_vec(),
        reference,
        not_after: lifetime.not_after(),
    })
}

/// What every key package must meet to join a group of the application, whether uploaded to
/// a queue or carried in an Add proposal ("Key Package Validation").
pub struct MemberRules<'a> {
    pub max_lifetime_secs: u64,
    pub identity: &'a dyn IdentityProvider,
    /// The domain credentials must name, when the application uses domains.
    pub domain: &'a str,
    /// Group members may be of other domains (a group's Add proposals and leaves); key
    /// queue uploads never are.
    pub federated: bool,
}

/// A key package's member: its client handle and the package's KeyPackageRef.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub handle: String,
    pub reference: Vec<u8>,
}

/// The gateway's own checks on a key package openmls has validated: lifetime window,
/// credential under the identity provider, domain.
pub fn check_member_key_package(
    key_package: &KeyPackage,
    rules: &MemberRules<'_>,
) -> Result<Member, KeyPackageError> {
    let lifetime = key_package.life_time();
    let window = lifetime.not_after().saturating_sub(lifetime.not_before());
    if window > rules.max_lifetime_secs {
        return Err(KeyPackageError::LifetimeTooLong {
            window,
            max: rules.max_lifetime_secs,
        });
    }
    let handle = member_handle(key_package.leaf_node(), rules)?;
    let reference = key_package
        .hash_ref(super::crypto().crypto())
        .map_err(|error| KeyPackageError::Invalid(error.to_string()))?
        .as_slice()
        .to_vec();
    Ok(Member { handle, reference })
}

/// The client handle a leaf's credential names under the application's identity provider,
/// refused if the credential is invalid or names another domain. Under federated rules a
/// member of another domain is `handle@domain`: no handle of a domain-aware provider
/// contains `@` (X.509 identifiers refuse it), so it never collides with a local handle.
pub fn member_handle(
    leaf: &openmls::prelude::LeafNode,
    rules: &MemberRules<'_>,
) -> Result<String, KeyPackageError> {
    Ok(member_identity(leaf, rules)?.name)
}

/// A member as the delivery-service draft's operations see it: its name among the group's
/// members and the user it belongs to ("Clients and users"). Users are the identity
/// provider's accounts; without accounts each client is its own user. A user of another
/// domain is named `account@domain`, like a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIdentity {
    pub name: String,
    pub user: String,
}

/// The name and user a leaf's credential gives under the application's identity provider
/// (see [`member_handle`] for the refusals).
pub fn member_identity(
    leaf: &openmls::prelude::LeafNode,
    rules: &MemberRules<'_>,
) -> Result<MemberIdentity, KeyPackageError> {
    let credential = super::credential(leaf.credential())?;
    let identity = Identity {
        signature_key: leaf.signature_key().as_slice(),
        credential: &credential,
    };
    let named = rules
        .identity
        .validate(&identity, &ApplicationContext::now())?;
    let account = named.account.unwrap_or_else(|| named.handle.clone());
    if let Some(domain) = named.domain
        && !domain.eq_ignore_ascii_case(rules.domain)
    {
        if rules.federated {
            return Ok(MemberIdentity {
                name: foreign_handle(&named.handle, &domain),
                user: foreign_handle(&account, &domain),
            });
        }
        return Err(KeyPackageError::ForeignDomain {
            found: domain,
            expected: rules.domain.to_owned(),
        });
    }
    Ok(MemberIdentity {
        name: named.handle,
        user: account,
    })
}

/// How a member of another domain is named among a group's members.
pub fn foreign_handle(handle: &str, domain: &str) -> String {
    format!("{handle}@{}", domain.to_ascii_lowercase())
}

/// A member name split into handle and domain; `None` for a member of this gateway.
pub fn split_foreign(member: &str) -> Option<(&str, &str)> {
    member.rsplit_once('@')
}

/// Whether a member name is of a client of `domain`, another gateway's.
pub fn is_of_domain(member: &str, domain: &str) -> bool {
    split_foreign(member).is_some_and(|(_, found)| found.eq_ignore_ascii_case(domain))
}

/// A key package a peer handed out (architecture draft, "Key Package Validation"): valid
/// per openmls and the application's rules; answers its member's name (`handle@domain` when
/// of another domain), which the caller compares with the peer.
pub fn foreign_member(bytes: &[u8], rules: &MemberRules<'_>) -> Result<String, KeyPackageError> {
    let key_package = decode_and_verify(bytes, || {
        KeyPackageError::Invalid("not an MLS 1.0 key package".into())
    })?;
    let rules = MemberRules {
        federated: true,
        ..*rules
    };
    Ok(check_member_key_package(&key_package, &rules)?.handle)
}

/// An MLSMessage holding a KeyPackage, decoded and verified by openmls (signatures,
/// lifetime, extensions); `other_version` is the refusal of a package of another protocol
/// version.
fn decode_and_verify(
    bytes: &[u8],
    other_version: impl FnOnce() -> KeyPackageError,
) -> Result<KeyPackage, KeyPackageError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|error| KeyPackageError::Malformed(error.to_string()))?;
    let MlsMessageBodyIn::KeyPackage(key_package_in) = message.extract() else {
        return Err(KeyPackageError::Malformed(
            "the MLSMessage is not a KeyPackage".into(),
        ));
    };
    let provider = super::crypto();
    key_package_in
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|error| match error {
            // openmls 0.9.2 refuses some key packages with GREASE values
            // (`../shared/OPENMLS.md`): told from the package's own values.
            _ if super::grease::in_message(bytes).used => KeyPackageError::Grease,
            KeyPackageVerifyError::InvalidSignature
            | KeyPackageVerifyError::InvalidLeafNodeSignature => KeyPackageError::BadSignature,
            KeyPackageVerifyError::LifetimeError(error) => {
                KeyPackageError::Expired(error.to_string())
            }
            KeyPackageVerifyError::InvalidProtocolVersion => other_version(),
            other => KeyPackageError::Invalid(other.to_string()),
        })
}
