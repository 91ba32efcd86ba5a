//! Federation between gateways (DESIGN.md "Federation: one hub per group"; MIMI Transport
//! over the delivery-service draft's structs): requests to peers, durable outbound fan-out,
//! and what a hub and a follower do with a group's messages.

pub mod delivery;
pub mod peer_client;
