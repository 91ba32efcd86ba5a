//! The admin listener: `/healthz` (the process answers), `/readyz` (the store answers too),
//! `/metrics` (Prometheus text), and for operators' tools (JSON, issue 16): `GET
//! /admin/peers` (each peer's delivery state), `POST /admin/peers/{domain}/retry` (end a
//! backoff at once), `GET /admin/groups/{groupId}` (a group's state here).

use http::StatusCode;
use http::header::CONTENT_TYPE;

use crate::api::reply::{HttpResponse, Reply, text};
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

fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    let mut response = text(status, format!("{value:#}\n"));
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

pub fn peers(state: &State) -> HttpResponse {
    json(
        StatusCode::OK,
        &serde_json::json!({ "peers": state.delivery.peer_statuses() }),
    )
}

pub fn retry_peer(state: &State, peer: &str) -> HttpResponse {
    if state.delivery.retry_now(peer) {
        json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "peer": peer, "retry": "now" }),
        )
    } else {
        json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no delivery state for {peer}") }),
        )
    }
}

pub async fn group(state: &State, group: &[u8]) -> Reply {
    let group_path = mimi_wire::groups::group_id_to_path(group);
    let Some(found) = state.services.groups.admin_status(group).await? else {
        return Ok(json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no group {group_path}") }),
        ));
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "group": group_path,
            "application": found.app.to_string(),
            "role": if found.status.hub.is_some() { "mirror" } else { "hub" },
            "hub": found.status.hub.clone().unwrap_or_else(|| state.config.domain.clone()),
            "epoch": found.status.epoch,
            "members": found.status.member_count,
            "pending_proposals": found.pending_proposals,
            "pending_welcomes": found.pending_welcomes,
            "has_group_info": found.status.has_group_info,
        }),
    ))
}

pub fn metrics(state: &State) -> HttpResponse {
    let mut response = text(StatusCode::OK, state.metrics.render());
    if let Ok(value) = "text/plain; version=0.0.4; charset=utf-8".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
