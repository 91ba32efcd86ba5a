//! The per-request pipeline shared by all listeners: route, check the signed-request
//! envelope as far as it goes without the body, read the body under its cap, the shared
//! body budget and its timeouts, verify the signature, run the handler, answer (errors as TLS-serialized `ErrorResponse`),
//! and record metrics. Each request gets an id that tags every log line and the
//! `x-request-id` response header.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use mimi_wire::CONTENT_TYPE as OCTET_STREAM;
use tracing::Instrument;

use crate::api;
use crate::api::endpoints::{self, Endpoint, ListenerKind};
use crate::api::reply::{HttpResponse, PendingRecord, Reply, Request, error_response_with};
use crate::error::GatewayError;
use crate::rate_limits::{RateClass, Verdict, jittered};
use crate::state::State;
use crate::store::{KeyQueueError, RequestRecord};
use tokio::sync::OwnedSemaphorePermit;

/// The largest body a request that needs no signature may carry (`VerificationKeyRequest`
/// is a few bytes; discovery takes none).
const UNSIGNED_BODY_CAP: usize = 4096;

fn request_id() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

/// Answers one HTTP request. Never fails: every error becomes an error response.
pub async fn handle(
    state: Arc<State>,
    listener: ListenerKind,
    request: hyper::Request<Incoming>,
) -> HttpResponse {
    let started = Instant::now();
    let id = request_id();
    // The span carries only the id (every line of the request's handling names it); what
    // the request was goes on its access line, which is opt-in.
    let span = tracing::info_span!("request", id = %id);
    let method = request.method().clone();
    let uri = request.uri().clone();
    async move {
        let route = endpoints::route(
            listener,
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let endpoint_name = route
            .as_ref()
            .map_or(endpoints::UNMATCHED, |endpoint| endpoint.name());
        // On the application listener every request must be signed, even one for a path
        // that does not exist; elsewhere an unknown path is answered without reading the body.
        let result = match route {
            Err(error) if listener != ListenerKind::Application => Err(error),
            // The admin listener has no authentication: an operators' endpoint a web page in
            // the operator's browser calls (another Host, DNS rebinding) is refused. Health
            // and metrics stay open to the network the listener is on (probes, Prometheus).
            Ok(
                Endpoint::AdminPeers
                | Endpoint::AdminRetryPeer { .. }
                | Endpoint::AdminGroup { .. },
            ) if !loopback_host(request.headers()) => Err(GatewayError::Forbidden(
                "admin requests name a loopback host".into(),
            )),
            // Boxed: the pipeline's future is large, and hyper moves this one into each
            // stream's task.
            route => Box::pin(run(state.clone(), listener, route, request)).await,
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                if let GatewayError::Auth(auth) = &error {
                    state.metrics.count_auth_failure(auth.reason());
                }
                let code = error.code();
                match code {
                    mimi_wire::ErrorCode::StoreUnavailable => {
                        state.metrics.count_store_error("unavailable")
                    }
                    mimi_wire::ErrorCode::OutcomeUnknown => {
                        state.metrics.count_store_error("outcome_unknown")
                    }
                    _ => {}
                }
                if code.http_status() >= 500 {
                    tracing::warn!(%error, code = code.code(), "request failed");
                } else if state.config.logging.access_log {
                    tracing::info!(target: ACCESS_TARGET, %error, code = code.code(), "request refused");
                } else {
                    tracing::debug!(%error, code = code.code(), "request refused");
                }
                let mut response = error_response_with(code, error.detail(), error.fields());
                if let Some(retry_after_secs) = error.retry_after_secs()
                    && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
                {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, value);
                }
                response
            }
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        state
            .metrics
            .observe_request(listener.name(), endpoint_name, status, elapsed);
        log_answer(
            &state.config.logging,
            AccessLine {
                listener,
                method: &method,
                path: uri.path(),
                endpoint: endpoint_name,
                status,
                elapsed,
            },
        );
        response
    }
    .instrument(span)
    .await
}

/// The target of access-log lines, for filtering them (`RUST_LOG=mimi_gateway::access=off`).
pub const ACCESS_TARGET: &str = "mimi_gateway::access";

/// What the access line of one answered request says.
struct AccessLine<'a> {
    listener: ListenerKind,
    method: &'a http::Method,
    path: &'a str,
    endpoint: &'a str,
    status: u16,
    elapsed: Duration,
}

/// Answers counted for the access log's sampling.
static ANSWERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The request's access line: `info` when the access log is on (one in `access_log_sample`
/// answers; every refusal), `debug` otherwise.
fn log_answer(logging: &crate::config::LoggingConfig, line: AccessLine<'_>) {
    let sampled = logging.access_log
        && (line.status >= 400
            || ANSWERED
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(u64::from(logging.access_log_sample.max(1))));
    let AccessLine {
        listener,
        method,
        path,
        endpoint,
        status,
        elapsed,
    } = line;
    let elapsed_us = elapsed.as_micros() as u64;
    if sampled {
        tracing::info!(
            target: ACCESS_TARGET,
            listener = listener.name(),
            %method,
            path,
            endpoint,
            status,
            elapsed_us,
            "answered"
        );
    } else {
        tracing::debug!(
            listener = listener.name(),
            %method,
            path,
            endpoint,
            status,
            elapsed_us,
            "answered"
        );
    }
}

async fn run(
    state: Arc<State>,
    listener: ListenerKind,
    route: Result<Endpoint, GatewayError>,
    request: hyper::Request<Incoming>,
) -> Reply {
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let cap = state.config.limits.max_body_bytes;
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|length| length > cap as u64) {
        return Err(GatewayError::BodyTooLarge);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let must_sign = match &route {
        Ok(endpoint) => endpoint.requires_signature(),
        Err(_) => true,
    };
    // An address that failed authentication too often this minute gets no more work.
    let address = parts
        .extensions
        .get::<crate::net::auth::ClientAddress>()
        .map(|address| address.0);
    let signed = must_sign && listener.signer().is_some();
    if signed
        && let Some(address) = address
        && let Some(retry_after_secs) = state.failed_authentications.refused(address)
    {
        return Err(GatewayError::RateLimited { retry_after_secs });
    }
    let count_failure = |error: GatewayError| {
        if let (GatewayError::Auth(auth), Some(address)) = (&error, address)
            && !matches!(auth, crate::net::auth::AuthError::Store(_))
        {
            state.failed_authentications.record(address);
        }
        error
    };
    // Everything the envelope allows is checked before the body is read: a request failing
    // these checks has no body read (a forged envelope naming a real key id passes them, and
    // is refused at the signature after its body was read under the budget).
    let checked = match (must_sign, listener.signer()) {
        (true, Some(expected)) => Some(
            state
                .authenticator
                .precheck(expected, &parts.headers, crate::keys::unix_now())
                .await
                .map_err(|error| count_failure(error.into()))?,
        ),
        _ => None,
    };
    // A caller this process refused in this window is refused again before its body is read
    // or its signature verified, after the class's delay: a flooding caller costs next to
    // nothing.
    let now = crate::keys::unix_now();
    // A signed request for a path that does not exist costs what a write does: it counts.
    let class = route
        .as_ref()
        .map_or(Some(RateClass::Write), Endpoint::rate_class);
    if let (Some(checked), Some(class)) = (&checked, class) {
        let scope = checked.claimed_scope();
        if let Some(retry_after_secs) = state.caller_limits.refused_before(&scope, class, now) {
            state
                .metrics
                .count_rate_limited(&scope, class.name(), "refused");
            tokio::time::sleep(jittered(state.caller_limits.refusal_delay(class))).await;
            return Err(GatewayError::RateLimited { retry_after_secs });
        }
    }
    // Mutual TLS (federation listener): the client certificate must name the envelope's
    // sender, also known before the body.
    if listener == ListenerKind::Federation
        && state.config.federation.require_client_cert
        && let Some(checked) = &checked
    {
        let certificate = parts.extensions.get::<crate::net::auth::PeerCertificate>();
        crate::net::auth::check_client_certificate(certificate, checked.sender())
            .map_err(|error| count_failure(error.into()))?;
    }
    // Requests that need no signature (discovery, `/verification_key`) carry at most a few
    // bytes and stay out of the shared budget; signed ones reserve what they will read
    // (nothing for a body already ended, the declared length, else the cap) while it is read.
    let (cap, budgeted) = if checked.is_some() {
        (cap, true)
    } else {
        (cap.min(UNSIGNED_BODY_CAP), false)
    };
    if declared.is_some_and(|length| length > cap as u64) {
        return Err(GatewayError::BodyTooLarge);
    }
    let reserve = if !budgeted || body.is_end_stream() {
        0
    } else {
        body.size_hint()
            .exact()
            .or(declared)
            .map_or(cap, |length| (length as usize).min(cap))
    };
    let reserved = match u32::try_from(reserve) {
        Ok(0) => None,
        Ok(bytes) => Some(
            state
                .body_budget
                .clone()
                .try_acquire_many_owned(bytes)
                .map_err(|_| GatewayError::Overloaded)?,
        ),
        Err(_) => return Err(GatewayError::BodyTooLarge),
    };
    let body = read_body(
        body,
        cap,
        state.config.request_timeout(),
        state.config.body_stall_timeout(),
    )
    .await?;
    let window = class.map(|class| state.caller_limits.window(class, now));
    // An endpoint whose store step records the request (key-package retrieval, issue 17:
    // one round trip for both) gets the record with the request; its rate verdict waits for
    // the count that step answers. Every other signed request is recorded and counted here.
    let left_to_step = matches!(&route, Ok(endpoint) if endpoint.records_in_its_step());
    let (caller, record) = match (checked, class, window) {
        (Some(checked), Some(class), Some(window)) if left_to_step => {
            let (caller, request_id) = state
                .authenticator
                .verify(checked, parts.method.as_str(), &path_and_query, &body)
                .await
                .map_err(|error| count_failure(error.into()))?;
            let go_up_to = state.caller_limits.go_up_to(class);
            let record = state
                .authenticator
                .unrecorded(&caller, request_id, window, go_up_to);
            (
                Some((caller, None)),
                Some(Arc::new(PendingRecord::new(record))),
            )
        }
        (Some(checked), _, window) => {
            let (caller, count) = state
                .authenticator
                .finish(
                    checked,
                    parts.method.as_str(),
                    &path_and_query,
                    &body,
                    window,
                )
                .await
                .map_err(|error| count_failure(error.into()))?;
            (Some((caller, Some(count))), None)
        }
        (None, ..) => (None, None),
    };
    let endpoint = route?;
    // Limits per authenticated caller: its count in this window refuses it, or it waits for
    // its turn among the caller's requests in handling (a delayed request holds its turn,
    // so a caller's delayed requests cannot pile up) and is delayed.
    let mut turn = None;
    let mut share = None;
    let caller = match (caller, class) {
        (Some((caller, count)), Some(class)) => {
            let scope = caller.scope.as_str();
            let limits = &state.caller_limits;

            let count_limited = |outcome| {
                state
                    .metrics
                    .count_rate_limited(scope, class.name(), outcome)
            };
            // Not counted yet (left to the endpoint's step): judged once the step answers.
            let verdict = count.map_or(Verdict::Go, |count| {
                limits.judge_caller(scope, class, count, now)
            });
            if let Verdict::Refuse { retry_after_secs } = verdict {
                count_limited("refused");
                tokio::time::sleep(jittered(limits.refusal_delay(class))).await;
                return Err(GatewayError::RateLimited { retry_after_secs });
            }
            // The body's bytes also count against the caller's share of the budget while it
            // waits, is delayed and runs, so that one caller cannot keep the whole budget.
            // A request left to its endpoint's step and refused here is recorded first: every
            // signed request counts.
            let (left_record, pipeline_state) = (&record, &*state);
            let refuse = |outcome| async move {
                count_limited(outcome);
                if let Some(left) = left_record.as_deref().and_then(PendingRecord::left) {
                    record_left(pipeline_state, left, class).await;
                }
                GatewayError::RateLimited {
                    retry_after_secs: 1,
                }
            };
            if reserved.is_some() && !body.is_empty() {
                let bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
                match limits.hold_body(scope, bytes) {
                    Some(held) => share = Some(held),
                    None => return Err(refuse("body_share").await),
                }
            }
            turn = match limits.enter(scope).await {
                Ok(turn) => turn,
                Err(()) => return Err(refuse("concurrency_refused").await),
            };
            if let Verdict::Delay(delay) = verdict {
                count_limited("delayed");
                tokio::time::sleep(jittered(delay)).await;
            }
            Some(caller)
        }
        (caller, _) => caller.map(|(caller, _)| caller),
    };
    let held = Held {
        _turn: turn,
        _reserved: reserved,
        _share: share,
    };
    let request = Request {
        body: body.clone(),
        caller: caller.clone(),
        record: record.clone(),
    };
    let (reply, held) = run_handler(&state, endpoint.clone(), request, held, class).await;
    let (Some(record), Some(held), Some(class)) = (&record, held, class) else {
        return reply;
    };
    // The endpoint's step recorded the request: a replay was refused there, a count past
    // the class's first threshold did nothing and is judged now: refused, or delayed and
    // handled again (recorded already).
    match reply {
        Err(GatewayError::KeyQueue(KeyQueueError::Replayed)) => Err(count_failure(
            GatewayError::Auth(crate::net::auth::AuthError::Replayed),
        )),
        Err(GatewayError::KeyQueue(KeyQueueError::Held { count })) => {
            let scope = record.scope();
            let limits = &state.caller_limits;
            let count_limited = |outcome| {
                state
                    .metrics
                    .count_rate_limited(scope, class.name(), outcome)
            };
            match limits.judge_caller(scope, class, count, now) {
                Verdict::Refuse { retry_after_secs } => {
                    count_limited("refused");
                    // The caller's turn and body share go back before the refusal's delay.
                    drop(held);
                    tokio::time::sleep(jittered(limits.refusal_delay(class))).await;
                    return Err(GatewayError::RateLimited { retry_after_secs });
                }
                Verdict::Delay(delay) => {
                    count_limited("delayed");
                    tokio::time::sleep(jittered(delay)).await;
                }
                Verdict::Go => {}
            }
            let again = Request {
                body,
                caller,
                record: None,
            };
            run_handler(&state, endpoint, again, held, Some(class))
                .await
                .0
        }
        reply => reply,
    }
}

/// What a request holds while its handler runs: its turn among the caller's requests and
/// its body's shares of the budget, given back when the handler is done (also past the
/// request timeout).
struct Held {
    _turn: Option<OwnedSemaphorePermit>,
    _reserved: Option<OwnedSemaphorePermit>,
    _share: Option<OwnedSemaphorePermit>,
}

/// Runs the handler as its own task: a panic there is caught and answered as an internal
/// error instead of dropping the connection. The task carries the request's span, so its
/// log lines carry the request id too. A record left to the endpoint's step that no step
/// took (the handler failed before it, or panicked) is recorded then, so that every signed
/// request of `class` is counted. Gives back what the request held when the handler
/// finished in time.
async fn run_handler(
    state: &Arc<State>,
    endpoint: Endpoint,
    request: Request,
    held: Held,
    class: Option<RateClass>,
) -> (Reply, Option<Held>) {
    let timeout = state.config.request_timeout();
    let task_state = state.clone();
    let record = request.record.clone();
    let task_record = record.clone();
    let task = tokio::spawn(
        async move {
            let reply = api::dispatch(&task_state, endpoint, request).await;
            if let (Some(left), Some(class)) =
                (task_record.as_deref().and_then(PendingRecord::left), class)
            {
                record_left(&task_state, left, class).await;
            }
            (reply, held)
        }
        .instrument(tracing::Span::current()),
    );
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok((reply, held))) => (reply, Some(held)),
        Ok(Err(join_error)) => {
            if let (Some(left), Some(class)) =
                (record.as_deref().and_then(PendingRecord::left), class)
            {
                record_left(state, left, class).await;
            }
            (
                Err(GatewayError::Internal(format!(
                    "handler failed: {join_error}"
                ))),
                None,
            )
        }
        // The task goes on (an atomic store step may be under way): the outcome is unknown.
        Err(_) => (Err(GatewayError::OutcomeUnknown), None),
    }
}

/// Records and counts a request of `class` that was refused, or whose handler ended, before
/// the store step it was left to; past the class's `reject_after` the caller is remembered
/// as refused (`CallerLimits::refused_before`), as any other counted request would make it.
async fn record_left(state: &State, record: &RequestRecord, class: RateClass) {
    match state
        .store
        .record_request(
            &record.sender,
            &record.request_id,
            record.ttl,
            Some(record.window),
        )
        .await
    {
        Ok(Some(count)) => {
            state
                .caller_limits
                .judge_caller(&record.sender, class, count, record.window.now);
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "could not record a request its handler did not record")
        }
    }
}

/// Whether the request's `Host` (or HTTP/2 authority) names this machine: `localhost`, a
/// loopback address, with or without a port; no Host (a bare HTTP/1.0 client) too.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(http::header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Bodies are `application/octet-stream`; a request that names another type is refused, one
/// that names none is accepted.
fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    match headers.get(CONTENT_TYPE) {
        None => Ok(()),
        Some(value) => {
            let media_type = value
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim();
            if media_type.eq_ignore_ascii_case(OCTET_STREAM) {
                Ok(())
            } else {
                Err(GatewayError::UnsupportedMediaType)
            }
        }
    }
}

/// The `Content-Length` a request declares, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// Reads the body under the cap (refused as soon as it is crossed), within the request
/// timeout overall and `stall` between two reads.
async fn read_body(
    mut body: Incoming,
    cap: usize,
    timeout: Duration,
    stall: Duration,
) -> Result<Bytes, GatewayError> {
    let read = async {
        let mut collected = Vec::new();
        loop {
            let frame = match tokio::time::timeout(stall, body.frame()).await {
                Err(_) => return Err(GatewayError::RequestTimeout),
                Ok(None) => return Ok(Bytes::from(collected)),
                Ok(Some(Err(error))) => {
                    return Err(GatewayError::Decode(mimi_wire::DecodeError::Malformed(
                        format!("body could not be read: {error}"),
                    )));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if collected.len() + data.len() > cap {
                    return Err(GatewayError::BodyTooLarge);
                }
                collected.extend_from_slice(&data);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(GatewayError::RequestTimeout))
}
