//! The replay cache in Redis: one untagged key per (sender, request id), with a TTL.

use std::time::Duration;

use async_trait::async_trait;

use super::RedisStore;
use crate::store::{ReplayCache, StoreError};

/// Records a request id unless present. KEYS[1]: the id's key; ARGV[1]: TTL in seconds.
/// Returns 1 when recorded, 0 when already seen.
pub(super) const RECORD_REQUEST_ID: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
";

fn replay_key(sender: &str, request_id: &[u8; 16]) -> String {
    format!("mimi:replay:{sender}:{}", hex::encode(request_id))
}

#[async_trait]
impl ReplayCache for RedisStore {
    async fn record_request_id(
        &self,
        sender: &str,
        request_id: &[u8; 16],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = replay_key(sender, request_id);
        let ttl_secs = ttl.as_secs().max(1);
        let recorded: i64 = self
            .run(|mut connection| async move {
                self.scripts
                    .record_request_id
                    .key(key)
                    .arg(ttl_secs)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        Ok(recorded == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keys_name_sender_and_id() {
        let key = replay_key("peer:a.example", &[0xab; 16]);
        assert_eq!(
            key,
            format!("mimi:replay:peer:a.example:{}", "ab".repeat(16))
        );
    }
}
