//! The admin listener: `/healthz` (the process answers), `/readyz` (the store answers too),
//! `/metrics` (Prometheus text).

use http::StatusCode;
use http::header::CONTENT_TYPE;

use crate::api::reply::{HttpResponse, text};
use crate::state::State;

pub fn healthz() -> HttpResponse {
    text(StatusCode::OK, "ok\n")
}

pub async fn readyz(state: &State) -> HttpResponse {
    match state.services.health.store_answers().await {
        Ok(()) => text(StatusCode::OK, "ready\n"),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
    }
}

pub fn metrics(state: &State) -> HttpResponse {
    let mut response = text(StatusCode::OK, state.metrics.render());
    if let Ok(value) = "text/plain; version=0.0.4; charset=utf-8".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
