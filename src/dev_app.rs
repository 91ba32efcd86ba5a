//! The development application (issue 16, "A first `serve` that can be used at once"): a
//! `serve` with no configuration file and no application hosts one application with the
//! Basic identity provider, whose id and Ed25519 signing key live in
//! `<data_dir>/dev-application.toml` (owner-only), created on the first run and kept after.
//! The same file, with the gateway's URL and development CA written in once it listens, is
//! what `mimi-gateway call` reads to sign requests. A configured gateway never does this.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{ApplicationConfig, ApplicationKeyConfig, IdentityConfig};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "dev-application.toml";

#[derive(Debug, thiserror::Error)]
pub enum DevAppError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// What the file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevAppFile {
    /// The application id.
    app: Uuid,
    key_id: String,
    /// The Ed25519 signing key's 32-byte seed, hex. A development secret: the file is
    /// readable by its owner only.
    signing_key: String,
    /// `https://localhost:<port>` of the application listener, once it listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The development CA the gateway's certificate chains to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<PathBuf>,
}

/// A development application and how to reach the gateway as it.
#[derive(Debug, Clone)]
pub struct DevApplication {
    pub path: PathBuf,
    pub app: Uuid,
    pub key_id: String,
    pub key: SigningKey,
    pub url: Option<String>,
    pub ca: Option<PathBuf>,
}

impl DevApplication {
    /// The application of `<data_dir>/dev-application.toml`, created (with a fresh id and
    /// key) if the file does not exist; answers whether it was created.
    pub fn open_or_create(data_dir: &Path) -> Result<(DevApplication, bool), DevAppError> {
        let path = data_dir.join(FILE_NAME);
        if path.exists() {
            return Ok((DevApplication::load(&path)?, false));
        }
        let application = DevApplication {
            path,
            app: Uuid::new_v4(),
            key_id: "dev-1".into(),
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            url: None,
            ca: None,
        };
        std::fs::create_dir_all(data_dir).map_err(|source| DevAppError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        application.save()?;
        Ok((application, true))
    }

    /// The application a file describes (`mimi-gateway call --app-file`).
    pub fn load(path: &Path) -> Result<DevApplication, DevAppError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DevAppError::Io {
            path: display.clone(),
            source,
        })?;
        let invalid = |reason: String| DevAppError::Invalid {
            path: display.clone(),
            reason,
        };
        let file: DevAppFile = toml::from_str(&text).map_err(|error| invalid(error.to_string()))?;
        let key = crate::keys::parse_secret_key(&file.signing_key)
            .ok_or_else(|| invalid("signing_key: not 32 bytes of hex".into()))?;
        Ok(DevApplication {
            path: path.to_path_buf(),
            app: file.app,
            key_id: file.key_id,
            key,
            url: file.url,
            ca: file.ca,
        })
    }

    /// Writes the file, readable by its owner only.
    pub fn save(&self) -> Result<(), DevAppError> {
        let file = DevAppFile {
            app: self.app,
            key_id: self.key_id.clone(),
            signing_key: hex::encode(self.key.to_bytes()),
            url: self.url.clone(),
            ca: self.ca.clone(),
        };
        let text = toml::to_string(&file).map_err(|error| DevAppError::Invalid {
            path: self.path.display().to_string(),
            reason: error.to_string(),
        })?;
        let text = format!(
            "# The development application of a gateway started with no configuration.\n\
             # Keep it private: signing_key signs requests as this application.\n{text}"
        );
        crate::keys::write_private(&self.path, text.as_bytes()).map_err(|source| DevAppError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// The application's configuration: Basic identity provider, listed, one key.
    pub fn config(&self) -> ApplicationConfig {
        ApplicationConfig {
            id: self.app,
            public: true,
            identity: IdentityConfig::default(),
            keys: vec![ApplicationKeyConfig {
                id: self.key_id.clone(),
                public_key: hex::encode(self.key.verifying_key().as_bytes()),
                not_before: None,
                not_after: None,
            }],
        }
    }

    /// What to print at start: the application, its key, and a command to try. The secret
    /// key is printed once, when it was just created; afterwards only its public half (logs
    /// keep what a restart prints).
    pub fn greeting(&self, created: bool) -> String {
        let key = if created {
            format!(
                "signing key  {} (secret; ",
                hex::encode(self.key.to_bytes())
            )
        } else {
            format!(
                "public key   {} (",
                hex::encode(self.key.verifying_key().as_bytes())
            )
        };
        format!(
            "development application {} ({})\n  \
             app id       {}\n  \
             {key}key id {}; in {})\n  \
             try          mimi-gateway call --app-file {} whoami\n",
            if created { "created" } else { "reused" },
            "no configuration given; a configured gateway hosts only its own applications",
            self.app,
            self.key_id,
            self.path.display(),
            self.path.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_application_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = DevApplication::open_or_create(dir.path()).unwrap();
        assert!(created);
        let (again, created) = DevApplication::open_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(
            (again.app, again.key.to_bytes()),
            (first.app, first.key.to_bytes())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&first.path, "app = \"not a uuid\"\n").unwrap();
        assert!(matches!(
            DevApplication::load(&first.path),
            Err(DevAppError::Invalid { .. })
        ));
    }
}
