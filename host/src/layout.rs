//! The storage layout: every key credpool stores, what it holds and how it
//! is sealed. This is the on-disk format (one redb table, [`REDB_TABLE`],
//! in [`DB_FILE`]) and the key format of any other engine (e.g. Redis):
//! keys are plain UTF-8 and sort byte-wise; values are as below. Every
//! other module builds and reads keys through here.
//!
//! | Key                         | Holds                                        | Sealed (AAD)                       | Written         |
//! |-----------------------------|----------------------------------------------|------------------------------------|-----------------|
//! | `t/<tenant>/p/<policy key>` | one record of the tenant's policy            | yes (the key itself)               | by the policy   |
//! | `t/<tenant>/s/<id>`         | credential `id`'s secret bundle, an envelope | yes, in two parts (see below)      | durable on add  |
//! | `t/<tenant>/c/<id>`         | what credential `id`'s stopped login met: captcha image, question (JSON) | yes (the key itself) | when a login stops at a captcha; deleted when its ticket closes |
//! | `k/check/<key id>`          | [`CHECK_VALUE`], proof key `key id` is right | yes, by that key only (the key)    | durable         |
//! | `k/uses/<key id>`           | encryptions reserved with the key, u64 BE    | no                                 | durable (CAS)   |
//! | `k/rekey`                   | key id a rewrap in progress moves to, u32 BE | no                                 | durable         |
//! | `k/dk/<tenant>`             | the tenant's data keys, wrapped (see below)  | yes, by the server key (the key)   | durable         |
//! | `k/uses/t/<tenant>/<id>`    | encryptions reserved with a data key, u64 BE | no                                 | durable (CAS)   |
//!
//! Policy keys are the policy's own names, opaque to the host (the
//! built-in policy uses `cred/`, `lease/`, `ticket/`, `hold/`, `refresh/`, `usage`
//! and the counter pages `ctr/<page>`); its `store` import reaches only
//! `t/<tenant>/p/`. Its durable writes reach the disk before the call
//! returns; its lazy ones (counters, leases) at the next flush.
//!
//! A secret bundle is `[n: u16 BE][site sealed: n bytes][bundle sealed]`:
//! the site is sealed alone (AAD [`site_aad`]) so a rewrap can rebuild the
//! bundle's AAD ([`secrets_aad`]: key, site) without asking the policy,
//! and the site is never plain on disk.
//!
//! Envelope encryption: a tenant's records (`t/<tenant>/...`) are sealed
//! with its own random data keys (ids from [`crate::crypto::DATA_KEY_BASE`]
//! up), and the data keys are kept in `k/dk/<tenant>` as `[id: u32 BE][key:
//! 32 bytes]` entries (the highest id seals), sealed whole with the
//! server's key. Deleting that one record (`credpool tenant remove`) leaves
//! every record of the tenant unreadable, copies included. A record sealed
//! with a server key id (written before its tenant had a data key) still
//! opens with the server's key, until a rekey moves it; see
//! [`crate::tenant_keys`].
//!
//! Sealed values are AES-256-GCM with the key id in front (see
//! [`crate::crypto`]). A record that fits none of these shapes is
//! [`Binding::Unknown`]: a rewrap cannot move it to a new key.
//!
//! Beside the database, a data directory holds the key file [`KEY_FILE`]
//! and the compiled policy cache [`CACHE_DIR`]; `credpool restore` leaves
//! the store it replaced as `credpool.redb.before-restore-<UTC time>` and
//! stages the backup as `credpool.redb.restoring` while it is checked. A
//! backup (`credpool backup FILE`) is a database file of this same layout.
//!
//! In Redis (`--store redis://...`) the same keys and values live in
//! hashes, one per namespace, beside a sorted index; see [`redis_keys`].

/// The database file's name in a data directory.
pub const DB_FILE: &str = "credpool.redb";
/// The key file's name in a data directory.
pub const KEY_FILE: &str = "credpool.key";
/// The compiled policy, kept beside the data it serves.
pub const CACHE_DIR: &str = "cache";
/// The one redb table: every key below, in order.
pub const REDB_TABLE: &str = "kv";

/// Every tenant's records start here.
pub const TENANT_PREFIX: &str = "t/";
/// `k/check/<id>`: a known value sealed with key `id` ("wrong key" check).
pub const CHECK_PREFIX: &str = "k/check/";
/// `k/uses/<id>`: encryptions reserved with key `id`, u64 big-endian.
pub const USES_PREFIX: &str = "k/uses/";
/// `k/rekey`: the id of the key a rewrap in progress moves records to.
pub const MARKER_KEY: &str = "k/rekey";
/// `k/dk/<tenant>`: a tenant's data keys, sealed with the server key.
pub const DATA_KEY_PREFIX: &str = "k/dk/";
/// The plain text of a check record.
pub const CHECK_VALUE: &[u8] = b"credpool key check v1";

/// The backend key of the tenant's policy record `key` (`""`: the prefix
/// of them all).
pub fn policy_key(tenant: &str, key: &str) -> String {
    format!("{TENANT_PREFIX}{tenant}/p/{key}")
}

/// The backend key of credential `id`'s secret bundle.
pub fn secrets_key(tenant: &str, id: &str) -> String {
    format!("{TENANT_PREFIX}{tenant}/s/{id}")
}

/// The backend key of what credential `id`'s stopped login met (the
/// captcha image as the site served it, the question asked): shown to the
/// person who answers its ticket (the operator's console), deleted when
/// the ticket closes. JSON: `media_type`, `image_base64`, `question`.
pub fn captcha_key(tenant: &str, id: &str) -> String {
    format!("{TENANT_PREFIX}{tenant}/c/{id}")
}

/// The check record of key `id`.
pub fn check_key(id: u32) -> String {
    format!("{CHECK_PREFIX}{id}")
}

/// The count of encryptions with key `id`.
pub fn uses_key(id: u32) -> String {
    format!("{USES_PREFIX}{id}")
}

/// The record of a tenant's wrapped data keys.
pub fn data_key_record(tenant: &str) -> String {
    format!("{DATA_KEY_PREFIX}{tenant}")
}

/// The count of encryptions with a tenant's data key `id`.
pub fn tenant_uses_key(tenant: &str, id: u32) -> String {
    format!("{USES_PREFIX}t/{tenant}/{id}")
}

/// The tenant a backend key belongs to (`t/<tenant>/...`), if any.
pub fn tenant_of(key: &str) -> Option<&str> {
    key.strip_prefix(TENANT_PREFIX)?
        .split_once('/')
        .map(|(t, _)| t)
}

/// The AAD of a sealed answer to a challenge ticket. Not a backend key (the
/// answer waits in a file), but in the tenant's namespace so it can never
/// open as a record.
pub fn answer_aad(tenant: &str, ticket: &str) -> String {
    format!("{TENANT_PREFIX}{tenant}/answer/{ticket}")
}

/// A secret bundle is bound to its record: key (tenant, id) and site.
pub fn secrets_aad(key: &str, site: &str) -> String {
    format!("{key}|site={site}|secrets")
}

/// The AAD of the site sealed in a secret bundle's envelope.
pub fn site_aad(key: &str) -> String {
    format!("{key}|site")
}

/// A secret bundle's envelope from its sealed site and sealed bundle.
pub fn secrets_envelope(sealed_site: &[u8], sealed: &[u8]) -> Vec<u8> {
    let len = u16::try_from(sealed_site.len()).expect("a sealed site is short");
    let mut out = Vec::with_capacity(2 + sealed_site.len() + sealed.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sealed_site);
    out.extend_from_slice(sealed);
    out
}

/// The sealed site and sealed bundle of an envelope; none when it is cut short.
pub fn open_envelope(stored: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_be_bytes(stored.get(..2)?.try_into().ok()?) as usize;
    Some((stored.get(2..2 + len)?, stored.get(2 + len..)?))
}

/// How a stored record is sealed, known from its backend key.
#[derive(Debug, PartialEq, Eq)]
pub enum Binding {
    /// Sealed whole, with this associated data.
    Sealed(Vec<u8>),
    /// A secret bundle envelope (site and bundle sealed separately).
    Secrets,
    /// Plain bookkeeping (counters of key use, the rekey marker).
    Plain,
    /// A record this build does not know how to bind: a rewrap cannot move
    /// it to a new key.
    Unknown,
}

/// The one place that says how each record kind is bound. Every sealed
/// record uses its backend key as associated data, except secret bundles
/// (see [`secrets_aad`]).
pub fn binding(key: &str) -> Binding {
    if key == MARKER_KEY || key.starts_with(USES_PREFIX) {
        return Binding::Plain;
    }
    if key.starts_with(CHECK_PREFIX) || key.starts_with(DATA_KEY_PREFIX) {
        return Binding::Sealed(key.as_bytes().to_vec());
    }
    let Some(rest) = key.strip_prefix(TENANT_PREFIX) else {
        return Binding::Unknown;
    };
    let Some((_tenant, rest)) = rest.split_once('/') else {
        return Binding::Unknown;
    };
    if rest.starts_with("p/") || rest.starts_with("c/") {
        Binding::Sealed(key.as_bytes().to_vec())
    } else if rest.starts_with("s/") {
        Binding::Secrets
    } else {
        Binding::Unknown
    }
}

/// The Redis key format. Each logical key above lives in one namespace:
/// a tenant's (every `t/<tenant>/...` key) or the global one (`k/...`).
///
/// | Redis key                     | Type | Holds                                               |
/// |-------------------------------|------|-----------------------------------------------------|
/// | `credpool:{t:<tenant>}:kv`    | hash | field: logical key, value: the stored bytes          |
/// | `credpool:{t:<tenant>}:ix`    | zset | every logical key of the hash, score 0 (byte order)  |
/// | `credpool:{g}:kv`, `...:ix`   |      | the same for the global keys (`k/check/`, `k/uses/`) |
/// | `credpool:{g}:tenants`        | zset | `t/<tenant>/` of every tenant ever written           |
///
/// The braces are the hash tag: a tenant's keys share a Redis Cluster
/// slot, so one server-side script can read and write all of them (the
/// tenant's lock and epoch keys, `credpool:{t:<tenant>}:lock` and `:epoch`,
/// are meant to sit in the same slot). A tenant name with a character
/// outside `[A-Za-z0-9._-]` is written in hex as `{t=<hex>}`, so no name
/// can end the tag early or collide with another.
pub mod redis_keys {
    use super::TENANT_PREFIX;

    /// The registry of tenants (for scans across the whole store).
    pub const TENANTS: &str = "credpool:{g}:tenants";

    /// Which hash a logical key lives in.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Namespace {
        Tenant(String),
        Global,
    }

    impl Namespace {
        /// The namespace of logical key `key`.
        pub fn of(key: &str) -> Namespace {
            key.strip_prefix(TENANT_PREFIX)
                .and_then(|rest| rest.split_once('/'))
                .map_or(Namespace::Global, |(name, _)| {
                    Namespace::Tenant(name.to_string())
                })
        }

        /// `credpool:{t:<tenant>}` or `credpool:{g}`.
        fn base(&self) -> String {
            match self {
                Namespace::Global => "credpool:{g}".into(),
                Namespace::Tenant(name) => format!("credpool:{{{}}}", hash_tag(name)),
            }
        }

        /// The hash of the namespace's values.
        pub fn values(&self) -> String {
            format!("{}:kv", self.base())
        }

        /// The sorted index of the namespace's keys.
        pub fn index(&self) -> String {
            format!("{}:ix", self.base())
        }
    }

    /// `t/<tenant>/`: the start of every logical key of the tenant.
    pub fn tenant_prefix(name: &str) -> String {
        format!("{TENANT_PREFIX}{name}/")
    }

    fn hash_tag(name: &str) -> String {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if plain && !name.is_empty() {
            format!("t:{name}")
        } else {
            let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
            format!("t={hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shape_binds_as_the_table_says() {
        let policy = policy_key("a", "cred/x");
        assert_eq!(policy, "t/a/p/cred/x");
        assert_eq!(binding(&policy), Binding::Sealed(policy.into_bytes()));
        assert_eq!(binding(&secrets_key("a", "x")), Binding::Secrets);
        let captcha = captcha_key("a", "x");
        assert_eq!(captcha, "t/a/c/x");
        assert_eq!(binding(&captcha), Binding::Sealed(captcha.into_bytes()));
        let check = check_key(3);
        assert_eq!(binding(&check), Binding::Sealed(check.into_bytes()));
        assert_eq!(binding(&uses_key(3)), Binding::Plain);
        assert_eq!(binding(MARKER_KEY), Binding::Plain);
        let dk = data_key_record("a");
        assert_eq!(binding(&dk), Binding::Sealed(dk.clone().into_bytes()));
        assert_eq!(binding(&tenant_uses_key("a", 7)), Binding::Plain);
        assert_eq!(tenant_of(&policy_key("a", "x")), Some("a"));
        assert_eq!(tenant_of(&dk), None);
        assert_eq!(binding(&answer_aad("a", "tk")), Binding::Unknown);
        assert_eq!(binding("t/a"), Binding::Unknown);
        assert_eq!(binding("x/y"), Binding::Unknown);
    }

    #[test]
    fn a_tenants_keys_share_one_hash_tag_and_odd_names_are_hex() {
        use redis_keys::Namespace;
        let ns = Namespace::of(&policy_key("acme", "cred/x"));
        assert_eq!(ns, Namespace::of(&secrets_key("acme", "y")));
        assert_eq!(ns.values(), "credpool:{t:acme}:kv");
        assert_eq!(ns.index(), "credpool:{t:acme}:ix");
        assert_eq!(Namespace::of(&check_key(1)), Namespace::Global);
        assert_eq!(Namespace::of("t/nosub"), Namespace::Global);
        let odd = Namespace::of(&policy_key("a}b", "x"));
        assert_eq!(odd.values(), "credpool:{t=617d62}:kv");
    }

    #[test]
    fn an_envelope_opens_to_its_parts_and_a_cut_one_does_not() {
        let env = secrets_envelope(b"site", b"bundle");
        assert_eq!(open_envelope(&env), Some((&b"site"[..], &b"bundle"[..])));
        assert_eq!(open_envelope(&env[..4]), None);
        assert_eq!(open_envelope(&[0]), None);
    }
}
