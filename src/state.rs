//! The gateway's shared state: built once in `serve`, passed down as `Arc<State>` to the
//! listeners and the endpoints (`net`, `api`), dropped on shutdown. No globals. Below `api`
//! nothing sees it: the services hold their own parts (`service::Services`).

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::federation::Peers;
use crate::federation::client::PeerClient;
use crate::federation::delivery::Delivery;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::net::auth::Authenticator;
use crate::rate_limits::{CallerLimits, PerAddressPerMinute};
use crate::service::applications::Applications;
use crate::service::group_cache::GroupCache;
use crate::service::{Parts, Services};
use crate::signatures::SignatureVerifier;
use crate::store::SharedStore;

pub struct State {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub authenticator: Authenticator,
    pub applications: Arc<Applications>,
    /// A std RwLock: read for a moment per request, written only when keys are reloaded.
    pub keys: Arc<RwLock<KeyRing>>,
    pub metrics: Arc<Metrics>,
    pub delivery: Arc<Delivery>,
    pub services: Services,
    /// Bytes of request bodies being read, all listeners together
    /// (`limits.body_memory_budget_bytes`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Failed authentications per client address (`limits.failed_auth_per_ip_per_minute`).
    pub failed_authentications: PerAddressPerMinute,
    /// New connections per client address, all listeners together
    /// (`limits.new_connections_per_ip_per_minute`).
    pub new_connections: PerAddressPerMinute,
    /// Limits per authenticated caller (`rate_limits`).
    pub caller_limits: Arc<CallerLimits>,
}

impl State {
    pub fn new(
        config: Config,
        store: SharedStore,
        keys: KeyRing,
        applications: Applications,
        peer_keys: mimi_well_known::PeerKeys,
        peers: PeerClient,
    ) -> State {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let signatures = Arc::new(SignatureVerifier::new(
            config.auth.batch_verification,
            metrics.clone(),
        ));
        let authenticator =
            Authenticator::new(&config, store.clone(), peer_keys, signatures.clone());
        let body_budget = Arc::new(tokio::sync::Semaphore::new(
            config.limits.body_memory_budget_bytes,
        ));
        let keys = Arc::new(RwLock::new(keys));
        let peers = Arc::new(peers);
        let delivery = Arc::new(Delivery::new(
            &config.federation,
            store.clone(),
            peers.clone(),
            keys.clone(),
            metrics.clone(),
        ));
        let applications = Arc::new(applications);
        let caller_limits = Arc::new(CallerLimits::new(
            &config.rate_limits,
            config.limits.body_memory_budget_bytes,
            config.limits.max_body_bytes,
        ));
        let services = Services::new(Parts {
            config: config.clone(),
            store: store.clone(),
            applications: applications.clone(),
            groups: Arc::new(GroupCache::new(config.groups.cache_capacity)),
            peers: Arc::new(Peers::new(peers, keys.clone())),
            delivery: delivery.clone(),
            caller_limits: caller_limits.clone(),
            metrics: metrics.clone(),
            signatures,
        });
        State {
            failed_authentications: PerAddressPerMinute::new(
                config.limits.failed_auth_per_ip_per_minute,
            ),
            new_connections: PerAddressPerMinute::new(
                config.limits.new_connections_per_ip_per_minute,
            ),
            caller_limits,
            body_budget,
            services,
            config,
            store,
            authenticator,
            applications,
            keys,
            metrics,
            delivery,
        }
    }
}
