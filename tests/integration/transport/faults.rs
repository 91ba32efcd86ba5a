//! Faults under load, kept as tests (issue 14, "Faults and the promises"), bounded in count
//! and time: the gateway process killed with SIGKILL in the middle of concurrent key-package
//! retrievals on Redis, then started again on the same ports and store.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use mimi_wire::key_queues::{
    CreateKeyQueueRequest, CreateKeyQueueResponse, RetrieveKeyPackageRequest,
    RetrieveKeyPackageResponse, UpdateKeyQueueRequest,
};
use mimi_wire::registry::{RegisterClientRequest, RegisterClientResponse};
use mimi_wire::{codec::WireBool, decode_exact, encode};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::support::mls_client::MlsClient;
use crate::support::*;

/// One signed request, or `None` if the gateway was not there to answer it (refused, reset,
/// killed mid-request).
async fn try_call(
    client: &TlsClient,
    app: &TestApp,
    address: std::net::SocketAddr,
    method: Method,
    path: &str,
    body: &[u8],
) -> Option<(StatusCode, Bytes)> {
    let headers = signed_headers(&app.key, app.claims(), &method, path, body);
    try_call_with(client, address, method, path, headers, body).await
}

/// `try_call` until the gateway answers with a status other than 503 or 504 (at most ~20 s).
async fn call_until_answered(
    client: &TlsClient,
    app: &TestApp,
    address: std::net::SocketAddr,
    method: Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, Bytes) {
    for _ in 0..400 {
        if let Some(answer) = try_call(client, app, address, method.clone(), path, body).await
            && answer.0 != StatusCode::SERVICE_UNAVAILABLE
            // An unknown outcome of a retrieval is resolved by asking again.
            && answer.0 != StatusCode::GATEWAY_TIMEOUT
        {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} was never answered");
}

fn start(dir: &Path, config: &Path, application: u16) -> GatewayProcess {
    let mut env = loopback_env(dir);
    env.push((
        "MIMI_LISTENERS__APPLICATION",
        format!("127.0.0.1:{application}"),
    ));
    GatewayProcess::serve(dir, &["--config", config.to_str().unwrap()], &env)
}

const PACKAGES: usize = 80;
const WORKERS: usize = 4;

/// One worker's retrievals: the packages it was handed.
type Retrievals = tokio::task::JoinHandle<Vec<Vec<u8>>>;

/// Where the retrievals go and as whom.
#[derive(Clone)]
struct Workload {
    client: Arc<TlsClient>,
    app: TestApp,
    address: std::net::SocketAddr,
}

impl Workload {
    async fn call(&self, method: Method, path: &str, body: &[u8]) -> (StatusCode, Bytes) {
        call_until_answered(&self.client, &self.app, self.address, method, path, body).await
    }

    /// Carol, registered with one queue of PACKAGES key packages.
    async fn carol_with_packages(&self) -> Uuid {
        let register = encode(&RegisterClientRequest {
            version: 1,
            client_handle: "carol".into(),
            tags: vec![],
        })
        .unwrap();
        let path = format!("/apps/{}/clients", self.app.id);
        let (status, body) = self.call(Method::POST, &path, &register).await;
        assert_eq!(status, StatusCode::CREATED);
        let carol = Uuid::from_bytes(
            decode_exact::<RegisterClientResponse>(&body)
                .unwrap()
                .client_id,
        );
        let queue = encode(&CreateKeyQueueRequest {
            version: 1,
            protocol_version: 1,
            cipher_suite: 1,
            app_label: String::new(),
        })
        .unwrap();
        let path = format!("/apps/{}/clients/{carol}/queues", self.app.id);
        let (status, body) = self.call(Method::POST, &path, &queue).await;
        assert_eq!(status, StatusCode::CREATED);
        let queue = Uuid::from_bytes(
            decode_exact::<CreateKeyQueueResponse>(&body)
                .unwrap()
                .key_queue_id,
        );
        let mls = MlsClient::basic("carol");
        let upload = encode(&UpdateKeyQueueRequest {
            version: 1,
            key_packages: (0..PACKAGES)
                .map(|_| VLBytes::new(mls.key_package(3_600)))
                .collect(),
            is_reset: WireBool(false),
            app_label: None,
            final_key: None,
        })
        .unwrap();
        let path = format!("/apps/{}/clients/{carol}/queues/{queue}", self.app.id);
        let (status, _) = self.call(Method::PATCH, &path, &upload).await;
        assert_eq!(status, StatusCode::OK);
        carol
    }

    /// WORKERS workers, each PACKAGES / WORKERS retrievals of Carol's packages for fresh
    /// receivers (each asked twice: the second answer must repeat the first), paced so a
    /// fault lands while retrievals are still to come. Answers the workers and the count of
    /// receivers answered so far.
    fn retrieve_concurrently(
        &self,
        carol: Uuid,
    ) -> (Vec<Retrievals>, Arc<std::sync::atomic::AtomicUsize>) {
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for worker in 0..WORKERS {
            let (workload, answered) = (self.clone(), answered.clone());
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for n in 0..PACKAGES / WORKERS {
                    let receiver = format!("r{worker}-{n}");
                    let body = encode(&RetrieveKeyPackageRequest {
                        version: 1,
                        domain: None,
                        protocol_version: 1,
                        cipher_suite: 1,
                        app_label: None,
                        receiver_client_id: receiver.clone(),
                    })
                    .unwrap();
                    let path = format!("/apps/{}/clients/{carol}/keyPackage", workload.app.id);
                    let (status, answer) = workload.call(Method::POST, &path, &body).await;
                    assert_eq!(status, StatusCode::OK, "{receiver}");
                    let answer = decode_exact::<RetrieveKeyPackageResponse>(&answer).unwrap();
                    assert!(!answer.is_final_key.0);
                    // Asking again for the same receiver answers the same package.
                    let (_, again) = workload.call(Method::POST, &path, &body).await;
                    let again = decode_exact::<RetrieveKeyPackageResponse>(&again).unwrap();
                    assert_eq!(again.key_package, answer.key_package, "{receiver} again");
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    got.push(answer.key_package.as_slice().to_vec());
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                got
            }));
        }
        (workers, answered)
    }
}

/// Waits (bounded) until at least 10 receivers were answered, and checks the fault will land
/// mid-way.
async fn until_retrievals_are_under_way(answered: &std::sync::atomic::AtomicUsize) {
    let started = eventually(Duration::from_secs(30), || async {
        answered.load(std::sync::atomic::Ordering::Relaxed) >= 10
    })
    .await;
    assert!(started, "retrievals started");
    let at_fault = answered.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        at_fault < PACKAGES,
        "the fault lands mid-way ({at_fault} answered)"
    );
}

/// Every receiver got a package, and no package went to two receivers.
async fn every_package_went_to_one_receiver(workers: Vec<tokio::task::JoinHandle<Vec<Vec<u8>>>>) {
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    assert_eq!(all.len(), PACKAGES);
    let distinct: std::collections::BTreeSet<&Vec<u8>> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        PACKAGES,
        "no key package went to two receivers"
    );
}

/// A gateway killed with SIGKILL while four clients retrieve key packages concurrently, then
/// started again: every retrieval gets an answer in the end, no key package goes to two
/// receivers, and a receiver asking again after losing its answer gets the same package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_retrieval_hands_no_key_package_out_twice() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::new();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nredis_url = \"{}\"\n[[applications]]\nid = \"{}\"\n[[applications.keys]]\nid = \"{}\"\npublic_key = \"{}\"\n",
            redis.url(),
            app.id,
            app.key_id,
            hex::encode(app.key.verifying_key().as_bytes())
        ),
    )
    .unwrap();
    let port = free_listener_port();
    let gateway = Arc::new(Mutex::new(Some(start(dir.path(), &config, port))));
    let workload = Workload {
        client: Arc::new(TlsClient::new(
            &dir.path().join("dev-certs/ca.pem"),
            Protocol::Http1,
        )),
        app,
        address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let carol = workload.carol_with_packages().await;
    let (workers, answered) = workload.retrieve_concurrently(carol);
    until_retrievals_are_under_way(&answered).await;
    {
        let mut running = gateway.lock().unwrap();
        let mut process = running.take().unwrap();
        process.child.kill().unwrap(); // SIGKILL
        process.child.wait().unwrap();
    }
    let restarted = start(dir.path(), &config, port);
    *gateway.lock().unwrap() = Some(restarted);
    every_package_went_to_one_receiver(workers).await;
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// Redis killed with SIGKILL (it persists every write before answering, `appendfsync
/// always`) while four clients retrieve key packages through the gateway, then started again
/// on the same port and data: the gateway answers 503 meanwhile and recovers by itself, every
/// retrieval gets an answer in the end, no key package goes to two receivers, and a receiver
/// asking again gets the same package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_retrieval_hands_no_key_package_out_twice() {
    let mut redis = RedisServer::start_persistent();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    let workload = Workload {
        client: Arc::new(harness.client(Protocol::Http1)),
        app: harness.app.clone(),
        address: harness.application,
    };
    let carol = workload.carol_with_packages().await;
    let (workers, answered) = workload.retrieve_concurrently(carol);
    until_retrievals_are_under_way(&answered).await;
    redis.kill(); // SIGKILL
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    every_package_went_to_one_receiver(workers).await;
    assert!(
        harness
            .metric("mimi_requests_total{listener=\"application\",endpoint=\"retrieve_key_package\",status=\"503\"}")
            .await
            > 0,
        "the outage was seen"
    );
}

/// Carol's queued messages at a gateway's application listener, from sequence 0.
async fn queued_at(
    target: &Target,
    handle: &str,
) -> Option<Vec<mimi_wire::messages::QueuedMessage>> {
    let body = encode(&mimi_wire::messages::FetchMessagesRequest {
        version: 1,
        from_sequence: 0,
        limit: 1_000,
    })
    .unwrap();
    let path = format!("/apps/{}/clients/{handle}/messages", target.app.id);
    let headers = signed_headers(
        &target.app.key,
        target.app.claims(),
        &Method::POST,
        &path,
        &body,
    );
    let client = TlsClient::new(&target.ca, Protocol::Http1).named(&target.app.recipient);
    let (status, body) = try_call_with(
        &client,
        target.application,
        Method::POST,
        &path,
        headers,
        &body,
    )
    .await?;
    (status == StatusCode::OK).then(|| {
        decode_exact::<mimi_wire::messages::QueuedMessagesResponse>(&body)
            .unwrap()
            .messages
    })
}

/// One request with prepared headers, or `None` if nobody answered.
async fn try_call_with(
    client: &TlsClient,
    address: std::net::SocketAddr,
    method: Method,
    path: &str,
    headers: http::HeaderMap,
    body: &[u8],
) -> Option<(StatusCode, Bytes)> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
        let tls = client.handshake(tcp).await.ok()?;
        let body = Full::new(Bytes::from(body.to_vec()));
        let answer = client.exchange(tls, method, path, headers, body).await?;
        Some((answer.status, answer.body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The follower (B, its own `mimi-gateway` process on Redis) killed with SIGKILL while the hub
/// (A) fans out a stream of application messages to it, then started again: Carol's queue at
/// B holds every message once, in the order Alice sent them, and each decrypts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_mid_fanout_receives_every_message_once_in_order() {
    use crate::support::federation::{Federation, alice_at_a_adds_carol_at_b};
    use crate::support::group_client::GroupApi;
    const MESSAGES: usize = 40;
    let redis = RedisServer::start();
    let mut federation = Federation::start(2, |index| match index {
        0 => StoreSpec::Memory,
        _ => StoreSpec::Redis(redis.url()),
    })
    .await;
    let (mut alice, mut carol) = alice_at_a_adds_carol_at_b(&federation, "alice", "carol").await;

    // B from now on is a process of its own, with the same configuration, keys and Redis.
    let b_dir = federation.gateways[1].dir.path().to_path_buf();
    let (b_ca, b_app) = (
        federation.gateways[1].ca.clone(),
        federation.gateways[1].app.clone(),
    );
    let b_target = |process: &GatewayProcess| Target {
        application: process.address("application"),
        ca: b_ca.clone(),
        app: b_app.clone(),
    };
    let config = federation.gateways[1].stop().await;
    let config_file = b_dir.join("b.toml");
    std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();
    let start_b =
        || GatewayProcess::serve(&b_dir, &["--config", config_file.to_str().unwrap()], &[]);
    let mut b = start_b();

    // Alice sends MESSAGES messages through the hub, paced.
    let texts: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|n| format!("message {n}").into_bytes())
        .collect();
    let packets: Vec<Vec<u8>> = texts.iter().map(|text| alice.send_message(text)).collect();
    let sender = tokio::spawn({
        let group = GroupApi::new(&federation.gateways[0], &alice.group_id());
        async move {
            for packet in packets {
                let answer =
                    crate::support::forwarding::send_message_from(&group, &packet, Some("alice"))
                        .await;
                assert_eq!(
                    answer.status,
                    StatusCode::CREATED,
                    "the hub accepts each message"
                );
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    });
    let target = b_target(&b);
    let under_way = eventually(Duration::from_secs(30), || async {
        queued_at(&target, "carol")
            .await
            .is_some_and(|queued| queued.len() >= 5)
    })
    .await;
    assert!(under_way, "the fan-out reached B");
    b.child.kill().unwrap(); // SIGKILL, mid fan-out
    b.child.wait().unwrap();
    assert!(
        !sender.is_finished(),
        "the kill lands while Alice is still sending"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = start_b();
    sender.await.unwrap();
    let target = b_target(&b);
    let all_there = eventually(Duration::from_secs(30), || async {
        queued_at(&target, "carol")
            .await
            .is_some_and(|queued| queued.len() >= MESSAGES)
    })
    .await;
    assert!(all_there, "every message reached Carol's queue");
    let queued = queued_at(&target, "carol").await.unwrap();
    assert_eq!(queued.len(), MESSAGES, "each once");
    let read: Vec<Vec<u8>> = queued
        .iter()
        .map(|entry| carol.read_message(entry.message.as_slice()))
        .collect();
    assert_eq!(read, texts, "in the order Alice sent them");
    assert!(
        federation.gateways[0]
            .metric("mimi_fanout_deliveries_total{outcome=\"retried\"}")
            .await
            > 0,
        "the hub had to retry deliveries the kill cut off"
    );
    let log = std::fs::read_to_string(b_dir.join("gateway.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
