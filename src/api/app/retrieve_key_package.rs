//! `GET|POST /apps/{appId}/clients/{clientId}/keyPackage` (architecture draft, "Key Package
//! Retrieval"): the queue matching (version, suite, label) hands the receiver its assigned
//! package again, else assigns it the unassigned package with the earliest `not_after`, else
//! answers the final key (`is_final_key`), else "queue exhausted". One atomic store step, so
//! no package ever goes to two receivers. A `domain` of another gateway is passed to that
//! gateway's `/group_key_packages` and its answer, checked to name that domain, passed back
//! (`service::remote`).

use mimi_wire::WIRE_VERSION;
use mimi_wire::codec::WireBool;
use mimi_wire::key_queues::{RetrieveKeyPackageRequest, RetrieveKeyPackageResponse};
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request, encoded};
use crate::api::{authorize, caller_scope, decode_body};
use crate::service::key_queues::{KeyQueueAttributes, check_label, check_receiver};
use crate::state::State;

pub async fn handle(state: &State, request: &Request, app: Uuid, client: Uuid) -> Reply {
    authorize(state, request, app)?;
    let body: RetrieveKeyPackageRequest =
        decode_body(request, |body: &RetrieveKeyPackageRequest| body.version)?;
    let attributes = KeyQueueAttributes {
        protocol_version: body.protocol_version,
        cipher_suite: body.cipher_suite,
        app_label: body.app_label.unwrap_or_default(),
    };
    // Checked before the record is taken: a refusal here leaves it to the pipeline, which
    // records and counts it.
    check_receiver(&body.receiver_client_id)?;
    check_label(&attributes.app_label)?;
    let (bytes, is_final) = state
        .services
        .key_queues
        .retrieve(
            caller_scope(request),
            app,
            client,
            body.domain.as_deref(),
            &attributes,
            &body.receiver_client_id,
            request.take_record(),
        )
        .await?;
    encoded(&RetrieveKeyPackageResponse {
        version: WIRE_VERSION,
        key_package: VLBytes::new(bytes),
        is_final_key: WireBool(is_final),
    })
}
