//! Graceful shutdown of the real binary: a request in flight when SIGTERM arrives completes,
//! then the process exits 0.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use mimi_wire::verification_key::{VerificationKeyRequest, VerificationKeyResponse};
use mimi_wire::{decode_exact, encode};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_at_sigterm_completes_then_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = GatewayProcess::serve(dir.path(), &[], &loopback_env(dir.path()));
    let federation = gateway.address("federation");
    let ca = dir.path().join("dev-certs/ca.pem");

    let body = encode(&VerificationKeyRequest { version: 1 }).unwrap();
    let (sender, streamed) = ChannelBody::new(Some(body.len() as u64));
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let client = TlsClient::new(&ca, Protocol::Http1);
    let in_flight = tokio::spawn(async move {
        client
            .send_body(
                federation,
                Method::POST,
                "/verification_key",
                headers,
                streamed,
            )
            .await
    });
    // Half the body is on the wire: the request is in flight.
    sender
        .send(Bytes::copy_from_slice(&body[..1]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        gateway.child.try_wait().unwrap().is_none(),
        "still draining the request"
    );
    sender
        .send(Bytes::copy_from_slice(&body[1..]))
        .await
        .unwrap();
    drop(sender);

    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let keys: VerificationKeyResponse = decode_exact(&answer.body).unwrap();
    assert_eq!(keys.keys.len(), 1);
    let status = gateway
        .wait_exit(Duration::from_secs(20))
        .expect("exits after draining");
    assert!(status.success(), "exit status {status:?}");
}

/// The banner is the gateway's word that it is up: a SIGTERM or SIGINT sent the moment it is
/// read drains and exits 0, never meets the default action (which kills with the signal).
/// Repeated, since the race this pins (the handler installed after the banner) lost rarely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_on_reading_the_banner_exits_0() {
    for (round, signal) in ["-TERM", "-INT", "-TERM", "-INT", "-TERM", "-INT"]
        .into_iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let mut gateway = GatewayProcess::serve(dir.path(), &[], &loopback_env(dir.path()));
        let sent = std::process::Command::new("kill")
            .args([signal, &gateway.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = gateway
            .wait_exit(Duration::from_secs(20))
            .expect("exits after the signal");
        assert!(
            status.success(),
            "round {round}, {signal}: exit status {status:?}"
        );
    }
}
