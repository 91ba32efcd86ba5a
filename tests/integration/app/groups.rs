//! Group state over the real application listener (architecture draft, "Managing Groups
//! without Metadata Protection" and "Joining"), driven by real openmls clients sending
//! plaintext handshakes, on the memory store, a real `redis-server` and a real Cluster.

use http::StatusCode;
use mimi_wire::ErrorCode;
use mimi_wire::decode_exact;
use mimi_wire::groups::GroupEpochResponse;

use crate::support::group_client::*;
use crate::support::key_queues::QueueFixture;
use crate::support::mls_client::MlsClient;
use crate::support::*;

/// A member whose key packages sit in a key queue of the gateway.
async fn queued_member<'h>(harness: &'h Harness, handle: &str) -> (Member, QueueFixture<'h>) {
    let mut fixture = QueueFixture::new(harness, handle).await;
    let packages = vec![fixture.mls.key_package(3600), fixture.mls.key_package(3600)];
    fixture.upload(&packages).await;
    // The fixture's client holds the key packages' private keys: it becomes the member.
    let mls = std::mem::replace(&mut fixture.mls, MlsClient::basic(handle));
    (Member { mls, group: None }, fixture)
}

async fn create_group(harness: &Harness, creator: &mut Member) -> GroupApi {
    let (group_info, tree) = creator.create_group();
    let answer = GroupApi::create(harness, &group_info, &tree).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    let created: GroupEpochResponse = decode_exact(&answer.body).unwrap();
    assert_eq!(created.epoch, 0);
    assert_eq!(created.group_id.as_slice(), creator.group_id());
    GroupApi::new(harness, &creator.group_id())
}

/// Brings `member` up to the gateway's current epoch from control messages.
async fn catch_up(api: &GroupApi, member: &mut Member) -> bool {
    let messages = api.control_ok(member.epoch() + 1, None).await;
    let mut removed = false;
    for message in messages {
        removed |= member.apply(&message);
    }
    removed
}

/// The whole life of a group: create, add two members with welcomes (joining from what the
/// gateway serves, key queues advanced), update, proposal by reference, remove, external
/// join, and a member catching up after missing three epochs. Every member derives the same
/// epoch secret as the others at every step.
async fn group_life(store: StoreSpec) {
    let harness = Harness::start(store).await;
    let mut alice = Member::new("alice");
    let api = create_group(&harness, &mut alice).await;

    // "Commits": add bob and carol with key packages retrieved from their queues.
    let (mut bob, bob_queue) = queued_member(&harness, "bob").await;
    let (mut carol, carol_queue) = queued_member(&harness, "carol").await;
    let (bob_package, _) = bob_queue.retrieve("alice").await;
    let (carol_package, _) = carol_queue.retrieve("alice").await;
    let (commit, welcome, group_info) = alice.add(&[bob_package.clone(), carol_package]);
    assert_eq!(
        api.commit_ok(&commit, Some(&group_info), Some(&welcome))
            .await,
        1
    );

    // The used key package was advanced: the same receiver now gets another one.
    let (next_package, _) = bob_queue.retrieve("alice").await;
    assert_ne!(next_package, bob_package, "bob's queue advanced");

    // "Joining": both join from the welcome and tree the gateway serves.
    for (member, handle) in [(&mut bob, "bob"), (&mut carol, "carol")] {
        let join_infos = welcomes(&harness, handle).await;
        assert_eq!(join_infos.len(), 1, "{handle} has one welcome");
        assert_eq!(join_infos[0].epoch, 1);
        assert_eq!(join_infos[0].group_id.as_slice(), alice.group_id());
        member.join(&join_infos[0]);
        assert_eq!(member.secret(), alice.secret(), "{handle} shares epoch 1");
        // Listed until acknowledged, then gone; a second acknowledgement is unknown.
        assert_eq!(welcomes(&harness, handle).await.len(), 1);
        let ack = acknowledge(&harness, handle, join_infos[0].welcome_id).await;
        assert_eq!(ack.status, StatusCode::NO_CONTENT);
        assert!(welcomes(&harness, handle).await.is_empty());
        let again = acknowledge(&harness, handle, join_infos[0].welcome_id).await;
        assert_eq!(again.error_code(), ErrorCode::UnknownWelcome);
    }

    // Update by bob; the others catch up from control messages.
    let (commit, group_info) = bob.update();
    assert_eq!(api.commit_ok(&commit, Some(&group_info), None).await, 2);
    catch_up(&api, &mut alice).await;
    catch_up(&api, &mut carol).await;
    assert_eq!(alice.secret(), bob.secret());
    assert_eq!(carol.secret(), bob.secret());

    // Proposal by reference: carol proposes, alice commits it.
    let proposal = carol.propose_update();
    let answer = api.propose(&proposal).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    assert_eq!(api.proposals().await, vec![proposal.clone()]);
    for held in api.proposals().await {
        alice.apply(&held);
    }
    let (commit, group_info) = alice.commit_pending();
    assert_eq!(api.commit_ok(&commit, Some(&group_info), None).await, 3);
    assert!(
        api.proposals().await.is_empty(),
        "a commit clears proposals"
    );
    // Epoch 3's control messages: the proposal it took by reference, then the commit.
    assert_eq!(
        api.control_ok(3, Some(3)).await,
        vec![proposal, commit.clone()]
    );
    catch_up(&api, &mut bob).await;
    // Carol already holds her own proposal: she only processes the commit.
    assert!(!carol.apply(&commit));
    assert_eq!(bob.secret(), alice.secret());
    assert_eq!(carol.secret(), alice.secret());

    // Remove carol; she learns it from the control messages.
    let (commit, group_info) = alice.remove(2);
    assert_eq!(api.commit_ok(&commit, Some(&group_info), None).await, 4);
    catch_up(&api, &mut bob).await;
    assert!(catch_up(&api, &mut carol).await, "carol sees her removal");
    assert_eq!(bob.secret(), alice.secret());

    // External join by dave from the served GroupInfo and tree.
    let mut dave = Member::new("dave");
    let response = api.group_info().await;
    assert_eq!(response.group_infos.len(), 1);
    let (commit, group_info) = dave.join_external(&response);
    assert_eq!(api.commit_ok(&commit, Some(&group_info), None).await, 5);
    catch_up(&api, &mut alice).await;
    catch_up(&api, &mut bob).await;
    assert_eq!(dave.secret(), alice.secret());
    assert_eq!(bob.secret(), alice.secret());

    // Bob misses three epochs, then catches up from control messages.
    for expected in 6..=8 {
        let (commit, group_info) = alice.update();
        assert_eq!(
            api.commit_ok(&commit, Some(&group_info), None).await,
            expected
        );
        catch_up(&api, &mut dave).await;
    }
    assert_eq!(api.control_ok(6, None).await.len(), 3);
    catch_up(&api, &mut bob).await;
    assert_eq!(bob.epoch(), 8);
    assert_eq!(bob.secret(), alice.secret());
    assert_eq!(dave.secret(), alice.secret());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_life_on_memory() {
    group_life(StoreSpec::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_life_on_redis() {
    let redis = RedisServer::start();
    group_life(StoreSpec::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_life_on_redis_cluster() {
    let cluster = RedisCluster::start();
    group_life(StoreSpec::Cluster(cluster.urls())).await;
}

/// A gateway restarted on the same Redis restores groups with `PublicGroup::load` from the
/// stored TLS state (no cached copy survives) and goes on validating commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_survive_a_gateway_restart() {
    let redis = RedisServer::start();
    let first = Harness::start(StoreSpec::Redis(redis.url())).await;
    let app = first.app.clone();
    let mut alice = Member::new("alice");
    let api = create_group(&first, &mut alice).await;
    let mut bob = Member::new("bob");
    let (commit, welcome, group_info) = alice.add(&[bob.mls.key_package(3600)]);
    api.commit_ok(&commit, Some(&group_info), Some(&welcome))
        .await;
    let proposal = alice.propose_update();
    let answer = api.propose(&proposal).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    drop(first);

    let second = Harness::start_for(StoreSpec::Redis(redis.url()), app, |_| {}).await;
    let api = GroupApi::new(&second, &alice.group_id());
    bob.join(&welcomes(&second, "bob").await[0]);
    // The held proposal survived and a commit citing it by reference is accepted.
    assert_eq!(api.proposals().await, vec![proposal.clone()]);
    bob.apply(&proposal);
    let (commit, group_info) = bob.commit_pending();
    assert_eq!(api.commit_ok(&commit, Some(&group_info), None).await, 2);
    catch_up(&api, &mut alice).await;
    assert_eq!(alice.secret(), bob.secret());
}

/// A gateway validates a commit against its cached copy without asking the store first; a
/// copy behind the store (the other gateway committed, or took a proposal) is caught up and
/// the commit accepted, and a commit for an old epoch is still refused as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_copy_is_behind_the_store_catches_up() {
    let redis = RedisServer::start();
    let first = Harness::start(StoreSpec::Redis(redis.url())).await;
    let second = Harness::start_for(StoreSpec::Redis(redis.url()), first.app.clone(), |_| {}).await;
    let mut alice = Member::new("alice");
    let on_first = create_group(&first, &mut alice).await;
    let on_second = GroupApi::new(&second, &alice.group_id());
    let mut bob = Member::new("bob");
    let (commit, welcome, group_info) = alice.add(&[bob.mls.key_package(3600)]);
    assert_eq!(
        on_second
            .commit_ok(&commit, Some(&group_info), Some(&welcome))
            .await,
        1
    );
    bob.join(&welcomes(&second, "bob").await[0]);
    // The first gateway's copy is still at epoch 0.
    let (commit, group_info) = alice.update();
    assert_eq!(
        on_first.commit_ok(&commit, Some(&group_info), None).await,
        2
    );
    // The second's is at epoch 1.
    let (commit, group_info) = alice.update();
    let stale_commit = commit.clone();
    assert_eq!(
        on_second.commit_ok(&commit, Some(&group_info), None).await,
        3
    );
    // A proposal held through the first gateway, committed by reference through the second,
    // whose copy at epoch 3 does not hold it.
    catch_up(&on_first, &mut bob).await;
    let proposal = bob.propose_update();
    assert_eq!(
        on_first.propose(&proposal).await.status,
        StatusCode::CREATED
    );
    alice.apply(&proposal);
    let (commit, group_info) = alice.commit_pending();
    assert_eq!(
        on_second.commit_ok(&commit, Some(&group_info), None).await,
        4
    );
    // The first gateway's copy is at epoch 3 with the proposal; the store is at 4.
    let answer = on_first
        .commit(&stale_commit, Some(&group_info), None)
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{:?}", error(&answer));
    let refusal = error(&answer);
    assert_eq!(refusal.code, ErrorCode::StaleEpoch.code());
    assert_eq!(refusal.detail, "current epoch 4");
    catch_up(&on_first, &mut bob).await;
    assert_eq!(alice.secret(), bob.secret());
    assert_eq!(
        on_first.control_ok(1, None).await,
        on_second.control_ok(1, None).await
    );
}

/// A removed application's groups are kept but unreadable; configuring the application again
/// gives them back (docs/decisions.md, "Groups").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_applications_groups_are_kept_but_unreadable() {
    let redis = RedisServer::start();
    let first = Harness::start(StoreSpec::Redis(redis.url())).await;
    let app = first.app.clone();
    let mut alice = Member::new("alice");
    let group_id = {
        create_group(&first, &mut alice).await;
        alice.group_id()
    };
    drop(first);

    // The gateway now serves another application only.
    let other = Harness::start(StoreSpec::Redis(redis.url())).await;
    let path = format!(
        "/apps/{}/groups/{}/group-info",
        app.id,
        mimi_wire::groups::group_id_to_path(&group_id)
    );
    let from_other = other.call(http::Method::GET, &path, Vec::new()).await;
    assert_eq!(from_other.error_code(), ErrorCode::UnknownApplication);
    let removed = Target {
        application: other.application,
        ca: other.ca.clone(),
        app: app.clone(),
    };
    let from_removed = removed.call(http::Method::GET, &path, Vec::new()).await;
    assert_eq!(from_removed.error_code(), ErrorCode::Unauthenticated);
    drop(other);

    let again = Harness::start_for(StoreSpec::Redis(redis.url()), app, |_| {}).await;
    let api = GroupApi::new(&again, &group_id);
    assert_eq!(api.group_info().await.group_infos.len(), 1);
}

/// Welcome trees are stored once per epoch and pruned once every recipient acknowledged, or
/// once the welcome expired (pruned by the group's next commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_trees_are_pruned_after_acknowledgement_or_expiry() {
    let redis = RedisServer::start();
    let welcome_keys = |redis: &RedisServer| {
        redis
            .cli(&["--scan", "--pattern", "mimi:{g:*}:welcome:*"])
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.is_empty())
            .count()
    };
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    let mut alice = Member::new("alice");
    let api = create_group(&harness, &mut alice).await;
    let (bob, carol) = (Member::new("bob"), Member::new("carol"));
    let packages = [bob.mls.key_package(3600), carol.mls.key_package(3600)];
    let (commit, welcome, group_info) = alice.add(&packages);
    api.commit_ok(&commit, Some(&group_info), Some(&welcome))
        .await;
    assert_eq!(
        welcome_keys(&redis),
        4,
        "one welcome: its id, packet, tree and recipient set"
    );
    let id = welcomes(&harness, "bob").await[0].welcome_id;
    acknowledge(&harness, "bob", id).await;
    assert_eq!(welcome_keys(&redis), 4, "carol still needs it");
    acknowledge(&harness, "carol", id).await;
    assert_eq!(
        welcome_keys(&redis),
        0,
        "pruned after the last acknowledgement"
    );
    drop(harness);

    // With no retention, a welcome is expired at once: never listed, pruned by the next
    // commit of the group.
    let expiring = Harness::start_with(StoreSpec::Redis(redis.url()), |config| {
        config.groups.welcome_retention_secs = 0;
    })
    .await;
    let mut dave = Member::new("dave");
    let api = create_group(&expiring, &mut dave).await;
    let erin = Member::new("erin");
    let (commit, welcome, group_info) = dave.add(&[erin.mls.key_package(3600)]);
    api.commit_ok(&commit, Some(&group_info), Some(&welcome))
        .await;
    assert!(welcomes(&expiring, "erin").await.is_empty());
    assert_eq!(welcome_keys(&redis), 4);
    let (commit, group_info) = dave.update();
    api.commit_ok(&commit, Some(&group_info), None).await;
    assert_eq!(welcome_keys(&redis), 0);
}

/// A gateway that died between a commit and its cross-slot actions (the key queue advance
/// lives in the added client's slot) leaves them in the group's outbox; the next gateway to
/// start carries them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_left_by_a_dead_gateway_are_carried_out_at_start() {
    let redis = RedisServer::start();
    let first = Harness::start(StoreSpec::Redis(redis.url())).await;
    let app = first.app.clone();
    let mut alice = Member::new("alice");
    create_group(&first, &mut alice).await;
    let (_bob, queue) = queued_member(&first, "bob").await;
    let (package, _) = queue.retrieve("alice").await;
    let client = queue.client;
    drop(queue);
    drop(first);
    // What the commit script records, as if the gateway had died right after it.
    let prefix = format!(
        "mimi:{{g:{}:{}}}:",
        app.id,
        mimi_wire::groups::group_id_to_path(&alice.group_id())
    );
    let reference = crate::support::mls_client::key_package_ref(&package);
    let action = format!(
        "k {client} {}",
        mimi_wire::groups::group_id_to_path(&reference)
    );
    redis
        .cli(&["RPUSH", &format!("{prefix}outbox"), &action])
        .unwrap();
    redis.cli(&["SADD", "mimi:outbox-groups", &prefix]).unwrap();

    let second = Harness::start_for(StoreSpec::Redis(redis.url()), app, |_| {}).await;
    let queue = QueueFixture {
        harness: &second,
        api: second.app_client(),
        client,
        queue: uuid::Uuid::nil(),
        mls: MlsClient::basic("bob"),
    };
    let (next, _) = queue.retrieve("alice").await;
    assert_ne!(next, package, "the used package left the queue");
    assert_eq!(
        redis
            .cli(&["LLEN", &format!("{prefix}outbox")])
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        redis.cli(&["SCARD", "mimi:outbox-groups"]).unwrap().trim(),
        "0"
    );
}
