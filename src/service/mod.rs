//! The rules (architecture draft, "Client Registry", "Key Queues", "Groups", "Group
//! Messaging"; delivery-service draft, the hub and the follower): plain Rust in and out,
//! shared by the application API and the federation API. Services call the store and the
//! outbound federation parts; they never see an HTTP request.

pub(crate) mod applications;
pub(crate) mod forward;
pub(crate) mod group_cache;
pub(crate) mod groups;
pub(crate) mod key_queues;
pub(crate) mod messages;
pub(crate) mod mirror;
pub(crate) mod registry;
pub(crate) mod remote;

use std::sync::Arc;

use crate::config::Config;
use crate::federation::Peers;
use crate::federation::delivery::Delivery;
use crate::metrics::Metrics;
use crate::rate_limits::CallerLimits;
use crate::store::SharedStore;

/// Every service, built once from the parts they share; each holds only what it needs.
pub struct Services {
    pub registry: registry::Registry,
    pub key_queues: key_queues::KeyQueues,
    pub groups: groups::Groups,
    pub messages: messages::Messages,
    pub mirror: mirror::Mirror,
    pub health: Health,
}

/// Whether the gateway can serve: its store answers.
pub struct Health {
    store: SharedStore,
}

impl Health {
    pub async fn store_answers(&self) -> Result<(), crate::store::StoreError> {
        self.store.ping().await
    }
}

/// The parts the services are built from.
pub struct Parts {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub applications: Arc<applications::Applications>,
    pub groups: Arc<group_cache::GroupCache>,
    pub peers: Arc<Peers>,
    pub delivery: Arc<Delivery>,
    pub caller_limits: Arc<CallerLimits>,
    pub metrics: Arc<Metrics>,
    /// The request signatures' verifier, which a commit's signatures share.
    pub signatures: Arc<crate::signatures::SignatureVerifier>,
}

impl Services {
    pub fn new(parts: Parts) -> Services {
        let Parts {
            config,
            store,
            applications,
            groups,
            peers,
            delivery,
            caller_limits,
            metrics,
            signatures,
        } = parts;
        let remote = remote::Remote {
            config: config.clone(),
            applications: applications.clone(),
            peers: peers.clone(),
        };
        let registry = registry::Registry {
            config: config.clone(),
            store: store.clone(),
            applications: applications.clone(),
            remote: remote.clone(),
        };
        let forwarder = forward::Forwarder {
            config: config.clone(),
            store: store.clone(),
            groups: groups.clone(),
            peers: peers.clone(),
        };
        let messages = messages::Messages {
            config: config.clone(),
            store: store.clone(),
            groups: groups.clone(),
            applications: applications.clone(),
            delivery: delivery.clone(),
            registry: registry.clone(),
            forwarder: forwarder.clone(),
            remote: remote.clone(),
            peers: peers.clone(),
        };
        Services {
            key_queues: key_queues::KeyQueues {
                config: config.clone(),
                store: store.clone(),
                caller_limits,
                metrics,
                remote,
                applications: applications.clone(),
                registry: registry.clone(),
            },
            groups: groups::Groups {
                config: config.clone(),
                store: store.clone(),
                groups: groups.clone(),
                applications: applications.clone(),
                delivery,
                forwarder,
                messages: messages.clone(),
                signatures,
            },
            mirror: mirror::Mirror {
                config,
                store,
                groups,
                applications,
                peers,
                registry: registry.clone(),
                messages: messages.clone(),
            },
            health: Health {
                store: registry.store.clone(),
            },
            registry,
            messages,
        }
    }
}
