//! The MIMI gateway: the back-end that lets MLS messaging applications federate across
//! providers (MIMI Back-end Architecture over MIMI Transport). `main.rs` only parses the
//! command line; everything else lives here so tests can start the gateway in-process.
#![forbid(unsafe_code)]

pub(crate) mod applications;
pub(crate) mod auth;
pub(crate) mod client_queues;
pub mod config;
pub mod dev_certs;
pub(crate) mod error;
pub(crate) mod federation;
pub mod fuzz;
pub(crate) mod group_cache;
pub(crate) mod handlers;
pub mod identity;
pub mod keys;
pub(crate) mod metrics;
pub mod mls;
pub(crate) mod rate_limits;
pub(crate) mod reply;
pub(crate) mod router;
pub mod serve;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod state;
pub mod store;
pub mod tls;
