//! `mimi-gateway demo` (issue 16): two gateways in this process on loopback, a.localhost and
//! b.localhost (a generated CA, embedded stores or `--redis`), playing the architecture
//! draft's federated flow with real openmls clients through the `mimi-client` crate: Carol
//! registers at B and uploads key packages; Alice at A discovers her by tag across domains
//! and fetches one of her key packages; creates a group; commits the add with a Welcome;
//! Carol joins from what gateway B serves; they exchange application messages that each
//! decrypts; Carol updates her keys through B (forwarded to the hub); Bob at A joins,
//! proposes an update and Alice commits it by reference; a stale concurrent commit is
//! refused and retried; Dave at B joins by external commit; Alice removes Carol. One line
//! per step; an error unless every check held (texts decrypted, epochs and exported secrets
//! equal).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mimi_client::{Client, ClientConfig, TrustRoots};
use uuid::Uuid;

use crate::config::{
    ApplicationConfig, ApplicationKeyConfig, Config, IdentityConfig, IdentityProviderKind,
};
use crate::member::{Member, fail};
use crate::serve::Gateway;

const DOMAINS: [&str; 2] = ["a.localhost", "b.localhost"];

type DemoResult<T> = crate::member::MemberResult<T>;

/// The steps' printer and tally: each line says what the step's requests carried (bodies
/// sent and received, over both gateways' clients) and how long it took.
struct Steps {
    started: Instant,
    count: usize,
    clients: [mimi_client::Client; 2],
}

/// Where a step began: its clock and the clients' traffic then.
struct Mark {
    at: Instant,
    traffic: mimi_client::Traffic,
}

impl Steps {
    fn traffic(&self) -> mimi_client::Traffic {
        self.clients[0].traffic() + self.clients[1].traffic()
    }

    fn start(&self) -> Mark {
        Mark {
            at: Instant::now(),
            traffic: self.traffic(),
        }
    }

    fn line(&mut self, who: &str, what: &str, gateway: &str, detail: &str, mark: Mark) {
        self.count += 1;
        let took = mark.at.elapsed();
        let traffic = self.traffic() - mark.traffic;
        println!(
            "{:>2}. {who:<6} {what:<40} {gateway:<12} {detail:<28} {:>2} req {:>6} B out {:>6} B in {:>7.1} ms",
            self.count,
            traffic.requests,
            traffic.body_bytes_sent,
            traffic.body_bytes_received,
            took.as_secs_f64() * 1e3
        );
    }
}

/// Two free loopback ports for the federation listeners (each gateway must know the other's
/// before it starts), taken together so they differ.
fn free_ports() -> DemoResult<[u16; 2]> {
    let first = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    let second = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    Ok([
        first.local_addr().map_err(fail)?.port(),
        second.local_addr().map_err(fail)?.port(),
    ])
}

struct Site {
    gateway: Gateway,
    client: Client,
}

async fn start_site(
    index: usize,
    dir: &Path,
    ports: &[u16; 2],
    app: &ApplicationConfig,
    key: &ed25519_dalek::SigningKey,
    redis: Option<&str>,
) -> DemoResult<Site> {
    let domain = DOMAINS[index];
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config {
        domain: domain.to_owned(),
        data_dir: dir.join(domain),
        ..Config::default()
    };
    config.listeners.application = loopback;
    config.listeners.admin = loopback;
    config.listeners.federation = SocketAddr::from(([127, 0, 0, 1], ports[index]));
    config.tls.cert = Some(dir.join(format!("{domain}.pem")));
    config.tls.key = Some(dir.join(format!("{domain}-key.pem")));
    config.federation.ca_file = Some(dir.join("ca.pem"));
    config.federation.allowed_ip_ranges = vec!["127.0.0.0/8".into()];
    config.federation.retry_initial_ms = 50;
    config.federation.retry_max_ms = 400;
    config.federation.delivery_scan_ms = 100;
    config.federation.mirror_wait_ms = 10_000;
    // A first request from the other gateway waits for its keys to be discovered; on a busy
    // machine that may take more than the default 2 s.
    config.federation.key_lookup_wait_ms = 10_000;
    let other = 1 - index;
    config.federation.resolve.insert(
        DOMAINS[other].to_owned(),
        SocketAddr::from(([127, 0, 0, 1], ports[other])),
    );
    if let Some(url) = redis {
        config.store.redis_url = Some(url.to_owned());
    }
    config.applications = vec![app.clone()];
    let gateway = Gateway::start(config).await.map_err(fail)?;
    let client = Client::new(ClientConfig {
        url: format!("https://{domain}:{}", gateway.application.port()),
        app: app.id,
        key: key.clone(),
        key_id: "demo".into(),
        roots: TrustRoots::PemFile(dir.join("ca.pem")),
        gateway_domain: Some(domain.to_owned()),
        connect_to: Some(gateway.application),
    })
    .map_err(fail)?;
    Ok(Site { gateway, client })
}

/// Both gateways, on two federation ports found free. Another program may take a port
/// between finding and binding it: then both start again on new ports (at most 5 times).
async fn start_both(
    dir: &Path,
    app: &ApplicationConfig,
    key: &ed25519_dalek::SigningKey,
    redis: Option<&[String; 2]>,
) -> DemoResult<(Site, Site)> {
    let mut last = String::new();
    for _ in 0..5 {
        let ports = free_ports()?;
        let a = match start_site(0, dir, &ports, app, key, redis.map(|r| r[0].as_str())).await {
            Ok(site) => site,
            Err(error) => {
                last = error;
                continue;
            }
        };
        match start_site(1, dir, &ports, app, key, redis.map(|r| r[1].as_str())).await {
            Ok(b) => return Ok((a, b)),
            Err(error) => {
                a.gateway.shutdown().await;
                last = error;
            }
        }
    }
    Err(format!("the gateways did not start: {last}"))
}

/// Polls `fetch` until it answers something, at most 30 s.
async fn eventually<T, F, Fut>(mut fetch: F) -> DemoResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = DemoResult<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = fetch().await? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            return Err(fail("nothing arrived within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Brings `member` to `epoch` from the control messages its gateway (`client`) serves,
/// waiting for a follower's mirror to have them.
async fn catch_up(
    member: &mut Member,
    client: &Client,
    group: &[u8],
    epoch: u64,
) -> DemoResult<()> {
    if member.epoch() >= epoch {
        return Ok(());
    }
    let from = member.epoch() + 1;
    let packets = eventually(|| async {
        match client.control_messages(group, from, Some(epoch)).await {
            Ok(packets) => Ok(Some(packets)),
            Err(error) if error.code() == Some(mimi_wire::ErrorCode::EpochOutOfRange) => Ok(None),
            Err(error) => Err(fail(error)),
        }
    })
    .await?;
    for packet in packets {
        member.apply(&packet)?;
    }
    Ok(())
}

/// `from` sends `text` to the group through its gateway; `to` fetches it from its own
/// gateway's queue, decrypts and acknowledges it. Answers the text `to` read, checked.
async fn exchange(
    from: (&mut Member, &Client, &str),
    to: (&mut Member, &Client, &str),
    group: &[u8],
    text: &str,
) -> DemoResult<String> {
    let (sender, sender_gateway, sender_handle) = from;
    let (receiver, receiver_gateway, receiver_handle) = to;
    let message = sender.send(text)?;
    sender_gateway
        .send_message(group, &message, Some(sender_handle))
        .await
        .map_err(fail)?;
    let queued = eventually(|| async {
        let (messages, _) = receiver_gateway
            .fetch_all_messages(receiver_handle, 0)
            .await
            .map_err(fail)?;
        Ok(messages.into_iter().next())
    })
    .await?;
    let read = receiver.read(queued.message.as_slice())?;
    check(
        &format!("{receiver_handle} reads {sender_handle}'s text"),
        read == text,
    )?;
    receiver_gateway
        .acknowledge_messages(receiver_handle, queued.sequence)
        .await
        .map_err(fail)?;
    Ok(read)
}

fn check(what: &str, holds: bool) -> DemoResult<()> {
    if holds {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

/// Runs the demo; `Ok(())` only if every step checked out.
pub async fn run(redis: Option<[String; 2]>) -> DemoResult<()> {
    let dir = TempDir::new()?;
    play(&dir.0, redis).await
}

/// The demo's certificates and data, removed when it ends however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> DemoResult<TempDir> {
        let dir = std::env::temp_dir().join(format!("mimi-demo-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(fail)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn play(dir: &Path, redis: Option<[String; 2]>) -> DemoResult<()> {
    let domains: Vec<String> = DOMAINS.iter().map(|d| (*d).to_owned()).collect();
    crate::dev_certs::generate(&domains, dir).map_err(fail)?;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let app = ApplicationConfig {
        id: Uuid::new_v4(),
        public: true,
        identity: IdentityConfig {
            provider: IdentityProviderKind::BasicWithDomains,
            ..IdentityConfig::default()
        },
        keys: vec![ApplicationKeyConfig {
            id: "demo".into(),
            public_key: hex::encode(key.verifying_key().as_bytes()),
            not_before: None,
            not_after: None,
        }],
    };
    let (a, b) = start_both(dir, &app, &key, redis.as_ref()).await?;
    println!(
        "gateways: a.localhost (application {}, federation {}) and b.localhost (application {}, federation {}); store {}",
        a.gateway.application,
        a.gateway.federation,
        b.gateway.application,
        b.gateway.federation,
        a.gateway.store
    );
    let mut steps = Steps {
        started: Instant::now(),
        count: 0,
        clients: [a.client.clone(), b.client.clone()],
    };
    let (ga, gb) = ("a.localhost", "b.localhost");

    // Carol registers at B and uploads key packages.
    let mut carol = Member::new("carol", gb)?;
    let at = steps.start();
    let carol_id = b
        .client
        .register_client("carol", &["friends"])
        .await
        .map_err(fail)?;
    steps.line(
        "carol",
        "POST /apps/{app}/clients",
        gb,
        "201 registered",
        at,
    );
    let at = steps.start();
    let queue = b
        .client
        .create_key_queue(carol_id, 1, 1, "")
        .await
        .map_err(fail)?;
    let packages = vec![carol.key_package()?, carol.key_package()?];
    let bytes: usize = packages.iter().map(Vec::len).sum();
    let pool = b
        .client
        .update_key_queue(carol_id, queue, &packages, false, None, None)
        .await
        .map_err(fail)?;
    steps.line(
        "carol",
        "PATCH .../queues/{queue}",
        gb,
        &format!("200 {pool} packages, {bytes} B"),
        at,
    );

    // Alice at A discovers Carol by tag at B and fetches one of her key packages.
    let mut alice = Member::new("alice", ga)?;
    a.client.register_client("alice", &[]).await.map_err(fail)?;
    let at = steps.start();
    let found = a
        .client
        .discover_clients("friends", Some(gb))
        .await
        .map_err(fail)?;
    check(
        "carol discovered at b.localhost",
        found.iter().any(|c| c.client_handle == "carol"),
    )?;
    steps.line(
        "alice",
        "discover tag friends @ b.localhost",
        ga,
        &format!("200 {} client", found.len()),
        at,
    );
    let at = steps.start();
    let retrieved = a
        .client
        .retrieve_key_package(carol_id, Some(gb), 1, 1, None, "alice")
        .await
        .map_err(fail)?;
    check(
        "the key package is one carol uploaded",
        packages.contains(&retrieved.key_package),
    )?;
    steps.line(
        "alice",
        "key package of carol @ b.localhost",
        ga,
        &format!("200 {} B", retrieved.key_package.len()),
        at,
    );

    // Alice creates the group and adds Carol with a Welcome.
    let at = steps.start();
    let (group_info, tree) = alice.create_group()?;
    let created = a
        .client
        .create_group(&group_info, &tree)
        .await
        .map_err(fail)?;
    let group = created.group_id.as_slice().to_vec();
    steps.line("alice", "PUT /apps/{app}/groups", ga, "201 epoch 0", at);
    let at = steps.start();
    let add = alice.add(&retrieved.key_package)?;
    let epoch = a.client.upload_commit(&group, &add).await.map_err(fail)?;
    steps.line(
        "alice",
        "PUT .../epochs (add carol, Welcome)",
        ga,
        &format!("201 epoch {epoch}"),
        at,
    );

    // Carol joins from what B serves.
    let at = steps.start();
    let welcome = eventually(|| async {
        Ok(b.client
            .welcomes("carol")
            .await
            .map_err(fail)?
            .into_iter()
            .next())
    })
    .await?;
    carol.join(&welcome)?;
    b.client
        .acknowledge_welcome("carol", Uuid::from_bytes(welcome.welcome_id))
        .await
        .map_err(fail)?;
    check(
        "carol and alice share the epoch secret",
        carol.secret()? == alice.secret()?,
    )?;
    steps.line(
        "carol",
        "GET .../welcome-msgs, join",
        gb,
        &format!("200 epoch {}", carol.epoch()),
        at,
    );

    // Messages both ways, each decrypted.
    let at = steps.start();
    let text = exchange(
        (&mut alice, &a.client, "alice"),
        (&mut carol, &b.client, "carol"),
        &group,
        "hello carol",
    )
    .await?;
    steps.line(
        "carol",
        "message from alice, decrypted",
        gb,
        &format!("\"{text}\""),
        at,
    );
    let at = steps.start();
    let text = exchange(
        (&mut carol, &b.client, "carol"),
        (&mut alice, &a.client, "alice"),
        &group,
        "hi alice",
    )
    .await?;
    steps.line(
        "alice",
        "message from carol (via b), decrypted",
        ga,
        &format!("\"{text}\""),
        at,
    );

    // Carol updates her keys through B, which forwards to the hub.
    let at = steps.start();
    let mut update = carol.update_pending()?;
    // The GroupInfo of the new epoch: merge, then export (the hub checks it).
    update.group_info = carol.confirm()?;
    let epoch = b
        .client
        .upload_commit(&group, &update)
        .await
        .map_err(fail)?;
    catch_up(&mut alice, &a.client, &group, epoch).await?;
    check(
        "an update keeps one epoch secret",
        carol.secret()? == alice.secret()?,
    )?;
    steps.line(
        "carol",
        "PUT .../epochs (update, via b)",
        gb,
        &format!("201 epoch {epoch}"),
        at,
    );

    // Bob joins at A; then he proposes an update and Alice commits it by reference.
    let at = steps.start();
    let mut bob = Member::new("bob", ga)?;
    let bob_id = a.client.register_client("bob", &[]).await.map_err(fail)?;
    let bob_queue = a
        .client
        .create_key_queue(bob_id, 1, 1, "")
        .await
        .map_err(fail)?;
    a.client
        .update_key_queue(bob_id, bob_queue, &[bob.key_package()?], false, None, None)
        .await
        .map_err(fail)?;
    let bob_package = a
        .client
        .retrieve_key_package(bob_id, None, 1, 1, None, "alice")
        .await
        .map_err(fail)?;
    let add = alice.add(&bob_package.key_package)?;
    let epoch = a.client.upload_commit(&group, &add).await.map_err(fail)?;
    let welcome = eventually(|| async {
        Ok(a.client
            .welcomes("bob")
            .await
            .map_err(fail)?
            .into_iter()
            .next())
    })
    .await?;
    bob.join(&welcome)?;
    catch_up(&mut carol, &b.client, &group, epoch).await?;
    check(
        "bob joined the epoch",
        bob.secret()? == alice.secret()? && carol.secret()? == alice.secret()?,
    )?;
    steps.line(
        "alice",
        "PUT .../epochs (add bob), bob joins",
        ga,
        &format!("201 epoch {epoch}"),
        at,
    );
    let at = steps.start();
    let proposal = bob.propose_update()?;
    a.client
        .upload_proposal(&group, &proposal)
        .await
        .map_err(fail)?;
    for held in a.client.list_proposals(&group).await.map_err(fail)? {
        alice.apply(&held)?;
    }
    let by_reference = alice.commit_pending()?;
    let epoch = a
        .client
        .upload_commit(&group, &by_reference)
        .await
        .map_err(fail)?;
    catch_up(&mut bob, &a.client, &group, epoch).await?;
    catch_up(&mut carol, &b.client, &group, epoch).await?;
    check(
        "the commit by reference keeps one epoch secret",
        bob.secret()? == alice.secret()? && carol.secret()? == alice.secret()?,
    )?;
    steps.line(
        "bob",
        "PUT .../proposals, alice commits by ref",
        ga,
        &format!("201 epoch {epoch}"),
        at,
    );

    // Two concurrent commits for one epoch: the loser is refused and retried.
    let at = steps.start();
    let mut lost = alice.update_pending()?;
    alice.discard()?;
    let mut won = carol.update_pending()?;
    won.group_info = carol.confirm()?;
    let epoch = b.client.upload_commit(&group, &won).await.map_err(fail)?;
    lost.group_info = Some(alice.group_info()?);
    let refused = a.client.upload_commit(&group, &lost).await;
    let current = match refused {
        Err(error) if error.code() == Some(mimi_wire::ErrorCode::StaleEpoch) => {
            error.current_epoch()
        }
        other => return Err(format!("the stale commit was not refused: {other:?}")),
    };
    check(
        "the refusal names the current epoch",
        current == Some(epoch),
    )?;
    steps.line(
        "alice",
        "PUT .../epochs (stale)",
        ga,
        &format!("409 StaleEpoch, epoch {epoch}"),
        at,
    );
    let at = steps.start();
    catch_up(&mut alice, &a.client, &group, epoch).await?;
    catch_up(&mut bob, &a.client, &group, epoch).await?;
    let mut retry = alice.update_pending()?;
    retry.group_info = alice.confirm()?;
    let epoch = a.client.upload_commit(&group, &retry).await.map_err(fail)?;
    catch_up(&mut carol, &b.client, &group, epoch).await?;
    catch_up(&mut bob, &a.client, &group, epoch).await?;
    check(
        "after the retry one epoch secret",
        carol.secret()? == alice.secret()? && bob.secret()? == alice.secret()?,
    )?;
    steps.line(
        "alice",
        "caught up, PUT .../epochs again",
        ga,
        &format!("201 epoch {epoch}"),
        at,
    );

    // Dave at B joins by external commit, from the GroupInfo and tree B serves.
    let at = steps.start();
    let mut dave = Member::new("dave", gb)?;
    b.client.register_client("dave", &[]).await.map_err(fail)?;
    let served = b.client.group_info(&group).await.map_err(fail)?;
    let entry = served
        .group_infos
        .first()
        .ok_or_else(|| fail("no GroupInfo served"))?;
    let tree = entry
        .ratchet_tree
        .as_ref()
        .ok_or_else(|| fail("no tree served"))?;
    let join = dave.join_external(entry.group_info.as_slice(), tree.as_slice())?;
    let epoch = b.client.upload_commit(&group, &join).await.map_err(fail)?;
    catch_up(&mut alice, &a.client, &group, epoch).await?;
    catch_up(&mut bob, &a.client, &group, epoch).await?;
    catch_up(&mut carol, &b.client, &group, epoch).await?;
    let secret = alice.secret()?;
    check(
        "four members, one epoch secret",
        bob.secret()? == secret && carol.secret()? == secret && dave.secret()? == secret,
    )?;
    steps.line(
        "dave",
        "PUT .../epochs (external join, via b)",
        gb,
        &format!("201 epoch {epoch}"),
        at,
    );

    // Alice removes Carol.
    let at = steps.start();
    let remove = alice.remove(1)?;
    let epoch = a
        .client
        .upload_commit(&group, &remove)
        .await
        .map_err(fail)?;
    let status = eventually(|| async {
        let status = b.client.group_status(&group).await.map_err(fail)?;
        Ok((status.epoch == epoch).then_some(status))
    })
    .await?;
    check(
        "b's mirror follows to the removal",
        status.member_count == 3,
    )?;
    catch_up(&mut bob, &a.client, &group, epoch).await?;
    catch_up(&mut dave, &b.client, &group, epoch).await?;
    check(
        "the remaining members agree",
        bob.secret()? == alice.secret()? && dave.secret()? == alice.secret()?,
    )?;
    steps.line(
        "alice",
        "PUT .../epochs (remove carol)",
        ga,
        &format!("201 epoch {epoch}, 3 members"),
        at,
    );

    println!(
        "all {} steps checked out in {:.0} ms: texts decrypted, epochs and exported secrets agree",
        steps.count,
        steps.started.elapsed().as_secs_f64() * 1e3
    );
    b.gateway.shutdown().await;
    a.gateway.shutdown().await;
    Ok(())
}
