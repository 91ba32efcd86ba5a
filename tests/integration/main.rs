//! Black-box tests of the gateway over real TLS 1.3, against real `redis-server` instances
//! and a real Redis Cluster the tests start on loopback. One test binary, so one link.
//!
//! Where a behaviour is tested: `app/` the application API by the architecture draft's
//! sections, `federation/` gateway to gateway (fan-out, forwarding to the hub, peers, interop
//! with mls-rs clients), `transport/` the MIMI Transport layer and what an attacker or a bad
//! day does to it, `contract/` each store trait's behaviour on memory, Redis and a Redis
//! Cluster alike, `project/` the house itself (architecture, command line, docs, fuzz
//! corpus). `support/` holds the helpers, never a test.

mod app;
mod contract;
mod federation;
mod project;
mod support;
mod transport;
