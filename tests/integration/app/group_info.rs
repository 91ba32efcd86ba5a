//! Checking an uploaded GroupInfo against the gateway's public view of the group, with real
//! openmls groups: a genuine GroupInfo passes; a stale, corrupted or re-attributed one fails.

use mimi_gateway::mls::group_info::{GroupInfoCheckError, check_group_info};
use openmls::prelude::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _, Size as _};
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use crate::support::mls_client::{MlsClient, SUITE};

fn create_group(creator: &MlsClient) -> MlsGroup {
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(SUITE)
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build();
    MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &config,
        creator.credential.clone(),
    )
    .unwrap()
}

fn group_info(group: &MlsGroup, member: &MlsClient) -> VerifiableGroupInfo {
    let message = group
        .export_group_info(member.provider.crypto(), &member.signer, false)
        .unwrap();
    let bytes = message.tls_serialize_detached().unwrap();
    match MlsMessageIn::tls_deserialize_exact(bytes)
        .unwrap()
        .extract()
    {
        MlsMessageBodyIn::GroupInfo(group_info) => group_info,
        _ => panic!("not a group info"),
    }
}

/// The gateway's view: a PublicGroup built once from the GroupInfo and tree.
fn public_view(group: &MlsGroup, member: &MlsClient) -> (PublicGroup, MlsClient) {
    let storage_owner = MlsClient::basic("gateway");
    let (public, _) = PublicGroup::from_external(
        storage_owner.provider.crypto(),
        storage_owner.provider.storage(),
        group.export_ratchet_tree().into(),
        group_info(group, member),
        ProposalStore::new(),
    )
    .unwrap();
    (public, storage_owner)
}

/// Re-encodes `group_info` with the bytes after its GroupContext and extensions changed.
fn patched(group_info: &VerifiableGroupInfo, patch: impl FnOnce(&mut [u8])) -> VerifiableGroupInfo {
    let mut bytes = group_info.tls_serialize_detached().unwrap();
    let offset = group_info.group_context().tls_serialized_len()
        + group_info.extensions().tls_serialized_len();
    patch(&mut bytes[offset..]);
    VerifiableGroupInfo::tls_deserialize_exact(bytes).unwrap()
}

#[test]
fn a_genuine_group_info_passes() {
    let alice = MlsClient::basic("alice");
    let group = create_group(&alice);
    let (public, gateway) = public_view(&group, &alice);
    let checked = check_group_info(
        &public,
        group_info(&group, &alice),
        gateway.provider.crypto(),
    );
    assert!(checked.is_ok(), "{checked:?}");
}

#[test]
fn a_stale_group_info_fails() {
    let alice = MlsClient::basic("alice");
    let mut group = create_group(&alice);
    let (public, gateway) = public_view(&group, &alice);
    group
        .self_update(
            &alice.provider,
            &alice.signer,
            LeafNodeParameters::default(),
        )
        .unwrap();
    group.merge_pending_commit(&alice.provider).unwrap();
    let newer = group_info(&group, &alice);
    assert_eq!(
        check_group_info(&public, newer, gateway.provider.crypto()).unwrap_err(),
        GroupInfoCheckError::ContextMismatch
    );
}

#[test]
fn a_corrupted_group_info_fails() {
    let alice = MlsClient::basic("alice");
    let group = create_group(&alice);
    let (public, gateway) = public_view(&group, &alice);
    let original = group_info(&group, &alice);
    // The confirmation tag's first byte (after its one-byte length).
    let bad_tag = patched(&original, |rest| rest[1] ^= 0x01);
    assert_eq!(
        check_group_info(&public, bad_tag, gateway.provider.crypto()).unwrap_err(),
        GroupInfoCheckError::ConfirmationTagMismatch
    );
    // The signature's last byte.
    let bad_signature = patched(&original, |rest| {
        let last = rest.len() - 1;
        rest[last] ^= 0x01;
    });
    assert_eq!(
        check_group_info(&public, bad_signature, gateway.provider.crypto()).unwrap_err(),
        GroupInfoCheckError::BadSignature
    );
}

/// A GroupInfo signed by alice but claiming to be bob's (or nobody's) fails.
#[test]
fn a_re_attributed_group_info_fails() {
    let alice = MlsClient::basic("alice");
    let bob = MlsClient::basic("bob");
    let mut group = create_group(&alice);
    let bob_package = bob.key_package(1000);
    let bob_package = match MlsMessageIn::tls_deserialize_exact(bob_package)
        .unwrap()
        .extract()
    {
        MlsMessageBodyIn::KeyPackage(key_package) => key_package
            .validate(alice.provider.crypto(), ProtocolVersion::Mls10)
            .unwrap(),
        _ => panic!("not a key package"),
    };
    group
        .add_members(&alice.provider, &alice.signer, &[bob_package])
        .unwrap();
    group.merge_pending_commit(&alice.provider).unwrap();
    let (public, gateway) = public_view(&group, &alice);
    let original = group_info(&group, &alice);
    let tag_length = usize::from(
        original.tls_serialize_detached().unwrap()[original.group_context().tls_serialized_len()
            + original.extensions().tls_serialized_len()],
    );
    let signer_at = 1 + tag_length;
    let as_bob = patched(&original, |rest| {
        rest[signer_at..signer_at + 4].copy_from_slice(&1u32.to_be_bytes())
    });
    assert_eq!(
        check_group_info(&public, as_bob, gateway.provider.crypto()).unwrap_err(),
        GroupInfoCheckError::BadSignature
    );
    let as_nobody = patched(&original, |rest| {
        rest[signer_at..signer_at + 4].copy_from_slice(&7u32.to_be_bytes())
    });
    assert_eq!(
        check_group_info(&public, as_nobody, gateway.provider.crypto()).unwrap_err(),
        GroupInfoCheckError::UnknownSigner(7)
    );
    assert!(check_group_info(&public, original, gateway.provider.crypto()).is_ok());
}
