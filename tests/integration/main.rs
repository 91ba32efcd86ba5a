//! Black-box tests of the gateway over real TLS 1.3, against real `redis-server` instances
//! and a real Redis Cluster the tests start on loopback. One test binary, so one link.

mod architecture;
mod cli;
mod common;
mod connections;
mod docs;
mod faults;
mod federation;
mod forwarding;
mod fuzz_corpus;
mod garbage;
mod group_client;
mod group_info;
mod group_races;
mod group_rejections;
mod group_store;
mod groups;
mod hardening;
mod identity;
mod interop;
mod key_queues;
mod message_store;
mod mls_client;
mod mls_rs_client;
mod outage;
mod peers;
mod rate_limits;
mod registry;
mod shutdown;
mod signed_requests;
mod stores;
mod transport;
