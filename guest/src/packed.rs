//! A credential's personal data and names (username, cookie names, labels,
//! ...) packed into one small allocation: they are read only by views,
//! tickets and purpose filters, and as separate strings and vectors they
//! cost more guest memory than the rest of the record.
//!
//! Layout: a `u16` mask of the fields present, then each present field in
//! [`Extra`]'s order; a string is a LEB128 length and its bytes, a list a
//! LEB128 count and its items, a secret field one byte.

use crate::model::SecretField;

/// The unpacked form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extra {
    pub username: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub cookie_names: Vec<String>,
    pub header_names: Vec<String>,
    pub secret_fields: Vec<SecretField>,
    pub token_scope: Vec<String>,
    pub source_account: Option<String>,
    pub labels: Vec<(String, String)>,
    pub token_type: Option<String>,
    pub local_storage_names: Vec<String>,
    pub device_id: Option<String>,
    pub fingerprint: Option<String>,
    pub user_agent: Option<String>,
    /// A flag: its mask bit alone, no bytes.
    pub two_factor: bool,
}

const USERNAME: u16 = 1;
const PHONE: u16 = 1 << 1;
const EMAIL: u16 = 1 << 2;
const COOKIES: u16 = 1 << 3;
const HEADERS: u16 = 1 << 4;
const SECRETS: u16 = 1 << 5;
const SCOPE: u16 = 1 << 6;
const SOURCE: u16 = 1 << 7;
const LABELS: u16 = 1 << 8;
const TOKEN_TYPE: u16 = 1 << 9;
const LOCAL_STORAGE: u16 = 1 << 10;
const DEVICE_ID: u16 = 1 << 11;
const FINGERPRINT: u16 = 1 << 12;
const USER_AGENT: u16 = 1 << 13;
const TWO_FACTOR: u16 = 1 << 14;

const FIELDS: [SecretField; 7] = [
    SecretField::Password,
    SecretField::AccessToken,
    SecretField::RefreshToken,
    SecretField::ApiKey,
    SecretField::SecretKey,
    SecretField::RecoveryCodes,
    SecretField::TotpSeed,
];

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_one(out: &mut Vec<u8>, mask: &mut u16, bit: u16, v: &Option<String>) {
    if let Some(s) = v {
        *mask |= bit;
        put_str(out, s);
    }
}

fn put_list(out: &mut Vec<u8>, mask: &mut u16, bit: u16, v: &[String]) {
    if !v.is_empty() {
        *mask |= bit;
        put_len(out, v.len());
        for s in v {
            put_str(out, s);
        }
    }
}

/// Packs `x`; `None` when it holds nothing (no allocation at all).
pub fn pack(x: &Extra) -> Option<Box<[u8]>> {
    if *x == Extra::default() {
        return None;
    }
    let mut out = vec![0, 0];
    let mut mask = 0u16;
    put_one(&mut out, &mut mask, USERNAME, &x.username);
    put_one(&mut out, &mut mask, PHONE, &x.phone);
    put_one(&mut out, &mut mask, EMAIL, &x.email);
    put_list(&mut out, &mut mask, COOKIES, &x.cookie_names);
    put_list(&mut out, &mut mask, HEADERS, &x.header_names);
    if !x.secret_fields.is_empty() {
        mask |= SECRETS;
        put_len(&mut out, x.secret_fields.len());
        for f in &x.secret_fields {
            out.push(FIELDS.iter().position(|g| g == f).expect("known field") as u8);
        }
    }
    put_list(&mut out, &mut mask, SCOPE, &x.token_scope);
    put_one(&mut out, &mut mask, SOURCE, &x.source_account);
    if !x.labels.is_empty() {
        mask |= LABELS;
        put_len(&mut out, x.labels.len());
        for (k, v) in &x.labels {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
    }
    put_one(&mut out, &mut mask, TOKEN_TYPE, &x.token_type);
    put_list(&mut out, &mut mask, LOCAL_STORAGE, &x.local_storage_names);
    put_one(&mut out, &mut mask, DEVICE_ID, &x.device_id);
    put_one(&mut out, &mut mask, FINGERPRINT, &x.fingerprint);
    put_one(&mut out, &mut mask, USER_AGENT, &x.user_agent);
    if x.two_factor {
        mask |= TWO_FACTOR;
    }
    out[..2].copy_from_slice(&mask.to_le_bytes());
    Some(out.into_boxed_slice())
}

/// Reads what [`pack`] wrote (our own bytes: a short read yields empties).
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn len(&mut self) -> usize {
        let mut n = 0usize;
        let mut shift = 0;
        while let Some(&byte) = self.b.get(self.pos) {
            self.pos += 1;
            n |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 || shift > 28 {
                break;
            }
            shift += 7;
        }
        n
    }

    fn str(&mut self) -> &'a str {
        let n = self.len();
        let end = (self.pos + n).min(self.b.len());
        let s = std::str::from_utf8(&self.b[self.pos..end]).unwrap_or("");
        self.pos = end;
        s
    }

    fn strings(&mut self) -> Vec<String> {
        let n = self.len();
        (0..n).map(|_| self.str().to_string()).collect()
    }

    fn skip_strings(&mut self) {
        for _ in 0..self.len() {
            self.str();
        }
    }
}

fn mask_of(b: &[u8]) -> u16 {
    match b {
        [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    }
}

/// Unpacks all fields.
pub fn unpack(b: &[u8]) -> Extra {
    let mask = mask_of(b);
    let mut r = Reader { b, pos: 2 };
    let has = |bit: u16| mask & bit != 0;
    let mut x = Extra::default();
    let one = |r: &mut Reader, bit| has(bit).then(|| r.str().to_string());
    x.username = one(&mut r, USERNAME);
    x.phone = one(&mut r, PHONE);
    x.email = one(&mut r, EMAIL);
    if has(COOKIES) {
        x.cookie_names = r.strings();
    }
    if has(HEADERS) {
        x.header_names = r.strings();
    }
    if has(SECRETS) {
        let n = r.len();
        for _ in 0..n {
            if let Some(&code) = r.b.get(r.pos) {
                r.pos += 1;
                if let Some(f) = FIELDS.get(usize::from(code)) {
                    x.secret_fields.push(*f);
                }
            }
        }
    }
    if has(SCOPE) {
        x.token_scope = r.strings();
    }
    if has(SOURCE) {
        x.source_account = Some(r.str().to_string());
    }
    if has(LABELS) {
        let n = r.len();
        x.labels = (0..n)
            .map(|_| (r.str().to_string(), r.str().to_string()))
            .collect();
    }
    x.token_type = one(&mut r, TOKEN_TYPE);
    if has(LOCAL_STORAGE) {
        x.local_storage_names = r.strings();
    }
    x.device_id = one(&mut r, DEVICE_ID);
    x.fingerprint = one(&mut r, FINGERPRINT);
    x.user_agent = one(&mut r, USER_AGENT);
    x.two_factor = has(TWO_FACTOR);
    x
}

/// The username, without unpacking the rest.
pub fn username(b: &[u8]) -> Option<&str> {
    (mask_of(b) & USERNAME != 0).then(|| Reader { b, pos: 2 }.str())
}

/// The labels, without allocating (purpose filters run on the hot path).
pub fn labels(b: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let mask = mask_of(b);
    let mut r = Reader { b, pos: 2 };
    let mut left = 0;
    if mask & LABELS != 0 {
        for bit in [USERNAME, PHONE, EMAIL] {
            if mask & bit != 0 {
                r.str();
            }
        }
        for bit in [COOKIES, HEADERS] {
            if mask & bit != 0 {
                r.skip_strings();
            }
        }
        if mask & SECRETS != 0 {
            let n = r.len();
            r.pos += n;
        }
        if mask & SCOPE != 0 {
            r.skip_strings();
        }
        if mask & SOURCE != 0 {
            r.str();
        }
        left = r.len();
    }
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        left -= 1;
        Some((r.str(), r.str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips_and_empty_packs_to_nothing() {
        assert_eq!(pack(&Extra::default()), None);
        let full = Extra {
            username: Some("alice_shopper".into()),
            phone: Some("13812345678".into()),
            email: Some("a@example.com".into()),
            cookie_names: vec!["sid".into(), "pt_key".into()],
            header_names: vec!["Authorization".into()],
            secret_fields: vec![SecretField::TotpSeed, SecretField::Password],
            token_scope: vec!["read".into(), "x".repeat(300)],
            source_account: Some("acct-1".into()),
            labels: vec![
                ("purpose".into(), "search".into()),
                ("proxy".into(), "p1".into()),
            ],
            token_type: Some("Bearer".into()),
            local_storage_names: vec!["auth".into(), "cart".into()],
            device_id: Some("d-1".into()),
            fingerprint: Some("fp-9".into()),
            user_agent: Some("Mozilla/5.0 (X11)".into()),
            two_factor: true,
        };
        let b = pack(&full).unwrap();
        assert_eq!(unpack(&b), full);
        assert_eq!(username(&b), Some("alice_shopper"));
        let labels: Vec<_> = super::labels(&b).collect();
        assert_eq!(labels, vec![("purpose", "search"), ("proxy", "p1")]);
        // Each field alone, too.
        let only_labels = Extra {
            labels: vec![("purpose".into(), "checkout".into())],
            ..Default::default()
        };
        let b = pack(&only_labels).unwrap();
        assert_eq!(unpack(&b), only_labels);
        assert_eq!(username(&b), None);
        let cookies = Extra {
            cookie_names: vec!["sid".into()],
            ..Default::default()
        };
        let b = pack(&cookies).unwrap();
        assert_eq!(b.len(), 7, "a session's names stay small");
        assert_eq!(unpack(&b), cookies);
        assert_eq!(super::labels(&b).count(), 0);
    }

    #[test]
    fn the_card_fields_after_labels_leave_labels_readable() {
        let x = Extra {
            labels: vec![("purpose".into(), "search".into())],
            local_storage_names: vec!["token".into()],
            user_agent: Some("UA".into()),
            ..Default::default()
        };
        let b = pack(&x).unwrap();
        assert_eq!(unpack(&b), x);
        assert_eq!(
            super::labels(&b).collect::<Vec<_>>(),
            vec![("purpose", "search")]
        );
        // A flag alone packs to its mask and nothing else.
        let flag = Extra {
            two_factor: true,
            ..Default::default()
        };
        let b = pack(&flag).unwrap();
        assert_eq!(b.len(), 2);
        assert!(unpack(&b).two_factor);
    }
}
