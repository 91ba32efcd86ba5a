//! The error body of every endpoint and the one documented list of error codes.
//!
//! ```text
//! struct {
//!     uint16 code;
//!     opaque detail<V>;   // UTF-8, short, never internal detail
//! } ErrorResponse;
//! ```
//!
//! Codes are stable: a code is never reused for another meaning. They are grouped in ranges:
//! 1-99 request framing, 100-199 authentication, 200-299 service state; later ranges belong to
//! the registry (300-), key queues (400-), groups (500-) and federation (600-).

use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize};

/// The TLS-serialized body of every error answer, sent with a fitting HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct ErrorResponse {
    pub code: u16,
    pub detail: String,
}

impl ErrorResponse {
    /// The answer for `code`, with its documented generic description as detail.
    pub fn new(code: ErrorCode) -> Self {
        ErrorResponse {
            code: code.code(),
            detail: code.description().to_owned(),
        }
    }

    /// The code, if it is one this version knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $status:literal, $description:literal;)*) => {
        /// Every error code the gateway sends. The table is the documentation: code, HTTP
        /// status and generic description (the `detail` sent to the caller).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// All codes, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The stable numeric code carried in [`ErrorResponse::code`].
            pub const fn code(self) -> u16 {
                match self { $(ErrorCode::$name => $code,)* }
            }

            /// The HTTP status sent with this code.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$name => $status,)* }
            }

            /// The generic description sent as `detail`.
            pub const fn description(self) -> &'static str {
                match self { $(ErrorCode::$name => $description,)* }
            }

            /// The code with this number, if this version knows it.
            pub const fn from_code(code: u16) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$name),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// The body did not decode exactly: truncated, trailing bytes, unknown enum value,
    /// invalid UTF-8, or a field out of its documented range.
    MalformedBody = 1, 400, "the request body is malformed";
    /// The body is larger than the configured request body cap.
    BodyTooLarge = 2, 413, "the request body is too large";
    /// The request carried a content type other than application/octet-stream.
    UnsupportedMediaType = 3, 415, "the content type must be application/octet-stream";
    /// No endpoint at this path on this listener.
    NotFound = 4, 404, "no such endpoint";
    /// The endpoint exists but not for this method.
    MethodNotAllowed = 5, 405, "method not allowed on this endpoint";
    /// The request body did not arrive within the request timeout.
    RequestTimeout = 6, 408, "the request took too long to arrive";
    /// The body's leading wire version is not one this gateway speaks.
    UnsupportedVersion = 7, 400, "unsupported wire version";
    /// An id in the path (application, client, queue, group) is not a valid UUID.
    MalformedPath = 8, 400, "malformed identifier in the path";
    /// The request is not signed, or its signature envelope failed a check. The log on the
    /// gateway says which; the caller only learns that authentication failed.
    Unauthenticated = 100, 401, "authentication failed";
    /// Authenticated, but not allowed to touch this resource.
    Forbidden = 101, 403, "not allowed";
    /// The store (Redis) cannot be reached; nothing was changed. Retry later.
    StoreUnavailable = 200, 503, "the store is unavailable, retry later";
    /// The gateway could not answer in time; nothing was changed. Retry later.
    Overloaded = 201, 503, "the gateway is overloaded, retry later";
    /// An unexpected fault inside the gateway.
    Internal = 202, 500, "internal error";
    /// A client handle is empty, longer than 255 bytes, or holds a control character.
    InvalidHandle = 300, 400, "invalid client handle";
    /// A tag is empty, longer than 255 bytes, or holds a control character.
    InvalidTag = 301, 400, "invalid tag";
    /// The change would give a client more than 64 tags.
    TooManyTags = 302, 400, "too many tags";
    /// A change adds and removes the same tag.
    ConflictingTagChange = 303, 400, "a tag is both added and removed";
    /// No application with this id is configured on this gateway.
    UnknownApplication = 304, 404, "unknown application";
    /// No client with this id in the application.
    UnknownClient = 305, 404, "unknown client";
    /// Another client of the application already has this handle.
    HandleTaken = 306, 409, "client handle already taken";
    /// The domain is not served by this gateway and no federation route to it is known.
    UnknownDomain = 307, 404, "unknown domain";
    /// The credential's type is not one the application's identity provider supports.
    UnsupportedCredential = 310, 400, "credential type not supported by the identity provider";
    /// The X.509 chain is malformed, untrusted, outside its validity or breaks a CA rule.
    InvalidCertificateChain = 311, 400, "certificate chain does not validate";
    /// A certificate needed to derive a handle, account or domain has no subject Common Name.
    MissingCommonName = 312, 400, "certificate lacks the needed common name";
    /// A Common Name used in a handle, account or domain contains one of @ / # $ :.
    ForbiddenCommonNameCharacter = 313, 400, "common name contains a forbidden character";
    /// The credential's leaf certificate key is not the signature key presented with it.
    CredentialKeyMismatch = 314, 400, "credential does not certify the signature key";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_exact, encode};
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.code()), "duplicate code {}", code.code());
            assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
            assert!((400..600).contains(&code.http_status()));
            assert!(!code.description().is_empty());
        }
        assert_eq!(ErrorCode::from_code(9999), None);
    }

    #[test]
    fn error_body_round_trips() {
        let body = ErrorResponse::new(ErrorCode::BodyTooLarge);
        let bytes = encode(&body).unwrap();
        let decoded: ErrorResponse = decode_exact(&bytes).unwrap();
        assert_eq!(decoded.error_code(), Some(ErrorCode::BodyTooLarge));
        assert_eq!(decoded, body);
    }

    /// The documented numbers are a contract with callers: pin them.
    #[test]
    fn documented_numbers_are_stable() {
        assert_eq!(ErrorCode::MalformedBody.code(), 1);
        assert_eq!(ErrorCode::BodyTooLarge.code(), 2);
        assert_eq!(ErrorCode::Unauthenticated.code(), 100);
        assert_eq!(ErrorCode::StoreUnavailable.code(), 200);
    }
}
