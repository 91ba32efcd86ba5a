//! Peers authenticate to the federation listener with keys found by discovery (MIMI
//! Transport, "Endpoint Discovery" and "Verification Key"): gateway B resolves gateway A's
//! DS domain and keys over TLS checked against the development CA, caches them, refreshes at
//! most once per interval for unknown key ids, and refuses forged, replayed, misaddressed or
//! not-allowed requests.

use ed25519_dalek::SigningKey;
use http::{Method, StatusCode};
use mimi_gateway::keys::KeyRing;
use mimi_wire::signing::{RequestClaims, SenderKind};
use mimi_wire::whoami::WhoAmIResponse;
use mimi_wire::{ErrorCode, decode_exact};

use crate::support::*;

struct Peers {
    a: Harness,
    b: Harness,
    ca: std::path::PathBuf,
    _certs: tempfile::TempDir,
}

async fn peers(adjust_b: impl FnOnce(&mut mimi_gateway::config::Config)) -> Peers {
    let certs = tempfile::tempdir().unwrap();
    let domains = ["a.localhost".to_string(), "b.localhost".to_string()];
    mimi_gateway::dev_certs::generate(&domains, certs.path()).unwrap();
    let dir = certs.path().to_path_buf();
    let a = Harness::start_with(StoreSpec::Memory, |config| {
        config.domain = "a.localhost".into();
        config.tls.cert = Some(dir.join("a.localhost.pem"));
        config.tls.key = Some(dir.join("a.localhost-key.pem"));
        config.auth.key_reload_ms = 100;
    })
    .await;
    let a_federation = a.federation;
    let b = Harness::start_with(StoreSpec::Memory, |config| {
        config.domain = "b.localhost".into();
        config.tls.cert = Some(dir.join("b.localhost.pem"));
        config.tls.key = Some(dir.join("b.localhost-key.pem"));
        config.federation.ca_file = Some(dir.join("ca.pem"));
        config
            .federation
            .resolve
            .insert("a.localhost".into(), a_federation);
        // A peer that is down: nothing listens there (and no DNS is ever asked).
        let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        config
            .federation
            .resolve
            .insert("down.localhost".into(), closed);
        config.federation.key_refresh_interval_secs = 3_600;
        adjust_b(config);
    })
    .await;
    Peers {
        ca: dir.join("ca.pem"),
        a,
        b,
        _certs: certs,
    }
}

impl Peers {
    fn a_key(&self) -> (SigningKey, String) {
        let ring = KeyRing::load(&self.a.dir.path().join("signing-keys.toml")).unwrap();
        let current = ring.current(now()).unwrap();
        (current.key.clone(), current.id.clone())
    }

    fn claims(&self, key_id: &str) -> RequestClaims {
        RequestClaims {
            sender_kind: SenderKind::Provider,
            sender: "a.localhost".into(),
            recipient: "b.localhost".into(),
            timestamp: now(),
            request_id: rand::random(),
            key_id: key_id.into(),
        }
    }

    /// A request from A to B's federation `/whoami`, signed with `key`.
    async fn send(&self, key: &SigningKey, claims: RequestClaims) -> Answer {
        let headers = signed_headers(key, claims, &Method::POST, "/whoami", b"hello");
        TlsClient::new(&self.ca, Protocol::Http1)
            .named("b.localhost")
            .send(
                self.b.federation,
                Method::POST,
                "/whoami",
                headers,
                b"hello".to_vec(),
            )
            .await
    }

    /// How often A served its verification keys.
    async fn key_fetches(&self) -> u64 {
        self.a.metric("mimi_requests_total{listener=\"federation\",endpoint=\"verification_key\",status=\"200\"}").await
    }
}

async fn refused_as(harness: &Harness, answer: Answer, reason: &str) {
    assert_eq!(answer.error_code(), ErrorCode::Unauthenticated);
    let series = format!("mimi_auth_failures_total{{reason=\"{reason}\"}}");
    assert!(harness.metric(&series).await >= 1, "refused as {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_is_authenticated_with_its_discovered_keys() {
    let peers = peers(|_| {}).await;
    let (key, key_id) = peers.a_key();
    let answer = peers.send(&key, peers.claims(&key_id)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let who: WhoAmIResponse = decode_exact(&answer.body).unwrap();
    assert_eq!(
        (who.sender_kind, who.sender.as_str()),
        (SenderKind::Provider, "a.localhost")
    );
    assert_eq!(peers.key_fetches().await, 1, "discovered once");
    let ds_domain =
        "mimi_requests_total{listener=\"federation\",endpoint=\"ds_domain\",status=\"200\"}";
    assert_eq!(peers.a.metric(ds_domain).await, 1);

    // Cached: more requests fetch nothing.
    for _ in 0..3 {
        assert_eq!(
            peers.send(&key, peers.claims(&key_id)).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(peers.key_fetches().await, 1);

    // Unknown key ids: within the refresh interval, no more fetches however many arrive.
    for index in 0..5 {
        let answer = peers
            .send(&key, peers.claims(&format!("made-up-{index}")))
            .await;
        assert_eq!(answer.error_code(), ErrorCode::Unauthenticated);
    }
    assert_eq!(
        peers.key_fetches().await,
        1,
        "unknown key ids are rate-limited"
    );
    refused_as(
        &peers.b,
        peers.send(&key, peers.claims("made-up")).await,
        "unknown_key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_refreshes_once_the_interval_allows() {
    let peers = peers(|config| config.federation.key_refresh_interval_secs = 0).await;
    let (key, key_id) = peers.a_key();
    assert_eq!(
        peers.send(&key, peers.claims(&key_id)).await.status,
        StatusCode::OK
    );
    assert_eq!(peers.key_fetches().await, 1);
    let answer = peers.send(&key, peers.claims("rotated-away")).await;
    assert_eq!(answer.error_code(), ErrorCode::Unauthenticated);
    assert_eq!(
        peers.key_fetches().await,
        2,
        "one refresh for the unknown key id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_misaddressed_peer_requests_are_refused() {
    let peers = peers(|_| {}).await;
    let (key, key_id) = peers.a_key();
    let forger = SigningKey::generate(&mut rand::rngs::OsRng);
    refused_as(
        &peers.b,
        peers.send(&forger, peers.claims(&key_id)).await,
        "bad_signature",
    )
    .await;

    let claims = peers.claims(&key_id);
    assert_eq!(
        peers.send(&key, claims.clone()).await.status,
        StatusCode::OK
    );
    refused_as(
        &peers.b,
        peers.send(&key, claims).await,
        "replayed_request_id",
    )
    .await;

    let mut elsewhere = peers.claims(&key_id);
    elsewhere.recipient = "c.localhost".into();
    refused_as(
        &peers.b,
        peers.send(&key, elsewhere).await,
        "wrong_recipient",
    )
    .await;

    // A peer that cannot be reached is refused, not waited on.
    let mut unknown = peers.claims(&key_id);
    unknown.sender = "down.localhost".into();
    refused_as(
        &peers.b,
        peers.send(&key, unknown).await,
        "peer_keys_unavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_outside_the_allow_list_are_refused() {
    let peers = peers(|config| config.federation.allowed_peers = vec!["c.localhost".into()]).await;
    let (key, key_id) = peers.a_key();
    refused_as(
        &peers.b,
        peers.send(&key, peers.claims(&key_id)).await,
        "peer_not_allowed",
    )
    .await;
    assert_eq!(
        peers.key_fetches().await,
        0,
        "nothing fetched for a peer that is not allowed"
    );
}

/// Keys past (or before) their validity are never used: A publishes a key whose window has
/// not begun; B, which learns it from A's `/verification_key`, refuses a request signed with
/// it, and accepts one signed with A's current key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_key_outside_its_validity_is_never_used() {
    let peers = peers(|_| {}).await;
    let path = peers.a.dir.path().join("signing-keys.toml");
    let ring = KeyRing::load(&path).unwrap();
    let mut keys: Vec<mimi_gateway::keys::SigningKeyEntry> = ring
        .keys()
        .iter()
        .map(|key| mimi_gateway::keys::SigningKeyEntry {
            id: key.id.clone(),
            key: key.key.clone(),
            not_before: key.not_before,
            not_after: key.not_after,
        })
        .collect();
    let mut future = mimi_gateway::keys::SigningKeyEntry::generate(now() + 3_600, 3_600);
    future.id = "not-yet-valid".into();
    let (future_key, future_id) = (future.key.clone(), future.id.clone());
    keys.push(future);
    KeyRing::new(keys).save(&path).unwrap();
    // A reloads its key file and publishes the new key beside its current one.
    let published = eventually(std::time::Duration::from_secs(30), || async {
        let answer = TlsClient::new(&peers.ca, Protocol::Http1)
            .named("a.localhost")
            .send(
                peers.a.federation,
                Method::GET,
                "/verification_key",
                http::HeaderMap::new(),
                Vec::new(),
            )
            .await;
        decode_exact::<mimi_wire::verification_key::VerificationKeyResponse>(&answer.body)
            .is_ok_and(|keys| keys.keys.iter().any(|key| key.key_id == future_id))
    })
    .await;
    assert!(published, "A publishes the key");

    let answer = peers.send(&future_key, peers.claims(&future_id)).await;
    refused_as(&peers.b, answer, "expired_key").await;
    let (key, id) = peers.a_key();
    let answer = peers.send(&key, peers.claims(&id)).await;
    assert_eq!(answer.status, StatusCode::OK);
}
