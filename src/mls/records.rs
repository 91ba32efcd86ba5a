//! A group as the gateway keeps it, in the MLS layer's terms: what identifies its state (the
//! head), the proposals held for its epoch, the group as stored, and a validated new group.
//! The store persists these (`store` re-exports them); defined here so that `mls` needs
//! nothing of the store (architecture draft, "Group State").

use super::group_state::PublicState;

/// A proposal held for the current epoch: its ProposalRef and the MLSMessage as uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldProposal {
    pub reference: Vec<u8>,
    pub packet: Vec<u8>,
}

/// What identifies a group's current state: its epoch and how many proposals it holds
/// (proposals only accumulate within an epoch), so a cached copy can be checked cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHead {
    pub epoch: u64,
    pub proposals: usize,
}

/// A group as stored: everything `PublicGroup::load` and the proposal queue need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub epoch: u64,
    pub state: PublicState,
    pub proposals: Vec<HeldProposal>,
}

/// A validated new group (architecture draft, "Group Creation").
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub group_id: Vec<u8>,
    /// 0 for a group created here; a follower's mirror starts at the epoch it imported.
    pub epoch: u64,
    /// The gateway that orders the group's commits (DESIGN.md "Federation: one hub per
    /// group"): `None` for a group created here, the hub's domain for a mirror.
    pub hub: Option<String>,
    pub state: PublicState,
    /// The creator's GroupInfo (MLSMessage), served for external joins.
    pub group_info: Vec<u8>,
}
