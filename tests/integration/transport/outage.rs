//! A Redis outage: 503 with the store-unavailable code and a red `/readyz`; when Redis is
//! back, service resumes without restarting the gateway.

use std::time::Duration;

use http::{Method, StatusCode};
use mimi_wire::ErrorCode;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_answers_503_and_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    assert_eq!(
        harness
            .signed(Method::POST, "/whoami", b"", harness.app.claims())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(admin_get(harness.admin, "/readyz").await.0, StatusCode::OK);

    redis.kill();
    let answer = harness
        .signed(Method::POST, "/whoami", b"", harness.app.claims())
        .await;
    assert_eq!(answer.error_code(), ErrorCode::StoreUnavailable);
    // Operators see it in the metrics (contrib's dashboard and `MimiStoreErrors` alert).
    assert_eq!(
        harness
            .metric("mimi_store_errors_total{outcome=\"unavailable\"}")
            .await,
        1
    );
    assert_eq!(
        admin_get(harness.admin, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        admin_get(harness.admin, "/healthz").await.0,
        StatusCode::OK,
        "alive, just not ready"
    );

    redis.restart();
    let ready = eventually(Duration::from_secs(20), || async {
        admin_get(harness.admin, "/readyz").await.0 == StatusCode::OK
    })
    .await;
    assert!(ready, "/readyz green again after Redis returned");
    let answer = harness
        .signed(Method::POST, "/whoami", b"", harness.app.claims())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// The gateway starts while Redis is down (not ready), and becomes ready when it appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_starts_before_redis_and_becomes_ready() {
    let mut redis = RedisServer::start();
    redis.kill();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    assert_eq!(
        admin_get(harness.admin, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    redis.restart();
    let ready = eventually(Duration::from_secs(20), || async {
        admin_get(harness.admin, "/readyz").await.0 == StatusCode::OK
    })
    .await;
    assert!(ready);
}

/// Issue 15, defect 2: a commit whose store step stalls (the Cluster node holding the group
/// paused for writes, while the node of the request's replay record is not) past the request
/// timeout, or past the store's command timeout, is answered `OutcomeUnknown` (504), never
/// "nothing was changed" (when the node resumes, the stalled step may run): the client resolves
/// the answer it did not get by reading the group's epoch, and sends the commit again only if
/// the epoch did not move.
async fn a_stalled_commit_is_answered_outcome_unknown(
    adjust: fn(&mut mimi_gateway::config::Config),
) {
    use crate::support::group_client::{GroupApi, Member};
    let cluster = RedisCluster::start();
    let harness = Harness::start_with(StoreSpec::Cluster(cluster.urls()), adjust).await;
    crate::support::key_queues::register(&harness, "alice").await;
    let replay_node = cluster.node_of(&format!("{{app:{}}}", harness.app.id));
    // A group whose keys live on another node than the application's replay records.
    let (mut alice, group_node) = loop {
        let mut alice = Member::new("alice");
        let (group_info, tree) = alice.create_group();
        let tag = format!("{{g:{}:{}}}", harness.app.id, hex::encode(alice.group_id()));
        let node = cluster.node_of(&tag);
        if node != replay_node {
            let created = GroupApi::create(&harness, &group_info, &tree).await;
            assert_eq!(created.status, StatusCode::CREATED);
            break (alice, node);
        }
    };
    let group = GroupApi::new(&harness, &alice.group_id());
    let (update, update_info) = alice.update();
    // The group's node takes no write for 2.5 s: longer than the timeout under test, shorter
    // than the other one.
    cluster.nodes[group_node]
        .cli(&["CLIENT", "PAUSE", "2500", "WRITE"])
        .expect("pause");
    let answer = group.commit(&update, Some(&update_info), None).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.error_code(), ErrorCode::OutcomeUnknown);
    // Resolved by reading once the node resumed: the commit was applied (the stalled step ran
    // after the answer), or not (its connection was given up first), and then sending it again
    // applies it. Either way it is applied exactly once.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let epoch = group.epoch().await;
    if epoch == 0 {
        assert_eq!(group.commit_ok(&update, Some(&update_info), None).await, 1);
    }
    assert_eq!(
        group.epoch().await,
        1,
        "applied once (read {epoch} after the stall)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_outliving_the_request_timeout_is_answered_outcome_unknown() {
    a_stalled_commit_is_answered_outcome_unknown(|config| {
        config.limits.request_timeout_ms = 1_000;
        config.store.command_timeout_ms = 10_000;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_outliving_the_store_timeout_is_answered_outcome_unknown() {
    a_stalled_commit_is_answered_outcome_unknown(|config| {
        config.limits.request_timeout_ms = 10_000;
        config.store.command_timeout_ms = 1_000;
    })
    .await;
}
