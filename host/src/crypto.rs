//! Encryption at rest: AES-256-GCM with a fresh random 96-bit nonce per
//! write, the record's identity as associated data, and the key id in a
//! small versioned header so keys can rotate.
//!
//! Sealed layout: `[version=1][key id: u32 BE][nonce: 12][ciphertext+tag]`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 12;
/// The environment variable the card names for the key.
pub const KEY_ENV: &str = "CREDENTIAL_ENCRYPTION_KEY";

/// Why sealing or opening failed. Never carries plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// The ciphertext names a key this key ring does not hold.
    UnknownKey(u32),
    /// The ciphertext, its header or its associated data was altered, or it
    /// was moved from another record.
    Tampered,
    /// Too short or an unknown version: not something we wrote.
    Malformed,
    /// The system random generator failed; nothing was written.
    Random,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::UnknownKey(id) => {
                write!(f, "encrypted with key {id}, which is not loaded")
            }
            CryptoError::Tampered => write!(f, "failed authentication (tampered or moved)"),
            CryptoError::Malformed => write!(f, "not a credpool ciphertext"),
            CryptoError::Random => write!(f, "system random generator failed"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// One 256-bit data key and its id.
struct DataKey {
    id: u32,
    cipher: Aes256Gcm,
}

/// The keys a store can decrypt with; the primary one encrypts.
pub struct KeyRing {
    keys: Vec<DataKey>,
    primary: u32,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u32> = self.keys.iter().map(|k| k.id).collect();
        write!(
            f,
            "KeyRing {{ ids: {ids:?}, primary: {}, keys: [REDACTED] }}",
            self.primary
        )
    }
}

impl KeyRing {
    /// A ring of one key.
    pub fn single(id: u32, key: &[u8; 32]) -> Self {
        KeyRing {
            keys: vec![DataKey {
                id,
                cipher: Aes256Gcm::new_from_slice(key).expect("32-byte key"),
            }],
            primary: id,
        }
    }

    /// A fresh random key that lives only in memory (tests, the demo).
    pub fn ephemeral() -> Result<Self, CryptoError> {
        let key = random_key()?;
        Ok(Self::single(1, &key))
    }

    pub fn primary_id(&self) -> u32 {
        self.primary
    }

    /// Encrypts `plain` bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .key(self.primary)
            .ok_or(CryptoError::UnknownKey(self.primary))?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let mut out = Vec::with_capacity(HEADER + plain.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&self.primary.to_be_bytes());
        let ct = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &header_aad(&out, aad),
                },
            )
            .map_err(|_| CryptoError::Random)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a sealed value; fails unless it was sealed with this `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Malformed);
        }
        let id = u32::from_be_bytes(sealed[1..5].try_into().expect("4 bytes"));
        let key = self.key(id).ok_or(CryptoError::UnknownKey(id))?;
        let nonce: [u8; 12] = sealed[5..HEADER].try_into().expect("12 bytes");
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: &header_aad(&sealed[..5], aad),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
    }

    fn key(&self, id: u32) -> Option<&DataKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// The version and key id are authenticated too: they join the associated data.
fn header_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(header.len() + aad.len());
    full.extend_from_slice(header);
    full.extend_from_slice(aad);
    full
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(key)
}

/// Where the key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A key file (created by `credpool init`).
    File(PathBuf),
    /// Base64 of 32 bytes in `CREDENTIAL_ENCRYPTION_KEY`.
    Env,
    /// A random key for this process only (tests, demo): data written with
    /// it cannot be read after the process ends.
    Ephemeral,
}

/// Why a key could not be loaded. Messages say how to fix it.
#[derive(Debug)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

const KEY_FILE_HEADER: &str = "# credpool encryption key: keep this file private (mode 0600)";

/// Creates a new key file with mode 0600; refuses to overwrite one.
pub fn create_key_file(path: &Path) -> Result<(), KeyError> {
    let key = random_key().map_err(|e| KeyError(e.to_string()))?;
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.as_ref()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError(format!(
                "key file {} already exists; refusing to overwrite it (the data encrypted with it would be lost)",
                path.display()
            ))
        } else {
            KeyError(format!("cannot create key file {}: {e}", path.display()))
        }
    })?;
    let body = Zeroizing::new(format!("{KEY_FILE_HEADER}\n1:{}\n", encoded.as_str()));
    file.write_all(body.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| KeyError(format!("cannot write key file {}: {e}", path.display())))?;
    Ok(())
}

/// Loads the key ring from a source.
pub fn load_keys(source: &KeySource) -> Result<KeyRing, KeyError> {
    match source {
        KeySource::Ephemeral => KeyRing::ephemeral().map_err(|e| KeyError(e.to_string())),
        KeySource::Env => {
            let value = Zeroizing::new(
                std::env::var(KEY_ENV).map_err(|_| KeyError(format!("{KEY_ENV} is not set")))?,
            );
            let key = decode_key(value.trim()).ok_or_else(|| {
                KeyError(format!("{KEY_ENV} must be the base64 of 32 random bytes"))
            })?;
            Ok(KeyRing::single(1, &key))
        }
        KeySource::File(path) => load_key_file(path),
    }
}

fn load_key_file(path: &Path) -> Result<KeyRing, KeyError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            KeyError(format!(
                "no encryption key: {} does not exist; create it with `credpool init`, \
                 or set {KEY_ENV}",
                path.display()
            ))
        } else {
            KeyError(format!("cannot read key file {}: {e}", path.display()))
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError(format!(
                "key file {} is readable by group or others (mode {mode:04o}); \
                 refusing to use it: run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| KeyError(format!("cannot read key file {}: {e}", path.display())))?,
    );
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            KeyError(format!(
                "key file {} line {}: expected `ID:BASE64KEY`",
                path.display(),
                n + 1
            ))
        };
        let (id, b64) = line.split_once(':').ok_or_else(bad)?;
        let id: u32 = id.trim().parse().map_err(|_| bad())?;
        let key = decode_key(b64.trim()).ok_or_else(bad)?;
        keys.push(DataKey {
            id,
            cipher: Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key"),
        });
    }
    // The newest key (highest id) encrypts; older ones only decrypt.
    let primary = keys
        .iter()
        .map(|k| k.id)
        .max()
        .ok_or_else(|| KeyError(format!("key file {} holds no key", path.display())))?;
    Ok(KeyRing { keys, primary })
}

fn decode_key(b64: &str) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding_to_identity() {
        let ring = KeyRing::ephemeral().unwrap();
        let sealed = ring.seal(b"t/a/s/1", b"hunter2").unwrap();
        assert_eq!(
            ring.open(b"t/a/s/1", &sealed).unwrap().as_slice(),
            b"hunter2"
        );
        assert_eq!(ring.open(b"t/a/s/2", &sealed), Err(CryptoError::Tampered));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let ring = KeyRing::ephemeral().unwrap();
        let sealed = ring.seal(b"aad", b"some secret value").unwrap();
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(ring.open(b"aad", &bad).is_err(), "bit {i} undetected");
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let ring = KeyRing::ephemeral().unwrap();
        let a = ring.seal(b"x", b"same").unwrap();
        let b = ring.seal(b"x", b"same").unwrap();
        assert_ne!(a[5..17], b[5..17]);
    }

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create_key_file(&path).unwrap();
        assert!(
            create_key_file(&path)
                .unwrap_err()
                .0
                .contains("refusing to overwrite")
        );
        let ring = load_keys(&KeySource::File(path.clone())).unwrap();
        assert_eq!(ring.primary_id(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_keys(&KeySource::File(path)).unwrap_err().0;
            assert!(err.contains("readable by group or others"), "{err}");
        }
    }

    #[test]
    fn debug_never_prints_key_material() {
        let ring = KeyRing::ephemeral().unwrap();
        assert!(format!("{ring:?}").contains("[REDACTED]"));
    }
}
