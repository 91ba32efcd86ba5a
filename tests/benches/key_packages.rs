//! Key package retrieval throughput: a real gateway (in-process, release build) on a real
//! `redis-server` it starts on loopback, driven over TLS 1.3 / HTTP/2 with signed requests.
//! Prints retrievals per second and p50/p99 latency with the machine it ran on.
//!
//! Run: `cargo bench --bench key_packages` (env `RETRIEVALS`, `CONCURRENCY`, `CLIENTS`).
//! Bounded: at most `RETRIEVALS` requests and 60 seconds.

#[path = "machine.rs"]
mod machine;
#[allow(dead_code, unused_imports)]
#[path = "../integration/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mimi_wire::codec::WireBool;
use mimi_wire::key_queues::{
    CreateKeyQueueRequest, CreateKeyQueueResponse, RetrieveKeyPackageRequest, UpdateKeyQueueRequest,
};
use mimi_wire::registry::{RegisterClientRequest, RegisterClientResponse};
use mimi_wire::{decode_exact, encode};
use tls_codec::VLBytes;
use uuid::Uuid;

use support::*;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let retrievals = setting("RETRIEVALS", 20_000);
    let concurrency = setting("CONCURRENCY", 32);
    let clients = setting("CLIENTS", 100);
    let redis = RedisServer::start();
    let harness = Harness::start_with(StoreSpec::Redis(redis.url()), |config| {
        config.auth.timestamp_window_secs = 3_600;
        config.key_packages.max_per_queue = 100_000;
    })
    .await;

    // Clients, each with a queue of packages (one per expected retrieval, plus slack).
    let per_client = retrievals / clients + 1;
    let mut queues = Vec::new();
    let prepared = Instant::now();
    for index in 0..clients {
        let handle = format!("client-{index}");
        let body = encode(&RegisterClientRequest {
            version: 1,
            client_handle: handle.clone(),
            tags: vec![],
        })
        .unwrap();
        let answer = harness
            .call(
                Method::POST,
                &format!("/apps/{}/clients", harness.app.id),
                body,
            )
            .await;
        let client = Uuid::from_bytes(
            decode_exact::<RegisterClientResponse>(&answer.body)
                .unwrap()
                .client_id,
        );
        let body = encode(&CreateKeyQueueRequest {
            version: 1,
            protocol_version: 1,
            cipher_suite: 1,
            app_label: String::new(),
        })
        .unwrap();
        let answer = harness
            .call(
                Method::POST,
                &format!("/apps/{}/clients/{client}/queues", harness.app.id),
                body,
            )
            .await;
        let queue = Uuid::from_bytes(
            decode_exact::<CreateKeyQueueResponse>(&answer.body)
                .unwrap()
                .key_queue_id,
        );
        let mls = support::mls_client::MlsClient::basic(&handle);
        let packages: Vec<VLBytes> = (0..per_client)
            .map(|_| VLBytes::new(mls.key_package(86_400)))
            .collect();
        for chunk in packages.chunks(500) {
            let body = encode(&UpdateKeyQueueRequest {
                version: 1,
                key_packages: chunk.to_vec(),
                is_reset: WireBool(false),
                app_label: None,
                final_key: None,
            })
            .unwrap();
            let answer = harness
                .call(
                    Method::PATCH,
                    &format!("/apps/{}/clients/{client}/queues/{queue}", harness.app.id),
                    body,
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK);
        }
        queues.push(client);
    }
    eprintln!(
        "prepared {clients} clients x {per_client} key packages in {:.1} s",
        prepared.elapsed().as_secs_f64()
    );

    // Workers on persistent HTTP/2 connections; each request is freshly signed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    let mut workers = Vec::new();
    let shared = std::sync::Arc::new((
        harness.app.id,
        harness.app.key.clone(),
        harness.app.claims(),
        queues,
    ));
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..concurrency {
        let tls = harness
            .client(Protocol::Http2)
            .connect(harness.application)
            .await;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let shared = shared.clone();
        let counter = counter.clone();
        workers.push(tokio::spawn(async move {
            let (app, key, template, queues) = &*shared;
            let mut latencies = Vec::new();
            loop {
                let index = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= retrievals || Instant::now() >= deadline {
                    break;
                }
                let client = queues[index % queues.len()];
                let path = format!("/apps/{app}/clients/{client}/keyPackage");
                let body = encode(&RetrieveKeyPackageRequest {
                    version: 1,
                    domain: None,
                    protocol_version: 1,
                    cipher_suite: 1,
                    app_label: None,
                    receiver_client_id: format!("receiver-{index}"),
                })
                .unwrap();
                let mut claims = template.clone();
                claims.timestamp = now();
                claims.request_id = rand::random();
                let headers = signed_headers(key, claims, &Method::POST, &path, &body);
                let mut request = Request::builder()
                    .method(Method::POST)
                    .uri(format!("https://localhost{path}"))
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                request.headers_mut().extend(headers);
                let sent = Instant::now();
                let response = sender.send_request(request).await.expect("answer");
                let status = response.status();
                let _ = response.into_body().collect().await;
                latencies.push(sent.elapsed());
                assert_eq!(status, StatusCode::OK);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("machine: {}", machine::machine());
    println!(
        "key package retrieval over TLS 1.3/h2, signed, real Redis: {} retrievals, {concurrency} concurrent, {:.1} s",
        latencies.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "throughput {:.0} retrievals/s; latency p50 {:.2} ms, p99 {:.2} ms",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3
    );
}
