//! A Redis outage: 503 with the store-unavailable code and a red `/readyz`; when Redis is
//! back, service resumes without restarting the gateway.

use std::time::Duration;

use http::{Method, StatusCode};
use mimi_wire::ErrorCode;

use crate::common::*;

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
