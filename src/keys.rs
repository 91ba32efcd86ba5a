//! The gateway's Ed25519 request-signing keys: the key file, rotation, and the set published
//! at `/verification_key` (MIMI Transport, "Verification Key").
//!
//! The file is TOML, written with mode 0600. The current signing key is the newest valid one;
//! rotation adds a key and shortens the older keys' windows to a grace period, so peers that
//! cached them keep verifying until then. Secrets are zeroized on drop and never printed.

use std::fmt;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use mimi_wire::verification_key::{SignatureScheme, VerificationKey, key_id_for};
use serde::{Deserialize, Serialize};
use tls_codec::VLBytes;
use zeroize::{Zeroize, Zeroizing};

pub const DEFAULT_VALIDITY_SECS: u64 = 90 * 24 * 3600;
pub const DEFAULT_RETIRE_GRACE_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    Format { path: String, reason: String },
    #[error("key file {path} already exists; use --rotate to add a new signing key")]
    Exists { path: String },
}

/// One signing key with its validity window (seconds since the Unix epoch).
pub struct SigningKeyEntry {
    pub id: String,
    pub key: SigningKey,
    pub not_before: u64,
    pub not_after: u64,
}

impl fmt::Debug for SigningKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyEntry")
            .field("id", &self.id)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl SigningKeyEntry {
    pub fn generate(now: u64, validity_secs: u64) -> Self {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        SigningKeyEntry {
            id: key_id_for(&key.verifying_key()),
            key,
            not_before: now,
            not_after: now.saturating_add(validity_secs),
        }
    }

    pub fn is_valid_at(&self, unix_seconds: u64) -> bool {
        self.not_before <= unix_seconds && unix_seconds < self.not_after
    }

    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey {
            key_id: self.id.clone(),
            scheme: SignatureScheme::Ed25519,
            public_key: VLBytes::new(self.key.verifying_key().as_bytes().to_vec()),
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

/// All of the gateway's signing keys, oldest first.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<SigningKeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyFileEntry {
    id: String,
    secret: String,
    not_before: u64,
    not_after: u64,
}

impl Drop for KeyFileEntry {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl KeyRing {
    pub fn new(keys: Vec<SigningKeyEntry>) -> Self {
        KeyRing { keys }
    }

    pub fn keys(&self) -> &[SigningKeyEntry] {
        &self.keys
    }

    /// The key new requests are signed with: the valid key with the newest `not_before`.
    pub fn current(&self, now: u64) -> Option<&SigningKeyEntry> {
        self.keys
            .iter()
            .filter(|key| key.is_valid_at(now))
            .max_by_key(|key| key.not_before)
    }

    /// What `/verification_key` serves: the current key first, then every other key that has
    /// not yet expired (retired keys stay published through their grace period).
    pub fn published(&self, now: u64) -> Vec<VerificationKey> {
        let current = self.current(now).map(|key| key.id.as_str());
        let mut published: Vec<VerificationKey> = current
            .and_then(|id| self.keys.iter().find(|key| key.id == id))
            .map(SigningKeyEntry::verification_key)
            .into_iter()
            .collect();
        published.extend(
            self.keys
                .iter()
                .filter(|key| Some(key.id.as_str()) != current && now < key.not_after)
                .map(SigningKeyEntry::verification_key),
        );
        published
    }

    /// Adds a new signing key; older keys expire at most `retire_grace_secs` from now, and
    /// keys already expired are dropped.
    pub fn rotate(&mut self, now: u64, validity_secs: u64, retire_grace_secs: u64) {
        self.keys.retain(|key| now < key.not_after);
        for key in &mut self.keys {
            key.not_after = key.not_after.min(now.saturating_add(retire_grace_secs));
        }
        self.keys
            .push(SigningKeyEntry::generate(now, validity_secs));
    }

    pub fn load(path: &Path) -> Result<KeyRing, KeyError> {
        let display = path.display().to_string();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: display.clone(),
                    source,
                })?,
            );
        let file: KeyFile = toml::from_str(&text).map_err(|error| KeyError::Format {
            path: display.clone(),
            reason: error.to_string(),
        })?;
        let mut keys = Vec::with_capacity(file.keys.len());
        for entry in &file.keys {
            let key = parse_secret_key(&entry.secret).ok_or_else(|| KeyError::Format {
                path: display.clone(),
                reason: format!("key {}: secret must be 32 bytes of hex", entry.id),
            })?;
            keys.push(SigningKeyEntry {
                id: entry.id.clone(),
                key,
                not_before: entry.not_before,
                not_after: entry.not_after,
            });
        }
        Ok(KeyRing { keys })
    }

    /// Writes the file with mode 0600 (through a temporary file and a rename, so a crash
    /// never leaves half a key file).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let display = path.display().to_string();
        let io = |source| KeyError::Io {
            path: display.clone(),
            source,
        };
        let file = KeyFile {
            keys: self
                .keys
                .iter()
                .map(|key| KeyFileEntry {
                    id: key.id.clone(),
                    secret: hex::encode(key.key.to_bytes()),
                    not_before: key.not_before,
                    not_after: key.not_after,
                })
                .collect(),
        };
        let text = Zeroizing::new(toml::to_string(&file).map_err(|error| KeyError::Format {
            path: display.clone(),
            reason: error.to_string(),
        })?);
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let temporary = path.with_extension("tmp");
        write_private(&temporary, text.as_bytes()).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }

    /// Loads the key file, or creates it with one fresh key (the first-run default).
    pub fn load_or_create(path: &Path, now: u64) -> Result<(KeyRing, bool), KeyError> {
        if path.exists() {
            return Ok((KeyRing::load(path)?, false));
        }
        let ring = KeyRing::new(vec![SigningKeyEntry::generate(now, DEFAULT_VALIDITY_SECS)]);
        ring.save(path)?;
        Ok((ring, true))
    }
}

/// Creates (or truncates) a file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

/// An Ed25519 signing key given as its 32-byte seed in hex; the seed's copy is wiped.
pub fn parse_secret_key(text: &str) -> Option<SigningKey> {
    let mut secret = [0u8; 32];
    let decoded = hex::decode_to_slice(text, &mut secret);
    let key = SigningKey::from_bytes(&secret);
    secret.zeroize();
    decoded.ok().map(|()| key)
}

/// Parses an Ed25519 public key given as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| "must be 32 bytes of hex (64 digits)".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "is not a valid Ed25519 public key".to_string())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_publishes_new_key_first_and_keeps_old_through_grace() {
        let now = 1_000_000;
        let mut ring = KeyRing::new(vec![SigningKeyEntry::generate(now, 1000)]);
        let old = ring.keys()[0].id.clone();
        ring.rotate(now + 10, 1000, 100);
        let current = ring.current(now + 10).unwrap().id.clone();
        assert_ne!(current, old);
        let published = ring.published(now + 10);
        assert_eq!(published[0].key_id, current);
        assert_eq!(published[1].key_id, old);
        assert_eq!(published[1].not_after, now + 110);
        assert_eq!(ring.published(now + 111).len(), 1);
    }

    #[test]
    fn key_file_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let (ring, created) = KeyRing::load_or_create(&path, 5).unwrap();
        assert!(created);
        let loaded = KeyRing::load(&path).unwrap();
        assert_eq!(
            loaded.keys()[0].key.to_bytes(),
            ring.keys()[0].key.to_bytes()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(!format!("{ring:?}").contains(&hex::encode(ring.keys()[0].key.to_bytes())));
    }
}
