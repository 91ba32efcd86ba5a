//! Exactly one winner per epoch (DESIGN.md "Ordering commits"; architecture draft,
//! "Commits"): 16 members commit for the same epoch at once; one commit is applied, the 15
//! others answer "stale epoch" with the current epoch. On the memory store, a real
//! `redis-server`, a real three-master Redis Cluster, and two gateway processes sharing one
//! Redis.

use http::StatusCode;
use mimi_wire::ErrorCode;
use mimi_wire::decode_exact;
use mimi_wire::groups::GroupEpochResponse;

use crate::support::group_client::*;
use crate::support::*;

const COMMITTERS: usize = 16;

/// A group of 16 members at epoch 1, created through `harness`.
async fn sixteen_members(harness: &Harness) -> Vec<Member> {
    let mut creator = Member::new("member-0");
    let (group_info, tree) = creator.create_group();
    let answer = GroupApi::create(harness, &group_info, &tree).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", error(&answer));
    let mut others: Vec<Member> = (1..COMMITTERS)
        .map(|index| Member::new(&format!("member-{index}")))
        .collect();
    let packages: Vec<Vec<u8>> = others
        .iter()
        .map(|member| member.mls.key_package(3600))
        .collect();
    let (commit, welcome, group_info) = creator.add(&packages);
    let api = GroupApi::new(harness, &creator.group_id());
    assert_eq!(
        api.commit_ok(&commit, Some(&group_info), Some(&welcome))
            .await,
        1
    );
    for (index, member) in others.iter_mut().enumerate() {
        let join_infos = welcomes(harness, &format!("member-{}", index + 1)).await;
        member.join(&join_infos[0]);
    }
    let mut members = vec![creator];
    members.append(&mut others);
    members
}

/// Every member commits an update for epoch 1 at once, member `i` through `targets[i % n]`;
/// exactly one is applied.
async fn one_winner(members: &mut [Member], targets: &[Target]) {
    let group_id = members[0].group_id();
    let uploads: Vec<(Vec<u8>, Vec<u8>)> = members.iter_mut().map(Member::update).collect();
    let attempts = uploads
        .iter()
        .enumerate()
        .map(|(index, (commit, group_info))| {
            let api = GroupApi::at(targets[index % targets.len()].clone(), &group_id);
            async move { api.commit(commit, Some(group_info), None).await }
        });
    let answers = join_all(attempts).await;
    let mut winners = Vec::new();
    for (index, answer) in answers.iter().enumerate() {
        if answer.status == StatusCode::CREATED {
            let response: GroupEpochResponse = decode_exact(&answer.body).unwrap();
            assert_eq!(response.epoch, 2);
            winners.push(index);
        } else {
            assert_eq!(answer.error_code(), ErrorCode::StaleEpoch, "member {index}");
            assert_eq!(error(answer).detail, "current epoch 2");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one commit wins epoch 2");
    // Every gateway serves the winner's commit as epoch 2, and nothing after it.
    for target in targets {
        let api = GroupApi::at(target.clone(), &group_id);
        assert_eq!(
            api.control_ok(2, None).await,
            vec![uploads[winners[0]].0.clone()]
        );
    }
}

/// Runs the futures concurrently on this task (each on its own TLS connection).
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (index, future) in pinned.iter_mut().enumerate() {
            if outputs[index].is_none() {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(output) => outputs[index] = Some(output),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_per_epoch_on_memory() {
    let harness = Harness::start(StoreSpec::Memory).await;
    let mut members = sixteen_members(&harness).await;
    one_winner(&mut members, &[harness.target()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_per_epoch_on_redis() {
    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    let mut members = sixteen_members(&harness).await;
    one_winner(&mut members, &[harness.target()]).await;
    // The winner's staged values were moved into place, the losers' deleted.
    let staged = redis
        .cli(&["--scan", "--pattern", "mimi:{g:*}:staged:*"])
        .expect("redis-cli");
    assert_eq!(staged.trim(), "", "staged values left behind");
    let epochs = redis
        .cli(&["--scan", "--pattern", "mimi:{g:*}:epoch:*"])
        .expect("redis-cli");
    assert_eq!(epochs.lines().filter(|line| !line.is_empty()).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_per_epoch_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let harness = Harness::start(StoreSpec::Cluster(cluster.urls())).await;
    let mut members = sixteen_members(&harness).await;
    one_winner(&mut members, &[harness.target()]).await;
}

/// Two `mimi-gateway serve` processes on one Redis, each with its own cache: the commits are
/// spread over both, and still exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_per_epoch_across_two_gateway_processes() {
    let redis = RedisServer::start();
    let harness = Harness::start(StoreSpec::Redis(redis.url())).await;
    let mut targets = vec![harness.target()];
    let mut processes = Vec::new();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for dir in &dirs {
        let config = test_config(dir.path(), &harness.app, &StoreSpec::Redis(redis.url()));
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let process = GatewayProcess::serve(dir.path(), &["--config", path.to_str().unwrap()], &[]);
        targets.push(Target {
            application: process.address("application"),
            ca: dir.path().join("dev-certs").join("ca.pem"),
            app: harness.app.clone(),
        });
        processes.push(process);
    }
    // The group is made through the in-process gateway; the race runs on the two processes.
    let mut members = sixteen_members(&harness).await;
    one_winner(&mut members, &targets[1..]).await;
    drop(processes);
}
