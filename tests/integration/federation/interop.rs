//! Interoperability (issue 13): the architecture draft's federated flow across two gateways
//! with clients of two independent MLS implementations, openmls 0.9.2 and AWS mls-rs 0.57
//! (`mls_rs_client`), for both ways of naming clients of other domains (`basic_with_domains`
//! and X.509 credentials encoded per RFC 9420) and on both stores (memory and Redis).
//!
//! Alice (openmls) is at A, the hub; Bob (mls-rs) at A; Carol (mls-rs) at B, the follower;
//! Dave (openmls) at B. Every step checks that all members export the same epoch secret.

use http::{Method, StatusCode};
use mimi_gateway::config::{IdentityConfig, IdentityProviderKind};
use mimi_wire::groups::GroupRole;
use mimi_wire::{ErrorCode, decode_exact};

use crate::support::federation::{
    DOMAINS, Federation, key_package_ok, mirrored_control, welcome_for,
};
use crate::support::forwarding::{queued_ok, send_message_from};
use crate::support::group_client::group_status;
use crate::support::group_client::{GroupApi, Member, error};
use crate::support::key_queues::{QueueFixture, register};
use crate::support::mls_rs_client::RsMember;
use crate::support::*;

/// How clients of a domain are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// Basic credentials `handle@domain` (`basic_with_domains`).
    BasicWithDomains,
    /// X.509 chains from each domain's CA, the domain in the issuer's Common Name.
    X509,
}

/// The members, as the test drives them: the same operations on either library.
trait Client {
    fn secret(&self) -> Vec<u8>;
    /// Processes a proposal or commit; whether a commit removed this member.
    fn apply(&mut self, packet: &[u8]) -> bool;
    fn read(&mut self, packet: &[u8]) -> Vec<u8>;
}

impl Client for Member {
    fn secret(&self) -> Vec<u8> {
        Member::secret(self)
    }
    fn apply(&mut self, packet: &[u8]) -> bool {
        Member::apply(self, packet)
    }
    fn read(&mut self, packet: &[u8]) -> Vec<u8> {
        self.read_message(packet)
    }
}

impl Client for RsMember {
    fn secret(&self) -> Vec<u8> {
        RsMember::secret(self)
    }
    fn apply(&mut self, packet: &[u8]) -> bool {
        RsMember::apply(self, packet)
    }
    fn read(&mut self, packet: &[u8]) -> Vec<u8> {
        self.read_message(packet)
    }
}

fn same_secret(members: &[&dyn Client], step: &str) {
    let first = members[0].secret();
    for (index, member) in members.iter().enumerate() {
        assert_eq!(member.secret(), first, "{step}: member {index} disagrees");
    }
}

fn openmls_member(federation: &Federation, naming: Naming, index: usize, handle: &str) -> Member {
    match naming {
        Naming::BasicWithDomains => Member::new(&format!("{handle}@{}", DOMAINS[index])),
        Naming::X509 => federation.cas[index].member(handle),
    }
}

fn mls_rs_member(federation: &Federation, naming: Naming, index: usize, handle: &str) -> RsMember {
    match naming {
        Naming::BasicWithDomains => RsMember::basic(&format!("{handle}@{}", DOMAINS[index])),
        Naming::X509 => {
            let (chain, seed) = federation.cas[index].credential(handle);
            let member = RsMember::x509(&chain, &seed);
            // RFC 9420, section 5.3, written out: x509(2), then `Certificate
            // certificates<V>`, each `opaque cert_data<V>`.
            let entries: Vec<u8> = chain.iter().flat_map(|der| vl(der)).collect();
            let expected = [&[0x00, 0x02][..], &vl(&entries)].concat();
            assert_eq!(
                member.credential_bytes(),
                expected,
                "mls-rs encodes per the RFC"
            );
            member
        }
    }
}

/// `opaque<V>`: the shortest variable-length prefix, then the bytes.
fn vl(bytes: &[u8]) -> Vec<u8> {
    let length = bytes.len();
    let mut out = if length < 64 {
        vec![length as u8]
    } else if length < 16384 {
        (0x4000 | length as u16).to_be_bytes().to_vec()
    } else {
        (0x8000_0000 | length as u32).to_be_bytes().to_vec()
    };
    out.extend_from_slice(bytes);
    out
}

async fn federation_for(naming: Naming, store: impl Fn(usize) -> StoreSpec) -> Federation {
    Federation::start_with(2, store, |_, config| {
        if naming == Naming::BasicWithDomains {
            config.applications[0].identity = IdentityConfig {
                provider: IdentityProviderKind::BasicWithDomains,
                ..IdentityConfig::default()
            };
        }
    })
    .await
}

/// The application messages queued for `handle` at `harness` once there are `count`.
async fn messages(harness: &Harness, handle: &str, count: usize) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let queued = queued_ok(harness, handle, 0).await;
        if queued.len() >= count {
            return queued
                .into_iter()
                .map(|entry| entry.message.as_slice().to_vec())
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} messages for {handle}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn federated_flow(naming: Naming, store: impl Fn(usize) -> StoreSpec) {
    let federation = federation_for(naming, store).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);

    // Carol (mls-rs) registers at B and uploads key packages; so does Bob (mls-rs) at A.
    let mut carol = mls_rs_member(&federation, naming, 1, "carol");
    let carol_queue = QueueFixture::new(b, "carol").await;
    assert_eq!(
        carol_queue
            .upload(&[carol.key_package(), carol.key_package()])
            .await,
        2
    );
    let mut bob = mls_rs_member(&federation, naming, 0, "bob");
    let bob_queue = QueueFixture::new(a, "bob").await;
    assert_eq!(bob_queue.upload(&[bob.key_package()]).await, 1);

    // Alice (openmls) creates a group at A and adds both: Carol's key package fetched across
    // domains, each Welcome fetched at the member's own gateway.
    let mut alice = openmls_member(&federation, naming, 0, "alice");
    register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    assert_eq!(
        GroupApi::create(a, &group_info, &tree).await.status,
        StatusCode::CREATED
    );
    let hub = GroupApi::new(a, &alice.group_id());
    let mirror = GroupApi::new(b, &alice.group_id());
    let carol_package = key_package_ok(a, carol_queue.client, DOMAINS[1], "alice").await;
    let bob_package = key_package_ok(a, bob_queue.client, DOMAINS[0], "alice").await;
    let (add, welcome, info) = alice.add(&[carol_package, bob_package]);
    assert_eq!(hub.commit_ok(&add, Some(&info), Some(&welcome)).await, 1);
    carol.join(&welcome_for(b, "carol").await);
    bob.join(&welcome_for(a, "bob").await);
    same_secret(&[&alice, &bob, &carol], "after the add");
    mirrored_control(&mirror, 1).await;

    // What a client can learn of the group at either gateway.
    let at_hub = group_status(&hub).await;
    assert_eq!(
        (
            at_hub.epoch,
            at_hub.role,
            at_hub.member_count,
            at_hub.has_group_info.0
        ),
        (1, GroupRole::Hub, 3, true)
    );
    assert_eq!(at_hub.hub_domain, DOMAINS[0]);
    let at_mirror = group_status(&mirror).await;
    assert_eq!(
        (at_mirror.epoch, at_mirror.role, at_mirror.member_count),
        (1, GroupRole::Mirror, 3)
    );
    assert_eq!(at_mirror.hub_domain, DOMAINS[0]);

    // Application messages each member decrypts; no sender gets its own back.
    let from_alice = alice.send_message(b"hello from openmls");
    let sent = send_message_from(&hub, &from_alice, Some("alice")).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", error(&sent));
    let from_carol = carol.send_message(b"hello from mls-rs");
    assert!(
        !carol.reads_own_message(&from_carol),
        "mls-rs cannot process its own message"
    );
    let sent = send_message_from(&mirror, &from_carol, Some("carol")).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", error(&sent));
    let at_bob = messages(a, "bob", 2).await;
    assert_eq!(bob.read(&at_bob[0]), b"hello from openmls");
    assert_eq!(bob.read(&at_bob[1]), b"hello from mls-rs");
    let at_alice = messages(a, "alice", 1).await;
    assert_eq!(
        at_alice.len(),
        1,
        "Alice's own message is not queued for her"
    );
    assert_eq!(alice.read(&at_alice[0]), b"hello from mls-rs");
    // The fan-out to B is in order: once Alice's second message is there, Carol's own
    // would have been before it.
    let again = alice.send_message(b"again");
    let sent = send_message_from(&hub, &again, Some("alice")).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", error(&sent));
    let at_carol = messages(b, "carol", 2).await;
    assert_eq!(
        at_carol.len(),
        2,
        "Carol's own message is not queued for her"
    );
    assert_eq!(carol.read(&at_carol[0]), b"hello from openmls");
    assert_eq!(carol.read(&at_carol[1]), b"again");
    assert_eq!(bob.read(&messages(a, "bob", 3).await[2]), b"again");

    // Carol (mls-rs) updates her keys at the follower.
    let (update, info) = carol.update();
    assert_eq!(mirror.commit_ok(&update, Some(&info), None).await, 2);
    carol.confirm();
    for member in [&mut alice as &mut dyn Client, &mut bob] {
        assert!(!member.apply(&hub.control_ok(2, Some(2)).await[0]));
    }
    same_secret(&[&alice, &bob, &carol], "after Carol's update");

    // A proposal of Carol's at the follower, committed by reference by Alice at the hub.
    let proposal = carol.propose_update();
    let answer = mirror.propose(&proposal).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    let held = hub.proposals().await;
    assert_eq!(held, vec![proposal.clone()]);
    assert!(!alice.apply(&held[0]));
    let (by_reference, info) = alice.commit_pending();
    assert_eq!(hub.commit_ok(&by_reference, Some(&info), None).await, 3);
    let control = hub.control_ok(3, Some(3)).await;
    assert_eq!(control, vec![proposal.clone(), by_reference.clone()]);
    for packet in &control {
        assert!(!bob.apply(packet));
    }
    for packet in &mirrored_control(&mirror, 3).await {
        assert!(!carol.apply(packet));
    }
    same_secret(&[&alice, &bob, &carol], "after the commit by reference");

    // Dave (openmls), a new user at B, joins by external commit at the follower.
    register(b, "dave").await;
    let mut dave = openmls_member(&federation, naming, 1, "dave");
    let (join, info) = dave.join_external(&mirror.group_info().await);
    assert_eq!(mirror.commit_ok(&join, Some(&info), None).await, 4);
    for member in [&mut alice as &mut dyn Client, &mut bob] {
        assert!(!member.apply(&join));
    }
    assert!(!carol.apply(&mirrored_control(&mirror, 4).await[0]));
    same_secret(&[&alice, &bob, &carol, &dave], "after Dave's external join");

    // A commit race between the libraries: Alice at the hub, Carol through the follower.
    let (alice_commit, alice_info) = alice.update_pending();
    let (carol_commit, carol_info) = carol.update();
    let (at_a, at_b) = tokio::join!(
        hub.commit(&alice_commit, Some(&alice_info), None),
        mirror.commit(&carol_commit, Some(&carol_info), None),
    );
    let alice_won = at_a.status == StatusCode::CREATED;
    let (winner, loser) = if alice_won {
        (&at_a, &at_b)
    } else {
        (&at_b, &at_a)
    };
    assert_eq!(winner.status, StatusCode::CREATED, "{:?}", error(winner));
    assert_eq!(loser.error_code(), ErrorCode::StaleEpoch);
    assert_eq!(
        error(loser).current_epoch(),
        Some(5),
        "the epoch as a value"
    );
    let winning = if alice_won {
        alice_commit
    } else {
        carol_commit
    };
    assert_eq!(hub.control_ok(5, Some(5)).await, vec![winning.clone()]);
    assert_eq!(mirrored_control(&mirror, 5).await, vec![winning.clone()]);
    // The winner merges; the loser drops its commit and catches up from the control
    // messages, as the bystanders do.
    if alice_won {
        alice.confirm();
        carol.discard();
        assert!(!carol.apply(&winning));
    } else {
        carol.confirm();
        alice.discard();
        assert!(!alice.apply(&winning));
    }
    assert!(!bob.apply(&winning));
    assert!(!dave.apply(&winning));
    same_secret(&[&alice, &bob, &carol, &dave], "after the race");
    // ... and commits again.
    let retry = if alice_won {
        let (commit, info) = carol.update();
        assert_eq!(mirror.commit_ok(&commit, Some(&info), None).await, 6);
        carol.confirm();
        assert!(!alice.apply(&commit));
        commit
    } else {
        let (commit, info) = alice.update_pending();
        assert_eq!(hub.commit_ok(&commit, Some(&info), None).await, 6);
        alice.confirm();
        assert!(!carol.apply(&commit));
        commit
    };
    assert!(!bob.apply(&retry));
    assert!(!dave.apply(&retry));
    same_secret(&[&alice, &bob, &carol, &dave], "after the loser's retry");

    // Bob (mls-rs) removes Carol at the hub; she learns it from B.
    let (removal, info) = bob.remove(carol.leaf());
    assert_eq!(hub.commit_ok(&removal, Some(&info), None).await, 7);
    bob.confirm();
    assert!(!alice.apply(&removal));
    assert!(!dave.apply(&removal));
    assert!(
        carol.apply(&mirrored_control(&mirror, 7).await[0]),
        "Carol sees she was removed"
    );
    same_secret(&[&alice, &bob, &dave], "after Carol's removal");
    assert_eq!(group_status(&mirror).await.member_count, 3);

    // Erin (mls-rs), a new user at B, joins by external commit from the GroupInfo of Bob's
    // (mls-rs) commit, at the follower.
    register(b, "erin").await;
    let mut erin = mls_rs_member(&federation, naming, 1, "erin");
    let (join, info) = erin.join_external(&mirror.group_info().await);
    assert_eq!(mirror.commit_ok(&join, Some(&info), None).await, 8);
    for member in [&mut alice as &mut dyn Client, &mut bob, &mut dave] {
        assert!(!member.apply(&join));
    }
    same_secret(&[&alice, &bob, &dave, &erin], "after Erin's external join");
    assert_eq!(group_status(&hub).await.member_count, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_clients_federate_with_basic_domains_on_memory() {
    federated_flow(Naming::BasicWithDomains, |_| StoreSpec::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_clients_federate_with_x509_on_memory() {
    federated_flow(Naming::X509, |_| StoreSpec::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_clients_federate_with_basic_domains_on_redis() {
    let redis = [RedisServer::start(), RedisServer::start()];
    federated_flow(Naming::BasicWithDomains, |index| {
        StoreSpec::Redis(redis[index].url())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_clients_federate_with_x509_on_redis() {
    let redis = [RedisServer::start(), RedisServer::start()];
    federated_flow(Naming::X509, |index| StoreSpec::Redis(redis[index].url())).await;
}

/// The exact bytes standard clients send that the gateway refuses, each with its own code:
/// an X.509 credential whose certificates do not decode, a GREASE key package written by
/// mls-rs, `basic_with_domains` identities of another domain or without one; and what a
/// client can now learn: the key-package limits, a group's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_encodings_and_their_refusals() {
    use mimi_wire::registry::{ApplicationList, IdentityProviderType};
    use openmls::prelude::{Credential, CredentialType};

    // X.509 application (the federation's default).
    let x509 = Federation::start(1, |_| StoreSpec::Memory).await;
    let gateway = &x509.gateways[0];
    let queue = QueueFixture::new(gateway, "mallory").await;
    // RFC 9420 `Certificate certificates<V>` whose one entry declares 3 bytes and has 1.
    let mut truncated = x509.cas[0].client("mallory");
    truncated.credential.credential = Credential::new(CredentialType::X509, vec![0x03, 0x01]);
    let answer = queue
        .update(&[truncated.key_package(3_600)], false, None, None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::MalformedCredential);
    // An empty chain is refused alike, never taken for "no certificate to check".
    let mut empty = x509.cas[0].client("mallory");
    empty.credential.credential = Credential::new(CredentialType::X509, Vec::new());
    let answer = queue
        .update(&[empty.key_package(3_600)], false, None, None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::MalformedCredential);
    // A key package mls-rs wrote with its `grease` feature on.
    let greased = include_str!("../../vectors/mls-rs-grease.txt")
        .lines()
        .find_map(|line| line.strip_prefix("key_package_mlsmessage="))
        .unwrap();
    let answer = queue
        .update(&[hex::decode(greased.trim()).unwrap()], false, None, None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::GreaseUnsupported);

    // basic_with_domains at a.localhost.
    let basic = federation_for(Naming::BasicWithDomains, |_| StoreSpec::Memory).await;
    let gateway = &basic.gateways[0];
    let queue = QueueFixture::new(gateway, "carol").await;
    for (identity, code) in [
        ("carol@b.localhost", ErrorCode::ForeignDomain),
        ("carol", ErrorCode::InvalidHandle),
        ("carol@127.0.0.1", ErrorCode::InvalidHandle),
    ] {
        let package = crate::support::mls_client::MlsClient::basic(identity).key_package(3_600);
        let answer = queue.update(&[package], false, None, None).await;
        assert_eq!(answer.error_code(), code, "{identity}");
    }
    let package = RsMember::basic("carol@a.localhost").key_package();
    assert_eq!(queue.upload(&[package]).await, 1);

    // GET /apps: the identity configuration and the key-package limits.
    let answer = gateway.call(Method::GET, "/apps", Vec::new()).await;
    let list: ApplicationList = decode_exact(&answer.body).unwrap();
    let listed = &list.applications[0];
    assert_eq!(
        listed.identity_configuration.identity_provider_type,
        IdentityProviderType::BasicWithDomains
    );
    assert!(listed.identity_configuration.supports_domains.0);
    let limits = &listed.key_package_limits;
    assert_eq!(limits.max_lifetime_secs, 84 * 86_400 + 3_600);
    assert_eq!(limits.max_per_queue, 10_000);
    assert_eq!(limits.cipher_suites, vec![1, 2, 3]);

    // A group's status: unknown here, then the hub's own view; the message sender must be a
    // valid handle.
    let unknown = GroupApi::new(gateway, &[0xab; 16]);
    let answer = unknown
        .target
        .call(
            Method::GET,
            &format!("/apps/{}/groups/{}", unknown.app, unknown.group),
            Vec::new(),
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::UnknownGroup);
    let mut alice = openmls_member(&basic, Naming::BasicWithDomains, 0, "alice");
    let (group_info, tree) = alice.create_group();
    assert_eq!(
        GroupApi::create(gateway, &group_info, &tree).await.status,
        StatusCode::CREATED
    );
    let hub = GroupApi::new(gateway, &alice.group_id());
    let own = group_status(&hub).await;
    assert_eq!(
        (own.epoch, own.role, own.member_count, own.has_group_info.0),
        (0, GroupRole::Hub, 1, true)
    );
    // The sender to skip is one of the application's own registered clients: never a name
    // of another domain's member (whose message would then be lost), nor a stranger.
    let message = alice.send_message(b"hi");
    for (sender, code) in [
        ("", ErrorCode::InvalidHandle),
        ("carol@b.localhost", ErrorCode::InvalidHandle),
        ("nobody", ErrorCode::UnknownClient),
    ] {
        let answer = send_message_from(&hub, &message, Some(sender)).await;
        assert_eq!(answer.error_code(), code, "sender {sender:?}");
    }
    // A local handle never holds the `@` that names other domains' members.
    let taken = mimi_wire::encode(&mimi_wire::registry::RegisterClientRequest {
        version: 1,
        client_handle: "carol@b.localhost".into(),
        tags: vec![],
    })
    .unwrap();
    let answer = gateway
        .call(
            Method::POST,
            &format!("/apps/{}/clients", gateway.app.id),
            taken,
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::InvalidHandle);
}

/// A plain Basic application names no domains: every request that would need another
/// gateway says it does not federate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_basic_application_says_it_does_not_federate() {
    use mimi_wire::key_queues::RetrieveConnectionKeyPackagesRequest;
    use mimi_wire::messages::SendConnectionRequest;

    let harness = Harness::start(StoreSpec::Memory).await;
    let app = harness.app.id;
    let connection_key_packages = mimi_wire::encode(&RetrieveConnectionKeyPackagesRequest {
        version: 1,
        domain: Some("b.example".into()),
        account: "carol".into(),
        receiver_client_id: "alice".into(),
    })
    .unwrap();
    let answer = harness
        .call(
            Method::POST,
            &format!("/apps/{app}/connection-key-packages"),
            connection_key_packages,
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::ApplicationDoesNotFederate);
    // Any MLSMessage will do as the request's message: a key package.
    let welcome = crate::support::mls_client::MlsClient::basic("alice").key_package(3_600);
    let connection_request = mimi_wire::encode(&SendConnectionRequest {
        version: 1,
        domain: "b.example".into(),
        client_handle: "carol".into(),
        message: welcome.into(),
    })
    .unwrap();
    let answer = harness
        .call(
            Method::POST,
            &format!("/apps/{app}/connection-requests"),
            connection_request,
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::ApplicationDoesNotFederate);
}

/// GREASE (RFC 9420, section 13.5) in capabilities alone, as openmls' `with_grease` writes it,
/// is what every implementation must tolerate: such a key package is stored and such a
/// creator's group created. Only what openmls 0.9.2 refuses answers `GreaseUnsupported`
/// (`standard_encodings_and_their_refusals`: mls-rs' GREASE extension in a key package).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grease_in_capabilities_alone_is_tolerated() {
    use openmls::prelude::*;

    let harness = Harness::start(StoreSpec::Memory).await;
    let queue = QueueFixture::new(&harness, "greta").await;
    let greta = crate::support::mls_client::MlsClient::basic("greta");
    let greased = crate::support::mls_client::capabilities(&[]).with_grease(greta.provider.rand());
    let bundle = KeyPackage::builder()
        .key_package_lifetime(Lifetime::new(3_600))
        .leaf_node_capabilities(greased.clone())
        .build(
            crate::support::mls_client::SUITE,
            &greta.provider,
            &greta.signer,
            greta.credential.clone(),
        )
        .unwrap();
    let package = MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .unwrap();
    let found = mimi_gateway::mls::grease::in_message(&package);
    assert!(found.advertised && !found.used);
    assert_eq!(queue.upload(&[package]).await, 1);

    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(crate::support::mls_client::SUITE)
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .capabilities(greased)
        .build();
    let group = MlsGroup::new(
        &greta.provider,
        &greta.signer,
        &config,
        greta.credential.clone(),
    )
    .unwrap();
    let group_info = group
        .export_group_info(greta.provider.crypto(), &greta.signer, false)
        .unwrap()
        .to_bytes()
        .unwrap();
    let tree = crate::support::group_client::tree_bytes(&group);
    let found = mimi_gateway::mls::grease::in_tree(&tree);
    assert!(found.advertised && !found.used);
    let answer = GroupApi::create(&harness, &group_info, &tree).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
}
