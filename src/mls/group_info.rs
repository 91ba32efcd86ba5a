//! Checking an uploaded GroupInfo against the gateway's own view of the group (architecture
//! draft, "Commits": `currentGroupInfo`; MIMI Transport's hub rebuilds and checks it too).
//!
//! ```text
//! struct {
//!     GroupContext group_context;
//!     Extension extensions<V>;
//!     MAC confirmation_tag;
//!     uint32 signer;
//! } GroupInfoTBS;
//! struct { GroupInfoTBS tbs; opaque signature<V>; } GroupInfo;   // RFC 9420, 12.4.3
//! ```
//!
//! openmls keeps the signer index and the confirmation tag of a `VerifiableGroupInfo`
//! private (`../shared/OPENMLS.md`), so they are read from its TLS encoding: they follow the
//! GroupContext and the extensions, whose encoded lengths the public accessors give. The
//! GroupInfo then passes when its GroupContext and confirmation tag equal the group's and its
//! signature verifies under the signer's leaf key. The external-join public key cannot be
//! checked without group secrets.

use openmls::prelude::tls_codec::{Serialize as _, Size as _};
use openmls::prelude::{
    LeafNodeIndex, OpenMlsSignaturePublicKey, PublicGroup, Verifiable, group_info::GroupInfo,
    group_info::VerifiableGroupInfo,
};
use openmls_traits::crypto::OpenMlsCrypto;
use tls_codec::{Deserialize as _, VLBytes};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupInfoCheckError {
    #[error("group info does not decode: {0}")]
    Malformed(String),
    #[error("group context differs from the group's")]
    ContextMismatch,
    #[error("confirmation tag differs from the group's")]
    ConfirmationTagMismatch,
    #[error("signer {0} is not a member")]
    UnknownSigner(u32),
    #[error("signature does not verify under the signer's key")]
    BadSignature,
}

/// The confirmation tag (as encoded) and signer index of a GroupInfo.
fn tag_and_signer(group_info: &VerifiableGroupInfo) -> Result<(VLBytes, u32), GroupInfoCheckError> {
    let (tag, signer, _) = tail(group_info)?;
    Ok((tag, signer))
}

/// What follows the GroupContext and the extensions: confirmation tag, signer, signature.
fn tail(group_info: &VerifiableGroupInfo) -> Result<(VLBytes, u32, VLBytes), GroupInfoCheckError> {
    let malformed = |reason: String| GroupInfoCheckError::Malformed(reason);
    let encoded = group_info
        .tls_serialize_detached()
        .map_err(|error| malformed(error.to_string()))?;
    let offset = group_info.group_context().tls_serialized_len()
        + group_info.extensions().tls_serialized_len();
    let rest = encoded
        .get(offset..)
        .ok_or_else(|| malformed("shorter than its parts".into()))?;
    let mut reader = rest;
    let mut read = || -> Result<(VLBytes, u32, VLBytes), tls_codec::Error> {
        Ok((
            VLBytes::tls_deserialize(&mut reader)?,
            u32::tls_deserialize(&mut reader)?,
            VLBytes::tls_deserialize(&mut reader)?,
        ))
    };
    read().map_err(|error| malformed(error.to_string()))
}

/// The delivery-service draft's `PartialGroupInfo` of a whole GroupInfo: its extensions (as
/// encoded) and its signature, what a follower forwards with a commit.
pub fn split_group_info(
    group_info: &VerifiableGroupInfo,
) -> Result<(Vec<u8>, Vec<u8>), GroupInfoCheckError> {
    let extensions = group_info
        .extensions()
        .tls_serialize_detached()
        .map_err(|error| GroupInfoCheckError::Malformed(error.to_string()))?;
    let (_, _, signature) = tail(group_info)?;
    Ok((extensions, signature.as_slice().to_vec()))
}

/// The new epoch's GroupInfo, as an MLSMessage, rebuilt by the hub from its own GroupContext
/// and confirmation tag (`group` after the commit), the committer's leaf index and the
/// uploaded extensions and signature (MIMI Transport; the delivery-service draft's
/// `MLSGroupUpdate`). It still has to pass [`check_group_info`]: the signature must verify.
pub fn rebuild_group_info(
    group: &PublicGroup,
    signer: u32,
    extensions: &[u8],
    signature: &[u8],
) -> Result<Vec<u8>, GroupInfoCheckError> {
    const MLS10: u16 = 1;
    const WIRE_FORMAT_GROUP_INFO: u16 = 4;
    let encode_error = |error: tls_codec::Error| GroupInfoCheckError::Malformed(error.to_string());
    let mut bytes = Vec::with_capacity(256 + extensions.len() + signature.len());
    bytes.extend_from_slice(&MLS10.to_be_bytes());
    bytes.extend_from_slice(&WIRE_FORMAT_GROUP_INFO.to_be_bytes());
    bytes.extend(
        group
            .group_context()
            .tls_serialize_detached()
            .map_err(encode_error)?,
    );
    bytes.extend_from_slice(extensions);
    bytes.extend(
        group
            .confirmation_tag()
            .tls_serialize_detached()
            .map_err(encode_error)?,
    );
    bytes.extend_from_slice(&signer.to_be_bytes());
    bytes.extend(
        VLBytes::new(signature.to_vec())
            .tls_serialize_detached()
            .map_err(encode_error)?,
    );
    Ok(bytes)
}

/// Checks `group_info` against `group`, the state after the commit it claims to describe.
pub fn check_group_info(
    group: &PublicGroup,
    group_info: VerifiableGroupInfo,
    crypto: &impl OpenMlsCrypto,
) -> Result<GroupInfo, GroupInfoCheckError> {
    let encode_error = |error: tls_codec::Error| GroupInfoCheckError::Malformed(error.to_string());
    let theirs = group_info
        .group_context()
        .tls_serialize_detached()
        .map_err(encode_error)?;
    let ours = group
        .group_context()
        .tls_serialize_detached()
        .map_err(encode_error)?;
    if theirs != ours {
        return Err(GroupInfoCheckError::ContextMismatch);
    }
    let (tag, signer) = tag_and_signer(&group_info)?;
    if group
        .confirmation_tag()
        .tls_serialize_detached()
        .map_err(encode_error)?
        != VLBytes::new(tag.as_slice().to_vec())
            .tls_serialize_detached()
            .map_err(encode_error)?
    {
        return Err(GroupInfoCheckError::ConfirmationTagMismatch);
    }
    let leaf = group
        .leaf(LeafNodeIndex::new(signer))
        .ok_or(GroupInfoCheckError::UnknownSigner(signer))?;
    let key = OpenMlsSignaturePublicKey::from_signature_key(
        leaf.signature_key().clone(),
        group.ciphersuite().signature_algorithm(),
    );
    group_info
        .verify(crypto, &key)
        .map_err(|_| GroupInfoCheckError::BadSignature)
}
