//! Group state bodies (MIMI Back-end Architecture, "Managing Groups without Metadata
//! Protection" and "Joining"). MLS objects travel as `opaque<V>` holding their own TLS
//! encoding: an `MLSMessage` for GroupInfo, proposals, commits and welcomes, and the
//! `optional<Node> ratchet_tree<V>` of RFC 9420 (section 12.4.3.3) for trees.
//!
//! Group ids appear in paths as lowercase hex (`/apps/{appId}/groups/{hex(group_id)}`), client
//! handles percent-encoded.
//!
//! ```text
//! struct { uint16 version; opaque group_info<V>; opaque ratchet_tree<V>; } CreateGroupRequest;
//! struct { uint16 version; opaque group_id<V>; uint64 epoch; } GroupEpochResponse;
//!
//! struct { uint16 version; opaque packet<V>; } UploadProposalRequest;   // answers GroupEpochResponse
//! struct { uint16 version; opaque messages<V><V>; } MessagesResponse;    // GET proposals, control-msgs
//!
//! struct {
//!     uint16 version;
//!     opaque commit_packet<V>;
//!     optional<opaque group_info<V>>;
//!     optional<opaque welcome_packet<V>>;
//! } UploadCommitRequest;                                                // answers GroupEpochResponse
//!
//! struct { uint16 version; uint64 start_epoch_id; optional<uint64> end_epoch_id; }
//!     ControlMessagesRequest;
//!
//! struct {
//!     opaque welcome_id[16];        // DELETE .../welcome-msgs/{welcomeId} acknowledges it
//!     opaque group_id<V>;
//!     uint64 epoch;                 // the epoch the welcome brings its recipient into
//!     opaque welcome<V>;
//!     optional<opaque ratchet_tree<V>>;
//! } JoinInfo;
//! struct { uint16 version; JoinInfo join_infos<V>; } WelcomeMessagesResponse;
//!
//! struct { opaque group_info<V>; optional<opaque ratchet_tree<V>>; } GroupInfoEntry;
//! struct { uint16 version; GroupInfoEntry group_infos<V>; } GroupInfoResponse;
//!
//! // GET /apps/{appId}/groups/{groupId} (ours): what a client cannot learn otherwise.
//! enum { hub(1), mirror(2), (255) } GroupRole;
//! struct {
//!     uint16 version;
//!     opaque group_id<V>;
//!     uint64 epoch;
//!     opaque hub_domain<V>;        // the gateway that orders the group's commits
//!     GroupRole role;              // this gateway's: the hub, or a mirror of it
//!     uint32 member_count;
//!     bool has_group_info;         // GET .../group-info answers one
//! } GroupStatusResponse;
//! ```

use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

/// Longest group id accepted, in bytes (RFC 9420 leaves it to the application; 255 bytes is
/// far beyond the 16 or 32 bytes clients use).
pub const MAX_GROUP_ID_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct CreateGroupRequest {
    pub version: u16,
    pub group_info: VLBytes,
    pub ratchet_tree: VLBytes,
}

/// The group and the epoch it is at after the request.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct GroupEpochResponse {
    pub version: u16,
    pub group_id: VLBytes,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UploadProposalRequest {
    pub version: u16,
    pub packet: VLBytes,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct MessagesResponse {
    pub version: u16,
    pub messages: Vec<VLBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct UploadCommitRequest {
    pub version: u16,
    pub commit_packet: VLBytes,
    pub group_info: Option<VLBytes>,
    pub welcome_packet: Option<VLBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct ControlMessagesRequest {
    pub version: u16,
    pub start_epoch_id: u64,
    pub end_epoch_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct JoinInfo {
    pub welcome_id: [u8; 16],
    pub group_id: VLBytes,
    pub epoch: u64,
    pub welcome: VLBytes,
    pub ratchet_tree: Option<VLBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct WelcomeMessagesResponse {
    pub version: u16,
    pub join_infos: Vec<JoinInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct GroupInfoEntry {
    pub group_info: VLBytes,
    pub ratchet_tree: Option<VLBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct GroupInfoResponse {
    pub version: u16,
    pub group_infos: Vec<GroupInfoEntry>,
}

/// This gateway's part in a group.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub enum GroupRole {
    /// This gateway orders the group's commits.
    Hub = 1,
    /// This gateway mirrors the group from its hub and forwards to it.
    Mirror = 2,
}

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct GroupStatusResponse {
    pub version: u16,
    pub group_id: VLBytes,
    pub epoch: u64,
    pub hub_domain: String,
    pub role: GroupRole,
    pub member_count: u32,
    pub has_group_info: crate::codec::WireBool,
}

/// A group id as it appears in a path: lowercase hex.
pub fn group_id_to_path(group_id: &[u8]) -> String {
    group_id.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The group id in a path segment, if it is 1 to 255 bytes of hex.
pub fn group_id_from_path(segment: &str) -> Option<Vec<u8>> {
    if segment.is_empty()
        || !segment.len().is_multiple_of(2)
        || segment.len() > 2 * MAX_GROUP_ID_BYTES
        || !segment.bytes().all(|byte| byte.is_ascii_hexdigit())
    {
        return None;
    }
    (0..segment.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(segment.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written out from the struct above.
    #[test]
    fn group_status_encodes_as_documented() {
        let status = GroupStatusResponse {
            version: 1,
            group_id: VLBytes::new(vec![0xab]),
            epoch: 3,
            hub_domain: "a.x".into(),
            role: GroupRole::Mirror,
            member_count: 2,
            has_group_info: crate::codec::WireBool(true),
        };
        let bytes = crate::encode(&status).unwrap();
        assert_eq!(
            bytes,
            [
                0, 1, 1, 0xab, 0, 0, 0, 0, 0, 0, 0, 3, 3, b'a', b'.', b'x', 2, 0, 0, 0, 2, 1
            ]
        );
        assert_eq!(
            crate::decode_exact::<GroupStatusResponse>(&bytes).unwrap(),
            status
        );
    }

    #[test]
    fn group_ids_round_trip_through_paths() {
        let id = vec![0x00, 0xab, 0xff, 0x10];
        assert_eq!(group_id_to_path(&id), "00abff10");
        assert_eq!(group_id_from_path("00abff10"), Some(id.clone()));
        assert_eq!(group_id_from_path("00ABFF10"), Some(id));
        assert_eq!(group_id_from_path(""), None);
        assert_eq!(group_id_from_path("abc"), None);
        assert_eq!(group_id_from_path("zz"), None);
        assert_eq!(group_id_from_path("+1"), None);
        assert_eq!(group_id_from_path(&"00".repeat(256)), None);
    }
}
