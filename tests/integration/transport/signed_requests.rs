//! The signed-request envelope on the application listener: one accepted request, and each
//! rejection of DESIGN.md's check order with its own test. The caller sees a generic 401; the
//! admin metric `mimi_auth_failures_total{reason=...}` shows the gateway refused it for the
//! reason under test and not another.

use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use mimi_wire::signing::{SIGNATURE_HEADER, SenderKind};
use mimi_wire::whoami::WhoAmIResponse;
use mimi_wire::{ErrorCode, ErrorResponse, decode_exact};

use crate::support::*;

const PATH: &str = "/whoami";

async fn assert_refused(harness: &Harness, answer: Answer, reason: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error_code(), ErrorCode::Unauthenticated);
    let body: ErrorResponse = decode_exact(&answer.body).unwrap();
    assert_eq!(
        body.detail, "authentication failed",
        "the caller learns nothing more"
    );
    let series = format!("mimi_auth_failures_total{{reason=\"{reason}\"}}");
    assert_eq!(harness.metric(&series).await, 1, "refused as {reason}");
}

#[tokio::test]
async fn signed_request_is_accepted() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let body = b"hello".to_vec();
    let answer = harness
        .signed(Method::POST, PATH, &body, harness.app.claims())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let who: WhoAmIResponse = decode_exact(&answer.body).unwrap();
    assert_eq!(who.sender_kind, SenderKind::Application);
    assert_eq!(who.sender, harness.app.id.to_string());
    assert_eq!(who.key_id, harness.app.key_id);
    assert_eq!(who.body_length, 5);
    // A GET with a query string is covered too.
    let answer = harness
        .signed(Method::GET, "/whoami?probe=1", b"", harness.app.claims())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    // Both signatures were verified, in a batch or alone (`crate::signatures`), and counted.
    let verified = harness
        .metric("mimi_signatures_verified_total{how=\"batch\"}")
        .await
        + harness
            .metric("mimi_signatures_verified_total{how=\"alone\"}")
            .await;
    assert_eq!(verified, 2);
}

#[tokio::test]
async fn wrong_recipient_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut claims = harness.app.claims();
    claims.recipient = "other.example".into();
    let answer = harness.signed(Method::POST, PATH, b"x", claims).await;
    assert_refused(&harness, answer, "wrong_recipient").await;
}

#[tokio::test]
async fn stale_timestamp_is_refused_in_both_directions() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut past = harness.app.claims();
    past.timestamp = now() - 301;
    assert_eq!(
        harness.signed(Method::POST, PATH, b"x", past).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut future = harness.app.claims();
    future.timestamp = now() + 301;
    let answer = harness.signed(Method::POST, PATH, b"x", future).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let series = "mimi_auth_failures_total{reason=\"stale_timestamp\"}";
    assert_eq!(harness.metric(series).await, 2);
    // Within the window is fine.
    let mut recent = harness.app.claims();
    recent.timestamp = now() - 200;
    assert_eq!(
        harness
            .signed(Method::POST, PATH, b"x", recent)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn replayed_request_id_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let headers = signed_headers(
        &harness.app.key,
        harness.app.claims(),
        &Method::POST,
        PATH,
        b"x",
    );
    let client = harness.client(Protocol::Http1);
    let first = client
        .send(
            harness.application,
            Method::POST,
            PATH,
            headers.clone(),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let again = client
        .send(
            harness.application,
            Method::POST,
            PATH,
            headers,
            b"x".to_vec(),
        )
        .await;
    assert_refused(&harness, again, "replayed_request_id").await;
}

#[tokio::test]
async fn unknown_key_id_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut claims = harness.app.claims();
    claims.key_id = "no-such-key".into();
    let answer = harness.signed(Method::POST, PATH, b"x", claims).await;
    assert_refused(&harness, answer, "unknown_key").await;
}

#[tokio::test]
async fn expired_key_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut claims = harness.app.claims();
    claims.key_id = harness.app.expired_key_id.clone();
    let headers = signed_headers(&harness.app.expired_key, claims, &Method::POST, PATH, b"x");
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::POST,
            PATH,
            headers,
            b"x".to_vec(),
        )
        .await;
    assert_refused(&harness, answer, "expired_key").await;
}

#[tokio::test]
async fn bad_signature_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let impostor = SigningKey::generate(&mut rand::rngs::OsRng);
    let headers = signed_headers(&impostor, harness.app.claims(), &Method::POST, PATH, b"x");
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::POST,
            PATH,
            headers,
            b"x".to_vec(),
        )
        .await;
    assert_refused(&harness, answer, "bad_signature").await;
}

#[tokio::test]
async fn body_changed_after_signing_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let headers = signed_headers(
        &harness.app.key,
        harness.app.claims(),
        &Method::POST,
        PATH,
        b"signed body",
    );
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::POST,
            PATH,
            headers,
            b"altered body".to_vec(),
        )
        .await;
    assert_refused(&harness, answer, "bad_signature").await;
}

#[tokio::test]
async fn path_changed_after_signing_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let headers = signed_headers(
        &harness.app.key,
        harness.app.claims(),
        &Method::GET,
        "/whoami?a=1",
        b"",
    );
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::GET,
            "/whoami?a=2",
            headers,
            vec![],
        )
        .await;
    assert_refused(&harness, answer, "bad_signature").await;
}

#[tokio::test]
async fn unsigned_request_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::POST,
            PATH,
            HeaderMap::new(),
            b"x".to_vec(),
        )
        .await;
    assert_refused(&harness, answer, "unsigned").await;
}

#[tokio::test]
async fn malformed_envelope_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, HeaderValue::from_static("AAAAAAAA"));
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::POST,
            PATH,
            headers,
            b"x".to_vec(),
        )
        .await;
    assert_refused(&harness, answer, "malformed_envelope").await;
}

/// A provider's envelope is not accepted where applications sign.
#[tokio::test]
async fn provider_envelope_on_the_application_listener_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut claims = harness.app.claims();
    claims.sender_kind = SenderKind::Provider;
    let answer = harness.signed(Method::POST, PATH, b"x", claims).await;
    assert_refused(&harness, answer, "wrong_sender_kind").await;
}

#[tokio::test]
async fn unknown_application_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut claims = harness.app.claims();
    claims.sender = uuid::Uuid::new_v4().to_string();
    let answer = harness.signed(Method::POST, PATH, b"x", claims).await;
    assert_refused(&harness, answer, "unknown_sender").await;
}

/// The application listener accepts only signed requests: an unsigned request is 401 even for
/// a path that does not exist; a signed one learns it does not exist.
#[tokio::test]
async fn application_listener_authenticates_before_routing() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let unsigned = harness
        .client(Protocol::Http1)
        .send(
            harness.application,
            Method::GET,
            "/no-such-endpoint",
            HeaderMap::new(),
            vec![],
        )
        .await;
    assert_refused(&harness, unsigned, "unsigned").await;
    let signed = harness
        .signed(Method::GET, "/no-such-endpoint", b"", harness.app.claims())
        .await;
    assert_eq!(signed.error_code(), ErrorCode::NotFound);
}
