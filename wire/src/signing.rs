//! The signed-request envelope: how a caller (a peer gateway or an application server)
//! authenticates a request, and the one implementation of signing and verifying it.
//!
//! MIMI Transport, "Transport Security and Authentication": payloads are authenticated by the
//! sender's signature and name both sender and recipient, so a recipient can refuse a request
//! forwarded to it. The envelope travels in the `mimi-signature` header (base64url without
//! padding of the TLS-serialized [`RequestSignature`]), so every body stays exactly the
//! struct the transport draft names.
//!
//! ```text
//! enum { provider(1), application(2), (255) } SenderKind;
//!
//! struct {
//!     SenderKind sender_kind;
//!     opaque sender<V>;        // provider domain, or application id (UUID text)
//!     opaque recipient<V>;     // the DS domain the request is meant for
//!     uint64 timestamp;        // seconds since the Unix epoch
//!     opaque request_id[16];   // unique per request; the recipient refuses a replay
//!     opaque key_id<V>;        // which of the sender's keys signed
//! } RequestClaims;         // sender, recipient: 1-253 bytes; key_id: 1-64 bytes
//!
//! struct {
//!     uint16 version;          // 1
//!     RequestClaims claims;
//!     opaque signature<V>;     // Ed25519 over RequestTbs: exactly 64 bytes
//! } RequestSignature;
//!
//! struct {
//!     opaque label<V> = "MIMI gateway signed request v1";
//!     opaque method<V>;        // e.g. "POST"
//!     opaque path<V>;          // path and query exactly as sent
//!     RequestClaims claims;
//!     opaque body_hash[32];    // SHA-256 of the body (of nothing for an empty body)
//! } RequestTbs;
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

use crate::{DecodeError, WIRE_VERSION, codec};

/// The HTTP header carrying the envelope.
pub const SIGNATURE_HEADER: &str = "mimi-signature";

const TBS_LABEL: &str = "MIMI gateway signed request v1";

/// Longest header value accepted before decoding (the envelope is ~200 bytes).
pub const MAX_HEADER_LEN: usize = 2048;
/// Longest sender and recipient: a DNS name (253 bytes) or an application id (36).
pub const MAX_NAME_LEN: usize = 253;
/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;
/// An Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Who signs: a peer provider (its domain) or one of this gateway's applications (its id).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum SenderKind {
    Provider = 1,
    Application = 2,
}

/// What the sender asserts about a request; all of it is covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct RequestClaims {
    pub sender_kind: SenderKind,
    pub sender: String,
    pub recipient: String,
    pub timestamp: u64,
    pub request_id: [u8; 16],
    pub key_id: String,
}

/// The envelope as carried in [`SIGNATURE_HEADER`].
#[derive(Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct RequestSignature {
    pub version: u16,
    pub claims: RequestClaims,
    pub signature: VLBytes,
}

impl std::fmt::Debug for RequestSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSignature")
            .field("version", &self.version)
            .field("claims", &self.claims)
            .field(
                "signature",
                &format_args!("<{} bytes>", self.signature.as_slice().len()),
            )
            .finish()
    }
}

#[derive(TlsSerialize, TlsSize)]
struct RequestTbs<'a> {
    label: &'a str,
    method: &'a str,
    path: &'a str,
    claims: &'a RequestClaims,
    body_hash: [u8; 32],
}

/// Why an envelope was refused. Callers map all of these to one generic answer and log the
/// variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is not valid base64url")]
    NotBase64,
    #[error("the signature envelope does not decode: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the envelope could not be encoded: {0}")]
    Encoding(String),
}

fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

fn to_be_signed(
    method: &str,
    path: &str,
    claims: &RequestClaims,
    body: &[u8],
) -> Result<Vec<u8>, SignatureError> {
    let tbs = RequestTbs {
        label: TBS_LABEL,
        method,
        path,
        claims,
        body_hash: body_hash(body),
    };
    codec::encode(&tbs).map_err(|error| SignatureError::Encoding(error.to_string()))
}

/// Signs a request: `method` and `path` (with query) exactly as they go on the wire, and the
/// exact body bytes.
pub fn sign(
    key: &SigningKey,
    claims: RequestClaims,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<RequestSignature, SignatureError> {
    let tbs = to_be_signed(method, path, &claims, body)?;
    let signature = key.sign(&tbs);
    Ok(RequestSignature {
        version: WIRE_VERSION,
        claims,
        signature: VLBytes::new(signature.to_bytes().to_vec()),
    })
}

impl RequestSignature {
    /// The header value: base64url without padding of the TLS encoding.
    pub fn to_header_value(&self) -> Result<String, SignatureError> {
        let bytes =
            codec::encode(self).map_err(|error| SignatureError::Encoding(error.to_string()))?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses a header value; refuses oversized, non-base64, inexact or wrong-version input.
    pub fn from_header_value(value: &[u8]) -> Result<Self, SignatureError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(SignatureError::Malformed(DecodeError::Malformed(
                "signature header too long".into(),
            )));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| SignatureError::NotBase64)?;
        let envelope: RequestSignature = codec::decode_exact(&bytes)?;
        codec::check_version(envelope.version)?;
        let claims = &envelope.claims;
        let out_of_bound = [
            (
                "sender",
                claims.sender.len() > MAX_NAME_LEN || claims.sender.is_empty(),
            ),
            (
                "recipient",
                claims.recipient.len() > MAX_NAME_LEN || claims.recipient.is_empty(),
            ),
            (
                "key id",
                claims.key_id.len() > MAX_KEY_ID_LEN || claims.key_id.is_empty(),
            ),
            (
                "signature",
                envelope.signature.as_slice().len() != SIGNATURE_LEN,
            ),
        ];
        if let Some((field, _)) = out_of_bound.iter().find(|(_, out)| *out) {
            return Err(SignatureError::Malformed(DecodeError::Malformed(format!(
                "{field} out of its bound"
            ))));
        }
        Ok(envelope)
    }

    /// Verifies the signature over `method`, `path` and `body` with the sender's key. The
    /// checks of the claims (recipient, freshness, replay, key validity) are the receiver's,
    /// before this one.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        key: &VerifyingKey,
    ) -> Result<(), SignatureError> {
        let signature = self.signature()?;
        let tbs = self.signed_content(method, path, body)?;
        key.verify_strict(&tbs, &signature)
            .map_err(|_| SignatureError::BadSignature)
    }

    /// The bytes the signature covers (`RequestTbs`) for `method`, `path` and `body`: for a
    /// receiver that verifies many signatures at once instead of through [`Self::verify`].
    pub fn signed_content(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, SignatureError> {
        to_be_signed(method, path, &self.claims, body)
    }

    /// The envelope's Ed25519 signature.
    pub fn signature(&self) -> Result<Signature, SignatureError> {
        Signature::from_slice(self.signature.as_slice()).map_err(|_| SignatureError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> RequestClaims {
        RequestClaims {
            sender_kind: SenderKind::Provider,
            sender: "a.example".into(),
            recipient: "b.example".into(),
            timestamp: 1_700_000_000,
            request_id: [7; 16],
            key_id: "k1".into(),
        }
    }

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand::rngs::OsRng)
    }

    #[test]
    fn signed_request_verifies_after_header_round_trip() {
        let key = key();
        let envelope = sign(&key, claims(), "POST", "/group_operation", b"body").unwrap();
        let header = envelope.to_header_value().unwrap();
        let parsed = RequestSignature::from_header_value(header.as_bytes()).unwrap();
        assert_eq!(parsed, envelope);
        parsed
            .verify("POST", "/group_operation", b"body", &key.verifying_key())
            .unwrap();
    }

    /// A stranger's 1,400-byte sender (or any field past its bound) is refused at decoding.
    #[test]
    fn envelope_fields_are_bounded() {
        let key = key();
        let header = |claims: RequestClaims| {
            sign(&key, claims, "POST", "/p", b"")
                .unwrap()
                .to_header_value()
                .unwrap()
        };
        let mut longest = claims();
        longest.sender = "a".repeat(MAX_NAME_LEN);
        longest.key_id = "k".repeat(MAX_KEY_ID_LEN);
        assert!(RequestSignature::from_header_value(header(longest).as_bytes()).is_ok());
        let too_long: [fn(&mut RequestClaims); 5] = [
            |c| c.sender = "a".repeat(MAX_NAME_LEN + 1),
            |c| c.sender = String::new(),
            |c| c.recipient = "b".repeat(MAX_NAME_LEN + 1),
            |c| c.key_id = "k".repeat(MAX_KEY_ID_LEN + 1),
            |c| c.key_id = String::new(),
        ];
        for mutate in too_long {
            let mut claims = claims();
            mutate(&mut claims);
            assert!(matches!(
                RequestSignature::from_header_value(header(claims).as_bytes()),
                Err(SignatureError::Malformed(_))
            ));
        }
        let mut short = sign(&key, claims(), "POST", "/p", b"").unwrap();
        short.signature = VLBytes::new(vec![0; 63]);
        assert!(matches!(
            RequestSignature::from_header_value(short.to_header_value().unwrap().as_bytes()),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn every_covered_field_breaks_the_signature() {
        let key = key();
        let verifying = key.verifying_key();
        let envelope = sign(&key, claims(), "POST", "/p", b"body").unwrap();
        let bad = Err(SignatureError::BadSignature);
        assert_eq!(envelope.verify("GET", "/p", b"body", &verifying), bad);
        assert_eq!(envelope.verify("POST", "/q", b"body", &verifying), bad);
        assert_eq!(envelope.verify("POST", "/p", b"bodY", &verifying), bad);
        let mutations: [fn(&mut RequestClaims); 6] = [
            |c| c.sender_kind = SenderKind::Application,
            |c| c.sender.push('x'),
            |c| c.recipient.push('x'),
            |c| c.timestamp += 1,
            |c| c.request_id[0] ^= 1,
            |c| c.key_id.push('x'),
        ];
        for mutate in mutations {
            let mut changed = envelope.clone();
            mutate(&mut changed.claims);
            assert_eq!(changed.verify("POST", "/p", b"body", &verifying), bad);
        }
        assert_eq!(
            envelope.verify("POST", "/p", b"body", &self::key().verifying_key()),
            bad
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(
            RequestSignature::from_header_value(b"!!"),
            Err(SignatureError::NotBase64)
        );
        assert!(matches!(
            RequestSignature::from_header_value(b"AAAA"),
            Err(SignatureError::Malformed(_))
        ));
        let mut envelope = sign(&key(), claims(), "GET", "/", b"").unwrap();
        envelope.version = 2;
        let header = envelope.to_header_value().unwrap();
        assert_eq!(
            RequestSignature::from_header_value(header.as_bytes()),
            Err(SignatureError::Malformed(DecodeError::UnsupportedVersion(
                2
            )))
        );
    }

    #[test]
    fn debug_never_prints_the_signature() {
        let envelope = sign(&key(), claims(), "GET", "/", b"").unwrap();
        let printed = format!("{envelope:?}");
        assert!(printed.contains("<64 bytes>"));
        assert!(!printed.contains(&format!("{:?}", envelope.signature.as_slice())));
    }
}
