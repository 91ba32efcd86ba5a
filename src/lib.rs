//! The MIMI gateway: the back-end that lets MLS messaging applications federate across
//! providers (MIMI Back-end Architecture over MIMI Transport). `main.rs` only parses the
//! command line; everything else lives here so tests can start the gateway in-process.
#![forbid(unsafe_code)]

pub(crate) mod api;
pub mod bench;
pub mod config;
pub mod demo;
pub mod dev_app;
pub mod dev_certs;
pub(crate) mod error;
pub(crate) mod federation;
pub mod fuzz;
pub mod identity;
pub mod inspect;
pub mod keys;
pub(crate) mod member;
pub(crate) mod metrics;
pub mod mls;
pub(crate) mod net;
pub(crate) mod rate_limits;
pub mod serve;
pub(crate) mod service;
pub(crate) mod signatures;
pub(crate) mod state;
pub mod store;

pub use net::tls;
