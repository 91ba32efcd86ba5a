//! Federation (issue 7): gateways of different domains (a/b/c.localhost, certificates from
//! the test CA, each with its own store) serving one application, driven by real openmls
//! clients with X.509 credentials that name their domain, through each gateway's
//! application listener.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use mimi_wire::key_queues::RetrieveKeyPackageResponse;
use mimi_wire::{ErrorCode, decode_exact, encode};
use uuid::Uuid;

use crate::support::federation::*;
use crate::support::group_client::{GroupApi, error, welcomes};
use crate::support::*;

/// The architecture draft's "Operational Context": Carol registers a key package at gateway
/// B; Alice, through gateway A, fetches it, creates a group and adds her; the Welcome
/// reaches B, and Carol joins through B with the tree B serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_on_a_adds_carol_on_b() {
    let federation = Federation::start(2, |_| StoreSpec::Memory).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mut carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 2).await;

    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    let answer = GroupApi::create(a, &group_info, &tree).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    let group = GroupApi::new(a, &alice.group_id());

    let carol_package = key_package_ok(a, carol_id, "b.localhost", "alice").await;
    // Asked again for the same receiver, B hands out the same package (idempotent
    // assignment across domains).
    assert_eq!(
        key_package_ok(a, carol_id, "b.localhost", "alice").await,
        carol_package
    );
    let (commit, welcome, group_info) = alice.add(&[carol_package]);
    assert_eq!(
        group
            .commit_ok(&commit, Some(&group_info), Some(&welcome))
            .await,
        1
    );

    let join_info = welcome_for(b, "carol").await;
    assert_eq!(join_info.epoch, 1);
    assert_eq!(join_info.group_id.as_slice(), alice.group_id());
    carol.join(&join_info);
    assert_eq!(carol.secret(), alice.secret());

    // B mirrors the group: its application reads the group's control messages and info.
    let mirror = GroupApi::new(b, &alice.group_id());
    assert_eq!(mirror.epoch().await, 1);
    assert_eq!(
        mirror.group_info().await.group_infos[0]
            .group_info
            .as_slice(),
        group.group_info().await.group_infos[0]
            .group_info
            .as_slice(),
        "the follower serves the GroupInfo the hub accepted"
    );

    // Carol's application commits through B: B forwards the update to the hub as the
    // draft's `ds_update_client` with a PartialGroupInfo; the hub applies it, rebuilding the
    // GroupInfo Carol signed byte for byte, and Alice reads the commit at A.
    let (carol_update, carol_info) = carol.update();
    assert_eq!(
        mirror
            .commit_ok(&carol_update, Some(&carol_info), None)
            .await,
        2
    );
    assert_eq!(
        group.control_ok(2, Some(2)).await,
        vec![carol_update.clone()]
    );
    assert_eq!(
        group.group_info().await.group_infos[0]
            .group_info
            .as_slice(),
        carol_info.as_slice(),
        "the hub rebuilt the committer's GroupInfo"
    );
    assert!(!alice.apply(&carol_update));
    assert_eq!(carol.secret(), alice.secret());
    // B answered once its mirror showed the commit (the hub's fan-out): Carol's application
    // reads it there right away.
    assert_eq!(mirror.control_ok(2, Some(2)).await, vec![carol_update]);

    // Later commits reach B in order; Carol reads them there and stays in step.
    let (update, update_info) = alice.update();
    assert_eq!(group.commit_ok(&update, Some(&update_info), None).await, 3);
    let mirrored = mirrored_control(&mirror, 3).await;
    assert_eq!(mirrored, vec![update.clone()]);
    assert!(!carol.apply(&mirrored[0]));
    assert_eq!(carol.secret(), alice.secret());

    // Removing Carol by proposal and a commit citing it by reference: B holds the proposal
    // (the hub fans it out when it accepts it), so it applies the commit too, and Carol's
    // application learns of her removal from B's control messages.
    let proposal = alice.propose_remove(1);
    assert_eq!(group.propose(&proposal).await.status, StatusCode::CREATED);
    let held = eventually(Duration::from_secs(20), || async {
        mirror.proposals().await == vec![proposal.clone()]
    })
    .await;
    assert!(held, "B holds the proposal");
    assert!(!carol.apply(&proposal));
    let (remove, remove_info) = alice.commit_pending();
    assert_eq!(group.commit_ok(&remove, Some(&remove_info), None).await, 4);
    let mirrored = mirrored_control(&mirror, 4).await;
    assert_eq!(mirrored, vec![proposal, remove]);
    assert!(carol.apply(&mirrored[1]), "Carol sees she was removed");
}

/// "Key Package Validation": a key package a peer hands out must name that peer's domain.
/// Gateway B here is misconfigured to ignore domains (its provider reads none), so its queue
/// accepts a credential of c.localhost and hands it out: A refuses to pass it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_key_package_naming_another_domain_is_refused() {
    let federation = Federation::start_with(
        3,
        |_| StoreSpec::Memory,
        |index, config| {
            if index == 1 {
                let identity = &mut config.applications[0].identity;
                identity.supports_domains = false;
                identity.domain_name_offset = None;
            }
        },
    )
    .await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mallory = federation.cas[2].member("mallory");
    let mallory_id = publish_key_packages(b, "mallory", &mallory, 1).await;
    let answer = retrieve_key_package(a, mallory_id, "b.localhost", "alice").await;
    assert_eq!(answer.error_code(), ErrorCode::PeerKeyPackageDomain);

    // B's own clients are fine: the check is on the credential, not on B.
    let carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    key_package_ok(a, carol_id, "b.localhost", "alice").await;

    // A client id B does not know: B's refusal comes back with B's code.
    let unknown = retrieve_key_package(a, Uuid::new_v4(), "b.localhost", "alice").await;
    assert_eq!(unknown.error_code(), ErrorCode::PeerRefused);
    assert!(
        crate::support::group_client::error(&unknown)
            .detail
            .ends_with("code 602")
    );
}

/// A follower that is down while the hub accepts three commits: the hub answers each at
/// once (the follower's queue waits), and when the follower is back it receives all three,
/// once, in order, from the queue in the hub's Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_during_three_commits_catches_up_in_order() {
    let redis = [RedisServer::start(), RedisServer::start()];
    let mut federation = Federation::start(2, |index| StoreSpec::Redis(redis[index].url())).await;
    let (mut alice, mut carol) = alice_at_a_adds_carol_at_b(&federation, "alice", "carol").await;
    let group = GroupApi::new(&federation.gateways[0], &alice.group_id());

    let config = federation.gateways[1].stop().await;
    let mut commits = Vec::new();
    for expected in 2..=4 {
        let (update, update_info) = alice.update();
        assert_eq!(
            group.commit_ok(&update, Some(&update_info), None).await,
            expected,
            "the hub answers while the follower is down"
        );
        commits.push(update);
    }
    let a = &federation.gateways[0];
    let retried = eventually(Duration::from_secs(20), || async {
        a.metric("mimi_fanout_deliveries_total{outcome=\"retried\"}")
            .await
            > 0
    })
    .await;
    assert!(retried, "the hub keeps retrying the follower");

    federation.gateways[1].start_again(config).await;
    let mirror = GroupApi::new(&federation.gateways[1], &alice.group_id());
    mirrored_control(&mirror, 4).await;
    assert_eq!(
        mirror.control_ok(2, Some(4)).await,
        commits,
        "all three, once, in order"
    );
    for commit in &commits {
        assert!(!carol.apply(commit));
    }
    assert_eq!(carol.secret(), alice.secret());
}

/// Every refusal of `/deliver_message`: a forged signature, a request meant for another
/// gateway, a replayed request, another protocol version, a recipient of another domain or
/// not registered, and a commit from a peer that is not the group's hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_message_refusals() {
    use mimi_wire::ds::{ClientId, ClientRef, DSFanoutRequest, FanoutAuthToken, MlsMessage};

    let federation = Federation::start(3, |_| StoreSpec::Memory).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mut carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    GroupApi::create(a, &group_info, &tree).await;
    let group = GroupApi::new(a, &alice.group_id());
    let package = key_package_ok(a, carol_id, "b.localhost", "alice").await;
    let (commit, welcome, info) = alice.add(&[package]);
    group.commit_ok(&commit, Some(&info), Some(&welcome)).await;
    carol.join(&welcome_for(b, "carol").await);
    let (update, _) = alice.update();

    let app = *a.app.id.as_bytes();
    let request = |version: u16, domain: &str, handle: &str, message: &[u8]| {
        encode(&DSFanoutRequest {
            version,
            recipient_ids: vec![ClientId {
                application: app,
                domain: domain.into(),
                client: ClientRef::Handle(handle.into()),
            }],
            fanout_auth_tokens: vec![FanoutAuthToken {
                token: tls_codec::VLBytes::new(Vec::new()),
            }],
            mls_message: MlsMessage::from_bytes(message.to_vec()).unwrap(),
        })
        .unwrap()
    };
    let good = request(1, "b.localhost", "carol", &update);

    let forger = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = fanout_to(&federation, 0, 1, Some(&forger), "b.localhost", &good).await;
    assert_eq!(forged.error_code(), ErrorCode::Unauthenticated);
    let misaddressed = fanout_to(&federation, 0, 1, None, "c.localhost", &good).await;
    assert_eq!(misaddressed.error_code(), ErrorCode::Unauthenticated);

    let version = fanout_to(
        &federation,
        0,
        1,
        None,
        "b.localhost",
        &request(2, "b.localhost", "carol", &update),
    )
    .await;
    assert_eq!(version.error_code(), ErrorCode::UnsupportedVersion);
    let foreign = fanout_to(
        &federation,
        0,
        1,
        None,
        "b.localhost",
        &request(1, "c.localhost", "carol", &update),
    )
    .await;
    assert_eq!(foreign.error_code(), ErrorCode::NotOurClient);
    let unknown = fanout_to(
        &federation,
        0,
        1,
        None,
        "b.localhost",
        &request(1, "b.localhost", "nobody", &update),
    )
    .await;
    assert_eq!(unknown.error_code(), ErrorCode::NotOurClient);
    // C is not the hub of Alice's group, whose mirror B holds.
    let not_hub = fanout_to(&federation, 2, 1, None, "b.localhost", &good).await;
    assert_eq!(not_hub.error_code(), ErrorCode::NotTheHub);
    let mirror = GroupApi::new(b, &alice.group_id());
    assert_eq!(
        mirror.epoch().await,
        1,
        "no refused request changed the mirror"
    );

    // The hub's own delivery is accepted, and the same request sent twice (a replay) is not.
    let body = request(1, "b.localhost", "carol", &update);
    let (key, claims) = peer_claims(&federation, 0, "b.localhost");
    let answers = [
        post_fanout(&federation, 1, &key, claims.clone(), &body).await,
        post_fanout(&federation, 1, &key, claims, &body).await,
    ];
    let (accepted, replayed) = (&answers[0], &answers[1]);
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", error(accepted));
    assert_eq!(replayed.error_code(), ErrorCode::Unauthenticated);
}

/// The hub's refusals of a commit that federates: a member of a domain outside the
/// allow-list, and a commit leaving members on other domains without a GroupInfo; and a
/// retrieval from a peer that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_refusals() {
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let federation = Federation::start_with(
        2,
        |_| StoreSpec::Memory,
        |index, config| {
            if index == 0 {
                config.federation.allowed_peers =
                    vec!["c.localhost".into(), "down.localhost".into()];
                config
                    .federation
                    .resolve
                    .insert("down.localhost".into(), closed);
            }
        },
    )
    .await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    // B's own application hands Carol's package out; A's must not add her (b.localhost is
    // not among A's allowed peers).
    let local = retrieve_key_package(b, carol_id, "b.localhost", "alice").await;
    let package = decode_exact::<RetrieveKeyPackageResponse>(&local.body)
        .unwrap()
        .key_package
        .as_slice()
        .to_vec();
    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    GroupApi::create(a, &group_info, &tree).await;
    let group = GroupApi::new(a, &alice.group_id());
    let (commit, welcome, info) = alice.add(std::slice::from_ref(&package));
    let refused = group.commit(&commit, Some(&info), Some(&welcome)).await;
    assert_eq!(refused.error_code(), ErrorCode::DomainNotAllowed);
    let refused = group.commit(&commit, None, Some(&welcome)).await;
    assert_eq!(refused.error_code(), ErrorCode::DomainNotAllowed);
    assert_eq!(group.epoch().await, 0, "nothing applied");

    let down = retrieve_key_package(a, carol_id, "down.localhost", "alice").await;
    assert_eq!(down.error_code(), ErrorCode::PeerUnavailable);
    let unlisted = retrieve_key_package(a, carol_id, "b.localhost", "alice").await;
    assert_eq!(unlisted.error_code(), ErrorCode::UnknownDomain);
}

/// A commit that leaves members on other domains must carry the new epoch's GroupInfo
/// (followers mirror the group from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_commit_without_group_info_is_refused() {
    let federation = Federation::start(2, |_| StoreSpec::Memory).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    GroupApi::create(a, &group_info, &tree).await;
    let group = GroupApi::new(a, &alice.group_id());
    let package = key_package_ok(a, carol_id, "b.localhost", "alice").await;
    let (commit, welcome, info) = alice.add(&[package]);
    let refused = group.commit(&commit, None, Some(&welcome)).await;
    assert_eq!(refused.error_code(), ErrorCode::GroupInfoRequired);
    assert_eq!(group.epoch().await, 0, "nothing applied");
    assert_eq!(
        group.commit_ok(&commit, Some(&info), Some(&welcome)).await,
        1
    );
}

/// A group spanning three domains: Alice on A adds Carol on B and Dave on C in one commit;
/// each follower files the Welcome for its own member and mirrors the group; a removal of
/// Dave reaches both followers, and B keeps mirroring after C's member is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spanning_three_domains() {
    let federation = Federation::start(3, |_| StoreSpec::Memory).await;
    let [a, b, c] = [0, 1, 2].map(|index| &federation.gateways[index]);
    let mut carol = federation.cas[1].member("carol");
    let mut dave = federation.cas[2].member("dave");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    let dave_id = publish_key_packages(c, "dave", &dave, 1).await;
    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    GroupApi::create(a, &group_info, &tree).await;
    let group = GroupApi::new(a, &alice.group_id());
    let packages = [
        key_package_ok(a, carol_id, "b.localhost", "alice").await,
        key_package_ok(a, dave_id, "c.localhost", "alice").await,
    ];
    let (commit, welcome, info) = alice.add(&packages);
    assert_eq!(
        group.commit_ok(&commit, Some(&info), Some(&welcome)).await,
        1
    );
    carol.join(&welcome_for(b, "carol").await);
    dave.join(&welcome_for(c, "dave").await);
    assert!(welcomes(b, "dave").await.is_empty() && welcomes(c, "carol").await.is_empty());
    assert_eq!(carol.secret(), alice.secret());
    assert_eq!(dave.secret(), alice.secret());

    // Dave (leaf 2) removed: both followers mirror the commit.
    let (remove, remove_info) = alice.remove(2);
    assert_eq!(group.commit_ok(&remove, Some(&remove_info), None).await, 2);
    let on_b = mirrored_control(&GroupApi::new(b, &alice.group_id()), 2).await;
    let on_c = mirrored_control(&GroupApi::new(c, &alice.group_id()), 2).await;
    assert_eq!(on_b, vec![remove.clone()]);
    assert_eq!(on_c, vec![remove.clone()]);
    assert!(!carol.apply(&on_b[0]));
    assert!(dave.apply(&on_c[0]), "Dave sees he was removed");

    // C has no member left: only B gets the next commit.
    let (update, update_info) = alice.update();
    assert_eq!(group.commit_ok(&update, Some(&update_info), None).await, 3);
    let on_b = mirrored_control(&GroupApi::new(b, &alice.group_id()), 3).await;
    assert!(!carol.apply(&on_b[0]));
    assert_eq!(carol.secret(), alice.secret());
    assert_eq!(GroupApi::new(c, &alice.group_id()).epoch().await, 2);
}

/// `mimi-gateway keygen --rotate` on the hub while it runs: it reloads the key file, signs
/// with the new key while still publishing the old one, and the follower (which refreshes
/// the hub's keys on the unknown key id) keeps mirroring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_survives_a_key_rotation_mid_run() {
    let federation = Federation::start(2, |_| StoreSpec::Memory).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mut carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    GroupApi::create(a, &group_info, &tree).await;
    let group = GroupApi::new(a, &alice.group_id());
    let package = key_package_ok(a, carol_id, "b.localhost", "alice").await;
    let (commit, welcome, info) = alice.add(&[package]);
    group.commit_ok(&commit, Some(&info), Some(&welcome)).await;
    carol.join(&welcome_for(b, "carol").await);

    let state = &a.gateway.as_ref().unwrap().state;
    let old = state
        .keys
        .read()
        .unwrap()
        .current(now())
        .unwrap()
        .id
        .clone();
    let key_file = a.dir.path().join("signing-keys.toml");
    let output = run_cli(&[
        "keygen",
        "--rotate",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rotated = eventually(Duration::from_secs(20), || async {
        state.keys.read().unwrap().current(now()).unwrap().id != old
    })
    .await;
    assert!(rotated, "the running hub picked up the new key");
    let published: Vec<String> = state
        .keys
        .read()
        .unwrap()
        .published(now())
        .iter()
        .map(|key| key.key_id.clone())
        .collect();
    assert_eq!(published.len(), 2, "the old key stays published");
    assert!(published.contains(&old));

    let (update, update_info) = alice.update();
    assert_eq!(group.commit_ok(&update, Some(&update_info), None).await, 2);
    let mirrored = mirrored_control(&GroupApi::new(b, &alice.group_id()), 2).await;
    assert!(!carol.apply(&mirrored[0]));
    assert_eq!(carol.secret(), alice.secret());
}

/// Mutual TLS on the federation listener (optional; on for B here): A presents its server
/// certificate as client certificate and federation works; a request signed by A but sent
/// with C's certificate is refused (the certificate must name the signing domain), and a
/// connection without a client certificate does not complete its handshake. Without the
/// option (every other test) no client certificate is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_names_the_signing_peer() {
    let federation = Federation::start_with(
        3,
        |_| StoreSpec::Memory,
        |index, config| config.federation.require_client_cert = index == 1,
    )
    .await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let mut carol = federation.cas[1].member("carol");
    let carol_id = publish_key_packages(b, "carol", &carol, 1).await;
    let mut alice = federation.cas[0].member("alice");
    crate::support::key_queues::register(a, "alice").await;
    let (group_info, tree) = alice.create_group();
    GroupApi::create(a, &group_info, &tree).await;
    let group = GroupApi::new(a, &alice.group_id());
    let package = key_package_ok(a, carol_id, "b.localhost", "alice").await;
    let (commit, welcome, info) = alice.add(&[package]);
    group.commit_ok(&commit, Some(&info), Some(&welcome)).await;
    carol.join(&welcome_for(b, "carol").await);
    assert_eq!(carol.secret(), alice.secret());

    // A signed request from A, over a connection with C's certificate.
    let certs = federation.gateways[2].ca.parent().unwrap();
    let (key, claims) = peer_claims(&federation, 0, "b.localhost");
    let headers = signed_headers(&key, claims, &Method::POST, "/whoami", b"");
    let client_config = |identity: Option<&str>| {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(root_store(&certs.join("ca.pem")));
        let mut config = match identity {
            Some(domain) => {
                let chain =
                    mimi_gateway::tls::load_certificates(&certs.join(format!("{domain}.pem")))
                        .unwrap();
                let key =
                    mimi_gateway::tls::load_private_key(&certs.join(format!("{domain}-key.pem")))
                        .unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    };
    let send = |config: Arc<rustls::ClientConfig>, headers: http::HeaderMap| async move {
        let tcp = tokio::net::TcpStream::connect(b.federation).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("b.localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await;
        let tls = match tls {
            Ok(tls) => tls,
            Err(error) => return Err(error.to_string()),
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        let mut request = http::Request::post("/whoami")
            .header(http::header::HOST, "b.localhost")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        *request.headers_mut() = {
            let mut all = headers;
            all.insert(
                http::header::HOST,
                http::HeaderValue::from_static("b.localhost"),
            );
            all
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?;
        Ok(response.status())
    };
    let wrong = send(client_config(Some("c.localhost")), headers.clone()).await;
    assert_eq!(wrong, Ok(StatusCode::UNAUTHORIZED));
    assert!(
        b.metric("mimi_auth_failures_total{reason=\"client_certificate_mismatch\"}")
            .await
            >= 1
    );
    let none = send(client_config(None), headers).await;
    assert!(
        none.is_err(),
        "no client certificate, no exchange: {none:?}"
    );
}

/// Issue 15, defect 1: two hub processes of one domain on one Redis both walk the follower's
/// fan-out queue. 5 groups of Alice-at-A and Carol-at-B take 10 self-updates each, sent
/// alternately through either process, the groups concurrently: the follower mirrors every
/// commit once, in order, each with its own GroupInfo (the Welcome of the add, too), and
/// every Carol stays in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_deliver_every_commit_once_in_order() {
    const GROUPS: usize = 5;
    const UPDATES: u64 = 10;
    let redis = [RedisServer::start(), RedisServer::start()];
    let federation = Federation::start(2, |index| StoreSpec::Redis(redis[index].url())).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    // The second process of a.localhost: same configuration, keys and Redis, other ports.
    let mut second = a.gateway.as_ref().unwrap().state.config.as_ref().clone();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    second.listeners.application = loopback;
    second.listeners.federation = loopback;
    second.listeners.admin = loopback;
    let a2 = mimi_gateway::serve::Gateway::start(second).await.unwrap();
    let hubs = [
        a.target(),
        Target {
            application: a2.application,
            ..a.target()
        },
    ];

    let mut groups = Vec::new();
    for index in 0..GROUPS {
        let (alice, carol) = alice_at_a_adds_carol_at_b(
            &federation,
            &format!("alice{index}"),
            &format!("carol{index}"),
        )
        .await;
        groups.push((alice, carol));
    }

    // Each group's updates from its own task, alternating the hub process.
    let mut tasks = Vec::new();
    for (index, (mut alice, carol)) in groups.into_iter().enumerate() {
        let hubs = hubs.clone();
        tasks.push(tokio::spawn(async move {
            let mut commits = Vec::new();
            let mut last_info = Vec::new();
            for update in 0..UPDATES {
                let hub = hubs[(index + update as usize) % hubs.len()].clone();
                let (commit, info) = alice.update();
                let api = GroupApi::at(hub, &alice.group_id());
                assert_eq!(api.commit_ok(&commit, Some(&info), None).await, update + 2);
                commits.push(commit);
                last_info = info;
            }
            (alice, carol, commits, last_info)
        }));
    }
    for task in tasks {
        let (alice, mut carol, commits, last_info) = task.await.unwrap();
        let mirror = GroupApi::new(b, &alice.group_id());
        mirrored_control(&mirror, UPDATES + 1).await;
        assert_eq!(
            mirror.control_ok(2, Some(UPDATES + 1)).await,
            commits,
            "every commit once, in order"
        );
        let served = mirror.group_info().await;
        assert_eq!(
            served.group_infos.last().unwrap().group_info.as_slice(),
            last_info.as_slice(),
            "the mirror's GroupInfo is its own group's latest"
        );
        for commit in &commits {
            assert!(!carol.apply(commit));
        }
        assert_eq!(carol.secret(), alice.secret());
    }
    a2.shutdown().await;
}
