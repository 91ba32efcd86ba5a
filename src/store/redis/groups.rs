//! Group state in Redis: TO BE WRITTEN (placeholder while the handlers are built).

use async_trait::async_trait;
use uuid::Uuid;

use super::RedisStore;
use crate::store::{
    CommitRecord, CurrentGroupInfo, GroupHead, GroupStoreError, Groups, HeldProposal, NewGroup,
    PendingWelcome, StoreError, StoredGroup,
};

#[async_trait]
impl Groups for RedisStore {
    async fn create_group(&self, _app: Uuid, _group: &NewGroup) -> Result<(), GroupStoreError> {
        todo!()
    }
    async fn group_head(&self, _app: Uuid, _g: &[u8]) -> Result<Option<GroupHead>, StoreError> {
        todo!()
    }
    async fn load_group(&self, _app: Uuid, _g: &[u8]) -> Result<Option<StoredGroup>, StoreError> {
        todo!()
    }
    async fn add_proposal(
        &self,
        _app: Uuid,
        _g: &[u8],
        _epoch: u64,
        _p: &HeldProposal,
    ) -> Result<usize, GroupStoreError> {
        todo!()
    }
    async fn proposals(&self, _app: Uuid, _g: &[u8]) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        todo!()
    }
    async fn apply_commit(
        &self,
        _app: Uuid,
        _g: &[u8],
        _c: &CommitRecord,
    ) -> Result<u64, GroupStoreError> {
        todo!()
    }
    async fn control_messages(
        &self,
        _app: Uuid,
        _g: &[u8],
        _s: u64,
        _e: Option<u64>,
    ) -> Result<Vec<Vec<u8>>, GroupStoreError> {
        todo!()
    }
    async fn current_group_info(
        &self,
        _app: Uuid,
        _g: &[u8],
    ) -> Result<Option<CurrentGroupInfo>, StoreError> {
        todo!()
    }
    async fn welcomes(
        &self,
        _app: Uuid,
        _h: &str,
        _now: u64,
    ) -> Result<Vec<PendingWelcome>, StoreError> {
        todo!()
    }
    async fn acknowledge_welcome(
        &self,
        _app: Uuid,
        _h: &str,
        _w: Uuid,
    ) -> Result<bool, StoreError> {
        todo!()
    }
}
