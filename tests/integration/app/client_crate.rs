//! The `mimi-client` crate against the real gateway over TLS 1.3 / HTTP/2, the way an
//! application server uses it: registry, key queues, a group with a real openmls member
//! added and joining from the Welcome the gateway serves, a commit that loses its epoch
//! retried by `upload_commit_retrying`, messages paged and acknowledged, and every refusal
//! typed (code, status, current epoch as a number, the gateway's clock).

use http::StatusCode;
use mimi_client::{Client, ClientConfig, Commit, Error, TrustRoots};
use mimi_wire::ErrorCode;

use crate::support::group_client::Member;
use crate::support::*;

fn client_for(harness: &Harness) -> Client {
    Client::new(ClientConfig {
        url: format!("https://localhost:{}", harness.application.port()),
        app: harness.app.id,
        key: harness.app.key.clone(),
        key_id: harness.app.key_id.clone(),
        roots: TrustRoots::PemFile(harness.ca.clone()),
        gateway_domain: Some(harness.app.recipient.clone()),
        connect_to: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_server_uses_the_client_crate() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let client = client_for(&harness);

    let me = client.whoami().await.unwrap();
    assert_eq!(me.sender, harness.app.id.to_string());
    let first = client.traffic();
    assert_eq!(
        (first.requests, first.body_bytes_sent),
        (1, 0),
        "one request, no body"
    );
    assert_eq!(
        first.body_bytes_received as usize,
        mimi_wire::encode(&me).unwrap().len()
    );

    // Registry.
    let alice = client.register_client("alice", &["team"]).await.unwrap();
    let carol = client.register_client("carol", &["team"]).await.unwrap();
    let record = client.read_client(carol).await.unwrap();
    assert_eq!(record.client_handle, "carol");
    let updated = client
        .update_client(carol, None, &["friends"], &[])
        .await
        .unwrap();
    assert_eq!(updated.tags, ["friends", "team"]);
    let found = client.discover_clients("team", None).await.unwrap();
    let mut handles: Vec<_> = found.iter().map(|c| c.client_handle.as_str()).collect();
    handles.sort();
    assert_eq!(handles, ["alice", "carol"]);
    let refused = client.register_client("carol", &[]).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::HandleTaken), "{refused}");
    assert!(matches!(
        refused,
        Error::Gateway {
            status: StatusCode::CONFLICT,
            ..
        }
    ));
    // The refusal carries the gateway's clock: here it agrees with ours.
    let skew = refused.clock_skew_secs().expect("the gateway's Date");
    assert!(skew.abs() <= 5, "{skew}");

    // Key queues: carol's packages, one retrieved for alice.
    let mut carol_member = Member::new("carol");
    let queue = client.create_key_queue(carol, 1, 1, "").await.unwrap();
    let packages = vec![
        carol_member.mls.key_package(86_400),
        carol_member.mls.key_package(86_400),
    ];
    assert_eq!(
        client
            .update_key_queue(carol, queue, &packages, false, None, None)
            .await
            .unwrap(),
        2
    );
    let retrieved = client
        .retrieve_key_package(carol, None, 1, 1, None, "alice")
        .await
        .unwrap();
    assert!(packages.contains(&retrieved.key_package) && !retrieved.is_final_key);
    // The pool holds what no commit has used yet, the package assigned to alice too.
    assert!(client.key_queue_is_low(carol, queue, 3).await.unwrap());
    assert!(!client.key_queue_is_low(carol, queue, 2).await.unwrap());

    // A group: alice creates it and adds carol, who joins from what the gateway serves.
    let mut alice_member = Member::new("alice");
    let (group_info, tree) = alice_member.create_group();
    let created = client.create_group(&group_info, &tree).await.unwrap();
    let group = created.group_id.as_slice().to_vec();
    assert_eq!((group.clone(), created.epoch), (alice_member.group_id(), 0));
    let (commit, welcome, group_info) =
        alice_member.add(std::slice::from_ref(&retrieved.key_package));
    let add = Commit {
        commit,
        group_info: Some(group_info),
        welcome: Some(welcome),
    };
    assert_eq!(client.upload_commit(&group, &add).await.unwrap(), 1);
    let welcomes = client.welcomes("carol").await.unwrap();
    assert_eq!(welcomes.len(), 1);
    carol_member.join(&welcomes[0]);
    let welcome_id = uuid::Uuid::from_bytes(welcomes[0].welcome_id);
    client
        .acknowledge_welcome("carol", welcome_id)
        .await
        .unwrap();
    assert!(client.welcomes("carol").await.unwrap().is_empty());

    // Two commits for epoch 1: the second to arrive is refused with the epoch as a number.
    let (lost, lost_info) = alice_member.update_pending();
    alice_member.discard();
    let (won, won_info) = alice_member.update_pending();
    let winner = Commit {
        commit: won.clone(),
        group_info: Some(won_info),
        welcome: None,
    };
    assert_eq!(client.upload_commit(&group, &winner).await.unwrap(), 2);
    alice_member.confirm();
    let stale = Commit {
        commit: lost,
        group_info: Some(lost_info),
        welcome: None,
    };
    let refused = client.upload_commit(&group, &stale).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::StaleEpoch), "{refused}");
    assert_eq!(refused.current_epoch(), Some(2));

    // The retry helper: the stale commit first, then, given what it missed, a fresh one.
    let mut calls = Vec::new();
    let epoch = client
        .upload_commit_retrying(&group, 3, |missed| {
            calls.push(missed.to_vec());
            if calls.len() == 1 {
                return Ok(stale.clone());
            }
            let (commit, group_info) = alice_member.update_pending();
            Ok(Commit {
                commit,
                group_info: Some(group_info),
                welcome: None,
            })
        })
        .await
        .unwrap();
    assert_eq!(epoch, 3);
    alice_member.confirm();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].is_empty());
    assert_eq!(calls[1].len(), 1, "epoch 2's handshake");
    assert_eq!(calls[1][0], won);
    assert_eq!(client.group_status(&group).await.unwrap().epoch, 3);

    // Carol catches up on the commits and reads alice's message, fetched page by page.
    for packet in client.control_messages(&group, 2, None).await.unwrap() {
        assert!(!carol_member.apply(&packet), "carol stays");
    }
    assert_eq!(carol_member.epoch(), 3);
    assert_eq!(carol_member.secret(), alice_member.secret());
    let message = alice_member.send_message(b"hello carol");
    assert_eq!(
        client
            .send_message(&group, &message, Some("alice"))
            .await
            .unwrap(),
        3
    );
    let (queued, next) = client.fetch_all_messages("carol", 0).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        carol_member.read_message(queued[0].message.as_slice()),
        b"hello carol"
    );
    assert_eq!(
        client
            .acknowledge_messages("carol", next - 1)
            .await
            .unwrap(),
        1
    );
    assert!(
        client
            .fetch_all_messages("carol", next)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        client.read_client(alice).await.unwrap().client_handle,
        "alice"
    );
    client.delete_client(alice).await.unwrap();
    let gone = client.read_client(alice).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::UnknownClient), "{gone}");
}

/// The same crate with a member of another MLS implementation (mls-rs): Rita publishes
/// mls-rs key packages through it, joins an openmls creator's group from the Welcome it
/// fetches, and loses a commit race that `upload_commit_retrying` recovers by handing her
/// what she missed; her message reaches Alice through `fetch_all_messages`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mls_rs_member_goes_through_the_client_crate() {
    use crate::support::mls_rs_client::RsMember;

    let harness = Harness::start(StoreSpec::Memory).await;
    let client = client_for(&harness);
    client.register_client("alice", &[]).await.unwrap();
    let rita_id = client.register_client("rita", &[]).await.unwrap();
    let mut rita = RsMember::basic("rita");
    let queue = client.create_key_queue(rita_id, 1, 1, "").await.unwrap();
    let packages = [rita.key_package(), rita.key_package()];
    assert_eq!(
        client
            .update_key_queue(rita_id, queue, &packages, false, None, None)
            .await
            .unwrap(),
        2
    );
    let package = client
        .retrieve_key_package(rita_id, None, 1, 1, None, "alice")
        .await
        .unwrap();
    assert!(packages.contains(&package.key_package));

    let mut alice = Member::new("alice");
    let (group_info, tree) = alice.create_group();
    let group = client
        .create_group(&group_info, &tree)
        .await
        .unwrap()
        .group_id
        .as_slice()
        .to_vec();
    let (commit, welcome, group_info) = alice.add(&[package.key_package]);
    let add = Commit {
        commit,
        group_info: Some(group_info),
        welcome: Some(welcome),
    };
    assert_eq!(client.upload_commit(&group, &add).await.unwrap(), 1);
    let welcomes = client.welcomes("rita").await.unwrap();
    rita.join(&welcomes[0]);
    assert_eq!(rita.secret(), alice.secret());

    // Alice's update lands first; Rita's, made at epoch 1, is refused and remade.
    let (update, update_info) = alice.update();
    let alices = Commit {
        commit: update.clone(),
        group_info: Some(update_info),
        welcome: None,
    };
    assert_eq!(client.upload_commit(&group, &alices).await.unwrap(), 2);
    let mut missed_seen = Vec::new();
    let epoch = client
        .upload_commit_retrying(&group, 2, |missed| {
            missed_seen.push(missed.to_vec());
            if !missed.is_empty() {
                rita.discard();
                for packet in missed {
                    assert!(!rita.apply(packet), "rita stays");
                }
            }
            let (commit, group_info) = rita.update();
            Ok(Commit {
                commit,
                group_info: Some(group_info),
                welcome: None,
            })
        })
        .await
        .unwrap();
    assert_eq!(epoch, 3);
    rita.confirm();
    assert_eq!(missed_seen.len(), 2);
    assert_eq!(missed_seen[1], [update], "epoch 2's commit, Alice's");
    for packet in client.control_messages(&group, 3, None).await.unwrap() {
        assert!(!alice.apply(&packet));
    }
    assert_eq!(alice.secret(), rita.secret());

    let message = rita.send_message(b"hello from mls-rs");
    client
        .send_message(&group, &message, Some("rita"))
        .await
        .unwrap();
    let (queued, _) = client.fetch_all_messages("alice", 0).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        alice.read_message(queued[0].message.as_slice()),
        b"hello from mls-rs"
    );
}
