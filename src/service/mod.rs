//! The rules (architecture draft, "Client Registry", "Key Queues", "Groups", "Group
//! Messaging"; delivery-service draft, the hub and the follower): plain Rust in and out,
//! shared by the application API and the federation API. Services call the store and the
//! outbound federation parts; they never see an HTTP request.

pub(crate) mod applications;
pub(crate) mod forward;
pub(crate) mod group_cache;
pub(crate) mod messages;
pub(crate) mod mirror;
