use mimi_wire::groups::UploadCommitRequest;
use tls_codec::VLBytes;
use uuid::Uuid;

use crate::api::reply::{Reply, Request};
use crate::api::{authorize, decode_body, group_epoch_created};
use crate::mls::group::{CommitUpload, GroupInfoUpload, Joining};
use crate::state::State;

pub async fn upload(state: &State, request: &Request, app: Uuid, group_id: &[u8]) -> Reply {
    let application = authorize(state, request, app)?;
    let body: UploadCommitRequest =
        decode_body(request, |body: &UploadCommitRequest| body.version)?;
    let upload = CommitUpload {
        commit: body.commit_packet.as_slice(),
        group_info: body
            .group_info
            .as_ref()
            .map_or(GroupInfoUpload::Absent, |bytes| {
                GroupInfoUpload::Whole(bytes.as_slice())
            }),
        welcome: body.welcome_packet.as_ref().map(VLBytes::as_slice),
        joining: Joining::WelcomeRequired,
        describe: false,
    };
    let epoch = state
        .services
        .groups
        .upload_commit(application, group_id, &upload)
        .await?;
    group_epoch_created(group_id, epoch)
}
