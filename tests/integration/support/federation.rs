use crate::support::group_client::{GroupApi, Member, error, welcomes};
use crate::support::key_queues::QueueFixture;
use crate::support::mls_client::MlsClient;
use crate::support::*;
use http::{Method, StatusCode};
use mimi_gateway::config::{HandleRangeConfig, IdentityConfig, IdentityProviderKind};
use mimi_wire::encode;
use mimi_wire::groups::JoinInfo;
use mimi_wire::key_queues::RetrieveKeyPackageRequest;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::time::Duration;
use uuid::Uuid;

/// The certificate authority of one domain's users: its Common Name is the domain, which
/// the application's X.509 provider reads as every member's domain (offset 1).
pub struct DomainCa {
    params: CertificateParams,
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl DomainCa {
    fn new(domain: &str) -> DomainCa {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, domain);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        DomainCa { params, key, cert }
    }

    /// An MLS client whose credential names `handle` of this domain.
    pub fn client(&self, handle: &str) -> MlsClient {
        let (chain, seed) = self.credential(handle);
        MlsClient::x509(&chain, &seed)
    }

    /// A certificate chain (DER, leaf first) naming `handle` of this domain, and the seed of
    /// the Ed25519 key it certifies.
    pub fn credential(&self, handle: &str) -> (Vec<Vec<u8>>, [u8; 32]) {
        self.credential_until(handle, None)
    }

    /// As `credential`, the leaf valid until `not_after` (Unix seconds) when given.
    pub fn credential_until(
        &self,
        handle: &str,
        not_after: Option<u64>,
    ) -> (Vec<Vec<u8>>, [u8; 32]) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let pkcs8 = key.serialize_der();
        // ring's Ed25519 PKCS#8 v2 document: the 32-byte seed follows a 16-byte header.
        let seed: [u8; 32] = pkcs8[16..48].try_into().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, handle);
        if let Some(not_after) = not_after {
            params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after as i64).unwrap();
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let leaf = params.signed_by(&key, &issuer).unwrap();
        (vec![leaf.der().to_vec(), self.cert.der().to_vec()], seed)
    }

    pub fn member(&self, handle: &str) -> Member {
        Member {
            mls: self.client(handle),
            group: None,
        }
    }
}

/// Several gateways, one per domain, serving one application.
pub struct Federation {
    pub gateways: Vec<Harness>,
    pub cas: Vec<DomainCa>,
    /// The test CA and every domain's certificate (`<domain>.pem`, `<domain>-key.pem`).
    pub certs: tempfile::TempDir,
}

pub const DOMAINS: [&str; 3] = ["a.localhost", "b.localhost", "c.localhost"];

impl Federation {
    pub async fn start(count: usize, store: impl Fn(usize) -> StoreSpec) -> Federation {
        Federation::start_with(count, store, |_, _| {}).await
    }

    /// As `start`, with `adjust(index, config)` applied to each gateway's configuration last.
    pub async fn start_with(
        count: usize,
        store: impl Fn(usize) -> StoreSpec,
        adjust: impl Fn(usize, &mut mimi_gateway::config::Config),
    ) -> Federation {
        let domains: Vec<String> = DOMAINS[..count].iter().map(|d| d.to_string()).collect();
        let certs = tempfile::tempdir().unwrap();
        mimi_gateway::dev_certs::generate(&domains, certs.path()).unwrap();
        let cas: Vec<DomainCa> = domains.iter().map(|domain| DomainCa::new(domain)).collect();
        let roots = certs.path().join("user-roots.pem");
        std::fs::write(
            &roots,
            cas.iter().map(|ca| ca.cert.pem()).collect::<String>(),
        )
        .unwrap();
        let ports: Vec<u16> = domains.iter().map(|_| free_listener_port()).collect();
        let app = TestApp::new();
        let mut gateways = Vec::new();
        for (index, domain) in domains.iter().enumerate() {
            let dir = certs.path().to_path_buf();
            let mut gateway_app = app.clone();
            gateway_app.recipient = domain.clone();
            let roots = roots.clone();
            let mut harness = Harness::start_for(store(index), gateway_app, |config| {
                config.domain = domain.clone();
                config.tls.cert = Some(dir.join(format!("{domain}.pem")));
                config.tls.key = Some(dir.join(format!("{domain}-key.pem")));
                config.listeners.federation =
                    std::net::SocketAddr::from(([127, 0, 0, 1], ports[index]));
                config.federation.ca_file = Some(dir.join("ca.pem"));
                for (other, port) in domains.iter().zip(&ports) {
                    if other != domain {
                        config.federation.resolve.insert(
                            other.clone(),
                            std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                        );
                    }
                }
                config.federation.retry_initial_ms = 50;
                config.federation.retry_max_ms = 400;
                config.federation.delivery_scan_ms = 100;
                // Generous, so reading a forwarded change right after its answer never
                // depends on how busy the machine is (it returns as soon as it is shown).
                config.federation.mirror_wait_ms = 20_000;
                config.federation.key_refresh_interval_secs = 1;
                config.auth.key_reload_ms = 100;
                config.applications[0].identity = IdentityConfig {
                    provider: IdentityProviderKind::X509,
                    supports_accounts: false,
                    supports_domains: true,
                    device_handle_range: Some(HandleRangeConfig { start: 0, end: 0 }),
                    account_handle_offset: None,
                    domain_name_offset: Some(1),
                    trust_roots: vec![roots],
                };
                adjust(index, config);
            })
            .await;
            harness.ca = certs.path().join("ca.pem");
            gateways.push(harness);
        }
        Federation {
            gateways,
            cas,
            certs,
        }
    }
}

/// `member`, registered at `harness` as `handle` with one key queue holding `count` of its
/// key packages; answers its client id.
pub async fn publish_key_packages(
    harness: &Harness,
    handle: &str,
    member: &Member,
    count: usize,
) -> Uuid {
    let fixture = QueueFixture::new(harness, handle).await;
    let packages: Vec<Vec<u8>> = (0..count).map(|_| member.mls.key_package(3_600)).collect();
    assert_eq!(fixture.upload(&packages).await as usize, count);
    fixture.client
}

/// Key package retrieval through `harness` for a client of `domain`, on behalf of
/// `receiver`.
pub async fn retrieve_key_package(
    harness: &Harness,
    client: Uuid,
    domain: &str,
    receiver: &str,
) -> Answer {
    let body = encode(&RetrieveKeyPackageRequest {
        version: 1,
        domain: Some(domain.into()),
        protocol_version: 1,
        cipher_suite: 1,
        app_label: None,
        receiver_client_id: receiver.into(),
    })
    .unwrap();
    harness
        .call(
            Method::POST,
            &format!("/apps/{}/clients/{client}/keyPackage", harness.app.id),
            body,
        )
        .await
}

pub async fn key_package_ok(
    harness: &Harness,
    client: Uuid,
    domain: &str,
    receiver: &str,
) -> Vec<u8> {
    harness
        .app_client()
        .retrieve_key_package(client, Some(domain), 1, 1, None, receiver)
        .await
        .unwrap_or_else(|error| panic!("key package of {client}@{domain}: {error}"))
        .key_package
}

/// Alice (`alice`, at A) creates a group at A and adds Carol (`carol`, at B) with a key
/// package A fetched from B; Carol joins from the Welcome B serves. Answers both members.
pub async fn alice_at_a_adds_carol_at_b(
    federation: &Federation,
    alice: &str,
    carol: &str,
) -> (Member, Member) {
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mut carol_member = federation.cas[1].member(carol);
    let carol_id = publish_key_packages(b, carol, &carol_member, 1).await;
    let mut alice_member = federation.cas[0].member(alice);
    crate::support::key_queues::register(a, alice).await;
    let (group_info, tree) = alice_member.create_group();
    a.app_client()
        .create_group(&group_info, &tree)
        .await
        .unwrap();
    let package = key_package_ok(a, carol_id, "b.localhost", alice).await;
    let (commit, welcome, info) = alice_member.add(&[package]);
    GroupApi::new(a, &alice_member.group_id())
        .commit_ok(&commit, Some(&info), Some(&welcome))
        .await;
    carol_member.join(&welcome_for(b, carol).await);
    (alice_member, carol_member)
}

/// Waits (bounded) until `handle` has a welcome at `harness`.
pub async fn welcome_for(harness: &Harness, handle: &str) -> JoinInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = welcomes(harness, handle).await.into_iter().next() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no welcome for {handle} arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until `mirror` has reached `epoch`, then answers that epoch's control
/// messages.
pub async fn mirrored_control(mirror: &GroupApi, epoch: u64) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = mirror.control(epoch, Some(epoch)).await;
        if answer.status == StatusCode::OK {
            return crate::support::group_client::messages(&answer);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mirror never reached epoch {epoch}: {:?}",
            error(&answer)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Gateway `from`'s current signing key and fresh claims of a request from it to
/// `recipient`.
pub fn peer_claims(
    federation: &Federation,
    from: usize,
    recipient: &str,
) -> (ed25519_dalek::SigningKey, mimi_wire::signing::RequestClaims) {
    let sender = &federation.gateways[from];
    let ring =
        mimi_gateway::keys::KeyRing::load(&sender.dir.path().join("signing-keys.toml")).unwrap();
    let current = ring.current(now()).unwrap();
    let claims = mimi_wire::signing::RequestClaims {
        sender_kind: mimi_wire::signing::SenderKind::Provider,
        sender: DOMAINS[from].into(),
        recipient: recipient.into(),
        timestamp: now(),
        request_id: rand::random(),
        key_id: current.id.clone(),
    };
    (current.key.clone(), claims)
}

/// `POST /deliver_message` to gateway `to` with `claims` signed by `key`.
pub async fn post_fanout(
    federation: &Federation,
    to: usize,
    key: &ed25519_dalek::SigningKey,
    claims: mimi_wire::signing::RequestClaims,
    body: &[u8],
) -> Answer {
    post_signed(federation, to, key, claims, "/deliver_message", body).await
}

/// `POST path` on gateway `to`'s federation listener with `claims` signed by `key`.
pub async fn post_signed(
    federation: &Federation,
    to: usize,
    key: &ed25519_dalek::SigningKey,
    claims: mimi_wire::signing::RequestClaims,
    path: &str,
    body: &[u8],
) -> Answer {
    let headers = signed_headers(key, claims, &Method::POST, path, body);
    TlsClient::new(&federation.gateways[to].ca, Protocol::Http1)
        .named(DOMAINS[to])
        .send(
            federation.gateways[to].federation,
            Method::POST,
            path,
            headers,
            body.to_vec(),
        )
        .await
}

/// A signed `POST /deliver_message` from gateway `from` (index) to gateway `to`, with the
/// sender's own key unless `key` is given, addressed to `recipient`.
pub async fn fanout_to(
    federation: &Federation,
    from: usize,
    to: usize,
    key: Option<&ed25519_dalek::SigningKey>,
    recipient: &str,
    body: &[u8],
) -> Answer {
    let (own, claims) = peer_claims(federation, from, recipient);
    post_fanout(federation, to, key.unwrap_or(&own), claims, body).await
}
