//! The network layer (MIMI Transport, "HTTPS" and "TLS"): listeners accepting TLS 1.3
//! connections, the per-request pipeline (route, authenticate, limit, run the endpoint), and
//! the reloadable certificates. It calls down into `api`, never into the services or store.

pub(crate) mod auth;
pub(crate) mod listener;
pub(crate) mod pipeline;
pub mod tls;
