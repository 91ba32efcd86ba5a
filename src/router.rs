//! Which endpoint a request is for, on which listener, and who must have signed it.
//!
//! DESIGN.md "Two interfaces and an admin port": the application listener serves the
//! operator's application servers, the federation listener serves peers and the MIMI
//! Transport endpoints, the admin listener serves operators.

use http::Method;
use mimi_wire::signing::SenderKind;

use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Application,
    Federation,
    Admin,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Application => "application",
            ListenerKind::Federation => "federation",
            ListenerKind::Admin => "admin",
        }
    }

    /// Who signs requests on this listener.
    pub fn signer(self) -> Option<SenderKind> {
        match self {
            ListenerKind::Application => Some(SenderKind::Application),
            ListenerKind::Federation => Some(SenderKind::Provider),
            ListenerKind::Admin => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /.well-known/mimi/ds-domain` (MIMI Transport, "Endpoint Discovery").
    DsDomain,
    /// `GET|POST /verification_key` (MIMI Transport, "Verification Key").
    VerificationKey,
    /// `GET|POST /whoami`: this gateway's extension to check a signed request end to end.
    WhoAmI,
    Healthz,
    Readyz,
    Metrics,
}

impl Endpoint {
    /// The endpoint's label in metrics and logs (bounded: never the raw path).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::DsDomain => "ds_domain",
            Endpoint::VerificationKey => "verification_key",
            Endpoint::WhoAmI => "whoami",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Metrics => "metrics",
        }
    }

    /// Whether the request must carry a valid signed-request envelope: every endpoint but
    /// the discovery ones (how peers bootstrap) and the admin ones (loopback, no user data).
    /// Secure by default: a new endpoint is signed unless listed here.
    pub fn requires_signature(self) -> bool {
        !matches!(
            self,
            Endpoint::DsDomain
                | Endpoint::VerificationKey
                | Endpoint::Healthz
                | Endpoint::Readyz
                | Endpoint::Metrics
        )
    }
}

/// The label used for requests that matched no endpoint.
pub const UNMATCHED: &str = "unmatched";

/// Endpoints that take input accept POST beside GET, since proxies may drop GET bodies.
fn get_or_post(method: &Method, endpoint: Endpoint) -> Result<Endpoint, GatewayError> {
    if method == Method::GET || method == Method::POST {
        Ok(endpoint)
    } else {
        Err(GatewayError::MethodNotAllowed)
    }
}

fn get_only(method: &Method, endpoint: Endpoint) -> Result<Endpoint, GatewayError> {
    if method == Method::GET {
        Ok(endpoint)
    } else {
        Err(GatewayError::MethodNotAllowed)
    }
}

pub fn route(
    listener: ListenerKind,
    method: &Method,
    path: &str,
) -> Result<Endpoint, GatewayError> {
    match (listener, path) {
        (ListenerKind::Federation, "/.well-known/mimi/ds-domain") => {
            get_only(method, Endpoint::DsDomain)
        }
        (ListenerKind::Federation, "/verification_key") => {
            get_or_post(method, Endpoint::VerificationKey)
        }
        (ListenerKind::Application, "/whoami") => get_or_post(method, Endpoint::WhoAmI),
        (ListenerKind::Admin, "/healthz") => get_only(method, Endpoint::Healthz),
        (ListenerKind::Admin, "/readyz") => get_only(method, Endpoint::Readyz),
        (ListenerKind::Admin, "/metrics") => get_only(method, Endpoint::Metrics),
        _ => Err(GatewayError::NotFound),
    }
}
