//! What federation costs (issue 7): two gateways on loopback (a.localhost, b.localhost, the
//! test CA), each on its own real `redis-server`, one group with Alice on A (the hub) and
//! Carol on B. Per round it times:
//! - a commit at the hub (Alice's self-update, `PUT .../epochs` at A, answered 201);
//! - the hub's fan-out reaching the follower (from A's 201 until B's control messages hold
//!   the epoch; B is polled every millisecond, so the figure is an upper bound);
//! - a commit forwarded by the follower (Carol's self-update at B, which validates it against
//!   its mirror and forwards it to A's `/group_operation`; answered 201 once A accepted it and
//!   A's fan-out reached B's mirror, `federation.mirror_wait_ms`);
//! - an application message sent at the hub reaching Carol's queue at B.
//!
//! Every request is a signed HTTPS request on a new TLS 1.3 connection (HTTP/1.1), as the
//! integration tests make them, on both paths alike.
//!
//! Run: `cargo bench --bench federation` (env `ROUNDS`, default 20). Bounded by that count
//! and 120 seconds.

#[path = "machine.rs"]
mod machine;
#[allow(dead_code, unused_imports)]
#[path = "../integration/support/mod.rs"]
mod support;
#[allow(dead_code, unused_imports)]
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use mimi_wire::messages::{FetchMessagesRequest, QueuedMessagesResponse, SendGroupMessageRequest};
use mimi_wire::{decode_exact, encode};

use support::federation::{Federation, key_package_ok, publish_key_packages, welcome_for};
use support::group_client::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{what:<44} p50 {:>7.2} ms  p90 {:>7.2} ms  max {:>7.2} ms  ({} samples)",
        millis(at(0.5)),
        millis(at(0.9)),
        millis(samples[samples.len() - 1]),
        samples.len()
    );
}

/// Polls (bounded) until `check` holds; answers how long it took.
async fn until<F, Fut>(started: Instant, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn queued_at(harness: &Harness, handle: &str) -> usize {
    let body = encode(&FetchMessagesRequest {
        version: 1,
        from_sequence: 0,
        limit: 1000,
    })
    .unwrap();
    let answer = harness
        .call(
            Method::POST,
            &format!("/apps/{}/clients/{handle}/messages", harness.app.id),
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    decode_exact::<QueuedMessagesResponse>(&answer.body)
        .unwrap()
        .messages
        .len()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let redis: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let federation = Federation::start(2, |index| StoreSpec::Redis(redis[index].url())).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mut carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    let mut alice = federation.cas[0].member("alice");
    support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    assert_eq!(
        GroupApi::create(a, &group_info, &tree).await.status,
        StatusCode::CREATED
    );
    let hub = GroupApi::new(a, &alice.group_id());
    let mirror = GroupApi::new(b, &alice.group_id());
    let package = key_package_ok(a, carol_id, "b.localhost", "alice").await;
    let (add, welcome, info) = alice.add(&[package]);
    assert_eq!(hub.commit_ok(&add, Some(&info), Some(&welcome)).await, 1);
    carol.join(&welcome_for(b, "carol").await);
    until(Instant::now(), || async {
        mirror.control(1, Some(1)).await.status == StatusCode::OK
    })
    .await;

    println!("machine: {}", machine::machine());
    println!(
        "two gateways on loopback, each on its own redis-server; {rounds} rounds; every request \
         a signed HTTPS request on a new TLS 1.3 connection"
    );
    let (mut direct, mut fanout, mut forwarded, mut sent, mut delivered) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let deadline = Instant::now() + LIMIT;
    let mut epoch = 1;
    for round in 0..rounds {
        if Instant::now() > deadline {
            println!("stopped after {round} rounds: {LIMIT:?} reached");
            break;
        }
        let (commit, info) = alice.update();
        let started = Instant::now();
        assert_eq!(hub.commit_ok(&commit, Some(&info), None).await, epoch + 1);
        direct.push(started.elapsed());
        epoch += 1;
        fanout.push(
            until(started, || async {
                mirror.control(epoch, Some(epoch)).await.status == StatusCode::OK
            })
            .await,
        );
        assert!(!carol.apply(&commit));

        let (commit, info) = carol.update();
        let started = Instant::now();
        assert_eq!(
            mirror.commit_ok(&commit, Some(&info), None).await,
            epoch + 1
        );
        forwarded.push(started.elapsed());
        epoch += 1;
        assert!(!alice.apply(&commit));
        // The next round's fan-out must not overtake this one at B.
        until(Instant::now(), || async {
            mirror.control(epoch, Some(epoch)).await.status == StatusCode::OK
        })
        .await;

        let message = alice.send_message(format!("round {round}").as_bytes());
        let body = encode(&SendGroupMessageRequest {
            version: 1,
            message: message.into(),
            sender: Some("alice".into()),
        })
        .unwrap();
        let path = format!("/apps/{}/groups/{}/messages", a.app.id, hub.group);
        let started = Instant::now();
        let answer = a.call(Method::POST, &path, body).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        sent.push(started.elapsed());
        let expected = round + 1;
        delivered.push(
            until(started, || async {
                queued_at(b, "carol").await >= expected
            })
            .await,
        );
    }
    report("commit at the hub (201)", direct);
    report("  ... fan-out visible at the follower", fanout);
    report("commit forwarded by the follower (201)", forwarded);
    report("application message sent at the hub (201)", sent);
    report("  ... in the member's queue at the follower", delivered);
}
