//! The endpoints (MIMI Transport, "Endpoints"; architecture draft, "REST API"): one module per
//! endpoint or endpoint family, under `app/` for the application API and `federation/` for the
//! gateway-to-gateway API; `dispatch` sends a routed, read and authenticated request there.
//! An endpoint decodes, authorizes, calls a service and encodes; it never reaches the store.

mod admin;
mod app;
pub(crate) mod endpoints;
pub(crate) mod error;
mod federation;
pub(crate) mod reply;

use mimi_wire::DecodeError;
use mimi_wire::codec::{check_version, decode_exact};
use tls_codec::Deserialize;
use uuid::Uuid;

use crate::api::endpoints::Endpoint;
use crate::api::reply::{Reply, Request};
use crate::error::GatewayError;
use crate::service::applications::Application;
use crate::state::State;

/// Each handler's future is boxed: this function's own future, spawned per request, is then
/// the size of one pointer whatever the largest handler holds, instead of being moved (and
/// copied) whole into every request's task (issue 17: copying it was 28% of the gateway's
/// CPU on the well-known path).
pub async fn dispatch(state: &State, endpoint: Endpoint, request: Request) -> Reply {
    match endpoint {
        Endpoint::DsDomain => federation::ds_domain::handle(state),
        Endpoint::VerificationKey => federation::verification_key::handle(state, &request),
        Endpoint::WhoAmI => app::whoami::handle(&request),
        Endpoint::ListApplications => app::applications::handle(state),
        Endpoint::RegisterClient { app } => {
            Box::pin(app::register_client::handle(state, &request, app)).await
        }
        Endpoint::DiscoverClients { app } => {
            Box::pin(app::discover_clients::handle(state, &request, app)).await
        }
        Endpoint::ReadClient { app, client } => {
            Box::pin(app::client::read(state, &request, app, client)).await
        }
        Endpoint::UpdateClient { app, client } => {
            Box::pin(app::update_client::handle(state, &request, app, client)).await
        }
        Endpoint::DeleteClient { app, client } => {
            Box::pin(app::client::delete(state, &request, app, client)).await
        }
        Endpoint::CreateKeyQueue { app, client } => {
            Box::pin(app::key_queues::create(state, &request, app, client)).await
        }
        Endpoint::UpdateKeyQueue { app, client, queue } => {
            Box::pin(app::key_queues::update(state, &request, app, client, queue)).await
        }
        Endpoint::DeleteKeyQueue { app, client, queue } => {
            Box::pin(app::key_queues::delete(state, &request, app, client, queue)).await
        }
        Endpoint::RetrieveKeyPackage { app, client } => {
            Box::pin(app::retrieve_key_package::handle(
                state, &request, app, client,
            ))
            .await
        }
        Endpoint::CreateGroup { app } => {
            Box::pin(app::create_group::handle(state, &request, app)).await
        }
        Endpoint::UploadProposal { app, group } => {
            Box::pin(app::proposals::upload(state, &request, app, &group)).await
        }
        Endpoint::ListProposals { app, group } => {
            Box::pin(app::proposals::list(state, &request, app, &group)).await
        }
        Endpoint::UploadCommit { app, group } => {
            Box::pin(app::commits::upload(state, &request, app, &group)).await
        }
        Endpoint::ControlMessages { app, group } => {
            Box::pin(app::control_messages::handle(state, &request, app, &group)).await
        }
        Endpoint::GroupInfo { app, group } => {
            Box::pin(app::group_info::handle(state, &request, app, &group)).await
        }
        Endpoint::GroupStatus { app, group } => {
            Box::pin(app::group_info::status(state, &request, app, &group)).await
        }
        Endpoint::WelcomeMessages { app, handle } => {
            Box::pin(app::welcomes::list(state, &request, app, &handle)).await
        }
        Endpoint::AcknowledgeWelcome {
            app,
            handle,
            welcome,
        } => {
            Box::pin(app::welcomes::acknowledge(
                state, &request, app, &handle, welcome,
            ))
            .await
        }
        Endpoint::SendGroupMessage { app, group } => {
            Box::pin(app::messages::send(state, &request, app, &group)).await
        }
        Endpoint::FetchMessages { app, handle } => {
            Box::pin(app::messages::fetch(state, &request, app, &handle)).await
        }
        Endpoint::AcknowledgeMessages { app, handle } => {
            Box::pin(app::messages::acknowledge(state, &request, app, &handle)).await
        }
        Endpoint::SendConnectionRequest { app } => {
            Box::pin(app::connection_requests::send(state, &request, app)).await
        }
        Endpoint::ConnectionRequest => {
            Box::pin(federation::connection_request::receive(state, &request)).await
        }
        Endpoint::ConnectionKeyPackages => {
            Box::pin(federation::connection_key_packages::for_peer(
                state, &request,
            ))
            .await
        }
        Endpoint::RetrieveConnectionKeyPackages { app } => {
            Box::pin(app::connection_key_packages::for_application(
                state, &request, app,
            ))
            .await
        }
        Endpoint::DeliverMessage => {
            Box::pin(federation::deliver_message::handle(state, &request)).await
        }
        Endpoint::ExternalCommitInformation => {
            Box::pin(federation::group_information::external_commit(
                state, &request,
            ))
            .await
        }
        Endpoint::WelcomeInformation => {
            Box::pin(federation::group_information::welcome(state, &request)).await
        }
        Endpoint::GroupKeyPackages => {
            Box::pin(federation::group_key_packages::key_packages(
                state, &request,
            ))
            .await
        }
        Endpoint::FederatedDiscovery => {
            Box::pin(federation::group_key_packages::discover(state, &request)).await
        }
        Endpoint::GroupOperation => {
            Box::pin(federation::group_operation::handle(state, &request)).await
        }
        Endpoint::Healthz => Ok(admin::healthz()),
        Endpoint::Readyz => Ok(Box::pin(admin::readyz(state)).await),
        Endpoint::Metrics => Ok(admin::metrics(state)),
        Endpoint::AdminPeers => Ok(admin::peers(state)),
        Endpoint::AdminRetryPeer { peer } => Ok(admin::retry_peer(state, &peer)),
        Endpoint::AdminGroup { group } => Box::pin(admin::group(state, &group)).await,
    }
}

/// The application named in the path, which must be the one that signed the request
/// (architecture draft, "Security Considerations": an application only touches its own data).
fn authorize<'s>(
    state: &'s State,
    request: &Request,
    app: Uuid,
) -> Result<&'s Application, GatewayError> {
    let application = state
        .applications
        .get(&app)
        .ok_or(GatewayError::UnknownApplication)?;
    let caller = request
        .caller
        .as_ref()
        .ok_or_else(|| GatewayError::Internal("unauthenticated request".into()))?;
    if caller.sender != app.to_string() {
        return Err(GatewayError::Forbidden(format!(
            "application {} asked for {app}",
            caller.sender
        )));
    }
    Ok(application)
}

/// The body of a `DSRequest` of this protocol version (the federation endpoints that take
/// one: `docs/federation-wire.md`).
fn decode_ds_request(request: &Request) -> Result<mimi_wire::ds::DSRequestBody, GatewayError> {
    Ok(decode_ds_request_with_auth(request)?.0)
}

/// As [`decode_ds_request`], with the request's `DSAuthData`.
fn decode_ds_request_with_auth(
    request: &Request,
) -> Result<(mimi_wire::ds::DSRequestBody, mimi_wire::ds::DSAuthData), GatewayError> {
    let ds: mimi_wire::ds::DSRequest = decode_exact(&request.body)?;
    mimi_wire::ds::check_version(ds.version)?;
    Ok((ds.body, ds.auth))
}

/// A `DSResponse` of this protocol version.
fn ds_response(body: mimi_wire::ds::DSResponseBody) -> Reply {
    crate::api::reply::encoded(&mimi_wire::ds::DSResponse {
        version: mimi_wire::ds::DS_PROTOCOL_VERSION,
        body,
    })
}

/// `201 Created` with a `GroupEpochResponse`: the group and the epoch a request left it at
/// (or, for a proposal or message, the epoch it belongs to).
fn group_epoch_created(group_id: &[u8], epoch: u64) -> Reply {
    let mut response = crate::api::reply::encoded(&mimi_wire::groups::GroupEpochResponse {
        version: mimi_wire::WIRE_VERSION,
        group_id: tls_codec::VLBytes::new(group_id.to_vec()),
        epoch,
    })?;
    *response.status_mut() = http::StatusCode::CREATED;
    Ok(response)
}

/// The authenticated caller as rate limits count it (`app:<id>`, `peer:<domain>`).
fn caller_scope(request: &Request) -> &str {
    request
        .caller
        .as_ref()
        .map_or("", |caller| caller.scope.as_str())
}

/// The peer domain that signed a federation request.
fn peer(request: &Request) -> Result<&str, GatewayError> {
    request
        .caller
        .as_ref()
        .filter(|caller| caller.sender_kind == mimi_wire::signing::SenderKind::Provider)
        .map(|caller| caller.sender.as_str())
        .ok_or_else(|| GatewayError::Internal("federation request without a peer".into()))
}

/// Decodes a versioned request body exactly.
fn decode_body<T: Deserialize>(
    request: &Request,
    version: impl Fn(&T) -> u16,
) -> Result<T, GatewayError> {
    let body: T = decode_exact(&request.body)?;
    check_version(version(&body)).map_err(|error: DecodeError| GatewayError::Decode(error))?;
    Ok(body)
}
