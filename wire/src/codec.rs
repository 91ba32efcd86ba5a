//! Decoding and encoding of wire bodies: exact decoding (no trailing bytes) under a size cap.
//!
//! Rule of the house: untrusted bytes become a typed value only through [`decode_exact`].

use tls_codec::{Deserialize, Serialize};

/// Why a body did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("body ended before the structure was complete")]
    Truncated,
    #[error("body has bytes after the structure")]
    TrailingBytes,
    #[error("unknown enum value {0}")]
    UnknownValue(u64),
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u16),
    #[error("malformed body: {0}")]
    Malformed(String),
}

impl From<tls_codec::Error> for DecodeError {
    fn from(error: tls_codec::Error) -> Self {
        match error {
            tls_codec::Error::EndOfStream => DecodeError::Truncated,
            tls_codec::Error::TrailingData => DecodeError::TrailingBytes,
            tls_codec::Error::UnknownValue(value) => DecodeError::UnknownValue(value),
            other => DecodeError::Malformed(other.to_string()),
        }
    }
}

/// Decodes `bytes` as exactly one `T`: truncated input, trailing bytes, unknown enum values
/// and invalid UTF-8 in strings are all errors, in every build profile. It reads through
/// tls_codec's `Read`-based decoders, which check a declared length against what remains;
/// its slice-based ones `debug_assert` on a truncated vector instead (tls_codec 0.5), so a
/// hostile peer's bytes would panic a debug build of anyone using this crate.
pub fn decode_exact<T: Deserialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    Ok(T::tls_deserialize_exact(bytes)?)
}

/// Encodes a wire value. Encoding only fails for values too long for their length prefix,
/// which the gateway's own limits rule out; the error is still surfaced, never a panic.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, tls_codec::Error> {
    value.tls_serialize_detached()
}

/// Reads one `opaque<V>` entry (RFC 9420, section 2.1.2: a variable-length integer of 1, 2
/// or 4 bytes in its shortest form, then that many bytes) from the front of `bytes`; answers
/// the entry and what follows it, or `None` if the prefix is invalid or the entry is cut short.
/// Never trusts the declared length beyond what remains.
pub fn read_vl_entry(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *bytes.first()?;
    let prefix_len = match first >> 6 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => return None,
    };
    let prefix = bytes.get(..prefix_len)?;
    let mut length = u64::from(first & 0x3f);
    for byte in &prefix[1..] {
        length = (length << 8) | u64::from(*byte);
    }
    // The shortest encoding is required ("MUST be encoded in the minimum number of bytes").
    let minimal = match prefix_len {
        1 => true,
        2 => length >= 64,
        _ => length >= 16384,
    };
    if !minimal {
        return None;
    }
    let rest = &bytes[prefix_len..];
    let length = usize::try_from(length).ok()?;
    (length <= rest.len()).then(|| rest.split_at(length))
}

/// Checks the leading version field of a decoded body.
pub fn check_version(version: u16) -> Result<(), DecodeError> {
    if version == crate::WIRE_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize};

    #[derive(Debug, PartialEq, TlsSerialize, TlsDeserialize, TlsSize)]
    struct Sample {
        version: u16,
        name: String,
    }

    #[repr(u8)]
    #[derive(Debug, PartialEq, TlsSerialize, TlsDeserialize, TlsSize)]
    enum Colour {
        Red = 1,
        Blue = 2,
    }

    /// Truncated length-prefixed fields, as attackers sent them (issue 14, finding 6): each is
    /// an error in this debug build, where tls_codec's slice-based decoders `debug_assert`.
    #[test]
    fn truncated_vectors_are_errors_in_debug_builds() {
        use crate::ds::{DSRequest, QueueingServiceRequest};
        use crate::groups::UploadProposalRequest;
        use crate::signing::RequestSignature;
        use crate::verification_key::VerificationKeyResponse;
        assert!(RequestSignature::from_header_value(b"AAEBAQ").is_err());
        assert!(decode_exact::<UploadProposalRequest>(&[0x00, 0x01, 0x01]).is_err());
        assert!(decode_exact::<DSRequest>(&[0x00, 0x01, 0x10, 0x01]).is_err());
        assert!(decode_exact::<QueueingServiceRequest>(&[0x01]).is_err());
        assert!(decode_exact::<VerificationKeyResponse>(&[0x00, 0x01, 0x01]).is_err());
        assert_eq!(
            decode_exact::<Vec<tls_codec::VLBytes>>(&[0x01, 0x01]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn variable_length_entries_read_as_rfc_9420_writes_them() {
        assert_eq!(
            read_vl_entry(&[0x02, 1, 2, 9]),
            Some((&[1u8, 2][..], &[9u8][..]))
        );
        assert_eq!(read_vl_entry(&[0x00]), Some((&[][..], &[][..])));
        let long = [&[0x40, 0x40][..], &[7u8; 64][..]].concat();
        assert_eq!(read_vl_entry(&long), Some((&[7u8; 64][..], &[][..])));
        // Not minimal, truncated, the 8-byte form, empty input.
        assert_eq!(read_vl_entry(&[0x40, 0x01, 0]), None);
        assert_eq!(read_vl_entry(&[0x03, 1, 2]), None);
        assert_eq!(read_vl_entry(&[0xc0, 0, 0, 0, 0, 0, 0, 1, 0]), None);
        assert_eq!(read_vl_entry(&[]), None);
        assert_eq!(read_vl_entry(&[0x80, 0x00, 0x40]), None);
    }

    #[test]
    fn round_trip_is_identity() {
        let sample = Sample {
            version: 1,
            name: "alice".into(),
        };
        let bytes = encode(&sample).unwrap();
        assert_eq!(decode_exact::<Sample>(&bytes).unwrap(), sample);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Sample {
            version: 1,
            name: "a".into(),
        })
        .unwrap();
        bytes.push(0);
        assert_eq!(
            decode_exact::<Sample>(&bytes),
            Err(DecodeError::TrailingBytes)
        );
    }

    #[test]
    fn truncated_bodies_are_refused() {
        let bytes = encode(&Sample {
            version: 1,
            name: "alice".into(),
        })
        .unwrap();
        for cut in 0..bytes.len() {
            assert!(
                decode_exact::<Sample>(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let bytes = [0, 1, 2, 0xff, 0xfe];
        assert!(matches!(
            decode_exact::<Sample>(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        assert_eq!(decode_exact::<Colour>(&[2]).unwrap(), Colour::Blue);
        assert_eq!(
            decode_exact::<Colour>(&[3]),
            Err(DecodeError::UnknownValue(3))
        );
    }
}

/// A TLS `bool`: one byte, 0 or 1; any other value is refused (tls_codec has no `bool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WireBool(pub bool);

impl tls_codec::Size for WireBool {
    fn tls_serialized_len(&self) -> usize {
        1
    }
}

impl tls_codec::Serialize for WireBool {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        u8::from(self.0).tls_serialize(writer)
    }
}

impl Deserialize for WireBool {
    fn tls_deserialize<R: std::io::Read>(bytes: &mut R) -> Result<Self, tls_codec::Error> {
        match u8::tls_deserialize(bytes)? {
            0 => Ok(WireBool(false)),
            1 => Ok(WireBool(true)),
            other => Err(tls_codec::Error::UnknownValue(u64::from(other))),
        }
    }
}

impl From<bool> for WireBool {
    fn from(value: bool) -> Self {
        WireBool(value)
    }
}

#[cfg(test)]
mod wire_bool_tests {
    use super::*;

    #[test]
    fn only_zero_and_one_decode() {
        assert_eq!(decode_exact::<WireBool>(&[0]), Ok(WireBool(false)));
        assert_eq!(decode_exact::<WireBool>(&[1]), Ok(WireBool(true)));
        assert_eq!(
            decode_exact::<WireBool>(&[2]),
            Err(DecodeError::UnknownValue(2))
        );
        assert_eq!(encode(&WireBool(true)).unwrap(), vec![1]);
    }
}
