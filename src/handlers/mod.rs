//! One module per endpoint; `dispatch` sends a routed, read and authenticated request there.

mod admin;
mod ds_domain;
mod verification_key;
mod whoami;

use crate::router::Endpoint;
use crate::service::{Reply, Request};
use crate::state::State;

pub async fn dispatch(state: &State, endpoint: Endpoint, request: Request) -> Reply {
    match endpoint {
        Endpoint::DsDomain => ds_domain::handle(state),
        Endpoint::VerificationKey => verification_key::handle(state, &request),
        Endpoint::WhoAmI => whoami::handle(&request),
        Endpoint::Healthz => Ok(admin::healthz()),
        Endpoint::Readyz => Ok(admin::readyz(state).await),
        Endpoint::Metrics => Ok(admin::metrics(state)),
    }
}
