//! The client registry over the real application listener (architecture draft, "Managing
//! Identities"), with one behaviour on the memory store, a real `redis-server` and a real
//! three-master Redis Cluster; and every rejection the issue names.

use http::{Method, StatusCode};
use mimi_gateway::config::{
    ApplicationConfig, HandleRangeConfig, IdentityConfig, IdentityProviderKind,
};
use mimi_wire::registry::{
    ApplicationList, ClientResponse, DiscoverClientsRequest, DiscoverClientsResponse,
    IdentityProviderType, RegisterClientRequest, RegisterClientResponse, UpdateClientRequest,
    X509DeviceHandleRange, X509Parameters,
};
use mimi_wire::{ErrorCode, decode_exact, encode};
use uuid::Uuid;

use crate::support::*;

fn register_body(handle: &str, tags: &[&str]) -> Vec<u8> {
    encode(&RegisterClientRequest {
        version: 1,
        client_handle: handle.into(),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
    })
    .unwrap()
}

fn update_body(handle: Option<&str>, add: &[&str], remove: &[&str]) -> Vec<u8> {
    encode(&UpdateClientRequest {
        version: 1,
        client_handle: handle.map(str::to_owned),
        tags_to_add: add.iter().map(|tag| tag.to_string()).collect(),
        tags_to_remove: remove.iter().map(|tag| tag.to_string()).collect(),
    })
    .unwrap()
}

fn discover_body(domain: Option<&str>, tag: &str) -> Vec<u8> {
    encode(&DiscoverClientsRequest {
        version: 1,
        domain: domain.map(str::to_owned),
        tag: tag.into(),
    })
    .unwrap()
}

/// Registry calls of the harness's application.
struct Registry<'h> {
    harness: &'h Harness,
    clients: String,
}

impl<'h> Registry<'h> {
    fn new(harness: &'h Harness) -> Registry<'h> {
        Registry {
            harness,
            clients: format!("/apps/{}/clients", harness.app.id),
        }
    }

    async fn register(&self, handle: &str, tags: &[&str]) -> Answer {
        self.harness
            .call(Method::POST, &self.clients, register_body(handle, tags))
            .await
    }

    async fn register_ok(&self, handle: &str, tags: &[&str]) -> Uuid {
        let answer = self.register(handle, tags).await;
        assert_eq!(answer.status, StatusCode::CREATED, "register {handle}");
        let response: RegisterClientResponse = decode_exact(&answer.body).unwrap();
        let id = Uuid::from_bytes(response.client_id);
        assert_eq!(id.get_version_num(), 4);
        id
    }

    async fn update(
        &self,
        client: Uuid,
        handle: Option<&str>,
        add: &[&str],
        remove: &[&str],
    ) -> Answer {
        let path = format!("{}/{client}", self.clients);
        self.harness
            .call(Method::PATCH, &path, update_body(handle, add, remove))
            .await
    }

    async fn read(&self, client: Uuid) -> Answer {
        self.harness
            .call(Method::GET, &format!("{}/{client}", self.clients), vec![])
            .await
    }

    async fn read_ok(&self, client: Uuid) -> (String, Vec<String>) {
        let answer = self.read(client).await;
        assert_eq!(answer.status, StatusCode::OK);
        let response: ClientResponse = decode_exact(&answer.body).unwrap();
        assert_eq!(response.client.client_id, *client.as_bytes());
        (response.client.client_handle, response.client.tags)
    }

    async fn discover(&self, tag: &str) -> Vec<(Uuid, String, Vec<String>)> {
        let answer = self
            .harness
            .call(Method::GET, &self.clients, discover_body(None, tag))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        let response: DiscoverClientsResponse = decode_exact(&answer.body).unwrap();
        response
            .identities
            .into_iter()
            .map(|record| {
                (
                    Uuid::from_bytes(record.client_id),
                    record.client_handle,
                    record.tags,
                )
            })
            .collect()
    }

    async fn delete(&self, client: Uuid) -> Answer {
        self.harness
            .call(
                Method::DELETE,
                &format!("{}/{client}", self.clients),
                vec![],
            )
            .await
    }
}

/// The registry's whole contract; run against every store.
async fn registry_behaviour(harness: &Harness) {
    let registry = Registry::new(harness);
    let alice_phone = registry
        .register_ok("alice/phone", &["account_id:alice@org", "moderator"])
        .await;
    let alice_laptop = registry
        .register_ok("alice/laptop", &["account_id:alice@org"])
        .await;
    let bob = registry
        .register_ok(
            "bob/phone",
            &["account_id:bob@org", "moderator", "moderator"],
        )
        .await;

    // Retrieval; duplicate tags collapse.
    assert_eq!(
        registry.read_ok(bob).await,
        (
            "bob/phone".into(),
            vec!["account_id:bob@org".into(), "moderator".into()]
        )
    );

    // Discovery by tag: every client with it, each with id, handle and all tags.
    let alice = registry.discover("account_id:alice@org").await;
    assert_eq!(
        alice,
        vec![
            (
                alice_laptop,
                "alice/laptop".into(),
                vec!["account_id:alice@org".into()]
            ),
            (
                alice_phone,
                "alice/phone".into(),
                vec!["account_id:alice@org".into(), "moderator".into()]
            ),
        ]
    );
    let moderators: Vec<Uuid> = registry
        .discover("moderator")
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    assert_eq!(moderators, vec![alice_phone, bob]);
    assert!(registry.discover("nobody").await.is_empty());

    // Handles are unique among the application's clients.
    assert_eq!(
        registry.register("alice/phone", &[]).await.error_code(),
        ErrorCode::HandleTaken
    );

    // A patch renames and retags at once.
    let answer = registry
        .update(
            alice_phone,
            Some("alice/old-phone"),
            &["retired"],
            &["moderator"],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let updated: ClientResponse = decode_exact(&answer.body).unwrap();
    assert_eq!(updated.client.client_handle, "alice/old-phone");
    assert_eq!(
        updated.client.tags,
        vec!["account_id:alice@org".to_string(), "retired".into()]
    );
    let moderators: Vec<Uuid> = registry
        .discover("moderator")
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    assert_eq!(moderators, vec![bob]);
    assert_eq!(registry.discover("retired").await.len(), 1);
    // The old handle is free again, the new one taken.
    let reuse = registry.register_ok("alice/phone", &[]).await;
    assert_eq!(
        registry.register("alice/old-phone", &[]).await.error_code(),
        ErrorCode::HandleTaken
    );

    // A patch to a taken handle changes nothing at all, tags included.
    let answer = registry
        .update(bob, Some("alice/laptop"), &["new-tag"], &["moderator"])
        .await;
    assert_eq!(answer.error_code(), ErrorCode::HandleTaken);
    assert_eq!(
        registry.read_ok(bob).await,
        (
            "bob/phone".into(),
            vec!["account_id:bob@org".into(), "moderator".into()]
        )
    );
    assert!(registry.discover("new-tag").await.is_empty());

    // Keeping one's own handle is not a conflict.
    assert_eq!(
        registry
            .update(bob, Some("bob/phone"), &[], &[])
            .await
            .status,
        StatusCode::OK
    );

    // Unknown clients.
    let stranger = Uuid::new_v4();
    assert_eq!(
        registry
            .update(stranger, None, &["x"], &[])
            .await
            .error_code(),
        ErrorCode::UnknownClient
    );
    assert_eq!(
        registry.read(stranger).await.error_code(),
        ErrorCode::UnknownClient
    );
    assert_eq!(
        registry.delete(stranger).await.error_code(),
        ErrorCode::UnknownClient
    );

    // Deletion removes the client, its handle and its tag index entries.
    let answer = registry.delete(bob).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        registry.read(bob).await.error_code(),
        ErrorCode::UnknownClient
    );
    assert!(registry.discover("account_id:bob@org").await.is_empty());
    let moderators = registry.discover("moderator").await;
    assert!(moderators.is_empty(), "{moderators:?}");
    registry.register_ok("bob/phone", &[]).await;
    let _ = reuse;

    // Too many tags through patches: the 65th is refused and nothing changes.
    let many: Vec<String> = (0..63).map(|index| format!("t{index}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        registry.update(alice_laptop, None, &many, &[]).await.status,
        StatusCode::OK
    );
    let answer = registry
        .update(alice_laptop, None, &["one-too-many"], &[])
        .await;
    assert_eq!(answer.error_code(), ErrorCode::TooManyTags);
    assert_eq!(registry.read_ok(alice_laptop).await.1.len(), 64);
    // Removing one makes room, in the same patch.
    assert_eq!(
        registry
            .update(alice_laptop, None, &["one-more"], &["t0"])
            .await
            .status,
        StatusCode::OK
    );
}

/// Of concurrent registrations of one handle exactly one wins.
async fn registration_race(harness: &Harness) {
    let attempts = (0..16).map(|_| {
        let body = register_body("racer", &["race"]);
        let headers = signed_headers(
            &harness.app.key,
            harness.app.claims(),
            &Method::POST,
            &format!("/apps/{}/clients", harness.app.id),
            &body,
        );
        let client = harness.client(Protocol::Http1);
        let (addr, path) = (
            harness.application,
            format!("/apps/{}/clients", harness.app.id),
        );
        tokio::spawn(async move {
            client
                .send(addr, Method::POST, &path, headers, body)
                .await
                .status
        })
    });
    let mut created = 0;
    for attempt in attempts {
        let status = attempt.await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "{status}"
        );
        created += usize::from(status == StatusCode::CREATED);
    }
    assert_eq!(created, 1);
    assert_eq!(Registry::new(harness).discover("race").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_on_memory() {
    let harness = Harness::start(StoreSpec::Memory).await;
    registry_behaviour(&harness).await;
    registration_race(&harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_on_redis() {
    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    registry_behaviour(&harness).await;
    registration_race(&harness).await;
    // Discovery reads a per-tag index set, never a scan.
    let index = format!("mimi:{{app:{}}}:tag:race", harness.app.id);
    assert_eq!(redis.cli(&["SCARD", &index]).unwrap().trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let harness = Harness::start(StoreSpec::Cluster(cluster.urls())).await;
    registry_behaviour(&harness).await;
    registration_race(&harness).await;
    // All of one application's registry lives on one slot, so on one master.
    let pattern = format!("mimi:{{app:{}}}:*", harness.app.id);
    let holding: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|node| {
            node.cli(&["--scan", "--pattern", &pattern])
                .unwrap()
                .lines()
                .count()
        })
        .collect();
    assert_eq!(
        holding.iter().filter(|&&keys| keys > 0).count(),
        1,
        "one hash tag: {holding:?}"
    );
}

/// Discovery also answers POST `?discover` (proxies may drop GET bodies), and refuses a
/// domain this gateway does not serve.
#[tokio::test]
async fn discovery_by_post_and_domains() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        // A domain outside the federation allow-list has no route: "unknown domain".
        config.federation.allowed_peers = vec!["b.localhost".into()];
    })
    .await;
    let registry = Registry::new(&harness);
    let id = registry.register_ok("carol", &["friends"]).await;
    let path = format!("/apps/{}/clients?discover", harness.app.id);
    for domain in [None, Some("localhost"), Some("LOCALHOST")] {
        let answer = harness
            .call(Method::POST, &path, discover_body(domain, "friends"))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{domain:?}");
        let found: DiscoverClientsResponse = decode_exact(&answer.body).unwrap();
        assert_eq!(found.identities[0].client_id, *id.as_bytes());
    }
    let foreign = harness
        .call(
            Method::POST,
            &path,
            discover_body(Some("b.example"), "friends"),
        )
        .await;
    // The harness's application is plain Basic: it names no domains, so it cannot federate.
    assert_eq!(foreign.error_code(), ErrorCode::ApplicationDoesNotFederate);
}

/// `GET /apps` lists public applications with their identity configuration; an application
/// only ever touches its own data.
#[tokio::test]
async fn applications_are_listed_and_isolated() {
    let other = TestApp::new();
    let private_id = Uuid::new_v4();
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.applications.push(other.config());
        config.applications.push(ApplicationConfig {
            id: private_id,
            public: false,
            identity: Default::default(),
            keys: vec![],
        });
    })
    .await;
    let answer = harness.call(Method::GET, "/apps", vec![]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let list: ApplicationList = decode_exact(&answer.body).unwrap();
    let mut ids: Vec<Uuid> = list
        .applications
        .iter()
        .map(|app| Uuid::from_bytes(app.id))
        .collect();
    ids.sort();
    let mut expected = vec![harness.app.id, other.id];
    expected.sort();
    assert_eq!(ids, expected, "the private application is not listed");
    assert!(list.applications.iter().all(|app| {
        app.identity_configuration.identity_provider_type == IdentityProviderType::Basic
    }));

    // The other application's data: 403, whatever the endpoint.
    let theirs = format!("/apps/{}/clients", other.id);
    let answer = harness
        .call(Method::POST, &theirs, register_body("intruder", &[]))
        .await;
    assert_eq!(answer.error_code(), ErrorCode::Forbidden);
    let answer = harness
        .call(Method::GET, &theirs, discover_body(None, "x"))
        .await;
    assert_eq!(answer.error_code(), ErrorCode::Forbidden);
    let answer = harness
        .call(
            Method::DELETE,
            &format!("{theirs}/{}", Uuid::new_v4()),
            vec![],
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::Forbidden);
    // An application that does not exist here.
    let answer = harness
        .call(
            Method::POST,
            &format!("/apps/{}/clients", Uuid::new_v4()),
            register_body("x", &[]),
        )
        .await;
    assert_eq!(answer.error_code(), ErrorCode::UnknownApplication);
}

/// Every bad input of the issue, each with its own code, nothing changed.
#[tokio::test]
async fn bad_registry_input_is_refused() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let registry = Registry::new(&harness);
    let long = "x".repeat(256);
    let cases: Vec<(&str, Answer, ErrorCode)> = vec![
        (
            "empty handle",
            registry.register("", &[]).await,
            ErrorCode::InvalidHandle,
        ),
        (
            "over-long handle",
            registry.register(&long, &[]).await,
            ErrorCode::InvalidHandle,
        ),
        (
            "control character",
            registry.register("a\u{7}b", &[]).await,
            ErrorCode::InvalidHandle,
        ),
        (
            "empty tag",
            registry.register("a", &[""]).await,
            ErrorCode::InvalidTag,
        ),
        (
            "over-long tag",
            registry.register("a", &[&long]).await,
            ErrorCode::InvalidTag,
        ),
    ];
    for (name, answer, code) in cases {
        assert_eq!(answer.error_code(), code, "{name}");
    }
    let too_many: Vec<String> = (0..65).map(|index| format!("t{index}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert_eq!(
        registry.register("a", &too_many).await.error_code(),
        ErrorCode::TooManyTags
    );
    // 64 is the documented limit, and allowed.
    assert_eq!(
        registry.register("a", &too_many[..64]).await.status,
        StatusCode::CREATED
    );

    let id = registry.register_ok("b", &["keep"]).await;
    let answer = registry.update(id, None, &["same"], &["same"]).await;
    assert_eq!(answer.error_code(), ErrorCode::ConflictingTagChange);
    assert_eq!(
        registry.update(id, Some(""), &[], &[]).await.error_code(),
        ErrorCode::InvalidHandle
    );
    assert_eq!(
        registry.update(id, None, &[&long], &[]).await.error_code(),
        ErrorCode::InvalidTag
    );
    assert_eq!(
        registry.read_ok(id).await,
        ("b".into(), vec!["keep".into()]),
        "nothing changed"
    );

    // Malformed UUIDs in the path.
    for path in [
        "/apps/not-a-uuid/clients".to_string(),
        format!("/apps/{}/clients/1234", harness.app.id),
    ] {
        let answer = harness.call(Method::GET, &path, vec![]).await;
        assert_eq!(answer.error_code(), ErrorCode::MalformedPath, "{path}");
    }

    // Trailing bytes, truncation, a wrong version.
    let mut trailing = register_body("c", &[]);
    trailing.push(0);
    let path = format!("/apps/{}/clients", harness.app.id);
    assert_eq!(
        harness
            .call(Method::POST, &path, trailing)
            .await
            .error_code(),
        ErrorCode::MalformedBody
    );
    let body = register_body("c", &["tag"]);
    let truncated = body[..body.len() - 1].to_vec();
    assert_eq!(
        harness
            .call(Method::POST, &path, truncated)
            .await
            .error_code(),
        ErrorCode::MalformedBody
    );
    let mut wrong_version = body.clone();
    wrong_version[1] = 9;
    assert_eq!(
        harness
            .call(Method::POST, &path, wrong_version)
            .await
            .error_code(),
        ErrorCode::UnsupportedVersion
    );
    assert!(
        registry.discover("tag").await.is_empty(),
        "no client was registered"
    );
    assert_eq!(
        harness.call(Method::PUT, &path, vec![]).await.error_code(),
        ErrorCode::MethodNotAllowed
    );
}

/// An X.509 application publishes its `IdentityConfiguration` with its `X509Parameters`.
#[tokio::test]
async fn x509_application_configuration_is_published() {
    let dir = tempfile::tempdir().unwrap();
    mimi_gateway::dev_certs::DevCa::open_or_create(dir.path()).unwrap();
    let x509_id = Uuid::new_v4();
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.applications.push(ApplicationConfig {
            id: x509_id,
            public: true,
            identity: IdentityConfig {
                provider: IdentityProviderKind::X509,
                supports_accounts: true,
                supports_domains: true,
                device_handle_range: Some(HandleRangeConfig { start: 0, end: 1 }),
                account_handle_offset: Some(2),
                domain_name_offset: Some(3),
                trust_roots: vec![dir.path().join("ca.pem")],
            },
            keys: vec![],
        });
    })
    .await;
    let list: ApplicationList =
        decode_exact(&harness.call(Method::GET, "/apps", vec![]).await.body).unwrap();
    let x509 = list
        .applications
        .iter()
        .find(|app| app.id == *x509_id.as_bytes())
        .expect("listed");
    let identity = &x509.identity_configuration;
    assert_eq!(identity.identity_provider_type, IdentityProviderType::X509);
    assert!(identity.supports_accounts.0 && identity.supports_domains.0);
    let parameters: X509Parameters = decode_exact(identity.parameters.as_slice()).unwrap();
    assert_eq!(
        parameters.device_handle_range,
        X509DeviceHandleRange { start: 0, end: 1 }
    );
    assert_eq!(
        (
            parameters.account_handle_offset,
            parameters.domain_name_offset
        ),
        (Some(2), Some(3))
    );
}

/// The clients of an account are the handles `<account>/...`: one range of the handle index,
/// kept in step with registration, renaming and deletion, on every store.
async fn handle_prefix_contract(store: mimi_gateway::store::SharedStore) {
    use mimi_gateway::store::{Client, ClientChange};
    let app = Uuid::new_v4();
    let register = |handle: &str| Client {
        id: Uuid::new_v4(),
        handle: handle.into(),
        tags: Default::default(),
    };
    let phone = register("alice/phone");
    for client in [
        &phone,
        &register("alice/laptop"),
        &register("alicia/phone"),
        &register("alice"),
    ] {
        store.register_client(app, client).await.unwrap();
    }
    let handles =
        |found: Vec<(String, Uuid)>| found.into_iter().map(|(h, _)| h).collect::<Vec<_>>();
    assert_eq!(
        handles(
            store
                .clients_with_handle_prefix(app, "alice/")
                .await
                .unwrap()
        ),
        ["alice/laptop", "alice/phone"]
    );
    let change = ClientChange {
        handle: Some("alice/tablet".into()),
        ..ClientChange::default()
    };
    store
        .update_client(app, phone.id, &change, 64)
        .await
        .unwrap();
    let found = store
        .clients_with_handle_prefix(app, "alice/")
        .await
        .unwrap();
    assert_eq!(handles(found.clone()), ["alice/laptop", "alice/tablet"]);
    assert!(found.contains(&("alice/tablet".to_string(), phone.id)));
    assert!(store.delete_client(app, phone.id).await.unwrap());
    assert_eq!(
        handles(
            store
                .clients_with_handle_prefix(app, "alice/")
                .await
                .unwrap()
        ),
        ["alice/laptop"]
    );
    assert!(
        store
            .clients_with_handle_prefix(app, "bob/")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_an_account_are_one_handle_range_on_every_store() {
    use mimi_gateway::config::StoreConfig;
    handle_prefix_contract(
        mimi_gateway::store::open(&StoreConfig::default())
            .await
            .unwrap(),
    )
    .await;
    let redis = RedisServer::start();
    let single = StoreConfig {
        redis_url: Some(redis.url()),
        ..StoreConfig::default()
    };
    handle_prefix_contract(mimi_gateway::store::open(&single).await.unwrap()).await;
    let cluster = RedisCluster::start();
    let clustered = StoreConfig {
        redis_cluster_urls: cluster.urls(),
        ..StoreConfig::default()
    };
    handle_prefix_contract(mimi_gateway::store::open(&clustered).await.unwrap()).await;
}
