//! Issue 14, "Rate limits": per authenticated caller and class of endpoint, requests past a
//! first threshold in a window are delayed and past a second refused (429, `RateLimited`,
//! `Retry-After`), counted in the store so that gateways sharing it count together (memory,
//! Redis, Redis Cluster); at most N requests per caller in handling at once; fresh key-package
//! assignments capped per receiver and per caller (an application's and a peer's), final keys
//! still served; new connections per address per minute. Another caller is never affected.

use std::time::Duration;

use http::{Method, StatusCode};
use mimi_gateway::config::{Config, RateClassConfig};
use mimi_wire::ErrorCode;
use mimi_wire::decode_exact;
use mimi_wire::key_queues::RetrieveKeyPackageResponse;

use crate::support::federation::{Federation, publish_key_packages, retrieve_key_package};
use crate::support::key_queues::QueueFixture;
use crate::support::mls_client::SUITE;
use crate::support::*;

/// A window no test run straddles (a counter lives for its window).
const LONG_WINDOW_SECS: u64 = 100_000;

/// Two applications on one gateway: `harness.app` (X) and the returned Y.
fn with_second_application(config: &mut Config) -> TestApp {
    let other = TestApp::new();
    config.applications.push(other.config());
    other
}

fn reads_delayed_after_2_refused_after_4(config: &mut Config) {
    config.rate_limits.window_secs = LONG_WINDOW_SECS;
    config.rate_limits.read = RateClassConfig {
        delay_after: 2,
        delay_ms: 1,
        reject_after: 4,
    };
}

async fn whoami(target: &Target) -> Answer {
    target.call(Method::GET, "/whoami", Vec::new()).await
}

fn retry_after(answer: &Answer) -> u64 {
    answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn target_of(harness: &Harness, app: &TestApp) -> Target {
    Target {
        application: harness.application,
        ca: harness.ca.clone(),
        app: app.clone(),
    }
}

fn limited(app: &TestApp, class: &str, outcome: &str) -> String {
    format!(
        "mimi_rate_limited_total{{caller=\"app:{}\",class=\"{class}\",outcome=\"{outcome}\"}}",
        app.id
    )
}

/// X's fifth read in the window is refused, its third and fourth delayed; Y's reads and X's
/// writes (another class) all pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_application_is_delayed_then_refused_and_another_is_not() {
    let mut other = None;
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        reads_delayed_after_2_refused_after_4(config);
        other = Some(with_second_application(config));
    })
    .await;
    let (x, y) = (harness.target(), target_of(&harness, &other.unwrap()));
    for _ in 0..4 {
        assert_eq!(whoami(&x).await.status, StatusCode::OK);
    }
    let refused = whoami(&x).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    assert!((1..=LONG_WINDOW_SECS).contains(&retry_after(&refused)));
    // Now refused before any work: even a request naming X with another key's signature
    // (its body unread, its signature unchecked) is answered 429, not 401.
    let forged = signed_headers(
        &TestApp::new().key,
        x.app.claims(),
        &Method::GET,
        "/whoami",
        b"",
    );
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::GET,
            "/whoami",
            forged,
            Vec::new(),
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::RateLimited);
    for _ in 0..4 {
        assert_eq!(whoami(&y).await.status, StatusCode::OK, "Y is not limited");
    }
    // Writes are another class (registration asserts its 201).
    crate::support::key_queues::register(&harness, "alice").await;
    let read = "requests:read";
    assert_eq!(harness.metric(&limited(&x.app, read, "delayed")).await, 2);
    assert_eq!(harness.metric(&limited(&x.app, read, "refused")).await, 2);
    assert_eq!(harness.metric(&limited(&y.app, read, "refused")).await, 0);
}

/// However the envelope spells the application's id (case, braces, no hyphens, URN), it is
/// one caller with one count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_is_counted_once_however_its_envelope_spells_it() {
    let harness =
        Harness::start_with(StoreSpec::Memory, reads_delayed_after_2_refused_after_4).await;
    let id = harness.app.id;
    let spellings = [
        id.hyphenated().to_string().to_uppercase(),
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
        id.to_string(),
    ];
    let mut statuses = Vec::new();
    for spelling in spellings {
        let mut claims = harness.app.claims();
        claims.sender = spelling;
        statuses.push(
            harness
                .signed(Method::GET, "/whoami", b"", claims)
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

/// Two gateways sharing one store count one application's requests together.
async fn gateways_sharing_a_store_count_together(store: StoreSpec) {
    let first = Harness::start_with(store.clone(), reads_delayed_after_2_refused_after_4).await;
    let second = Harness::start_for(
        store,
        first.app.clone(),
        reads_delayed_after_2_refused_after_4,
    )
    .await;
    let (one, two) = (first.target(), second.target());
    for target in [&one, &two, &one, &two] {
        assert_eq!(whoami(target).await.status, StatusCode::OK);
    }
    for target in [&one, &two] {
        let refused = whoami(target).await;
        assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_one_redis_count_together() {
    let redis = RedisServer::start();
    gateways_sharing_a_store_count_together(StoreSpec::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_one_redis_cluster_count_together() {
    let cluster = RedisCluster::start();
    gateways_sharing_a_store_count_together(StoreSpec::Cluster(cluster.urls())).await;
}

/// One request per caller in handling at once, a delayed one included: X's request while
/// its delayed one waits is refused after `concurrency_wait_ms`; Y's is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gets_at_most_its_share_of_turns() {
    let mut other = None;
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.rate_limits.window_secs = LONG_WINDOW_SECS;
        config.rate_limits.read = RateClassConfig {
            delay_after: 1,
            delay_ms: 3_000,
            reject_after: 0,
        };
        config.rate_limits.concurrent_per_caller = 1;
        config.rate_limits.concurrency_wait_ms = 200;
        other = Some(with_second_application(config));
    })
    .await;
    let (x, y) = (harness.target(), target_of(&harness, &other.unwrap()));
    assert_eq!(whoami(&x).await.status, StatusCode::OK);
    let delayed = tokio::spawn({
        let x = x.clone();
        async move { whoami(&x).await.status }
    });
    let delayed_metric = limited(&x.app, "requests:read", "delayed");
    assert!(
        eventually(Duration::from_secs(5), || async {
            harness.metric(&delayed_metric).await == 1
        })
        .await,
        "X's second read is being delayed"
    );
    let refused = whoami(&x).await;
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    assert_eq!(retry_after(&refused), 1);
    assert_eq!(
        whoami(&y).await.status,
        StatusCode::OK,
        "Y has its own turns"
    );
    assert_eq!(
        delayed.await.unwrap(),
        StatusCode::OK,
        "the delayed one is answered"
    );
    assert_eq!(
        harness
            .metric(&limited(&x.app, "requests:read", "concurrency_refused"))
            .await,
        1
    );
}

fn fresh_caps(config: &mut Config) {
    config.rate_limits.fresh_key_packages_per_receiver = 2;
    config.rate_limits.fresh_key_packages_per_caller = 3;
    config.rate_limits.key_package_window_secs = LONG_WINDOW_SECS;
}

/// (package, is final key) or the error code.
async fn take(fixture: &QueueFixture<'_>, receiver: &str) -> Result<(Vec<u8>, bool), Answer> {
    let answer = fixture.retrieve_with(receiver, None, 1).await;
    if answer.status != StatusCode::OK {
        return Err(answer);
    }
    let response: RetrieveKeyPackageResponse = decode_exact(&answer.body).unwrap();
    Ok((
        response.key_package.as_slice().to_vec(),
        response.is_final_key.0,
    ))
}

/// Past a receiver's or the application's cap on fresh assignments only what was assigned
/// before and final keys are served, though ordinary packages remain; a queue without a
/// final key answers 429 with `Retry-After`.
async fn fresh_assignments_are_capped(store: StoreSpec) {
    let harness = Harness::start_with(store, fresh_caps).await;
    let mut queues = Vec::new();
    for (index, handle) in ["c1", "c2", "c3", "c4"].iter().enumerate() {
        let fixture = QueueFixture::new(&harness, handle).await;
        let mls = &fixture.mls;
        let final_key = (index < 3).then(|| mls.key_package_with(SUITE, 5_000, true));
        let packages = [mls.key_package(5_000), mls.key_package(5_000)];
        let answer = fixture
            .update(&packages, false, None, final_key.clone())
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        queues.push((fixture, final_key));
    }
    let (c1, c2, c3, c4) = (&queues[0].0, &queues[1].0, &queues[2].0, &queues[3].0);
    let first = take(c1, "r1").await.unwrap();
    assert!(!first.1, "fresh");
    assert_eq!(
        take(c1, "r1").await.unwrap(),
        first,
        "assigned before: not counted"
    );
    assert!(
        !take(c2, "r1").await.unwrap().1,
        "r1's second fresh package"
    );
    assert_eq!(
        take(c3, "r1").await.unwrap(),
        (queues[2].1.clone().unwrap(), true),
        "r1 is at its cap: c3's final key though c3 has ordinary packages"
    );
    assert!(!take(c3, "r2").await.unwrap().1, "the application's third");
    assert_eq!(
        take(c1, "r3").await.unwrap(),
        (queues[0].1.clone().unwrap(), true),
        "the application is at its cap"
    );
    let withheld = take(c4, "r3").await.unwrap_err();
    assert_eq!(withheld.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(withheld.error_code(), ErrorCode::RateLimited);
    assert!((1..=LONG_WINDOW_SECS).contains(&retry_after(&withheld)));
    assert_eq!(
        take(c1, "r1").await.unwrap(),
        first,
        "still served after the cap"
    );
    assert_eq!(
        harness
            .metric(&limited(
                &harness.app,
                "fresh_key_packages",
                "fresh_withheld"
            ))
            .await,
        1
    );
}

fn key_packages_delayed_after_3_refused_after_5(config: &mut Config) {
    config.rate_limits.window_secs = LONG_WINDOW_SECS;
    config.rate_limits.key_packages = RateClassConfig {
        delay_after: 3,
        delay_ms: 1,
        reject_after: 5,
    };
}

/// `POST path` with `body`, signed with `key` in the name of the harness's application.
fn signed_post(
    harness: &Harness,
    key: &ed25519_dalek::SigningKey,
    path: &str,
    body: Vec<u8>,
) -> (http::HeaderMap, Vec<u8>) {
    let headers = signed_headers(key, harness.app.claims(), &Method::POST, path, &body);
    (headers, body)
}

/// Sends a request signed by `signed_post` as it is (a replay sends the same one twice).
async fn post_as_signed(
    harness: &Harness,
    path: &str,
    (headers, body): (http::HeaderMap, Vec<u8>),
) -> Answer {
    harness
        .client(Protocol::Http1)
        .send(harness.application, Method::POST, path, headers, body)
        .await
}

/// Issue 17: a key-package retrieval's request is recorded and counted in the retrieval's
/// own store step (one Redis round trip), and every rule of the pipeline still holds: a
/// replay is refused and not counted, a request whose body does not decode or whose receiver
/// id is refused is counted, past
/// the first threshold retrievals are delayed and answered, past the second refused with
/// nothing assigned. With `shared`, a second gateway on the same store without these limits
/// shows the refused retrieval left its package in the queue.
async fn retrievals_are_recorded_and_counted_in_their_step(store: StoreSpec, shared: bool) {
    let harness =
        Harness::start_with(store.clone(), key_packages_delayed_after_3_refused_after_5).await;
    let fixture = QueueFixture::new(&harness, "carol").await;
    let packages: Vec<Vec<u8>> = (0..4).map(|_| fixture.mls.key_package(5_000)).collect();
    assert_eq!(fixture.upload(&packages).await, 4);
    let path = format!(
        "/apps/{}/clients/{}/keyPackage",
        harness.app.id, fixture.client
    );
    let send = |body: Vec<u8>| signed_post(&harness, &harness.app.key, &path, body);
    let post = |signed| post_as_signed(&harness, &path, signed);
    let for_receiver = |receiver: &str| {
        mimi_wire::encode(&mimi_wire::key_queues::RetrieveKeyPackageRequest {
            version: 1,
            domain: None,
            protocol_version: 1,
            cipher_suite: 1,
            app_label: None,
            receiver_client_id: receiver.into(),
        })
        .unwrap()
    };
    // Count 1, sent twice: the copy is refused (401) and not counted.
    let once = send(for_receiver("r1"));
    let first = post(once.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let replayed = post(once).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replayed.error_code(), ErrorCode::Unauthenticated);
    // Count 2: a signed body that does not decode is refused (400) and counted.
    let garbage = post(send(vec![0xff; 7])).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.error_code(), ErrorCode::MalformedBody);
    // Count 3: a receiver id the service refuses (empty), counted too.
    let nobody = post(send(for_receiver(""))).await;
    assert_eq!(nobody.error_code(), ErrorCode::InvalidReceiver);
    // Counts 4 and 5: delayed, then each answered with a package of its own.
    let mut taken = vec![
        decode_exact::<RetrieveKeyPackageResponse>(&first.body)
            .unwrap()
            .key_package
            .as_slice()
            .to_vec(),
    ];
    for receiver in ["r2", "r3"] {
        let (package, is_final) = take(&fixture, receiver).await.unwrap();
        assert!(!is_final);
        taken.push(package);
    }
    // Count 6: refused, before anything is assigned.
    let refused = take(&fixture, "r4").await.unwrap_err();
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    assert!((1..=LONG_WINDOW_SECS).contains(&retry_after(&refused)));
    let class = "requests:key_packages";
    assert_eq!(
        harness
            .metric(&limited(&harness.app, class, "delayed"))
            .await,
        2
    );
    assert_eq!(
        harness
            .metric(&limited(&harness.app, class, "refused"))
            .await,
        1
    );
    for package in &taken {
        assert!(packages.contains(package));
    }
    taken.sort();
    taken.dedup();
    assert_eq!(taken.len(), 3, "three retrievals, three packages");
    if !shared {
        return;
    }
    // The queue still holds one package: the refused retrieval assigned none.
    let second = Harness::start_for(store, harness.app.clone(), |config| {
        config.rate_limits.window_secs = LONG_WINDOW_SECS;
    })
    .await;
    let other = QueueFixture {
        harness: &second,
        api: second.app_client(),
        client: fixture.client,
        queue: fixture.queue,
        mls: crate::support::mls_client::MlsClient::basic("unused"),
    };
    let (last, _) = take(&other, "r5").await.unwrap();
    assert!(packages.contains(&last) && !taken.contains(&last));
    let spent = take(&other, "r6").await.unwrap_err();
    assert_eq!(spent.error_code(), ErrorCode::QueueExhausted);
}

/// A caller whose retrievals all fail before their store step (bodies that do not decode) is
/// counted by the pipeline and, past `reject_after`, refused before its next request's body
/// is read or its signature checked, as any caller counted past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrievals_failing_before_their_step_count_toward_refusal() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.rate_limits.window_secs = LONG_WINDOW_SECS;
        config.rate_limits.key_packages = RateClassConfig {
            delay_after: 0,
            delay_ms: 1,
            reject_after: 2,
        };
    })
    .await;
    let path = format!(
        "/apps/{}/clients/{}/keyPackage",
        harness.app.id,
        uuid::Uuid::new_v4()
    );
    let post = |key| {
        let signed = signed_post(&harness, key, &path, vec![0xff; 7]);
        post_as_signed(&harness, &path, signed)
    };
    for _ in 0..3 {
        assert_eq!(
            post(&harness.app.key).await.error_code(),
            ErrorCode::MalformedBody
        );
    }
    // Refused as soon as the envelope names the caller: even another key's signature is
    // answered 429, not 401.
    let forged = post(&TestApp::new().key).await;
    assert_eq!(forged.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(forged.error_code(), ErrorCode::RateLimited);
}

/// A retrieval refused for want of a turn (its caller's delayed one holds it) was left to
/// its store step and is recorded and counted by the pipeline: the caller's next retrieval,
/// past `reject_after` only with it, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieval_refused_a_turn_is_counted() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.rate_limits.window_secs = LONG_WINDOW_SECS;
        config.rate_limits.key_packages = RateClassConfig {
            delay_after: 1,
            delay_ms: 3_000,
            reject_after: 3,
        };
        config.rate_limits.concurrent_per_caller = 1;
        config.rate_limits.concurrency_wait_ms = 200;
    })
    .await;
    let fixture = QueueFixture::new(&harness, "carol").await;
    let packages: Vec<Vec<u8>> = (0..3).map(|_| fixture.mls.key_package(5_000)).collect();
    assert_eq!(fixture.upload(&packages).await, 3);
    // Count 1.
    assert!(take(&fixture, "r1").await.is_ok());
    let delayed_metric = limited(&harness.app, "requests:key_packages", "delayed");
    let (delayed, refused) = tokio::join!(
        // Count 2: delayed, holding the caller's one turn.
        take(&fixture, "r2"),
        async {
            assert!(
                eventually(Duration::from_secs(5), || async {
                    harness.metric(&delayed_metric).await == 1
                })
                .await,
                "the second retrieval is being delayed"
            );
            // Count 3: no turn within 200 ms.
            take(&fixture, "r3").await
        }
    );
    assert!(delayed.is_ok(), "the delayed one is answered");
    let refused = refused.unwrap_err();
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    assert_eq!(
        harness
            .metric(&limited(
                &harness.app,
                "requests:key_packages",
                "concurrency_refused"
            ))
            .await,
        1
    );
    // Count 4, past `reject_after` because the refused one counted.
    assert_past_reject_after(&harness, &fixture, "r4").await;
}

/// The caller's next retrieval is refused for its count (429, the class's `refused` metric
/// at 1).
async fn assert_past_reject_after(harness: &Harness, fixture: &QueueFixture<'_>, receiver: &str) {
    let past = take(fixture, receiver).await.unwrap_err();
    assert_eq!(past.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        harness
            .metric(&limited(&harness.app, "requests:key_packages", "refused"))
            .await,
        1
    );
}

/// Bodies of at most 1 MiB in a 4 MiB budget (a caller's share: 1 MiB), and reads delayed
/// 3 s past the first in a window.
fn one_mib_shares(config: &mut Config) {
    config.limits.max_body_bytes = 1 << 20;
    config.limits.body_memory_budget_bytes = 4 << 20;
    config.rate_limits.window_secs = LONG_WINDOW_SECS;
    config.rate_limits.read = RateClassConfig {
        delay_after: 1,
        delay_ms: 3_000,
        reject_after: 0,
    };
}

/// Under `one_mib_shares`, after one read: a 1 MiB `/whoami` of `caller`, held in the read
/// class's delay with the caller's whole body share; answers its status once it is done.
async fn hold_the_body_share(
    harness: &Harness,
    caller: &Target,
) -> tokio::task::JoinHandle<StatusCode> {
    let held = tokio::spawn({
        let caller = caller.clone();
        async move {
            caller
                .call(Method::POST, "/whoami", vec![7u8; 1 << 20])
                .await
                .status
        }
    });
    let delayed = limited(&caller.app, "requests:read", "delayed");
    assert!(
        eventually(Duration::from_secs(10), || async {
            harness.metric(&delayed).await == 1
        })
        .await,
        "the large body is held in a delay"
    );
    held
}

/// A retrieval refused because its caller holds its whole share of the body budget is still
/// counted (the request is recorded before the refusal, as every signed request): with
/// `reject_after` 1, the caller's next retrieval is past it, though no retrieval was served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieval_refused_its_body_share_is_counted() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        one_mib_shares(config);
        config.rate_limits.key_packages = RateClassConfig {
            delay_after: 0,
            delay_ms: 0,
            reject_after: 1,
        };
    })
    .await;
    let fixture = QueueFixture::new(&harness, "carol").await;
    let packages: Vec<Vec<u8>> = (0..2).map(|_| fixture.mls.key_package(5_000)).collect();
    assert_eq!(fixture.upload(&packages).await, 2);
    let x = harness.target();
    assert_eq!(whoami(&x).await.status, StatusCode::OK);
    let held = hold_the_body_share(&harness, &x).await;
    // Count 1: no share left for its body.
    let refused = take(&fixture, "r1").await.unwrap_err();
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    assert_eq!(retry_after(&refused), 1);
    assert_eq!(
        harness
            .metric(&limited(
                &harness.app,
                "requests:key_packages",
                "body_share"
            ))
            .await,
        1
    );
    assert_eq!(held.await.unwrap(), StatusCode::OK);
    // Count 2, past `reject_after` because the refused one counted.
    assert_past_reject_after(&harness, &fixture, "r2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrievals_are_recorded_and_counted_in_their_step_on_memory() {
    retrievals_are_recorded_and_counted_in_their_step(StoreSpec::Memory, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrievals_are_recorded_and_counted_in_their_step_on_redis() {
    let redis = RedisServer::start();
    retrievals_are_recorded_and_counted_in_their_step(StoreSpec::Redis(redis.url()), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrievals_are_recorded_and_counted_in_their_step_on_a_cluster() {
    let cluster = RedisCluster::start();
    retrievals_are_recorded_and_counted_in_their_step(StoreSpec::Cluster(cluster.urls()), true)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_assignments_are_capped_on_memory() {
    fresh_assignments_are_capped(StoreSpec::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_assignments_are_capped_on_redis() {
    let redis = RedisServer::start();
    fresh_assignments_are_capped(StoreSpec::Redis(redis.url())).await;
}

/// A peer draining key packages: B assigns peer A one fresh package in the window; A's
/// request for another receiver is refused by B, the first receiver's is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_is_capped_on_fresh_key_packages() {
    let federation = Federation::start_with(
        2,
        |_| StoreSpec::Memory,
        |index, config| {
            if index == 1 {
                config.rate_limits.fresh_key_packages_per_caller = 1;
                config.rate_limits.key_package_window_secs = LONG_WINDOW_SECS;
            }
        },
    )
    .await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 3).await;
    let first = retrieve_key_package(a, carol_id, "b.localhost", "alice").await;
    assert_eq!(first.status, StatusCode::OK);
    let refused = retrieve_key_package(a, carol_id, "b.localhost", "bob").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    assert!(
        (1..=3_600).contains(&retry_after(&refused)),
        "B's Retry-After, bounded"
    );
    assert!(
        crate::support::group_client::error(&refused)
            .detail
            .starts_with("b.localhost is rate-limiting"),
        "names the peer"
    );
    let again = retrieve_key_package(a, carol_id, "b.localhost", "alice").await;
    assert_eq!(again.body, first.body, "alice's package is served again");
    let series = "mimi_rate_limited_total{caller=\"peer:a.localhost\",class=\"fresh_key_packages\",outcome=\"fresh_withheld\"}";
    assert_eq!(b.metric(series).await, 1);
}

/// Before authentication: an address opening more new connections in a minute than allowed
/// has the next closed at accept; another address is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_per_address_are_limited() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.new_connections_per_ip_per_minute = 3;
    })
    .await;
    let client = harness.client(Protocol::Http1);
    let churner: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    for _ in 0..3 {
        let tcp = TlsClient::tcp_from(harness.application, churner).await;
        assert!(client.handshake(tcp).await.is_ok());
    }
    let tcp = TlsClient::tcp_from(harness.application, churner).await;
    assert!(client.handshake(tcp).await.is_err(), "closed at accept");
    let other: std::net::IpAddr = "127.0.0.4".parse().unwrap();
    let tcp = TlsClient::tcp_from(harness.application, other).await;
    assert!(client.handshake(tcp).await.is_ok(), "another address");
    let series =
        "mimi_refused_connections_total{listener=\"application\",reason=\"connection_rate\"}";
    assert_eq!(harness.metric(series).await, 1);
}

/// Once authenticated, one caller holds at most a quarter of the shared body budget: X's
/// large body held in a delay keeps X's share, so X's next large body is 429 `RateLimited`
/// (`Retry-After: 1`), while Y's is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_holds_at_most_its_share_of_the_body_budget() {
    let mut other = None;
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        one_mib_shares(config);
        other = Some(with_second_application(config));
    })
    .await;
    let (x, y) = (harness.target(), target_of(&harness, &other.unwrap()));
    let large = vec![7u8; 1 << 20];
    assert_eq!(whoami(&x).await.status, StatusCode::OK);
    let held = hold_the_body_share(&harness, &x).await;
    let refused = x.call(Method::POST, "/whoami", large.clone()).await;
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    assert_eq!(retry_after(&refused), 1);
    assert_eq!(
        y.call(Method::POST, "/whoami", large).await.status,
        StatusCode::OK,
        "Y has its own share"
    );
    assert_eq!(held.await.unwrap(), StatusCode::OK);
}
