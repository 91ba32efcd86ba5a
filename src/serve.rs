//! `mimi-gateway serve`: builds the state from the configuration, binds the three listeners,
//! prints where they are, and runs until SIGTERM or Ctrl-C, then drains and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::endpoints::ListenerKind;
use crate::config::Config;
use crate::dev_certs::{CertError, DevCa};
use crate::federation::client::PeerClient;
use crate::keys::{KeyError, KeyRing};
use crate::net::listener::{self, Listener};
use crate::net::tls::{self, TlsError};
use crate::state::State;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Certs(#[from] CertError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("federation: {0}")]
    Federation(#[from] mimi_well_known::HttpsError),
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway: where it listens, and the handle to stop it.
pub struct Gateway {
    pub application: SocketAddr,
    pub federation: SocketAddr,
    pub admin: SocketAddr,
    /// The development CA that signed the server certificate, when one was generated.
    pub dev_ca: Option<PathBuf>,
    pub store: String,
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    listeners: JoinSet<()>,
}

impl Gateway {
    /// Starts a gateway: its TLS material, signing keys, store, listeners, the state they
    /// share, and the workers (fan-out delivery, key and certificate reload).
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let applications = crate::service::applications::Applications::from_config(&config)?;
        let tls = TlsMaterial::load(&config)?;
        // Taken before the keys are read, not when the watcher first runs: any change after
        // it (even right after start, before the watcher ran) is seen as one; at worst the
        // file is read once more.
        let key_file_seen = key_file_stamp(&config.key_file());
        let (keys, created) = KeyRing::load_or_create(&config.key_file(), crate::keys::unix_now())?;
        if created {
            tracing::info!(path = %config.key_file().display(), "generated a request-signing key");
        }
        let store = open_store(&config).await?;
        let store_description = store.describe();
        let bound = bind_listeners(&config, &tls).await?;
        let [application, federation, admin] = [bound[0].0, bound[1].0, bound[2].0];
        let (peer_keys, peers) = peer_clients(&config, &tls.certificate)?;
        let state = Arc::new(State::new(
            config,
            store,
            keys,
            applications,
            peer_keys,
            peers,
        ));
        let (shutdown, signal) = watch::channel(false);
        let mut listeners = JoinSet::new();
        for (_, listener) in bound {
            listeners.spawn(listener::run(listener, state.clone(), signal.clone()));
        }
        listeners.spawn(crate::federation::delivery::run(
            state.delivery.clone(),
            signal.clone(),
        ));
        listeners.spawn(watch_key_file(state.clone(), key_file_seen, signal.clone()));
        listeners.spawn(sweep_outboxes(state.clone(), signal.clone()));
        listeners.spawn(watch_certificate(
            state.clone(),
            tls.certificate,
            (tls.cert, tls.key),
            tls.seen,
            signal.clone(),
        ));
        Ok(Gateway {
            application,
            federation,
            admin,
            dev_ca: tls.dev_ca,
            store: store_description,
            state,
            shutdown,
            listeners,
        })
    }

    /// What an operator needs to reach the gateway.
    pub fn banner(&self) -> String {
        let config = &self.state.config;
        let mut banner = format!(
            "mimi-gateway {} serving domain {} (DS domain {})\n  \
             application  https://{}\n  \
             federation   https://{}  (/.well-known/mimi/ds-domain, /verification_key, /group_operation, /deliver_message, ...)\n  \
             admin        http://{}  (/healthz, /readyz, /metrics)\n  \
             store        {}\n",
            env!("CARGO_PKG_VERSION"),
            config.domain,
            config.ds_domain(),
            self.application,
            self.federation,
            self.admin,
            self.store,
        );
        if let Some(ca) = &self.dev_ca {
            banner.push_str(&format!(
                "  dev CA       {}  (development certificate; trust this file to connect)\n",
                ca.display()
            ));
        }
        banner
    }

    /// Stops accepting, lets in-flight requests finish, and returns when all listeners are
    /// done.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.listeners.join_next().await.is_some() {}
    }
}

/// The roots peers' client certificates must chain to: the federation CA file, else the
/// web's roots.
fn peer_roots(config: &Config) -> Result<rustls::RootCertStore, StartError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.federation.ca_file {
        Some(path) => {
            let (added, _) = roots.add_parsable_certificates(tls::load_certificates(path)?);
            if added == 0 {
                return Err(
                    TlsError::ClientRoots(format!("{}: no certificate", path.display())).into(),
                );
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// What tells one version of the key file from the next: inode, length, modification time
/// (`keygen` replaces the file, write then rename: a new inode even within one timestamp tick).
type KeyFileStamp = (u64, u64, Option<std::time::SystemTime>);

fn key_file_stamp(path: &std::path::Path) -> Option<KeyFileStamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.ino(), meta.len(), meta.modified().ok()))
}

/// How often a running gateway looks for group actions left undone (architecture draft
/// "Group State"; `store::Store::recover_groups`): those of a gateway that died settling a
/// group's outbox, once its lease lapses, and those an operation left to a lease holder
/// that was already past them. Without the sweep they would wait for the group's next
/// operation, which may never come.
const OUTBOX_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

async fn sweep_outboxes(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(OUTBOX_SWEEP) => {}
        }
        // Groups being settled right now are listed too: their holders keep them.
        if let Err(error) = state.store.recover_groups().await {
            tracing::warn!(%error, "could not check for pending group actions");
        }
    }
}

/// Serves a renewed TLS certificate and key (e.g. from an ACME client) to new connections
/// without a restart: the files' stamps are checked every `auth.key_reload_ms`; a pair that
/// does not load (caught mid-write, or not matching) is logged and retried, the old one
/// stays in use meanwhile.
async fn watch_certificate(
    state: Arc<State>,
    certificate: Arc<tls::ServerCertificate>,
    (cert, key): (PathBuf, PathBuf),
    mut seen: (Option<KeyFileStamp>, Option<KeyFileStamp>),
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = std::time::Duration::from_millis(state.config.auth.key_reload_ms.max(50));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let current = (key_file_stamp(&cert), key_file_stamp(&key));
        if current == seen {
            continue;
        }
        match certificate.reload(&cert, &key) {
            Ok(()) => {
                seen = current;
                tracing::info!(cert = %cert.display(), "reloaded the TLS certificate");
            }
            Err(error) => tracing::warn!(%error, "the renewed TLS certificate does not load yet"),
        }
    }
}

/// Reloads the signing keys when their file changes, so `mimi-gateway keygen --rotate` on a
/// running gateway takes effect: new requests are signed with the new key, and
/// `/verification_key` publishes it beside the retiring one.
async fn watch_key_file(
    state: Arc<State>,
    mut seen: Option<KeyFileStamp>,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = state.config.key_file();
    let interval = std::time::Duration::from_millis(state.config.auth.key_reload_ms.max(50));
    let modified = key_file_stamp;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let current = modified(&path);
        if current == seen {
            continue;
        }
        match KeyRing::load(&path) {
            Ok(ring) => {
                if let Ok(mut keys) = state.keys.write() {
                    *keys = ring;
                    seen = current;
                    tracing::info!(path = %path.display(), "reloaded the signing keys");
                }
            }
            // A file caught mid-write is read again at the next check.
            Err(error) => tracing::warn!(%error, "cannot reload the signing keys"),
        }
    }
}

/// The HTTPS client for peers (discovery, keys, federation requests): the configured roots,
/// address overrides, and the ranges it may connect to.
fn peer_https_client(config: &Config) -> Result<mimi_well_known::HttpsClient, StartError> {
    let federation = &config.federation;
    let allowed = federation
        .allowed_ip_ranges
        .iter()
        .filter_map(|range| mimi_well_known::address_policy::IpRange::parse(range))
        .collect();
    let mut client = mimi_well_known::HttpsClient::new(federation.ca_file.as_deref())?
        .with_address_policy(mimi_well_known::address_policy::AddressPolicy::new(allowed));
    for (host, addr) in &federation.resolve {
        client = client.with_override(host, *addr);
    }
    Ok(client)
}

/// The server certificate (configured or generated), its files and their stamps, and the
/// acceptors of the data listeners (the federation one asking for client certificates when
/// mutual TLS is on).
struct TlsMaterial {
    cert: PathBuf,
    key: PathBuf,
    dev_ca: Option<PathBuf>,
    seen: (Option<KeyFileStamp>, Option<KeyFileStamp>),
    certificate: Arc<tls::ServerCertificate>,
    application: TlsAcceptor,
    federation: TlsAcceptor,
}

impl TlsMaterial {
    fn load(config: &Config) -> Result<TlsMaterial, StartError> {
        let (cert, key, dev_ca) = server_certificate(config)?;
        // Stamped before reading, as the key file is: a renewal right after is still seen.
        let seen = (key_file_stamp(&cert), key_file_stamp(&key));
        let certificate = Arc::new(tls::ServerCertificate::load(&cert, &key)?);
        let application = TlsAcceptor::from(tls::server_config(certificate.clone(), None)?);
        let federation = if config.federation.require_client_cert {
            let roots = peer_roots(config)?;
            TlsAcceptor::from(tls::server_config(certificate.clone(), Some(roots))?)
        } else {
            application.clone()
        };
        Ok(TlsMaterial {
            cert,
            key,
            dev_ca,
            seen,
            certificate,
            application,
            federation,
        })
    }
}

/// The configured store, with what a previous gateway left undone carried out.
async fn open_store(config: &Config) -> Result<store::SharedStore, StartError> {
    let store = store::open(&config.store).await?;
    // A Redis that is down now is fine (requests answer 503 until it is back); what a
    // previous gateway left undone is then carried out by the groups' next operations.
    match store.recover_groups().await {
        Ok(0) => {}
        Ok(groups) => tracing::info!(groups, "carried out pending group actions"),
        Err(error) => tracing::warn!(%error, "could not check for pending group actions"),
    }
    if config.store.redis_url.is_none() && config.store.redis_cluster_urls.is_empty() {
        tracing::warn!("using the embedded memory store: ALL STATE IS LOST WHEN THE GATEWAY EXITS");
    }
    Ok(store)
}

/// The three listeners bound (application, federation, admin, in that order), each with
/// the address it got.
async fn bind_listeners(
    config: &Config,
    tls: &TlsMaterial,
) -> Result<Vec<(SocketAddr, Listener)>, StartError> {
    let binds = [
        (
            ListenerKind::Application,
            config.listeners.application,
            Some(tls.application.clone()),
        ),
        (
            ListenerKind::Federation,
            config.listeners.federation,
            Some(tls.federation.clone()),
        ),
        (ListenerKind::Admin, config.listeners.admin, None),
    ];
    let mut bound = Vec::with_capacity(binds.len());
    for (kind, addr, tls) in binds {
        let failed = |source| StartError::Bind {
            listener: kind.name(),
            addr,
            source,
        };
        let tcp = TcpListener::bind(addr).await.map_err(failed)?;
        let local = tcp.local_addr().map_err(failed)?;
        bound.push((local, Listener { kind, tcp, tls }));
    }
    Ok(bound)
}

/// The outbound side: peers' keys (discovery, with the stranger limits) and the signed
/// client, both over one HTTPS client presenting `certificate` to peers that ask.
fn peer_clients(
    config: &Config,
    certificate: &Arc<tls::ServerCertificate>,
) -> Result<(mimi_well_known::PeerKeys, PeerClient), StartError> {
    let federation = &config.federation;
    let https = peer_https_client(config)?.with_client_certificate(certificate.clone())?;
    let peer_keys = mimi_well_known::PeerKeys::new(
        mimi_well_known::Resolver::new(https.clone()),
        std::time::Duration::from_secs(federation.key_cache_ttl_secs),
        std::time::Duration::from_secs(federation.key_refresh_interval_secs),
    )
    .with_stranger_limits(
        federation.new_sender_lookups_per_minute,
        std::time::Duration::from_millis(federation.key_lookup_wait_ms),
    );
    let peers = PeerClient::new(
        https,
        config.domain.clone(),
        std::time::Duration::from_secs(federation.key_cache_ttl_secs),
    );
    Ok((peer_keys, peers))
}

/// The configured certificate, or a development one issued by a local CA in the data dir.
fn server_certificate(config: &Config) -> Result<(PathBuf, PathBuf, Option<PathBuf>), StartError> {
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        return Ok((cert.clone(), key.clone(), None));
    }
    let dir = config.data_dir.join("dev-certs");
    let ca = DevCa::open_or_create(&dir)?;
    let mut names = vec![config.domain.clone()];
    if config.ds_domain() != config.domain {
        names.push(config.ds_domain().to_owned());
    }
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|name| name == extra) {
            names.push(extra.to_owned());
        }
    }
    let issued = ca.issue(&names, &dir, "server")?;
    tracing::warn!(ca = %ca.cert_path.display(), "using a generated development certificate");
    Ok((issued.cert, issued.key, Some(ca.cert_path)))
}

/// What a gateway started with `config` would do, checked without starting it (`mimi-gateway
/// check-config`): the applications' identity providers are built (trust roots read), a
/// configured TLS certificate and key are loaded, as are the signing keys if their file
/// exists. Touches no store and binds nothing. The first error found names its field.
pub fn check(config: &Config) -> Result<String, StartError> {
    let applications = crate::service::applications::Applications::from_config(config)?;
    let certificate = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            tls::ServerCertificate::load(cert, key)?;
            format!("{} (key {})", cert.display(), key.display())
        }
        _ => format!(
            "a development certificate from a CA in {}",
            config.data_dir.join("dev-certs").display()
        ),
    };
    let key_file = config.key_file();
    let keys = if key_file.exists() {
        let ring = KeyRing::load(&key_file)?;
        format!("{} ({} keys)", key_file.display(), ring.keys().len())
    } else {
        format!("{} (created at start)", key_file.display())
    };
    // A URL's user and password never get printed (the output goes to logs).
    let redact = |url: &str| match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***@{}", &url[at + 1..]),
        _ => url.to_owned(),
    };
    let store = if let Some(url) = &config.store.redis_url {
        format!("redis {}", redact(url))
    } else if !config.store.redis_cluster_urls.is_empty() {
        let urls: Vec<String> = config
            .store
            .redis_cluster_urls
            .iter()
            .map(|url| redact(url))
            .collect();
        format!("redis cluster {}", urls.join(", "))
    } else {
        "memory (embedded; state is lost at exit)".to_owned()
    };
    let federation = &config.federation;
    let peers = if federation.allowed_peers.is_empty() {
        "any peer found by discovery".to_owned()
    } else {
        format!("only {}", federation.allowed_peers.join(", "))
    };
    let mut out = format!(
        "configuration valid\n  \
         domain       {} (DS domain {})\n  \
         application  https://{}\n  \
         federation   https://{}{}\n  \
         admin        http://{}\n  \
         tls          {certificate}\n  \
         signing keys {keys}\n  \
         store        {store}\n  \
         peers        {peers}\n",
        config.domain,
        config.ds_domain(),
        config.listeners.application,
        config.listeners.federation,
        if federation.require_client_cert {
            " (peers must present a client certificate)"
        } else {
            ""
        },
        config.listeners.admin,
    );
    if config.applications.is_empty() {
        out.push_str("  applications none (a gateway with no application serves only peers)\n");
    }
    for application in &config.applications {
        let hosted = applications.get(&application.id);
        let identity = hosted.map_or_else(String::new, |hosted| {
            let configuration = hosted.identity.configuration();
            format!(
                "{:?}{}{}",
                configuration.identity_provider_type,
                if configuration.supports_accounts.0 {
                    ", accounts"
                } else {
                    ""
                },
                if configuration.supports_domains.0 {
                    ", domains (federates)"
                } else {
                    ""
                },
            )
        });
        out.push_str(&format!(
            "  application  {} ({}; {} key{}; {})\n",
            application.id,
            if application.public {
                "listed"
            } else {
                "private"
            },
            application.keys.len(),
            if application.keys.len() == 1 { "" } else { "s" },
            identity,
        ));
    }
    Ok(out)
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<(), StartError> {
    run_with(config, |_| String::new()).await
}

/// As [`run`], printing what `greeting` answers for the started gateway before the banner
/// (the first run's development application).
pub async fn run_with(
    config: Config,
    greeting: impl FnOnce(&Gateway) -> String,
) -> Result<(), StartError> {
    let gateway = Gateway::start(config).await?;
    // Listen before the banner says the gateway is up: a SIGTERM sent on seeing the banner
    // must drain and exit 0, never meet the default action and kill the process.
    let stop = StopSignal::listen();
    print!("{}", greeting(&gateway));
    print!("{}", gateway.banner());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    stop.wait().await;
    tracing::info!("shutting down: draining in-flight requests");
    gateway.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C), listened for from the moment it is made.
struct StopSignal {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    fn listen() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Each kept if it could be listened for: a SIGTERM handler once installed stays
            // (tokio's), so dropping one that worked would swallow the signal.
            let listen = |kind, name: &str| match signal(kind) {
                Ok(listening) => Some(listening),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}");
                    None
                }
            };
            StopSignal {
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            StopSignal {}
        }
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn received(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if self.terminate.is_some() || self.interrupt.is_some() {
                tokio::select! {
                    _ = received(self.terminate) => {}
                    _ = received(self.interrupt) => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
