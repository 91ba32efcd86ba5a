//! Development TLS material: a local CA and server certificates signed by it (rcgen).
//!
//! Used by `mimi-gateway certs` and by `serve` on a first run without configured
//! certificates. Never for production: `certs/README.md` says how to configure real ones.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("`{0}` is not a DNS name or IP address")]
    BadName(String),
}

const CA_COMMON_NAME: &str = "MIMI gateway development CA";

/// Paths of one issued certificate and its key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A development CA kept in a directory as `ca.pem` and `ca-key.pem`.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_path: PathBuf,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.display().to_string(),
        source,
    };
    if private {
        crate::keys::write_private(path, contents.as_bytes()).map_err(io)
    } else {
        std::fs::write(path, contents).map_err(io)
    }
}

impl DevCa {
    /// Opens the CA in `dir`, creating it when absent.
    pub fn open_or_create(dir: &Path) -> Result<DevCa, CertError> {
        let io = |source| CertError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let key = if key_path.exists() && cert_path.exists() {
            let pem = std::fs::read_to_string(&key_path).map_err(|source| CertError::Io {
                path: key_path.display().to_string(),
                source,
            })?;
            KeyPair::from_pem(&pem)?
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write(&key_path, &key.serialize_pem(), true)?;
            write(&cert_path, &cert.pem(), false)?;
            key
        };
        // The CA's name is fixed, so the issuer rebuilt from its parameters and key names
        // exactly the certificate on disk.
        Ok(DevCa {
            issuer: Issuer::new(ca_params(), key),
            cert_path,
        })
    }

    /// Issues a certificate for `names` (DNS names or IP addresses), usable as a TLS server
    /// and as a TLS client (mutual TLS between gateways), into `dir/<file_stem>.pem`.
    pub fn issue(
        &self,
        names: &[String],
        dir: &Path,
        file_stem: &str,
    ) -> Result<IssuedCert, CertError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = name;
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| CertError::BadName(name.clone())),
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let issued = IssuedCert {
            cert: dir.join(format!("{file_stem}.pem")),
            key: dir.join(format!("{file_stem}-key.pem")),
        };
        write(&issued.key, &key.serialize_pem(), true)?;
        write(&issued.cert, &cert.pem(), false)?;
        Ok(issued)
    }
}

/// `mimi-gateway certs`: a CA in `out` (reused when present) and one certificate per domain.
pub fn generate(domains: &[String], out: &Path) -> Result<(DevCa, Vec<IssuedCert>), CertError> {
    let ca = DevCa::open_or_create(out)?;
    let issued = domains
        .iter()
        .map(|domain| ca.issue(std::slice::from_ref(domain), out, domain))
        .collect::<Result<_, _>>()?;
    Ok((ca, issued))
}
