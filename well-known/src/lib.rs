//! `mimi-well-known`: endpoint discovery of MIMI Transport ("Endpoint Discovery").
//!
//! A provider answers `GET https://<provider>/.well-known/mimi/ds-domain` with the domain of
//! its Delivery Service; the DS domain then serves `/verification_key`. This crate holds the
//! document format, a small HTTPS client (TLS 1.3 only) and the resolver a gateway or an
//! operator uses to find a peer's DS domain and verification keys.
#![forbid(unsafe_code)]

pub mod address_policy;
pub mod https;
pub mod peer_keys;
pub mod resolver;

pub use https::{HttpsClient, HttpsError};
pub use peer_keys::{PeerKeyError, PeerKeys};
pub use resolver::{Discovery, ResolveError, Resolver};

/// Path of the DS-domain document.
pub const DS_DOMAIN_PATH: &str = "/.well-known/mimi/ds-domain";

/// Path of the verification-key endpoint on the DS domain.
pub const VERIFICATION_KEY_PATH: &str = "/verification_key";

/// Whether `name` is a DNS name as the discovery document carries it: labels of letters,
/// digits and hyphens, no port, no trailing dot.
pub fn is_dns_name(name: &str) -> bool {
    // An IP literal is not a name: its last label would be all digits.
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()));
    !name.is_empty()
        && !last_is_numeric
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Parses the body of `/.well-known/mimi/ds-domain`: one DNS name, surrounding whitespace
/// allowed.
pub fn parse_ds_domain(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    is_dns_name(text).then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_and_not_ip_literals() {
        for name in ["a.example", "localhost", "b.localhost", "x-1.y2.example"] {
            assert!(is_dns_name(name), "{name}");
        }
        for name in [
            "127.0.0.2",
            "10.0.0.1",
            "1.2.3.4",
            "::1",
            "a..b",
            "-a.example",
            "",
            "a.b:443",
        ] {
            assert!(!is_dns_name(name), "{name}");
        }
    }

    #[test]
    fn ds_domain_documents() {
        assert_eq!(
            parse_ds_domain(b"ds.provider.com\n").as_deref(),
            Some("ds.provider.com")
        );
        assert_eq!(
            parse_ds_domain(b"DS.Example").as_deref(),
            Some("ds.example")
        );
        for bad in [
            &b""[..],
            b"a..b",
            b"host:443",
            b"-a.b",
            b"https://x",
            b"\xff",
        ] {
            assert_eq!(parse_ds_domain(bad), None, "{bad:?}");
        }
    }
}
