//! Connection establishment across domains (issue 7; delivery-service draft, "Connection
//! establishment flow"): connection key packages of an account (`/connection_key_packages`)
//! and connection requests into a client's queue (`/connection_request`), with every refusal
//! of both.

use http::{Method, StatusCode};
use mimi_wire::ds::{
    ClientId, ClientRef, ConnectionKeyPackagesRequest, DS_PROTOCOL_VERSION, DSAuthData, DSRequest,
    DSRequestBody, DSResponse, DSResponseBody, KeyPackagesRequest, MlsMessage,
    QueueingServiceRequest, QueueingServiceResponse, UserId,
};
use mimi_wire::key_queues::RetrieveConnectionKeyPackagesRequest;
use mimi_wire::messages::{QueuedMessageKind, SendConnectionRequest};
use mimi_wire::{ErrorCode, decode_exact, encode};

use crate::support::federation::{
    DOMAINS, Federation, peer_claims, post_signed, publish_key_packages,
};
use crate::support::forwarding::queued_ok;
use crate::support::group_client::error;
use crate::support::key_queues::QueueFixture;
use crate::support::*;

/// Connection key packages of `account` at `domain`, asked through `harness` for `receiver`.
async fn connection_key_packages_for(
    harness: &Harness,
    domain: &str,
    account: &str,
    receiver: &str,
) -> Answer {
    let body = encode(&RetrieveConnectionKeyPackagesRequest {
        version: 1,
        domain: Some(domain.into()),
        account: account.into(),
        receiver_client_id: receiver.into(),
    })
    .unwrap();
    harness
        .call(
            Method::POST,
            &format!("/apps/{}/connection-key-packages", harness.app.id),
            body,
        )
        .await
}

/// As `connection_key_packages_for`, for the receiver "alice".
async fn connection_key_packages(harness: &Harness, domain: &str, account: &str) -> Answer {
    connection_key_packages_for(harness, domain, account, "alice").await
}

async fn connection_key_packages_ok(
    harness: &Harness,
    domain: &str,
    account: &str,
) -> Vec<Vec<u8>> {
    connection_key_packages_for_ok(harness, domain, account, "alice").await
}

async fn connection_key_packages_for_ok(
    harness: &Harness,
    domain: &str,
    account: &str,
    receiver: &str,
) -> Vec<Vec<u8>> {
    harness
        .app_client()
        .connection_key_packages(account, Some(domain), receiver)
        .await
        .unwrap_or_else(|error| panic!("connection key packages of {account}@{domain}: {error}"))
}

/// Carol of B keeps connection key packages (a key queue labelled `connection`); Alice's
/// application on A fetches them through A: one per client, the same again for the same
/// receiver (`ds_select_connection_key_packages` names it), each checked to name b.localhost
/// and Carol's account; another receiver gets another; the draft's bare request takes fresh
/// ones. An account without a connection queue has none; refused: an unknown account, a
/// request for another domain's user, a body that is no `ConnectionKeyPackagesRequest`, an
/// empty receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_key_packages_across_domains() {
    let federation = Federation::start(3, |_| StoreSpec::Memory).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let carol = federation.cas[1].member("carol");
    let fixture = QueueFixture::new(b, "carol").await;
    let packages: Vec<Vec<u8>> = (0..3).map(|_| carol.mls.key_package(3_600)).collect();
    let answer = fixture
        .update(&packages, false, Some("connection"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    let erin = federation.cas[1].member("erin");
    publish_key_packages(b, "erin", &erin, 1).await;

    let first = connection_key_packages_ok(a, "b.localhost", "carol").await;
    assert_eq!(first.len(), 1);
    assert!(packages.contains(&first[0]));
    // The same receiver gets the same package again; another receiver (here B's own
    // application) another one.
    assert_eq!(
        connection_key_packages_ok(a, "b.localhost", "carol").await,
        first
    );
    let other = connection_key_packages_for_ok(b, "b.localhost", "carol", "bob").await;
    assert_eq!(other.len(), 1);
    assert_ne!(other, first);
    assert_eq!(
        connection_key_packages_for(a, "b.localhost", "carol", "")
            .await
            .error_code(),
        ErrorCode::InvalidReceiver
    );
    assert!(
        connection_key_packages_ok(a, "b.localhost", "erin")
            .await
            .is_empty()
    );
    assert_eq!(
        connection_key_packages(a, "b.localhost", "nobody")
            .await
            .error_code(),
        ErrorCode::PeerRefused
    );
    assert_eq!(
        connection_key_packages(b, "b.localhost", "nobody")
            .await
            .error_code(),
        ErrorCode::UnknownClient
    );

    // Straight to B's /connection_key_packages.
    let request = |domain: &str, account: &str| {
        encode(&DSRequest {
            version: DS_PROTOCOL_VERSION,
            body: DSRequestBody::ConnectionKeyPackages(ConnectionKeyPackagesRequest {
                user_identifier: UserId {
                    application: *b.app.id.as_bytes(),
                    domain: domain.into(),
                    account: account.into(),
                },
            }),
            auth: DSAuthData::Anonymous,
        })
        .unwrap()
    };
    let federation = &federation;
    let post = |body: Vec<u8>| async move {
        let (key, claims) = peer_claims(federation, 0, DOMAINS[1]);
        post_signed(
            federation,
            1,
            &key,
            claims,
            "/connection_key_packages",
            &body,
        )
        .await
    };
    assert_eq!(
        post(request("c.localhost", "carol")).await.error_code(),
        ErrorCode::NotOurClient
    );
    assert_eq!(
        post(request("b.localhost", "nobody")).await.error_code(),
        ErrorCode::NotOurClient
    );
    let other_type = encode(&DSRequest {
        version: DS_PROTOCOL_VERSION,
        body: DSRequestBody::RequestGroupId,
        auth: DSAuthData::Anonymous,
    })
    .unwrap();
    assert_eq!(
        post(other_type).await.error_code(),
        ErrorCode::MalformedBody
    );
    assert_eq!(
        post(vec![0, 1, 13]).await.error_code(),
        ErrorCode::MalformedBody
    );
    let answer = post(request("b.localhost", "erin")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    // Ours, naming the receiver: a client of the asking peer, by a non-empty handle.
    let select = |receiver_domain: &str, receiver: &str| {
        encode(&DSRequest {
            version: DS_PROTOCOL_VERSION,
            body: DSRequestBody::SelectConnectionKeyPackages(
                ConnectionKeyPackagesRequest {
                    user_identifier: UserId {
                        application: *b.app.id.as_bytes(),
                        domain: "b.localhost".into(),
                        account: "carol".into(),
                    },
                },
                ClientId {
                    application: *b.app.id.as_bytes(),
                    domain: receiver_domain.into(),
                    client: ClientRef::Handle(receiver.into()),
                },
            ),
            auth: DSAuthData::Anonymous,
        })
        .unwrap()
    };
    assert_eq!(
        post(select("a.localhost", "")).await.error_code(),
        ErrorCode::InvalidReceiver
    );
    assert_eq!(
        post(select("c.localhost", "dave")).await.error_code(),
        ErrorCode::Forbidden
    );
    // The receiver A's application named above: its package again.
    let answer = post(select("a.localhost", "alice")).await;
    let DSResponseBody::ConnectionKeyPackages(again) =
        decode_exact::<DSResponse>(&answer.body).unwrap().body
    else {
        panic!("not ConnectionKeyPackages")
    };
    assert_eq!(
        [&[0u8, 1, 0, 5][..], again[0].as_bytes()].concat(),
        first[0]
    );
    // The draft's bare request (no receiver), at `/group_operation` too: the third package,
    // then none is left.
    let (key, claims) = peer_claims(federation, 0, DOMAINS[1]);
    let body = request("b.localhost", "carol");
    let answer = post_signed(federation, 1, &key, claims, "/group_operation", &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    let DSResponseBody::ConnectionKeyPackages(third) =
        decode_exact::<DSResponse>(&answer.body).unwrap().body
    else {
        panic!("not ConnectionKeyPackages")
    };
    assert_eq!(third.len(), 1);
    let third = [&[0u8, 1, 0, 5][..], third[0].as_bytes()].concat();
    assert!(packages.contains(&third) && third != first[0] && third != other[0]);
    let answer = post(request("b.localhost", "carol")).await;
    let DSResponseBody::ConnectionKeyPackages(none) =
        decode_exact::<DSResponse>(&answer.body).unwrap().body
    else {
        panic!("not ConnectionKeyPackages")
    };
    assert!(none.is_empty(), "fresh packages only: none left");
}

/// A connection request from Alice's application on A for Carol of B goes into Carol's
/// queue at B (`POST /connection_request`); refused: a recipient of another domain or not
/// registered, queue information that is no ClientID, an unregistered local recipient and a
/// request that is no MLSMessage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_requests_reach_the_clients_queue() {
    let federation = Federation::start(2, |_| StoreSpec::Memory).await;
    let (a, b) = (&federation.gateways[0], &federation.gateways[1]);
    let carol = federation.cas[1].member("carol");
    publish_key_packages(b, "carol", &carol, 1).await;
    let alice = federation.cas[0].member("alice");
    let request_message = alice.mls.key_package(3_600);
    let send = |domain: &str, handle: &str, message: &[u8]| {
        encode(&SendConnectionRequest {
            version: 1,
            domain: domain.into(),
            client_handle: handle.into(),
            message: message.to_vec().into(),
        })
        .unwrap()
    };
    let path = format!("/apps/{}/connection-requests", a.app.id);
    a.app_client()
        .send_connection_request("b.localhost", "carol", &request_message)
        .await
        .unwrap();
    let queued = queued_ok(b, "carol", 0).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].kind, QueuedMessageKind::ConnectionRequest);
    assert_eq!(queued[0].message.as_slice(), request_message.as_slice());

    // Through A to a client B does not have, to an unregistered client of A itself, and a
    // request that is no MLSMessage.
    for (domain, handle, message, refusal) in [
        (
            "b.localhost",
            "nobody",
            &request_message[..],
            ErrorCode::PeerRefused,
        ),
        (
            "a.localhost",
            "nobody",
            &request_message[..],
            ErrorCode::UnknownClient,
        ),
        (
            "b.localhost",
            "carol",
            &b"not mls"[..],
            ErrorCode::MalformedMlsMessage,
        ),
    ] {
        let answer = a
            .call(Method::POST, &path, send(domain, handle, message))
            .await;
        assert_eq!(answer.error_code(), refusal, "{handle}@{domain}");
    }

    // Straight to B's /connection_request.
    let request = |domain: &str, handle: &str| {
        encode(
            &QueueingServiceRequest::new(
                &ClientId {
                    application: *b.app.id.as_bytes(),
                    domain: domain.into(),
                    client: ClientRef::Handle(handle.into()),
                },
                MlsMessage::from_bytes(request_message.clone()).unwrap(),
            )
            .unwrap(),
        )
        .unwrap()
    };
    let federation = &federation;
    let post = |body: Vec<u8>| async move {
        let (key, claims) = peer_claims(federation, 0, "b.localhost");
        post_signed(federation, 1, &key, claims, "/connection_request", &body).await
    };
    assert_eq!(
        post(request("c.localhost", "carol")).await.error_code(),
        ErrorCode::NotOurClient
    );
    assert_eq!(
        post(request("b.localhost", "nobody")).await.error_code(),
        ErrorCode::NotOurClient
    );
    let garbage = encode(&QueueingServiceRequest {
        client_queue_information: vec![9, 9, 9].into(),
        message: MlsMessage::from_bytes(request_message.clone()).unwrap(),
    })
    .unwrap();
    assert_eq!(post(garbage).await.error_code(), ErrorCode::MalformedBody);
    assert_eq!(
        queued_ok(b, "carol", 0).await.len(),
        1,
        "nothing queued by a refusal"
    );
    let answer = post(request("b.localhost", "carol")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    assert_eq!(
        decode_exact::<QueueingServiceResponse>(&answer.body).unwrap(),
        QueueingServiceResponse::Ok
    );
    // The same request again is the same message: queued once.
    assert_eq!(queued_ok(b, "carol", 0).await.len(), 1);
}

/// The draft's bare `ds_key_packages` at `/group_key_packages`: a package of each named client
/// from its default queue, as bare KeyPackages in the request's order, fresh ones each time;
/// refused for a client of another domain, an unregistered one, or one without such a queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drafts_bare_key_packages_request_is_served() {
    let federation = Federation::start(2, |_| StoreSpec::Memory).await;
    let b = &federation.gateways[1];
    let carol = federation.cas[1].member("carol");
    let erin = federation.cas[1].member("erin");
    let carol_id = publish_key_packages(b, "carol", &carol, 2).await;
    publish_key_packages(b, "erin", &erin, 1).await;
    let labelled = QueueFixture::new(b, "ivo").await;
    let ivo = federation.cas[1].member("ivo");
    let answer = labelled
        .update(&[ivo.mls.key_package(3_600)], false, Some("other"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    let client = |domain: &str, client: ClientRef| ClientId {
        application: *b.app.id.as_bytes(),
        domain: domain.into(),
        client,
    };
    let request = |clients: Vec<ClientId>| {
        encode(&DSRequest {
            version: DS_PROTOCOL_VERSION,
            body: DSRequestBody::KeyPackages(KeyPackagesRequest {
                client_identifiers: clients,
            }),
            auth: DSAuthData::Anonymous,
        })
        .unwrap()
    };
    let federation = &federation;
    let post = |body: Vec<u8>| async move {
        let (key, claims) = peer_claims(federation, 0, DOMAINS[1]);
        post_signed(federation, 1, &key, claims, "/group_key_packages", &body).await
    };
    let both = || {
        request(vec![
            client("b.localhost", ClientRef::ClientId(*carol_id.as_bytes())),
            client("b.localhost", ClientRef::Handle("erin".into())),
        ])
    };
    let answer = post(both()).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", error(&answer));
    let DSResponseBody::KeyPackages(first) = decode_exact::<DSResponse>(&answer.body).unwrap().body
    else {
        panic!("not KeyPackages")
    };
    assert_eq!(first.len(), 2);
    let named = |package: &mimi_wire::ds::KeyPackage| {
        let message = [&[0u8, 1, 0, 5][..], package.as_bytes()].concat();
        crate::support::mls_client::key_package_ref(&message)
    };
    assert_ne!(named(&first[0]), named(&first[1]));
    // No receiver named: each request takes fresh packages. Carol's second goes to the next
    // request; then Erin's queue (one package) is exhausted, at `/group_operation` too.
    let answer = post(request(vec![client(
        "b.localhost",
        ClientRef::Handle("carol".into()),
    )]))
    .await;
    let DSResponseBody::KeyPackages(second) =
        decode_exact::<DSResponse>(&answer.body).unwrap().body
    else {
        panic!("not KeyPackages")
    };
    assert_ne!(named(&second[0]), named(&first[0]), "a fresh package");
    assert_eq!(post(both()).await.error_code(), ErrorCode::QueueExhausted);
    let (key, claims) = peer_claims(federation, 0, DOMAINS[1]);
    let answer = post_signed(federation, 1, &key, claims, "/group_operation", &both()).await;
    assert_eq!(answer.error_code(), ErrorCode::QueueExhausted);
    for (domain, handle, refusal) in [
        ("c.localhost", "carol", ErrorCode::NotOurClient),
        ("b.localhost", "nobody", ErrorCode::NotOurClient),
        ("b.localhost", "ivo", ErrorCode::NoMatchingQueue),
    ] {
        let asked = request(vec![client(domain, ClientRef::Handle(handle.into()))]);
        assert_eq!(post(asked).await.error_code(), refusal, "{handle}@{domain}");
    }
}

/// A peer that answers a connection key package request with a package of another account
/// (here: b.localhost answering for Carol with Dave's) is refused (`PeerWrongAccount`): the
/// asking gateway checks every package names the account it asked for, not only the domain.
/// The peer is a stand-in serving b.localhost's certificate from the test CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_handing_out_another_accounts_package_is_refused() {
    use hyper::service::service_fn;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = listener.local_addr().unwrap();
    let federation = Federation::start_with(
        2,
        |_| StoreSpec::Memory,
        |index, config| {
            if index == 0 {
                config.federation.resolve.insert("b.localhost".into(), fake);
            }
        },
    )
    .await;
    let a = &federation.gateways[0];
    let dave = federation.cas[1].member("dave").mls.key_package(3_600);
    let dave_bare = mimi_wire::ds::KeyPackage::from_bytes(dave[4..].to_vec()).unwrap();
    let dir = federation.certs.path();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("b.localhost.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("b.localhost-key.pem")).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, dave_bare) = (acceptor.clone(), dave_bare.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let dave_bare = dave_bare.clone();
                    async move {
                        let body = match request.uri().path() {
                            "/.well-known/mimi/ds-domain" => b"b.localhost".to_vec(),
                            _ => encode(&DSResponse {
                                version: DS_PROTOCOL_VERSION,
                                body: DSResponseBody::ConnectionKeyPackages(vec![dave_bare]),
                            })
                            .unwrap(),
                        };
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    // Asked for Dave, Dave's package passes; asked for Carol, the same package is refused.
    assert_eq!(
        connection_key_packages_ok(a, "b.localhost", "dave").await,
        vec![dave]
    );
    assert_eq!(
        connection_key_packages(a, "b.localhost", "carol")
            .await
            .error_code(),
        ErrorCode::PeerWrongAccount
    );
    server.abort();
}
