//! `mimi-gateway`: parses the command line and hands over to the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimi_client::{Client, ClientConfig, TrustRoots};
use mimi_gateway::config::Config;
use mimi_gateway::dev_app::DevApplication;
use mimi_gateway::keys::{self, KeyRing};

#[derive(Parser)]
#[command(
    name = "mimi-gateway",
    version,
    about = "MIMI gateway: federated back-end for MLS messaging"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. With no configuration file and no application configured: domain
    /// localhost, memory store, a development certificate and a development application
    /// (kept in <data_dir>/dev-application.toml, printed with a command to try).
    Serve {
        /// TOML configuration file; every key can also be set as MIMI_<KEY> (nesting with __).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file without starting: prints what the gateway would do
    /// (listeners, TLS, keys, store, applications and their identity providers, federation
    /// policy), or the first error with the field it is in.
    CheckConfig {
        /// TOML configuration file (MIMI_ environment variables apply too, as for serve).
        file: PathBuf,
    },
    /// Decode a captured body, header or MLS message and print it readably: a
    /// mimi-signature header, an error body, an MLSMessage (key package, commit, welcome,
    /// GroupInfo, application message), a DSRequest / DSResponse, a fan-out request or
    /// answer, a QueueingServiceRequest. Raw bytes or hex, from FILE or stdin.
    Inspect {
        /// What it is (signature, error, mls, ds-request, ds-response, fanout-request,
        /// fanout-response, queueing-request; these are tried when not given), or an
        /// application API body (register-client-request, upload-commit-request,
        /// queued-messages-response, ...: the full list in the error for an unknown kind).
        #[arg(long = "as")]
        kind: Option<String>,
        /// The file (stdin when not given).
        file: Option<PathBuf>,
    },
    /// Create the request-signing key file, or add a new key to it with --rotate.
    Keygen {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Key file (default: the config's auth.key_file, else <data_dir>/signing-keys.toml).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Add a new signing key; older keys stay published until their grace period ends.
        #[arg(long)]
        rotate: bool,
        /// Validity of the new key, in days.
        #[arg(long, default_value_t = 90)]
        validity_days: u64,
        /// On rotation, how long older keys stay valid, in days.
        #[arg(long, default_value_t = 7)]
        retire_after_days: u64,
    },
    /// Generate a development CA and server certificates (never for production).
    Certs {
        /// Comma-separated domains, one certificate each.
        #[arg(long, value_delimiter = ',', required = true)]
        domains: Vec<String>,
        /// Output directory (an existing CA there is reused).
        #[arg(long)]
        out: PathBuf,
    },
    /// Play the architecture draft's federated flow: two gateways in this process
    /// (a.localhost, b.localhost) on loopback, real openmls clients through mimi-client;
    /// one line per step; exit status 0 only if every step checked out.
    Demo {
        /// Run both gateways on this Redis server instead of embedded memory stores, e.g.
        /// redis://127.0.0.1:6379: gateway a.localhost in its database 1, b.localhost in 2
        /// (each run uses a new application id; what a run leaves there stays).
        #[arg(long)]
        redis: Option<String>,
    },
    /// Measure the gateway against bare references (issue 17): starts redis-server, the
    /// gateway on it and the floors (hyper + rustls answering a static path; the same doing
    /// one Ed25519 verification and one Redis SET NX) as processes on loopback, and drives
    /// them over TLS 1.3 / HTTP/2 with requests signed beforehand, scenarios interleaved in
    /// rounds; prints req/s, p50/p90/p99, errors, CPU per request, Redis commands per
    /// request and the ratio to each floor; writes every run to a CSV. Needs a release
    /// build (`cargo run --release -- bench`) and redis-server.
    Bench {
        /// Scenarios to run, comma-separated: tls, signed, key-package, handshakes (a new
        /// TLS connection per request), resumed (the same, resuming a session); also
        /// commit-2, commit-100, commit-1000 (self-update commits next to openmls' cost);
        /// message-fanout-2, -100, -1000 (application messages to a group over two
        /// gateways, until the last queue has each).
        #[arg(
            long,
            default_value = "tls,signed,key-package,handshakes,resumed",
            value_delimiter = ','
        )]
        scenarios: Vec<String>,
        /// Rounds: each runs every scenario once, next to its floor, in alternating order.
        #[arg(long, default_value_t = 6)]
        rounds: usize,
        /// Longest time of one run, seconds.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// HTTP/2 connections to each server.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Most requests of one tls, signed or handshake run (signed ones are signed before
        /// the run).
        #[arg(long, default_value_t = 40_000)]
        requests: usize,
        /// Most retrievals of one key-package run (key packages made beforehand: rounds
        /// times this many).
        #[arg(long, default_value_t = 12_000)]
        key_packages: usize,
        /// Directory for the CSV of every run.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// Run the gateway with logging.access_log on (one line per request).
        #[arg(long)]
        access_log: bool,
        /// Run the gateway with auth.batch_verification off (each signature verified alone).
        #[arg(long)]
        single_verification: bool,
        /// Most commits of one commit-2 run (commit-100 a quarter, commit-1000 a tenth;
        /// made before the run).
        #[arg(long, default_value_t = 1_200)]
        commits: usize,
        /// Most messages of one message-fanout-2 run (message-fanout-100 a quarter,
        /// message-fanout-1000 a twentieth; encrypted and signed before the run).
        #[arg(long, default_value_t = 3_000)]
        messages: usize,
        /// Messages offered per second in the message-fanout runs (0: as fast as the hub
        /// accepts them, 64 in flight, which builds a backlog at the follower).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// After the rounds, offer every scenario but the commits these rates (fractions of
        /// each floor's peak req/s in the rounds; a fan-out's, of its own messages a second
        /// to the last queue), paced, to the gateway and its floor; write the latencies to a
        /// CSV and draw one PNG chart per scenario of latency against offered load. `none`:
        /// no sweep.
        #[arg(long, default_value = "0.25,0.5,0.75,0.9,1,1.25")]
        sweep: String,
        /// Time of one sweep run, seconds.
        #[arg(long, default_value_t = 2.0)]
        sweep_seconds: f64,
    },
    /// The benchmark's bare references as a process of their own (started by `bench`).
    #[command(hide = true)]
    BenchFloor {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        bare: SocketAddr,
        #[arg(long)]
        signed: SocketAddr,
        #[arg(long)]
        redis: String,
        /// The application's public key, hex.
        #[arg(long)]
        app_key: String,
    },
    /// Call the gateway's application API as an application (signed requests, through the
    /// mimi-client crate), for scripts and debugging.
    Call {
        /// The application's credentials: app id, key id, signing key, and the gateway's URL
        /// and CA (a development application's file, as `serve` with no configuration
        /// writes it).
        #[arg(long, default_value = "mimi-data/dev-application.toml")]
        app_file: PathBuf,
        /// The gateway's application listener, e.g. https://localhost:7443 (default: the
        /// file's).
        #[arg(long)]
        url: Option<String>,
        /// Trust this PEM CA (default: the file's, else the web's roots).
        #[arg(long)]
        ca: Option<PathBuf>,
        #[command(subcommand)]
        call: Call,
    },
    /// Resolve a peer: its DS domain from /.well-known/mimi/ds-domain, then its keys.
    Discover {
        /// The provider domain, optionally with a port (development).
        domain: String,
        /// Trust this PEM CA instead of the web's roots.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Connect to ADDR for HOST, whatever DNS says (HOST=ADDR, repeatable).
        #[arg(long, value_parser = parse_resolve)]
        resolve: Vec<(String, SocketAddr)>,
    },
}

/// The application API calls `mimi-gateway call` makes.
#[derive(Subcommand)]
enum Call {
    /// How the gateway authenticates this application's requests.
    Whoami,
    /// Register a client; prints its id.
    RegisterClient {
        handle: String,
        /// A tag (repeatable).
        #[arg(long)]
        tag: Vec<String>,
    },
    /// A client's handle and tags.
    ReadClient { client: uuid::Uuid },
    /// Clients with a tag (of another gateway's domain with --domain).
    Discover {
        tag: String,
        #[arg(long)]
        domain: Option<String>,
    },
    /// Create a key queue for a client; prints its id.
    CreateKeyQueue {
        client: uuid::Uuid,
        /// Cipher suite (1: MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519).
        #[arg(long, default_value_t = 1)]
        suite: u16,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Upload key packages (files holding one MLSMessage each) to a queue; prints the pool.
    UploadKeyPackages {
        client: uuid::Uuid,
        queue: uuid::Uuid,
        files: Vec<PathBuf>,
    },
    /// Retrieve a key package of a client for a receiver; writes it to --out or prints hex.
    KeyPackage {
        client: uuid::Uuid,
        #[arg(long)]
        receiver: String,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, default_value_t = 1)]
        suite: u16,
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The Welcomes waiting for a client.
    Welcomes { handle: String },
    /// Messages queued for a client, from a sequence number on.
    FetchMessages {
        handle: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// A group's epoch, role and member count (the group id in hex).
    GroupStatus { group: String },
}

fn parse_resolve(text: &str) -> Result<(String, SocketAddr), String> {
    let (host, addr) = text.split_once('=').ok_or("expected HOST=ADDR")?;
    Ok((
        host.to_owned(),
        addr.parse()
            .map_err(|_| format!("`{addr}` is not an address"))?,
    ))
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own steps; its gateways' request lines would bury them.
    init_logging(if matches!(cli.command, Command::Demo { .. }) {
        "error"
    } else {
        "info"
    });
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { file } => check_config(&file),
        Command::Demo { redis } => demo(redis),
        Command::Bench {
            scenarios,
            rounds,
            seconds,
            in_flight,
            connections,
            requests,
            key_packages,
            out,
            access_log,
            single_verification,
            commits,
            messages,
            rate,
            sweep,
            sweep_seconds,
        } => bench(
            &scenarios,
            &sweep,
            mimi_gateway::bench::BenchOptions {
                scenarios: Vec::new(),
                rounds: rounds.max(1),
                seconds: seconds.max(1),
                in_flight: in_flight.max(1),
                connections: connections.max(1),
                requests: requests.max(1),
                key_packages: key_packages.max(1),
                out,
                access_log,
                single_verification,
                commits: commits.max(1),
                messages: messages.max(1),
                rate: (rate > 0.0).then_some(rate),
                sweep: Vec::new(),
                sweep_seconds,
            },
        ),
        Command::BenchFloor {
            cert,
            key,
            bare,
            signed,
            redis,
            app_key,
        } => bench_floor(&cert, &key, bare, signed, &redis, &app_key),
        Command::Inspect { kind, file } => inspect(kind.as_deref(), file.as_deref()),
        Command::Keygen {
            config,
            key_file,
            rotate,
            validity_days,
            retire_after_days,
        } => keygen(config, key_file, rotate, validity_days, retire_after_days),
        Command::Certs { domains, out } => certs(&domains, &out),
        Command::Discover {
            domain,
            ca,
            resolve,
        } => discover(&domain, ca, resolve),
        Command::Call {
            app_file,
            url,
            ca,
            call,
        } => call_api(&app_file, url, ca, call),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mimi-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn serve(path: Option<PathBuf>) -> CliResult {
    let mut config = Config::load(path.as_deref())?;
    // Configured: a file, an application, or a domain of its own (set in the environment,
    // as containers do). Only an unconfigured localhost gateway gets a development one.
    if path.is_some() || !config.applications.is_empty() || config.domain != "localhost" {
        runtime()?.block_on(mimi_gateway::serve::run(config))?;
        return Ok(());
    }
    // The first run, unconfigured: one development application, usable at once.
    let (mut dev, created) = DevApplication::open_or_create(&config.data_dir)?;
    config.applications.push(dev.config());
    runtime()?.block_on(mimi_gateway::serve::run_with(config, |gateway| {
        dev.url = Some(format!("https://localhost:{}", gateway.application.port()));
        dev.ca = gateway
            .dev_ca
            .as_ref()
            .map(|ca| std::fs::canonicalize(ca).unwrap_or_else(|_| ca.clone()));
        if let Err(error) = dev.save() {
            eprintln!("mimi-gateway: cannot record the gateway's address: {error}");
        }
        dev.greeting(created)
    }))?;
    Ok(())
}

fn inspect(kind: Option<&str>, file: Option<&Path>) -> CliResult {
    let input = match file {
        Some(path) => std::fs::read(path)?,
        None => {
            let mut input = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)?;
            input
        }
    };
    let (kind, text) = mimi_gateway::inspect::inspect(&input, kind)?;
    println!("{kind}\n{text}");
    Ok(())
}

fn demo(redis: Option<String>) -> CliResult {
    let redis = match redis {
        Some(url) => {
            let base = url.trim_end_matches('/');
            let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
            if after_scheme.contains('/') || after_scheme.contains('?') {
                return Err(format!(
                    "--redis takes a server's URL without a database or options (the demo \
                     uses databases 1 and 2): {url}"
                )
                .into());
            }
            Some([format!("{base}/1"), format!("{base}/2")])
        }
        None => None,
    };
    runtime()?.block_on(mimi_gateway::demo::run(redis))?;
    Ok(())
}

fn bench(
    scenarios: &[String],
    sweep: &str,
    mut options: mimi_gateway::bench::BenchOptions,
) -> CliResult {
    for name in scenarios {
        let scenario = mimi_gateway::bench::Scenario::parse(name.trim())?;
        if !options.scenarios.contains(&scenario) {
            options.scenarios.push(scenario);
        }
    }
    // Durations are made of these: a NaN or a rate near zero would not make one.
    if let Some(rate) = options.rate
        && !(rate.is_finite() && rate >= 0.001)
    {
        return Err(format!("--rate: {rate} is not a rate of at least 0.001 a second").into());
    }
    if !(options.sweep_seconds.is_finite() && (0.1..=600.0).contains(&options.sweep_seconds)) {
        return Err(format!(
            "--sweep-seconds: {} is not between 0.1 and 600",
            options.sweep_seconds
        )
        .into());
    }
    if sweep.trim() != "none" {
        for fraction in sweep.split(',') {
            match fraction.trim().parse::<f64>() {
                Ok(value) if value > 0.0 && value <= 10.0 => options.sweep.push(value),
                _ => {
                    return Err(format!(
                        "--sweep: `{fraction}` is not a fraction of a floor's peak in (0, 10] \
                         (or give `none`)"
                    )
                    .into());
                }
            }
        }
    }
    // The load client is one thread, on one core; the servers are processes of their own.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(mimi_gateway::bench::run(options))?;
    Ok(())
}

fn bench_floor(
    cert: &Path,
    key: &Path,
    bare: SocketAddr,
    signed: SocketAddr,
    redis: &str,
    app_key: &str,
) -> CliResult {
    let bytes: [u8; 32] = hex::decode(app_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("--app-key: 32 bytes in hex")?;
    let app_key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)?;
    runtime()?.block_on(mimi_gateway::bench::floor::run(
        mimi_gateway::bench::floor::FloorOptions {
            cert,
            key,
            bare,
            signed,
            redis_url: redis,
            app_key,
        },
    ))?;
    Ok(())
}

fn check_config(file: &Path) -> CliResult {
    let config = Config::load(Some(file))?;
    print!("{}", mimi_gateway::serve::check(&config)?);
    Ok(())
}

fn call_api(app_file: &Path, url: Option<String>, ca: Option<PathBuf>, call: Call) -> CliResult {
    let dev = DevApplication::load(app_file)?;
    let url = url
        .or(dev.url.clone())
        .ok_or("no --url, and the application file names none")?;
    let roots = match ca.or(dev.ca.clone()) {
        Some(path) => TrustRoots::PemFile(path),
        None => TrustRoots::Web,
    };
    let client = Client::new(ClientConfig {
        url,
        app: dev.app,
        key: dev.key.clone(),
        key_id: dev.key_id.clone(),
        roots,
        gateway_domain: None,
        connect_to: None,
    })?;
    runtime()?.block_on(async move {
        match call {
            Call::Whoami => {
                let me = client.whoami().await?;
                println!("sender      {:?} {}", me.sender_kind, me.sender);
                println!("key id      {}", me.key_id);
            }
            Call::RegisterClient { handle, tag } => {
                let tags: Vec<&str> = tag.iter().map(String::as_str).collect();
                println!("{}", client.register_client(&handle, &tags).await?);
            }
            Call::ReadClient { client: id } => print_client(&client.read_client(id).await?),
            Call::Discover { tag, domain } => {
                for record in client.discover_clients(&tag, domain.as_deref()).await? {
                    print_client(&record);
                }
            }
            Call::CreateKeyQueue {
                client: id,
                suite,
                label,
            } => println!("{}", client.create_key_queue(id, 1, suite, &label).await?),
            Call::UploadKeyPackages {
                client: id,
                queue,
                files,
            } => {
                let packages = files
                    .iter()
                    .map(std::fs::read)
                    .collect::<Result<Vec<_>, _>>()?;
                let pool = client
                    .update_key_queue(id, queue, &packages, false, None, None)
                    .await?;
                println!("{pool} key packages in the pool");
            }
            Call::KeyPackage {
                client: id,
                receiver,
                domain,
                suite,
                label,
                out,
            } => {
                let got = client
                    .retrieve_key_package(
                        id,
                        domain.as_deref(),
                        1,
                        suite,
                        label.as_deref(),
                        &receiver,
                    )
                    .await?;
                let kind = if got.is_final_key {
                    "final key"
                } else {
                    "key package"
                };
                match out {
                    Some(path) => {
                        std::fs::write(&path, &got.key_package)?;
                        println!(
                            "{kind}, {} bytes, in {}",
                            got.key_package.len(),
                            path.display()
                        );
                    }
                    None => println!("{kind} {}", hex::encode(&got.key_package)),
                }
            }
            Call::Welcomes { handle } => {
                for welcome in client.welcomes(&handle).await? {
                    println!(
                        "welcome {}  group {}  epoch {}  {} bytes",
                        uuid::Uuid::from_bytes(welcome.welcome_id),
                        hex::encode(welcome.group_id.as_slice()),
                        welcome.epoch,
                        welcome.welcome.as_slice().len()
                    );
                }
            }
            Call::FetchMessages { handle, from } => {
                let page = client.fetch_messages(&handle, from, 100).await?;
                for message in &page.messages {
                    println!(
                        "{}  {:?}  group {}  {} bytes",
                        message.sequence,
                        message.kind,
                        hex::encode(message.group_id.as_slice()),
                        message.message.as_slice().len()
                    );
                }
                println!("next sequence {}", page.next_sequence);
            }
            Call::GroupStatus { group } => {
                let id = hex::decode(&group).map_err(|_| "the group id is not hex")?;
                let status = client.group_status(&id).await?;
                println!(
                    "epoch {}  {:?} (hub {})  {} members  group info {}",
                    status.epoch,
                    status.role,
                    status.hub_domain,
                    status.member_count,
                    if status.has_group_info.0 { "yes" } else { "no" }
                );
            }
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

fn print_client(record: &mimi_wire::registry::ClientRecord) {
    println!(
        "{}  {}  tags {}",
        uuid::Uuid::from_bytes(record.client_id),
        record.client_handle,
        record.tags.join(",")
    );
}

fn keygen(
    config: Option<PathBuf>,
    key_file: Option<PathBuf>,
    rotate: bool,
    validity_days: u64,
    retire_after_days: u64,
) -> CliResult {
    let path = match key_file {
        Some(path) => path,
        None => Config::load(config.as_deref())?.key_file(),
    };
    let now = keys::unix_now();
    let validity = validity_days.saturating_mul(86_400);
    let ring = if path.exists() {
        if !rotate {
            return Err(keys::KeyError::Exists {
                path: path.display().to_string(),
            }
            .into());
        }
        let mut ring = KeyRing::load(&path)?;
        ring.rotate(now, validity, retire_after_days.saturating_mul(86_400));
        ring
    } else {
        KeyRing::new(vec![keys::SigningKeyEntry::generate(now, validity)])
    };
    ring.save(&path)?;
    println!("key file {}", path.display());
    for key in ring.keys() {
        let role = if ring
            .current(now)
            .is_some_and(|current| current.id == key.id)
        {
            "current"
        } else {
            "retired"
        };
        println!(
            "  {}  {role}  valid {}..{}",
            key.id, key.not_before, key.not_after
        );
    }
    Ok(())
}

fn certs(domains: &[String], out: &std::path::Path) -> CliResult {
    let (ca, issued) = mimi_gateway::dev_certs::generate(domains, out)?;
    println!("CA          {}", ca.cert_path.display());
    for (domain, cert) in domains.iter().zip(issued) {
        println!(
            "{domain:<11} {} (key {})",
            cert.cert.display(),
            cert.key.display()
        );
    }
    Ok(())
}

fn discover(domain: &str, ca: Option<PathBuf>, resolve: Vec<(String, SocketAddr)>) -> CliResult {
    let mut client = mimi_well_known::HttpsClient::new(ca.as_deref())?;
    for (host, addr) in resolve {
        client = client.with_override(&host, addr);
    }
    let discovery = runtime()?.block_on(mimi_well_known::Resolver::new(client).discover(domain))?;
    println!("provider    {}", discovery.provider);
    println!("ds domain   {}", discovery.ds_domain);
    for key in &discovery.keys.keys {
        println!(
            "key         {}  {:?}  {}  valid {}..{}",
            key.key_id,
            key.scheme,
            hex::encode(key.public_key.as_slice()),
            key.not_before,
            key.not_after
        );
    }
    Ok(())
}
