//! TLS for the data listeners: TLS 1.3 only, ALPN `h2` and `http/1.1`, no early data.
//!
//! MIMI Transport, "Transport Security and Authentication": "All HTTP queries ... MUST use
//! TLS with version 1.3 or higher". 0-RTT data is replayable, so it stays off.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| pem(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem(error.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in file".into()));
    }
    Ok(certs)
}

pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::Pem {
        path: path.display().to_string(),
        reason: error.to_string(),
    })
}

/// The crypto provider everywhere in the gateway (ring: no C toolchain beyond cc needed).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(load_certificates(cert)?, load_private_key(key)?)?;
    config.alpn_protocols = ALPN_PROTOCOLS
        .iter()
        .map(|protocol| protocol.to_vec())
        .collect();
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}
