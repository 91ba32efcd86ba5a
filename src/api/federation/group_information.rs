//! `GET|POST /external_commit_information` and `GET|POST /welcome_information` (MIMI
//! Transport; DS draft "DS assisted joining"): the hub answers a follower the GroupInfo and
//! ratchet tree of a group's current epoch, or the tree of the epoch a Welcome brings its
//! recipients into. Only a peer with members in the group may ask (the hub keeps each
//! welcome's tree until its recipients acknowledge it or it expires).

use mimi_wire::DecodeError;
use mimi_wire::ds::{DSRequestBody, DSResponseBody, ExternalCommitInfo, MlsMessage, RatchetTree};

use crate::api::reply::{Reply, Request};
use crate::api::{decode_ds_request, ds_response, peer};
use crate::error::GatewayError;
use crate::state::State;

fn malformed_store_value(what: &str) -> GatewayError {
    GatewayError::Internal(format!("stored {what} does not decode"))
}

pub async fn external_commit(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let DSRequestBody::ExternalCommitInfo(asked) = decode_ds_request(request)? else {
        return Err(DecodeError::Malformed("not an external commit info request".into()).into());
    };
    let (group_info, ratchet_tree) = state
        .services
        .groups
        .external_commit_info(peer, asked.group_id.as_slice())
        .await?;
    ds_response(DSResponseBody::ExternalCommitInfo(ExternalCommitInfo {
        group_info: MlsMessage::from_bytes(group_info)
            .map_err(|_| malformed_store_value("group info"))?,
        ratchet_tree: RatchetTree::from_bytes(ratchet_tree)
            .map_err(|_| malformed_store_value("ratchet tree"))?,
    }))
}

pub async fn welcome(state: &State, request: &Request) -> Reply {
    let peer = peer(request)?;
    let DSRequestBody::WelcomeInfo(asked) = decode_ds_request(request)? else {
        return Err(DecodeError::Malformed("not a welcome info request".into()).into());
    };
    let ratchet_tree = state
        .services
        .groups
        .welcome_info(peer, asked.group_id.as_slice(), asked.epoch)
        .await?;
    ds_response(DSResponseBody::WelcomeInfo(
        RatchetTree::from_bytes(ratchet_tree).map_err(|_| malformed_store_value("ratchet tree"))?,
    ))
}
