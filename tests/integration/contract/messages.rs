//! The message queue contract, directly on the `MessageQueues` trait: one sequence on the
//! memory store, a real `redis-server` and a real three-master Redis Cluster, with the same
//! answers on each and the answers the contract promises (issue 7, "nothing is deleted
//! before acknowledgement", duplicates dropped by message id).

use std::time::Duration;

use mimi_gateway::store::redis::RedisStore;
use mimi_gateway::store::{self, MessageQueues, SharedStore};
use uuid::Uuid;

use crate::support::*;

/// A handle with braces and a colon, which must not end a hash tag.
const CAROL: &str = "c{a}:rol";

/// The gateway's clock as the contract passes it in (Unix seconds).
const NOW: u64 = 1_700_000_000;

async fn contract(store: SharedStore) -> Vec<String> {
    let app = Uuid::from_u128(0x9e0e);
    let mut transcript = Vec::new();
    let enqueue = |handle: &'static str, id: &'static [u8], entry: &'static [u8]| {
        let store = store.clone();
        async move {
            store
                .enqueue_message(app, handle, id, entry, NOW)
                .await
                .unwrap()
        }
    };
    let sequences_of = |messages: &[store::QueuedMessage]| {
        messages
            .iter()
            .map(|message| (message.sequence, message.entry.clone()))
            .collect::<Vec<_>>()
    };
    assert!(
        store
            .queued_messages(app, CAROL, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    for (id, entry) in [(b"id-1", b"one"), (b"id-2", b"two"), (b"id-3", b"six")] {
        let sequence = store
            .enqueue_message(app, CAROL, id, entry, NOW)
            .await
            .unwrap();
        transcript.push(format!("enqueued {sequence}"));
    }
    // A redelivered message (same id) is queued once, under its first number.
    assert_eq!(enqueue(CAROL, b"id-2", b"two").await, 2);
    // Another client's queue is its own.
    assert_eq!(enqueue("dave", b"id-1", b"one").await, 1);
    let all = store.queued_messages(app, CAROL, 0, 10).await.unwrap();
    assert_eq!(
        sequences_of(&all),
        [
            (1, b"one".to_vec()),
            (2, b"two".to_vec()),
            (3, b"six".to_vec())
        ]
    );
    let page = store.queued_messages(app, CAROL, 2, 1).await.unwrap();
    assert_eq!(sequences_of(&page), [(2, b"two".to_vec())]);
    assert_eq!(
        store
            .acknowledge_messages(app, CAROL, 2, NOW)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .acknowledge_messages(app, CAROL, 2, NOW)
            .await
            .unwrap(),
        0
    );
    let left = store.queued_messages(app, CAROL, 0, 10).await.unwrap();
    assert_eq!(sequences_of(&left), [(3, b"six".to_vec())]);
    // A late redelivery of an acknowledged message is dropped too (the dedup window); a new
    // message gets the next number: numbers are never reused.
    assert_eq!(enqueue(CAROL, b"id-1", b"one").await, 0);
    assert_eq!(enqueue(CAROL, b"id-2", b"two").await, 0);
    assert_eq!(enqueue(CAROL, b"id-4", b"new").await, 4);
    assert_eq!(
        store
            .acknowledge_messages(app, CAROL, u64::MAX - 1, NOW)
            .await
            .unwrap(),
        2
    );
    // Each queue keeps its own: id-1, acknowledged by Carol, is still queued for Dave.
    assert_eq!(enqueue("dave", b"id-1", b"one").await, 1);
    assert!(
        store
            .queued_messages(app, CAROL, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .queued_messages(app, "dave", 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // The window, on the clock passed in: an id acknowledged at NOW is dropped until the
    // window ends and taken again from then on.
    let window = store::DEDUP_WINDOW_SECS;
    let at = |now: u64, id: &'static [u8]| {
        let store = store.clone();
        async move {
            store
                .enqueue_message(app, CAROL, id, b"late", now)
                .await
                .unwrap()
        }
    };
    assert_eq!(at(NOW + window - 1, b"id-3").await, 0);
    assert_eq!(at(NOW + window, b"id-3").await, 5);
    // An acknowledgement a window later forgets the ids acknowledged before it: id-4,
    // acknowledged at NOW, is taken again even by an enqueue that says it is earlier.
    assert_eq!(
        store
            .acknowledge_messages(app, CAROL, 5, NOW + window)
            .await
            .unwrap(),
        1
    );
    assert_eq!(at(NOW + 1, b"id-4").await, 6);
    // id-3, acknowledged just now (NOW + window), is dropped again.
    assert_eq!(at(NOW + window + 1, b"id-3").await, 0);
    transcript.push(format!("{left:?}"));
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_queues_on_memory_redis_and_cluster() {
    same_on_every_store(contract).await;
}

/// An entry that no longer decodes (written by a broken or older gateway) is skipped, never
/// blocking the client's queue, and goes with the next acknowledgement past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_never_blocks_a_queue() {
    use http::Method;
    use mimi_wire::messages::{
        AcknowledgeMessagesRequest, FetchMessagesRequest, QueuedMessage, QueuedMessageKind,
        QueuedMessagesResponse,
    };
    use mimi_wire::{decode_exact, encode};

    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    crate::support::key_queues::register(&harness, "kai").await;
    let store = RedisStore::connect_single(&redis.url(), Duration::from_secs(5))
        .await
        .unwrap();
    let app = harness.app.id;
    let good = encode(&QueuedMessage {
        sequence: 0,
        kind: QueuedMessageKind::ConnectionRequest,
        group_id: Vec::new().into(),
        message: b"hello".to_vec().into(),
    })
    .unwrap();
    assert_eq!(
        store
            .enqueue_message(app, "kai", b"bad", b"\xff\xff", NOW)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .enqueue_message(app, "kai", b"good", &good, NOW)
            .await
            .unwrap(),
        2
    );
    let path = format!("/apps/{app}/clients/kai/messages");
    let fetch = |limit: u16| {
        encode(&FetchMessagesRequest {
            version: 1,
            from_sequence: 0,
            limit,
        })
        .unwrap()
    };
    // One at a time: the unreadable entry yields nothing, but the answer moves past it.
    let answer = harness.call(Method::POST, &path, fetch(1)).await;
    assert_eq!(answer.status, http::StatusCode::OK);
    let first = decode_exact::<QueuedMessagesResponse>(&answer.body).unwrap();
    assert!(first.messages.is_empty());
    assert_eq!(first.next_sequence, 2);
    let answer = harness.call(Method::POST, &path, fetch(10)).await;
    let answer = decode_exact::<QueuedMessagesResponse>(&answer.body).unwrap();
    assert_eq!(answer.next_sequence, 3);
    let messages = answer.messages;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (messages[0].sequence, messages[0].message.as_slice()),
        (2, &b"hello"[..])
    );
    let ack = encode(&AcknowledgeMessagesRequest {
        version: 1,
        up_to_sequence: 2,
    })
    .unwrap();
    let answer = harness
        .call(Method::POST, &format!("{path}/acknowledge"), ack)
        .await;
    assert_eq!(answer.status, http::StatusCode::OK);
    assert!(
        store
            .queued_messages(app, "kai", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
