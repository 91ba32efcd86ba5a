//! The MIMI gateway: the back-end that lets MLS messaging applications federate across
//! providers (MIMI Back-end Architecture over MIMI Transport). `main.rs` only parses the
//! command line; everything else lives here so tests can start the gateway in-process.
#![forbid(unsafe_code)]

pub mod applications;
pub mod auth;
pub mod client_queues;
pub mod config;
pub mod dev_certs;
pub mod error;
pub mod federation;
pub mod fuzz;
pub mod group_cache;
pub mod handlers;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod mls;
pub mod rate_limits;
pub mod reply;
pub mod router;
pub mod serve;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod tls;
