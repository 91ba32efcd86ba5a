//! Which endpoint a request is for, on which listener, and who must have signed it.
//!
//! DESIGN.md "Two interfaces and an admin port": the application listener serves the
//! operator's application servers, the federation listener serves peers and the MIMI
//! Transport endpoints, the admin listener serves operators.

use crate::rate_limits::RateClass;
use http::Method;
use mimi_wire::signing::SenderKind;
use uuid::Uuid;

use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Application,
    Federation,
    Admin,
}

impl ListenerKind {
    pub fn name(&self) -> &'static str {
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /.well-known/mimi/ds-domain` (MIMI Transport, "Endpoint Discovery").
    DsDomain,
    /// `GET|POST /verification_key` (MIMI Transport, "Verification Key").
    VerificationKey,
    /// `GET|POST /whoami`: this gateway's extension to check a signed request end to end.
    WhoAmI,
    /// `GET /apps` ("Applications").
    ListApplications,
    /// `POST /apps/{appId}/clients` ("Identity Registration").
    RegisterClient {
        app: Uuid,
    },
    /// `GET /apps/{appId}/clients`, or `POST` with the query `?discover` ("Client Discovery").
    DiscoverClients {
        app: Uuid,
    },
    /// `GET /apps/{appId}/clients/{clientId}` ("Identity Retrieval").
    ReadClient {
        app: Uuid,
        client: Uuid,
    },
    /// `PATCH /apps/{appId}/clients/{clientId}` ("Identity Registration").
    UpdateClient {
        app: Uuid,
        client: Uuid,
    },
    /// `DELETE /apps/{appId}/clients/{clientId}` ("Identity Deletion").
    DeleteClient {
        app: Uuid,
        client: Uuid,
    },
    /// `POST /apps/{appId}/clients/{clientId}/queues` ("Key Queue Creation").
    CreateKeyQueue {
        app: Uuid,
        client: Uuid,
    },
    /// `PATCH /apps/{appId}/clients/{clientId}/queues/{keyQueueId}` ("Key Queue Update").
    UpdateKeyQueue {
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    },
    /// `DELETE /apps/{appId}/clients/{clientId}/queues/{keyQueueId}` ("Key Pool Deletion").
    DeleteKeyQueue {
        app: Uuid,
        client: Uuid,
        queue: Uuid,
    },
    /// `GET|POST /apps/{appId}/clients/{clientId}/keyPackage` ("Key Package Retrieval").
    RetrieveKeyPackage {
        app: Uuid,
        client: Uuid,
    },
    /// `PUT /apps/{appId}/groups` ("Group Creation").
    CreateGroup {
        app: Uuid,
    },
    /// `PUT /apps/{appId}/groups/{groupId}/proposals` ("Proposals").
    UploadProposal {
        app: Uuid,
        group: Vec<u8>,
    },
    /// `GET /apps/{appId}/groups/{groupId}/proposals` ("Proposals").
    ListProposals {
        app: Uuid,
        group: Vec<u8>,
    },
    /// `PUT /apps/{appId}/groups/{groupId}/epochs` ("Commits").
    UploadCommit {
        app: Uuid,
        group: Vec<u8>,
    },
    /// `GET|POST /apps/{appId}/groups/{groupId}/control-msgs` ("Commits").
    ControlMessages {
        app: Uuid,
        group: Vec<u8>,
    },
    /// `GET /apps/{appId}/groups/{groupId}/group-info` ("Joining").
    GroupInfo {
        app: Uuid,
        group: Vec<u8>,
    },
    /// `GET /apps/{appId}/groups/{groupId}` (ours): epoch, hub, role, members.
    GroupStatus {
        app: Uuid,
        group: Vec<u8>,
    },
    /// `GET /apps/{appId}/clients/{clientHandle}/welcome-msgs` ("Joining").
    WelcomeMessages {
        app: Uuid,
        handle: String,
    },
    /// `DELETE /apps/{appId}/clients/{clientHandle}/welcome-msgs/{welcomeId}`: this gateway's
    /// answer to the draft's TODO on downloading welcomes repeatedly.
    AcknowledgeWelcome {
        app: Uuid,
        handle: String,
        welcome: Uuid,
    },
    /// `POST /apps/{appId}/groups/{groupId}/messages`: an application message for every
    /// member ("Group Messaging"; issue 7).
    SendGroupMessage {
        app: Uuid,
        group: Vec<u8>,
    },
    /// `GET|POST /apps/{appId}/clients/{clientHandle}/messages`: the client's message queue.
    FetchMessages {
        app: Uuid,
        handle: String,
    },
    /// `POST /apps/{appId}/clients/{clientHandle}/messages/acknowledge`.
    AcknowledgeMessages {
        app: Uuid,
        handle: String,
    },
    /// `POST /apps/{appId}/connection-requests`: a connection request for a client here or
    /// at another gateway.
    SendConnectionRequest {
        app: Uuid,
    },
    /// `POST /connection_request` (MIMI Transport): a peer's `QueueingServiceRequest`.
    ConnectionRequest,
    /// `POST /apps/{appId}/connection-key-packages`: an account's connection key packages.
    RetrieveConnectionKeyPackages {
        app: Uuid,
    },
    /// `POST /connection_key_packages` (MIMI Transport): a peer's
    /// `ConnectionKeyPackagesRequest`.
    ConnectionKeyPackages,
    /// `POST /deliver_message` (MIMI Transport): a hub's `DSFanoutRequest`.
    DeliverMessage,
    /// `GET|POST /welcome_information` (MIMI Transport): the ratchet tree a Welcome needs.
    WelcomeInformation,
    /// `GET|POST /external_commit_information` (MIMI Transport): GroupInfo and tree.
    ExternalCommitInformation,
    /// `POST /group_key_packages` (MIMI Transport): key packages of this gateway's clients.
    GroupKeyPackages,
    /// `POST /discover_clients`: client discovery by tag for a peer (this gateway's
    /// extension; the transport draft names contact discovery as a MIMI component).
    FederatedDiscovery,
    /// `POST /group_operation` (MIMI Transport): a peer's `DSRequest` for a group hosted here.
    GroupOperation,
    Healthz,
    Readyz,
    Metrics,
    /// `GET /admin/peers`: each peer's delivery state (JSON, for operators' tools).
    AdminPeers,
    /// `POST /admin/peers/{domain}/retry`: ends the peer's backoff at once.
    AdminRetryPeer {
        peer: String,
    },
    /// `GET /admin/groups/{groupId}`: a group's state here (JSON).
    AdminGroup {
        group: Vec<u8>,
    },
}

impl Endpoint {
    /// The class of caller limits the endpoint counts in (`rate_limits.read`, `.write`,
    /// `.key_packages`); `None` for endpoints that need no signature.
    pub fn rate_class(&self) -> Option<RateClass> {
        if !self.requires_signature() {
            return None;
        }
        Some(match self {
            Endpoint::RetrieveKeyPackage { .. }
            | Endpoint::RetrieveConnectionKeyPackages { .. }
            | Endpoint::ConnectionKeyPackages
            | Endpoint::GroupKeyPackages => RateClass::KeyPackages,
            Endpoint::WhoAmI
            | Endpoint::ListApplications
            | Endpoint::DiscoverClients { .. }
            | Endpoint::ReadClient { .. }
            | Endpoint::ListProposals { .. }
            | Endpoint::ControlMessages { .. }
            | Endpoint::GroupInfo { .. }
            | Endpoint::GroupStatus { .. }
            | Endpoint::WelcomeMessages { .. }
            | Endpoint::FetchMessages { .. }
            | Endpoint::WelcomeInformation
            | Endpoint::ExternalCommitInformation
            | Endpoint::FederatedDiscovery => RateClass::Read,
            _ => RateClass::Write,
        })
    }

    /// The endpoint's label in metrics and logs (bounded: never the raw path).
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::DsDomain => "ds_domain",
            Endpoint::VerificationKey => "verification_key",
            Endpoint::WhoAmI => "whoami",
            Endpoint::ListApplications => "list_applications",
            Endpoint::RegisterClient { .. } => "register_client",
            Endpoint::DiscoverClients { .. } => "discover_clients",
            Endpoint::ReadClient { .. } => "read_client",
            Endpoint::UpdateClient { .. } => "update_client",
            Endpoint::DeleteClient { .. } => "delete_client",
            Endpoint::CreateKeyQueue { .. } => "create_key_queue",
            Endpoint::UpdateKeyQueue { .. } => "update_key_queue",
            Endpoint::DeleteKeyQueue { .. } => "delete_key_queue",
            Endpoint::RetrieveKeyPackage { .. } => "retrieve_key_package",
            Endpoint::CreateGroup { .. } => "create_group",
            Endpoint::UploadProposal { .. } => "upload_proposal",
            Endpoint::ListProposals { .. } => "list_proposals",
            Endpoint::UploadCommit { .. } => "upload_commit",
            Endpoint::ControlMessages { .. } => "control_messages",
            Endpoint::GroupInfo { .. } => "group_info",
            Endpoint::GroupStatus { .. } => "group_status",
            Endpoint::WelcomeMessages { .. } => "welcome_messages",
            Endpoint::AcknowledgeWelcome { .. } => "acknowledge_welcome",
            Endpoint::SendGroupMessage { .. } => "send_group_message",
            Endpoint::FetchMessages { .. } => "fetch_messages",
            Endpoint::AcknowledgeMessages { .. } => "acknowledge_messages",
            Endpoint::SendConnectionRequest { .. } => "send_connection_request",
            Endpoint::ConnectionRequest => "connection_request",
            Endpoint::RetrieveConnectionKeyPackages { .. } => "retrieve_connection_key_packages",
            Endpoint::ConnectionKeyPackages => "connection_key_packages",
            Endpoint::DeliverMessage => "deliver_message",
            Endpoint::WelcomeInformation => "welcome_information",
            Endpoint::ExternalCommitInformation => "external_commit_information",
            Endpoint::GroupKeyPackages => "group_key_packages",
            Endpoint::FederatedDiscovery => "federated_discovery",
            Endpoint::GroupOperation => "group_operation",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Metrics => "metrics",
            Endpoint::AdminPeers => "admin_peers",
            Endpoint::AdminRetryPeer { .. } => "admin_retry_peer",
            Endpoint::AdminGroup { .. } => "admin_group",
        }
    }

    /// Whether the endpoint's store step records the request's id and counts it
    /// (`store::RequestRecord`) instead of the pipeline before it: one round trip for both
    /// (issue 17). Only key-package retrieval, the hot path of the key-package class.
    pub fn records_in_its_step(&self) -> bool {
        matches!(self, Endpoint::RetrieveKeyPackage { .. })
    }

    /// Whether the request must carry a valid signed-request envelope: every endpoint but
    /// the discovery ones (how peers bootstrap) and the admin ones (loopback, no user data).
    /// Secure by default: a new endpoint is signed unless listed here.
    pub fn requires_signature(&self) -> bool {
        !matches!(
            self,
            Endpoint::DsDomain
                | Endpoint::VerificationKey
                | Endpoint::Healthz
                | Endpoint::Readyz
                | Endpoint::Metrics
                | Endpoint::AdminPeers
                | Endpoint::AdminRetryPeer { .. }
                | Endpoint::AdminGroup { .. }
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

fn post_only(method: &Method, endpoint: Endpoint) -> Result<Endpoint, GatewayError> {
    if method == Method::POST {
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

/// A group id path segment: lowercase hex of 1 to 255 bytes.
fn path_group(segment: &str) -> Result<Vec<u8>, GatewayError> {
    mimi_wire::groups::group_id_from_path(segment).ok_or(GatewayError::MalformedPath)
}

/// A client handle path segment, percent-decoded (handles may hold `/`, `@`, `:`...).
fn path_handle(segment: &str) -> Result<String, GatewayError> {
    let handle = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| GatewayError::MalformedPath)?;
    // The rules of handles in bodies: 1-255 bytes of UTF-8 without control characters.
    mimi_wire::registry::check_handle(&handle).map_err(|_| GatewayError::MalformedPath)?;
    Ok(handle.into_owned())
}

/// A UUID path segment, in any form `uuid` parses (hyphenated as the API answers them).
fn path_id(segment: &str) -> Result<Uuid, GatewayError> {
    Uuid::try_parse(segment).map_err(|_| GatewayError::MalformedPath)
}

pub fn route(
    listener: ListenerKind,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Endpoint, GatewayError> {
    match listener {
        ListenerKind::Federation => match path {
            "/.well-known/mimi/ds-domain" => get_only(method, Endpoint::DsDomain),
            "/verification_key" => get_or_post(method, Endpoint::VerificationKey),
            "/whoami" => get_or_post(method, Endpoint::WhoAmI),
            "/deliver_message" => post_only(method, Endpoint::DeliverMessage),
            "/welcome_information" => get_or_post(method, Endpoint::WelcomeInformation),
            "/external_commit_information" => {
                get_or_post(method, Endpoint::ExternalCommitInformation)
            }
            "/group_key_packages" => post_only(method, Endpoint::GroupKeyPackages),
            "/discover_clients" => post_only(method, Endpoint::FederatedDiscovery),
            "/group_operation" => post_only(method, Endpoint::GroupOperation),
            "/connection_request" => post_only(method, Endpoint::ConnectionRequest),
            "/connection_key_packages" => post_only(method, Endpoint::ConnectionKeyPackages),
            _ => Err(GatewayError::NotFound),
        },
        ListenerKind::Admin => match path {
            "/healthz" => get_only(method, Endpoint::Healthz),
            "/readyz" => get_only(method, Endpoint::Readyz),
            "/metrics" => get_only(method, Endpoint::Metrics),
            "/admin/peers" => get_only(method, Endpoint::AdminPeers),
            _ => match path.split('/').collect::<Vec<_>>().as_slice() {
                ["", "admin", "peers", peer, "retry"] => post_only(
                    method,
                    Endpoint::AdminRetryPeer {
                        peer: (*peer).to_owned(),
                    },
                ),
                ["", "admin", "groups", group] => get_only(
                    method,
                    Endpoint::AdminGroup {
                        group: path_group(group)?,
                    },
                ),
                _ => Err(GatewayError::NotFound),
            },
        },
        ListenerKind::Application => route_application(method, path, query),
    }
}

fn route_application(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Endpoint, GatewayError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    match segments.as_slice() {
        ["whoami"] => get_or_post(method, Endpoint::WhoAmI),
        ["apps"] => get_only(method, Endpoint::ListApplications),
        ["apps", app, "clients"] => {
            let app = path_id(app)?;
            // Proxies may drop GET bodies, so discovery is also POST with `?discover`;
            // a plain POST on the collection registers a client.
            let discover =
                query.is_some_and(|query| query.split('&').any(|part| part == "discover"));
            match *method {
                Method::GET => Ok(Endpoint::DiscoverClients { app }),
                Method::POST if discover => Ok(Endpoint::DiscoverClients { app }),
                Method::POST => Ok(Endpoint::RegisterClient { app }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "clients", client] => {
            let (app, client) = (path_id(app)?, path_id(client)?);
            match *method {
                Method::GET => Ok(Endpoint::ReadClient { app, client }),
                Method::PATCH => Ok(Endpoint::UpdateClient { app, client }),
                Method::DELETE => Ok(Endpoint::DeleteClient { app, client }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "clients", client, "queues"] => {
            let (app, client) = (path_id(app)?, path_id(client)?);
            match *method {
                Method::POST => Ok(Endpoint::CreateKeyQueue { app, client }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "clients", client, "queues", queue] => {
            let (app, client, queue) = (path_id(app)?, path_id(client)?, path_id(queue)?);
            match *method {
                Method::PATCH => Ok(Endpoint::UpdateKeyQueue { app, client, queue }),
                Method::DELETE => Ok(Endpoint::DeleteKeyQueue { app, client, queue }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "groups"] => {
            let app = path_id(app)?;
            match *method {
                Method::PUT => Ok(Endpoint::CreateGroup { app }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "groups", group] => {
            let (app, group) = (path_id(app)?, path_group(group)?);
            get_only(method, Endpoint::GroupStatus { app, group })
        }
        ["apps", app, "groups", group, "proposals"] => {
            let (app, group) = (path_id(app)?, path_group(group)?);
            match *method {
                Method::PUT => Ok(Endpoint::UploadProposal { app, group }),
                Method::GET => Ok(Endpoint::ListProposals { app, group }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "groups", group, "epochs"] => {
            let (app, group) = (path_id(app)?, path_group(group)?);
            match *method {
                Method::PUT => Ok(Endpoint::UploadCommit { app, group }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "groups", group, "messages"] => {
            let (app, group) = (path_id(app)?, path_group(group)?);
            post_only(method, Endpoint::SendGroupMessage { app, group })
        }
        ["apps", app, "clients", handle, "messages"] => {
            let (app, handle) = (path_id(app)?, path_handle(handle)?);
            get_or_post(method, Endpoint::FetchMessages { app, handle })
        }
        ["apps", app, "clients", handle, "messages", "acknowledge"] => {
            let (app, handle) = (path_id(app)?, path_handle(handle)?);
            post_only(method, Endpoint::AcknowledgeMessages { app, handle })
        }
        ["apps", app, "connection-key-packages"] => {
            let app = path_id(app)?;
            post_only(method, Endpoint::RetrieveConnectionKeyPackages { app })
        }
        ["apps", app, "connection-requests"] => {
            let app = path_id(app)?;
            post_only(method, Endpoint::SendConnectionRequest { app })
        }
        ["apps", app, "groups", group, "control-msgs"] => {
            let (app, group) = (path_id(app)?, path_group(group)?);
            get_or_post(method, Endpoint::ControlMessages { app, group })
        }
        ["apps", app, "groups", group, "group-info"] => {
            let (app, group) = (path_id(app)?, path_group(group)?);
            get_only(method, Endpoint::GroupInfo { app, group })
        }
        ["apps", app, "clients", handle, "welcome-msgs"] => {
            let (app, handle) = (path_id(app)?, path_handle(handle)?);
            get_only(method, Endpoint::WelcomeMessages { app, handle })
        }
        ["apps", app, "clients", handle, "welcome-msgs", welcome] => {
            let (app, handle, welcome) = (path_id(app)?, path_handle(handle)?, path_id(welcome)?);
            match *method {
                Method::DELETE => Ok(Endpoint::AcknowledgeWelcome {
                    app,
                    handle,
                    welcome,
                }),
                _ => Err(GatewayError::MethodNotAllowed),
            }
        }
        ["apps", app, "clients", client, "keyPackage"] => {
            let (app, client) = (path_id(app)?, path_id(client)?);
            get_or_post(method, Endpoint::RetrieveKeyPackage { app, client })
        }
        _ => Err(GatewayError::NotFound),
    }
}
