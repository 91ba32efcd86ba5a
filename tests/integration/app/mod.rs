//! The application API, by the architecture draft's sections.

mod client_crate;
mod connections;
mod group_info;
mod group_races;
mod group_rejections;
mod groups;
mod identity;
mod key_queues;
mod registry;
