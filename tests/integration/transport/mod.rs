//! MIMI Transport: TLS and HTTP, signed requests, and what bad input, floods, outages and
//! crashes do to the gateway.

mod faults;
mod garbage;
mod hardening;
mod outage;
mod rate_limits;
mod shutdown;
mod signed_requests;
mod tls_and_http;
