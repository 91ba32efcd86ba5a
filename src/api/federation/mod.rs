//! The federation API (MIMI Transport over the delivery-service draft): what peer gateways
//! call, each body a `DSRequest`.

pub(super) mod connection_key_packages;
pub(super) mod connection_request;
pub(super) mod deliver_message;
pub(super) mod ds_domain;
pub(super) mod group_information;
pub(super) mod group_key_packages;
pub(super) mod group_operation;
pub(super) mod verification_key;
