//! The gateway's shared state: built once in `serve`, passed down as `Arc<State>`, dropped on
//! shutdown. No globals.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::federation::client::PeerClient;
use crate::federation::delivery::Delivery;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::net::auth::Authenticator;
use crate::service::applications::Applications;
use crate::service::group_cache::GroupCache;
use crate::store::SharedStore;

pub struct State {
    pub config: Config,
    pub store: SharedStore,
    pub authenticator: Authenticator,
    pub applications: Applications,
    /// A std RwLock: read for a moment per request, written only when keys are reloaded.
    pub keys: Arc<RwLock<KeyRing>>,
    pub metrics: Arc<Metrics>,
    pub groups: GroupCache,
    /// Signed requests to peers.
    pub peers: Arc<PeerClient>,
    pub delivery: Arc<Delivery>,
    /// Bytes of request bodies being read, all listeners together
    /// (`limits.body_memory_budget_bytes`).
    pub body_budget: std::sync::Arc<tokio::sync::Semaphore>,
    /// Failed authentications per client address (`limits.failed_auth_per_ip_per_minute`).
    pub failed_authentications: crate::rate_limits::PerAddressPerMinute,
    /// New connections per client address, all listeners together
    /// (`limits.new_connections_per_ip_per_minute`).
    pub new_connections: crate::rate_limits::PerAddressPerMinute,
    /// Limits per authenticated caller (`rate_limits`).
    pub caller_limits: crate::rate_limits::CallerLimits,
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
        let authenticator = Authenticator::new(&config, store.clone(), peer_keys);
        let groups = GroupCache::new(config.groups.cache_capacity);
        let body_budget = std::sync::Arc::new(tokio::sync::Semaphore::new(
            config.limits.body_memory_budget_bytes,
        ));
        let keys = Arc::new(RwLock::new(keys));
        let metrics = Arc::new(Metrics::default());
        let peers = Arc::new(peers);
        let delivery = Arc::new(Delivery::new(
            &config.federation,
            store.clone(),
            peers.clone(),
            keys.clone(),
            metrics.clone(),
        ));
        State {
            failed_authentications: crate::rate_limits::PerAddressPerMinute::new(
                config.limits.failed_auth_per_ip_per_minute,
            ),
            new_connections: crate::rate_limits::PerAddressPerMinute::new(
                config.limits.new_connections_per_ip_per_minute,
            ),
            caller_limits: crate::rate_limits::CallerLimits::new(
                &config.rate_limits,
                config.limits.body_memory_budget_bytes,
                config.limits.max_body_bytes,
            ),
            body_budget,
            groups,
            config,
            store,
            authenticator,
            applications,
            keys,
            metrics,
            peers,
            delivery,
        }
    }
}
