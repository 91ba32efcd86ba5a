//! `GET|POST /apps/{appId}/clients/{clientId}/keyPackage` (architecture draft, "Key Package
//! Retrieval"): the queue matching (version, suite, label) hands the receiver its assigned
//! package again, else assigns it the unassigned package with the earliest `not_after`, else
//! answers the final key (`is_final_key`), else "queue exhausted". One atomic store step, so
//! no package ever goes to two receivers. A `domain` of another gateway is passed to that
//! gateway's `/group_key_packages` and its answer, checked to name that domain, passed back
//! (`federation::key_packages`).

use mimi_wire::WIRE_VERSION;
use mimi_wire::codec::WireBool;
use mimi_wire::key_queues::{
    MAX_RECEIVER_BYTES, RetrieveKeyPackageRequest, RetrieveKeyPackageResponse,
};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::error::GatewayError;
use crate::state::State;
use crate::store::{KeyQueueAttributes, RetrievedKeyPackage};

use crate::api::app::key_queues::{check_label, retrieve_capped};
use crate::api::{authorize, decode_body};

pub async fn handle(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: RetrieveKeyPackageRequest =
        decode_body(request, |body: &RetrieveKeyPackageRequest| body.version)?;
    let foreign = body
        .domain
        .as_ref()
        .filter(|domain| !state.config.serves(domain));
    let receiver = &body.receiver_client_id;
    if receiver.is_empty() || receiver.len() > MAX_RECEIVER_BYTES {
        return Err(GatewayError::InvalidReceiver(format!(
            "must be 1 to {MAX_RECEIVER_BYTES} bytes"
        )));
    }
    let app_label = body.app_label.unwrap_or_default();
    check_label(&app_label)?;
    let attributes = KeyQueueAttributes {
        protocol_version: body.protocol_version,
        cipher_suite: body.cipher_suite,
        app_label,
    };
    let (bytes, is_final) = match foreign {
        Some(domain) => {
            crate::federation::key_packages::retrieve_from_peer(
                state,
                app,
                domain,
                client,
                &attributes,
                receiver,
            )
            .await?
        }
        None => match retrieve_capped(
            state,
            &crate::api::caller_scope(request),
            app,
            client,
            &attributes,
            receiver,
            crate::keys::unix_now(),
        )
        .await?
        {
            RetrievedKeyPackage::Assigned(bytes) | RetrievedKeyPackage::AssignedBefore(bytes) => {
                (bytes, false)
            }
            RetrievedKeyPackage::FinalKey(bytes) => (bytes, true),
        },
    };
    encoded(&RetrieveKeyPackageResponse {
        version: WIRE_VERSION,
        key_package: VLBytes::new(bytes),
        is_final_key: WireBool(is_final),
    })
}
