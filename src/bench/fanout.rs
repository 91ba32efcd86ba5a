//! The `message-fanout-N` scenarios of `mimi-gateway bench` (issue 17): a group of N members
//! over two gateways, each its own process on Redis: a.localhost, the group's hub, where its
//! creator sends, and b.localhost, which mirrors it and holds every odd-numbered member.
//! Application messages (architecture draft, "Group Messaging"; delivery-service draft,
//! "Send an application message to a group" and "Server to server requests") are encrypted
//! and signed before the timed phase and sent to A, which queues its own members' copies
//! and passes B's share in a `/deliver_message`; a message's latency ends when the queue of
//! B's last member has it, which a poller at B watches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use mimi_client::{Client, ClientConfig, TrustRoots};
use mimi_wire::messages::{MAX_FETCH, SendGroupMessageRequest};
use sha2::{Digest, Sha256};
use tls_codec::VLBytes;

use super::load::{self, Prepared, RunOutcome, SendMarks, Signer};
use super::procs::{self, Process};
use super::{BenchOptions, Site, fail, gateway_config, loopback};
use crate::member::Member;

/// The group sizes the scenarios come in: `message-fanout-2`, `-100`, `-1000`.
pub const SIZES: [usize; 3] = [2, 100, 1000];

/// How often the watched queue is read while it has nothing new.
pub const POLL_EVERY: Duration = Duration::from_millis(2);

/// The hub's domain and the follower's.
pub const DOMAINS: [&str; 2] = ["a.localhost", "b.localhost"];

/// Messages of one run: `messages` for 2 members, fewer for larger groups (each message is
/// queued for every member).
pub fn messages(members: usize, messages: usize) -> usize {
    let share = match members {
        0..=2 => 1,
        3..=100 => 4,
        _ => 20,
    };
    (messages / share).max(1)
}

/// The two gateways and how the benchmark reaches them.
pub struct Pair {
    pub hub: Process,
    pub follower: Process,
    /// The hub's application listener, where the messages go.
    pub hub_application: SocketAddr,
    /// Signs for the hub (`a.localhost` as the recipient).
    pub hub_signer: Signer,
    hub_client: Client,
    follower_client: Client,
    /// Each gateway's log, for what went wrong.
    logs: [std::path::PathBuf; 2],
}

impl Pair {
    /// The last lines of both gateways' logs.
    fn log_tails(&self) -> String {
        self.logs
            .iter()
            .zip(DOMAINS)
            .map(|(log, domain)| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                format!("--- {domain}'s log, last lines:\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Starts both gateways on `redis_port` (databases 2 and 3), with certificates of `ca` in
/// `ca_dir`, each resolving the other's federation listener on loopback; answers once both
/// listen.
pub fn start(
    dir: &Path,
    ca: &crate::dev_certs::DevCa,
    redis_port: u16,
    signer: &Signer,
    options: &BenchOptions,
) -> Result<Pair, String> {
    let ca_dir = dir.join("ca");
    let ca_file = ca_dir.join("ca.pem");
    let ports = [procs::free_ports::<3>()?, procs::free_ports::<3>()?];
    let public_key = hex::encode(signer.key.verifying_key().as_bytes());
    let exe = std::env::current_exe().map_err(fail)?;
    let mut processes = Vec::with_capacity(2);
    for (index, domain) in DOMAINS.into_iter().enumerate() {
        // `localhost` too: the load client's TLS server name.
        let issued = ca
            .issue(
                &[domain.to_owned(), "localhost".to_owned()],
                &ca_dir,
                domain,
            )
            .map_err(fail)?;
        let other = 1 - index;
        // Fast retries and scans: a delivery that failed is retried within the run.
        let extra = format!(
            r#"[federation]
ca_file = "{ca_file}"
allowed_ip_ranges = ["127.0.0.0/8"]
retry_initial_ms = 50
retry_max_ms = 400
delivery_scan_ms = 100
key_lookup_wait_ms = 10000
[federation.resolve]
"{other_domain}" = "127.0.0.1:{other_port}"
[applications.identity]
provider = "basic_with_domains"
"#,
            ca_file = ca_file.display(),
            other_domain = DOMAINS[other],
            other_port = ports[other][1],
        );
        let site = Site {
            domain,
            data: dir.join(domain),
            issued: &issued,
            ports: ports[index],
            redis_url: format!("redis://127.0.0.1:{redis_port}/{}", 2 + index),
        };
        let config = dir.join(format!("{domain}.toml"));
        std::fs::write(
            &config,
            gateway_config(&site, signer.app, &public_key, options, &extra),
        )
        .map_err(fail)?;
        processes.push(procs::spawn(
            domain,
            &exe,
            &[
                "serve".to_owned(),
                "--config".to_owned(),
                config.display().to_string(),
            ],
            &[],
            &dir.join(format!("{domain}.log")),
        )?);
    }
    let (mut follower, mut hub) = (
        processes.pop().ok_or("no follower")?,
        processes.pop().ok_or("no hub")?,
    );
    for (process, ports) in [(&mut hub, ports[0]), (&mut follower, ports[1])] {
        for port in [ports[0], ports[1]] {
            procs::wait_listening(process, loopback(port), Duration::from_secs(30))?;
        }
    }
    let client = |index: usize| {
        Client::new(ClientConfig {
            url: format!("https://{}:{}", DOMAINS[index], ports[index][0]),
            app: signer.app,
            key: signer.key.clone(),
            key_id: signer.key_id.clone(),
            roots: TrustRoots::PemFile(ca_file.clone()),
            gateway_domain: Some(DOMAINS[index].to_owned()),
            connect_to: Some(loopback(ports[index][0])),
        })
        .map_err(fail)
    };
    Ok(Pair {
        hub,
        follower,
        hub_application: loopback(ports[0][0]),
        hub_signer: Signer {
            recipient: DOMAINS[0].to_owned(),
            ..signer.clone()
        },
        hub_client: client(0)?,
        follower_client: client(1)?,
        logs: DOMAINS.map(|domain| dir.join(format!("{domain}.log"))),
    })
}

/// One scenario's group: its creator (the sender), where its messages go, and the queue
/// watched at the follower.
pub struct Group {
    creator: Member,
    /// The creator's handle at the hub, whose own queue the messages skip.
    sender: String,
    path: String,
    /// B's last member, whose queue a message reaches last.
    watched: String,
    /// Where the watched queue is read from next.
    next_sequence: u64,
}

fn handle(index: usize) -> String {
    format!("m{index}")
}

/// A group of `members` (`tag` keeps scenarios' names apart) created at the hub with every
/// member added in one commit, odd-numbered members at the follower; answers once the
/// follower mirrors it.
pub async fn prepare(pair: &Pair, tag: &str, members: usize) -> Result<Group, String> {
    let sender = format!("{tag}-{}", handle(0));
    pair.hub_client
        .register_client(&sender, &[])
        .await
        .map_err(fail)?;
    let mut creator = Member::new(&sender, DOMAINS[0])?;
    let (group_info, tree) = creator.create_group()?;
    pair.hub_client
        .create_group(&group_info, &tree)
        .await
        .map_err(fail)?;
    let group_id = creator.group_id()?;
    let mut packages = Vec::with_capacity(members);
    for index in 1..members.max(2) {
        let name = format!("{tag}-{}", handle(index));
        // A follower takes the hub's fan-out only for its registered clients.
        if index % 2 == 1 {
            pair.follower_client
                .register_client(&name, &[])
                .await
                .map_err(fail)?;
        }
        packages.push(Member::new(&name, DOMAINS[index % 2])?.key_package()?);
    }
    let added = creator.add_all(&packages)?;
    pair.hub_client
        .upload_commit(&group_id, &added)
        .await
        .map_err(fail)?;
    let last = (1..members.max(2))
        .rev()
        .find(|index| index % 2 == 1)
        .unwrap_or(1);
    let watched = format!("{tag}-{}", handle(last));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match pair.follower_client.group_status(&group_id).await {
            Ok(status) if status.epoch >= 1 => break,
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "{} did not mirror the group of {members} within 60 s\n{}",
                    DOMAINS[1],
                    pair.log_tails()
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Ok(Group {
        creator,
        sender,
        path: format!(
            "/apps/{}/groups/{}/messages",
            pair.hub_signer.app,
            mimi_wire::groups::group_id_to_path(&group_id)
        ),
        watched,
        next_sequence: 0,
    })
}

/// One run's messages, encrypted and signed, and which is which by their hash.
pub struct Round {
    /// The scenario's group size (`message-fanout-N`).
    pub members: usize,
    pub requests: Vec<Prepared>,
    index: HashMap<[u8; 32], usize>,
}

fn digest(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

/// `count` application messages of the group's creator, ready to send to the hub; `members`
/// as the scenario names it.
pub fn round(
    pair: &Pair,
    group: &mut Group,
    members: usize,
    round: usize,
    count: usize,
) -> Result<Round, String> {
    let sender = group.sender.clone();
    let mut requests = Vec::with_capacity(count);
    let mut index = HashMap::with_capacity(count);
    for number in 0..count {
        let message = group
            .creator
            .send(&format!("round {round}, message {number}"))?;
        index.insert(digest(&message), number);
        let body = mimi_wire::encode(&SendGroupMessageRequest {
            version: 1,
            message: VLBytes::new(message),
            sender: Some(sender.clone()),
        })
        .map_err(fail)?;
        requests.push(pair.hub_signer.sign(Method::POST, &group.path, body)?);
    }
    Ok(Round {
        members,
        requests,
        index,
    })
}

/// What one run gave: latencies from each message's send to its arrival in the watched
/// queue, the sends' statuses, and how the watching went.
pub struct Delivered {
    pub outcome: RunOutcome,
    /// Messages the hub accepted that the watched queue did not show in time.
    pub missing: usize,
    /// Fetches of the watched queue during the run (signed requests to the follower).
    pub polls: u64,
    /// Messages the hub accepted per second while they were sent.
    pub accepted_per_second: f64,
}

/// Sends the round's messages to the hub with `in_flight` at once (and, with `rate`, at
/// most that many a second) while the watched queue is read until every accepted message
/// is in it (or `limit` and a grace of 10 s passed).
pub async fn drive(
    pair: &Pair,
    group: &mut Group,
    senders: &[hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>],
    round: Round,
    in_flight: usize,
    limit: Duration,
    rate: Option<f64>,
) -> Delivered {
    let count = round.requests.len();
    let marks: SendMarks = (0..count).map(|_| std::sync::OnceLock::new()).collect();
    let accepted = Arc::new(AtomicUsize::new(usize::MAX));
    let started = Instant::now();
    let deadline = started + limit + Duration::from_secs(10);
    let watcher = tokio::spawn(watch(
        pair.follower_client.clone(),
        group.watched.clone(),
        group.next_sequence,
        round.index,
        accepted.clone(),
        deadline,
    ));
    let sent = load::drive_marking(
        senders,
        round.requests,
        in_flight,
        limit,
        Some(marks.clone()),
        rate.map(super::sweep::every),
    )
    .await;
    accepted.store(sent.answered(), Ordering::SeqCst);
    let (arrivals, polls, next_sequence) = watcher
        .await
        .unwrap_or_else(|_| (Vec::new(), 0, group.next_sequence));
    group.next_sequence = next_sequence;
    let mut latencies: Vec<Duration> = arrivals
        .iter()
        .enumerate()
        .filter_map(|(index, arrived)| {
            let sent = marks.get(index)?.get()?;
            Some(arrived.as_ref()?.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort();
    let last = arrivals.iter().flatten().max().copied();
    Delivered {
        missing: sent.answered().saturating_sub(latencies.len()),
        polls,
        accepted_per_second: sent.per_second(),
        outcome: RunOutcome {
            latencies,
            statuses: sent.statuses,
            elapsed: last.map_or(sent.elapsed, |last| last.saturating_duration_since(started)),
            resumed: 0,
            unsent: sent.unsent,
        },
    }
}

/// Reads `handle`'s queue at the follower from `from` until it holds as many of the round's
/// messages as were `accepted` (unknown while the sends run) or `deadline`; answers when each
/// arrived (by the message's index), the fetches made, and where to read from next.
async fn watch(
    client: Client,
    handle: String,
    mut from: u64,
    index: HashMap<[u8; 32], usize>,
    accepted: Arc<AtomicUsize>,
    deadline: Instant,
) -> (Vec<Option<Instant>>, u64, u64) {
    let mut arrivals = vec![None; index.len()];
    let (mut seen, mut polls) = (0usize, 0u64);
    while seen < accepted.load(Ordering::SeqCst) && Instant::now() < deadline {
        polls += 1;
        match client.fetch_messages(&handle, from, MAX_FETCH).await {
            Ok(page) => {
                let now = Instant::now();
                for message in &page.messages {
                    let number = index.get(&digest(message.message.as_slice()));
                    if let Some(&number) = number
                        && arrivals[number].is_none()
                    {
                        arrivals[number] = Some(now);
                        seen += 1;
                    }
                }
                // Read every 2 ms at most, so that the reads stay a small share of the
                // follower's work (a latency is late by up to that much).
                if page.next_sequence == from || page.messages.len() < usize::from(MAX_FETCH) {
                    tokio::time::sleep(POLL_EVERY).await;
                }
                from = page.next_sequence;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    (arrivals, polls, from)
}
