//! `PUT /apps/{appId}/groups/{groupId}/epochs` (architecture draft, "Commits"; DESIGN.md
//! "Ordering commits: exactly one winner per epoch").
//!
//! The commit is validated against the group's current epoch as a member would (openmls'
//! `PublicGroup`, without group secrets): proposals by reference must be held, added key
//! packages are checked like queue uploads, a commit with Adds needs a Welcome addressed to
//! exactly the added key packages, and an uploaded GroupInfo must describe the new epoch.
//! The store then applies it as one compare-and-set on the epoch: of concurrent commits for
//! one epoch exactly one wins, the others get "stale epoch" with the current epoch.
//!
//! `service::groups::Groups::accept_commit` is the hub's one way to apply a commit: for its own applications here, and for
//! the commits followers forward (`POST /group_operation`, the delivery-service draft's
//! operations). A commit for a group mirrored from another hub is forwarded there
//! (`service::forward`).

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
