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
    CreateKeyQueueRequest, CreateKeyQueueResponse, MAX_LABEL_BYTES, UpdateKeyQueueRequest,
    UpdateKeyQueueResponse,
};
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded, octet_stream_response};
use crate::error::GatewayError;
use crate::mls::key_package::{self, MLS_10, QueueRules, SUPPORTED_CIPHER_SUITES};
use crate::state::State;
use crate::store::{
    KeyQueueAttributes, KeyQueueError, KeyQueueUpdate, RegistryError, RetrievedKeyPackage,
    StoredKeyPackage,
};

use crate::api::{authorize, decode_body};

/// An application label: at most 255 bytes, no control characters (empty is the default).
pub(crate) fn check_label(label: &str) -> Result<(), GatewayError> {
    if label.len() > MAX_LABEL_BYTES {
        return Err(GatewayError::InvalidLabel(format!(
            "longer than {MAX_LABEL_BYTES} bytes"
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(GatewayError::InvalidLabel(
            "contains a control character".into(),
        ));
    }
    Ok(())
}

pub async fn create(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: CreateKeyQueueRequest =
        decode_body(request, |body: &CreateKeyQueueRequest| body.version)?;
    if body.protocol_version != MLS_10 {
        return Err(GatewayError::UnsupportedProtocolVersion(
            body.protocol_version,
        ));
    }
    if !SUPPORTED_CIPHER_SUITES.contains(&body.cipher_suite) {
        return Err(GatewayError::UnsupportedCipherSuite(body.cipher_suite));
    }
    check_label(&body.app_label)?;
    if state.store.client(app, client).await?.is_none() {
        return Err(GatewayError::Registry(RegistryError::UnknownClient));
    }
    let attributes = KeyQueueAttributes {
        protocol_version: body.protocol_version,
        cipher_suite: body.cipher_suite,
        app_label: body.app_label,
    };
    let queue = Uuid::new_v4();
    state
        .store
        .create_key_queue(app, client, queue, &attributes)
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
    if let Some(label) = &body.app_label {
        check_label(label)?;
    }
    let owner = state
        .store
        .client(app, client)
        .await?
        .ok_or(RegistryError::UnknownClient)?;
    let attributes = state
        .store
        .key_queue(app, client, queue)
        .await?
        .ok_or(KeyQueueError::UnknownQueue)?;
    let rules = |final_key| QueueRules {
        protocol_version: attributes.protocol_version,
        cipher_suite: attributes.cipher_suite,
        max_lifetime_secs: state.config.key_packages.max_lifetime_secs,
        identity: application.identity.as_ref(),
        owner_handle: &owner.handle,
        domain: &state.config.domain,
        final_key,
    };
    let ordinary = rules(false);
    let mut packages = Vec::with_capacity(body.key_packages.len());
    for (index, bytes) in body.key_packages.iter().enumerate() {
        let valid = key_package::validate(bytes.as_slice(), &ordinary).map_err(|error| {
            GatewayError::KeyPackage {
                index: Some(index),
                error,
            }
        })?;
        packages.push(StoredKeyPackage {
            reference: valid.reference,
            not_after: valid.not_after,
            bytes: valid.bytes,
        });
    }
    let final_key = match &body.final_key {
        Some(bytes) => {
            let valid = key_package::validate(bytes.as_slice(), &rules(true))
                .map_err(|error| GatewayError::KeyPackage { index: None, error })?;
            Some(StoredKeyPackage {
                reference: valid.reference,
                not_after: valid.not_after,
                bytes: valid.bytes,
            })
        }
        None => None,
    };
    let update = KeyQueueUpdate {
        reset: body.is_reset.0,
        packages,
        app_label: body.app_label,
        final_key,
    };
    let in_pool = state
        .store
        .update_key_queue(
            app,
            client,
            queue,
            &update,
            crate::keys::unix_now(),
            state.config.key_packages.max_per_queue,
        )
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
    if !state.store.delete_key_queue(app, client, queue).await? {
        return Err(GatewayError::KeyQueue(KeyQueueError::UnknownQueue));
    }
    Ok(octet_stream_response(StatusCode::NO_CONTENT, Vec::new()))
}

/// The draft's retrieval for `receiver` on behalf of the caller `scope` (`app:<id>`,
/// `peer:<domain>`), under the caps on fresh assignments
/// (`rate_limits.fresh_key_packages_per_receiver` and `_per_caller`): past either, only the
/// package assigned to the receiver before and final keys are served, else `Withheld` with
/// the seconds until the window ends.
pub(crate) async fn retrieve_capped(
    state: &State,
    scope: &str,
    app: Uuid,
    client: Uuid,
    attributes: &KeyQueueAttributes,
    receiver: &str,
    now: u64,
) -> Result<RetrievedKeyPackage, KeyQueueError> {
    let limits = &state.caller_limits;
    let fresh = limits.may_assign_fresh(scope, receiver, now);
    let retrieved = state
        .store
        .retrieve_key_package(app, client, attributes, receiver, now, fresh)
        .await;
    match &retrieved {
        Ok(RetrievedKeyPackage::Assigned(_)) => {
            // The package is assigned already: a failed count must not lose it.
            if let Err(error) = limits
                .count_fresh(state.store.as_ref(), scope, receiver, now)
                .await
            {
                tracing::warn!(%error, "could not count a fresh key-package assignment");
            }
        }
        Err(KeyQueueError::Withheld { .. }) => {
            state
                .metrics
                .count_rate_limited(scope, "fresh_key_packages", "fresh_withheld");
            return Err(KeyQueueError::Withheld {
                retry_after_secs: limits.fresh_retry_after(now),
            });
        }
        _ => {}
    }
    retrieved
}
