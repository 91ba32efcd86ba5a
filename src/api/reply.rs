//! What an endpoint handler takes and gives (the layer between the request pipeline in
//! `service` and the handlers): the request, read and authenticated, and its answer, a
//! TLS-serialized body (MIMI Transport: `application/octet-stream`), a TLS-serialized
//! `ErrorResponse`, or plain text for the well-known and admin documents.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use mimi_wire::{CONTENT_TYPE as OCTET_STREAM, ErrorResponse};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::GatewayError;
use crate::service::key_queues::RequestRecord;
use mimi_wire::signing::SenderKind;

pub type HttpResponse = Response<Full<Bytes>>;
pub type Reply = Result<HttpResponse, GatewayError>;

/// A request as handlers see it: fully read, and authenticated when the endpoint says so.
pub struct Request {
    pub body: Bytes,
    pub caller: Option<Authenticated>,
    /// The caller's replay record and rate count, when the pipeline left them to this
    /// endpoint's store step ([`Endpoint::records_in_its_step`](crate::api::endpoints::Endpoint::records_in_its_step)):
    /// the handler takes it and passes it on; what no step took the pipeline records after.
    pub record: Option<Arc<PendingRecord>>,
}

impl Request {
    /// The record left to this request's store step, once (`None` after the first call).
    pub fn take_record(&self) -> Option<&RequestRecord> {
        self.record.as_deref().and_then(PendingRecord::take)
    }
}

/// A [`RequestRecord`] and whether a store step took it.
pub struct PendingRecord {
    record: RequestRecord,
    taken: AtomicBool,
}

impl PendingRecord {
    pub fn new(record: RequestRecord) -> PendingRecord {
        PendingRecord {
            record,
            taken: AtomicBool::new(false),
        }
    }

    fn take(&self) -> Option<&RequestRecord> {
        (!self.taken.swap(true, Ordering::AcqRel)).then_some(&self.record)
    }

    /// The record, if no step took it (and it is now the caller's to record).
    pub fn left(&self) -> Option<&RequestRecord> {
        self.take()
    }

    /// The caller the record counts.
    pub fn scope(&self) -> &str {
        &self.record.sender
    }
}

pub fn error_response_with(
    code: mimi_wire::ErrorCode,
    detail: String,
    fields: Vec<mimi_wire::ErrorField>,
) -> HttpResponse {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // An ErrorResponse is a u16 and a short string: encoding cannot fail, and if it
    // ever did the status alone still answers.
    let body = mimi_wire::encode(&ErrorResponse {
        code: code.code(),
        detail,
        fields,
    })
    .unwrap_or_default();
    octet_stream_response(status, body)
}

pub fn octet_stream_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    response
}

/// A TLS-serialized 200 answer.
pub fn encoded<T: tls_codec::Serialize>(value: &T) -> Reply {
    let body = mimi_wire::encode(value)
        .map_err(|error| GatewayError::Internal(format!("encoding answer: {error}")))?;
    Ok(octet_stream_response(StatusCode::OK, body))
}

/// A plain-text answer (well-known documents, admin endpoints).
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub sender_kind: SenderKind,
    pub sender: String,
    pub key_id: String,
    /// The caller as the store's replay records and rate counters name it:
    /// `app:<id>` or `peer:<domain>` (one name however the envelope spells the sender).
    pub scope: String,
}
