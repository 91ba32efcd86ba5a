//! The public MLS state of one group, kept TLS-encoded node by node, and the openmls
//! `PublicStorageProvider` that lets `PublicGroup::load` / `merge_commit` work on it
//! (architecture draft, "Group State": `currentTree`, `currentContext`; DESIGN.md "State":
//! compact TLS encoding, not openmls' JSON).
//!
//! openmls hands a storage provider whole serde values (`merge_commit` writes the entire
//! `TreeSync`). This provider turns them into what the gateway stores: every tree node as its
//! RFC 9420 `Node` encoding under its array index (appendix C), plus the tree hash, the
//! GroupContext, the interim transcript hash and the confirmation tag, each TLS-encoded. A
//! write is walked by a serde `Serializer` of our own ([`Capture`]) that serializes each slot
//! on its own; slots whose bytes equal the held ones are skipped, the others decoded and
//! TLS-encoded (decoding every slot took 0.7 ms per commit at 1000 members). So a commit
//! yields only the nodes that changed, and what the store writes grows with the commit, not
//! with the group.
//!
//! The serde bridge: openmls' `TreeSync` is `{ tree: { leaf_nodes, parent_nodes,
//! default_leaf, default_parent }, tree_hash }` whose slots are `{ node: Option<_> }`
//! (openmls 0.9.2 `treesync/mod.rs`, `binary_tree/array_representation/tree.rs`). The
//! mirror types below have the same serde shape over the public `LeafNode` / `ParentNode`,
//! and postcard (positional, compact, in memory only) carries values between the two. Test
//! builds check every commit's recorded change against a full comparison of the trees
//! (`super::group::ActiveGroup::stage_commit`), on real groups in the integration tests.
//!
//! Proposals are not kept here: the gateway stores proposal packets and re-processes them
//! after a load (`super::group`), so this provider ignores openmls' proposal queue.

use std::collections::BTreeMap;
use std::sync::Mutex;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{ConfirmationTag, GroupContext};
use openmls::treesync::RatchetTreeIn;
use openmls::treesync::{LeafNode, ParentNode};
use openmls_traits::public_storage::PublicStorageProvider;
use openmls_traits::storage::{CURRENT_VERSION, traits};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// RFC 9420 `NodeType`.
const NODE_TYPE_LEAF: u8 = 1;
const NODE_TYPE_PARENT: u8 = 2;

/// The public state of a group as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicState {
    /// Non-blank nodes by array index (leaf `i` at `2i`, parents at odd indices), each the
    /// TLS encoding of an RFC 9420 `Node` (type byte, then the LeafNode or ParentNode).
    pub nodes: BTreeMap<u32, Vec<u8>>,
    /// How many leaf slots and parent slots openmls' tree has (blank ones included).
    pub leaf_slots: u32,
    pub parent_slots: u32,
    pub tree_hash: Vec<u8>,
    /// TLS-encoded `GroupContext`.
    pub context: Vec<u8>,
    pub interim_transcript_hash: Vec<u8>,
    /// TLS-encoded `ConfirmationTag`.
    pub confirmation_tag: Vec<u8>,
}

/// What a commit changed in a [`PublicState`]: the nodes written (`Some`) or blanked
/// (`None`), and the new scalars. Applying it to the old state gives the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateChange {
    pub nodes: BTreeMap<u32, Option<Vec<u8>>>,
    pub leaf_slots: u32,
    pub parent_slots: u32,
    pub tree_hash: Vec<u8>,
    pub context: Vec<u8>,
    pub interim_transcript_hash: Vec<u8>,
    pub confirmation_tag: Vec<u8>,
}

impl StateChange {
    /// Bytes this change writes to the store (node bodies and scalars).
    pub fn written_bytes(&self) -> usize {
        self.nodes
            .values()
            .map(|node| node.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
            + self.tree_hash.len()
            + self.context.len()
            + self.interim_transcript_hash.len()
            + self.confirmation_tag.len()
    }
}

impl PublicState {
    pub fn apply(&mut self, change: &StateChange) {
        for (index, node) in &change.nodes {
            match node {
                Some(bytes) => self.nodes.insert(*index, bytes.clone()),
                None => self.nodes.remove(index),
            };
        }
        self.leaf_slots = change.leaf_slots;
        self.parent_slots = change.parent_slots;
        self.tree_hash = change.tree_hash.clone();
        self.context = change.context.clone();
        self.interim_transcript_hash = change.interim_transcript_hash.clone();
        self.confirmation_tag = change.confirmation_tag.clone();
    }

    /// The RFC 9420 `optional<Node> ratchet_tree<V>` (section 12.4.3.3): nodes in array
    /// order, blanks as absent, trailing blanks dropped.
    pub fn ratchet_tree(&self) -> Vec<u8> {
        // Serializing a VLBytes only fails beyond 2^30 bytes, far past the body cap.
        let last = self.nodes.keys().next_back().copied();
        let mut body = Vec::new();
        if let Some(last) = last {
            for index in 0..=last {
                match self.nodes.get(&index) {
                    Some(node) => {
                        body.push(1);
                        body.extend_from_slice(node);
                    }
                    None => body.push(0),
                }
            }
        }
        // The `<V>` length prefix of RFC 9420, section 2.1.2, as tls_codec writes it.
        tls_codec::VLBytes::new(body)
            .tls_serialize_detached()
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GroupStateError {
    #[error("serde bridge: {0}")]
    Bridge(String),
    #[error("stored node {index} does not decode: {reason}")]
    Node { index: u32, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// Mirrors of openmls' private tree types with the same serde shape (see the module doc).
#[derive(Serialize, Deserialize)]
struct TreeSyncMirror {
    tree: BinaryTreeMirror,
    tree_hash: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct BinaryTreeMirror {
    leaf_nodes: Vec<LeafSlot>,
    parent_nodes: Vec<ParentSlot>,
    default_leaf: LeafSlot,
    default_parent: ParentSlot,
}

#[derive(Serialize, Deserialize, Default)]
struct LeafSlot {
    node: Option<LeafNode>,
}

#[derive(Serialize, Deserialize, Default)]
struct ParentSlot {
    node: Option<ParentNode>,
}

/// Re-reads a serde value as another type of the same shape.
fn bridge<From: Serialize + ?Sized, To: DeserializeOwned>(
    value: &From,
) -> Result<To, GroupStateError> {
    postcard_value(&postcard_bytes(value)?)
}

/// postcard's encoding of a blank slot (`{ node: None }`).
const BLANK_SLOT: &[u8] = &[0];

/// Whether two slots (postcard bytes; `None`: past the end of the tree, i.e. blank) hold
/// the same node.
fn same_slot(new: Option<&Vec<u8>>, old: Option<&Vec<u8>>) -> bool {
    new.map_or(BLANK_SLOT, Vec::as_slice) == old.map_or(BLANK_SLOT, Vec::as_slice)
}

/// A slot and its node's new TLS encoding (`None`: blank now).
type SlotChange = (usize, Option<Vec<u8>>);

/// The slots whose bytes differ between `new` and `old`, with the new node's TLS encoding
/// (`None`: blank now) from `encode`, which gets the new slot's postcard bytes.
fn changed_slots(
    new: &[Vec<u8>],
    old: &[Vec<u8>],
    encode: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, GroupStateError>,
) -> Result<Vec<SlotChange>, GroupStateError> {
    let mut changes = Vec::new();
    for slot in 0..new.len().max(old.len()) {
        let bytes = new.get(slot);
        if !same_slot(bytes, old.get(slot)) {
            let node = match bytes {
                Some(bytes) => encode(bytes)?,
                None => None,
            };
            changes.push((slot, node));
        }
    }
    Ok(changes)
}

fn postcard_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GroupStateError> {
    postcard::from_bytes(bytes).map_err(|error| GroupStateError::Bridge(error.to_string()))
}

fn postcard_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, GroupStateError> {
    postcard::to_allocvec(value).map_err(|error| GroupStateError::Bridge(error.to_string()))
}

/// openmls' tree value cut into slots: each leaf and parent slot in its own postcard
/// encoding (the same bytes `LeafSlot` / `ParentSlot` give), and the tree hash.
#[derive(Default)]
struct CapturedTree {
    leaves: Vec<Vec<u8>>,
    parents: Vec<Vec<u8>>,
    tree_hash: Option<Vec<u8>>,
}

/// Where in `TreeSync`'s serde shape (module doc) a [`Capture`] stands.
#[derive(Clone, Copy)]
enum Level {
    /// `{ tree, tree_hash }`
    TreeSync,
    /// `{ leaf_nodes, parent_nodes, default_leaf, default_parent }`
    Tree,
    LeafSlots,
    ParentSlots,
}

#[derive(Debug)]
struct CaptureError(String);

impl std::fmt::Display for CaptureError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for CaptureError {}

impl serde::ser::Error for CaptureError {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        CaptureError(message.to_string())
    }
}

fn unexpected<T>(what: &str) -> Result<T, CaptureError> {
    Err(CaptureError(format!(
        "openmls' tree has an unexpected serde shape: {what}"
    )))
}

/// A serde `Serializer` that walks openmls' `TreeSync` down to its slots and serializes each
/// slot on its own, so a write can be compared slot by slot without decoding the tree.
/// Any other shape is an error (pinned by the tests of the group life on every store).
struct Capture<'a> {
    into: &'a mut CapturedTree,
    at: Level,
}

impl<'a> serde::Serializer for Capture<'a> {
    type Ok = ();
    type Error = CaptureError;
    type SerializeSeq = Self;
    type SerializeTuple = serde::ser::Impossible<(), CaptureError>;
    type SerializeTupleStruct = serde::ser::Impossible<(), CaptureError>;
    type SerializeTupleVariant = serde::ser::Impossible<(), CaptureError>;
    type SerializeMap = serde::ser::Impossible<(), CaptureError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = serde::ser::Impossible<(), CaptureError>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CaptureError> {
        match self.at {
            Level::TreeSync | Level::Tree => Ok(self),
            _ => unexpected("a struct where slots were expected"),
        }
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, CaptureError> {
        match self.at {
            Level::LeafSlots | Level::ParentSlots => Ok(self),
            _ => unexpected("a sequence outside the slot lists"),
        }
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CaptureError> {
        value.serialize(self)
    }

    fn serialize_bool(self, _: bool) -> Result<(), CaptureError> {
        unexpected("bool")
    }
    fn serialize_i8(self, _: i8) -> Result<(), CaptureError> {
        unexpected("i8")
    }
    fn serialize_i16(self, _: i16) -> Result<(), CaptureError> {
        unexpected("i16")
    }
    fn serialize_i32(self, _: i32) -> Result<(), CaptureError> {
        unexpected("i32")
    }
    fn serialize_i64(self, _: i64) -> Result<(), CaptureError> {
        unexpected("i64")
    }
    fn serialize_u8(self, _: u8) -> Result<(), CaptureError> {
        unexpected("u8")
    }
    fn serialize_u16(self, _: u16) -> Result<(), CaptureError> {
        unexpected("u16")
    }
    fn serialize_u32(self, _: u32) -> Result<(), CaptureError> {
        unexpected("u32")
    }
    fn serialize_u64(self, _: u64) -> Result<(), CaptureError> {
        unexpected("u64")
    }
    fn serialize_f32(self, _: f32) -> Result<(), CaptureError> {
        unexpected("f32")
    }
    fn serialize_f64(self, _: f64) -> Result<(), CaptureError> {
        unexpected("f64")
    }
    fn serialize_char(self, _: char) -> Result<(), CaptureError> {
        unexpected("char")
    }
    fn serialize_str(self, _: &str) -> Result<(), CaptureError> {
        unexpected("str")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), CaptureError> {
        unexpected("bytes")
    }
    fn serialize_none(self) -> Result<(), CaptureError> {
        unexpected("none")
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), CaptureError> {
        unexpected("some")
    }
    fn serialize_unit(self) -> Result<(), CaptureError> {
        unexpected("unit")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CaptureError> {
        unexpected("unit struct")
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), CaptureError> {
        unexpected("unit variant")
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), CaptureError> {
        unexpected("newtype variant")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CaptureError> {
        unexpected("tuple")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, CaptureError> {
        unexpected("tuple struct")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CaptureError> {
        unexpected("tuple variant")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CaptureError> {
        unexpected("map")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CaptureError> {
        unexpected("struct variant")
    }
}

impl serde::ser::SerializeStruct for Capture<'_> {
    type Ok = ();
    type Error = CaptureError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CaptureError> {
        let next = match (self.at, key) {
            (Level::TreeSync, "tree") => Level::Tree,
            (Level::Tree, "leaf_nodes") => Level::LeafSlots,
            (Level::Tree, "parent_nodes") => Level::ParentSlots,
            (Level::TreeSync, "tree_hash") => {
                let bytes = postcard::to_allocvec(value)
                    .map_err(|error| CaptureError(error.to_string()))?;
                let hash: Vec<u8> = postcard::from_bytes(&bytes)
                    .map_err(|error| CaptureError(error.to_string()))?;
                self.into.tree_hash = Some(hash);
                return Ok(());
            }
            // Blank slots' defaults: always blank, not stored.
            (Level::Tree, "default_leaf" | "default_parent") => return Ok(()),
            _ => return unexpected(key),
        };
        value.serialize(Capture {
            into: &mut *self.into,
            at: next,
        })
    }

    fn end(self) -> Result<(), CaptureError> {
        Ok(())
    }
}

impl serde::ser::SerializeSeq for Capture<'_> {
    type Ok = ();
    type Error = CaptureError;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CaptureError> {
        let bytes =
            postcard::to_allocvec(value).map_err(|error| CaptureError(error.to_string()))?;
        match self.at {
            Level::LeafSlots => self.into.leaves.push(bytes),
            _ => self.into.parents.push(bytes),
        }
        Ok(())
    }

    fn end(self) -> Result<(), CaptureError> {
        Ok(())
    }
}

fn tls_error(error: tls_codec::Error) -> GroupStateError {
    GroupStateError::Tls(error.to_string())
}

fn encode_leaf(node: &LeafNode) -> Result<Vec<u8>, GroupStateError> {
    let mut bytes = vec![NODE_TYPE_LEAF];
    node.tls_serialize(&mut bytes).map_err(tls_error)?;
    Ok(bytes)
}

fn encode_parent(node: &ParentNode) -> Result<Vec<u8>, GroupStateError> {
    let mut bytes = vec![NODE_TYPE_PARENT];
    node.tls_serialize(&mut bytes).map_err(tls_error)?;
    Ok(bytes)
}

/// The array index of leaf `i` and parent slot `j` (RFC 9420, appendix C).
fn leaf_index(slot: usize) -> u32 {
    (slot * 2) as u32
}
fn parent_index(slot: usize) -> u32 {
    (slot * 2 + 1) as u32
}

impl Held {
    /// Takes openmls' tree value: each slot is serialized on its own and compared with the
    /// held bytes; only slots that differ are decoded and re-encoded and recorded as changed.
    fn read_tree<T: Serialize>(&mut self, tree: &T) -> Result<(), GroupStateError> {
        let mut captured = CapturedTree::default();
        tree.serialize(Capture {
            into: &mut captured,
            at: Level::TreeSync,
        })
        .map_err(|error| GroupStateError::Bridge(error.to_string()))?;
        let leaf_changes = changed_slots(&captured.leaves, &self.leaves, |bytes| {
            let slot: LeafSlot = postcard_value(bytes)?;
            slot.node.as_ref().map(encode_leaf).transpose()
        })?;
        let parent_changes = changed_slots(&captured.parents, &self.parents, |bytes| {
            let slot: ParentSlot = postcard_value(bytes)?;
            slot.node.as_ref().map(encode_parent).transpose()
        })?;
        for (slot, node) in leaf_changes {
            self.record(leaf_index(slot), node);
        }
        for (slot, node) in parent_changes {
            self.record(parent_index(slot), node);
        }
        self.state.leaf_slots = captured.leaves.len() as u32;
        self.state.parent_slots = captured.parents.len() as u32;
        self.state.tree_hash = captured
            .tree_hash
            .ok_or_else(|| GroupStateError::Bridge("tree without a tree hash".into()))?;
        self.leaves = captured.leaves;
        self.parents = captured.parents;
        Ok(())
    }

    /// Writes (`Some`) or blanks (`None`) one node and remembers it as changed.
    fn record(&mut self, index: u32, bytes: Option<Vec<u8>>) {
        match &bytes {
            Some(bytes) => self.state.nodes.insert(index, bytes.clone()),
            None => self.state.nodes.remove(&index),
        };
        self.changed.insert(index, bytes);
    }

    /// openmls' tree value for the held state, keeping the decoded nodes to compare the next
    /// write with. openmls' `LeafNode` has no public TLS decoder, so the nodes are decoded as
    /// one `RatchetTreeIn` and its leaves (a private type with the same serde shape as
    /// `LeafNode`) bridged over; nodes come back in index order.
    fn write_tree<T: DeserializeOwned>(&mut self) -> Result<T, GroupStateError> {
        let state = &self.state;
        let tree = RatchetTreeIn::tls_deserialize_exact(state.ratchet_tree().as_slice())
            .map_err(tls_error)?;
        let mut leaves = tree.leaves();
        let mut parents = tree.parents();
        let mut leaf_nodes: Vec<LeafSlot> = Vec::with_capacity(state.leaf_slots as usize);
        leaf_nodes.resize_with(state.leaf_slots as usize, LeafSlot::default);
        let mut parent_nodes: Vec<ParentSlot> = Vec::with_capacity(state.parent_slots as usize);
        parent_nodes.resize_with(state.parent_slots as usize, ParentSlot::default);
        for &index in state.nodes.keys() {
            let slot = (index / 2) as usize;
            let misplaced = || GroupStateError::Node {
                index,
                reason: "node of the wrong type or outside the tree".into(),
            };
            if index % 2 == 0 {
                let leaf = leaves.next().ok_or_else(misplaced)?;
                let node: LeafNode = bridge(leaf)?;
                leaf_nodes.get_mut(slot).ok_or_else(misplaced)?.node = Some(node);
            } else {
                let parent = parents.next().ok_or_else(misplaced)?;
                parent_nodes.get_mut(slot).ok_or_else(misplaced)?.node = Some(parent.clone());
            }
        }
        self.leaves = leaf_nodes
            .iter()
            .map(postcard_bytes)
            .collect::<Result<_, _>>()?;
        self.parents = parent_nodes
            .iter()
            .map(postcard_bytes)
            .collect::<Result<_, _>>()?;
        bridge(&TreeSyncMirror {
            tree: BinaryTreeMirror {
                leaf_nodes,
                parent_nodes,
                default_leaf: LeafSlot::default(),
                default_parent: ParentSlot::default(),
            },
            tree_hash: self.state.tree_hash.clone(),
        })
    }
}

impl PublicState {
    /// The change that turns `self` into `new` (a full comparison; commits record their
    /// change as openmls writes it, see [`GroupStorage::take_change`]).
    pub fn change_to(&self, new: &PublicState) -> StateChange {
        let mut nodes = BTreeMap::new();
        for (index, bytes) in &new.nodes {
            if self.nodes.get(index) != Some(bytes) {
                nodes.insert(*index, Some(bytes.clone()));
            }
        }
        for index in self.nodes.keys() {
            if !new.nodes.contains_key(index) {
                nodes.insert(*index, None);
            }
        }
        StateChange {
            nodes,
            leaf_slots: new.leaf_slots,
            parent_slots: new.parent_slots,
            tree_hash: new.tree_hash.clone(),
            context: new.context.clone(),
            interim_transcript_hash: new.interim_transcript_hash.clone(),
            confirmation_tag: new.confirmation_tag.clone(),
        }
    }
}

/// What [`GroupStorage`] holds: the state, openmls' decoded values of its nodes, and the
/// nodes changed since the last [`GroupStorage::take_change`].
#[derive(Debug, Default)]
struct Held {
    state: PublicState,
    /// openmls' serde encoding (postcard) of each leaf and parent slot of `state`, filled by
    /// the first read or write of the tree: a write is compared with them slot by slot, and
    /// only the slots that differ are decoded and re-encoded as TLS.
    leaves: Vec<Vec<u8>>,
    parents: Vec<Vec<u8>>,
    changed: BTreeMap<u32, Option<Vec<u8>>>,
}

/// openmls' storage for one group at a time behind a lock (openmls' trait takes `&self`;
/// the lock is never held across an await).
#[derive(Debug, Default)]
pub struct GroupStorage {
    held: Mutex<Held>,
}

impl GroupStorage {
    pub fn new(state: PublicState) -> Self {
        GroupStorage {
            held: Mutex::new(Held {
                state,
                ..Held::default()
            }),
        }
    }

    /// A copy of the state as openmls last wrote it.
    pub fn snapshot(&self) -> PublicState {
        self.lock().state.clone()
    }

    /// The RFC 9420 `ratchet_tree` of the state as openmls last wrote it.
    pub fn ratchet_tree(&self) -> Vec<u8> {
        self.lock().state.ratchet_tree()
    }

    /// Forgets the nodes changed so far: what follows is recorded for the next
    /// [`GroupStorage::take_change`].
    pub fn clear_change(&self) {
        self.lock().changed.clear();
    }

    /// What openmls wrote since [`GroupStorage::clear_change`]: the nodes it changed and the
    /// current scalars. The same as `before.change_to(&after)` without comparing the trees.
    pub fn take_change(&self) -> StateChange {
        let mut held = self.lock();
        let nodes = std::mem::take(&mut held.changed);
        let state = &held.state;
        StateChange {
            nodes,
            leaf_slots: state.leaf_slots,
            parent_slots: state.parent_slots,
            tree_hash: state.tree_hash.clone(),
            context: state.context.clone(),
            interim_transcript_hash: state.interim_transcript_hash.clone(),
            confirmation_tag: state.confirmation_tag.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // A poisoned lock only means a panic elsewhere mid-write; the state is still whole
        // values (each write replaces a field), so keep using it.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PublicStorageProvider<CURRENT_VERSION> for GroupStorage {
    type PublicError = GroupStateError;

    fn write_tree<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        TreeSync: traits::TreeSync<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        tree: &TreeSync,
    ) -> Result<(), Self::PublicError> {
        self.lock().read_tree(tree)
    }

    fn write_interim_transcript_hash<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        interim_transcript_hash: &InterimTranscriptHash,
    ) -> Result<(), Self::PublicError> {
        // A newtype over bytes: the same serde shape as `Vec<u8>`.
        self.lock().state.interim_transcript_hash = bridge(interim_transcript_hash)?;
        Ok(())
    }

    fn write_context<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupContextEntity: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        group_context: &GroupContextEntity,
    ) -> Result<(), Self::PublicError> {
        let context: GroupContext = bridge(group_context)?;
        self.lock().state.context = context.tls_serialize_detached().map_err(tls_error)?;
        Ok(())
    }

    fn write_confirmation_tag<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ConfirmationTagEntity: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        confirmation_tag: &ConfirmationTagEntity,
    ) -> Result<(), Self::PublicError> {
        let tag: ConfirmationTag = bridge(confirmation_tag)?;
        self.lock().state.confirmation_tag = tag.tls_serialize_detached().map_err(tls_error)?;
        Ok(())
    }

    fn queue_proposal<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _proposal_ref: &ProposalRef,
        _proposal: &QueuedProposal,
    ) -> Result<(), Self::PublicError> {
        Ok(())
    }

    fn queued_proposals<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Vec<(ProposalRef, QueuedProposal)>, Self::PublicError> {
        Ok(Vec::new())
    }

    fn tree<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        TreeSync: traits::TreeSync<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<TreeSync>, Self::PublicError> {
        let mut held = self.lock();
        if held.state.leaf_slots == 0 {
            return Ok(None);
        }
        held.write_tree().map(Some)
    }

    fn group_context<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupContextEntity: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<GroupContextEntity>, Self::PublicError> {
        let held = self.lock();
        let state = &held.state;
        if state.context.is_empty() {
            return Ok(None);
        }
        let context =
            GroupContext::tls_deserialize_exact(state.context.as_slice()).map_err(tls_error)?;
        bridge(&context).map(Some)
    }

    fn interim_transcript_hash<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<InterimTranscriptHash>, Self::PublicError> {
        let held = self.lock();
        let state = &held.state;
        if state.context.is_empty() {
            return Ok(None);
        }
        bridge(&state.interim_transcript_hash).map(Some)
    }

    fn confirmation_tag<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ConfirmationTagEntity: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<Option<ConfirmationTagEntity>, Self::PublicError> {
        let held = self.lock();
        let state = &held.state;
        if state.confirmation_tag.is_empty() {
            return Ok(None);
        }
        let tag = ConfirmationTag::tls_deserialize_exact(state.confirmation_tag.as_slice())
            .map_err(tls_error)?;
        bridge(&tag).map(Some)
    }

    fn delete_tree<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::PublicError> {
        let mut held = self.lock();
        let indices: Vec<u32> = held.state.nodes.keys().copied().collect();
        for index in indices {
            held.record(index, None);
        }
        held.leaves.clear();
        held.parents.clear();
        held.state.leaf_slots = 0;
        held.state.parent_slots = 0;
        held.state.tree_hash.clear();
        Ok(())
    }

    fn delete_confirmation_tag<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::PublicError> {
        self.lock().state.confirmation_tag.clear();
        Ok(())
    }

    fn delete_context<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::PublicError> {
        self.lock().state.context.clear();
        Ok(())
    }

    fn delete_interim_transcript_hash<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::PublicError> {
        self.lock().state.interim_transcript_hash.clear();
        Ok(())
    }

    fn remove_proposal<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
        _proposal_ref: &ProposalRef,
    ) -> Result<(), Self::PublicError> {
        Ok(())
    }

    fn clear_proposal_queue<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        _group_id: &GroupId,
    ) -> Result<(), Self::PublicError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_slot_is_one_zero_byte_in_postcard() {
        assert_eq!(postcard_bytes(&LeafSlot::default()).unwrap(), BLANK_SLOT);
        assert_eq!(postcard_bytes(&ParentSlot::default()).unwrap(), BLANK_SLOT);
        assert!(same_slot(None, Some(&BLANK_SLOT.to_vec())));
        assert!(!same_slot(Some(&vec![1, 7]), None));
    }
}
