//! `GET /.well-known/mimi/ds-domain` (MIMI Transport, "Endpoint Discovery"): the fully
//! qualified domain name under which this provider's Delivery Service answers, as text.

use http::StatusCode;

use crate::api::reply::{Reply, text};
use crate::state::State;

pub fn handle(state: &State) -> Reply {
    Ok(text(StatusCode::OK, state.config.ds_domain()))
}
