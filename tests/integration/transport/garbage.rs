//! Bad input never panics the server: random bodies and bit-flipped valid bodies, signed so
//! they reach the decoders, sent to every endpoint that takes input. Each answer is a 4xx
//! with a documented error body, and the gateway keeps serving. Bounded: a fixed seed and
//! count.

use http::{Method, StatusCode};
use mimi_wire::codec::WireBool;
use mimi_wire::encode;
use mimi_wire::groups::{
    ControlMessagesRequest, CreateGroupRequest, UploadCommitRequest, UploadProposalRequest,
};
use mimi_wire::key_queues::{
    CreateKeyQueueRequest, RetrieveKeyPackageRequest, UpdateKeyQueueRequest,
};
use mimi_wire::registry::{DiscoverClientsRequest, RegisterClientRequest, UpdateClientRequest};
use mimi_wire::verification_key::VerificationKeyRequest;
use rand::{Rng, SeedableRng};
use tls_codec::VLBytes;

use crate::support::group_client::{GroupApi, Member, welcomes};
use crate::support::key_queues::QueueFixture;
use crate::support::*;

const CASES_PER_ENDPOINT: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_corrupted_bodies_get_4xx_and_never_panic() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let fixture = QueueFixture::new(&harness, "target").await;
    fixture.upload(&[fixture.mls.key_package(1000)]).await;
    let app = harness.app.id;
    let client = fixture.client;
    let key_package = fixture.mls.key_package(1000);
    // A group of alice and bob, and a valid body for each group endpoint to corrupt.
    let mut alice = Member::new("alice");
    let (group_info, tree) = alice.create_group();
    let create = encode(&CreateGroupRequest {
        version: 1,
        group_info: VLBytes::new(group_info.clone()),
        ratchet_tree: VLBytes::new(tree.clone()),
    })
    .unwrap();
    GroupApi::create(&harness, &group_info, &tree).await;
    let api = GroupApi::new(&harness, &alice.group_id());
    let mut bob = Member::new("bob");
    let (commit, welcome, group_info) = alice.add(&[bob.mls.key_package(1000)]);
    api.commit_ok(&commit, Some(&group_info), Some(&welcome))
        .await;
    bob.join(&welcomes(&harness, "bob").await[0]);
    let group = format!("/apps/{app}/groups/{}", api.group);
    let proposal = bob.propose_update();
    let (commit, group_info) = alice.update();
    let endpoints: Vec<(Method, String, Vec<u8>)> = vec![
        (Method::PUT, format!("/apps/{app}/groups"), create),
        (
            Method::PUT,
            format!("{group}/proposals"),
            encode(&UploadProposalRequest {
                version: 1,
                packet: VLBytes::new(proposal),
            })
            .unwrap(),
        ),
        (
            Method::PUT,
            format!("{group}/epochs"),
            encode(&UploadCommitRequest {
                version: 1,
                commit_packet: VLBytes::new(commit),
                group_info: Some(VLBytes::new(group_info)),
                welcome_packet: None,
            })
            .unwrap(),
        ),
        (
            Method::POST,
            format!("{group}/control-msgs"),
            encode(&ControlMessagesRequest {
                version: 1,
                start_epoch_id: 0,
                end_epoch_id: Some(1),
            })
            .unwrap(),
        ),
        (
            Method::POST,
            format!("/apps/{app}/clients"),
            encode(&RegisterClientRequest {
                version: 1,
                client_handle: "h".into(),
                tags: vec!["t".into()],
            })
            .unwrap(),
        ),
        (
            Method::PATCH,
            format!("/apps/{app}/clients/{client}"),
            encode(&UpdateClientRequest {
                version: 1,
                client_handle: Some("x".into()),
                tags_to_add: vec!["a".into()],
                tags_to_remove: vec![],
            })
            .unwrap(),
        ),
        (
            Method::POST,
            format!("/apps/{app}/clients?discover"),
            encode(&DiscoverClientsRequest {
                version: 1,
                domain: None,
                tag: "t".into(),
            })
            .unwrap(),
        ),
        (
            Method::POST,
            format!("/apps/{app}/clients/{client}/queues"),
            encode(&CreateKeyQueueRequest {
                version: 1,
                protocol_version: 1,
                cipher_suite: 1,
                app_label: "l".into(),
            })
            .unwrap(),
        ),
        (
            Method::PATCH,
            fixture.path(),
            encode(&UpdateKeyQueueRequest {
                version: 1,
                key_packages: vec![VLBytes::new(key_package.clone())],
                is_reset: WireBool(false),
                app_label: None,
                final_key: Some(VLBytes::new(key_package)),
            })
            .unwrap(),
        ),
        (
            Method::POST,
            format!("/apps/{app}/clients/{client}/keyPackage"),
            encode(&RetrieveKeyPackageRequest {
                version: 1,
                domain: None,
                protocol_version: 1,
                cipher_suite: 1,
                app_label: None,
                receiver_client_id: "r".into(),
            })
            .unwrap(),
        ),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for (method, path, valid) in &endpoints {
        for case in 0..CASES_PER_ENDPOINT {
            let body = if case % 2 == 0 {
                let length = rng.gen_range(0..300);
                (0..length).map(|_| rng.r#gen::<u8>()).collect::<Vec<u8>>()
            } else {
                let mut body = valid.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..body.len());
                    body[at] ^= 1 << rng.gen_range(0..8);
                }
                if rng.gen_bool(0.3) {
                    body.truncate(rng.gen_range(0..body.len()));
                }
                body
            };
            let answer = harness.call(method.clone(), path, body).await;
            let status = answer.status;
            // A flipped bit may still decode into a valid request; anything else is a 4xx
            // with a documented error body.
            if !status.is_success() {
                assert!(
                    status.is_client_error(),
                    "{method} {path} case {case}: {status}"
                );
                answer.error_code();
            }
        }
    }
    let federation = harness.client(Protocol::Http1);
    for case in 0..CASES_PER_ENDPOINT {
        let mut body = encode(&VerificationKeyRequest { version: 1 }).unwrap();
        body.extend((0..case % 5).map(|_| rng.r#gen::<u8>()));
        let answer = federation
            .send(
                harness.federation,
                Method::POST,
                "/verification_key",
                Default::default(),
                body,
            )
            .await;
        assert!(answer.status == StatusCode::OK || answer.status.is_client_error());
    }
    // Still serving.
    let answer = harness.call(Method::GET, "/apps", vec![]).await;
    assert_eq!(answer.status, StatusCode::OK);
}
