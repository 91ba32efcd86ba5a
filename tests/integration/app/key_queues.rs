//! Key queues and key packages over the real application listener (architecture draft,
//! "Managing Key Packages", "Key Package Validation"), with real openmls key packages, on
//! the memory store, a real `redis-server` and a real three-master Redis Cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, StatusCode};
use mimi_wire::key_queues::{
    RetrieveKeyPackageRequest, RetrieveKeyPackageResponse, UpdateKeyQueueResponse,
};
use mimi_wire::{ErrorCode, ErrorResponse, decode_exact, encode};
use uuid::Uuid;

use crate::support::key_queues::*;
use crate::support::mls_client::{MlsClient, SUITE, key_package_ref};
use crate::support::*;

/// The queue's whole contract; run against every store.
async fn key_queue_behaviour(harness: &Harness) {
    let fixture = QueueFixture::new(harness, "alice").await;
    let mls = &fixture.mls;

    // Ordering by not_after, whatever the upload order.
    let (late, early, middle) = (
        mls.key_package(3000),
        mls.key_package(1000),
        mls.key_package(2000),
    );
    assert_eq!(
        fixture
            .upload(&[late.clone(), early.clone(), middle.clone()])
            .await,
        3
    );
    assert_eq!(fixture.retrieve("bob").await, (early.clone(), false));
    // Idempotent per receiver.
    assert_eq!(fixture.retrieve("bob").await, (early.clone(), false));
    assert_eq!(fixture.retrieve("carol").await, (middle.clone(), false));
    assert_eq!(fixture.retrieve("bob").await, (early.clone(), false));

    // Advancing (a commit added bob's package): bob gets the next one.
    let store = &harness.gateway.as_ref().unwrap().state.store;
    let app = harness.app.id;
    assert!(
        store
            .advance_key_queue(app, fixture.client, &key_package_ref(&early))
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_key_queue(app, fixture.client, &key_package_ref(&early))
            .await
            .unwrap(),
        "gone"
    );
    assert_eq!(fixture.retrieve("bob").await, (late.clone(), false));

    // Exhausted, then the final key with its flag, reusable.
    let exhausted = fixture.retrieve_with("dave", None, 1).await;
    assert_eq!(exhausted.error_code(), ErrorCode::QueueExhausted);
    let final_key = mls.key_package_with(SUITE, 5000, true);
    let answer = fixture
        .update(&[], false, None, Some(final_key.clone()))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(fixture.retrieve("dave").await, (final_key.clone(), true));
    assert_eq!(fixture.retrieve("erin").await, (final_key.clone(), true));
    // An ordinary package comes before the final key again.
    let fresh = mls.key_package(4000);
    fixture.upload(std::slice::from_ref(&fresh)).await;
    assert_eq!(fixture.retrieve("frank").await, (fresh, false));

    // Reset empties the queue before inserting.
    let (one, two) = (mls.key_package(1000), mls.key_package(1000));
    let answer = fixture
        .update(&[one.clone(), two.clone()], true, None, None)
        .await;
    let in_pool = decode_exact::<UpdateKeyQueueResponse>(&answer.body)
        .unwrap()
        .key_packages_in_pool;
    assert_eq!(in_pool, 2);
    let handed: BTreeSet<Vec<u8>> = [
        fixture.retrieve("g1").await.0,
        fixture.retrieve("g2").await.0,
    ]
    .into_iter()
    .collect();
    assert_eq!(
        handed,
        [one, two].into_iter().collect(),
        "only the new packages remain"
    );
    assert_eq!(
        fixture.retrieve("bob").await,
        (final_key.clone(), true),
        "bob's old package went with the reset"
    );

    // Label update: the queue answers under its new label only.
    assert_eq!(
        fixture.update(&[], false, Some("v2"), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        fixture.retrieve_with("h", None, 1).await.error_code(),
        ErrorCode::NoMatchingQueue
    );
    assert_eq!(
        fixture.retrieve_with("h", Some("v2"), 1).await.status,
        StatusCode::OK
    );
    // The old label is free for a new queue; relabelling onto a taken label is refused.
    let other = queue_id(&create_queue(harness, fixture.client, 1, 1, "").await);
    assert_ne!(other, fixture.queue);
    assert_eq!(
        fixture
            .update(&[], false, Some(""), None)
            .await
            .error_code(),
        ErrorCode::KeyQueueExists
    );

    // Expiry: a short-lived package assigned to a receiver is skipped once expired.
    let short = QueueFixture::new(harness, "shorty").await;
    let (brief, lasting) = (short.mls.key_package(2), short.mls.key_package(1000));
    short.upload(&[brief.clone(), lasting.clone()]).await;
    assert_eq!(short.retrieve("ivan").await, (brief, false));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        short.retrieve("ivan").await,
        (lasting.clone(), false),
        "expired package dropped"
    );
    let judy = short.retrieve_with("judy", None, 1).await;
    assert_eq!(
        judy.error_code(),
        ErrorCode::QueueExhausted,
        "the expired package is gone for everyone"
    );

    // Deleting the queue, then the client.
    let delete = harness.call(Method::DELETE, &short.path(), vec![]).await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
    assert_eq!(
        short.retrieve_with("ivan", None, 1).await.error_code(),
        ErrorCode::NoMatchingQueue
    );
    assert_eq!(
        harness
            .call(Method::DELETE, &short.path(), vec![])
            .await
            .error_code(),
        ErrorCode::UnknownKeyQueue
    );
    let client_path = format!("/apps/{}/clients/{}", harness.app.id, fixture.client);
    assert_eq!(
        harness
            .call(Method::DELETE, &client_path, vec![])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        fixture.retrieve_with("h", Some("v2"), 1).await.error_code(),
        ErrorCode::NoMatchingQueue
    );
    assert_eq!(
        fixture.update(&[], false, None, None).await.error_code(),
        ErrorCode::UnknownClient
    );
    assert_eq!(
        create_queue(harness, fixture.client, 1, 1, "x")
            .await
            .error_code(),
        ErrorCode::UnknownClient
    );
}

/// A retrieval for `receiver` on its own connection, as its own task: answers the package.
fn spawn_retrieval(
    harness: &Harness,
    client: Uuid,
    receiver: String,
) -> tokio::task::JoinHandle<Vec<u8>> {
    let body = encode(&RetrieveKeyPackageRequest {
        version: 1,
        domain: None,
        protocol_version: 1,
        cipher_suite: 1,
        app_label: None,
        receiver_client_id: receiver,
    })
    .unwrap();
    let path = format!("/apps/{}/clients/{client}/keyPackage", harness.app.id);
    let headers = signed_headers(
        &harness.app.key,
        harness.app.claims(),
        &Method::POST,
        &path,
        &body,
    );
    let tls = harness.client(Protocol::Http2);
    let addr = harness.application;
    tokio::spawn(async move {
        let answer = tls.send(addr, Method::POST, &path, headers, body).await;
        assert_eq!(answer.status, StatusCode::OK);
        decode_exact::<RetrieveKeyPackageResponse>(&answer.body)
            .unwrap()
            .key_package
            .as_slice()
            .to_vec()
    })
}

/// 64 concurrent retrievals for distinct receivers: no package goes to two of them; and
/// concurrent repeats by one receiver all get the same package.
async fn concurrent_retrievals(harness: &Harness) {
    let fixture = QueueFixture::new(harness, "popular").await;
    let packages: Vec<Vec<u8>> = (0..64)
        .map(|index| fixture.mls.key_package(1000 + index))
        .collect();
    assert_eq!(fixture.upload(&packages).await, 64);
    let tasks: Vec<_> = (0..64)
        .map(|index| spawn_retrieval(harness, fixture.client, format!("receiver-{index}")))
        .collect();
    let mut handed = BTreeSet::new();
    for task in tasks {
        assert!(
            handed.insert(task.await.unwrap()),
            "a package went to two receivers"
        );
    }
    assert_eq!(handed, packages.into_iter().collect::<BTreeSet<_>>());

    let again = QueueFixture::new(harness, "steady").await;
    again
        .upload(
            &(0..8)
                .map(|index| again.mls.key_package(1000 + index))
                .collect::<Vec<_>>(),
        )
        .await;
    let repeats: Vec<_> = (0..16)
        .map(|_| spawn_retrieval(harness, again.client, "same-receiver".into()))
        .collect();
    let mut seen = BTreeSet::new();
    for task in repeats {
        seen.insert(task.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "one receiver, one package");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_queues_on_memory() {
    let harness = Harness::start(StoreSpec::Memory).await;
    key_queue_behaviour(&harness).await;
    concurrent_retrievals(&harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_queues_on_redis() {
    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    key_queue_behaviour(&harness).await;
    concurrent_retrievals(&harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_queues_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let harness = Harness::start(StoreSpec::Cluster(cluster.urls())).await;
    key_queue_behaviour(&harness).await;
    concurrent_retrievals(&harness).await;
}

/// Redis keeps each package once: measured per package against its encoded size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_memory_per_package_stays_near_its_size() {
    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    let fixture = QueueFixture::new(&harness, "measured").await;
    let packages: Vec<Vec<u8>> = (0..200)
        .map(|index| fixture.mls.key_package(1000 + index))
        .collect();
    let encoded: usize = packages.iter().map(Vec::len).sum();
    for chunk in packages.chunks(50) {
        fixture.upload(chunk).await;
    }
    // Everything the queue holds lives under the client's hash tag.
    let pattern = format!("mimi:{{c:{}}}:*", fixture.client);
    let keys = redis.cli(&["--scan", "--pattern", &pattern]).unwrap();
    let total: i64 = keys
        .lines()
        .map(|key| {
            redis
                .cli(&["MEMORY", "USAGE", key, "SAMPLES", "0"])
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    let per_package = total as f64 / packages.len() as f64;
    let size = encoded as f64 / packages.len() as f64;
    println!(
        "redis bytes per key package: {per_package:.0} for {size:.0} encoded bytes ({:.2}x)",
        per_package / size
    );
    assert!(
        per_package <= 1.5 * size + 128.0,
        "{per_package} bytes for {size}-byte packages"
    );
}

/// Queue creation: one queue per attributes, MLS 1.0 only, known suites, known clients.
#[tokio::test]
async fn queue_creation_rules() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let client = register(&harness, "alice").await;
    queue_id(&create_queue(&harness, client, 1, 1, "").await);
    assert_eq!(
        create_queue(&harness, client, 1, 1, "").await.error_code(),
        ErrorCode::KeyQueueExists
    );
    queue_id(&create_queue(&harness, client, 1, 1, "other").await);
    queue_id(&create_queue(&harness, client, 1, 3, "").await);
    assert_eq!(
        create_queue(&harness, client, 2, 1, "").await.error_code(),
        ErrorCode::UnsupportedProtocolVersion
    );
    assert_eq!(
        create_queue(&harness, client, 1, 0x9999, "")
            .await
            .error_code(),
        ErrorCode::UnsupportedCipherSuite
    );
    assert_eq!(
        create_queue(&harness, client, 1, 1, &"l".repeat(256))
            .await
            .error_code(),
        ErrorCode::InvalidLabel
    );
    assert_eq!(
        create_queue(&harness, Uuid::new_v4(), 1, 1, "")
            .await
            .error_code(),
        ErrorCode::UnknownClient
    );
}

/// Every refused package has its own code, the answer names the first bad one, and nothing
/// in the queue changes.
#[tokio::test]
async fn bad_key_packages_are_refused_and_change_nothing() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        // A domain outside the federation allow-list has no route: "unknown domain".
        config.federation.allowed_peers = vec!["b.localhost".into()];
    })
    .await;
    let fixture = QueueFixture::new(&harness, "alice").await;
    let mls = &fixture.mls;
    let kept = mls.key_package(1000);
    assert_eq!(fixture.upload(std::slice::from_ref(&kept)).await, 1);

    let good = mls.key_package(1000);
    let mut forged = mls.key_package(1000);
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let mut wrong_version = mls.key_package(1000);
    wrong_version[4..6].copy_from_slice(&2u16.to_be_bytes());
    let mut trailing = mls.key_package(1000);
    trailing.push(0);
    let truncated = mls.key_package(1000)[..100].to_vec();
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "forged signature",
            forged,
            ErrorCode::KeyPackageSignatureInvalid,
        ),
        (
            "wrong version",
            wrong_version,
            ErrorCode::ProtocolVersionMismatch,
        ),
        (
            "wrong suite",
            mls.key_package_with(
                openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
                1000,
                false,
            ),
            ErrorCode::CipherSuiteMismatch,
        ),
        (
            "over-long lifetime",
            mls.key_package(200 * 86_400),
            ErrorCode::LifetimeTooLong,
        ),
        (
            "someone else's credential",
            MlsClient::basic("mallory").key_package(1000),
            ErrorCode::CredentialNotOwner,
        ),
        (
            "last resort as ordinary",
            mls.key_package_with(SUITE, 1000, true),
            ErrorCode::LastResortNotAllowed,
        ),
        ("trailing bytes", trailing, ErrorCode::MalformedKeyPackage),
        ("truncated", truncated, ErrorCode::MalformedKeyPackage),
        (
            "not a key package",
            b"\x00\x01\x00\x03garbage".to_vec(),
            ErrorCode::MalformedKeyPackage,
        ),
    ];
    for (name, bad, code) in cases {
        let answer = fixture
            .update(
                &[good.clone(), good.clone(), bad],
                true,
                Some("changed"),
                None,
            )
            .await;
        assert_eq!(answer.error_code(), code, "{name}");
        let body: ErrorResponse = decode_exact(&answer.body).unwrap();
        assert!(
            body.detail.starts_with("key package 2:"),
            "{name}: names the bad one: {}",
            body.detail
        );
    }
    let answer = fixture
        .update(&[], false, None, Some(b"junk".to_vec()))
        .await;
    assert_eq!(answer.error_code(), ErrorCode::MalformedKeyPackage);
    assert!(
        decode_exact::<ErrorResponse>(&answer.body)
            .unwrap()
            .detail
            .starts_with("final key:")
    );

    // Nothing changed: no reset happened, the label is the old one, one package in the pool.
    assert_eq!(fixture.retrieve("bob").await, (kept, false));
    assert_eq!(
        fixture.retrieve_with("carol", None, 1).await.error_code(),
        ErrorCode::QueueExhausted
    );

    // Bad request fields.
    let path = format!(
        "/apps/{}/clients/{}/keyPackage",
        harness.app.id, fixture.client
    );
    let body = |receiver: &str, domain: Option<&str>| {
        encode(&RetrieveKeyPackageRequest {
            version: 1,
            domain: domain.map(str::to_owned),
            protocol_version: 1,
            cipher_suite: 1,
            app_label: None,
            receiver_client_id: receiver.into(),
        })
        .unwrap()
    };
    assert_eq!(
        harness
            .call(Method::POST, &path, body("", None))
            .await
            .error_code(),
        ErrorCode::InvalidReceiver
    );
    let foreign = harness
        .call(Method::POST, &path, body("bob", Some("b.example")))
        .await;
    // The harness's application is plain Basic: it names no domains, so it cannot federate.
    assert_eq!(foreign.error_code(), ErrorCode::ApplicationDoesNotFederate);
    let mut trailing = body("bob", None);
    trailing.push(1);
    assert_eq!(
        harness
            .call(Method::POST, &path, trailing)
            .await
            .error_code(),
        ErrorCode::MalformedBody
    );
}

/// X.509 credentials: validated by the application's provider; with domains, the
/// credential's domain must be this gateway's.
#[tokio::test]
async fn x509_key_packages_need_this_gateways_domain() {
    use mimi_gateway::config::{HandleRangeConfig, IdentityConfig, IdentityProviderKind};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    let dir = tempfile::tempdir().unwrap();
    // Two roots, both trusted: one names this gateway's domain, one another provider's.
    let make_root = |domain: &str| {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, domain);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (params, key, cert)
    };
    let (home_params, home_key, home_cert) = make_root("localhost");
    let (away_params, away_key, away_cert) = make_root("other.example");
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, format!("{}{}", home_cert.pem(), away_cert.pem())).unwrap();
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.applications[0].identity = IdentityConfig {
            provider: IdentityProviderKind::X509,
            supports_accounts: false,
            supports_domains: true,
            device_handle_range: Some(HandleRangeConfig { start: 0, end: 0 }),
            account_handle_offset: None,
            domain_name_offset: Some(1),
            trust_roots: vec![roots.clone()],
        };
    })
    .await;
    // A leaf "alice" with an Ed25519 key, issued by each root.
    let leaf = |issuer_params: &CertificateParams, issuer_key: &KeyPair| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let pkcs8 = key.serialize_der();
        // ring's Ed25519 PKCS#8 v2 document: the 32-byte seed follows a 16-byte header.
        let seed: [u8; 32] = pkcs8[16..48].try_into().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "alice");
        let issuer = Issuer::from_params(issuer_params, issuer_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.der().to_vec(), seed)
    };
    let client = register(&harness, "alice").await;
    let queue = queue_id(&create_queue(&harness, client, 1, 1, "").await);

    let (home_leaf, home_seed) = leaf(&home_params, &home_key);
    let home = MlsClient::x509(&[home_leaf, home_cert.der().to_vec()], &home_seed);
    let fixture = QueueFixture {
        harness: &harness,
        api: harness.app_client(),
        client,
        queue,
        mls: home,
    };
    assert_eq!(
        fixture.upload(&[fixture.mls.key_package(1000)]).await,
        1,
        "this gateway's domain is accepted"
    );

    let (away_leaf, away_seed) = leaf(&away_params, &away_key);
    let away = MlsClient::x509(&[away_leaf, away_cert.der().to_vec()], &away_seed);
    let answer = fixture
        .update(&[away.key_package(1000)], false, None, None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::ForeignDomain);

    // A basic credential is not what this application's provider supports.
    let basic = MlsClient::basic("alice");
    let answer = fixture
        .update(&[basic.key_package(1000)], false, None, None)
        .await;
    assert_eq!(answer.error_code(), ErrorCode::UnsupportedCredential);
}
