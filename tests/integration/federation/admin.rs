//! Issue 16, "Admin listener": an operator watches a peer go down and recover
//! (`GET /admin/peers`: last success, last failure and its reason, queue depth and since
//! when it waits, backoff), ends its backoff at once (`POST /admin/peers/{domain}/retry`),
//! and reads a group's state on its hub and on a follower (`GET /admin/groups/{groupId}`).

use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::federation::*;
use crate::support::group_client::GroupApi;
use crate::support::*;

async fn peer_b(admin: std::net::SocketAddr) -> serde_json::Value {
    let (status, body) = admin_get(admin, "/admin/peers").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let peers: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    peers["peers"]
        .as_array()
        .expect("a list of peers")
        .iter()
        .find(|peer| peer["peer"] == "b.localhost")
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_shows_a_peer_going_down_and_recovering() {
    let redis = [RedisServer::start(), RedisServer::start()];
    // The hub waits ten minutes between attempts: only the operator's retry brings the
    // follower its commit within this test.
    let mut federation = Federation::start_with(
        2,
        |index| StoreSpec::Redis(redis[index].url()),
        |index, config| {
            if index == 0 {
                config.federation.retry_initial_ms = 600_000;
                config.federation.retry_max_ms = 600_000;
            }
        },
    )
    .await;
    let (mut alice, _carol) = alice_at_a_adds_carol_at_b(&federation, "alice", "carol").await;
    let a_admin = federation.gateways[0].admin;
    let up = eventually(Duration::from_secs(20), || async {
        let b = peer_b(a_admin).await;
        b["last_success"].is_u64() && b["queue_depth"] == 0
    })
    .await;
    assert!(up, "the add was delivered: {}", peer_b(a_admin).await);

    let config = federation.gateways[1].stop().await;
    let group = GroupApi::new(&federation.gateways[0], &alice.group_id());
    let (update, update_info) = alice.update();
    assert_eq!(group.commit_ok(&update, Some(&update_info), None).await, 2);
    let down = eventually(Duration::from_secs(20), || async {
        let b = peer_b(a_admin).await;
        b["last_failure"].is_u64() && b["queue_depth"].as_u64() >= Some(1)
    })
    .await;
    let b = peer_b(a_admin).await;
    assert!(down, "{b}");
    assert!(
        b["last_failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{b}"
    );
    assert!(b["waiting_since"].is_u64(), "{b}");
    let backoff_until = b["backoff_until"].as_u64().expect("in backoff");
    assert!(backoff_until >= now() + 500, "{b}");

    federation.gateways[1].start_again(config).await;
    let (status, body) =
        admin_request(a_admin, Method::POST, "/admin/peers/b.localhost/retry").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let recovered = eventually(Duration::from_secs(20), || async {
        let b = peer_b(a_admin).await;
        b["queue_depth"] == 0
            && b["backoff_until"].is_null()
            && b["last_success"].as_u64() >= b["last_failure"].as_u64()
    })
    .await;
    assert!(recovered, "{}", peer_b(a_admin).await);
    let mirror = GroupApi::new(&federation.gateways[1], &alice.group_id());
    mirrored_control(&mirror, 2).await;

    let (status, _) =
        admin_request(a_admin, Method::POST, "/admin/peers/nobody.example/retry").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The group, on its hub and on the follower.
    let path = format!(
        "/admin/groups/{}",
        mimi_wire::groups::group_id_to_path(&alice.group_id())
    );
    let (status, body) = admin_get(a_admin, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hub: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (hub["role"].as_str(), hub["epoch"].as_u64()),
        (Some("hub"), Some(2))
    );
    assert_eq!(hub["members"], 2);
    let (status, body) = admin_get(federation.gateways[1].admin, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let follower: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(follower["role"], "mirror");
    assert_eq!(follower["hub"], "a.localhost");
    assert_eq!(follower["epoch"], 2);
    // Carol's Welcome waits on both until she takes it from B.
    assert_eq!(
        (&hub["pending_welcomes"], &follower["pending_welcomes"]),
        (&serde_json::json!(1), &serde_json::json!(1))
    );
    let b_client = federation.gateways[1].app_client();
    let welcome = b_client.welcomes("carol").await.unwrap()[0].welcome_id;
    b_client
        .acknowledge_welcome("carol", uuid::Uuid::from_bytes(welcome))
        .await
        .unwrap();
    let follower: serde_json::Value =
        serde_json::from_str(&admin_get(federation.gateways[1].admin, &path).await.1).unwrap();
    assert_eq!(follower["pending_welcomes"], 0, "{follower}");
    let (status, _) = admin_get(a_admin, "/admin/groups/00ff").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A request naming another host (a web page, DNS rebinding) is refused.
    let (status, _) = admin_request_for(
        a_admin,
        Method::POST,
        "/admin/peers/b.localhost/retry",
        "evil.example",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        admin_request_for(a_admin, Method::GET, "/admin/peers", "127.0.0.1:9090").await;
    assert_eq!(status, StatusCode::OK);
    // Health and metrics stay open to the listener's network (probes, Prometheus).
    let (status, _) = admin_request_for(a_admin, Method::GET, "/metrics", "10.0.0.5:9090").await;
    assert_eq!(status, StatusCode::OK);
}

/// A fan-out the follower refuses is dropped, and the hub's peer status says why with the
/// follower's error code, not only its HTTP status: here a Welcome for a client of B's
/// domain that B does not have (its key package never came from B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fan_out_names_the_followers_error_code() {
    let federation = Federation::start(2, |_| StoreSpec::Memory).await;
    let a = &federation.gateways[0];
    let stranger = federation.cas[1].member("stranger");
    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    a.app_client()
        .create_group(&group_info, &tree)
        .await
        .unwrap();
    let (commit, welcome, info) = alice.add(&[stranger.mls.key_package(3_600)]);
    GroupApi::new(a, &alice.group_id())
        .commit_ok(&commit, Some(&info), Some(&welcome))
        .await;
    let a_admin = a.admin;
    let named = eventually(Duration::from_secs(20), || async {
        peer_b(a_admin).await["last_failure_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("602 NotOurClient"))
    })
    .await;
    let b = peer_b(a_admin).await;
    assert!(named, "{b}");
    let reason = b["last_failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("dropped: answered 400 Bad Request"),
        "{reason}"
    );
}
