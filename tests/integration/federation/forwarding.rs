//! Followers forwarding their applications' proposals and commits to the group's hub over
//! `POST /group_operation` (issue 7; MIMI Transport over the delivery-service draft's
//! "Client-initiated operations"), and every refusal of that endpoint with its exact bad
//! input.

use std::time::Duration;

use http::{Method, StatusCode};
use mimi_wire::ds::{
    AddRequest, ClientId, ClientRef, DS_PROTOCOL_VERSION, DSAuthData, DSFanoutRequest, DSRequest,
    DSRequestBody, Extensions, FanoutAuthToken, GroupUpdateRequest, MLSGroupUpdate, MlsMessage,
    PartialGroupInfo, SelfRemoveClientRequest, SendMessageRequest, ShortBytes, UpdateClientRequest,
    UploadProposalRequest,
};
use mimi_wire::messages::{
    AcknowledgeMessagesRequest, AcknowledgeMessagesResponse, QueuedMessage, QueuedMessageKind,
};
use mimi_wire::{ErrorCode, decode_exact, encode};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};

use crate::support::federation::{
    DOMAINS, Federation, fanout_to, key_package_ok, mirrored_control, peer_claims, post_signed,
    publish_key_packages, welcome_for,
};
use crate::support::forwarding::*;
use crate::support::group_client::{GroupApi, Member, error};
use crate::support::key_queues::register;
use crate::support::mls_client::MlsClient;
use crate::support::*;

/// Alice on A (the hub) with Carol on B in her group at epoch 1; B mirrors it.
struct TwoDomains {
    federation: Federation,
    alice: Member,
    carol: Member,
    hub: GroupApi,
    mirror: GroupApi,
}

async fn alice_and_carol(count: usize) -> TwoDomains {
    alice_and_carol_on(count, |_| StoreSpec::Memory).await
}

/// As `alice_and_carol`, each gateway on the store `store(index)` gives.
async fn alice_and_carol_on(count: usize, store: impl Fn(usize) -> StoreSpec) -> TwoDomains {
    let federation = Federation::start(count, store).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mut carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    let mut alice = federation.cas[0].member("alice");
    register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    assert_eq!(
        GroupApi::create(a, &group_info, &tree).await.status,
        StatusCode::CREATED
    );
    let hub = GroupApi::new(a, &alice.group_id());
    let package = key_package_ok(a, carol_id, "b.localhost", "alice").await;
    let (commit, welcome, info) = alice.add(&[package]);
    assert_eq!(hub.commit_ok(&commit, Some(&info), Some(&welcome)).await, 1);
    carol.join(&welcome_for(b, "carol").await);
    let mirror = GroupApi::new(b, &alice.group_id());
    mirrored_control(&mirror, 1).await;
    TwoDomains {
        federation,
        alice,
        carol,
        hub,
        mirror,
    }
}

impl TwoDomains {
    /// `handle` of the gateway at `index` publishes a key package; Alice adds it at the hub
    /// (the group's second epoch), it joins from the Welcome its gateway files, and Carol
    /// applies the commit from B's mirror.
    async fn alice_adds(&mut self, index: usize, handle: &str) -> Member {
        let joiner = self.federation.cas[index].member(handle);
        self.alice_adds_member(index, handle, joiner).await
    }

    /// As `alice_adds`, for a member made by the caller (its credential its own).
    async fn alice_adds_member(
        &mut self,
        index: usize,
        handle: &str,
        mut joiner: Member,
    ) -> Member {
        let gateway = &self.federation.gateways[index];
        let id = publish_key_packages(gateway, handle, &joiner, 1).await;
        let a = &self.federation.gateways[0];
        let package = key_package_ok(a, id, DOMAINS[index], "alice").await;
        let (add, welcome, info) = self.alice.add(&[package]);
        assert_eq!(
            self.hub.commit_ok(&add, Some(&info), Some(&welcome)).await,
            2
        );
        joiner.join(&welcome_for(gateway, handle).await);
        assert!(
            !self
                .carol
                .apply(&mirrored_control(&self.mirror, 2).await[0])
        );
        joiner
    }
}

/// The draft's `MLSGroupUpdate` of a commit and its committer's whole GroupInfo.
fn group_update(commit: &[u8], group_info: &[u8]) -> MLSGroupUpdate {
    let MlsMessageBodyIn::GroupInfo(verifiable) = MlsMessageIn::tls_deserialize_exact(group_info)
        .unwrap()
        .extract()
    else {
        panic!("not a group info")
    };
    let (extensions, signature) =
        mimi_gateway::mls::group_info::split_group_info(&verifiable).unwrap();
    MLSGroupUpdate {
        commit: MlsMessage::from_bytes(commit.to_vec()).unwrap(),
        partial_group_info: PartialGroupInfo {
            group_info_extensions: Extensions::from_bytes(extensions).unwrap(),
            signature: signature.into(),
        },
    }
}

fn ds_request(body: DSRequestBody) -> Vec<u8> {
    encode(&DSRequest {
        version: DS_PROTOCOL_VERSION,
        body,
        auth: DSAuthData::Anonymous,
    })
    .unwrap()
}

/// A signed `POST /group_operation` from gateway `from` to gateway `to`.
async fn group_operation(federation: &Federation, from: usize, to: usize, body: &[u8]) -> Answer {
    let (key, claims) = peer_claims(federation, from, DOMAINS[to]);
    post_signed(federation, to, &key, claims, "/group_operation", body).await
}

/// A commit race between members on different domains (each gateway on its own Redis):
/// Alice commits at the hub while Carol's commit for the same epoch travels through B.
/// Exactly one wins; the other gets `StaleEpoch` with the hub's current epoch, both gateways
/// hold the winner's commit, and Bob (a bystander on A) reaches the winner's epoch from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_race_across_domains_has_one_winner() {
    let redis: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let mut group = alice_and_carol_on(2, |index| StoreSpec::Redis(redis[index].url())).await;
    let mut bob = group.alice_adds(0, "bob").await;
    let TwoDomains {
        federation: _federation,
        mut alice,
        mut carol,
        hub,
        mirror,
    } = group;
    assert_eq!(carol.secret(), bob.secret());

    let (alice_commit, alice_info) = alice.update();
    let (carol_commit, carol_info) = carol.update();
    let (by_alice, by_carol) = tokio::join!(
        hub.commit(&alice_commit, Some(&alice_info), None),
        mirror.commit(&carol_commit, Some(&carol_info), None),
    );
    let won = |answer: &Answer| answer.status == StatusCode::CREATED;
    assert!(
        won(&by_alice) != won(&by_carol),
        "exactly one winner: {:?} {:?}",
        error_or_status(&by_alice),
        error_or_status(&by_carol)
    );
    let (winner, winner_secret, loser_answer) = if won(&by_alice) {
        (alice_commit, alice.secret(), &by_carol)
    } else {
        (carol_commit, carol.secret(), &by_alice)
    };
    assert_eq!(loser_answer.error_code(), ErrorCode::StaleEpoch);
    assert_eq!(error(loser_answer).detail, "current epoch 3");
    assert_eq!(hub.control_ok(3, Some(3)).await, vec![winner.clone()]);
    assert_eq!(mirrored_control(&mirror, 3).await, vec![winner.clone()]);
    assert!(!bob.apply(&winner));
    assert_eq!(bob.secret(), winner_secret);
}

fn error_or_status(answer: &Answer) -> String {
    if answer.status.is_success() {
        answer.status.to_string()
    } else {
        format!("{:?}", error(answer))
    }
}

/// Carol's application, through B, adds Erin of B (`ds_add_users` with the Welcome: Erin's
/// welcome is filed at B) and then asks to leave (`ds_self_remove_client`, a proposal the
/// hub holds and Alice commits by reference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_adds_and_a_self_remove() {
    let TwoDomains {
        federation,
        mut alice,
        mut carol,
        hub,
        mirror,
    } = alice_and_carol(2).await;
    let b = &federation.gateways[1];
    let mut erin = federation.cas[1].member("erin");
    let erin_id = publish_key_packages(b, "erin", &erin, 1).await;
    let package = key_package_ok(b, erin_id, "b.localhost", "carol").await;
    let (add, welcome, info) = carol.add(&[package]);
    assert_eq!(mirror.commit_ok(&add, Some(&info), Some(&welcome)).await, 2);
    assert!(!alice.apply(&hub.control_ok(2, Some(2)).await[0]));
    erin.join(&welcome_for(b, "erin").await);
    assert_eq!(erin.secret(), alice.secret());
    // Answered once the mirror showed it: read at B right away.
    assert_eq!(mirror.control_ok(2, Some(2)).await, vec![add]);

    let leave = carol.propose_leave();
    let answer = mirror.propose(&leave).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    assert_eq!(hub.proposals().await, vec![leave.clone()]);
    assert_eq!(mirror.proposals().await, vec![leave.clone()]);
    assert!(!alice.apply(&leave));
    let (commit, commit_info) = alice.commit_pending();
    assert_eq!(hub.commit_ok(&commit, Some(&commit_info), None).await, 3);
    let mirrored = mirrored_control(&mirror, 3).await;
    assert_eq!(mirrored, vec![leave, commit]);
    assert!(!erin.apply(&mirrored[0]));
    assert!(!erin.apply(&mirrored[1]));
    assert_eq!(erin.secret(), alice.secret());
    assert!(carol.apply(&mirrored[1]), "Carol sees she left");
}

/// External joins through a follower, as at the hub: a new user joins from the GroupInfo B
/// serves (our `ds_commit`, since the draft's `ds_external_join` refuses a new user), then
/// Carol's new client (the same client handle, so the same user) as `ds_external_join`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_an_external_join() {
    let TwoDomains {
        federation,
        mut alice,
        carol: _carol,
        hub,
        mirror,
    } = alice_and_carol(2).await;
    let mut mallory = federation.cas[1].member("mallory");
    let (commit, info) = mallory.join_external(&mirror.group_info().await);
    // B forwards only joiners registered at B: the hub's fan-out will name them, and B takes
    // fan-out only for its own clients.
    let answer = mirror.commit(&commit, Some(&info), None).await;
    assert_eq!(answer.error_code(), ErrorCode::UnknownClient);
    assert_eq!(hub.epoch().await, 1, "nothing forwarded");
    register(&federation.gateways[1], "mallory").await;
    // As the draft's ds_external_join, a new user's join breaks that operation's rule...
    let as_draft = ds_request(DSRequestBody::ExternalJoin(GroupUpdateRequest {
        group_update: group_update(&commit, &info),
    }));
    let answer = group_operation(&federation, 1, 0, &as_draft).await;
    assert_eq!(answer.error_code(), ErrorCode::OperationRulesViolated);
    assert!(error(&answer).detail.contains("not in the group"));
    assert_eq!(hub.epoch().await, 1, "nothing applied");
    // ... so B carries it as our ds_commit, and the hub applies it as it would at home.
    assert_eq!(mirror.commit_ok(&commit, Some(&info), None).await, 2);
    assert!(!alice.apply(&commit));
    assert_eq!(alice.secret(), mallory.secret());

    // A client of a member user rejoining goes as the draft's ds_external_join.
    let mut carol_again = federation.cas[1].member("carol");
    let (commit, info) = carol_again.join_external(&mirror.group_info().await);
    assert_eq!(mirror.commit_ok(&commit, Some(&info), None).await, 3);
    assert_eq!(hub.control_ok(3, Some(3)).await, vec![commit.clone()]);
    assert!(!alice.apply(&commit));
    assert_eq!(alice.secret(), carol_again.secret());
    assert_eq!(mirrored_control(&mirror, 3).await, vec![commit]);
}

/// `ds_delete_group` from B, where Carol and Erin are: a commit that leaves someone in the
/// group is refused; Erin's commit removing everyone else is fanned out (B mirrors it) and the
/// hub's state goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_deletes_a_group_it_alone_remains_in() {
    let mut group = alice_and_carol(2).await;
    let mut erin = group.alice_adds(1, "erin").await;
    let TwoDomains {
        federation,
        alice: _alice,
        mut carol,
        hub,
        mirror,
    } = group;

    // Carol removes Alice only: Erin would stay.
    let (partial, partial_info) = carol.remove(0);
    let not_a_deletion = ds_request(DSRequestBody::DeleteGroup(GroupUpdateRequest {
        group_update: group_update(&partial, &partial_info),
    }));
    let answer = group_operation(&federation, 1, 0, &not_a_deletion).await;
    assert_eq!(answer.error_code(), ErrorCode::OperationRulesViolated);
    assert!(
        error(&answer)
            .detail
            .contains("every member but the committer")
    );
    assert_eq!(hub.epoch().await, 2);

    let (remove, remove_info) = erin.remove_leaves(&[0, 1]);
    let deletion = ds_request(DSRequestBody::DeleteGroup(GroupUpdateRequest {
        group_update: group_update(&remove, &remove_info),
    }));
    let answer = group_operation(&federation, 1, 0, &deletion).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    assert_eq!(mirrored_control(&mirror, 3).await, vec![remove]);
    assert_eq!(
        hub.control(1, None).await.error_code(),
        ErrorCode::UnknownGroup,
        "the hub no longer holds the group"
    );
}

/// Every refusal of `/group_operation` and of forwarding, each with its exact bad input, and
/// nothing changed at the hub after any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_operation_refusals() {
    let TwoDomains {
        federation,
        mut alice,
        mut carol,
        hub,
        mirror,
    } = alice_and_carol(3).await;
    // A proposal of Carol's removing Alice, for epoch 1 (then forgotten by Carol's client).
    let remove_alice = carol.propose_remove(0);
    carol.forget_proposals();
    let (update, update_info) = carol.update();
    let carol_update = group_update(&update, &update_info);
    let refused = |answer: &Answer, code: ErrorCode| {
        assert_eq!(answer.error_code(), code, "{:?}", error(answer));
    };

    // A commit sent as an operation whose rules it breaks: an update is no add, and no
    // removal.
    let as_add = ds_request(DSRequestBody::AddUsers(AddRequest {
        group_update: carol_update.clone(),
        welcome_messages: Vec::new(),
    }));
    let answer = group_operation(&federation, 1, 0, &as_add).await;
    refused(&answer, ErrorCode::OperationRulesViolated);
    assert!(error(&answer).detail.contains("adds nobody"));
    let as_remove = ds_request(DSRequestBody::RemoveUsers(GroupUpdateRequest {
        group_update: carol_update.clone(),
    }));
    refused(
        &group_operation(&federation, 1, 0, &as_remove).await,
        ErrorCode::OperationRulesViolated,
    );
    // An external join that is not external.
    let as_join = ds_request(DSRequestBody::ExternalJoin(GroupUpdateRequest {
        group_update: carol_update.clone(),
    }));
    refused(
        &group_operation(&federation, 1, 0, &as_join).await,
        ErrorCode::OperationRulesViolated,
    );
    // C forwarding B's member's commit.
    let as_update = ds_request(DSRequestBody::UpdateClient(UpdateClientRequest {
        group_update: carol_update.clone(),
        token: None,
    }));
    refused(
        &group_operation(&federation, 2, 0, &as_update).await,
        ErrorCode::SenderNotOfPeer,
    );
    // A PartialGroupInfo whose signature is not the committer's.
    let mut forged = carol_update.clone();
    let mut signature = forged.partial_group_info.signature.as_slice().to_vec();
    signature[0] ^= 1;
    forged.partial_group_info.signature = signature.into();
    let forged = ds_request(DSRequestBody::UpdateClient(UpdateClientRequest {
        group_update: forged,
        token: None,
    }));
    refused(
        &group_operation(&federation, 1, 0, &forged).await,
        ErrorCode::GroupInfoMismatch,
    );
    // A client signature between gateways.
    let signed = encode(&DSRequest {
        version: DS_PROTOCOL_VERSION,
        body: DSRequestBody::UpdateClient(UpdateClientRequest {
            group_update: carol_update.clone(),
            token: None,
        }),
        auth: DSAuthData::ClientSignature {
            sender_index: 1,
            signature: ShortBytes(vec![0; 64]),
        },
    })
    .unwrap();
    refused(
        &group_operation(&federation, 1, 0, &signed).await,
        ErrorCode::MalformedBody,
    );
    // Another protocol version.
    let mut other_version = as_update.clone();
    other_version[..2].copy_from_slice(&2u16.to_be_bytes());
    refused(
        &group_operation(&federation, 1, 0, &other_version).await,
        ErrorCode::UnsupportedVersion,
    );
    // Meant for a group B only mirrors: B is not its hub.
    refused(
        &group_operation(&federation, 0, 1, &as_update).await,
        ErrorCode::UnknownGroup,
    );
    // A self remove that removes someone else.
    let not_self = ds_request(DSRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
        proposal: MlsMessage::from_bytes(remove_alice.clone()).unwrap(),
    }));
    refused(
        &group_operation(&federation, 1, 0, &not_self).await,
        ErrorCode::OperationRulesViolated,
    );
    // An application message from C, which has no member in the group.
    let from_c = ds_request(DSRequestBody::SendMessage(SendMessageRequest {
        application_message: MlsMessage::from_bytes(carol.send_message(b"hi")).unwrap(),
    }));
    refused(
        &group_operation(&federation, 2, 0, &from_c).await,
        ErrorCode::SenderNotOfPeer,
    );
    // Our ds_upload_proposal and ds_commit from C for B's member, and ds_send_message_from
    // naming a sender of another domain than the requesting peer's.
    let proposal_from_c = ds_request(DSRequestBody::UploadProposal(UploadProposalRequest {
        proposal: MlsMessage::from_bytes(remove_alice.clone()).unwrap(),
    }));
    refused(
        &group_operation(&federation, 2, 0, &proposal_from_c).await,
        ErrorCode::SenderNotOfPeer,
    );
    let commit_from_c = ds_request(DSRequestBody::Commit(AddRequest {
        group_update: carol_update.clone(),
        welcome_messages: Vec::new(),
    }));
    refused(
        &group_operation(&federation, 2, 0, &commit_from_c).await,
        ErrorCode::SenderNotOfPeer,
    );
    let two_welcomes = ds_request(DSRequestBody::Commit(AddRequest {
        group_update: carol_update.clone(),
        welcome_messages: vec![
            MlsMessage::from_bytes(remove_alice.clone()).unwrap(),
            MlsMessage::from_bytes(remove_alice.clone()).unwrap(),
        ],
    }));
    refused(
        &group_operation(&federation, 1, 0, &two_welcomes).await,
        ErrorCode::OperationRulesViolated,
    );
    let sender_of_c = ds_request(DSRequestBody::SendMessageFrom(
        SendMessageRequest {
            application_message: MlsMessage::from_bytes(carol.send_message(b"hi")).unwrap(),
        },
        ClientId {
            application: *hub.app.as_bytes(),
            domain: DOMAINS[2].into(),
            client: ClientRef::Handle("carol".into()),
        },
    ));
    refused(
        &group_operation(&federation, 1, 0, &sender_of_c).await,
        ErrorCode::SenderNotOfPeer,
    );
    assert!(hub.proposals().await.is_empty(), "no proposal held");
    assert_eq!(hub.epoch().await, 1, "nothing applied");
    // Through B's application listener, a proposal the draft has no operation for goes as our
    // ds_upload_proposal: held at the hub as if uploaded there.
    let answer = mirror.propose(&remove_alice).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    assert_eq!(hub.proposals().await, vec![remove_alice.clone()]);
    assert_eq!(hub.epoch().await, 1, "nothing applied");

    // The same commit, as the operation it is, goes through.
    let answer = group_operation(&federation, 1, 0, &as_update).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    assert_eq!(hub.epoch().await, 2);
    assert!(!alice.apply(&update));
    assert_eq!(alice.secret(), carol.secret());
}

/// Waits (bounded) until `handle`'s queue at `harness` holds `count` messages.
async fn queued_count(harness: &Harness, handle: &str, count: usize) -> Vec<QueuedMessage> {
    let arrived = eventually(Duration::from_secs(20), || async {
        queued_ok(harness, handle, 0).await.len() >= count
    })
    .await;
    assert!(arrived, "{count} messages for {handle}");
    let messages = queued_ok(harness, handle, 0).await;
    assert_eq!(messages.len(), count, "no more than {count} for {handle}");
    messages
}

async fn send_message(api: &GroupApi, message: &[u8]) -> Answer {
    send_message_from(api, message, None).await
}

async fn acknowledge_messages(harness: &Harness, handle: &str, up_to: u64) -> Answer {
    let body = encode(&AcknowledgeMessagesRequest {
        version: 1,
        up_to_sequence: up_to,
    })
    .unwrap();
    harness
        .call(
            Method::POST,
            &format!(
                "/apps/{}/clients/{handle}/messages/acknowledge",
                harness.app.id
            ),
            body,
        )
        .await
}

/// A member whose certificate expires is refused as a recipient soon after, though the
/// group's head has not changed: the member names the gateway shares per head are checked
/// again after 10 s (`group_cache::NAMES_FRESH`), so a cached check does not outlive the
/// certificate. Alice's message is routed while Erin's certificate is valid; one sent after
/// it expired and the cached names went stale is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_certificate_expired_is_refused_soon_after() {
    let mut group = alice_and_carol_on(2, |_| StoreSpec::Memory).await;
    let not_after = now() + 4;
    let (chain, seed) = group.federation.cas[0].credential_until("erin", Some(not_after));
    let erin = Member {
        mls: MlsClient::x509(&chain, &seed),
        group: None,
    };
    let _erin = group.alice_adds_member(0, "erin", erin).await;
    let first = group.alice.send_message(b"one");
    let answer = send_message(&group.hub, &first).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    let routed = std::time::Instant::now();
    // Past the certificate's notAfter, and past the names' freshness since they were checked.
    while now() <= not_after + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(rest) = Duration::from_millis(10_500).checked_sub(routed.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let second = group.alice.send_message(b"two");
    let answer = send_message(&group.hub, &second).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let refused = error(&answer);
    assert_eq!(
        refused.error_code(),
        Some(ErrorCode::InvalidCertificateChain),
        "{refused:?}"
    );
    assert!(refused.detail.contains("certificate chain"), "{refused:?}");
}

/// A group spanning three domains exchanging application messages: the hub routes each to
/// every member's queue (other domains' through their gateways), in order and once; a
/// follower's member sends through its gateway (forwarded to the hub as `ds_send_message`);
/// nothing leaves a queue before it is acknowledged. Refused: a handshake sent as an
/// application message, a message of another group, a queue of an unregistered client, and
/// an application message fanned out by a gateway that is not the group's hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_messages_reach_every_member_in_order() {
    // Each gateway on its own redis-server: the queues are the Redis store's.
    let redis: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let mut group = alice_and_carol_on(3, |index| StoreSpec::Redis(redis[index].url())).await;
    let mut dave = group.alice_adds(2, "dave").await;
    let TwoDomains {
        federation,
        mut alice,
        mut carol,
        hub,
        mirror,
    } = group;
    let [a, b, c] = [0, 1, 2].map(|index| &federation.gateways[index]);
    mirrored_control(&GroupApi::new(c, &alice.group_id()), 2).await;

    let first = alice.send_message(b"one");
    let second = alice.send_message(b"two");
    for message in [&first, &second] {
        let answer = send_message(&hub, message).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    }
    for (harness, member) in [(b, &mut carol), (c, &mut dave)] {
        let handle = if std::ptr::eq(harness, b) {
            "carol"
        } else {
            "dave"
        };
        let messages = queued_count(harness, handle, 2).await;
        assert_eq!(
            messages.iter().map(|m| m.sequence).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(
            messages
                .iter()
                .all(|m| m.kind == QueuedMessageKind::Application
                    && m.group_id.as_slice() == alice.group_id())
        );
        assert_eq!(member.read_message(messages[0].message.as_slice()), b"one");
        assert_eq!(member.read_message(messages[1].message.as_slice()), b"two");
    }
    assert_eq!(
        queued_count(a, "alice", 2).await.len(),
        2,
        "the sender's queue too"
    );

    // Carol sends through B: the hub routes it to Alice here and Dave at C.
    let third = carol.send_message(b"three");
    let answer = send_message(&mirror, &third).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    let at_a = queued_count(a, "alice", 3).await;
    assert_eq!(alice.read_message(at_a[2].message.as_slice()), b"three");
    let at_c = queued_count(c, "dave", 3).await;
    assert_eq!(at_c[2].sequence, 3);
    assert_eq!(dave.read_message(at_c[2].message.as_slice()), b"three");

    // Acknowledged messages leave the queue; the rest stay, from any sequence number.
    queued_count(b, "carol", 3).await;
    let answer = acknowledge_messages(b, "carol", 2).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    assert_eq!(
        decode_exact::<AcknowledgeMessagesResponse>(&answer.body)
            .unwrap()
            .removed,
        2
    );
    let left = queued_ok(b, "carol", 0).await;
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].sequence, left[0].message.as_slice()),
        (3, third.as_slice())
    );
    assert_eq!(queued_ok(c, "dave", 3).await.len(), 1);

    // Refusals.
    let (update, _) = alice.update();
    assert_eq!(
        send_message(&hub, &update).await.error_code(),
        ErrorCode::MalformedMlsMessage
    );
    let elsewhere = GroupApi::new(a, b"another group");
    assert_eq!(
        send_message(&elsewhere, &alice.send_message(b"x"))
            .await
            .error_code(),
        ErrorCode::GroupIdMismatch
    );
    assert_eq!(
        queued(b, "nobody", 0).await.error_code(),
        ErrorCode::UnknownClient
    );
    // The first message again, fanned out to `handle` of B.
    let fanout_of_first = |handle: &str| {
        encode(&DSFanoutRequest {
            version: 1,
            recipient_ids: vec![ClientId {
                application: *a.app.id.as_bytes(),
                domain: "b.localhost".into(),
                client: ClientRef::Handle(handle.into()),
            }],
            fanout_auth_tokens: vec![FanoutAuthToken {
                token: Vec::new().into(),
            }],
            mls_message: MlsMessage::from_bytes(first.clone()).unwrap(),
        })
        .unwrap()
    };
    let not_hub = fanout_to(
        &federation,
        2,
        1,
        None,
        "b.localhost",
        &fanout_of_first("carol"),
    )
    .await;
    assert_eq!(not_hub.error_code(), ErrorCode::NotTheHub);
    // The hub itself may not fill the queue of a client of B outside the group.
    register(b, "frank").await;
    let stranger = fanout_to(
        &federation,
        0,
        1,
        None,
        "b.localhost",
        &fanout_of_first("frank"),
    )
    .await;
    assert_eq!(stranger.error_code(), ErrorCode::NotOurClient);
    assert!(queued_ok(b, "frank", 0).await.is_empty());
    assert_eq!(
        queued_ok(b, "carol", 0).await.len(),
        1,
        "nothing queued by a refusal"
    );
}

/// The draft's other operations on `/group_operation`: a fresh group id, the DS's signature
/// key (the one `/verification_key` lists first), and a group created at A, its hub, for
/// Carol of B. Refused: a creator of another domain than the requesting peer, a group id in
/// use, and a request whose group id is not its GroupInfo's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_ids_keys_and_groups_for_a_peer() {
    use mimi_wire::ds::{CreateGroupRequest, DSResponse, DSResponseBody, LeafNode};
    use mimi_wire::verification_key::VerificationKeyResponse;
    use openmls::prelude::tls_codec::Serialize as _;

    let federation = Federation::start(3, |_| StoreSpec::Memory).await;
    let a = &federation.gateways[0];
    let ok = |answer: &Answer| -> DSResponseBody {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", error(answer));
        decode_exact::<DSResponse>(&answer.body).unwrap().body
    };
    let DSResponseBody::GroupId(first) = ok(&group_operation(
        &federation,
        1,
        0,
        &ds_request(DSRequestBody::RequestGroupId),
    )
    .await) else {
        panic!("not a group id")
    };
    let DSResponseBody::GroupId(second) = ok(&group_operation(
        &federation,
        1,
        0,
        &ds_request(DSRequestBody::RequestGroupId),
    )
    .await) else {
        panic!("not a group id")
    };
    assert_eq!(first.as_slice().len(), 16);
    assert_ne!(first, second);

    let DSResponseBody::SignaturePublicKey(key) = ok(&group_operation(
        &federation,
        1,
        0,
        &ds_request(DSRequestBody::SignaturePublicKey),
    )
    .await) else {
        panic!("not a key")
    };
    let published = TlsClient::new(&a.ca, Protocol::Http1)
        .named(DOMAINS[0])
        .send(
            a.federation,
            Method::GET,
            "/verification_key",
            http::HeaderMap::new(),
            Vec::new(),
        )
        .await;
    let published = decode_exact::<VerificationKeyResponse>(&published.body).unwrap();
    assert_eq!(key.as_slice(), published.keys[0].public_key.as_slice());

    let create = |member: &mut Member| {
        let (group_info, _) = member.create_group();
        let group = member.group.as_ref().unwrap();
        CreateGroupRequest {
            group_id: group.group_id().as_slice().to_vec().into(),
            leaf_node: LeafNode::from_bytes(
                group
                    .own_leaf_node()
                    .unwrap()
                    .tls_serialize_detached()
                    .unwrap(),
            )
            .unwrap(),
            group_info: MlsMessage::from_bytes(group_info).unwrap(),
        }
    };
    // `ds_create_group` from B.
    let from_b = |request: CreateGroupRequest| {
        let federation = &federation;
        async move {
            let body = ds_request(DSRequestBody::CreateGroup(request));
            group_operation(federation, 1, 0, &body).await
        }
    };
    let mut carol = federation.cas[1].member("carol");
    let request = create(&mut carol);
    assert!(matches!(
        ok(&from_b(request.clone()).await),
        DSResponseBody::Ok
    ));
    let hosted = GroupApi::new(a, &carol.group_id());
    assert_eq!(hosted.epoch().await, 0, "A hosts Carol's group");
    assert_eq!(from_b(request).await.error_code(), ErrorCode::GroupExists);
    // Dave is of c.localhost: B cannot create a group for him.
    let mut dave = federation.cas[2].member("dave");
    assert_eq!(
        from_b(create(&mut dave)).await.error_code(),
        ErrorCode::SenderNotOfPeer
    );
    let mut erin = federation.cas[1].member("erin");
    let mut mislabelled = create(&mut erin);
    mislabelled.group_id = b"another id".to_vec().into();
    assert_eq!(
        from_b(mislabelled).await.error_code(),
        ErrorCode::GroupIdMismatch
    );
}

/// `/welcome_information` and `/external_commit_information` (DS draft, "DS assisted
/// joining"): the hub answers a peer with members in the group the tree a Welcome brings its
/// recipients into, and the current GroupInfo and tree; refused for a peer without members, an
/// epoch without a welcome, another protocol version and another request type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_information_for_peers() {
    use mimi_wire::ds::{
        DSResponse, DSResponseBody, ExternalCommitInfoRequest, WelcomeInfoRequest,
    };

    let TwoDomains {
        federation,
        mut alice,
        carol: _carol,
        hub,
        mirror,
    } = alice_and_carol(3).await;
    let b = &federation.gateways[1];
    let group_id = alice.group_id();
    let post = |from: usize, path: &'static str, body: Vec<u8>| {
        let federation = &federation;
        async move {
            let (key, claims) = peer_claims(federation, from, DOMAINS[0]);
            post_signed(federation, 0, &key, claims, path, &body).await
        }
    };
    let welcome_info = |epoch: u64| {
        ds_request(DSRequestBody::WelcomeInfo(WelcomeInfoRequest {
            group_id: group_id.clone().into(),
            epoch,
        }))
    };
    // The tree of epoch 1, as B served it to Carol with her Welcome.
    let carol_tree = crate::support::group_client::welcomes(b, "carol").await[0]
        .ratchet_tree
        .clone()
        .unwrap();
    let answer = post(1, "/welcome_information", welcome_info(1)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    let DSResponseBody::WelcomeInfo(tree) = decode_exact::<DSResponse>(&answer.body).unwrap().body
    else {
        panic!("not WelcomeInfo")
    };
    assert_eq!(tree.as_bytes(), carol_tree.as_slice());
    // Kept after the group moved on: the Welcome still brings Carol into epoch 1.
    let (update, info) = alice.update();
    assert_eq!(hub.commit_ok(&update, Some(&info), None).await, 2);
    assert_eq!(
        post(1, "/welcome_information", welcome_info(1))
            .await
            .status,
        StatusCode::OK
    );

    let external = ds_request(DSRequestBody::ExternalCommitInfo(
        ExternalCommitInfoRequest {
            group_id: group_id.clone().into(),
        },
    ));
    let answer = post(1, "/external_commit_information", external.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    let DSResponseBody::ExternalCommitInfo(current) =
        decode_exact::<DSResponse>(&answer.body).unwrap().body
    else {
        panic!("not ExternalCommitInfo")
    };
    let served = hub.group_info().await;
    assert_eq!(
        current.group_info.as_bytes(),
        served.group_infos[0].group_info.as_slice()
    );
    assert_eq!(
        Some(current.ratchet_tree.as_bytes()),
        served.group_infos[0]
            .ratchet_tree
            .as_ref()
            .map(|tree| tree.as_slice())
    );
    assert_eq!(mirrored_control(&mirror, 2).await, vec![update]);

    // Refusals.
    assert_eq!(
        post(2, "/welcome_information", welcome_info(1))
            .await
            .error_code(),
        ErrorCode::UnknownGroup,
        "C has no member in the group"
    );
    assert_eq!(
        post(2, "/external_commit_information", external.clone())
            .await
            .error_code(),
        ErrorCode::UnknownGroup
    );
    assert_eq!(
        post(1, "/welcome_information", welcome_info(2))
            .await
            .error_code(),
        ErrorCode::UnknownWelcome
    );
    let mut other_version = external.clone();
    other_version[..2].copy_from_slice(&9u16.to_be_bytes());
    assert_eq!(
        post(1, "/external_commit_information", other_version)
            .await
            .error_code(),
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        post(1, "/welcome_information", external).await.error_code(),
        ErrorCode::MalformedBody
    );
}
