//! `mimi-gateway`: parses the command line and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimi_gateway::config::Config;
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
    /// Run the gateway (with no config: domain localhost, memory store, dev certificate).
    Serve {
        /// TOML configuration file; every key can also be set as MIMI_<KEY> (nesting with __).
        #[arg(long)]
        config: Option<PathBuf>,
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

fn parse_resolve(text: &str) -> Result<(String, SocketAddr), String> {
    let (host, addr) = text.split_once('=').ok_or("expected HOST=ADDR")?;
    Ok((
        host.to_owned(),
        addr.parse()
            .map_err(|_| format!("`{addr}` is not an address"))?,
    ))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
    init_logging();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
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

fn serve(config: Option<PathBuf>) -> CliResult {
    let config = Config::load(config.as_deref())?;
    runtime()?.block_on(mimi_gateway::serve::run(config))?;
    Ok(())
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
