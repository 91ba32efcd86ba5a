//! One behaviour on every store: the replay cache, the rate counters, the outbound queues and
//! their leases (`ReplayCache`, `RateCounters`, `OutboundQueues`) on the memory store, a real
//! `redis-server` and a real three-master Redis Cluster, directly and (the replay cache)
//! through the gateway.

use std::time::Duration;

use http::{Method, StatusCode};
use mimi_gateway::config::StoreConfig;
use mimi_gateway::store::{self, SharedStore};

use crate::support::*;

async fn open(spec: &StoreSpec) -> SharedStore {
    let mut config = StoreConfig::default();
    match spec {
        StoreSpec::Memory => {}
        StoreSpec::Redis(url) => config.redis_url = Some(url.clone()),
        StoreSpec::Cluster(urls) => config.redis_cluster_urls = urls.clone(),
    }
    store::open(&config).await.expect("store opens")
}

/// The replay-cache contract every store must meet.
async fn replay_cache_contract(store: SharedStore) {
    let ttl = Duration::from_secs(1);
    let id: [u8; 16] = rand::random();
    assert!(
        store.record_request_id("app:a", &id, ttl).await.unwrap(),
        "first use is fresh"
    );
    assert!(
        !store.record_request_id("app:a", &id, ttl).await.unwrap(),
        "second use is a replay"
    );
    assert!(
        store.record_request_id("app:b", &id, ttl).await.unwrap(),
        "ids are per sender"
    );
    for sender in 0..64 {
        let id: [u8; 16] = rand::random();
        assert!(
            store
                .record_request_id(&format!("peer:{sender}.example"), &id, ttl)
                .await
                .unwrap()
        );
    }
    // After the TTL the id is forgotten (the timestamp window refuses it by then anyway).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        store.record_request_id("app:a", &id, ttl).await.unwrap(),
        "forgotten after the TTL"
    );
    store.ping().await.expect("reachable");
}

/// Rate counters: a request's count comes with its replay record (a replay is not counted),
/// counters are per caller, name and window, and `count_in_window` counts several at once.
async fn rate_counter_contract(store: SharedStore) {
    use mimi_gateway::store::RequestWindow;
    let ttl = Duration::from_secs(60);
    let now = 1_000_000_000;
    let window = |now| RequestWindow {
        name: "requests:read",
        window_secs: 10,
        now,
    };
    let caller = format!("app:{}", uuid::Uuid::new_v4());
    let id: [u8; 16] = rand::random();
    let recorded = store.record_request(&caller, &id, ttl, Some(window(now)));
    assert_eq!(recorded.await.unwrap(), Some(1));
    let replayed = store.record_request(&caller, &id, ttl, Some(window(now)));
    assert_eq!(replayed.await.unwrap(), None, "a replay is not counted");
    let (id2, id3): ([u8; 16], [u8; 16]) = (rand::random(), rand::random());
    let second = store.record_request(&caller, &id2, ttl, Some(window(now + 9)));
    assert_eq!(second.await.unwrap(), Some(2), "same window");
    let next = store.record_request(&caller, &id3, ttl, Some(window(now + 10)));
    assert_eq!(next.await.unwrap(), Some(1), "next window");
    let other = store.record_request("peer:b.example", &id, ttl, Some(window(now)));
    assert_eq!(other.await.unwrap(), Some(1), "per caller");
    let counts = store
        .count_in_window(&caller, &["fresh", "fresh:r1"], 60, now)
        .await
        .unwrap();
    assert_eq!(counts, vec![1, 1]);
    let counts = store
        .count_in_window(&caller, &["fresh", "fresh:r2"], 60, now)
        .await
        .unwrap();
    assert_eq!(counts, vec![2, 1]);
    // Counters of a long window outlive many counts in short ones.
    for _ in 0..1_100 {
        let id: [u8; 16] = rand::random();
        store
            .record_request(&caller, &id, ttl, Some(window(now)))
            .await
            .unwrap();
    }
    let counts = store
        .count_in_window(&caller, &["fresh"], 60, now)
        .await
        .unwrap();
    assert_eq!(counts, vec![3], "the 60 s counter survived");
}

/// Outbound queue leases: one holder at a time, renewed by its holder, given up only by it,
/// lapsing after their TTL.
async fn lease_contract(store: SharedStore) {
    let long = Duration::from_secs(60);
    let peer = format!("{}.example", uuid::Uuid::new_v4());
    assert!(store.lease_outbound(&peer, "p1", long).await.unwrap());
    assert!(
        store.lease_outbound(&peer, "p1", long).await.unwrap(),
        "renewed"
    );
    assert!(
        !store.lease_outbound(&peer, "p2", long).await.unwrap(),
        "held"
    );
    store.release_outbound(&peer, "p2").await.unwrap();
    assert!(
        !store.lease_outbound(&peer, "p2", long).await.unwrap(),
        "not p2's to give up"
    );
    store.release_outbound(&peer, "p1").await.unwrap();
    assert!(
        store.lease_outbound(&peer, "p2", long).await.unwrap(),
        "given up"
    );
    let other = format!("{}.example", uuid::Uuid::new_v4());
    let short = Duration::from_millis(100);
    assert!(store.lease_outbound(&other, "p1", short).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        store.lease_outbound(&other, "p2", long).await.unwrap(),
        "lapsed"
    );
}

/// Between two deliveries (`pop_and_next`): the delivered head goes, the lease is renewed
/// and the next head comes back; empty at the end; a body that is not the head stays; once
/// another process holds the lease the walker is told to stop (what it delivered still
/// goes).
async fn walk_contract(store: SharedStore) {
    use mimi_gateway::store::NextDelivery;
    let long = Duration::from_secs(60);
    let peer = format!("{}.example", uuid::Uuid::new_v4());
    store
        .enqueue_outbound(&peer, &[b"one".to_vec(), b"two".to_vec()])
        .await
        .unwrap();
    assert!(store.lease_outbound(&peer, "p1", long).await.unwrap());
    let next = |body: &'static [u8], holder: &'static str| {
        let (store, peer) = (store.clone(), peer.clone());
        async move { store.pop_and_next(&peer, body, holder, long).await.unwrap() }
    };
    assert_eq!(
        next(b"one", "p1").await,
        NextDelivery::Head(b"two".to_vec())
    );
    assert_eq!(
        next(b"one", "p1").await,
        NextDelivery::Head(b"two".to_vec()),
        "not the head: nothing removed"
    );
    assert_eq!(next(b"two", "p1").await, NextDelivery::Empty);
    assert!(
        !store.lease_outbound(&peer, "p2", long).await.unwrap(),
        "renewed for p1"
    );
    store
        .enqueue_outbound(&peer, &[b"three".to_vec(), b"four".to_vec()])
        .await
        .unwrap();
    store.release_outbound(&peer, "p1").await.unwrap();
    assert!(store.lease_outbound(&peer, "p2", long).await.unwrap());
    assert_eq!(next(b"three", "p1").await, NextDelivery::LeaseLost);
    assert_eq!(
        store.outbound_head(&peer).await.unwrap().as_deref(),
        Some(&b"four"[..])
    );
}

/// Outbound queues: one FIFO per peer, the head removed only when it is the body delivered,
/// the peers with deliveries listed, and a follower's named notes replaced or cleared.
async fn outbound_contract(store: SharedStore) {
    let (peer, other) = (
        format!("{}.example", uuid::Uuid::new_v4()),
        format!("{}.example", uuid::Uuid::new_v4()),
    );
    assert_eq!(store.outbound_head(&peer).await.unwrap(), None);
    store
        .enqueue_outbound(&peer, &[b"one".to_vec(), b"two".to_vec()])
        .await
        .unwrap();
    store
        .enqueue_outbound(&peer, &[b"six".to_vec()])
        .await
        .unwrap();
    store
        .enqueue_outbound(&other, &[b"else".to_vec()])
        .await
        .unwrap();
    assert_eq!(store.outbound_len(&peer).await.unwrap(), 3);
    assert_eq!(store.outbound_len(&other).await.unwrap(), 1);
    let peers = store.outbound_peers().await.unwrap();
    assert!(peers.contains(&peer) && peers.contains(&other), "{peers:?}");
    assert_eq!(
        store.outbound_head(&peer).await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    // A pop naming another body (a walker behind the queue) changes nothing.
    store.pop_outbound(&peer, b"two").await.unwrap();
    assert_eq!(
        store.outbound_head(&peer).await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    for body in [&b"one"[..], b"two", b"six"] {
        assert_eq!(
            store.outbound_head(&peer).await.unwrap().as_deref(),
            Some(body)
        );
        store.pop_outbound(&peer, body).await.unwrap();
    }
    assert_eq!(store.outbound_head(&peer).await.unwrap(), None);
    assert_eq!(store.outbound_len(&peer).await.unwrap(), 0);
    store.pop_outbound(&peer, b"one").await.unwrap();
    assert!(!store.outbound_peers().await.unwrap().contains(&peer));
    assert_eq!(
        store.outbound_head(&other).await.unwrap().as_deref(),
        Some(&b"else"[..])
    );
    // Notes: per peer and name, replaced, cleared by an empty one.
    assert_eq!(store.peer_note(&peer, "group-info").await.unwrap(), None);
    store
        .set_peer_note(&peer, "group-info", b"gi 1")
        .await
        .unwrap();
    store
        .set_peer_note(&peer, "group-info", b"gi 2")
        .await
        .unwrap();
    store.set_peer_note(&peer, "welcome", b"w").await.unwrap();
    assert_eq!(
        store
            .peer_note(&peer, "group-info")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"gi 2"[..])
    );
    assert_eq!(store.peer_note(&other, "group-info").await.unwrap(), None);
    store.set_peer_note(&peer, "group-info", b"").await.unwrap();
    assert_eq!(store.peer_note(&peer, "group-info").await.unwrap(), None);
    assert_eq!(
        store.peer_note(&peer, "welcome").await.unwrap().as_deref(),
        Some(&b"w"[..])
    );
}

/// Concurrent first uses of one id: exactly one wins.
async fn replay_cache_is_atomic(store: SharedStore) {
    let id: [u8; 16] = rand::random();
    let attempts = (0..32).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .record_request_id("app:race", &id, Duration::from_secs(60))
                .await
                .unwrap()
        })
    });
    let mut fresh = 0;
    for attempt in attempts {
        fresh += usize::from(attempt.await.unwrap());
    }
    assert_eq!(fresh, 1);
}

#[tokio::test]
async fn replay_cache_on_memory() {
    replay_cache_contract(open(&StoreSpec::Memory).await).await;
    replay_cache_is_atomic(open(&StoreSpec::Memory).await).await;
    rate_counter_contract(open(&StoreSpec::Memory).await).await;
    lease_contract(open(&StoreSpec::Memory).await).await;
    outbound_contract(open(&StoreSpec::Memory).await).await;
    walk_contract(open(&StoreSpec::Memory).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_cache_on_redis() {
    let redis = RedisServer::start();
    let spec = StoreSpec::Redis(redis.url());
    replay_cache_contract(open(&spec).await).await;
    replay_cache_is_atomic(open(&spec).await).await;
    rate_counter_contract(open(&spec).await).await;
    lease_contract(open(&spec).await).await;
    outbound_contract(open(&spec).await).await;
    walk_contract(open(&spec).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_cache_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let spec = StoreSpec::Cluster(cluster.urls());
    replay_cache_atomic_and_contract(&spec).await;
    rate_counter_contract(open(&spec).await).await;
    lease_contract(open(&spec).await).await;
    outbound_contract(open(&spec).await).await;
    walk_contract(open(&spec).await).await;
    let store = open(&spec).await;
    for sender in 0..64 {
        let id: [u8; 16] = rand::random();
        assert!(
            store
                .record_request_id(
                    &format!("peer:{sender}.example"),
                    &id,
                    Duration::from_secs(60)
                )
                .await
                .unwrap()
        );
    }
    let spread = cluster.keys_per_node();
    assert!(
        spread.iter().all(|&keys| keys > 0),
        "keys spread over all three masters: {spread:?}"
    );

    // And through the gateway on the same cluster.
    let harness = Harness::start(spec).await;
    replay_refused_through_gateway(&harness).await;
}

async fn replay_cache_atomic_and_contract(spec: &StoreSpec) {
    replay_cache_contract(open(spec).await).await;
    replay_cache_is_atomic(open(spec).await).await;
}

async fn replay_refused_through_gateway(harness: &Harness) {
    let headers = signed_headers(
        &harness.app.key,
        harness.app.claims(),
        &Method::POST,
        "/whoami",
        b"x",
    );
    let client = harness.client(Protocol::Http1);
    let first = client
        .send(
            harness.application,
            Method::POST,
            "/whoami",
            headers.clone(),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let replay = client
        .send(
            harness.application,
            Method::POST,
            "/whoami",
            headers,
            b"x".to_vec(),
        )
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        harness
            .metric("mimi_auth_failures_total{reason=\"replayed_request_id\"}")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_refused_through_the_gateway_on_redis() {
    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    replay_refused_through_gateway(&harness).await;
    let keys = redis
        .cli(&["--scan", "--pattern", "mimi:replay:{app:*"])
        .unwrap();
    assert_eq!(keys.lines().count(), 1, "one request id recorded: {keys}");
}

/// Scripts are called by hash; after a SCRIPT FLUSH (or a Redis restart) they are loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_script_flush() {
    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    let answer = harness
        .signed(Method::POST, "/whoami", b"", harness.app.claims())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]).unwrap().trim(), "OK");
    let answer = harness
        .signed(Method::POST, "/whoami", b"", harness.app.claims())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}
