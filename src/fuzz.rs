//! Entry points for fuzzing (issue 14, "Fuzzing in the tree"): one per decoder a peer or an
//! application can reach, each taking arbitrary bytes through the exact decode the endpoints
//! use and panicking only when an oracle breaks (a decoded value that does not re-encode to
//! a value decoding the same, or whose declared length is not its encoded length). The
//! `fuzz/` crate (cargo-fuzz, nightly) calls [`run`] from a few-line target per name; the
//! test suite replays [`seeds`] and every file of `fuzz/corpus/` and `fuzz/artifacts/`
//! through the same function on stable, so past crashers stay fixed.

use std::sync::OnceLock;

use mimi_wire::{ds, groups, key_queues, messages, registry, signing, verification_key};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use tls_codec::{Deserialize, Serialize, Size};

use crate::identity::{BasicProvider, IdentityProvider};
use crate::mls::group::{self, CommitUpload, GroupInfoUpload, Joining};
use crate::mls::key_package::{MemberRules, QueueRules};

/// The fuzz targets, by name (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[&str] = &[
    "ds_request",
    "ds_response",
    "ds_fanout_request",
    "queueing_service_request",
    "verification_key_response",
    "application_bodies",
    "signature_header",
    "error_response",
    "key_package",
    "group_creation",
    "commit",
    "proposal",
    "credential",
    "grease",
];

/// Runs the target `name` on `data`. Unknown names do nothing.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "ds_request" => round_trip::<ds::DSRequest>(data),
        "ds_response" => round_trip::<ds::DSResponse>(data),
        "ds_fanout_request" => round_trip::<ds::DSFanoutRequest>(data),
        "queueing_service_request" => round_trip::<ds::QueueingServiceRequest>(data),
        "verification_key_response" => {
            round_trip::<verification_key::VerificationKeyResponse>(data)
        }
        "application_bodies" => application_bodies(data),
        "signature_header" => {
            if let Ok(envelope) = signing::RequestSignature::from_header_value(data) {
                let again = envelope
                    .to_header_value()
                    .expect("a decoded envelope encodes");
                let decoded = signing::RequestSignature::from_header_value(again.as_bytes())
                    .expect("re-encoded envelope decodes");
                assert_eq!(decoded, envelope);
            }
        }
        "error_response" => round_trip::<mimi_wire::ErrorResponse>(data),
        "key_package" => {
            let _ = crate::mls::key_package::validate(data, &queue_rules());
        }
        "group_creation" => {
            let (group_info, tree) = split(data);
            let _ = group::create(group_info, tree, &member_rules());
        }
        "commit" => commit(data),
        "proposal" => {
            let fixture = fixture();
            if let Ok((mut active, _)) =
                group::create(&fixture.group_info, &fixture.tree, &member_rules())
            {
                let _ = active.accept_proposal(&fixture.group_id, data, &member_rules());
            }
        }
        "credential" => {
            let _ = crate::mls::certificates(data);
        }
        "grease" => {
            let _ = crate::mls::grease::in_message(data);
            let _ = crate::mls::grease::in_tree(data);
        }
        _ => {}
    }
}

/// Every application-listener body, chosen by the first byte.
fn application_bodies(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => round_trip::<registry::RegisterClientRequest>(body),
        1 => round_trip::<registry::UpdateClientRequest>(body),
        2 => round_trip::<registry::DiscoverClientsRequest>(body),
        3 => round_trip::<key_queues::CreateKeyQueueRequest>(body),
        4 => round_trip::<key_queues::UpdateKeyQueueRequest>(body),
        5 => round_trip::<key_queues::RetrieveKeyPackageRequest>(body),
        6 => round_trip::<groups::CreateGroupRequest>(body),
        7 => round_trip::<groups::UploadCommitRequest>(body),
        8 => round_trip::<groups::ControlMessagesRequest>(body),
        9 => round_trip::<messages::SendGroupMessageRequest>(body),
        10 => round_trip::<messages::FetchMessagesRequest>(body),
        _ => round_trip::<key_queues::RetrieveConnectionKeyPackagesRequest>(body),
    }
}

/// Decodes exactly as the endpoints do; a decoded value's encoding has its declared length
/// and decodes to the same value. (Inputs may use non-minimal length prefixes, which decode
/// but re-encode shorter: the value, not the bytes, must survive.)
fn round_trip<T: Deserialize + Serialize + Size + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(value) = mimi_wire::decode_exact::<T>(data) else {
        return;
    };
    let encoded = mimi_wire::encode(&value).expect("a decoded value encodes");
    assert_eq!(encoded.len(), value.tls_serialized_len(), "declared length");
    let again: T = mimi_wire::decode_exact(&encoded).expect("its encoding decodes");
    assert_eq!(again, value, "round trip");
}

/// Two inputs from one: the first two bytes give the first one's length.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let length = data.get(..2).map_or(0, |pair| {
        usize::from(u16::from_be_bytes([pair[0], pair[1]]))
    });
    let rest = data.get(2..).unwrap_or_default();
    rest.split_at(length.min(rest.len()))
}

/// A commit staged against a one-member group; the rest of the input, if any, is its
/// PartialGroupInfo (extensions, then signature, split as [`split`] does).
fn commit(data: &[u8]) {
    let fixture = fixture();
    let Ok((mut active, _)) = group::create(&fixture.group_info, &fixture.tree, &member_rules())
    else {
        return;
    };
    let (commit, partial) = split(data);
    let (extensions, signature) = split(partial);
    let group_info = if partial.is_empty() {
        GroupInfoUpload::Absent
    } else {
        GroupInfoUpload::Partial {
            extensions,
            signature,
        }
    };
    let upload = CommitUpload {
        commit,
        group_info,
        welcome: None,
        joining: Joining::WelcomeRequired,
        describe: true,
    };
    let _ = active.stage_commit(&fixture.group_id, &upload, &member_rules());
}

fn provider() -> &'static BasicProvider {
    static PROVIDER: BasicProvider = BasicProvider { domains: false };
    &PROVIDER
}

fn member_rules() -> MemberRules<'static> {
    MemberRules {
        max_lifetime_secs: 84 * 86_400 + 3_600,
        identity: provider() as &dyn IdentityProvider,
        domain: "localhost",
        federated: false,
    }
}

fn queue_rules() -> QueueRules<'static> {
    QueueRules {
        protocol_version: 1,
        cipher_suite: 1,
        max_lifetime_secs: 84 * 86_400 + 3_600,
        identity: provider(),
        owner_handle: "alice",
        domain: "localhost",
        final_key: false,
    }
}

/// A real one-member group (Alice's, basic credential, plaintext handshakes) and valid
/// messages for it, made once.
struct Fixture {
    group_id: Vec<u8>,
    group_info: Vec<u8>,
    tree: Vec<u8>,
    key_package: Vec<u8>,
    update: Vec<u8>,
    proposal: Vec<u8>,
}

const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).expect("key pair");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(b"alice".to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(false)
            .build();
        let key_package = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(30 * 86_400))
            .build(SUITE, &provider, &signer, credential.clone())
            .expect("key package");
        let key_package = MlsMessageOut::from(key_package.key_package().clone())
            .to_bytes()
            .expect("encodes");
        let mut group =
            MlsGroup::new(&provider, &signer, &config, credential).expect("a new group");
        let group_info = group
            .export_group_info(provider.crypto(), &signer, false)
            .expect("group info")
            .to_bytes()
            .expect("encodes");
        let tree = group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .expect("encodes");
        let (proposal, _) = group
            .propose_self_update(&provider, &signer, LeafNodeParameters::default())
            .expect("proposal");
        let proposal = proposal.to_bytes().expect("encodes");
        group
            .clear_pending_proposals(provider.storage())
            .expect("cleared");
        let (update, _, _) = group
            .self_update(&provider, &signer, LeafNodeParameters::default())
            .expect("update")
            .into_contents();
        Fixture {
            group_id: group.group_id().as_slice().to_vec(),
            group_info,
            tree,
            key_package,
            update: update.to_bytes().expect("encodes"),
            proposal,
        }
    })
}

/// Valid inputs for each target, the seeds of its corpus.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let fixture = fixture();
    let with_length = |first: &[u8], rest: &[u8]| {
        let mut out = u16::try_from(first.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(first);
        out.extend_from_slice(rest);
        out
    };
    let request = |body: ds::DSRequestBody| {
        mimi_wire::encode(&ds::DSRequest {
            version: ds::DS_PROTOCOL_VERSION,
            body,
            auth: ds::DSAuthData::Anonymous,
        })
        .expect("encodes")
    };
    let message = |bytes: &[u8]| ds::MlsMessage::from_bytes(bytes.to_vec()).expect("an MLSMessage");
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let claims = signing::RequestClaims {
        sender_kind: signing::SenderKind::Provider,
        sender: "a.example".into(),
        recipient: "b.example".into(),
        timestamp: 1_700_000_000,
        request_id: [1; 16],
        key_id: "k1".into(),
    };
    let header = signing::sign(&key, claims, "POST", "/group_operation", b"")
        .expect("signs")
        .to_header_value()
        .expect("encodes");
    let mut upload = vec![7u8];
    upload.extend(
        mimi_wire::encode(&groups::UploadCommitRequest {
            version: 1,
            commit_packet: fixture.update.clone().into(),
            group_info: None,
            welcome_packet: None,
        })
        .expect("encodes"),
    );
    vec![
        (
            "ds_request",
            request(ds::DSRequestBody::SendMessage(ds::SendMessageRequest {
                application_message: message(&fixture.update),
            })),
        ),
        (
            "ds_request",
            request(ds::DSRequestBody::UploadProposal(
                ds::UploadProposalRequest {
                    proposal: message(&fixture.proposal),
                },
            )),
        ),
        (
            "ds_response",
            mimi_wire::encode(&ds::DSResponse {
                version: ds::DS_PROTOCOL_VERSION,
                body: ds::DSResponseBody::Ok,
            })
            .expect("encodes"),
        ),
        ("signature_header", header.into_bytes()),
        (
            "error_response",
            mimi_wire::encode(&mimi_wire::ErrorResponse {
                code: 507,
                detail: "current epoch 3".into(),
                fields: vec![mimi_wire::ErrorField::current_epoch(3)],
            })
            .expect("encodes"),
        ),
        ("application_bodies", upload),
        ("key_package", fixture.key_package.clone()),
        (
            "group_creation",
            with_length(&fixture.group_info, &fixture.tree),
        ),
        ("commit", with_length(&fixture.update, &[])),
        ("proposal", fixture.proposal.clone()),
        ("credential", vec![0x02, 0x30, 0x00, 0x01, 0x30]),
        ("grease", fixture.key_package.clone()),
    ]
}
