//! `GET|POST /verification_key` (MIMI Transport, "Verification Key"): the keys with which a
//! provider signs its requests, so peers can authenticate them.
//!
//! The delivery-service draft leaves the shapes open; this gateway uses:
//!
//! ```text
//! struct {
//!     uint16 version;                 // 1
//! } VerificationKeyRequest;           // an empty body is accepted as the same request
//!
//! enum { ed25519(0x0807), (65535) } SignatureScheme;   // RFC 8446 code point
//!
//! struct {
//!     opaque key_id<V>;
//!     SignatureScheme scheme;
//!     opaque public_key<V>;
//!     uint64 not_before;              // seconds since the Unix epoch
//!     uint64 not_after;
//! } VerificationKey;
//!
//! struct {
//!     uint16 version;                 // 1
//!     opaque domain<V>;               // the DS domain these keys speak for
//!     VerificationKey keys<V>;        // the current signing key first, then retired ones
//! } VerificationKeyResponse;
//! ```
//!
//! The answer is authenticated by the HTTPS certificate of the DS domain.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

/// Signature algorithms for request signing; only Ed25519 today.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum SignatureScheme {
    Ed25519 = 0x0807,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct VerificationKeyRequest {
    pub version: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct VerificationKey {
    pub key_id: String,
    pub scheme: SignatureScheme,
    pub public_key: VLBytes,
    pub not_before: u64,
    pub not_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct VerificationKeyResponse {
    pub version: u16,
    pub domain: String,
    pub keys: Vec<VerificationKey>,
}

impl VerificationKey {
    /// The Ed25519 key, if the bytes are a valid point.
    pub fn ed25519(&self) -> Option<VerifyingKey> {
        let bytes: [u8; 32] = self.public_key.as_slice().try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }

    /// Whether the key may be used for a request made at `unix_seconds`.
    pub fn is_valid_at(&self, unix_seconds: u64) -> bool {
        self.not_before <= unix_seconds && unix_seconds < self.not_after
    }
}

impl VerificationKeyResponse {
    /// The key with this id, if published.
    pub fn key(&self, key_id: &str) -> Option<&VerificationKey> {
        self.keys.iter().find(|key| key.key_id == key_id)
    }
}

/// The id this gateway gives a key: hex of the first 8 bytes of SHA-256 of the public key.
pub fn key_id_for(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
