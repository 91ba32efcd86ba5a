//! Gateway configuration: a TOML file, every key overridable by `MIMI_`-prefixed environment
//! variables (`MIMI_LISTENERS__ADMIN=127.0.0.1:0`), and defaults that run with no file at all.
//!
//! DESIGN.md "Two interfaces and an admin port": the three listeners and their default binds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This provider's domain: what the recipient of every signed request must name.
    pub domain: String,
    /// The DS domain answered at `/.well-known/mimi/ds-domain`; `domain` when unset.
    pub ds_domain: Option<String>,
    /// Where generated development material (CA, certificate, signing keys) lives.
    pub data_dir: PathBuf,
    pub listeners: ListenersConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    pub key_packages: KeyPackagesConfig,
    pub groups: GroupsConfig,
    pub federation: FederationConfig,
    pub rate_limits: RateLimitsConfig,
    pub logging: LoggingConfig,
    pub applications: Vec<ApplicationConfig>,
}

/// What the gateway logs for each request. Warnings and errors (answers >= 500, store and
/// delivery trouble) are always logged; a line per ordinary request costs more than the
/// request itself on the fast paths, so it is opt-in (`docs/performance.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// One `info` line per answered request (target `mimi_gateway::access`: listener,
    /// method, path, endpoint, status, microseconds, request id); otherwise those lines are
    /// `debug`.
    pub access_log: bool,
    /// With the access log on, one request in this many is logged (1: every request);
    /// refusals are always logged.
    pub access_log_sample: u32,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            access_log: false,
            access_log_sample: 1,
        }
    }
}

/// Group state (architecture draft, "Managing Groups without Metadata Protection").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// How long a welcome (and the ratchet tree stored for it) waits for its recipients to
    /// acknowledge it before it is pruned.
    pub welcome_retention_secs: u64,
    /// How many groups each gateway process keeps validated in memory (the store stays the
    /// authority; this only saves reloading hot groups).
    pub cache_capacity: usize,
    /// How many of the newest epochs keep their control messages (0: all). A request for
    /// older ones answers `EpochPruned`.
    pub retained_epochs: u64,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            welcome_retention_secs: 14 * 86_400,
            cache_capacity: 1_024,
            retained_epochs: 1_000,
        }
    }
}

/// How this gateway finds and trusts peers (MIMI Transport, "Endpoint Discovery",
/// "Verification Key").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// PEM roots peers' certificates must chain to; the web's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Address overrides, domain -> `ip:port` (like curl's `--resolve`), for development.
    pub resolve: std::collections::BTreeMap<String, SocketAddr>,
    /// Only these peers may send signed requests; any peer when empty.
    pub allowed_peers: Vec<String>,
    /// How long a peer's discovery answer and keys are cached.
    pub key_cache_ttl_secs: u64,
    /// An unknown key id refreshes a peer's keys at most once per this interval.
    pub key_refresh_interval_secs: u64,
    /// First wait before retrying a failed delivery to a peer; doubled per failure.
    pub retry_initial_ms: u64,
    /// Longest wait between delivery attempts to a peer that stays down.
    pub retry_max_ms: u64,
    /// Mutual TLS on the federation listener: peers must present a client certificate
    /// chaining to `ca_file` (or the web's roots) that names the sender domain of each signed
    /// request. Off by default; the request signatures authenticate peers either way.
    pub require_client_cert: bool,
    /// How often the delivery loop looks for queued deliveries (another gateway process may
    /// have queued them; this process's own commits wake it at once).
    pub delivery_scan_ms: u64,
    /// A follower answers its application's forwarded commit or proposal once its mirror
    /// shows it (the hub's fan-out arrived), waiting at most this long; 0: at once.
    pub mirror_wait_ms: u64,
    /// Address ranges (`10.1.0.0/16`, `127.0.0.0/8`) outbound connections to peers may go to
    /// although they are special-purpose (loopback, private, link-local, ...), which are
    /// refused by default. Address overrides (`resolve`) are held to the same rule.
    pub allowed_ip_ranges: Vec<String>,
    /// Key lookups for senders whose keys are not cached, gateway-wide, per minute (each
    /// sender also at most once per `key_refresh_interval_secs`).
    pub new_sender_lookups_per_minute: u32,
    /// How long a request waits for its sender's keys to be looked up; past it the request
    /// is refused, while the lookup goes on and its keys serve the sender's next requests.
    pub key_lookup_wait_ms: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            ca_file: None,
            resolve: Default::default(),
            allowed_peers: Vec::new(),
            key_cache_ttl_secs: 3_600,
            key_refresh_interval_secs: 30,
            require_client_cert: false,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            delivery_scan_ms: 1_000,
            mirror_wait_ms: 1_000,
            allowed_ip_ranges: Vec::new(),
            new_sender_lookups_per_minute: 120,
            key_lookup_wait_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyPackagesConfig {
    /// Longest lifetime window (`not_after - not_before`) a key package may have; openmls
    /// does not check it. Default: openmls' own default window, 84 days plus one hour.
    pub max_lifetime_secs: u64,
    /// Most ordinary key packages one key queue may hold.
    pub max_per_queue: usize,
}

impl Default for KeyPackagesConfig {
    fn default() -> Self {
        KeyPackagesConfig {
            max_lifetime_secs: 84 * 86_400 + 3_600,
            max_per_queue: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenersConfig {
    /// The operator's application servers (TLS).
    pub application: SocketAddr,
    /// Peer gateways and `/.well-known/mimi/` (TLS).
    pub federation: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics` (plain HTTP; keep it on loopback).
    pub admin: SocketAddr,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server; a development one is generated when unset.
    pub cert: Option<PathBuf>,
    /// PEM private key of the server.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    /// From accept to the first complete request head (TLS handshake included), and for each
    /// later HTTP/1 request head: a connection that sends nothing in time is closed.
    pub header_read_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_connections: usize,
    /// Connections one client address may hold at once; past it, new ones are closed at once.
    pub max_connections_per_ip: usize,
    /// A kept-alive connection with no request in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
    /// HTTP/2 peers are pinged this often; one that does not answer within
    /// `http2_keep_alive_timeout_ms` is dropped.
    pub http2_keep_alive_interval_ms: u64,
    pub http2_keep_alive_timeout_ms: u64,
    /// All request bodies being read at once share this many bytes; a request that would
    /// cross it is answered 503 (`Overloaded`) before its body is read.
    pub body_memory_budget_bytes: usize,
    /// A body that sends nothing for this long between reads is 408.
    pub body_stall_timeout_ms: u64,
    /// Failed authentications one client address may have per minute; past it, its requests
    /// are refused (429, `Retry-After`) before any authentication work until the minute ends.
    pub failed_auth_per_ip_per_minute: u32,
    /// New connections one client address may open per minute; past it, new ones are closed
    /// at accept until the minute ends (0: no limit).
    pub new_connections_per_ip_per_minute: u32,
    /// How long shutdown waits for in-flight requests before closing them.
    pub shutdown_grace_ms: u64,
}

/// Limits per authenticated caller (an application on the application listener, a peer
/// domain on the federation listener), after its signature verified: the semantics of
/// Matrix's `rc_federation`. Requests are counted per caller and class in fixed windows of
/// `window_secs`, in the store, so every gateway process sharing it counts together.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub window_secs: u64,
    /// Reads: discovery, identity retrieval, proposals and control messages, group info and
    /// status, welcome and message queues, `/whoami`, a peer's welcome and external-commit
    /// information.
    pub read: RateClassConfig,
    /// Everything else that is signed: registrations, key queue updates, groups, commits,
    /// proposals, messages, connection requests, a peer's group operations and fan-out.
    pub write: RateClassConfig,
    /// Key-package retrieval, the application's and a peer's.
    pub key_packages: RateClassConfig,
    /// Requests of one caller being handled (or delayed) at once in one gateway process; past
    /// it a request waits up to `concurrency_wait_ms` for its turn, then is refused (429).
    /// 0: no limit.
    pub concurrent_per_caller: usize,
    pub concurrency_wait_ms: u64,
    /// Fresh key-package assignments per `key_package_window_secs` to one receiver (as the
    /// caller names it) and to one caller in all; past either, only packages already assigned
    /// to the receiver and final keys are served (0: no cap).
    pub fresh_key_packages_per_receiver: u64,
    pub fresh_key_packages_per_caller: u64,
    pub key_package_window_secs: u64,
}

/// One class of requests: past `delay_after` requests in a window each is delayed by
/// `delay_ms`, past `reject_after` refused (429, `RateLimited`, `Retry-After` the rest of the
/// window). 0 switches a threshold off.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateClassConfig {
    pub delay_after: u64,
    pub delay_ms: u64,
    pub reject_after: u64,
}

impl RateLimitsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.window_secs == 0 {
            return Err(invalid("rate_limits.window_secs", "must be positive"));
        }
        if self.key_package_window_secs == 0 {
            return Err(invalid(
                "rate_limits.key_package_window_secs",
                "must be positive",
            ));
        }
        for (name, class) in [
            ("read", &self.read),
            ("write", &self.write),
            ("key_packages", &self.key_packages),
        ] {
            if class.delay_after > 0
                && class.reject_after > 0
                && class.delay_after > class.reject_after
            {
                return Err(invalid(
                    format!("rate_limits.{name}.delay_after"),
                    "must not exceed reject_after (requests are delayed before they are refused)",
                ));
            }
            if class.delay_after > 0 && class.delay_ms == 0 {
                return Err(invalid(
                    format!("rate_limits.{name}.delay_ms"),
                    "must be positive when delay_after is set",
                ));
            }
        }
        Ok(())
    }
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        // An application server speaks for all its users, a peer for all of its: the defaults
        // stop a runaway caller (about 2,000 reads, 1,000 writes, 500 retrievals a second
        // before delays) without touching ordinary traffic.
        RateLimitsConfig {
            window_secs: 10,
            read: RateClassConfig {
                delay_after: 20_000,
                delay_ms: 100,
                reject_after: 40_000,
            },
            write: RateClassConfig {
                delay_after: 10_000,
                delay_ms: 100,
                reject_after: 20_000,
            },
            key_packages: RateClassConfig {
                delay_after: 5_000,
                delay_ms: 100,
                reject_after: 10_000,
            },
            concurrent_per_caller: 256,
            concurrency_wait_ms: 1_000,
            fresh_key_packages_per_receiver: 1_000,
            fresh_key_packages_per_caller: 60_000,
            key_package_window_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A signed request's timestamp may differ from now by at most this much.
    pub timestamp_window_secs: u64,
    /// The signing-key file; `<data_dir>/signing-keys.toml` when unset.
    pub key_file: Option<PathBuf>,
    /// How often the running gateway checks the key file for changes (`keygen --rotate`)
    /// and reloads it.
    pub key_reload_ms: u64,
    /// Verify the signatures of requests waiting at the same moment together (Ed25519 batch
    /// verification, about half the CPU per signature under load); off: each alone.
    pub batch_verification: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A single Redis (`redis://host:port/db`). With neither this nor `redis_cluster_urls`
    /// the embedded memory store is used.
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster.
    pub redis_cluster_urls: Vec<String>,
    /// Connection and response timeout of every store command.
    pub command_timeout_ms: u64,
}

/// An application (architecture draft, "Applications"): its id, identity provider, whether
/// `GET /apps` lists it, and the keys its application server signs requests with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    pub id: Uuid,
    /// Listed by `GET /apps` (default); private applications are not.
    #[serde(default = "listed_by_default")]
    pub public: bool,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub keys: Vec<ApplicationKeyConfig>,
}

fn listed_by_default() -> bool {
    true
}

/// Which identity provider the application uses (the draft's `IdentityConfiguration`), and
/// for X.509 its `X509Parameters` and trust roots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default)]
    pub provider: IdentityProviderKind,
    #[serde(default)]
    pub supports_accounts: bool,
    #[serde(default)]
    pub supports_domains: bool,
    /// X.509: offsets of the certificates whose Common Names make the device handle.
    pub device_handle_range: Option<HandleRangeConfig>,
    pub account_handle_offset: Option<u8>,
    pub domain_name_offset: Option<u8>,
    /// X.509: PEM files of the trust roots credential chains must lead to.
    #[serde(default)]
    pub trust_roots: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityProviderKind {
    #[default]
    Basic,
    X509,
    /// Basic credentials naming `handle@domain` (ours, `docs/decisions.md`): federation
    /// without an X.509 PKI.
    BasicWithDomains,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandleRangeConfig {
    pub start: u8,
    pub end: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationKeyConfig {
    /// The key id the application puts in its signed requests.
    pub id: String,
    /// The Ed25519 public key: 32 bytes, hex.
    pub public_key: String,
    /// Validity window, seconds since the Unix epoch; open-ended when unset.
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
}

/// Environment variables with this prefix set configuration keys (`MIMI_STORE__REDIS_URL`).
pub const ENV_PREFIX: &str = "MIMI_";

/// The top-level keys of [`Config`]: an environment variable `MIMI_<KEY>` whose first segment
/// is none of these belongs to something else in the deployment and is ignored with a warning;
/// one naming a known key with an unknown field below it (`MIMI_STORE__REDIS_ULR`) is a typo
/// and stays fatal, as in the file. A test checks the list against the struct.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "domain",
    "ds_domain",
    "data_dir",
    "listeners",
    "tls",
    "limits",
    "auth",
    "store",
    "key_packages",
    "groups",
    "federation",
    "rate_limits",
    "logging",
    "applications",
];

/// Whether an environment key (after the prefix, `__` turned into `.`) starts with a
/// top-level configuration key.
fn names_a_section(key: &str) -> bool {
    let first = key.split('.').next().unwrap_or_default();
    TOP_LEVEL_KEYS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(first))
}

/// The `MIMI_*` environment variables that name no configuration key.
pub fn ignored_environment(names: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|name| {
            let name = name.to_str()?.to_owned();
            // figment matches the prefix without regard to case; so does this.
            let prefix = name.get(..ENV_PREFIX.len())?;
            if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
                return None;
            }
            let key = name[ENV_PREFIX.len()..].replace("__", ".");
            (!key.is_empty() && !names_a_section(&key)).then_some(name)
        })
        .collect()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            ds_domain: None,
            data_dir: PathBuf::from("mimi-data"),
            listeners: ListenersConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            store: StoreConfig::default(),
            key_packages: KeyPackagesConfig::default(),
            groups: GroupsConfig::default(),
            federation: FederationConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            logging: LoggingConfig::default(),
            applications: Vec::new(),
        }
    }
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            application: SocketAddr::from(([127, 0, 0, 1], 7443)),
            federation: SocketAddr::from(([0, 0, 0, 0], 8443)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 1024 * 1024,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 1024,
            max_connections_per_ip: 256,
            idle_timeout_ms: 60_000,
            http2_max_streams: 32,
            http2_keep_alive_interval_ms: 20_000,
            http2_keep_alive_timeout_ms: 10_000,
            body_memory_budget_bytes: 64 * 1024 * 1024,
            body_stall_timeout_ms: 10_000,
            failed_auth_per_ip_per_minute: 300,
            new_connections_per_ip_per_minute: 600,
            shutdown_grace_ms: 30_000,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            timestamp_window_secs: 300,
            key_file: None,
            key_reload_ms: 5_000,
            batch_verification: true,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            redis_url: None,
            redis_cluster_urls: Vec::new(),
            command_timeout_ms: 2_000,
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (if any), then `MIMI_*` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        for name in ignored_environment(std::env::vars_os().map(|(name, _)| name)) {
            tracing::warn!(
                variable = %name,
                "ignoring an environment variable with the MIMI_ prefix that names no \
                 configuration key"
            );
        }
        let config: Config = figment
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .split("__")
                    .filter(|key| names_a_section(key.as_str())),
            )
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses configurations that cannot run, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_domain("domain", &self.domain)?;
        if let Some(ds_domain) = &self.ds_domain {
            validate_domain("ds_domain", ds_domain)?;
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid("tls", "set both `cert` and `key`, or neither"));
        }
        if self.logging.access_log_sample == 0 {
            return Err(invalid(
                "logging.access_log_sample",
                "must be at least 1 (every request)",
            ));
        }
        let limits = &self.limits;
        if limits.max_body_bytes == 0 {
            return Err(invalid("limits.max_body_bytes", "must be positive"));
        }
        for (field, value) in [
            ("limits.max_connections", limits.max_connections as u64),
            (
                "limits.max_connections_per_ip",
                limits.max_connections_per_ip as u64,
            ),
            ("limits.idle_timeout_ms", limits.idle_timeout_ms),
            (
                "limits.http2_max_streams",
                u64::from(limits.http2_max_streams),
            ),
            (
                "limits.http2_keep_alive_interval_ms",
                limits.http2_keep_alive_interval_ms,
            ),
            (
                "limits.http2_keep_alive_timeout_ms",
                limits.http2_keep_alive_timeout_ms,
            ),
            ("limits.body_stall_timeout_ms", limits.body_stall_timeout_ms),
            (
                "limits.failed_auth_per_ip_per_minute",
                u64::from(limits.failed_auth_per_ip_per_minute),
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be positive"));
            }
        }
        for (index, range) in self.federation.allowed_ip_ranges.iter().enumerate() {
            if mimi_well_known::address_policy::IpRange::parse(range).is_none() {
                return Err(invalid(
                    format!("federation.allowed_ip_ranges[{index}]"),
                    format!("`{range}` is not an address range (a.b.c.d/n or x::y/n)"),
                ));
            }
        }
        if self.federation.new_sender_lookups_per_minute == 0
            || self.federation.key_lookup_wait_ms == 0
        {
            return Err(invalid(
                "federation.new_sender_lookups_per_minute",
                "lookups and their wait must be positive",
            ));
        }
        if limits.body_memory_budget_bytes < limits.max_body_bytes {
            return Err(invalid(
                "limits.body_memory_budget_bytes",
                "must hold at least one body of limits.max_body_bytes",
            ));
        }
        if limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be positive"));
        }
        if limits.header_read_timeout_ms == 0 || limits.request_timeout_ms == 0 {
            return Err(invalid("limits", "timeouts must be positive"));
        }
        if self.auth.timestamp_window_secs == 0 {
            return Err(invalid("auth.timestamp_window_secs", "must be positive"));
        }
        self.rate_limits.validate()?;
        if self.store.redis_url.is_some() && !self.store.redis_cluster_urls.is_empty() {
            return Err(invalid(
                "store",
                "set `redis_url` or `redis_cluster_urls`, not both",
            ));
        }
        if self.store.command_timeout_ms == 0 {
            return Err(invalid("store.command_timeout_ms", "must be positive"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, application) in self.applications.iter().enumerate() {
            let field = format!("applications[{index}].id");
            if application.id.get_version_num() != 4 {
                return Err(invalid(field, "must be a version 4 UUID"));
            }
            if !seen.insert(application.id) {
                return Err(invalid(
                    field,
                    format!("duplicate application {}", application.id),
                ));
            }
            validate_identity(
                &format!("applications[{index}].identity"),
                &application.identity,
            )?;
            for (key_index, key) in application.keys.iter().enumerate() {
                let field = format!("applications[{index}].keys[{key_index}]");
                if key.id.is_empty() {
                    return Err(invalid(format!("{field}.id"), "must not be empty"));
                }
                crate::keys::parse_public_key(&key.public_key)
                    .map_err(|reason| invalid(format!("{field}.public_key"), reason))?;
                if let (Some(start), Some(end)) = (key.not_before, key.not_after)
                    && end <= start
                {
                    return Err(invalid(
                        format!("{field}.not_after"),
                        "must be after not_before",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn ds_domain(&self) -> &str {
        self.ds_domain.as_deref().unwrap_or(&self.domain)
    }

    /// Whether an application's `domain` names this gateway (its provider or DS domain), so
    /// nothing is forwarded to a peer.
    pub fn serves(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case(&self.domain) || domain.eq_ignore_ascii_case(self.ds_domain())
    }

    pub fn key_file(&self) -> PathBuf {
        self.auth
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing-keys.toml"))
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.header_read_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.request_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.idle_timeout_ms)
    }

    pub fn body_stall_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.body_stall_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.limits.shutdown_grace_ms)
    }
}

/// The draft's rules for an `IdentityConfiguration` (architecture draft, "X.509 Identity
/// Provider"): the error names the offending field.
fn validate_identity(field: &str, identity: &IdentityConfig) -> Result<(), ConfigError> {
    match identity.provider {
        IdentityProviderKind::Basic | IdentityProviderKind::BasicWithDomains => {
            let x509_only = identity.device_handle_range.is_some()
                || identity.account_handle_offset.is_some()
                || identity.domain_name_offset.is_some()
                || !identity.trust_roots.is_empty();
            if identity.supports_accounts {
                return Err(invalid(field, "basic providers do not support accounts"));
            }
            if identity.supports_domains && identity.provider == IdentityProviderKind::Basic {
                return Err(invalid(
                    field,
                    "the basic provider does not support domains: use provider = \
                     \"basic_with_domains\" (identities handle@domain)",
                ));
            }
            if x509_only {
                return Err(invalid(
                    field,
                    "X.509 parameters given for the basic provider",
                ));
            }
        }
        IdentityProviderKind::X509 => {
            let range = identity.device_handle_range.ok_or_else(|| {
                invalid(format!("{field}.device_handle_range"), "required for x509")
            })?;
            let settings = crate::identity::X509Settings {
                device_handle_range: mimi_wire::registry::X509DeviceHandleRange {
                    start: range.start,
                    end: range.end,
                },
                account_handle_offset: identity.account_handle_offset,
                domain_name_offset: identity.domain_name_offset,
            };
            settings
                .check(identity.supports_accounts, identity.supports_domains)
                .map_err(|(name, reason)| invalid(format!("{field}.{name}"), reason))?;
            if identity.trust_roots.is_empty() {
                return Err(invalid(
                    format!("{field}.trust_roots"),
                    "at least one trust root is required",
                ));
            }
        }
    }
    Ok(())
}

/// A DNS name as the transport draft uses it: letters, digits, hyphens and dots, no port.
pub fn validate_domain(field: &str, domain: &str) -> Result<(), ConfigError> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(invalid(field, format!("`{domain}` is not a DNS name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list the environment is filtered by is exactly the struct's top-level keys.
    #[test]
    fn top_level_keys_are_the_structs() {
        let config = Config {
            ds_domain: Some("ds.localhost".into()),
            ..Config::default()
        };
        let table = toml::Table::try_from(&config).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut listed = TOP_LEVEL_KEYS.to_vec();
        keys.sort_unstable();
        listed.sort_unstable();
        assert_eq!(keys, listed);
    }

    #[test]
    fn only_variables_naming_no_key_are_ignored() {
        let names = [
            "MIMI_HOME",
            "mimi_release",
            "MIMI_STORE__REDIS_URL",
            "MIMI_DOMAIN",
            "MIMI_STORE__TYPO",
            "PATH",
            "MIMI_",
        ]
        .map(std::ffi::OsString::from);
        assert_eq!(ignored_environment(names), ["MIMI_HOME", "mimi_release"]);
    }
}
