//! Hardening (issue 14): the traffic that took the gateway down or made it work for strangers,
//! sent as an attacker sends it, each with the behaviour that must hold now. Clients of other
//! hosts are other loopback addresses (127.0.0.2, 127.0.0.3).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use http::{Method, StatusCode};
use mimi_wire::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const OTHER_ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Whether the server closes `stream` (end of stream or reset) within `bound`.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> bool {
    let mut buffer = [0u8; 256];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A GOAWAY or an error answer before the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// A signed `/whoami` of the test application, from 127.0.0.1.
async fn whoami(harness: &Harness) -> StatusCode {
    harness
        .call(Method::GET, "/whoami", Vec::new())
        .await
        .status
}

/// Finding 1: idle TLS connections (HTTP/1.1 sending nothing, HTTP/2 sending only the
/// preface) fill every connection slot; another client is still answered, because each is
/// closed once it sent no request head in time, and one address cannot take more than its
/// share (its next connection is closed at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_lock_a_listener_out() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.max_connections = 16;
        config.limits.max_connections_per_ip = 8;
        config.limits.header_read_timeout_ms = 500;
    })
    .await;
    let address = harness.application;
    let http1 = TlsClient::new(&harness.ca, Protocol::Http1);
    let http2 = TlsClient::new(&harness.ca, Protocol::Http2);
    let mut idle = Vec::new();
    for _ in 0..8 {
        let tcp = TlsClient::tcp_from(address, ATTACKER).await;
        idle.push(http1.handshake(tcp).await.expect("handshake"));
    }
    // Slots are free, but this address has its share: its ninth connection is closed before
    // its handshake.
    let ninth = TlsClient::tcp_from(address, ATTACKER).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(10), http1.handshake(ninth))
            .await
            .expect("answered at once")
            .is_err(),
        "an address past its share is refused"
    );
    // Another address takes every slot left, sending only the HTTP/2 preface.
    for _ in 0..8 {
        let tcp = TlsClient::tcp_from(address, OTHER_ATTACKER).await;
        let mut stream = http2.handshake(tcp).await.expect("handshake");
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        idle.push(stream);
    }
    // Another client is answered once the idle ones are closed.
    let answered = tokio::time::timeout(Duration::from_secs(20), whoami(&harness)).await;
    assert_eq!(answered.expect("answered"), StatusCode::OK);
    for stream in &mut idle {
        assert!(closed_by_server(stream, Duration::from_secs(10)).await);
    }
}

/// Finding 1: a kept-alive connection with nothing in flight is closed after the idle
/// timeout; one that keeps sending requests is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.idle_timeout_ms = 300;
        // Long, so only the idle timeout can close the connection within the bound below.
        config.limits.header_read_timeout_ms = 60_000;
    })
    .await;
    let client = TlsClient::new(&harness.ca, Protocol::Http1);
    let mut stream = client.connect(harness.federation).await;
    let request =
        b"GET /.well-known/mimi/ds-domain HTTP/1.1\r\nhost: localhost\r\nconnection: keep-alive\r\n\r\n";
    // Busy for longer than the idle timeout: still open.
    for _ in 0..6 {
        stream.write_all(request).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let read = stream.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed_by_server(&mut stream, Duration::from_secs(5)).await);
}

/// The raw bytes of an HTTP/1.1 POST head to `path` declaring `length` body bytes.
fn post_head(path: &str, length: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/octet-stream\r\n\
         content-length: {length}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The `mimi-signature` header line of a POST to `path` with `body`, signed with `key`.
fn signature_line(
    key: &ed25519_dalek::SigningKey,
    claims: mimi_wire::signing::RequestClaims,
    path: &str,
    body: &[u8],
) -> String {
    let headers = signed_headers(key, claims, &Method::POST, path, body);
    let value = headers[mimi_wire::signing::SIGNATURE_HEADER]
        .to_str()
        .unwrap();
    format!("{}: {value}\r\n", mimi_wire::signing::SIGNATURE_HEADER)
}

/// The status line's code of what the server answered on `stream`.
async fn status_of<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> u16 {
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered without the rest of the body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Finding 2: an unsigned (or forged) request is refused before its body is read: the
/// answer comes while most of the declared body was never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_not_read_before_the_envelope_is_checked() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.request_timeout_ms = 60_000;
        config.limits.body_stall_timeout_ms = 60_000;
    })
    .await;
    let client = TlsClient::new(&harness.ca, Protocol::Http1);
    let path = format!("/apps/{}/clients", harness.app.id);
    let mut unsigned = client.connect(harness.application).await;
    unsigned
        .write_all(&post_head(&path, 1_000_000, ""))
        .await
        .unwrap();
    unsigned.write_all(&[0u8; 10]).await.unwrap();
    assert_eq!(status_of(&mut unsigned).await, 401);
    // A sender 1,400 bytes long is refused as malformed, before any lookup.
    let mut claims = harness.app.claims();
    claims.sender = "a".repeat(1_400);
    let signature = signature_line(&harness.app.key, claims, &path, b"x");
    let mut long_sender = client.connect(harness.application).await;
    long_sender
        .write_all(&post_head(&path, 1_000_000, &signature))
        .await
        .unwrap();
    assert_eq!(status_of(&mut long_sender).await, 401);
}

/// Finding 2: all bodies in flight share one memory budget; a request that would cross it
/// is answered 503 before its body is read, and a body that stalls is 408 and gives its share
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_share_one_budget_and_stalls_time_out() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.max_body_bytes = 64 * 1024;
        config.limits.body_memory_budget_bytes = 64 * 1024;
        config.limits.body_stall_timeout_ms = 500;
    })
    .await;
    let client = TlsClient::new(&harness.ca, Protocol::Http1);
    let path = format!("/apps/{}/clients", harness.app.id);
    let body = vec![0u8; 64 * 1024];
    let signed_head = || {
        let signature = signature_line(&harness.app.key, harness.app.claims(), &path, &body);
        post_head(&path, body.len(), &signature)
    };
    // The first signed request takes the whole budget and stalls half-way.
    let mut stalled = client.connect(harness.application).await;
    stalled.write_all(&signed_head()).await.unwrap();
    stalled.write_all(&body[..1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = client.connect(harness.application).await;
    second.write_all(&signed_head()).await.unwrap();
    assert_eq!(status_of(&mut second).await, 503);
    assert_eq!(status_of(&mut stalled).await, 408);
    // Its share is back: a whole request is read and answered (a malformed registration).
    let mut third = client.connect(harness.application).await;
    third.write_all(&signed_head()).await.unwrap();
    third.write_all(&body).await.unwrap();
    assert_eq!(status_of(&mut third).await, 400);
}

/// Finding 4: a forged envelope writes nothing: its request id is still unused, so the
/// genuine request with that id is accepted afterwards (and only once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_request_leaves_no_trace_in_the_replay_cache() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let client = TlsClient::new(&harness.ca, Protocol::Http1);
    let claims = harness.app.claims();
    let stranger = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = signed_headers(&stranger, claims.clone(), &Method::GET, "/whoami", b"");
    let answer = client
        .send(
            harness.application,
            Method::GET,
            "/whoami",
            forged,
            Vec::new(),
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::Unauthenticated);
    let genuine = signed_headers(&harness.app.key, claims, &Method::GET, "/whoami", b"");
    let answer = client
        .send(
            harness.application,
            Method::GET,
            "/whoami",
            genuine.clone(),
            Vec::new(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let replayed = client
        .send(
            harness.application,
            Method::GET,
            "/whoami",
            genuine,
            Vec::new(),
        )
        .await;
    assert_eq!(replayed.error_code(), ErrorCode::Unauthenticated);
}

/// Finding 5: handles in paths follow the rules of handles in bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_in_paths_are_validated() {
    let harness = Harness::start(StoreSpec::Memory).await;
    for handle in ["a".repeat(300), "%00".to_owned(), "a%0Ab".to_owned()] {
        let path = format!("/apps/{}/clients/{handle}/welcome-msgs", harness.app.id);
        let answer = harness.call(Method::GET, &path, Vec::new()).await;
        assert_eq!(answer.error_code(), ErrorCode::MalformedPath, "{handle}");
    }
}

/// Finding 3: a stranger naming a sender that resolves to a special-purpose address (here a
/// loopback address standing for the operator's network) makes the gateway connect nowhere;
/// the same sender on a re-allowed range is looked up (so the first half can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_make_the_gateway_connect_to_special_addresses() {
    let probe = tokio::net::TcpListener::bind((ATTACKER, 0)).await.unwrap();
    let probed = probe.local_addr().unwrap();
    let sender = "internal.localhost";
    let stranger = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    for (allowed, expect_connection) in [(Vec::new(), false), (vec!["127.0.0.2/32".into()], true)] {
        let harness = Harness::start_with(StoreSpec::Memory, |config| {
            config.federation.allowed_ip_ranges = allowed;
            config.federation.resolve.insert(sender.into(), probed);
            config.federation.key_lookup_wait_ms = 500;
        })
        .await;
        let claims = mimi_wire::signing::RequestClaims {
            sender_kind: mimi_wire::signing::SenderKind::Provider,
            sender: sender.into(),
            recipient: "localhost".into(),
            timestamp: now(),
            request_id: rand::random(),
            key_id: "k1".into(),
        };
        let headers = signed_headers(&stranger, claims, &Method::POST, "/group_operation", b"");
        let client = TlsClient::new(&harness.ca, Protocol::Http1);
        let send = client.send(
            harness.federation,
            Method::POST,
            "/group_operation",
            headers,
            Vec::new(),
        );
        let (answer, connected) = tokio::join!(send, async {
            tokio::time::timeout(Duration::from_secs(2), probe.accept())
                .await
                .is_ok()
        });
        assert_eq!(answer.error_code(), ErrorCode::Unauthenticated);
        assert_eq!(
            connected, expect_connection,
            "allowed ranges {expect_connection}"
        );
    }
}

/// Finding 7: a group keeps the control messages of its newest `groups.retained_epochs`
/// epochs; asking for older ones answers `EpochPruned` with the oldest kept and the current
/// epoch as values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_epochs_are_pruned_and_say_so() {
    use crate::support::group_client::{GroupApi, Member, error};
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.groups.retained_epochs = 2;
    })
    .await;
    let mut alice = Member::new("alice");
    let (group_info, tree) = alice.create_group();
    assert_eq!(
        GroupApi::create(&harness, &group_info, &tree).await.status,
        StatusCode::CREATED
    );
    let api = GroupApi::new(&harness, &alice.group_id());
    for epoch in 1..=3 {
        let (commit, info) = alice.update();
        assert_eq!(api.commit_ok(&commit, Some(&info), None).await, epoch);
    }
    let answer = api.control(1, None).await;
    assert_eq!(answer.error_code(), ErrorCode::EpochPruned);
    let refusal = error(&answer);
    assert_eq!(
        (refusal.oldest_epoch(), refusal.current_epoch()),
        (Some(2), Some(3))
    );
    assert_eq!(api.control_ok(2, None).await.len(), 2);
}

/// A commit whose answer was lost (connection cut, gateway killed) is resolved by the client
/// from what the gateway serves (`docs/security.md`): the group's epoch says whether any
/// commit was applied for the client's epoch, and that epoch's control messages end with
/// the commit that was; equal to the client's own, it was applied, else the client discards
/// its commit and processes the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_resolved_from_the_group() {
    use crate::support::group_client::{GroupApi, Member};
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut alice = Member::new("alice");
    let (group_info, tree) = alice.create_group();
    assert_eq!(
        GroupApi::create(&harness, &group_info, &tree).await.status,
        StatusCode::CREATED
    );
    let api = GroupApi::new(&harness, &alice.group_id());
    // Alice's commit for epoch 0 is applied; she never reads the answer.
    let (mine, info) = alice.update_pending();
    let _lost = api.commit(&mine, Some(&info), None).await;
    let status = crate::support::group_client::group_status(&api).await;
    assert_eq!(status.epoch, 1, "a commit was applied for epoch 0");
    let applied = api.control_ok(1, Some(1)).await;
    assert_eq!(applied.last(), Some(&mine), "and it is hers");
    alice.confirm();
    // Two commits for epoch 1; the one whose answer is lost did not win, and its client
    // learns that the same way.
    let (winner, info) = alice.update_pending();
    alice.discard();
    let (lost, lost_info) = alice.update_pending();
    alice.discard();
    assert_eq!(api.commit_ok(&winner, Some(&info), None).await, 2);
    let _lost = api.commit(&lost, Some(&lost_info), None).await;
    assert_eq!(
        crate::support::group_client::group_status(&api).await.epoch,
        2
    );
    let applied = api.control_ok(2, Some(2)).await;
    assert_eq!(applied.last(), Some(&winner));
    assert_ne!(applied.last(), Some(&lost), "so it was not applied");
}

/// A renewed TLS certificate and key (written over the configured files, as an ACME client
/// does) are served to new connections without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let renewal = Renewal::new();
    let harness = Harness::start_with(StoreSpec::Memory, |config| renewal.configure(config)).await;
    let served = || renewal.served(harness.federation);
    assert_eq!(served().await, renewal.leaf(&renewal.first));
    renewal.renew();
    assert!(
        renewal.until_served(harness.federation).await,
        "new connections get the renewed certificate"
    );
}

/// Two certificate pairs for `localhost` (each with its CA, both CAs in `roots`), the first
/// installed in `live` where the gateway's configuration points; `renew` writes the second
/// over it as an ACME client does (staged, then renamed).
struct Renewal {
    dir: tempfile::TempDir,
    first: std::path::PathBuf,
    second: std::path::PathBuf,
    live: std::path::PathBuf,
    roots: std::path::PathBuf,
}

impl Renewal {
    fn new() -> Renewal {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let (first, second, live, roots) = (
            path("first"),
            path("second"),
            path("live"),
            path("roots.pem"),
        );
        for pair in [&first, &second] {
            mimi_gateway::dev_certs::generate(&["localhost".to_owned()], pair).unwrap();
        }
        std::fs::create_dir_all(&live).unwrap();
        let both = [&first, &second]
            .iter()
            .map(|pair| std::fs::read_to_string(pair.join("ca.pem")).unwrap())
            .collect::<String>();
        std::fs::write(&roots, both).unwrap();
        let renewal = Renewal {
            dir,
            first,
            second,
            live,
            roots,
        };
        renewal.install(&renewal.first);
        renewal
    }

    fn install(&self, from: &std::path::Path) {
        for name in ["localhost.pem", "localhost-key.pem"] {
            let staged = self.live.join(format!("{name}.new"));
            std::fs::copy(from.join(name), &staged).unwrap();
            std::fs::rename(&staged, self.live.join(name)).unwrap();
        }
    }

    fn renew(&self) {
        self.install(&self.second);
    }

    /// The gateway serves the live pair and checks it for changes every 100 ms.
    fn configure(&self, config: &mut mimi_gateway::config::Config) {
        config.tls.cert = Some(self.live.join("localhost.pem"));
        config.tls.key = Some(self.live.join("localhost-key.pem"));
        config.auth.key_reload_ms = 100;
    }

    fn leaf(&self, pair: &std::path::Path) -> rustls_pki_types::CertificateDer<'static> {
        mimi_gateway::tls::load_certificates(&pair.join("localhost.pem")).unwrap()[0].clone()
    }

    /// The leaf a new connection to `address` is shown.
    async fn served(
        &self,
        address: std::net::SocketAddr,
    ) -> rustls_pki_types::CertificateDer<'static> {
        let stream = TlsClient::new(&self.roots, Protocol::Http1)
            .connect(address)
            .await;
        stream.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    /// Whether new connections to `address` are shown the second pair within 10 s.
    async fn until_served(&self, address: std::net::SocketAddr) -> bool {
        let renewed = self.leaf(&self.second);
        eventually(Duration::from_secs(10), || {
            let renewed = renewed.clone();
            async move { self.served(address).await == renewed }
        })
        .await
    }
}

/// One GET over a new connection from the loopback address `source`.
async fn send_from(
    client: &TlsClient,
    address: std::net::SocketAddr,
    source: IpAddr,
    path: &str,
    headers: http::HeaderMap,
) -> Answer {
    let tcp = TlsClient::tcp_from(address, source).await;
    let tls = client.handshake(tcp).await.expect("handshake");
    let body = http_body_util::Full::new(bytes::Bytes::new());
    client
        .exchange(tls, Method::GET, path, headers, body)
        .await
        .expect("answered")
}

/// Before authentication: an address that failed authentication too often this minute gets
/// 429 with `Retry-After` for everything, even a valid request, without any authentication
/// work; other addresses are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_failing_authentication_is_refused_for_a_while() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.failed_auth_per_ip_per_minute = 3;
    })
    .await;
    let client = TlsClient::new(&harness.ca, Protocol::Http1);
    let address = harness.application;
    for _ in 0..3 {
        let answer = send_from(&client, address, ATTACKER, "/whoami", Default::default()).await;
        assert_eq!(answer.error_code(), ErrorCode::Unauthenticated);
    }
    let refused = send_from(&client, address, ATTACKER, "/whoami", Default::default()).await;
    assert_eq!(refused.error_code(), ErrorCode::RateLimited);
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let valid = signed_headers(
        &harness.app.key,
        harness.app.claims(),
        &Method::GET,
        "/whoami",
        b"",
    );
    let answer = send_from(&client, address, ATTACKER, "/whoami", valid).await;
    assert_eq!(answer.error_code(), ErrorCode::RateLimited);
    let other = send_from(
        &client,
        address,
        OTHER_ATTACKER,
        "/whoami",
        Default::default(),
    )
    .await;
    assert_eq!(other.error_code(), ErrorCode::Unauthenticated);
    assert_eq!(whoami(&harness).await, StatusCode::OK, "from 127.0.0.1");
}

/// Finding 1: an HTTP/2 peer that stops answering pings is dropped (its connection idles
/// with nothing in flight for less than the idle timeout, so only the pings can close it).
/// The client's frames are written by hand: the preface, an empty SETTINGS, and one GET
/// (HPACK: `:method GET`, `:scheme https` indexed, `:path` and `:authority` literal); then it
/// reads on but never acknowledges a PING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_peers_that_stop_answering_pings_are_dropped() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.limits.idle_timeout_ms = 60_000;
        config.limits.http2_keep_alive_interval_ms = 200;
        config.limits.http2_keep_alive_timeout_ms = 300;
    })
    .await;
    let client = TlsClient::new(&harness.ca, Protocol::Http2);
    let mut stream = client.connect(harness.federation).await;
    let path = b"/.well-known/mimi/ds-domain";
    let mut block = vec![0x82, 0x87, 0x44, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x41, 9]);
    block.extend_from_slice(b"localhost");
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend_from_slice(&[0, 0, 0, 0x04, 0, 0, 0, 0, 0]); // SETTINGS, empty
    let length = (block.len() as u32).to_be_bytes();
    frames.extend_from_slice(&[length[1], length[2], length[3], 0x01, 0x05, 0, 0, 0, 1]);
    frames.extend(block); // HEADERS, END_STREAM | END_HEADERS, stream 1
    stream.write_all(&frames).await.unwrap();
    // The answer comes (a HEADERS frame, type 1, on stream 1), then silence from us.
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed before answering");
            seen.extend_from_slice(&buffer[..read]);
            let mut at = 0;
            while at + 9 <= seen.len() {
                let length = u32::from_be_bytes([0, seen[at], seen[at + 1], seen[at + 2]]) as usize;
                if seen[at + 3] == 0x01 && seen[at + 8] == 1 {
                    return;
                }
                at += 9 + length;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "the request is answered");
    assert!(closed_by_server(&mut stream, Duration::from_secs(5)).await);
}

/// A TLS 1.3 server on loopback for `domains` (by SNI) that requires a client certificate
/// chaining to `client_roots` and records the leaf each client presented, then closes.
async fn recording_peer(
    certs: &std::path::Path,
    domains: &[String],
    client_roots: &std::path::Path,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<rustls_pki_types::CertificateDer<'static>>>>,
) {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(client_roots)),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut by_name = rustls::server::ResolvesServerCertUsingSni::new();
    for domain in domains {
        let key = rustls::sign::CertifiedKey::from_der(
            mimi_gateway::tls::load_certificates(&certs.join(format!("{domain}.pem"))).unwrap(),
            mimi_gateway::tls::load_private_key(&certs.join(format!("{domain}-key.pem"))).unwrap(),
            &provider,
        )
        .unwrap();
        by_name.add(domain, key).unwrap();
    }
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(by_name));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(stream) = acceptor.accept(tcp).await
                && let Some(chain) = stream.get_ref().1.peer_certificates()
            {
                recorded.lock().unwrap().push(chain[0].clone().into_owned());
            }
        }
    });
    (address, seen)
}

/// Faults and the promises: the renewed certificate is also the client certificate of new
/// outbound connections (mutual TLS towards peers), without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_presented_to_peers_without_a_restart() {
    let renewal = Renewal::new();
    let peer = renewal.dir.path().join("peer");
    let peers = ["peer.localhost".to_owned(), "peer2.localhost".to_owned()];
    mimi_gateway::dev_certs::generate(&peers, &peer).unwrap();
    let client_roots = renewal.roots.clone();
    let (address, seen) = recording_peer(&peer, &peers, &client_roots).await;
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        renewal.configure(config);
        config.federation.ca_file = Some(peer.join("ca.pem"));
        for domain in &peers {
            config.federation.resolve.insert(domain.clone(), address);
        }
    })
    .await;
    // A request naming a peer whose keys the gateway has not seen makes it look them up at
    // that peer: one outbound connection, presenting the client certificate.
    let look_up = |sender: &str| {
        let claims = mimi_wire::signing::RequestClaims {
            sender_kind: mimi_wire::signing::SenderKind::Provider,
            sender: sender.to_owned(),
            recipient: "localhost".into(),
            timestamp: now(),
            request_id: rand::random(),
            key_id: "k1".into(),
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
        let headers = signed_headers(&key, claims, &Method::POST, "/whoami", b"");
        let client = TlsClient::new(&client_roots, Protocol::Http1);
        async move {
            client
                .send(
                    harness.federation,
                    Method::POST,
                    "/whoami",
                    headers,
                    Vec::new(),
                )
                .await
        }
    };
    let presented = |count: usize| {
        let seen = seen.clone();
        async move { seen.lock().unwrap().len() >= count }
    };
    look_up("peer.localhost").await;
    assert!(eventually(Duration::from_secs(10), || presented(1)).await);
    assert_eq!(seen.lock().unwrap()[0], renewal.leaf(&renewal.first));
    renewal.renew();
    // Once the gateway serves the renewed pair, a lookup of another peer connects anew and
    // presents it.
    let renewed = renewal.leaf(&renewal.second);
    let reloaded = renewal.until_served(harness.federation).await;
    assert!(reloaded, "the renewed pair is in use");
    look_up("peer2.localhost").await;
    assert!(eventually(Duration::from_secs(10), || presented(2)).await);
    assert_eq!(
        seen.lock().unwrap()[1],
        renewed,
        "new outbound connections present the renewed certificate"
    );
}
