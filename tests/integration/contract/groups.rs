//! The group store contract, directly on the `Groups` trait: one sequence run on the memory
//! store, a real `redis-server` and a real three-master Redis Cluster, with the same answers
//! on each (compared step by step), then Redis-only checks of what is left in Redis (welcome
//! pruning, empty outboxes) and of the outbox replay a dead gateway needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mimi_gateway::config::StoreConfig;
use mimi_gateway::mls::group_state::{PublicState, StateChange};
use mimi_gateway::store::redis::RedisStore;
use mimi_gateway::store::{
    self, CommitRecord, GroupStoreError, Groups, HeldProposal, KeyQueueAttributes, KeyQueueUpdate,
    MessageQueues, NewGroup, SharedStore, StoredKeyPackage, WelcomeRecord,
};
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::support::*;

/// A fixed clock: only what the store is told counts.
const NOW: u64 = 1_700_000_000;
/// Group ids with bytes that are not text, and braces that must not end a hash tag.
const G1: &[u8] = &[0x00, 0xff, b'{', b'}', b':'];
const G3: &[u8] = &[0x7b];
const HANDLE_CAROL: &str = "c{a}:rol ü";

/// The answers of one store, step by step, for comparison between stores.
#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    fn note<T: std::fmt::Debug>(&mut self, step: &str, value: T) -> T {
        self.0.push(format!("{step}: {value:?}"));
        value
    }
}

fn state(seed: u8) -> PublicState {
    PublicState {
        nodes: BTreeMap::from([
            (0, vec![seed, 0x00, 0xff]),
            (1, vec![seed, 1]),
            (2, vec![seed, 2, 0x80]),
        ]),
        leaf_slots: 2,
        parent_slots: 1,
        tree_hash: vec![seed; 32],
        context: vec![seed, 0xc0, 0x00],
        interim_transcript_hash: Vec::new(),
        confirmation_tag: vec![seed, 0xfe],
    }
}

fn change(epoch: u8, nodes: &[(u32, Option<Vec<u8>>)]) -> StateChange {
    StateChange {
        nodes: nodes.iter().cloned().collect(),
        leaf_slots: 3 + u32::from(epoch),
        parent_slots: 2 + u32::from(epoch),
        tree_hash: vec![epoch; 32],
        context: vec![0xc0, epoch],
        interim_transcript_hash: vec![0x17, epoch],
        confirmation_tag: vec![0x7a, epoch],
    }
}

fn commit(from_epoch: u64, change: StateChange, now: u64) -> CommitRecord {
    CommitRecord {
        from_epoch,
        change,
        messages: vec![format!("commit from {from_epoch}").into_bytes()],
        group_info: Some(format!("group info {}", from_epoch + 1).into_bytes()),
        welcome: None,
        removed_handles: Vec::new(),
        used_key_packages: Vec::new(),
        now,
        retained_epochs: 0,
        fanout: Vec::new(),
    }
}

fn welcome(id: u128, recipients: &[&str], expires_at: u64) -> WelcomeRecord {
    WelcomeRecord {
        id: Uuid::from_u128(id),
        packet: vec![0x57, 0x00, id as u8],
        ratchet_tree: vec![0x54, 0xff, id as u8],
        recipients: recipients
            .iter()
            .map(|handle| (*handle).to_owned())
            .collect(),
        expires_at,
    }
}

fn ids(welcomes: &[store::PendingWelcome]) -> Vec<u128> {
    welcomes
        .iter()
        .map(|welcome| welcome.id.as_u128())
        .collect()
}

fn attributes() -> KeyQueueAttributes {
    KeyQueueAttributes {
        protocol_version: 1,
        cipher_suite: 1,
        app_label: "group-store".into(),
    }
}

fn package(seed: u8, not_after: u64) -> StoredKeyPackage {
    StoredKeyPackage {
        reference: vec![seed; 32],
        not_after,
        bytes: vec![0x4b, seed],
    }
}

/// One run of the contract on a store: its transcript is compared across backends.
struct Run {
    store: SharedStore,
    app: Uuid,
    other_app: Uuid,
    t: Transcript,
}

/// The contract, step by named step; answers its transcript.
async fn groups_contract(store: SharedStore, app: Uuid) -> Transcript {
    let mut run = Run {
        store,
        app,
        other_app: Uuid::from_u128(app.as_u128() ^ 1),
        t: Transcript::default(),
    };
    let proposal = unknown_groups(&mut run).await;
    let created = creation(&mut run).await;
    proposals(&mut run, &proposal).await;
    let (mut expected, epoch1) = first_commit(&mut run, &proposal, &created).await;
    control_messages_by_range(&mut run, epoch1).await;
    welcomes_acknowledged_once(&mut run).await;
    removal_withdraws_the_pending_welcome(&mut run, &mut expected).await;
    expiry_and_pruning(&mut run).await;
    oldest_first_across_groups(&mut run).await;
    concurrent_commits_one_winner(&mut run).await;
    run.t
}

/// Unknown groups refuse everything but creation.
async fn unknown_groups(run: &mut Run) -> HeldProposal {
    let (store, app) = (run.store.clone(), run.app);
    assert!(store.group_head(app, G1).await.unwrap().is_none());
    assert!(store.load_group(app, G1).await.unwrap().is_none());
    assert!(store.proposals(app, G1).await.unwrap().is_none());
    assert!(store.current_group_info(app, G1).await.unwrap().is_none());
    let proposal = HeldProposal {
        reference: vec![1; 32],
        packet: b"proposal one".to_vec(),
    };
    assert!(matches!(
        store.add_proposal(app, G1, 0, &proposal, &[]).await,
        Err(GroupStoreError::UnknownGroup)
    ));
    assert!(matches!(
        store
            .apply_commit(app, G1, &commit(0, change(1, &[]), NOW))
            .await,
        Err(GroupStoreError::UnknownGroup)
    ));
    assert!(matches!(
        store.control_messages(app, G1, 0, None).await,
        Err(GroupStoreError::UnknownGroup)
    ));
    proposal
}

/// Creation, once per application and id.
async fn creation(run: &mut Run) -> PublicState {
    let (store, app, other_app, t) = (run.store.clone(), run.app, run.other_app, &mut run.t);
    let created = state(9);
    let new_group = NewGroup {
        group_id: G1.to_vec(),
        epoch: 0,
        hub: None,
        state: created.clone(),
        group_info: b"group info 0".to_vec(),
    };
    store.create_group(app, &new_group).await.unwrap();
    assert!(matches!(
        store.create_group(app, &new_group).await,
        Err(GroupStoreError::GroupExists)
    ));
    store.create_group(other_app, &new_group).await.unwrap();
    let head = t.note("head 0", store.group_head(app, G1).await.unwrap().unwrap());
    assert_eq!((head.epoch, head.proposals), (0, 0));
    let loaded = store.load_group(app, G1).await.unwrap().unwrap();
    assert_eq!(
        (loaded.epoch, &loaded.state, loaded.proposals.len()),
        (0, &created, 0)
    );
    let info = store.current_group_info(app, G1).await.unwrap().unwrap();
    assert_eq!(info.group_info.as_deref(), Some(&b"group info 0"[..]));
    assert_eq!(info.ratchet_tree, created.ratchet_tree());
    assert!(
        t.note(
            "messages 0..",
            store.control_messages(app, G1, 0, None).await
        )
        .unwrap()
        .is_empty()
    );
    assert!(matches!(
        t.note(
            "messages 1..",
            store.control_messages(app, G1, 1, None).await
        ),
        Err(GroupStoreError::EpochOutOfRange { current: 0 })
    ));
    created
}

/// Proposals: current epoch only, each reference once, in upload order; another
/// application's group is another group.
async fn proposals(run: &mut Run, proposal: &HeldProposal) {
    let (store, app, other_app, t) = (run.store.clone(), run.app, run.other_app, &mut run.t);
    assert_eq!(
        t.note(
            "propose",
            store.add_proposal(app, G1, 0, proposal, &[]).await
        )
        .unwrap(),
        1
    );
    assert!(matches!(
        t.note(
            "stale proposal",
            store.add_proposal(app, G1, 1, proposal, &[]).await
        ),
        Err(GroupStoreError::StaleEpoch { current: 0 })
    ));
    let duplicate = HeldProposal {
        packet: b"another packet".to_vec(),
        ..proposal.clone()
    };
    assert!(matches!(
        t.note(
            "duplicate",
            store.add_proposal(app, G1, 0, &duplicate, &[]).await
        ),
        Err(GroupStoreError::DuplicateProposal)
    ));
    let second = HeldProposal {
        reference: vec![0x00, 0xff],
        packet: Vec::new(),
    };
    assert_eq!(
        store.add_proposal(app, G1, 0, &second, &[]).await.unwrap(),
        2
    );
    assert_eq!(
        t.note("proposals", store.proposals(app, G1).await.unwrap())
            .unwrap(),
        vec![proposal.packet.clone(), Vec::new()]
    );
    assert_eq!(
        store.group_head(app, G1).await.unwrap().unwrap().proposals,
        2
    );
    assert_eq!(
        store.load_group(app, G1).await.unwrap().unwrap().proposals,
        vec![proposal.clone(), second.clone()]
    );
    // The other application's group is another group.
    assert!(
        store
            .proposals(other_app, G1)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
}

/// Commit 1, a compare-and-set on epoch 0, using a key queue's package: a rival for the
/// same epoch changes nothing, and the used package leaves the queue.
async fn first_commit(
    run: &mut Run,
    proposal: &HeldProposal,
    created: &PublicState,
) -> (PublicState, Vec<Vec<u8>>) {
    let (store, app, t) = (run.store.clone(), run.app, &mut run.t);
    let client = Uuid::from_u128(0xc1);
    let queue = Uuid::from_u128(0xc2);
    store
        .create_key_queue(app, client, queue, &attributes())
        .await
        .unwrap();
    let update = KeyQueueUpdate {
        packages: vec![package(1, NOW + 1000), package(2, NOW + 2000)],
        ..KeyQueueUpdate::default()
    };
    store
        .update_key_queue(app, client, queue, &update, NOW, 10)
        .await
        .unwrap();
    let wanted = attributes();
    let fresh = store::FreshAssignment {
        may_assign: true,
        scope: "app:contract",
        counters: &[],
        window_secs: 60,
    };
    let retrieve = || store.retrieve_key_package(app, client, &wanted, "alice", NOW, fresh);
    t.note("retrieved before", retrieve().await.unwrap());

    // Commit 1: CAS on epoch 0.
    let change1 = change(
        1,
        &[
            (1, None),
            (2, Some(vec![1, 2, 0x00])),
            (4, Some(vec![1, 4])),
        ],
    );
    let mut first = commit(0, change1.clone(), NOW);
    first.messages = vec![proposal.packet.clone(), Vec::new(), b"commit 1".to_vec()];
    first.welcome = Some(welcome(1, &["bob", HANDLE_CAROL], NOW + 100));
    first.used_key_packages = vec![(client, vec![1; 32])];
    assert_eq!(
        t.note("commit 1", store.apply_commit(app, G1, &first).await)
            .unwrap(),
        1
    );
    let mut expected = created.clone();
    expected.apply(&change1);
    let after = store.load_group(app, G1).await.unwrap().unwrap();
    assert_eq!((after.epoch, &after.state), (1, &expected));
    assert!(after.proposals.is_empty());
    let mut rival = commit(0, change(7, &[(0, None)]), NOW);
    rival.welcome = Some(welcome(99, &["mallory"], NOW + 100));
    rival.used_key_packages = vec![(client, vec![2; 32])];
    assert!(matches!(
        t.note("rival commit", store.apply_commit(app, G1, &rival).await),
        Err(GroupStoreError::StaleEpoch { current: 1 })
    ));
    assert_eq!(
        store.load_group(app, G1).await.unwrap().unwrap(),
        after,
        "a lost compare-and-set changes nothing"
    );
    assert!(
        store
            .welcomes(app, "mallory", NOW)
            .await
            .unwrap()
            .is_empty()
    );
    // The used package left the queue: its receiver gets the next one.
    assert_eq!(
        t.note("retrieved after", retrieve().await.unwrap().package),
        store::RetrievedKeyPackage::Assigned(vec![0x4b, 2])
    );
    let head = store.group_head(app, G1).await.unwrap().unwrap();
    assert_eq!((head.epoch, head.proposals), (1, 0));
    assert!(store.proposals(app, G1).await.unwrap().unwrap().is_empty());
    let info = store.current_group_info(app, G1).await.unwrap().unwrap();
    assert_eq!(info.group_info.as_deref(), Some(&b"group info 1"[..]));
    assert_eq!(info.ratchet_tree, expected.ratchet_tree());
    let epoch1 = first.messages.clone();
    (expected, epoch1)
}

/// Control messages by epoch range.
async fn control_messages_by_range(run: &mut Run, epoch1: Vec<Vec<u8>>) {
    let (store, app, t) = (run.store.clone(), run.app, &mut run.t);
    assert_eq!(
        store.control_messages(app, G1, 0, None).await.unwrap(),
        epoch1
    );
    assert_eq!(
        store.control_messages(app, G1, 1, Some(1)).await.unwrap(),
        epoch1
    );
    assert!(
        store
            .control_messages(app, G1, 0, Some(0))
            .await
            .unwrap()
            .is_empty()
    );
    for (start, end) in [(2, None), (1, Some(0)), (0, Some(2)), (u64::MAX, None)] {
        assert!(matches!(
            t.note(
                &format!("messages {start}..{end:?}"),
                store.control_messages(app, G1, start, end).await
            ),
            Err(GroupStoreError::EpochOutOfRange { current: 1 })
        ));
    }
}

/// Welcomes: per recipient, acknowledged once.
async fn welcomes_acknowledged_once(run: &mut Run) {
    let (store, app, other_app, t) = (run.store.clone(), run.app, run.other_app, &mut run.t);
    let bob = t.note("bob", store.welcomes(app, "bob", NOW).await.unwrap());
    assert_eq!(ids(&bob), [1]);
    assert_eq!(
        (bob[0].group_id.as_slice(), bob[0].epoch),
        (G1, 1),
        "the welcome's group and epoch"
    );
    assert_eq!(bob[0].packet, vec![0x57, 0x00, 1]);
    assert_eq!(bob[0].ratchet_tree, vec![0x54, 0xff, 1]);
    assert_eq!(
        ids(&store.welcomes(app, HANDLE_CAROL, NOW).await.unwrap()),
        [1]
    );
    assert!(
        store
            .welcomes(other_app, "bob", NOW)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.note(
            "pending",
            store.pending_welcomes(app, G1, NOW).await.unwrap()
        ),
        1
    );
    assert_eq!(store.pending_welcomes(other_app, G1, NOW).await.unwrap(), 0);
    assert_eq!(store.pending_welcomes(app, G3, NOW).await.unwrap(), 0);
    let one = Uuid::from_u128(1);
    assert!(t.note(
        "ack",
        store.acknowledge_welcome(app, "bob", one).await.unwrap()
    ));
    assert!(!t.note(
        "ack again",
        store.acknowledge_welcome(app, "bob", one).await.unwrap()
    ));
    assert!(
        !store
            .acknowledge_welcome(app, "bob", Uuid::from_u128(5))
            .await
            .unwrap()
    );
    assert!(!store.acknowledge_welcome(app, "nobody", one).await.unwrap());
    assert!(store.welcomes(app, "bob", NOW).await.unwrap().is_empty());
    assert_eq!(
        ids(&store.welcomes(app, HANDLE_CAROL, NOW).await.unwrap()),
        [1]
    );
    assert_eq!(
        store.pending_welcomes(app, G1, NOW).await.unwrap(),
        1,
        "carol has not taken it yet"
    );
}

/// Commit 2 removes carol: her pending welcome into the group goes.
async fn removal_withdraws_the_pending_welcome(run: &mut Run, expected: &mut PublicState) {
    let (store, app, t) = (run.store.clone(), run.app, &mut run.t);
    let one = Uuid::from_u128(1);
    let mut second_commit = commit(1, change(2, &[(4, None)]), NOW);
    second_commit.group_info = None;
    second_commit.removed_handles = vec![HANDLE_CAROL.to_owned(), "not a member".to_owned()];
    second_commit.welcome = Some(welcome(2, &["dave", "erin"], NOW + 10));
    assert_eq!(
        store.apply_commit(app, G1, &second_commit).await.unwrap(),
        2
    );
    assert!(
        t.note(
            "carol",
            store.welcomes(app, HANDLE_CAROL, NOW).await.unwrap()
        )
        .is_empty()
    );
    assert!(
        !store
            .acknowledge_welcome(app, HANDLE_CAROL, one)
            .await
            .unwrap()
    );
    // Welcome 1 waited only for carol; welcome 2 waits for dave and erin until it expires.
    assert_eq!(
        t.note(
            "pending",
            store.pending_welcomes(app, G1, NOW).await.unwrap()
        ),
        1
    );
    assert_eq!(store.pending_welcomes(app, G1, NOW + 10).await.unwrap(), 0);
    let info = store.current_group_info(app, G1).await.unwrap().unwrap();
    assert_eq!(info.group_info, None, "no group info given");
    expected.apply(&second_commit.change);
    assert_eq!(info.ratchet_tree, expected.ratchet_tree());
}

/// Expiry: unexpired only; an expired reference is dropped, and the group's next commit
/// prunes it.
async fn expiry_and_pruning(run: &mut Run) {
    let (store, app, t) = (run.store.clone(), run.app, &mut run.t);
    assert_eq!(
        ids(&store.welcomes(app, "dave", NOW + 9).await.unwrap()),
        [2]
    );
    assert!(
        store
            .welcomes(app, "dave", NOW + 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        t.note("dave", store.welcomes(app, "dave", NOW).await.unwrap())
            .is_empty()
    );
    assert_eq!(ids(&store.welcomes(app, "erin", NOW).await.unwrap()), [2]);
    // The group's next commit prunes the expired welcome itself.
    let mut third = commit(2, change(3, &[]), NOW + 20);
    third.messages = Vec::new();
    // A handle twice among the recipients is listed once.
    third.welcome = Some(welcome(3, &["frank", "frank"], NOW + 1000));
    assert_eq!(store.apply_commit(app, G1, &third).await.unwrap(), 3);
    assert!(
        t.note("erin", store.welcomes(app, "erin", NOW).await.unwrap())
            .is_empty()
    );
    assert!(
        store
            .control_messages(app, G1, 3, Some(3))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.note(
            "messages 2..",
            store.control_messages(app, G1, 2, None).await
        )
        .unwrap(),
        vec![b"commit from 1".to_vec()]
    );
}

/// Welcomes oldest first, across groups; a removal withdraws every welcome of the group.
async fn oldest_first_across_groups(run: &mut Run) {
    let (store, app, t) = (run.store.clone(), run.app, &mut run.t);
    let mut fourth = commit(3, change(4, &[(6, Some(vec![4; 3]))]), NOW + 20);
    fourth.welcome = Some(welcome(4, &["frank"], NOW + 1000));
    assert_eq!(store.apply_commit(app, G1, &fourth).await.unwrap(), 4);
    let other = NewGroup {
        group_id: G3.to_vec(),
        epoch: 0,
        hub: None,
        state: state(3),
        group_info: Vec::new(),
    };
    store.create_group(app, &other).await.unwrap();
    let mut in_other = commit(0, change(1, &[]), NOW + 20);
    in_other.welcome = Some(welcome(5, &["frank"], NOW + 1000));
    store.apply_commit(app, G3, &in_other).await.unwrap();
    assert_eq!(
        ids(&t.note(
            "frank",
            store.welcomes(app, "frank", NOW + 20).await.unwrap()
        )),
        [3, 4, 5]
    );
    // Removing frank from the first group withdraws both of its welcomes.
    let mut fifth = commit(4, change(5, &[]), NOW + 20);
    fifth.removed_handles = vec!["frank".into()];
    assert_eq!(store.apply_commit(app, G1, &fifth).await.unwrap(), 5);
    assert_eq!(
        ids(&store.welcomes(app, "frank", NOW + 20).await.unwrap()),
        [5]
    );
    assert!(
        store
            .acknowledge_welcome(app, "frank", Uuid::from_u128(5))
            .await
            .unwrap()
    );
    assert!(
        store
            .welcomes(app, "frank", NOW + 20)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Concurrent commits on one epoch: exactly one wins; the others see its epoch.
async fn concurrent_commits_one_winner(run: &mut Run) {
    let (store, app, t) = (run.store.clone(), run.app, &mut run.t);
    let attempts: Vec<_> = (0..16u8)
        .map(|attempt| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut record = commit(5, change(6, &[(8, Some(vec![attempt]))]), NOW + 20);
                record.welcome = Some(welcome(100 + u128::from(attempt), &["gina"], NOW + 1000));
                store.apply_commit(app, G1, &record).await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (attempt, handle) in attempts.into_iter().enumerate() {
        match handle.await.unwrap() {
            Ok(epoch) => won.push((attempt, epoch)),
            Err(GroupStoreError::StaleEpoch { current: 6 }) => {}
            Err(error) => panic!("unexpected {error:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one commit wins: {won:?}");
    let (winner, epoch) = won[0];
    t.note("race epoch", epoch);
    let state = store.load_group(app, G1).await.unwrap().unwrap().state;
    assert_eq!(state.nodes.get(&8), Some(&vec![winner as u8]));
    assert_eq!(
        ids(&store.welcomes(app, "gina", NOW + 20).await.unwrap()),
        [100 + winner as u128],
        "only the winner's welcome"
    );
    assert_eq!(
        store.control_messages(app, G1, 6, None).await.unwrap(),
        vec![b"commit from 5".to_vec()]
    );
    assert!(
        store
            .acknowledge_welcome(app, "gina", Uuid::from_u128(100 + winner as u128))
            .await
            .unwrap()
    );
    t.note(
        "all messages",
        store.control_messages(app, G1, 0, None).await.unwrap(),
    );
}

async fn memory() -> SharedStore {
    store::open(&StoreConfig::default()).await.unwrap()
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// Keys matching `pattern` on every node.
fn scan(nodes: &[&RedisServer], pattern: &str) -> Vec<String> {
    nodes
        .iter()
        .flat_map(|node| {
            node.cli(&["--scan", "--pattern", pattern])
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the contract leaves in Redis: no welcome (all acknowledged, withdrawn or expired),
/// no outbox, no listed group.
fn nothing_left_over(nodes: &[&RedisServer]) {
    assert_eq!(scan(nodes, "mimi:{g:*}:welcome*"), Vec::<String>::new());
    assert_eq!(scan(nodes, "mimi:{g:*}:outbox"), Vec::<String>::new());
    assert_eq!(scan(nodes, "mimi:outbox-groups"), Vec::<String>::new());
    assert_eq!(scan(nodes, "mimi:{g:*}:proposal*"), Vec::<String>::new());
    assert!(!scan(nodes, "mimi:{g:*}:head").is_empty());
}

/// What a gateway that died after its group step leaves: `entries` in the group's outbox
/// (`prefix`), the group listed for the start-up replay.
async fn strand<C: ConnectionLike + Send>(connection: &mut C, prefix: &str, entries: &[&str]) {
    let outbox = format!("{prefix}outbox");
    for entry in entries {
        redis_command(connection, &[b"RPUSH", outbox.as_bytes(), entry.as_bytes()]).await;
    }
    redis_command(
        connection,
        &[b"SADD", b"mimi:outbox-groups", prefix.as_bytes()],
    )
    .await;
}

/// What a commit script leaves for one recipient, had the gateway died right after it: the
/// index entries not made yet, the outbox filled, the group listed.
async fn crash<C: ConnectionLike + Send>(
    connection: &mut C,
    index: &str,
    prefix: &str,
    entries: &[String],
) {
    redis_command(connection, &[b"DEL", index.as_bytes()]).await;
    let mut stranded: Vec<&str> = entries.iter().map(String::as_str).collect();
    // Carried out twice must be harmless.
    stranded.push(&entries[0]);
    strand(connection, prefix, &stranded).await;
}

/// A gateway that died between a commit's script and its cross-slot actions: they wait in
/// the group's outbox, and `replay_outboxes` (at start) or the next operation on the group
/// carries them out, oldest first, once each.
async fn outbox_is_replayed<C: ConnectionLike + Send>(store: &RedisStore, connection: &mut C) {
    let app = Uuid::from_u128(0xabc);
    let group: &[u8] = &[0xde, 0xad];
    let group_info = NewGroup {
        group_id: group.to_vec(),
        epoch: 0,
        hub: None,
        state: state(1),
        group_info: Vec::new(),
    };
    store.create_group(app, &group_info).await.unwrap();
    for (from, id) in [(0u64, 1u128), (1, 2)] {
        let mut record = commit(from, change(1, &[]), NOW);
        record.welcome = Some(welcome(id, &["hana"], NOW + 100));
        store.apply_commit(app, group, &record).await.unwrap();
    }
    let prefix = format!("mimi:{{g:{app}:dead}}:");
    let index = format!("mimi:{{w:{app}:{}}}:welcomes", "68616e61");
    let outbox = format!("{prefix}outbox");
    let entries: Vec<String> = [(1u128, 1u64), (2, 2)]
        .iter()
        .map(|(id, epoch)| {
            format!(
                "w 68616e61 {} dead {epoch} {}",
                Uuid::from_u128(*id),
                NOW + 100
            )
        })
        .collect();
    let welcomes = || async { ids(&store.welcomes(app, "hana", NOW).await.unwrap()) };
    assert_eq!(welcomes().await, [1, 2]);

    crash(connection, &index, &prefix, &entries).await;
    assert!(welcomes().await.is_empty(), "not indexed yet");
    assert_eq!(store.replay_outboxes().await.unwrap(), 1);
    assert_eq!(welcomes().await, [1, 2], "indexed once each, in order");
    assert_eq!(
        redis_command(connection, &[b"LLEN", outbox.as_bytes()]).await,
        redis::Value::Int(0)
    );
    assert_eq!(
        redis_command(connection, &[b"SCARD", b"mimi:outbox-groups"]).await,
        redis::Value::Int(0)
    );
    assert_eq!(store.replay_outboxes().await.unwrap(), 0, "nothing left");

    // The next operation on the group does it too.
    crash(connection, &index, &prefix, &entries).await;
    assert!(store.load_group(app, group).await.unwrap().is_some());
    assert_eq!(welcomes().await, [1, 2]);
    assert_eq!(
        redis_command(connection, &[b"SCARD", b"mimi:outbox-groups"]).await,
        redis::Value::Int(0)
    );
    crash(connection, &index, &prefix, &entries).await;
    let stale = store
        .apply_commit(app, group, &commit(0, change(1, &[]), NOW))
        .await;
    assert!(matches!(
        stale,
        Err(GroupStoreError::StaleEpoch { current: 2 })
    ));
    assert_eq!(
        welcomes().await,
        [1, 2],
        "even a lost commit settles the outbox"
    );
    assert_eq!(
        redis_command(connection, &[b"LLEN", outbox.as_bytes()]).await,
        redis::Value::Int(0)
    );
    for id in [1, 2] {
        assert!(
            store
                .acknowledge_welcome(app, "hana", Uuid::from_u128(id))
                .await
                .unwrap()
        );
    }
    assert!(welcomes().await.is_empty());
}

/// A held proposal's fan-out and a routed application message are accepted in the group's
/// atomic step: the peers' queues and the recipients' message queues hold them after, once.
async fn routing_contract(store: SharedStore) {
    let app = Uuid::from_u128(0x70e);
    let group: &[u8] = &[0x7e, 0x57];
    let fanout = |body: &[u8]| vec![("b.localhost".to_string(), vec![body.to_vec()])];
    assert!(matches!(
        store
            .route_message(
                app,
                group,
                &["hana".into()],
                b"id",
                b"entry",
                &fanout(b"m"),
                1_700_000_000,
            )
            .await,
        Err(GroupStoreError::UnknownGroup)
    ));
    assert!(store.outbound_head("b.localhost").await.unwrap().is_none());
    store
        .create_group(
            app,
            &NewGroup {
                group_id: group.to_vec(),
                epoch: 0,
                hub: None,
                state: state(3),
                group_info: Vec::new(),
            },
        )
        .await
        .unwrap();
    let proposal = HeldProposal {
        reference: vec![7; 32],
        packet: b"proposal".to_vec(),
    };
    store
        .add_proposal(app, group, 0, &proposal, &fanout(b"proposal fan-out"))
        .await
        .unwrap();
    store
        .route_message(
            app,
            group,
            &["hana".into(), "ivo".into()],
            b"id",
            b"entry",
            &fanout(b"message fan-out"),
            1_700_000_000,
        )
        .await
        .unwrap();
    for handle in ["hana", "ivo"] {
        let queued = store.queued_messages(app, handle, 0, 10).await.unwrap();
        assert_eq!(queued.len(), 1, "{handle}");
        assert_eq!(
            (queued[0].sequence, queued[0].entry.as_slice()),
            (1, &b"entry"[..])
        );
    }
    for body in [&b"proposal fan-out"[..], b"message fan-out"] {
        assert_eq!(
            store.outbound_head("b.localhost").await.unwrap().as_deref(),
            Some(body)
        );
        store.pop_outbound("b.localhost", body).await.unwrap();
    }
    assert!(store.outbound_head("b.localhost").await.unwrap().is_none());

    // Messages routed side by side each reach the peer's queue once: an operation on the
    // group carries out only the outbox entries it claimed, not every entry it saw (on
    // Redis, 64 routes that each drained the whole outbox queued a message many times).
    let bodies: Vec<Vec<u8>> = (0..64u8).map(|number| vec![b'c', number]).collect();
    let mut routes = tokio::task::JoinSet::new();
    for body in bodies.clone() {
        let store = store.clone();
        routes.spawn(async move {
            store
                .route_message(
                    app,
                    &[0x7e, 0x57],
                    &["hana".into()],
                    &body,
                    &body,
                    &[("b.localhost".to_string(), vec![body.clone()])],
                    1_700_000_000,
                )
                .await
        });
    }
    while let Some(routed) = routes.join_next().await {
        routed.unwrap().unwrap();
    }
    let mut queued = Vec::new();
    for _ in 0..10 * bodies.len() {
        let Some(head) = store.outbound_head("b.localhost").await.unwrap() else {
            break;
        };
        store.pop_outbound("b.localhost", &head).await.unwrap();
        queued.push(head);
    }
    queued.sort();
    assert_eq!(
        queued, bodies,
        "each routed message queued for the peer once"
    );
    assert_eq!(
        store
            .queued_messages(app, "hana", 0, 100)
            .await
            .unwrap()
            .len(),
        1 + bodies.len()
    );
}

/// Deleting a group takes its state and its welcomes; the id is free again.
async fn deletion_contract(store: SharedStore) {
    let app = Uuid::from_u128(0xde1);
    let group: &[u8] = &[0xde, 0x1e];
    let new_group = NewGroup {
        group_id: group.to_vec(),
        epoch: 0,
        hub: None,
        state: state(4),
        group_info: Vec::new(),
    };
    assert!(!store.delete_group(app, group).await.unwrap());
    store.create_group(app, &new_group).await.unwrap();
    let mut record = commit(0, change(1, &[]), NOW);
    record.welcome = Some(welcome(9, &["kai"], NOW + 100));
    store.apply_commit(app, group, &record).await.unwrap();
    store
        .add_proposal(
            app,
            group,
            1,
            &HeldProposal {
                reference: vec![3; 32],
                packet: b"p".to_vec(),
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.welcomes(app, "kai", NOW).await.unwrap().len(), 1);
    assert!(store.delete_group(app, group).await.unwrap());
    assert!(store.group_head(app, group).await.unwrap().is_none());
    assert!(store.load_group(app, group).await.unwrap().is_none());
    assert!(store.welcomes(app, "kai", NOW).await.unwrap().is_empty());
    assert!(!store.delete_group(app, group).await.unwrap());
    store.create_group(app, &new_group).await.unwrap();
    assert_eq!(
        store.group_head(app, group).await.unwrap().unwrap().epoch,
        0
    );
    assert!(store.delete_group(app, group).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_deleted_whole_on_every_store() {
    deletion_contract(memory().await).await;
    let single = RedisServer::start();
    deletion_contract(Arc::new(
        RedisStore::connect_single(&single.url(), TIMEOUT)
            .await
            .unwrap(),
    ))
    .await;
    // Nothing of the group is left in Redis (the welcome index of `kai` is read away).
    assert_eq!(scan(&[&single], "mimi:{g:*"), Vec::<String>::new());
    let cluster = RedisCluster::start();
    deletion_contract(Arc::new(
        RedisStore::connect_cluster(&cluster.urls(), TIMEOUT)
            .await
            .unwrap(),
    ))
    .await;
    let nodes: Vec<&RedisServer> = cluster.nodes.iter().collect();
    assert_eq!(scan(&nodes, "mimi:{g:*"), Vec::<String>::new());
}

/// Epoch retention (issue 14, finding 7): with 3 epochs retained, after 6 commits epochs
/// 1-3 are gone (`EpochPruned`, naming the oldest kept) and 4-6 are served; lowering the
/// retention prunes more at the next commit; 0 keeps everything.
async fn retention_contract(store: SharedStore) {
    let app = Uuid::from_u128(0x7e7);
    let group: &[u8] = &[0x7e, 0x7e];
    let new_group = NewGroup {
        group_id: group.to_vec(),
        epoch: 0,
        hub: None,
        state: state(4),
        group_info: Vec::new(),
    };
    store.create_group(app, &new_group).await.unwrap();
    for from in 0..6 {
        let mut record = commit(from, change(1, &[]), NOW);
        record.retained_epochs = 3;
        store.apply_commit(app, group, &record).await.unwrap();
    }
    for start in [0, 1, 3] {
        assert!(
            matches!(
                store.control_messages(app, group, start, None).await,
                Err(GroupStoreError::EpochPruned {
                    pruned: 3,
                    current: 6
                })
            ),
            "start {start}"
        );
    }
    let kept = store.control_messages(app, group, 4, None).await.unwrap();
    assert_eq!(
        kept,
        (3..6)
            .map(|from| format!("commit from {from}").into_bytes())
            .collect::<Vec<_>>()
    );
    let mut record = commit(6, change(1, &[]), NOW);
    record.retained_epochs = 1;
    store.apply_commit(app, group, &record).await.unwrap();
    assert!(matches!(
        store.control_messages(app, group, 6, None).await,
        Err(GroupStoreError::EpochPruned {
            pruned: 6,
            current: 7
        })
    ));
    assert_eq!(
        store
            .control_messages(app, group, 7, None)
            .await
            .unwrap()
            .len(),
        1
    );
    // Another group, retention off: every epoch stays.
    let all: &[u8] = &[0x7e, 0x7f];
    store
        .create_group(
            app,
            &NewGroup {
                group_id: all.to_vec(),
                ..new_group
            },
        )
        .await
        .unwrap();
    for from in 0..4 {
        store
            .apply_commit(app, all, &commit(from, change(1, &[]), NOW))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .control_messages(app, all, 1, None)
            .await
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_past_the_retention_are_pruned_on_every_store() {
    retention_contract(memory().await).await;
    let single = RedisServer::start();
    let redis: SharedStore = Arc::new(
        RedisStore::connect_single(&single.url(), TIMEOUT)
            .await
            .unwrap(),
    );
    retention_contract(redis).await;
    // The pruned epochs' keys are gone from Redis, the retained ones there.
    let keys = scan(&[&single], "mimi:{g:*7e7e}:epoch:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let cluster = RedisCluster::start();
    retention_contract(Arc::new(
        RedisStore::connect_cluster(&cluster.urls(), TIMEOUT)
            .await
            .unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_and_messages_fan_out_in_their_step_on_every_store() {
    routing_contract(memory().await).await;
    let single = RedisServer::start();
    let redis_store = Arc::new(
        RedisStore::connect_single(&single.url(), TIMEOUT)
            .await
            .unwrap(),
    );
    routing_contract(redis_store.clone()).await;
    assert_eq!(scan(&[&single], "mimi:outbox-groups"), Vec::<String>::new());
    assert_eq!(scan(&[&single], "mimi:{g:*}:outbox"), Vec::<String>::new());

    // A gateway that died right after routing: the outbox entries wait, and the start-up
    // replay carries them out, a message queued once even if its entry ran twice.
    let app = Uuid::from_u128(0x70e);
    let prefix = format!("mimi:{{g:{app}:7e57}}:");
    let entry = format!(
        "m {},{} {}.{}",
        hex::encode("jo"),
        hex::encode("ka"),
        hex::encode("id2"),
        hex::encode("late")
    );
    let mut connection = redis::Client::open(single.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    strand(&mut connection, &prefix, &[&entry, &entry]).await;
    assert_eq!(redis_store.replay_outboxes().await.unwrap(), 1);
    for handle in ["jo", "ka"] {
        let queued = redis_store
            .queued_messages(app, handle, 0, 10)
            .await
            .unwrap();
        assert_eq!(queued.len(), 1, "{handle}");
        assert_eq!(queued[0].entry, b"late");
    }
    assert_eq!(scan(&[&single], "mimi:outbox-groups"), Vec::<String>::new());
    assert_eq!(scan(&[&single], "mimi:{g:*}:outbox"), Vec::<String>::new());

    // While another gateway holds the outbox's lease, the entries are left to it; once the
    // lease lapses (that gateway died settling it), the next settling carries them out.
    let late = format!(
        "m {} {}.{}",
        hex::encode("lu"),
        hex::encode("id3"),
        hex::encode("leased")
    );
    let lease = format!("{prefix}outbox-lease");
    strand(&mut connection, &prefix, &[&late]).await;
    redis_command(&mut connection, &[b"SET", lease.as_bytes(), b"another"]).await;
    assert_eq!(redis_store.replay_outboxes().await.unwrap(), 1);
    let lu = || async { redis_store.queued_messages(app, "lu", 0, 10).await.unwrap() };
    assert!(lu().await.is_empty(), "left to the lease's holder");
    assert_eq!(scan(&[&single], "mimi:outbox-groups").len(), 1);
    redis_command(&mut connection, &[b"PEXPIRE", lease.as_bytes(), b"1"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(redis_store.replay_outboxes().await.unwrap(), 1);
    assert_eq!(lu().await.len(), 1, "carried out once the lease lapsed");
    assert_eq!(scan(&[&single], "mimi:outbox-groups"), Vec::<String>::new());
    assert_eq!(scan(&[&single], "mimi:{g:*}:outbox*"), Vec::<String>::new());

    let cluster = RedisCluster::start();
    routing_contract(Arc::new(
        RedisStore::connect_cluster(&cluster.urls(), TIMEOUT)
            .await
            .unwrap(),
    ))
    .await;
}

/// A running gateway carries out what a dead lease holder left in a group's outbox without
/// waiting for another operation on the group (`serve::sweep_outboxes`): the entries are
/// written after the gateway started, under a lease another gateway holds for 1.5 s, and
/// nothing else touches the group; once the lease lapses, the sweep queues the message
/// once and the group leaves `mimi:outbox-groups`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_sweeps_what_a_dead_lease_holder_left() {
    let single = RedisServer::start();
    let harness = Harness::start_with(StoreSpec::Redis(single.url()), |_| {}).await;
    let store = RedisStore::connect_single(&single.url(), TIMEOUT)
        .await
        .unwrap();
    let app = Uuid::from_u128(0x5eeb);
    let prefix = format!("mimi:{{g:{app}:5eeb}}:");
    let entry = format!(
        "m {} {}.{}",
        hex::encode("mo"),
        hex::encode("id4"),
        hex::encode("swept")
    );
    let mut connection = redis::Client::open(single.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let lease = format!("{prefix}outbox-lease");
    redis_command(
        &mut connection,
        &[b"SET", lease.as_bytes(), b"a-dead-gateway", b"PX", b"1500"],
    )
    .await;
    strand(&mut connection, &prefix, &[&entry]).await;
    let queued = || async { store.queued_messages(app, "mo", 0, 10).await.unwrap() };
    assert!(queued().await.is_empty(), "left to the lease's holder");
    assert!(
        eventually(Duration::from_secs(20), || async {
            queued().await.len() == 1
        })
        .await,
        "swept once the lease lapsed"
    );
    assert_eq!(queued().await[0].entry, b"swept");
    assert!(
        eventually(Duration::from_secs(5), || async {
            scan(&[&single], "mimi:outbox-groups").is_empty()
        })
        .await
    );
    assert_eq!(scan(&[&single], "mimi:{g:*}:outbox*"), Vec::<String>::new());
    drop(harness);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_store_contract_on_memory_redis_and_cluster() {
    let app = Uuid::from_u128(0x5eed);
    let expected = groups_contract(memory().await, app).await;

    let single = RedisServer::start();
    let single_store = Arc::new(
        RedisStore::connect_single(&single.url(), TIMEOUT)
            .await
            .unwrap(),
    );
    let on_redis = groups_contract(single_store.clone(), app).await;
    assert_eq!(on_redis.0, expected.0, "redis answers as memory does");
    nothing_left_over(&[&single]);
    let mut connection = redis::Client::open(single.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    outbox_is_replayed(&single_store, &mut connection).await;
    nothing_left_over(&[&single]);

    let cluster = RedisCluster::start();
    let clustered = Arc::new(
        RedisStore::connect_cluster(&cluster.urls(), TIMEOUT)
            .await
            .unwrap(),
    );
    let on_cluster = groups_contract(clustered.clone(), app).await;
    assert_eq!(
        on_cluster.0, expected.0,
        "the cluster answers as memory does"
    );
    let nodes: Vec<&RedisServer> = cluster.nodes.iter().collect();
    nothing_left_over(&nodes);
    let mut connection = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    outbox_is_replayed(&clustered, &mut connection).await;
    nothing_left_over(&nodes);
}
