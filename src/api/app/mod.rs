//! The application API (architecture draft, "REST API"): what an application server calls.

pub(super) mod applications;
pub(super) mod client;
pub(super) mod commits;
pub(super) mod connection_key_packages;
pub(super) mod connection_requests;
pub(super) mod control_messages;
pub(super) mod create_group;
pub(super) mod discover_clients;
pub(super) mod group_info;
pub(super) mod key_queues;
pub(super) mod messages;
pub(super) mod proposals;
pub(super) mod register_client;
pub(super) mod retrieve_key_package;
pub(super) mod update_client;
pub(super) mod welcomes;
pub(super) mod whoami;
