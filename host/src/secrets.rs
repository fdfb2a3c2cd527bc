//! Secret material of a credential. It lives only in the host: encrypted at
//! rest, joined to a lease when handed to the caller, never passed to the
//! policy. `Debug` names the fields present, never a value; memory is
//! zeroized on drop.

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The secret values of one credential.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Secrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Cookie name and value, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<(String, String)>,
    /// Auth header name and value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_codes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_seed: Option<String>,
    /// The login name the host submits on a re-login (not secret, but the
    /// host needs it without asking the policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The refresh token before the last rotation, kept until
    /// `previous_refresh_token_until` in case the rotation's answer was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_refresh_token: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_refresh_token_until: Option<i64>,
    /// Where each cookie applies (domain, path, flags, expiry), by index of
    /// `cookies`: as a cookie file gave it or as the site set it. Not secret,
    /// kept sealed with the values so refreshes and exports keep it. Empty
    /// for cookies added by name and value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[zeroize(skip)]
    pub cookie_attrs: Vec<CookieAttrs>,
    /// A session's local-storage entries, name and value (the card's
    /// `local_storage`): values may hold tokens, so they are sealed as
    /// cookie values are; the policy knows the names only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_storage: Vec<(String, String)>,
}

/// Where and until when a stored cookie applies: its RFC 6265 attributes,
/// without the value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieAttrs {
    pub name: String,
    /// Lower-case, no leading dot.
    pub domain: String,
    /// Sent to `domain` itself only, not to its subdomains.
    #[serde(default)]
    pub host_only: bool,
    pub path: String,
    #[serde(default)]
    pub secure: bool,
    #[serde(default)]
    pub http_only: bool,
    /// Milliseconds since the epoch; none for a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

impl CookieAttrs {
    /// A cookie file's domain column, lower-cased without its leading dot.
    pub fn normalise_domain(domain: &str) -> String {
        domain.trim().trim_start_matches('.').to_ascii_lowercase()
    }
}

impl Secrets {
    /// The attributes of cookie `i`, if known.
    pub fn cookie_attrs_of(&self, i: usize) -> Option<&CookieAttrs> {
        let name = &self.cookies.get(i)?.0;
        match self.cookie_attrs.get(i) {
            Some(a) if &a.name == name => Some(a),
            _ => self.cookie_attrs.iter().find(|a| &a.name == name),
        }
    }
}

impl Secrets {
    /// Which secret fields are present, as the policy may know them.
    pub fn fields(&self) -> Vec<crate::bindings::types::SecretField> {
        use crate::bindings::types::SecretField as F;
        let mut out = Vec::new();
        let present = [
            (self.password.is_some(), F::Password),
            (self.access_token.is_some(), F::AccessToken),
            (self.refresh_token.is_some(), F::RefreshToken),
            (self.api_key.is_some(), F::ApiKey),
            (self.secret_key.is_some(), F::SecretKey),
            (!self.recovery_codes.is_empty(), F::RecoveryCodes),
            (self.totp_seed.is_some(), F::TotpSeed),
        ];
        for (is, field) in present {
            if is {
                out.push(field);
            }
        }
        out
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.cookies.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn header_names(&self) -> Vec<String> {
        self.headers.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn local_storage_names(&self) -> Vec<String> {
        self.local_storage.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Every secret value, for leak scanners in tests.
    pub fn values(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for v in [
            &self.password,
            &self.access_token,
            &self.refresh_token,
            &self.api_key,
            &self.secret_key,
            &self.totp_seed,
            &self.previous_refresh_token,
        ]
        .into_iter()
        .flatten()
        {
            out.push(v);
        }
        out.extend(self.cookies.iter().map(|(_, v)| v.as_str()));
        out.extend(self.headers.iter().map(|(_, v)| v.as_str()));
        out.extend(self.local_storage.iter().map(|(_, v)| v.as_str()));
        out.extend(self.recovery_codes.iter().map(String::as_str));
        out
    }

    /// Checks names: cookie names by RFC 6265 token rules, header names by
    /// RFC 9110 token rules; no control character in a cookie's value,
    /// domain or path, nor a line break in a header value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, value) in &self.cookies {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err((
                    "cookie".into(),
                    format!("cookie name {name:?} is not a valid token"),
                ));
            }
            if value.bytes().any(|b| b.is_ascii_control() || b == b';') {
                return Err((
                    "cookie".into(),
                    format!("the value of cookie {name:?} contains ';' or a control character"),
                ));
            }
        }
        // A line break or tab in a domain or path would smuggle a line or a
        // field into an exported cookies.txt.
        for a in &self.cookie_attrs {
            for (what, field) in [("domain", &a.domain), ("path", &a.path)] {
                if field.bytes().any(|b| b.is_ascii_control()) {
                    return Err((
                        "cookie".into(),
                        format!(
                            "the {what} of cookie {:?} contains a control character",
                            a.name
                        ),
                    ));
                }
            }
        }
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err((
                    "header".into(),
                    format!("header name {name:?} is not a valid token"),
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err((
                    "header".into(),
                    format!("the value of header {name:?} contains a line break"),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in &self.local_storage {
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err((
                    "local_storage".into(),
                    format!(
                        "local-storage name {name:?} is empty or holds a space or control character"
                    ),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err((
                    "local_storage".into(),
                    format!("local-storage name {name:?} is given twice"),
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("fields", &self.fields())
            .field("cookies", &self.cookie_names())
            .field("headers", &self.header_names())
            .field("local_storage", &self.local_storage_names())
            .field("values", &"[REDACTED]")
            .finish()
    }
}
