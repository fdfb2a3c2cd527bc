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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    /// The key has done as many encryptions as is safe with random nonces;
    /// nothing was written. Rotate the key (`credpool rekey`).
    KeyExhausted(u32),
    /// The durable count of encryptions could not be updated; nothing was
    /// written.
    Ledger(String),
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
            CryptoError::KeyExhausted(id) => write!(
                f,
                "key {id} has reached its safe number of encryptions; rotate it with `credpool rekey`"
            ),
            CryptoError::Ledger(m) => write!(f, "cannot record key usage: {m}"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// One 256-bit data key and its id. The cipher's key schedule is zeroized
/// when it is dropped (aes-gcm's `zeroize` feature).
struct DataKey {
    id: u32,
    cipher: Aes256Gcm,
}

/// NIST SP 800-38D: with random 96-bit nonces, at most 2^32 encryptions per
/// key. Sealing refuses to go past it.
pub const NONCE_LIMIT: u64 = 1 << 32;
/// Rotate well before the limit: a quarter of it.
pub const ROTATE_AFTER: u64 = 1 << 30;
/// The first block of encryptions reserved per process and key; blocks
/// double up to [`MAX_BLOCK`] as they are used up.
const FIRST_BLOCK: u64 = 1024;
const MAX_BLOCK: u64 = 1 << 16;

/// Where encryptions per key are counted durably. Counting reserves blocks
/// so the hot path writes once per block, not once per encryption; a block
/// reserved and not used (the process ended) counts as used.
pub trait UsageLedger: Send + Sync {
    /// Durably adds `count` to the encryptions reserved for `key_id`;
    /// returns the total reserved before this block.
    fn reserve(&self, key_id: u32, count: u64) -> Result<u64, String>;
}

struct Usage {
    key_id: u32,
    next: u64,
    end: u64,
    block: u64,
}

struct Keys {
    keys: Vec<DataKey>,
    primary: u32,
}

/// The keys a store can decrypt with; the primary one encrypts. Keys can be
/// added (rotation) and retired while the ring is in use.
pub struct KeyRing {
    inner: RwLock<Keys>,
    usage: Mutex<Usage>,
    ledger: RwLock<Option<Arc<dyn UsageLedger>>>,
    rotate_after: AtomicU64,
    rotation_due: AtomicBool,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<u32> = inner.keys.iter().map(|k| k.id).collect();
        write!(
            f,
            "KeyRing {{ ids: {ids:?}, primary: {}, keys: [REDACTED] }}",
            inner.primary
        )
    }
}

impl KeyRing {
    fn from_keys(keys: Vec<DataKey>, primary: u32) -> Self {
        KeyRing {
            inner: RwLock::new(Keys { keys, primary }),
            usage: Mutex::new(Usage {
                key_id: primary,
                next: 0,
                end: 0,
                block: FIRST_BLOCK,
            }),
            ledger: RwLock::new(None),
            rotate_after: AtomicU64::new(ROTATE_AFTER),
            rotation_due: AtomicBool::new(false),
        }
    }

    /// A ring of one key.
    pub fn single(id: u32, key: &[u8; 32]) -> Self {
        Self::from_keys(
            vec![DataKey {
                id,
                cipher: Aes256Gcm::new_from_slice(key).expect("32-byte key"),
            }],
            id,
        )
    }

    /// A fresh random key that lives only in memory (tests, the demo).
    pub fn ephemeral() -> Result<Self, CryptoError> {
        let key = random_key()?;
        Ok(Self::single(1, &key))
    }

    pub fn primary_id(&self) -> u32 {
        self.read().primary
    }

    /// The ids of every key held, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.read().keys.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        ids
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts encryptions durably in `ledger` from now on.
    pub fn set_ledger(&self, ledger: Arc<dyn UsageLedger>) {
        *self.ledger.write().unwrap_or_else(|p| p.into_inner()) = Some(ledger);
    }

    /// Asks for rotation once the primary key has done this many
    /// encryptions (default [`ROTATE_AFTER`]; tests lower it).
    pub fn set_rotate_after(&self, n: u64) {
        self.rotate_after
            .store(n.min(ROTATE_AFTER), Ordering::Relaxed);
    }

    /// Whether the primary key has reached its rotation threshold (and
    /// clears the question: it is asked again at the next block).
    pub fn take_rotation_due(&self) -> bool {
        // Asked after every call: a plain load first, the swap (a locked
        // instruction) only when a rotation is due.
        self.rotation_due.load(Ordering::Relaxed)
            && self.rotation_due.swap(false, Ordering::Relaxed)
    }

    /// Makes `key` the primary under `id`; older keys stay decrypt-only.
    pub fn add_primary(&self, id: u32, key: &[u8; 32]) {
        let mut inner = self.write();
        inner.keys.retain(|k| k.id != id);
        inner.keys.push(DataKey {
            id,
            cipher: Aes256Gcm::new_from_slice(key).expect("32-byte key"),
        });
        inner.primary = id;
        self.rotation_due.store(false, Ordering::Relaxed);
    }

    /// Drops every key but the primary (after a complete rewrap).
    pub fn retire_old(&self) -> Vec<u32> {
        let mut inner = self.write();
        let primary = inner.primary;
        let old: Vec<u32> = inner
            .keys
            .iter()
            .map(|k| k.id)
            .filter(|id| *id != primary)
            .collect();
        inner.keys.retain(|k| k.id == primary);
        old
    }

    /// Takes one encryption from the primary key's budget.
    fn count(&self, id: u32) -> Result<(), CryptoError> {
        let mut u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        if u.key_id != id {
            *u = Usage {
                key_id: id,
                next: 0,
                end: 0,
                block: FIRST_BLOCK,
            };
        }
        if u.next >= u.end {
            let ledger = self
                .ledger
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let start = match ledger {
                Some(l) => l.reserve(id, u.block).map_err(CryptoError::Ledger)?,
                None => u.end,
            };
            u.next = start;
            u.end = start + u.block;
            u.block = (u.block * 2).min(MAX_BLOCK);
            // Asked once per block, so a key that cannot rotate (from the
            // environment) is not retried on every encryption.
            if start >= self.rotate_after.load(Ordering::Relaxed) {
                self.rotation_due.store(true, Ordering::Relaxed);
            }
        }
        if u.next >= NONCE_LIMIT {
            return Err(CryptoError::KeyExhausted(id));
        }
        u.next += 1;
        Ok(())
    }

    /// Encrypts `plain` bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let inner = self.read();
        let primary = inner.primary;
        let key = inner
            .keys
            .iter()
            .find(|k| k.id == primary)
            .ok_or(CryptoError::UnknownKey(primary))?;
        self.count(primary)?;
        seal_with(key, aad, plain)
    }

    /// Decrypts a sealed value; fails unless it was sealed with this `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let id = sealed_key_id(sealed).ok_or(CryptoError::Malformed)?;
        let inner = self.read();
        let key = inner
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(CryptoError::UnknownKey(id))?;
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
}

/// Tenants' data keys have ids from here up; the server's keys (the key
/// file's) stay below, so a sealed value's header says which ring opens it.
pub const DATA_KEY_BASE: u32 = 0x8000_0000;

impl KeyRing {
    /// A ring of raw keys (a tenant's unwrapped data keys); the highest id
    /// encrypts.
    pub fn from_raw(keys: &[(u32, Zeroizing<[u8; 32]>)]) -> Option<Self> {
        let primary = keys.iter().map(|(id, _)| *id).max()?;
        let keys = keys
            .iter()
            .map(|(id, key)| DataKey {
                id: *id,
                cipher: Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key"),
            })
            .collect();
        Some(Self::from_keys(keys, primary))
    }
}

/// What one tenant's records are sealed and opened with: its data keys,
/// and (to open records written before it had one) the server's keys. The
/// key id in a sealed value's header picks the ring ([`DATA_KEY_BASE`]).
#[derive(Clone, Copy)]
pub struct Sealer<'a> {
    /// Seals, and opens values under a data key id.
    pub data: &'a KeyRing,
    /// Opens values under a server key id; none: `data` opens everything.
    pub legacy: Option<&'a KeyRing>,
}

impl<'a> Sealer<'a> {
    /// One ring for everything (the server's own records).
    pub fn single(ring: &'a KeyRing) -> Self {
        Sealer {
            data: ring,
            legacy: None,
        }
    }

    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.data.seal(aad, plain)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match (self.legacy, sealed_key_id(sealed)) {
            (Some(legacy), Some(id)) if id < DATA_KEY_BASE => legacy.open(aad, sealed),
            _ => self.data.open(aad, sealed),
        }
    }

    /// The key new seals use.
    pub fn primary_id(&self) -> u32 {
        self.data.primary_id()
    }
}

/// Generates a random 256-bit key (a tenant's new data key).
pub fn new_random_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    random_key()
}

/// Seals with one raw key, outside a ring (the check record of a key that
/// is not in use yet).
pub fn seal_with_raw(
    id: u32,
    key: &[u8; 32],
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = DataKey {
        id,
        cipher: Aes256Gcm::new_from_slice(key).expect("32-byte key"),
    };
    seal_with(&key, aad, plain)
}

fn seal_with(key: &DataKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    let mut out = Vec::with_capacity(HEADER + plain.len() + 16);
    out.push(VERSION);
    out.extend_from_slice(&key.id.to_be_bytes());
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

/// The key id in a sealed value's header, if it is one of ours.
pub fn sealed_key_id(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
        return None;
    }
    Some(u32::from_be_bytes(
        sealed[1..5].try_into().expect("4 bytes"),
    ))
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
    /// Base64 (standard or URL-safe, as `Fernet.generate_key()`) of 32 bytes
    /// in `CREDENTIAL_ENCRYPTION_KEY`.
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

/// The key taken out of the environment by [`take_key_from_env`].
static ENV_KEY: std::sync::OnceLock<Option<Zeroizing<String>>> = std::sync::OnceLock::new();

/// Moves [`KEY_ENV`] out of this process's environment into memory, so no
/// child process, `/proc/self/environ` reader of a later exec, or library
/// that dumps the environment can find it there; [`load_keys`] then reads
/// the moved value. (Children are started with a cleared environment
/// anyway, see `lifecycle::command`; this closes the rest.)
///
/// # Safety
/// Changing the environment is only sound while no other thread may read
/// it: call this first thing in `main`, before any thread is started.
pub unsafe fn take_key_from_env() {
    let value = std::env::var(KEY_ENV).ok().map(Zeroizing::new);
    let present = value.is_some() || std::env::var_os(KEY_ENV).is_some();
    let _ = ENV_KEY.set(value);
    if present {
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::remove_var(KEY_ENV) };
    }
}

/// Whether a key was given in [`KEY_ENV`] (still there, or taken out by
/// [`take_key_from_env`]).
pub fn env_key_given() -> bool {
    ENV_KEY.get().is_some_and(Option::is_some) || std::env::var_os(KEY_ENV).is_some()
}

/// Loads the key ring from a source.
pub fn load_keys(source: &KeySource) -> Result<KeyRing, KeyError> {
    match source {
        KeySource::Ephemeral => KeyRing::ephemeral().map_err(|e| KeyError(e.to_string())),
        KeySource::Env => {
            let value = match ENV_KEY.get().and_then(Option::as_ref) {
                Some(v) => v.clone(),
                None => Zeroizing::new(
                    std::env::var(KEY_ENV)
                        .map_err(|_| KeyError(format!("{KEY_ENV} is not set")))?,
                ),
            };
            let key = decode_key(value.trim()).ok_or_else(|| {
                KeyError(format!(
                    "{KEY_ENV} must be the base64 (standard or URL-safe) of 32 random bytes"
                ))
            })?;
            Ok(KeyRing::single(1, &key))
        }
        KeySource::File(path) => load_key_file(path),
    }
}

/// Reads a key file's text after checking that only its owner can read it.
fn read_key_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
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
    Ok(text)
}

fn load_key_file(path: &Path) -> Result<KeyRing, KeyError> {
    let text = read_key_file(path)?;
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
        if id >= DATA_KEY_BASE {
            return Err(bad());
        }
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
    Ok(KeyRing::from_keys(keys, primary))
}

/// The ids of the keys in a key file, in file order.
fn key_ids(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter_map(|(id, _)| id.trim().parse().ok())
        .collect()
}

/// A new random key with the next id for the key file at `path` (not
/// written yet: see [`append_key`]).
pub fn next_key(path: &Path) -> Result<(u32, Zeroizing<[u8; 32]>), KeyError> {
    let text = read_key_file(path)?;
    let id = key_ids(&text).into_iter().max().unwrap_or(0) + 1;
    let key = random_key().map_err(|e| KeyError(e.to_string()))?;
    Ok((id, key))
}

/// Appends a key to a key file atomically: the new file is written beside
/// it (mode 0600), synced, and renamed over it, so a crash leaves either
/// the old file or the new one, never a torn one.
pub fn append_key(path: &Path, id: u32, key: &[u8; 32]) -> Result<(), KeyError> {
    let text = read_key_file(path)?;
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key));
    let mut body = Zeroizing::new(text.to_string());
    if !body.ends_with('\n') && !body.is_empty() {
        body.push('\n');
    }
    body.push_str(&format!("{id}:{}\n", encoded.as_str()));
    write_key_file_atomic(path, &body)
}

/// Rewrites a key file keeping only the keys in `keep` (and comments).
pub fn retain_keys(path: &Path, keep: &[u32]) -> Result<(), KeyError> {
    let text = read_key_file(path)?;
    let mut body = Zeroizing::new(String::with_capacity(text.len()));
    for line in text.lines() {
        let id = line
            .trim()
            .split_once(':')
            .and_then(|(id, _)| id.trim().parse::<u32>().ok());
        if id.is_none_or(|id| keep.contains(&id)) {
            body.push_str(line);
            body.push('\n');
        }
    }
    write_key_file_atomic(path, &body)
}

fn write_key_file_atomic(path: &Path, body: &str) -> Result<(), KeyError> {
    let fail =
        |e: std::io::Error| KeyError(format!("cannot write key file {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(body.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// Base64 of 32 bytes, standard or URL-safe (what the card's
/// `Fernet.generate_key()` makes), padded or not.
fn decode_key(b64: &str) -> Option<Zeroizing<[u8; 32]>> {
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&alphabet::URL_SAFE, lenient);
    let bytes = Zeroizing::new(
        standard
            .decode(b64)
            .or_else(|_| url_safe.decode(b64))
            .ok()?,
    );
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
    fn a_key_is_read_as_standard_or_url_safe_base64() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
        // Bytes whose encodings hold '+' and '/' (standard) or '-' and '_'.
        let raw: [u8; 32] = std::array::from_fn(|i| if i % 2 == 0 { 0xfb } else { 0xff });
        for text in [
            STANDARD.encode(raw),
            URL_SAFE.encode(raw),
            URL_SAFE_NO_PAD.encode(raw),
        ] {
            assert_eq!(decode_key(&text).as_deref(), Some(&raw), "{text}");
        }
        assert!(URL_SAFE.encode(raw).contains(['-', '_']));
        assert!(decode_key(&URL_SAFE.encode([7u8; 31])).is_none());
        assert!(decode_key("not base64 at all!").is_none());
    }

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

    struct Ledger(Mutex<u64>);

    impl UsageLedger for Ledger {
        fn reserve(&self, _key_id: u32, count: u64) -> Result<u64, String> {
            let mut n = self.0.lock().unwrap();
            let start = *n;
            *n += count;
            Ok(start)
        }
    }

    #[test]
    fn encryptions_are_counted_in_blocks_and_bounded() {
        let ring = KeyRing::ephemeral().unwrap();
        let ledger = Arc::new(Ledger(Mutex::new(0)));
        ring.set_ledger(ledger.clone());
        ring.set_rotate_after(5000);
        for _ in 0..3000 {
            ring.seal(b"a", b"b").unwrap();
        }
        // Blocks of 1024, 2048: the ledger is ahead of use, never behind.
        assert_eq!(*ledger.0.lock().unwrap(), 3072);
        assert!(!ring.take_rotation_due());
        for _ in 0..5000 {
            ring.seal(b"a", b"b").unwrap();
        }
        assert!(ring.take_rotation_due());
        // A restarted process starts after everything reserved.
        *ledger.0.lock().unwrap() = NONCE_LIMIT - 1;
        let fresh = KeyRing::ephemeral().unwrap();
        fresh.set_ledger(ledger);
        assert_eq!(fresh.seal(b"a", b"b").map(|_| ()), Ok(()));
        assert_eq!(fresh.seal(b"a", b"b"), Err(CryptoError::KeyExhausted(1)));
    }

    #[test]
    fn key_files_grow_and_shrink_atomically_and_stay_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create_key_file(&path).unwrap();
        let (id, key) = next_key(&path).unwrap();
        assert_eq!(id, 2);
        append_key(&path, id, &key).unwrap();
        let ring = load_keys(&KeySource::File(path.clone())).unwrap();
        assert_eq!((ring.ids(), ring.primary_id()), (vec![1, 2], 2));
        retain_keys(&path, &[2]).unwrap();
        let ring = load_keys(&KeySource::File(path.clone())).unwrap();
        assert_eq!(ring.ids(), vec![2]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# credpool encryption key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn debug_never_prints_key_material() {
        let ring = KeyRing::ephemeral().unwrap();
        assert!(format!("{ring:?}").contains("[REDACTED]"));
    }
}
