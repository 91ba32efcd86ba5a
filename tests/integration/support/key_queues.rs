use crate::support::mls_client::MlsClient;
use crate::support::*;
use http::{Method, StatusCode};
use mimi_wire::codec::WireBool;
use mimi_wire::key_queues::{
    CreateKeyQueueRequest, CreateKeyQueueResponse, RetrieveKeyPackageRequest, UpdateKeyQueueRequest,
};
use mimi_wire::{decode_exact, encode};
use tls_codec::VLBytes;
use uuid::Uuid;

/// One client of the harness's application with one key queue.
pub struct QueueFixture<'h> {
    pub harness: &'h Harness,
    pub api: mimi_client::Client,
    pub client: Uuid,
    pub queue: Uuid,
    pub mls: MlsClient,
}

pub async fn register(harness: &Harness, handle: &str) -> Uuid {
    harness
        .app_client()
        .register_client(handle, &[])
        .await
        .unwrap_or_else(|error| panic!("register {handle}: {error}"))
}

impl<'h> QueueFixture<'h> {
    pub async fn new(harness: &'h Harness, handle: &str) -> QueueFixture<'h> {
        let api = harness.app_client();
        let client = api.register_client(handle, &[]).await.unwrap();
        let queue = api.create_key_queue(client, 1, 1, "").await.unwrap();
        QueueFixture {
            harness,
            api,
            client,
            queue,
            mls: MlsClient::basic(handle),
        }
    }

    pub fn path(&self) -> String {
        format!(
            "/apps/{}/clients/{}/queues/{}",
            self.harness.app.id, self.client, self.queue
        )
    }

    pub async fn update(
        &self,
        packages: &[Vec<u8>],
        reset: bool,
        label: Option<&str>,
        final_key: Option<Vec<u8>>,
    ) -> Answer {
        let body = encode(&UpdateKeyQueueRequest {
            version: 1,
            key_packages: packages
                .iter()
                .map(|bytes| VLBytes::new(bytes.clone()))
                .collect(),
            is_reset: WireBool(reset),
            app_label: label.map(str::to_owned),
            final_key: final_key.map(VLBytes::new),
        })
        .unwrap();
        self.harness.call(Method::PATCH, &self.path(), body).await
    }

    /// Uploads and answers the pool size.
    pub async fn upload(&self, packages: &[Vec<u8>]) -> u32 {
        self.api
            .update_key_queue(self.client, self.queue, packages, false, None, None)
            .await
            .unwrap_or_else(|error| panic!("upload: {error}"))
    }

    pub async fn retrieve_with(&self, receiver: &str, label: Option<&str>, suite: u16) -> Answer {
        let body = encode(&RetrieveKeyPackageRequest {
            version: 1,
            domain: None,
            protocol_version: 1,
            cipher_suite: suite,
            app_label: label.map(str::to_owned),
            receiver_client_id: receiver.into(),
        })
        .unwrap();
        let path = format!(
            "/apps/{}/clients/{}/keyPackage",
            self.harness.app.id, self.client
        );
        self.harness.call(Method::POST, &path, body).await
    }

    /// (key package bytes, is final key)
    pub async fn retrieve(&self, receiver: &str) -> (Vec<u8>, bool) {
        let retrieved = self
            .api
            .retrieve_key_package(self.client, None, 1, 1, None, receiver)
            .await
            .unwrap_or_else(|error| panic!("retrieve for {receiver}: {error}"));
        (retrieved.key_package, retrieved.is_final_key)
    }
}

pub async fn create_queue(
    harness: &Harness,
    client: Uuid,
    version: u16,
    suite: u16,
    label: &str,
) -> Answer {
    let body = encode(&CreateKeyQueueRequest {
        version: 1,
        protocol_version: version,
        cipher_suite: suite,
        app_label: label.into(),
    })
    .unwrap();
    harness
        .call(
            Method::POST,
            &format!("/apps/{}/clients/{client}/queues", harness.app.id),
            body,
        )
        .await
}

pub fn queue_id(answer: &Answer) -> Uuid {
    assert_eq!(answer.status, StatusCode::CREATED);
    Uuid::from_bytes(
        decode_exact::<CreateKeyQueueResponse>(&answer.body)
            .unwrap()
            .key_queue_id,
    )
}
