//! `GET|POST /whoami` (this gateway's extension): echoes who a signed request authenticated
//! as. Operators and application developers use it to check keys and clocks end to end.
//!
//! ```text
//! struct {
//!     uint16 version;           // 1
//!     SenderKind sender_kind;
//!     opaque sender<V>;
//!     opaque key_id<V>;
//!     uint64 body_length;       // how many body bytes were covered by the signature
//! } WhoAmIResponse;
//! ```

use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize};

use crate::signing::SenderKind;

#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserialize, TlsSize)]
pub struct WhoAmIResponse {
    pub version: u16,
    pub sender_kind: SenderKind,
    pub sender: String,
    pub key_id: String,
    pub body_length: u64,
}
