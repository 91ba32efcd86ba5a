//! TLS for the data listeners: TLS 1.3 only, ALPN `h2` and `http/1.1`, no early data. The
//! certificate and key are read through [`ServerCertificate`], so a renewed pair on disk is
//! served to new connections without a restart (`serve` checks the files' stamps), and
//! presented as client certificate on new outbound connections to peers.
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
    #[error("client certificate roots: {0}")]
    ClientRoots(String),
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

/// The certificate chain and key the listeners present, swapped in place when the files are
/// renewed: handshakes after [`ServerCertificate::reload`] see the new pair, connections
/// already open keep theirs.
#[derive(Debug)]
pub struct ServerCertificate {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ServerCertificate {
    pub fn load(cert: &Path, key: &Path) -> Result<ServerCertificate, TlsError> {
        Ok(ServerCertificate {
            current: std::sync::RwLock::new(certified_key(cert, key)?),
        })
    }

    /// Reads the pair again; on an error the one in use stays.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        let loaded = certified_key(cert, key)?;
        if let Ok(mut current) = self.current.write() {
            *current = loaded;
        }
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ServerCertificate {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current.read().ok().map(|current| current.clone())
    }
}

/// The same pair is this gateway's client certificate towards peers that require mutual TLS,
/// so a renewal reaches new outbound connections too.
impl rustls::client::ResolvesClientCert for ServerCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current.read().ok().map(|current| current.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A chain and its key, checked to belong together.
fn certified_key(cert: &Path, key: &Path) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    Ok(Arc::new(rustls::sign::CertifiedKey::from_der(
        load_certificates(cert)?,
        load_private_key(key)?,
        &crypto_provider(),
    )?))
}

/// The server side of a data listener, presenting `certificate`; with `client_roots`,
/// clients must present a certificate chaining to them (mutual TLS on the federation
/// listener).
pub fn server_config(
    certificate: Arc<ServerCertificate>,
    client_roots: Option<rustls::RootCertStore>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                crypto_provider(),
            )
            .build()
            .map_err(|error| TlsError::ClientRoots(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = ALPN_PROTOCOLS
        .iter()
        .map(|protocol| protocol.to_vec())
        .collect();
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}
