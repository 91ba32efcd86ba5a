//! The error body of every endpoint and the one documented list of error codes.
//!
//! ```text
//! enum { current_epoch(1), oldest_epoch(2), (65535) } ErrorFieldType;
//!
//! struct {
//!     uint16 field_type;  // an ErrorFieldType; unknown types are skipped, never refused
//!     opaque value<V>;    // current_epoch, oldest_epoch: uint64
//! } ErrorField;
//!
//! struct {
//!     uint16 code;
//!     opaque detail<V>;   // UTF-8, short, never internal detail
//!     ErrorField fields<V>; // what a caller acts on, as values rather than text
//! } ErrorResponse;
//! ```
//!
//! Codes are stable: a code is never reused for another meaning. They are grouped in ranges:
//! 1-99 request framing, 100-199 authentication, 200-299 service state; later ranges belong to
//! the registry (300-), key queues (400-), groups (500-) and federation (600-).

use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

/// The TLS-serialized body of every error answer, sent with a fitting HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ErrorResponse {
    pub code: u16,
    pub detail: String,
    pub fields: Vec<ErrorField>,
}

/// A structured part of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ErrorField {
    pub field_type: u16,
    pub value: VLBytes,
}

/// `ErrorFieldType::current_epoch`: the group's current epoch, with `StaleEpoch`,
/// `FutureEpoch`, `EpochOutOfRange` and `EpochPruned`.
pub const FIELD_CURRENT_EPOCH: u16 = 1;
/// `ErrorFieldType::oldest_epoch`: the oldest epoch whose control messages are retained, with
/// `EpochPruned`.
pub const FIELD_OLDEST_EPOCH: u16 = 2;

impl ErrorField {
    /// The group's current epoch.
    pub fn current_epoch(epoch: u64) -> ErrorField {
        ErrorField {
            field_type: FIELD_CURRENT_EPOCH,
            value: VLBytes::new(epoch.to_be_bytes().to_vec()),
        }
    }

    /// The oldest epoch whose control messages are retained.
    pub fn oldest_epoch(epoch: u64) -> ErrorField {
        ErrorField {
            field_type: FIELD_OLDEST_EPOCH,
            value: VLBytes::new(epoch.to_be_bytes().to_vec()),
        }
    }
}

impl ErrorResponse {
    /// The answer for `code`, with its documented generic description as detail.
    pub fn new(code: ErrorCode) -> Self {
        ErrorResponse {
            code: code.code(),
            detail: code.description().to_owned(),
            fields: Vec::new(),
        }
    }

    /// The code, if it is one this version knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }

    /// The group's current epoch, when the answer carries it (`StaleEpoch`).
    pub fn current_epoch(&self) -> Option<u64> {
        self.u64_field(FIELD_CURRENT_EPOCH)
    }

    /// The oldest retained epoch, when the answer carries it (`EpochPruned`).
    pub fn oldest_epoch(&self) -> Option<u64> {
        self.u64_field(FIELD_OLDEST_EPOCH)
    }

    fn u64_field(&self, field_type: u16) -> Option<u64> {
        self.fields
            .iter()
            .find(|field| field.field_type == field_type)
            .and_then(|field| <[u8; 8]>::try_from(field.value.as_slice()).ok())
            .map(u64::from_be_bytes)
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
    /// An id in the path is malformed: an application, client, queue or welcome id that is
    /// not a UUID, a group id that is not 1-255 bytes of hex, or a client handle that is not
    /// percent-encoded UTF-8 of 1-255 bytes without control characters (the rules of handles in
    /// bodies).
    MalformedPath = 8, 400, "malformed identifier in the path";
    /// The request is not signed, or its signature envelope failed a check. The log on the
    /// gateway says which; the caller only learns that authentication failed.
    Unauthenticated = 100, 401, "authentication failed";
    /// Authenticated, but not allowed to touch this resource.
    Forbidden = 101, 403, "not allowed";
    /// The store (Redis) cannot be reached; nothing was changed. Retry later. (A connection
    /// that broke right after a command was written is reported so too, though the command
    /// may have run.)
    StoreUnavailable = 200, 503, "the store is unavailable, retry later";
    /// The gateway has no room for the request now (the shared body budget is used up);
    /// nothing was changed. Retry later.
    Overloaded = 201, 503, "the gateway is overloaded, retry later";
    /// An unexpected fault inside the gateway.
    Internal = 202, 500, "internal error";
    /// The store or the handler did not answer in time after the change was under way: it
    /// may or may not have been applied. Read the state to find out (a group's epoch and
    /// control messages, a queue's contents) before trying again.
    OutcomeUnknown = 204, 504, "the outcome is unknown: read the state before retrying";
    /// Too many requests; the `Retry-After` header says when to try again. Before
    /// authentication: this address failed authentication too often.
    RateLimited = 203, 429, "too many requests, retry later";
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
    /// The credential's content does not decode as RFC 9420 defines it (section 5.3): for
    /// X.509, `Certificate certificates<V>` must be a run of non-empty `opaque cert_data<V>`.
    MalformedCredential = 315, 400, "the credential does not decode";
    /// The X.509 chain is malformed, untrusted, outside its validity or breaks a CA rule.
    InvalidCertificateChain = 311, 400, "certificate chain does not validate";
    /// A certificate needed to derive a handle, account or domain has no subject Common Name.
    MissingCommonName = 312, 400, "certificate lacks the needed common name";
    /// A Common Name used in a handle, account or domain contains one of @ / # $ :.
    ForbiddenCommonNameCharacter = 313, 400, "common name contains a forbidden character";
    /// The credential's leaf certificate key is not the signature key presented with it.
    CredentialKeyMismatch = 314, 400, "credential does not certify the signature key";
    /// The client already has a key queue with this protocol version, cipher suite and label.
    KeyQueueExists = 400, 409, "a key queue with these attributes exists";
    /// No key queue with this id for this client.
    UnknownKeyQueue = 401, 404, "unknown key queue";
    /// Retrieval: the client has no key queue with the asked attributes.
    NoMatchingQueue = 402, 404, "no key queue matches";
    /// Retrieval: no unexpired key package and no final key is left.
    QueueExhausted = 403, 404, "the key queue is exhausted";
    /// Only MLS 1.0 (protocol version 1) is supported.
    UnsupportedProtocolVersion = 404, 400, "unsupported protocol version";
    /// The cipher suite is not one this gateway can validate.
    UnsupportedCipherSuite = 405, 400, "unsupported cipher suite";
    /// An application label is longer than 255 bytes or holds a control character.
    InvalidLabel = 406, 400, "invalid application label";
    /// A receiver client id is empty or longer than 255 bytes.
    InvalidReceiver = 407, 400, "invalid receiver client id";
    /// The update would hold more key packages than the configured maximum per queue.
    TooManyKeyPackages = 408, 400, "too many key packages in the queue";
    /// Not a TLS-serialized MLSMessage holding a KeyPackage (truncated, trailing bytes, ...).
    MalformedKeyPackage = 410, 400, "malformed key package";
    /// A key package or leaf node signature does not verify.
    KeyPackageSignatureInvalid = 411, 400, "key package signature invalid";
    /// The key package breaks another rule of RFC 9420 (init key equals encryption key,
    /// unsupported extension, missing lifetime, ...).
    KeyPackageInvalid = 412, 400, "key package invalid";
    /// The key package's cipher suite is not the queue's.
    CipherSuiteMismatch = 413, 400, "key package cipher suite does not match the queue";
    /// The key package's protocol version is not the queue's.
    ProtocolVersionMismatch = 414, 400, "key package protocol version does not match the queue";
    /// The key package's lifetime window is longer than the configured maximum.
    LifetimeTooLong = 415, 400, "key package lifetime too long";
    /// The credential names another client than the queue's owner.
    CredentialNotOwner = 416, 400, "credential does not belong to the queue's client";
    /// The credential's domain is not this gateway's (or not the sending peer's).
    ForeignDomain = 417, 400, "credential domain is not this provider's";
    /// A last-resort key package was offered as an ordinary one; it belongs in `final_key`.
    LastResortNotAllowed = 418, 400, "last-resort key package offered as an ordinary one";
    /// The key package's lifetime has ended, or not begun.
    KeyPackageExpired = 419, 400, "key package expired or not yet valid";
    /// No group with this id in the application.
    UnknownGroup = 500, 404, "unknown group";
    /// Group creation: the application already has a group with this id.
    GroupExists = 501, 409, "a group with this id exists";
    /// A packet is not a TLS-serialized MLSMessage of the kind the endpoint takes
    /// (GroupInfo, proposal, commit, Welcome), or does not decode exactly.
    MalformedMlsMessage = 502, 400, "malformed or unexpected MLS message";
    /// Group creation: the GroupInfo is invalid (its signature does not verify under the
    /// creator's leaf, or it does not fit the tree).
    InvalidGroupInfo = 503, 400, "invalid group info";
    /// Group creation: the ratchet tree does not decode, is invalid under RFC 9420, or is
    /// not the tree the GroupInfo describes.
    InvalidRatchetTree = 504, 400, "invalid ratchet tree";
    /// Group creation: the GroupInfo is not at epoch 0, or the tree has more than one member.
    NotANewGroup = 505, 400, "a new group must be at epoch 0 with a single member";
    /// The packet's group id is not the group in the path.
    GroupIdMismatch = 506, 400, "the packet belongs to another group";
    /// The packet is for an epoch the group has left. The detail is `current epoch N`:
    /// fetch the control messages from your epoch on, then retry.
    StaleEpoch = 507, 409, "stale epoch";
    /// The packet is for an epoch the group has not reached. The detail is `current epoch N`.
    FutureEpoch = 508, 409, "future epoch";
    /// The packet's sender is not a member of the group (or not allowed to send it).
    NotAMember = 509, 403, "sender is not a member of the group";
    /// The packet's signature does not verify under the sender's key.
    PacketSignatureInvalid = 510, 400, "packet signature does not verify";
    /// Handshake messages must be PublicMessages (DESIGN.md "MLS"); a PrivateMessage
    /// handshake cannot be validated by the gateway.
    PrivateMessageHandshake = 511, 400, "handshake messages must be sent as PublicMessage";
    /// The proposals endpoint got something other than a proposal.
    NotAProposal = 512, 400, "the packet is not a proposal";
    /// The commits endpoint got something other than a commit.
    NotACommit = 513, 400, "the packet is not a commit";
    /// The proposal breaks a rule of RFC 9420 for the group's current epoch.
    InvalidProposal = 514, 400, "invalid proposal";
    /// The commit breaks a rule of RFC 9420 for the group's current epoch.
    InvalidCommit = 515, 400, "invalid commit";
    /// The commit cites by reference a proposal the gateway does not hold for this epoch.
    UnknownProposalReference = 516, 400, "commit references an unknown proposal";
    /// The commit adds members but no Welcome was uploaded with it.
    WelcomeRequired = 517, 400, "a commit that adds members needs a welcome";
    /// The Welcome's recipients are not exactly the key packages the commit adds (or the
    /// commit adds none).
    WelcomeRecipientsMismatch = 518, 400, "welcome recipients are not the added members";
    /// The uploaded GroupInfo does not describe the new epoch (GroupContext, confirmation
    /// tag, or signature by a member).
    GroupInfoMismatch = 519, 400, "group info does not match the new epoch";
    /// Control messages: the epoch range is empty or reaches outside the group's epochs.
    /// The detail is `current epoch N`.
    EpochOutOfRange = 520, 400, "epoch range outside the group's epochs";
    /// No pending welcome with this id for this client.
    UnknownWelcome = 521, 404, "unknown welcome";
    /// The proposal is already held for the current epoch.
    DuplicateProposal = 522, 409, "proposal already uploaded";
    /// A key package, leaf or message uses a GREASE value (RFC 9420, section 13.5) as an
    /// extension type, proposal type or cipher suite, which openmls 0.9.2 cannot validate: a
    /// known limitation. GREASE values in capabilities alone are accepted.
    GreaseUnsupported = 523, 400, "GREASE extensions are not supported";
    /// A control-message range starts before the oldest epoch the group still keeps
    /// (`groups.retained_epochs`); the answer carries `oldest_epoch` and `current_epoch`. A
    /// client that far behind rejoins (external commit from the group info).
    EpochPruned = 524, 410, "the group no longer keeps the control messages of these epochs";
    /// The peer gateway (another domain's) did not answer; the request may be retried.
    PeerUnavailable = 600, 502, "the peer gateway could not be reached, retry later";
    /// The peer gateway answered with an error; its code is in the detail.
    PeerRefused = 601, 502, "the peer gateway refused the request";
    /// A fan-out names a recipient that is not a client of this gateway.
    NotOurClient = 602, 400, "a recipient is not a client of this gateway";
    /// A peer sent group traffic for a group it is not the hub of.
    NotTheHub = 603, 403, "the sender is not the hub of this group";
    /// A commit leaving members on other domains must carry a GroupInfo (followers mirror
    /// the group from it; the delivery-service draft's MLSGroupUpdate always has one).
    GroupInfoRequired = 604, 400, "a commit in a federated group needs a group info";
    /// The domain is not among the configured federation peers.
    DomainNotAllowed = 605, 403, "the domain is not an allowed peer";
    /// A key package a peer handed out names a domain other than the peer's (architecture
    /// draft, "Key Package Validation").
    PeerKeyPackageDomain = 606, 502, "the peer's key package names another domain";
    /// The peer's answer did not decode or was not the expected structure.
    PeerMalformedAnswer = 607, 502, "the peer's answer is malformed";
    /// The group is mirrored from its hub on another domain. No longer sent since followers
    /// forward proposals and commits to the hub (`/group_operation`); kept, never reused.
    HubElsewhere = 608, 409, "the group's hub is another gateway";
    /// A follower's application uploaded a proposal or commit that no operation of the
    /// delivery-service draft carries. No longer sent since followers forward those as our
    /// `ds_upload_proposal` and `ds_commit`; kept, never reused.
    NoMatchingOperation = 609, 400, "no delivery-service operation carries this message";
    /// A forwarded proposal or commit breaks a validation rule of the operation it was sent
    /// as (delivery-service draft, "Client-initiated operations"); the detail names the rule.
    OperationRulesViolated = 610, 400, "the message breaks the rules of its operation";
    /// The sender of a forwarded proposal or commit is not a client of the peer that
    /// forwarded it.
    SenderNotOfPeer = 611, 403, "the sender is not a client of the requesting peer";
    /// A connection key package the peer handed out is of a client of another account than
    /// the one asked for.
    PeerWrongAccount = 612, 502, "the peer's key package is of another account";
    /// The application's identity provider names no domains (the plain Basic provider), so
    /// it cannot reach clients of other gateways: use `basic_with_domains` or X.509 with
    /// domains to federate.
    ApplicationDoesNotFederate = 613, 400, "this application does not federate: its identity provider names no domains";
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

    /// Written out from the struct: code 507, detail "e", one current_epoch field of 7.
    #[test]
    fn a_stale_epoch_answer_carries_the_epoch_as_a_value() {
        let body = ErrorResponse {
            code: 507,
            detail: "e".into(),
            fields: vec![ErrorField::current_epoch(7)],
        };
        let bytes = encode(&body).unwrap();
        assert_eq!(
            bytes,
            [
                0x01, 0xfb, 0x01, b'e', 0x0b, 0x00, 0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 7
            ]
        );
        let decoded: ErrorResponse = decode_exact(&bytes).unwrap();
        assert_eq!(decoded.current_epoch(), Some(7));
        // An unknown field is carried, not refused, and a malformed value reads as absent.
        let other = ErrorResponse {
            fields: vec![ErrorField {
                field_type: 99,
                value: VLBytes::new(vec![1]),
            }],
            ..body
        };
        let decoded: ErrorResponse = decode_exact(&encode(&other).unwrap()).unwrap();
        assert_eq!(decoded.current_epoch(), None);
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
        assert_eq!(ErrorCode::StaleEpoch.code(), 507);
    }
}
