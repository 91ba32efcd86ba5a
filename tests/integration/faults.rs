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

use crate::common::*;
use crate::mls_client::MlsClient;

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

/// `try_call` until the gateway answers with a status other than 503 (at most ~20 s).
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

/// A gateway killed with SIGKILL while four clients retrieve key packages concurrently, then
/// started again: every retrieval gets an answer in the end, no key package goes to two
/// receivers, and a receiver asking again after losing its answer gets the same package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_retrieval_hands_no_key_package_out_twice() {
    const PACKAGES: usize = 80;
    const WORKERS: usize = 4;
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
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let client = Arc::new(TlsClient::new(
        &dir.path().join("dev-certs/ca.pem"),
        Protocol::Http1,
    ));

    // Carol with a queue of PACKAGES key packages.
    let register = encode(&RegisterClientRequest {
        version: 1,
        client_handle: "carol".into(),
        tags: vec![],
    })
    .unwrap();
    let path = format!("/apps/{}/clients", app.id);
    let (status, body) =
        call_until_answered(&client, &app, address, Method::POST, &path, &register).await;
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
    let path = format!("/apps/{}/clients/{carol}/queues", app.id);
    let (status, body) =
        call_until_answered(&client, &app, address, Method::POST, &path, &queue).await;
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
    let path = format!("/apps/{}/clients/{carol}/queues/{queue}", app.id);
    let (status, _) =
        call_until_answered(&client, &app, address, Method::PATCH, &path, &upload).await;
    assert_eq!(status, StatusCode::OK);

    // Four workers, each PACKAGES / WORKERS retrievals for fresh receivers; the gateway is
    // killed after the first few answers and started again.
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (client, app, answered) = (client.clone(), app.clone(), answered.clone());
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
                let path = format!("/apps/{}/clients/{carol}/keyPackage", app.id);
                let (status, answer) =
                    call_until_answered(&client, &app, address, Method::POST, &path, &body).await;
                assert_eq!(status, StatusCode::OK, "{receiver}");
                let answer = decode_exact::<RetrieveKeyPackageResponse>(&answer).unwrap();
                assert!(!answer.is_final_key.0);
                // Asking again for the same receiver answers the same package.
                let (_, again) =
                    call_until_answered(&client, &app, address, Method::POST, &path, &body).await;
                let again = decode_exact::<RetrieveKeyPackageResponse>(&again).unwrap();
                assert_eq!(again.key_package, answer.key_package, "{receiver} again");
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                got.push(answer.key_package.as_slice().to_vec());
                // Paced, so the kill lands while retrievals are still to come.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            got
        }));
    }
    let killed = eventually(Duration::from_secs(30), || {
        let answered = answered.clone();
        async move { answered.load(std::sync::atomic::Ordering::Relaxed) >= 10 }
    })
    .await;
    assert!(killed, "retrievals started");
    let at_kill = answered.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        at_kill < PACKAGES,
        "the kill lands mid-way ({at_kill} answered)"
    );
    {
        let mut running = gateway.lock().unwrap();
        let mut process = running.take().unwrap();
        process.child.kill().unwrap(); // SIGKILL
        process.child.wait().unwrap();
    }
    let restarted = start(dir.path(), &config, port);
    *gateway.lock().unwrap() = Some(restarted);
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
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
