//! `mimi-wire`: the TLS-serialized bodies of the MIMI gateway and the signed-request envelope.
//!
//! MIMI Transport ("REST Endpoints"): every request and response body is a TLS-serialized
//! struct carried as `application/octet-stream`. This crate holds those structs, the stable
//! error body, and the code that signs and verifies requests, so a gateway and its clients
//! share one implementation. It deliberately depends on no runtime (no tokio, hyper, redis).
#![forbid(unsafe_code)]

pub mod codec;
pub mod ds;
pub mod error;
pub mod groups;
pub mod key_queues;
pub mod messages;
pub mod registry;
pub mod signing;
pub mod verification_key;
pub mod whoami;

pub use codec::{DecodeError, decode_exact, encode};
pub use error::{ErrorCode, ErrorField, ErrorResponse};

/// Version of this gateway's own wire format. Every top-level body carries it first, so a
/// later format can be served beside this one.
pub const WIRE_VERSION: u16 = 1;

/// The content type of every body on the MIMI endpoints (MIMI Transport, "REST Endpoints").
pub const CONTENT_TYPE: &str = "application/octet-stream";
