//! The store traits' contracts (`store/mod.rs`), each run on the memory store, a real
//! `redis-server` and a real three-master Redis Cluster, with the same answers on each.

mod groups;
mod key_queues;
mod messages;
mod replay_rates_leases;
