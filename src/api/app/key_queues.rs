//! Key queue management (architecture draft, "Key Queue Creation", "Key Queue Update" and
//! "Key Pool Deletion"):
//!
//! - `POST /apps/{appId}/clients/{clientId}/queues`: at most one queue per (client, version,
//!   suite, label);
//! - `PATCH .../queues/{keyQueueId}`: every package validated first (nothing changes if any
//!   is refused, and the answer names the first bad one), then reset, insert, relabel and
//!   final key in one atomic step; answers the number of packages in the pool;
//! - `DELETE .../queues/{keyQueueId}` (a TODO in the draft): the queue and its packages.

use http::StatusCode;
use mimi_wire::WIRE_VERSION;
use mimi_wire::key_queues::{
    CreateKeyQueueRequest, CreateKeyQueueResponse, UpdateKeyQueueRequest, UpdateKeyQueueResponse,
};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded, octet_stream_response};
use crate::api::{authorize, decode_body};
use crate::service::key_queues::{KeyQueueAttributes, QueueUpload};
use crate::state::State;

pub async fn create(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: CreateKeyQueueRequest =
        decode_body(request, |body: &CreateKeyQueueRequest| body.version)?;
    let attributes = KeyQueueAttributes {
        protocol_version: body.protocol_version,
        cipher_suite: body.cipher_suite,
        app_label: body.app_label,
    };
    let queue = state
        .services
        .key_queues
        .create(app, client, &attributes)
        .await?;
    let mut response = encoded(&CreateKeyQueueResponse {
        version: WIRE_VERSION,
        key_queue_id: *queue.as_bytes(),
    })?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

pub async fn update(
    state: &State,
    request: &Request,
    app: Uuid,
    client: Uuid,
    queue: Uuid,
) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UpdateKeyQueueRequest =
        decode_body(request, |body: &UpdateKeyQueueRequest| body.version)?;
    let upload = QueueUpload {
        reset: body.is_reset.0,
        key_packages: body.key_packages.iter().map(VLBytes::as_slice).collect(),
        app_label: body.app_label,
        final_key: body.final_key.as_ref().map(VLBytes::as_slice),
    };
    let in_pool = state
        .services
        .key_queues
        .update(application, client, queue, upload)
        .await?;
    encoded(&UpdateKeyQueueResponse {
        version: WIRE_VERSION,
        key_packages_in_pool: u32::try_from(in_pool).unwrap_or(u32::MAX),
    })
}

pub async fn delete(
    state: &State,
    request: &Request,
    app: Uuid,
    client: Uuid,
    queue: Uuid,
) -> Reply {
    authorize(state, request, app)?;
    state.services.key_queues.delete(app, client, queue).await?;
    Ok(octet_stream_response(StatusCode::NO_CONTENT, Vec::new()))
}
