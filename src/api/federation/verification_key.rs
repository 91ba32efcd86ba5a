//! `GET|POST /verification_key` (MIMI Transport, "Verification Key"): the gateway's request
//! signing keys, the current one first, then retired ones still in their grace period.
//! The body is a `VerificationKeyRequest` or empty; no signature (it is how peers bootstrap).

use mimi_wire::verification_key::{VerificationKeyRequest, VerificationKeyResponse};
use mimi_wire::{WIRE_VERSION, codec};

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;
use crate::state::State;

pub fn handle(state: &State, request: &Request) -> Reply {
    if !request.body.is_empty() {
        let asked: VerificationKeyRequest = codec::decode_exact(&request.body)?;
        codec::check_version(asked.version)?;
    }
    let now = crate::keys::unix_now();
    let keys = state
        .keys
        .read()
        .map_err(|_| GatewayError::Internal("key ring lock poisoned".into()))?
        .published(now);
    encoded(&VerificationKeyResponse {
        version: WIRE_VERSION,
        domain: state.config.ds_domain().to_owned(),
        keys,
    })
}
