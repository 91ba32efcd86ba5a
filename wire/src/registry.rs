//! Applications, identity configurations and the client registry (MIMI Back-end
//! Architecture, "Identity Providers", "Applications", "Managing Identities").
//!
//! The draft shows these as JSON; here they carry the same fields TLS-serialized. Shapes
//! (`opaque<V>` strings are UTF-8; UUIDs are 16 bytes):
//!
//! ```text
//! enum { basic(1), x509(2), basic_with_domains(240), (255) } IdentityProviderType;
//! // basic_with_domains is ours (docs/decisions.md): Basic identities `handle@domain`
//!
//! struct {
//!     IdentityProviderType identity_provider_type;
//!     bool supports_accounts;
//!     bool supports_domains;
//!     opaque parameters<V>;          // empty for basic; X509Parameters for x509
//! } IdentityConfiguration;
//!
//! struct { uint8 start; uint8 end; } X509DeviceHandleRange;
//! struct {
//!     X509DeviceHandleRange device_handle_range;
//!     optional<uint8> account_handle_offset;   // present iff supports_accounts
//!     optional<uint8> domain_name_offset;      // present iff supports_domains
//! } X509Parameters;
//!
//! struct {
//!     uint64 max_lifetime_secs;     // longest key package lifetime window accepted
//!     uint32 max_per_queue;         // most ordinary key packages a key queue holds
//!     uint16 cipher_suites<V>;      // the suites key queues may have
//! } KeyPackageLimits;               // ours
//! struct {
//!     opaque id[16];
//!     IdentityConfiguration identity_configuration;
//!     KeyPackageLimits key_package_limits;
//! } ApplicationConfiguration;
//! struct { uint16 version; ApplicationConfiguration applications<V>; } ApplicationList;
//!
//! struct { opaque client_id[16]; opaque client_handle<V>; opaque tags<V><V>; } ClientRecord;
//!
//! struct { uint16 version; opaque client_handle<V>; opaque tags<V><V>; } RegisterClientRequest;
//! struct { uint16 version; opaque client_id[16]; } RegisterClientResponse;
//! struct {
//!     uint16 version;
//!     optional<opaque client_handle<V>>;      // absent: handle unchanged
//!     opaque tags_to_add<V><V>;
//!     opaque tags_to_remove<V><V>;
//! } UpdateClientRequest;
//! struct { uint16 version; ClientRecord client; } ClientResponse;
//! struct { uint16 version; optional<opaque domain<V>>; opaque tag<V>; } DiscoverClientsRequest;
//! struct { uint16 version; ClientRecord identities<V>; } DiscoverClientsResponse;
//! ```

use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

use crate::codec::WireBool;

/// Longest client handle, in bytes.
pub const MAX_HANDLE_BYTES: usize = 255;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 255;
/// Most tags one client may carry.
pub const MAX_TAGS: usize = 64;

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum IdentityProviderType {
    Basic = 1,
    X509 = 2,
    /// Ours, not the draft's: Basic credentials whose identity is `handle@domain`, the
    /// domain being the client's provider's, so that applications without an X.509 PKI
    /// federate. `supports_domains` is true and `parameters` empty.
    BasicWithDomains = 240,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct IdentityConfiguration {
    pub identity_provider_type: IdentityProviderType,
    pub supports_accounts: WireBool,
    pub supports_domains: WireBool,
    pub parameters: VLBytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct X509DeviceHandleRange {
    pub start: u8,
    pub end: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct X509Parameters {
    pub device_handle_range: X509DeviceHandleRange,
    pub account_handle_offset: Option<u8>,
    pub domain_name_offset: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ApplicationConfiguration {
    pub id: [u8; 16],
    pub identity_configuration: IdentityConfiguration,
    /// What the gateway accepts in this application's key queues.
    pub key_package_limits: KeyPackageLimits,
}

/// The key-package limits an application's clients must meet (ours, so that clients need not
/// learn them from refusals).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct KeyPackageLimits {
    /// Longest lifetime window (`not_after - not_before`) a key package may have.
    pub max_lifetime_secs: u64,
    /// Most ordinary key packages one key queue holds.
    pub max_per_queue: u32,
    /// The MLS cipher suites key queues may be created for.
    pub cipher_suites: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ApplicationList {
    pub version: u16,
    pub applications: Vec<ApplicationConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ClientRecord {
    pub client_id: [u8; 16],
    pub client_handle: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct RegisterClientRequest {
    pub version: u16,
    pub client_handle: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct RegisterClientResponse {
    pub version: u16,
    pub client_id: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UpdateClientRequest {
    pub version: u16,
    pub client_handle: Option<String>,
    pub tags_to_add: Vec<String>,
    pub tags_to_remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ClientResponse {
    pub version: u16,
    pub client: ClientRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DiscoverClientsRequest {
    pub version: u16,
    pub domain: Option<String>,
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct DiscoverClientsResponse {
    pub version: u16,
    pub identities: Vec<ClientRecord>,
}

/// Why a handle or tag is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty")]
    Empty,
    #[error("longer than {0} bytes")]
    TooLong(usize),
    #[error("contains a control character")]
    ControlCharacter,
    /// In an application whose identity provider has domains, `handle@domain` names a client
    /// of another gateway: a local handle holds no `@`.
    #[error("contains @, which names a client of another domain")]
    DomainSeparator,
}

fn check_name(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.len() > max {
        Err(NameError::TooLong(max))
    } else if name.chars().any(char::is_control) {
        Err(NameError::ControlCharacter)
    } else {
        Ok(())
    }
}

/// A client handle: 1 to [`MAX_HANDLE_BYTES`] bytes of UTF-8 without control characters.
pub fn check_handle(handle: &str) -> Result<(), NameError> {
    check_name(handle, MAX_HANDLE_BYTES)
}

/// A handle of an application whose identity provider has domains: a valid handle without
/// `@` (which separates a handle from the domain of another gateway's client).
pub fn check_local_handle(handle: &str) -> Result<(), NameError> {
    check_handle(handle)?;
    if handle.contains('@') {
        return Err(NameError::DomainSeparator);
    }
    Ok(())
}

/// A tag: 1 to [`MAX_TAG_BYTES`] bytes of UTF-8 without control characters.
pub fn check_tag(tag: &str) -> Result<(), NameError> {
    check_name(tag, MAX_TAG_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_exact, encode};

    #[test]
    fn update_request_round_trips_with_and_without_handle() {
        for handle in [None, Some("alice/phone".to_string())] {
            let request = UpdateClientRequest {
                version: 1,
                client_handle: handle,
                tags_to_add: vec!["a".into()],
                tags_to_remove: vec![],
            };
            let bytes = encode(&request).unwrap();
            assert_eq!(
                decode_exact::<UpdateClientRequest>(&bytes).unwrap(),
                request
            );
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_handle(""), Err(NameError::Empty));
        assert_eq!(check_handle(&"x".repeat(256)), Err(NameError::TooLong(255)));
        assert_eq!(check_tag("a\nb"), Err(NameError::ControlCharacter));
        assert!(check_tag("account_id:alice@org").is_ok());
    }
}
