//! MIMI Transport over the real listeners: TLS 1.3 only, both HTTP versions, discovery,
//! verification keys, error bodies, and the request limits.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use mimi_gateway::keys::KeyRing;
use mimi_wire::signing::{RequestClaims, SenderKind, sign};
use mimi_wire::verification_key::{VerificationKeyRequest, VerificationKeyResponse};
use mimi_wire::{ErrorCode, decode_exact, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn octet_stream() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers
}

/// "All HTTP queries described in this document MUST use TLS with version 1.3 or higher."
#[tokio::test]
async fn tls12_client_is_refused_at_the_handshake() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(root_store(&harness.ca))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    for addr in [harness.application, harness.federation] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let error = connector
            .connect(name, tcp)
            .await
            .expect_err("TLS 1.2 must be refused");
        assert!(
            error.to_string().to_lowercase().contains("protocol"),
            "refused for its version: {error}"
        );
    }
}

#[tokio::test]
async fn tls13_serves_http1_and_h2_on_the_same_port() {
    let harness = Harness::start(StoreSpec::Memory).await;
    for (protocol, alpn) in [
        (Protocol::Http1, &b"http/1.1"[..]),
        (Protocol::Http2, &b"h2"[..]),
    ] {
        let client = harness.client(protocol);
        let stream = client.connect(harness.federation).await;
        let (_, connection) = stream.get_ref();
        assert_eq!(
            connection.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(connection.alpn_protocol(), Some(alpn));
        let answer = client
            .send(
                harness.federation,
                Method::GET,
                "/.well-known/mimi/ds-domain",
                HeaderMap::new(),
                vec![],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{protocol:?}");
        assert_eq!(&answer.body[..], b"localhost");
    }
}

/// MIMI Transport, "Endpoint Discovery": the DS domain as a bare FQDN in text/plain.
#[tokio::test]
async fn well_known_answers_the_configured_ds_domain() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.ds_domain = Some("ds.localhost".into())
    })
    .await;
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.federation,
            Method::GET,
            "/.well-known/mimi/ds-domain",
            HeaderMap::new(),
            vec![],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(&answer.body[..], b"ds.localhost");
    let content_type = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(content_type.starts_with("text/plain"));
    // Discovery lives on the federation listener only.
    let elsewhere = harness
        .signed(
            Method::GET,
            "/.well-known/mimi/ds-domain",
            b"",
            harness.app.claims(),
        )
        .await;
    assert_eq!(elsewhere.error_code(), ErrorCode::NotFound);
}

/// MIMI Transport, "Verification Key": the keys decode, and a request signed with the
/// gateway's key verifies under the published key.
#[tokio::test]
async fn verification_key_decodes_and_verifies_a_signed_request() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let request = encode(&VerificationKeyRequest { version: 1 }).unwrap();
    let client = harness.client(Protocol::Http2);
    for (method, body) in [(Method::GET, vec![]), (Method::POST, request)] {
        let answer = client
            .send(
                harness.federation,
                method,
                "/verification_key",
                octet_stream(),
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        let keys: VerificationKeyResponse = decode_exact(&answer.body).unwrap();
        assert_eq!(keys.version, 1);
        assert_eq!(keys.domain, "localhost");
        assert_eq!(keys.keys.len(), 1);

        let ring = KeyRing::load(&harness.dir.path().join("signing-keys.toml")).unwrap();
        let signing = ring.current(now()).unwrap();
        let published = keys.key(&signing.id).expect("current key is published");
        assert!(published.is_valid_at(now()));
        let claims = RequestClaims {
            sender_kind: SenderKind::Provider,
            sender: "localhost".into(),
            recipient: "peer.example".into(),
            timestamp: now(),
            request_id: rand::random(),
            key_id: signing.id.clone(),
        };
        let envelope = sign(&signing.key, claims, "POST", "/group_operation", b"payload").unwrap();
        let verifying = published.ed25519().expect("an Ed25519 key");
        envelope
            .verify("POST", "/group_operation", b"payload", &verifying)
            .expect("verifies");
        assert!(
            envelope
                .verify("POST", "/group_operation", b"other", &verifying)
                .is_err()
        );
    }
}

#[tokio::test]
async fn verification_key_request_of_unknown_version_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let body = encode(&VerificationKeyRequest { version: 9 }).unwrap();
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.federation,
            Method::POST,
            "/verification_key",
            octet_stream(),
            body,
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::UnsupportedVersion);
}

/// Garbage, trailing bytes and truncated bodies are 400 with the malformed-body code, and the
/// server keeps answering (nothing panicked).
#[tokio::test]
async fn malformed_bodies_are_400_and_never_panic() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let valid = encode(&VerificationKeyRequest { version: 1 }).unwrap();
    let mut trailing = valid.clone();
    trailing.push(0);
    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage", vec![0xff, 0xfe, 0xfd, 0x80, 0x00]),
        ("trailing", trailing),
        ("truncated", valid[..1].to_vec()),
    ];
    let client = harness.client(Protocol::Http1);
    for (name, body) in cases {
        let answer = client
            .send(
                harness.federation,
                Method::POST,
                "/verification_key",
                octet_stream(),
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(answer.error_code(), ErrorCode::MalformedBody, "{name}");
    }
    let answer = client
        .send(
            harness.federation,
            Method::POST,
            "/verification_key",
            octet_stream(),
            valid,
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "still serving after bad input"
    );
}

#[tokio::test]
async fn other_content_types_are_415() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.federation,
            Method::POST,
            "/verification_key",
            headers,
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::UnsupportedMediaType);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let client = harness.client(Protocol::Http1);
    let missing = client
        .send(
            harness.federation,
            Method::GET,
            "/nope",
            HeaderMap::new(),
            vec![],
        )
        .await;
    assert_eq!(missing.error_code(), ErrorCode::NotFound);
    let wrong = client
        .send(
            harness.federation,
            Method::DELETE,
            "/verification_key",
            HeaderMap::new(),
            vec![],
        )
        .await;
    assert_eq!(wrong.error_code(), ErrorCode::MethodNotAllowed);
    assert!(wrong.headers.contains_key("x-request-id"));
}

/// A declared length over the cap is refused before any of the body is sent.
#[tokio::test]
async fn declared_oversized_body_is_413_without_reading_it() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let (_keep_open, body) = ChannelBody::new(Some(2 * 1024 * 1024));
    let answer = harness
        .client(Protocol::Http1)
        .send_body(
            harness.federation,
            Method::POST,
            "/verification_key",
            octet_stream(),
            body,
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::BodyTooLarge);
}

/// A body without a declared length is cut off once it crosses the cap.
#[tokio::test]
async fn streamed_oversized_body_is_413() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.max_body_bytes = 64 * 1024
    })
    .await;
    let (sender, body) = ChannelBody::new(None);
    tokio::spawn(async move {
        for _ in 0..8 {
            if sender
                .send(Bytes::from(vec![0u8; 16 * 1024]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let answer = harness
        .client(Protocol::Http2)
        .send_body(
            harness.federation,
            Method::POST,
            "/verification_key",
            octet_stream(),
            body,
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::BodyTooLarge);
}

/// A client that never finishes its headers is disconnected after the header read timeout.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.header_read_timeout_ms = 300
    })
    .await;
    let mut stream = harness
        .client(Protocol::Http1)
        .connect(harness.federation)
        .await;
    stream
        .write_all(b"GET /.well-known/mimi/ds-domain HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(!String::from_utf8_lossy(&buffer).contains("200 OK"));
}

/// Past the connection limit, a new connection waits until one closes.
#[tokio::test]
async fn connection_limit_holds_new_connections_until_one_closes() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.max_connections = 1
    })
    .await;
    let client = harness.client(Protocol::Http1);
    let first = client.connect(harness.federation).await;
    let second = tokio::time::timeout(
        Duration::from_millis(500),
        client.connect(harness.federation),
    )
    .await;
    assert!(
        second.is_err(),
        "second handshake must wait while the first connection is open"
    );
    drop(first);
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.send(
            harness.federation,
            Method::GET,
            "/.well-known/mimi/ds-domain",
            HeaderMap::new(),
            vec![],
        ),
    )
    .await
    .expect("served once the first connection closed");
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_reports_health_readiness_and_metrics() {
    let harness = Harness::start(StoreSpec::Memory).await;
    assert_eq!(admin_get(harness.admin, "/healthz").await.0, StatusCode::OK);
    assert_eq!(admin_get(harness.admin, "/readyz").await.0, StatusCode::OK);
    let client = harness.client(Protocol::Http1);
    for _ in 0..3 {
        client
            .send(
                harness.federation,
                Method::GET,
                "/.well-known/mimi/ds-domain",
                HeaderMap::new(),
                vec![],
            )
            .await;
    }
    client
        .send(
            harness.federation,
            Method::GET,
            "/nope",
            HeaderMap::new(),
            vec![],
        )
        .await;
    let labels = "listener=\"federation\",endpoint=\"ds_domain\",status=\"200\"";
    assert_eq!(
        harness
            .metric(&format!("mimi_requests_total{{{labels}}}"))
            .await,
        3
    );
    assert_eq!(
        harness
            .metric(&format!("mimi_request_duration_seconds_count{{{labels}}}"))
            .await,
        3
    );
    let unmatched = "listener=\"federation\",endpoint=\"unmatched\",status=\"404\"";
    assert_eq!(
        harness
            .metric(&format!("mimi_requests_total{{{unmatched}}}"))
            .await,
        1
    );
    // The admin listener is plain HTTP on loopback and not reachable over the data ports.
    let answer = client
        .send(
            harness.federation,
            Method::GET,
            "/metrics",
            HeaderMap::new(),
            vec![],
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::NotFound);
}

/// 0-RTT data is replayable: a resuming client offering early data never gets it accepted.
#[tokio::test]
async fn early_data_is_never_accepted() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(root_store(&harness.ca))
        .with_no_client_auth();
    config.enable_early_data = true;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).early_data(true);
    let request =
        b"GET /.well-known/mimi/ds-domain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for attempt in 0..2 {
        let tcp = tokio::net::TcpStream::connect(harness.federation)
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok_and(|read| read.is_ok()),
            "attempt {attempt}: answered"
        );
        assert!(
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
            "attempt {attempt}"
        );
        let (_, connection) = stream.get_ref();
        assert!(
            !connection.is_early_data_accepted(),
            "attempt {attempt}: early data refused"
        );
        if attempt == 1 {
            assert_eq!(
                connection.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed),
                "the offer was real"
            );
        }
    }
}

/// A body that stops arriving is answered 408 once the request timeout passes.
#[tokio::test]
async fn stalled_body_is_408_after_the_request_timeout() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.request_timeout_ms = 300
    })
    .await;
    let (sender, body) = ChannelBody::new(Some(2));
    sender.send(Bytes::from_static(&[0])).await.unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        harness.client(Protocol::Http1).send_body(
            harness.federation,
            Method::POST,
            "/verification_key",
            octet_stream(),
            body,
        ),
    )
    .await
    .expect("answered before the client gave up");
    assert_eq!(answer.error_code(), ErrorCode::RequestTimeout);
    drop(sender);
}
