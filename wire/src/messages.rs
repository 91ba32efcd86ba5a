//! Client message queues (issue 7, "Queues and delivery that lose nothing"; architecture
//! draft, "Group Messaging"): application messages a group's hub routes to every member, and
//! connection requests from peers, each queued per client with a sequence number. An
//! application fetches from a sequence number and acknowledges up to one; nothing is deleted
//! before it is acknowledged.
//!
//! ```text
//! // POST /apps/{appId}/groups/{groupId}/messages: a PrivateMessage (content type
//! // application) for every member; answers 201 GroupEpochResponse (the message's epoch).
//! // The gateway cannot read who sent it: `sender` (the sending client's handle) names the
//! // queue to skip, since MLS clients cannot process their own messages.
//! struct { uint16 version; opaque message<V>; optional<opaque> sender<V>; } SendGroupMessageRequest;
//!
//! // GET|POST /apps/{appId}/clients/{clientHandle}/messages
//! struct { uint16 version; uint64 from_sequence; uint16 limit; } FetchMessagesRequest;
//! enum { application(1), connection_request(2), (255) } QueuedMessageKind;
//! struct {
//!     uint64 sequence;             // 1, 2, ... per client, never reused
//!     QueuedMessageKind kind;
//!     opaque group_id<V>;          // empty for a connection request
//!     opaque message<V>;           // the MLSMessage as sent
//! } QueuedMessage;
//! struct {
//!     uint16 version;
//!     QueuedMessage messages<V>;
//!     uint64 next_sequence;        // fetch from here next (past every entry read, an
//!                                  // unreadable one included: acknowledging up to
//!                                  // next_sequence - 1 clears them all)
//! } QueuedMessagesResponse;
//!
//! // POST /apps/{appId}/clients/{clientHandle}/messages/acknowledge
//! struct { uint16 version; uint64 up_to_sequence; } AcknowledgeMessagesRequest;
//! struct { uint16 version; uint64 removed; } AcknowledgeMessagesResponse;
//!
//! // POST /apps/{appId}/connection-requests: to a client of this or another gateway
//! struct {
//!     uint16 version; opaque domain<V>; opaque client_handle<V>; opaque message<V>;
//! } SendConnectionRequest;                                        // answers 201, empty body
//! ```

use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

/// Most messages one fetch answers; a larger `limit` is served as this.
pub const MAX_FETCH: u16 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct SendGroupMessageRequest {
    pub version: u16,
    pub message: VLBytes,
    /// The sending client's handle, whose queue is skipped.
    pub sender: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct FetchMessagesRequest {
    pub version: u16,
    pub from_sequence: u64,
    pub limit: u16,
}

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum QueuedMessageKind {
    Application = 1,
    ConnectionRequest = 2,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct QueuedMessage {
    pub sequence: u64,
    pub kind: QueuedMessageKind,
    pub group_id: VLBytes,
    pub message: VLBytes,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct QueuedMessagesResponse {
    pub version: u16,
    pub messages: Vec<QueuedMessage>,
    pub next_sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct AcknowledgeMessagesRequest {
    pub version: u16,
    pub up_to_sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct AcknowledgeMessagesResponse {
    pub version: u16,
    pub removed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct SendConnectionRequest {
    pub version: u16,
    pub domain: String,
    pub client_handle: String,
    pub message: VLBytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_exact, encode};

    #[test]
    fn a_queued_message_has_its_documented_bytes() {
        let queued = QueuedMessagesResponse {
            version: 1,
            messages: vec![QueuedMessage {
                sequence: 7,
                kind: QueuedMessageKind::Application,
                group_id: vec![0xab].into(),
                message: vec![1, 2].into(),
            }],
            next_sequence: 8,
        };
        let bytes = encode(&queued).unwrap();
        assert_eq!(
            bytes,
            [
                0, 1, 14, 0, 0, 0, 0, 0, 0, 0, 7, 1, 1, 0xab, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 8
            ]
        );
        assert_eq!(
            decode_exact::<QueuedMessagesResponse>(&bytes).unwrap(),
            queued
        );
        let mut unknown_kind = bytes.clone();
        unknown_kind[11] = 3;
        assert!(decode_exact::<QueuedMessagesResponse>(&unknown_kind).is_err());
    }
}
