//! Key queues and key packages (MIMI Back-end Architecture, "Managing Key Packages"). Key
//! packages travel as `opaque<V>` holding the TLS-serialized `MLSMessage`.
//!
//! ```text
//! struct {
//!     uint16 version;
//!     uint16 protocol_version;          // 1 = MLS 1.0
//!     uint16 cipher_suite;
//!     opaque app_label<V>;              // may be empty
//! } CreateKeyQueueRequest;
//! struct { uint16 version; opaque key_queue_id[16]; } CreateKeyQueueResponse;
//!
//! struct {
//!     uint16 version;
//!     opaque key_packages<V><V>;        // each an MLSMessage holding a KeyPackage
//!     bool is_reset;
//!     optional<opaque app_label<V>>;
//!     optional<opaque final_key<V>>;    // an MLSMessage holding a KeyPackage
//! } UpdateKeyQueueRequest;
//! struct { uint16 version; uint32 key_packages_in_pool; } UpdateKeyQueueResponse;
//!
//! struct {
//!     uint16 version;
//!     optional<opaque domain<V>>;
//!     uint16 protocol_version;
//!     uint16 cipher_suite;
//!     optional<opaque app_label<V>>;    // absent: the empty label
//!     opaque receiver_client_id<V>;
//! } RetrieveKeyPackageRequest;
//! struct { uint16 version; opaque key_package<V>; bool is_final_key; } RetrieveKeyPackageResponse;
//!
//! // POST /apps/{appId}/connection-key-packages (delivery-service draft, "Connection
//! // KeyPackages"): one key package of each client of an account, from the clients' key
//! // queues labelled "connection" (CONNECTION_APP_LABEL), of any supported cipher suite.
//! struct {
//!     uint16 version;
//!     optional<opaque domain<V>>;       // another gateway's: asked there
//!     opaque account<V>;                // the identity provider's account (or the handle
//!                                       // of the one client, without accounts)
//!     opaque receiver_client_id<V>;     // as for RetrieveKeyPackageRequest
//! } RetrieveConnectionKeyPackagesRequest;
//! struct { uint16 version; opaque key_packages<V><V>; } ConnectionKeyPackagesResponse;
//! ```

use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

use crate::codec::WireBool;

/// Longest application label, in bytes.
pub const MAX_LABEL_BYTES: usize = 255;
/// Longest receiver client id, in bytes.
pub const MAX_RECEIVER_BYTES: usize = 255;
/// The application label of the key queues that hold connection key packages (the draft
/// marks them with a LeafNode extension no MLS library defines yet; a queue label does it).
pub const CONNECTION_APP_LABEL: &str = "connection";

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct RetrieveConnectionKeyPackagesRequest {
    pub version: u16,
    pub domain: Option<String>,
    pub account: String,
    /// Who the packages are for: the same receiver gets the same packages until they are used.
    pub receiver_client_id: String,
}

/// Each an MLSMessage holding a KeyPackage, one per client of the account that has one.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ConnectionKeyPackagesResponse {
    pub version: u16,
    pub key_packages: Vec<VLBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct CreateKeyQueueRequest {
    pub version: u16,
    pub protocol_version: u16,
    pub cipher_suite: u16,
    pub app_label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct CreateKeyQueueResponse {
    pub version: u16,
    pub key_queue_id: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UpdateKeyQueueRequest {
    pub version: u16,
    pub key_packages: Vec<VLBytes>,
    pub is_reset: WireBool,
    pub app_label: Option<String>,
    pub final_key: Option<VLBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UpdateKeyQueueResponse {
    pub version: u16,
    pub key_packages_in_pool: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct RetrieveKeyPackageRequest {
    pub version: u16,
    pub domain: Option<String>,
    pub protocol_version: u16,
    pub cipher_suite: u16,
    pub app_label: Option<String>,
    pub receiver_client_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct RetrieveKeyPackageResponse {
    pub version: u16,
    pub key_package: VLBytes,
    pub is_final_key: WireBool,
}
