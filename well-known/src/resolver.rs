//! Resolves a provider domain to its DS domain and the DS domain's verification keys
//! (MIMI Transport, "Endpoint Discovery" and "Verification Key").

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use mimi_wire::verification_key::VerificationKeyResponse;
use mimi_wire::{DecodeError, codec};

use crate::https::{HttpsClient, HttpsError};
use crate::{DS_DOMAIN_PATH, VERIFICATION_KEY_PATH, parse_ds_domain};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Https(#[from] HttpsError),
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: StatusCode },
    #[error("{0} did not answer a DNS name")]
    BadDsDomain(String),
    #[error("{url} answered an undecodable body: {error}")]
    BadBody { url: String, error: DecodeError },
    #[error("{url} answered keys for `{claimed}`, not `{expected}`")]
    WrongDomain {
        url: String,
        claimed: String,
        expected: String,
    },
}

/// What discovery found out about a provider.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub provider: String,
    pub ds_domain: String,
    pub keys: VerificationKeyResponse,
}

#[derive(Clone)]
pub struct Resolver {
    client: HttpsClient,
}

/// The host part of `host[:port]`.
fn host_of(authority: &str) -> &str {
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// The port suffix (`:port` or nothing) of `host[:port]`: a DS domain is reached on the
/// port its provider was named with (development).
pub fn port_suffix(authority: &str) -> &str {
    authority.rfind(':').map_or("", |index| &authority[index..])
}

impl Resolver {
    pub fn new(client: HttpsClient) -> Resolver {
        Resolver { client }
    }

    async fn get(&self, authority: &str, path: &str) -> Result<Bytes, ResolveError> {
        let response = self
            .client
            .send(Method::GET, authority, path, HeaderMap::new(), Bytes::new())
            .await?;
        if response.status != StatusCode::OK {
            return Err(ResolveError::Status {
                url: format!("https://{authority}{path}"),
                status: response.status,
            });
        }
        Ok(response.body)
    }

    /// `GET https://{provider}/.well-known/mimi/ds-domain`. `provider` may carry a port
    /// (development); the DS domain is then reached on the same port.
    pub async fn ds_domain(&self, provider: &str) -> Result<String, ResolveError> {
        let body = self.get(provider, DS_DOMAIN_PATH).await?;
        parse_ds_domain(&body)
            .ok_or_else(|| ResolveError::BadDsDomain(format!("https://{provider}{DS_DOMAIN_PATH}")))
    }

    /// `GET https://{ds_domain}/verification_key`, checked to speak for `ds_domain`.
    pub async fn verification_keys(
        &self,
        ds_authority: &str,
    ) -> Result<VerificationKeyResponse, ResolveError> {
        let url = format!("https://{ds_authority}{VERIFICATION_KEY_PATH}");
        let body = self.get(ds_authority, VERIFICATION_KEY_PATH).await?;
        let keys: VerificationKeyResponse =
            codec::decode_exact(&body).map_err(|error| ResolveError::BadBody {
                url: url.clone(),
                error,
            })?;
        codec::check_version(keys.version).map_err(|error| ResolveError::BadBody {
            url: url.clone(),
            error,
        })?;
        let expected = host_of(ds_authority);
        if !keys.domain.eq_ignore_ascii_case(expected) {
            return Err(ResolveError::WrongDomain {
                url,
                claimed: keys.domain.clone(),
                expected: expected.to_owned(),
            });
        }
        Ok(keys)
    }

    /// Both steps: the provider's DS domain, then its keys.
    pub async fn discover(&self, provider: &str) -> Result<Discovery, ResolveError> {
        let ds_domain = self.ds_domain(provider).await?;
        let ds_authority = format!("{ds_domain}{}", port_suffix(provider));
        let keys = self.verification_keys(&ds_authority).await?;
        Ok(Discovery {
            provider: provider.to_owned(),
            ds_domain,
            keys,
        })
    }
}
