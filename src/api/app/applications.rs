//! `GET /apps` (architecture draft, "Applications"): the configurations of the public
//! applications hosted here, so federating gateways can check theirs match.

use mimi_wire::WIRE_VERSION;
use mimi_wire::registry::ApplicationList;

use crate::api::reply::{Reply, encoded};
use crate::state::State;

pub fn handle(state: &State) -> Reply {
    encoded(&ApplicationList {
        version: WIRE_VERSION,
        applications: state
            .applications
            .public()
            .map(|application| application.configuration())
            .collect(),
    })
}
