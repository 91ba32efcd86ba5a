//! Every refusal of the group endpoints (architecture draft, "Group Creation", "Proposals",
//! "Commits", "Joining"), each with the exact bad input, its stable code, and a check that
//! nothing changed.

use http::{Method, StatusCode};
use mimi_wire::ErrorCode;
use mimi_wire::groups::{JoinInfo, group_id_to_path};
use openmls::prelude::{
    GroupId, LeafNodeParameters, MlsGroup, MlsGroupCreateConfig, PURE_CIPHERTEXT_WIRE_FORMAT_POLICY,
};
use tls_codec::VLBytes;

use crate::support::group_client::*;
use crate::support::mls_client::SUITE;
use crate::support::*;

/// A group of alice and bob at epoch 1 on the memory store.
struct Fixture {
    harness: Harness,
    alice: Member,
    bob: Member,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut mimi_gateway::config::Config)) -> Fixture {
        let harness = Harness::start_with(StoreSpec::Memory, adjust).await;
        let mut alice = Member::new("alice");
        let (group_info, tree) = alice.create_group();
        let answer = GroupApi::create(&harness, &group_info, &tree).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
        let mut bob = Member::new("bob");
        let (commit, welcome, group_info) = alice.add(&[bob.mls.key_package(3600)]);
        let api = GroupApi::new(&harness, &alice.group_id());
        api.commit_ok(&commit, Some(&group_info), Some(&welcome))
            .await;
        bob.join(&welcomes(&harness, "bob").await[0]);
        Fixture {
            harness,
            alice,
            bob,
        }
    }

    fn api(&self) -> GroupApi {
        GroupApi::new(&self.harness, &self.alice.group_id())
    }

    /// What the gateway holds for the group: epoch, proposals, control messages, group info.
    async fn snapshot(&self) -> (u64, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<u8>) {
        let api = self.api();
        let group_info = api.group_info().await;
        (
            api.epoch().await,
            api.proposals().await,
            api.control_ok(0, None).await,
            group_info.group_infos[0].group_info.as_slice().to_vec(),
        )
    }
}

fn detail(answer: &Answer) -> String {
    error(answer).detail
}

/// Flips one byte inside the signature of a PublicMessage sent by a member: the signature
/// (64 bytes for Ed25519, `<V>`-prefixed) precedes the `<V>` 32-byte membership tag, and in
/// a commit also the `<V>` 32-byte confirmation tag.
fn tamper_signature(packet: &[u8], is_commit: bool) -> Vec<u8> {
    let mut tampered = packet.to_vec();
    let tags = if is_commit { 2 * 33 } else { 33 };
    let at = tampered.len() - tags - 10;
    tampered[at] ^= 0x01;
    tampered
}

/// A member's group joined straight from a welcome (no gateway), for foreign groups.
fn join_directly(member: &mut Member, welcome: &[u8], tree: Vec<u8>) {
    member.join(&JoinInfo {
        welcome_id: [0; 16],
        group_id: VLBytes::new(Vec::new()),
        epoch: 0,
        welcome: VLBytes::new(welcome.to_vec()),
        ratchet_tree: Some(VLBytes::new(tree)),
    });
}

// ---- Group Creation ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_a_group_info_that_is_not_one() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut alice = Member::new("alice");
    let (_, tree) = alice.create_group();
    for bad in [b"not an mls message".to_vec(), alice.mls.key_package(3600)] {
        let answer = GroupApi::create(&harness, &bad, &tree).await;
        assert_eq!(answer.error_code(), ErrorCode::MalformedMlsMessage);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_a_group_info_with_a_bad_signature() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut alice = Member::new("alice");
    let (mut group_info, tree) = alice.create_group();
    let last = group_info.len() - 1;
    group_info[last] ^= 0x01;
    let answer = GroupApi::create(&harness, &group_info, &tree).await;
    assert_eq!(answer.error_code(), ErrorCode::InvalidGroupInfo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_a_malformed_or_foreign_tree() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut alice = Member::new("alice");
    let (group_info, _) = alice.create_group();
    let answer = GroupApi::create(&harness, &group_info, b"\x05garbage").await;
    assert_eq!(answer.error_code(), ErrorCode::InvalidRatchetTree);
    // A valid one-member tree of alice's, but of another group (same signature key, other
    // encryption key): not the tree the GroupInfo describes.
    let (_, other_tree) = alice.create_group();
    let answer = GroupApi::create(&harness, &group_info, &other_tree).await;
    assert_eq!(answer.error_code(), ErrorCode::InvalidRatchetTree);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_anything_but_epoch_zero_with_one_member() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut alice = Member::new("alice");
    let (fresh_group_info, _) = alice.create_group();
    let bob = Member::new("bob");
    alice.add(&[bob.mls.key_package(3600)]);
    let two_member_tree = tree_bytes(alice.group.as_ref().unwrap());
    // Epoch 1.
    let answer = GroupApi::create(&harness, &alice.export_group_info(), &two_member_tree).await;
    assert_eq!(answer.error_code(), ErrorCode::NotANewGroup);
    // Epoch 0, but two members.
    let answer = GroupApi::create(&harness, &fresh_group_info, &two_member_tree).await;
    assert_eq!(answer.error_code(), ErrorCode::NotANewGroup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_a_credential_the_identity_provider_refuses() {
    let harness = Harness::start(StoreSpec::Memory).await;
    // The Basic provider's handles may not hold control characters.
    let mut mallory = Member::new("mallory\u{7}");
    let (group_info, tree) = mallory.create_group();
    let answer = GroupApi::create(&harness, &group_info, &tree).await;
    assert_eq!(answer.error_code(), ErrorCode::InvalidHandle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_a_group_id_in_use() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut alice = Member::new("alice");
    let (group_info, tree) = alice.create_group();
    let first = GroupApi::create(&harness, &group_info, &tree).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = GroupApi::create(&harness, &group_info, &tree).await;
    assert_eq!(second.error_code(), ErrorCode::GroupExists);
}

// ---- Proposals ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_for_another_group_is_refused() {
    let fixture = Fixture::start().await;
    let mut stranger = Member::new("stranger");
    stranger.create_group();
    let proposal = stranger.propose_update();
    let before = fixture.snapshot().await;
    let answer = fixture.api().propose(&proposal).await;
    assert_eq!(answer.error_code(), ErrorCode::GroupIdMismatch);
    assert_eq!(fixture.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_for_a_stale_epoch_is_refused_with_the_current_epoch() {
    let mut fixture = Fixture::start().await;
    let proposal = fixture.bob.propose_update();
    let (commit, group_info) = fixture.alice.update();
    fixture
        .api()
        .commit_ok(&commit, Some(&group_info), None)
        .await;
    let answer = fixture.api().propose(&proposal).await;
    assert_eq!(answer.error_code(), ErrorCode::StaleEpoch);
    assert_eq!(detail(&answer), "current epoch 2");
    assert!(fixture.api().proposals().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_for_a_future_epoch_is_refused_with_the_current_epoch() {
    let mut fixture = Fixture::start().await;
    // Alice moves to epoch 2 locally, without uploading her commit.
    fixture.alice.update();
    let proposal = fixture.alice.propose_update();
    let answer = fixture.api().propose(&proposal).await;
    assert_eq!(answer.error_code(), ErrorCode::FutureEpoch);
    assert_eq!(detail(&answer), "current epoch 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_from_a_non_member_is_refused() {
    let fixture = Fixture::start().await;
    // Mallory builds her own group under the same group id with three members, so that her
    // third member's leaf (2) does not exist in the real group at the same epoch (1).
    let mut mallory = Member::new("mallory");
    let group = MlsGroup::new_with_group_id(
        &mallory.mls.provider,
        &mallory.mls.signer,
        &create_config(),
        GroupId::from_slice(&fixture.alice.group_id()),
        mallory.mls.credential.clone(),
    )
    .unwrap();
    mallory.group = Some(group);
    let mut second = Member::new("m2");
    let mut third = Member::new("m3");
    let (_, welcome, _) = mallory.add(&[second.mls.key_package(3600), third.mls.key_package(3600)]);
    let tree = tree_bytes(mallory.group.as_ref().unwrap());
    join_directly(&mut second, &welcome, tree.clone());
    join_directly(&mut third, &welcome, tree);
    assert_eq!(third.group.as_ref().unwrap().own_leaf_index().u32(), 2);
    let proposal = third.propose_update();
    let answer = fixture.api().propose(&proposal).await;
    assert_eq!(answer.error_code(), ErrorCode::NotAMember);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_with_a_bad_signature_is_refused() {
    let mut fixture = Fixture::start().await;
    let proposal = tamper_signature(&fixture.bob.propose_update(), false);
    let answer = fixture.api().propose(&proposal).await;
    assert_eq!(answer.error_code(), ErrorCode::PacketSignatureInvalid);
    assert!(fixture.api().proposals().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_message_handshakes_are_refused() {
    let fixture = Fixture::start().await;
    let mut secretive = Member::new("secretive");
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(SUITE)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build();
    let mut group = MlsGroup::new_with_group_id(
        &secretive.mls.provider,
        &secretive.mls.signer,
        &config,
        GroupId::from_slice(&fixture.alice.group_id()),
        secretive.mls.credential.clone(),
    )
    .unwrap();
    let (proposal, _) = group
        .propose_self_update(
            &secretive.mls.provider,
            &secretive.mls.signer,
            LeafNodeParameters::default(),
        )
        .unwrap();
    let bundle = group
        .self_update(
            &secretive.mls.provider,
            &secretive.mls.signer,
            LeafNodeParameters::default(),
        )
        .unwrap();
    secretive.group = Some(group);
    let (commit, _, _) = bundle.into_contents();
    let answer = fixture.api().propose(&bytes(&proposal)).await;
    assert_eq!(answer.error_code(), ErrorCode::PrivateMessageHandshake);
    let answer = fixture.api().commit(&bytes(&commit), None, None).await;
    assert_eq!(answer.error_code(), ErrorCode::PrivateMessageHandshake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_not_a_proposal_and_a_proposal_not_a_commit() {
    let mut fixture = Fixture::start().await;
    let before = fixture.snapshot().await;
    let proposal = fixture.bob.propose_update();
    let answer = fixture.api().commit(&proposal, None, None).await;
    assert_eq!(answer.error_code(), ErrorCode::NotACommit);
    let (commit, _) = fixture.alice.update();
    let answer = fixture.api().propose(&commit).await;
    assert_eq!(answer.error_code(), ErrorCode::NotAProposal);
    assert_eq!(fixture.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_held_once() {
    let mut fixture = Fixture::start().await;
    let proposal = fixture.bob.propose_update();
    let first = fixture.api().propose(&proposal).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = fixture.api().propose(&proposal).await;
    assert_eq!(second.error_code(), ErrorCode::DuplicateProposal);
    assert_eq!(fixture.api().proposals().await, vec![proposal]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_tampered_packets_change_nothing() {
    let mut fixture = Fixture::start().await;
    let before = fixture.snapshot().await;
    let proposal = fixture.bob.propose_update();
    let truncated = &proposal[..proposal.len() - 7];
    let answer = fixture.api().propose(truncated).await;
    assert_eq!(answer.error_code(), ErrorCode::MalformedMlsMessage);
    let (commit, group_info) = fixture.alice.update();
    let answer = fixture
        .api()
        .commit(&commit[..commit.len() / 2], Some(&group_info), None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::MalformedMlsMessage);
    let answer = fixture
        .api()
        .commit(&tamper_signature(&commit, true), Some(&group_info), None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::PacketSignatureInvalid);
    assert_eq!(fixture.snapshot().await, before);
    // The intact commit still applies.
    assert_eq!(
        fixture
            .api()
            .commit_ok(&commit, Some(&group_info), None)
            .await,
        2
    );
}

// ---- Commits ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_citing_a_proposal_the_gateway_lacks_is_refused() {
    let mut fixture = Fixture::start().await;
    let proposal = fixture.bob.propose_update();
    // Alice got bob's proposal some other way; the gateway never did.
    fixture.alice.apply(&proposal);
    let before = fixture.snapshot().await;
    let (commit, group_info) = fixture.alice.commit_pending();
    let answer = fixture.api().commit(&commit, Some(&group_info), None).await;
    assert_eq!(answer.error_code(), ErrorCode::UnknownProposalReference);
    assert_eq!(fixture.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_adding_members_needs_their_welcome() {
    let mut fixture = Fixture::start().await;
    let carol = Member::new("carol");
    let before = fixture.snapshot().await;
    let (commit, _welcome, group_info) = fixture.alice.add(&[carol.mls.key_package(3600)]);
    let answer = fixture.api().commit(&commit, Some(&group_info), None).await;
    assert_eq!(answer.error_code(), ErrorCode::WelcomeRequired);
    // Another group's welcome for another key package.
    let mut other = Member::new("other");
    other.create_group();
    let dave = Member::new("dave");
    let (_, foreign_welcome, _) = other.add(&[dave.mls.key_package(3600)]);
    let answer = fixture
        .api()
        .commit(&commit, Some(&group_info), Some(&foreign_welcome))
        .await;
    assert_eq!(answer.error_code(), ErrorCode::WelcomeRecipientsMismatch);
    assert_eq!(fixture.snapshot().await, before);
    assert!(welcomes(&fixture.harness, "carol").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_without_adds_takes_no_welcome() {
    let mut fixture = Fixture::start().await;
    let mut other = Member::new("other");
    other.create_group();
    let dave = Member::new("dave");
    let (_, welcome, _) = other.add(&[dave.mls.key_package(3600)]);
    let (commit, group_info) = fixture.alice.update();
    let answer = fixture
        .api()
        .commit(&commit, Some(&group_info), Some(&welcome))
        .await;
    assert_eq!(answer.error_code(), ErrorCode::WelcomeRecipientsMismatch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_a_group_info_of_another_epoch_or_forged_is_refused() {
    let mut fixture = Fixture::start().await;
    let before = fixture.snapshot().await;
    let stale_group_info = fixture.alice.export_group_info();
    let (commit, group_info) = fixture.alice.update();
    let answer = fixture
        .api()
        .commit(&commit, Some(&stale_group_info), None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::GroupInfoMismatch);
    let mut forged = group_info.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let answer = fixture.api().commit(&commit, Some(&forged), None).await;
    assert_eq!(answer.error_code(), ErrorCode::GroupInfoMismatch);
    assert_eq!(fixture.snapshot().await, before);
    // Without a GroupInfo the commit applies, and external joins have none to use.
    assert_eq!(fixture.api().commit_ok(&commit, None, None).await, 2);
    assert!(fixture.api().group_info().await.group_infos.is_empty());
}

/// Signatures the gateway's verifier has checked, in batches or alone.
async fn signatures_verified(harness: &Harness) -> u64 {
    harness
        .metric("mimi_signatures_verified_total{how=\"batch\"}")
        .await
        + harness
            .metric("mimi_signatures_verified_total{how=\"alone\"}")
            .await
}

/// With batched verification a commit's signatures are checked after it is staged, with
/// other requests' (`mls::provider`): a bad one must still refuse it as openmls would, and
/// the copy merged on it must be gone, so the intact commit applies after. With batching off
/// openmls checks them where it meets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_refused_for_a_bad_signature_alike_batched_or_not() {
    for batched in [true, false] {
        let mut fixture =
            Fixture::start_with(|config| config.auth.batch_verification = batched).await;
        let before = fixture.snapshot().await;
        let (commit, group_info) = fixture.alice.update();
        let answer = fixture
            .api()
            .commit(&tamper_signature(&commit, true), Some(&group_info), None)
            .await;
        assert_eq!(
            answer.error_code(),
            ErrorCode::PacketSignatureInvalid,
            "batched {batched}"
        );
        let mut forged = group_info.clone();
        let last = forged.len() - 1;
        forged[last] ^= 0x01;
        let answer = fixture.api().commit(&commit, Some(&forged), None).await;
        assert_eq!(
            answer.error_code(),
            ErrorCode::GroupInfoMismatch,
            "batched {batched}"
        );
        assert_eq!(fixture.snapshot().await, before, "batched {batched}");
        let verified = signatures_verified(&fixture.harness).await;
        assert_eq!(
            fixture
                .api()
                .commit_ok(&commit, Some(&group_info), None)
                .await,
            2
        );
        // The request's signature, and batched also the commit's, its new leaf's and the
        // GroupInfo's.
        assert_eq!(
            signatures_verified(&fixture.harness).await - verified,
            if batched { 4 } else { 1 },
            "batched {batched}"
        );
        assert_eq!(fixture.api().group_info().await.group_infos.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_adding_a_key_package_the_application_refuses_is_refused() {
    let mut fixture = Fixture::start_with(|config| {
        config.key_packages.max_lifetime_secs = 4 * 3600;
    })
    .await;
    let carol = Member::new("carol");
    // A 30-day lifetime window, over the configured maximum.
    let (commit, welcome, group_info) = fixture.alice.add(&[carol.mls.key_package(30 * 86_400)]);
    let answer = fixture
        .api()
        .commit(&commit, Some(&group_info), Some(&welcome))
        .await;
    assert_eq!(answer.error_code(), ErrorCode::LifetimeTooLong);
    assert!(detail(&answer).starts_with("added key package 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_commit_for_an_epoch_is_stale() {
    let mut fixture = Fixture::start().await;
    let (first, first_info) = fixture.alice.update();
    let (second, second_info) = fixture.bob.update();
    assert_eq!(
        fixture
            .api()
            .commit_ok(&first, Some(&first_info), None)
            .await,
        2
    );
    let answer = fixture
        .api()
        .commit(&second, Some(&second_info), None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::StaleEpoch);
    assert_eq!(detail(&answer), "current epoch 2");
    assert_eq!(fixture.api().control_ok(2, None).await, vec![first]);
}

// ---- Control messages, welcomes, unknown groups ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_message_ranges_outside_the_group_are_refused() {
    let fixture = Fixture::start().await;
    let api = fixture.api();
    assert_eq!(api.control_ok(0, None).await.len(), 1);
    assert_eq!(api.control_ok(1, Some(1)).await.len(), 1);
    for (start, end) in [(2, None), (1, Some(2)), (1, Some(0)), (5, Some(3))] {
        let answer = api.control(start, end).await;
        assert_eq!(
            answer.error_code(),
            ErrorCode::EpochOutOfRange,
            "{start}..{end:?}"
        );
        assert_eq!(detail(&answer), "current epoch 1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_before_joining_loses_its_welcome() {
    let mut fixture = Fixture::start().await;
    let carol = Member::new("carol");
    let (commit, welcome, group_info) = fixture.alice.add(&[carol.mls.key_package(3600)]);
    fixture
        .api()
        .commit_ok(&commit, Some(&group_info), Some(&welcome))
        .await;
    assert_eq!(welcomes(&fixture.harness, "carol").await.len(), 1);
    let (commit, group_info) = fixture.alice.remove(2);
    fixture
        .api()
        .commit_ok(&commit, Some(&group_info), None)
        .await;
    assert!(welcomes(&fixture.harness, "carol").await.is_empty());
    // Bob's welcome, acknowledged or not, is unaffected by carol's removal.
    assert_eq!(welcomes(&fixture.harness, "bob").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_groups_and_malformed_group_ids_are_refused() {
    let fixture = Fixture::start().await;
    let app = fixture.harness.app.id;
    let unknown = group_id_to_path(b"no such group");
    for (method, tail) in [
        (Method::GET, "proposals"),
        (Method::GET, "group-info"),
        (Method::PUT, "epochs"),
        (Method::PUT, "proposals"),
        (Method::POST, "control-msgs"),
    ] {
        let body = match tail {
            "epochs" => mimi_wire::encode(&mimi_wire::groups::UploadCommitRequest {
                version: 1,
                commit_packet: VLBytes::new(vec![1]),
                group_info: None,
                welcome_packet: None,
            })
            .unwrap(),
            "proposals" if method == Method::PUT => {
                mimi_wire::encode(&mimi_wire::groups::UploadProposalRequest {
                    version: 1,
                    packet: VLBytes::new(vec![1]),
                })
                .unwrap()
            }
            "control-msgs" => mimi_wire::encode(&mimi_wire::groups::ControlMessagesRequest {
                version: 1,
                start_epoch_id: 0,
                end_epoch_id: None,
            })
            .unwrap(),
            _ => Vec::new(),
        };
        let path = format!("/apps/{app}/groups/{unknown}/{tail}");
        let answer = fixture.harness.call(method.clone(), &path, body).await;
        assert_eq!(
            answer.error_code(),
            ErrorCode::UnknownGroup,
            "{method} {tail}"
        );
        let path = format!("/apps/{app}/groups/not-hex/{tail}");
        let answer = fixture.harness.call(method, &path, Vec::new()).await;
        assert_eq!(answer.error_code(), ErrorCode::MalformedPath);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_served_for_welcomes_is_the_committers_tree() {
    let mut fixture = Fixture::start().await;
    let carol = Member::new("carol");
    let (commit, welcome, group_info) = fixture.alice.add(&[carol.mls.key_package(3600)]);
    fixture
        .api()
        .commit_ok(&commit, Some(&group_info), Some(&welcome))
        .await;
    let served = welcomes(&fixture.harness, "carol").await;
    let expected = tree_bytes(fixture.alice.group.as_ref().unwrap());
    assert_eq!(
        served[0].ratchet_tree.as_ref().unwrap().as_slice(),
        expected
    );
    let current = fixture.api().group_info().await;
    assert_eq!(
        current.group_infos[0]
            .ratchet_tree
            .as_ref()
            .unwrap()
            .as_slice(),
        expected
    );
}
