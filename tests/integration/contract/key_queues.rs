//! The key queue contract (`KeyQueues` in `store/mod.rs`), directly on the trait: one
//! sequence on the memory store, a real `redis-server` and a real three-master Redis
//! Cluster, with the same answers on each. It pins the rules both backends write (Lua and
//! `store/memory/key_queues.rs`): the package cap per queue, expired packages dropped before
//! they count or are handed out (also one added after the others that expires first),
//! retrieval by earliest `not_after`, a receiver's package
//! handed to it again, the final key after the pool, and nothing handed out twice.

use std::time::Duration;

use mimi_gateway::store::redis::RedisStore;
use mimi_gateway::store::{
    FreshAssignment, KeyQueueAttributes, KeyQueueError, KeyQueueUpdate, KeyQueues, RequestRecord,
    RequestWindow, RetrievedKeyPackage, SharedStore, StoredKeyPackage,
};
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::support::*;

/// The gateway's clock as the contract passes it in (Unix seconds).
const NOW: u64 = 1_700_000_000;

fn package(seed: u8, not_after: u64) -> StoredKeyPackage {
    StoredKeyPackage {
        reference: vec![seed; 32],
        not_after,
        bytes: vec![0x4b, seed],
    }
}

fn attributes() -> KeyQueueAttributes {
    KeyQueueAttributes {
        protocol_version: 1,
        cipher_suite: 1,
        app_label: "contract".into(),
    }
}

async fn contract(store: SharedStore) -> Vec<String> {
    let mut transcript = Vec::new();
    let (app, client, queue) = (
        Uuid::from_u128(0x6b0),
        Uuid::from_u128(0x6b1),
        Uuid::from_u128(0x6b2),
    );
    store
        .create_key_queue(app, client, queue, &attributes())
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_key_queue(app, client, Uuid::from_u128(0x6b3), &attributes())
            .await,
        Err(KeyQueueError::QueueExists)
    ));
    let update = |packages: Vec<StoredKeyPackage>| KeyQueueUpdate {
        packages,
        ..KeyQueueUpdate::default()
    };
    // Three packages, uploaded latest first; one expires at NOW + 10.
    let three = update(vec![
        package(3, NOW + 3_000),
        package(1, NOW + 10),
        package(2, NOW + 2_000),
    ]);
    // The cap counts what the queue would hold: three over a cap of two is refused whole.
    assert!(matches!(
        store
            .update_key_queue(app, client, queue, &three, NOW, 2)
            .await,
        Err(KeyQueueError::TooManyPackages(2))
    ));
    assert_eq!(
        store
            .update_key_queue(app, client, queue, &three, NOW, 3)
            .await
            .unwrap(),
        3
    );
    // Once a package has expired it no longer counts: one more fits under the cap of three.
    let fourth = update(vec![package(4, NOW + 4_000)]);
    assert!(matches!(
        store
            .update_key_queue(app, client, queue, &fourth, NOW, 3)
            .await,
        Err(KeyQueueError::TooManyPackages(3))
    ));
    assert_eq!(
        store
            .update_key_queue(app, client, queue, &fourth, NOW + 10, 3)
            .await
            .unwrap(),
        3
    );
    let final_key = KeyQueueUpdate {
        final_key: Some(package(9, NOW + 9_000)),
        ..KeyQueueUpdate::default()
    };
    store
        .update_key_queue(app, client, queue, &final_key, NOW + 10, 3)
        .await
        .unwrap();
    let wanted = attributes();
    // A fresh assignment counts in the caller's counters, in the retrieval's own step.
    let fresh = |may_assign: bool| FreshAssignment {
        may_assign,
        scope: "app:contract",
        counters: &["fresh", "fresh:any"],
        window_secs: 3_600,
    };
    let retrieve = |receiver: &'static str, now: u64| {
        let (store, wanted) = (store.clone(), wanted.clone());
        async move {
            store
                .retrieve_key_package(app, client, &wanted, receiver, now, fresh(true))
                .await
        }
    };
    // The caller counted once before: the two counters' counts differ, in their order.
    store
        .count_in_window("app:contract", &["fresh"], 3_600, NOW + 20)
        .await
        .unwrap();
    // Earliest `not_after` first, the expired one skipped; a receiver gets its own again.
    for (receiver, expected, counts) in [
        (
            "ann",
            RetrievedKeyPackage::Assigned(vec![0x4b, 2]),
            vec![2, 1],
        ),
        (
            "ann",
            RetrievedKeyPackage::AssignedBefore(vec![0x4b, 2]),
            vec![],
        ),
        (
            "ben",
            RetrievedKeyPackage::Assigned(vec![0x4b, 3]),
            vec![3, 2],
        ),
        (
            "cy",
            RetrievedKeyPackage::Assigned(vec![0x4b, 4]),
            vec![4, 3],
        ),
        // The pool spent: the final key, to anyone, as often as asked.
        ("dee", RetrievedKeyPackage::FinalKey(vec![0x4b, 9]), vec![]),
        ("eve", RetrievedKeyPackage::FinalKey(vec![0x4b, 9]), vec![]),
    ] {
        let got = retrieve(receiver, NOW + 20).await.unwrap();
        assert_eq!(got.package, expected, "{receiver}");
        assert_eq!(
            got.fresh_counts, counts,
            "{receiver}: counted only when fresh"
        );
        transcript.push(format!("{receiver}: {got:?}"));
    }
    // The counters are the rate counters of the caller: the next count continues them.
    assert_eq!(
        store
            .count_in_window("app:contract", &["fresh"], 3_600, NOW + 20)
            .await
            .unwrap(),
        [5]
    );
    // Another suite has no queue.
    let other = KeyQueueAttributes {
        cipher_suite: 3,
        ..attributes()
    };
    assert!(matches!(
        store
            .retrieve_key_package(app, client, &other, "ann", NOW, fresh(true))
            .await,
        Err(KeyQueueError::NoMatchingQueue)
    ));
    // Not fresh: only what the receiver had before and final keys.
    assert_eq!(
        store
            .retrieve_key_package(app, client, &wanted, "ann", NOW + 20, fresh(false))
            .await
            .unwrap()
            .package,
        RetrievedKeyPackage::AssignedBefore(vec![0x4b, 2])
    );
    // Ann's package expires at NOW + 2_000: gone with her assignment, and with the other
    // two taken she gets the final key.
    let ann = retrieve("ann", NOW + 2_000).await.unwrap();
    assert_eq!(ann.package, RetrievedKeyPackage::FinalKey(vec![0x4b, 9]));
    transcript.push(format!("ann later: {ann:?}"));
    // A package added later that expires before every stored one is still dropped when it
    // expires (the queue's next purge moves back to it).
    let soon = update(vec![package(5, NOW + 2_100)]);
    assert_eq!(
        store
            .update_key_queue(app, client, queue, &soon, NOW + 2_000, 3)
            .await
            .unwrap(),
        3
    );
    let fay = retrieve("fay", NOW + 2_200).await.unwrap();
    assert_eq!(fay.package, RetrievedKeyPackage::FinalKey(vec![0x4b, 9]));
    transcript.push(format!("fay: {fay:?}"));
    assert!(store.delete_key_queue(app, client, queue).await.unwrap());
    assert!(!store.delete_key_queue(app, client, queue).await.unwrap());
    assert!(matches!(
        retrieve("ann", NOW + 20).await,
        Err(KeyQueueError::NoMatchingQueue)
    ));
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_queues_on_memory_redis_and_cluster() {
    same_on_every_store(contract).await;
}

/// A retrieval that records its request (`RequestRecord`, issue 17: on a single Redis one
/// script, elsewhere the record first): the id is recorded and the request counted before
/// anything else; a replay changes nothing and is not counted; past `work_up_to` nothing
/// changes but the count (the pipeline judges it); the record and the count are the replay
/// cache's own.
async fn recorded_contract(store: SharedStore) -> Vec<String> {
    let mut transcript = Vec::new();
    let (app, client, queue) = (
        Uuid::from_u128(0x7b0),
        Uuid::from_u128(0x7b1),
        Uuid::from_u128(0x7b2),
    );
    let wanted = attributes();
    store
        .create_key_queue(app, client, queue, &wanted)
        .await
        .unwrap();
    let two = KeyQueueUpdate {
        packages: vec![package(1, NOW + 1_000), package(2, NOW + 2_000)],
        ..KeyQueueUpdate::default()
    };
    store
        .update_key_queue(app, client, queue, &two, NOW, 10)
        .await
        .unwrap();
    const CALLER: &str = "app:recorded";
    const TTL: Duration = Duration::from_secs(600);
    let window = RequestWindow {
        name: "requests:key_packages",
        window_secs: 3_600,
        now: NOW,
    };
    let record = |id: u8, work_up_to: u64| RequestRecord {
        sender: CALLER.into(),
        request_id: [id; 16],
        ttl: TTL,
        window,
        work_up_to,
    };
    let fresh = FreshAssignment {
        may_assign: true,
        scope: CALLER,
        counters: &[],
        window_secs: 3_600,
    };
    let retrieve = |receiver: &'static str, record: RequestRecord| {
        let (store, wanted) = (store.clone(), wanted.clone());
        async move {
            store
                .retrieve_key_package_recorded(app, client, &wanted, receiver, NOW, fresh, &record)
                .await
        }
    };
    // Count 1, within the threshold: assigned.
    let first = retrieve("ann", record(1, 2)).await.unwrap();
    assert_eq!(first.package, RetrievedKeyPackage::Assigned(vec![0x4b, 1]));
    transcript.push(format!("ann: {:?}", first.package));
    // The same id again: refused, nothing assigned, not counted.
    assert!(matches!(
        retrieve("ben", record(1, 2)).await,
        Err(KeyQueueError::Replayed)
    ));
    // The id is in the replay cache as any other request's.
    assert_eq!(
        store
            .record_request(CALLER, &[1; 16], TTL, None)
            .await
            .unwrap(),
        None
    );
    // Count 2, past a threshold of 1: held, nothing assigned, the id recorded.
    assert!(matches!(
        retrieve("cy", record(2, 1)).await,
        Err(KeyQueueError::Held { count: 2 })
    ));
    assert!(matches!(
        retrieve("cy", record(2, 10)).await,
        Err(KeyQueueError::Replayed)
    ));
    // Count 3: Ben gets the second package, so the held request for Cy took none ...
    let second = retrieve("ben", record(3, 10)).await.unwrap();
    assert_eq!(second.package, RetrievedKeyPackage::Assigned(vec![0x4b, 2]));
    transcript.push(format!("ben: {:?}", second.package));
    // ... and Cy, with nothing assigned before, finds the pool spent (count 4).
    assert!(matches!(
        retrieve("cy", record(4, 10)).await,
        Err(KeyQueueError::Exhausted)
    ));
    // The counter is the caller's rate counter of the window: the next count is 5.
    assert_eq!(
        store
            .record_request(CALLER, &[5; 16], TTL, Some(window))
            .await
            .unwrap(),
        Some(5)
    );
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_retrievals_on_memory_redis_and_cluster() {
    same_on_every_store(recorded_contract).await;
}

/// What the scripts before 2026-12-04 stored for a queue (layout 1): the assigned refs in a
/// `taken` zset, `to` (receiver -> ref) and `by` (ref -> receiver) hashes, `purge_at` in the
/// queue hash. The queue is created by the store, then rewritten so: `free` and `assigned`
/// are (seed, not_after) and (seed, not_after, receiver).
async fn store_in_layout_1<C: ConnectionLike + Send>(
    connection: &mut C,
    (client, queue): (Uuid, Uuid),
    purge_at: u64,
    free: &[(u8, u64)],
    assigned: &[(u8, u64, &str)],
) {
    let base = format!("mimi:{{c:{client}}}:q:{queue}");
    let key = |suffix: &str| format!("{base}{suffix}");
    let purge_at = purge_at.to_string();
    let mut commands: Vec<Vec<Vec<u8>>> = vec![
        vec![b"HDEL".into(), base.clone().into(), b"next_purge".into()],
        vec![
            b"HSET".into(),
            base.clone().into(),
            b"purge_at".into(),
            purge_at.into(),
        ],
    ];
    let stored = free
        .iter()
        .map(|&(seed, not_after)| (seed, not_after, ""))
        .chain(assigned.iter().copied());
    for (seed, not_after, receiver) in stored {
        let StoredKeyPackage {
            reference, bytes, ..
        } = package(seed, not_after);
        let set = if receiver.is_empty() {
            ":free"
        } else {
            ":taken"
        };
        let score = not_after.to_string().into_bytes();
        commands.push(vec![
            b"ZADD".into(),
            key(set).into(),
            score,
            reference.clone(),
        ]);
        commands.push(vec![
            b"HSET".into(),
            key(":pkg").into(),
            reference.clone(),
            bytes,
        ]);
        if !receiver.is_empty() {
            let receiver = receiver.as_bytes().to_vec();
            commands.push(vec![
                b"HSET".into(),
                key(":to").into(),
                receiver.clone(),
                reference.clone(),
            ]);
            commands.push(vec![b"HSET".into(), key(":by").into(), reference, receiver]);
        }
    }
    for command in &commands {
        let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        redis_command(connection, &args).await;
    }
}

/// What the earlier release's scripts write to a queue of layout 2 (they know no
/// `next_purge` or `assigned`): a retrieval of package 7 for "late" (its purge sets
/// `purge_at`; it takes 7 from `free` into `taken`, `to` and `by`), and an advance of package
/// 2 (deleted from `pkg`, `free` and `taken`; `by` has no receiver for it).
async fn earlier_release_touches<C: ConnectionLike + Send>(
    connection: &mut C,
    (client, queue): (Uuid, Uuid),
) {
    let base = format!("mimi:{{c:{client}}}:q:{queue}");
    let key = |suffix: &str| format!("{base}{suffix}");
    let (seven, two) = (package(7, 0).reference, package(2, 0).reference);
    let not_after = (NOW + 7_000).to_string();
    for command in [
        vec![
            b"HSET".as_slice(),
            base.as_bytes(),
            b"purge_at",
            not_after.as_bytes(),
        ],
        vec![b"ZREM", key(":free").as_bytes(), &seven],
        vec![
            b"ZADD",
            key(":taken").as_bytes(),
            not_after.as_bytes(),
            &seven,
        ],
        vec![b"HSET", key(":to").as_bytes(), b"late", &seven],
        vec![b"HSET", key(":by").as_bytes(), &seven, b"late"],
        vec![b"HDEL", key(":pkg").as_bytes(), &two],
        vec![b"ZREM", key(":free").as_bytes(), &two],
        vec![b"ZREM", key(":taken").as_bytes(), &two],
    ] {
        redis_command(connection, &command).await;
    }
}

/// A queue stored in the earlier layout (issue 17 moved a retrieval from a `taken` zset and
/// two hashes to one `assigned` hash holding each assigned package's `not_after`) is moved
/// to the new one by the first script that touches it, retrieval or advance, and keeps every
/// assignment: a receiver gets its package again, an assigned package still expires with
/// its assignment, an advanced one frees its receiver, and no key of the old layout is left.
async fn upgrade_contract<C: ConnectionLike + Send>(store: &RedisStore, connection: &mut C) {
    let wanted = attributes();
    let app = Uuid::from_u128(0x8b0);
    let (first, second) = (Uuid::from_u128(0x8b1), Uuid::from_u128(0x8b2));
    let queue = |client: Uuid| Uuid::from_u128(client.as_u128() + 0x10);
    for client in [first, second] {
        store
            .create_key_queue(app, client, queue(client), &wanted)
            .await
            .unwrap();
    }
    store_in_layout_1(
        connection,
        (first, queue(first)),
        NOW + 500,
        &[(2, NOW + 2_000), (3, NOW + 3_000)],
        &[(1, NOW + 500, "old-1"), (4, NOW + 4_000, "old-4")],
    )
    .await;
    store_in_layout_1(
        connection,
        (second, queue(second)),
        NOW + 1_000,
        &[(6, NOW + 1_000)],
        &[(5, NOW + 5_000, "x")],
    )
    .await;
    let fresh = FreshAssignment {
        may_assign: true,
        scope: "app:upgrade",
        counters: &[],
        window_secs: 3_600,
    };
    let retrieve = |client: Uuid, receiver: &'static str, now: u64| {
        let wanted = wanted.clone();
        async move {
            store
                .retrieve_key_package(app, client, &wanted, receiver, now, fresh)
                .await
                .map(|retrieval| retrieval.package)
        }
    };
    // Retrieval first: the assignments made in the old layout hold.
    assert_eq!(
        retrieve(first, "old-4", NOW).await.unwrap(),
        RetrievedKeyPackage::AssignedBefore(vec![0x4b, 4])
    );
    assert_eq!(
        retrieve(first, "new", NOW).await.unwrap(),
        RetrievedKeyPackage::Assigned(vec![0x4b, 2])
    );
    // Old-1's package expired at NOW + 500: dropped with the assignment (had the upgrade
    // left it out of `expiry`, old-1 would get the expired package again).
    assert_eq!(
        retrieve(first, "old-1", NOW + 600).await.unwrap(),
        RetrievedKeyPackage::Assigned(vec![0x4b, 3])
    );
    // Advanced, old-4's package frees old-4: nothing is left for it.
    assert!(
        store
            .advance_key_queue(app, first, &package(4, 0).reference)
            .await
            .unwrap()
    );
    assert!(matches!(
        retrieve(first, "old-4", NOW + 600).await,
        Err(KeyQueueError::Exhausted)
    ));
    // Advance first: the second queue is upgraded by it, and x, freed, takes the free one.
    assert!(
        store
            .advance_key_queue(app, second, &package(5, 0).reference)
            .await
            .unwrap()
    );
    assert_eq!(
        retrieve(second, "x", NOW).await.unwrap(),
        RetrievedKeyPackage::Assigned(vec![0x4b, 6])
    );
    // An upload counts what is stored after the upgrade: 2 and 3 assigned, and the new two.
    let update = KeyQueueUpdate {
        packages: vec![package(7, NOW + 7_000), package(8, NOW + 8_000)],
        ..KeyQueueUpdate::default()
    };
    assert_eq!(
        store
            .update_key_queue(app, first, queue(first), &update, NOW + 600, 10)
            .await
            .unwrap(),
        4
    );
    // A rolling upgrade: a process of the earlier release, which knows only layout 1, assigns
    // package 7 to "late" and advances package 2 (assigned to "new" in layout 2).
    earlier_release_touches(connection, (first, queue(first))).await;
    assert_eq!(
        retrieve(first, "late", NOW + 600).await.unwrap(),
        RetrievedKeyPackage::AssignedBefore(vec![0x4b, 7])
    );
    // "new"'s package is gone: it is treated as a new receiver, not refused.
    assert_eq!(
        retrieve(first, "new", NOW + 600).await.unwrap(),
        RetrievedKeyPackage::Assigned(vec![0x4b, 8])
    );
    for client in [first, second] {
        let base = format!("mimi:{{c:{client}}}:q:{}", queue(client));
        for suffix in [":taken", ":to", ":by"] {
            let exists = redis_command(
                connection,
                &[b"EXISTS", format!("{base}{suffix}").as_bytes()],
            )
            .await;
            assert_eq!(exists, redis::Value::Int(0), "{base}{suffix} is left");
        }
        let purge_at = redis_command(connection, &[b"HEXISTS", base.as_bytes(), b"purge_at"]).await;
        assert_eq!(purge_at, redis::Value::Int(0), "{base} keeps purge_at");
    }
    // Deleting a queue deletes every key of it.
    assert!(
        store
            .delete_key_queue(app, first, queue(first))
            .await
            .unwrap()
    );
    let base = format!("mimi:{{c:{first}}}:q:{}", queue(first));
    for suffix in ["", ":free", ":pkg", ":assigned"] {
        let exists = redis_command(
            connection,
            &[b"EXISTS", format!("{base}{suffix}").as_bytes()],
        )
        .await;
        assert_eq!(exists, redis::Value::Int(0), "{base}{suffix} is left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_the_earlier_layout_is_upgraded_on_redis_and_cluster() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let single = RedisServer::start();
    let store = RedisStore::connect_single(&single.url(), TIMEOUT)
        .await
        .unwrap();
    let mut connection = redis::Client::open(single.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    upgrade_contract(&store, &mut connection).await;
    let cluster = RedisCluster::start();
    let store = RedisStore::connect_cluster(&cluster.urls(), TIMEOUT)
        .await
        .unwrap();
    let mut connection = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    upgrade_contract(&store, &mut connection).await;
}
