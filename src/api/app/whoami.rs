//! `GET|POST /whoami` (this gateway's extension, application listener): answers who the
//! signed request authenticated as, so an application developer can check keys, clock and
//! signing code end to end before using the real endpoints.

use mimi_wire::WIRE_VERSION;
use mimi_wire::whoami::WhoAmIResponse;

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;

pub fn handle(request: &Request) -> Reply {
    let caller = request
        .caller
        .as_ref()
        .ok_or_else(|| GatewayError::Internal("whoami reached without authentication".into()))?;
    encoded(&WhoAmIResponse {
        version: WIRE_VERSION,
        sender_kind: caller.sender_kind,
        sender: caller.sender.clone(),
        key_id: caller.key_id.clone(),
        body_length: request.body.len() as u64,
    })
}
