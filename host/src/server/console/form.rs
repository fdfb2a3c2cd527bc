//! A posted form (`application/x-www-form-urlencoded`), read within the
//! server's body limit. Values may be secrets (a ticket's answer, a
//! token): the form has no Debug and its values are zeroized.

use crate::server::errors::{ApiResult, read_body};
use axum::body::Body;
use zeroize::Zeroizing;

pub struct Form {
    fields: Vec<(String, Zeroizing<String>)>,
}

impl Form {
    pub async fn read(body: Body, max: usize) -> ApiResult<Form> {
        let bytes = Zeroizing::new(read_body(body, max).await?.to_vec());
        Ok(Form::parse(&bytes))
    }

    pub fn parse(raw: &[u8]) -> Form {
        let fields = raw
            .split(|b| *b == b'&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = match pair.iter().position(|b| *b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &b""[..]),
                };
                (decode(k).to_string(), decode(v))
            })
            .collect();
        Form { fields }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decoding with `+` as a space; bad escapes are kept as typed.
fn decode(raw: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_decode_percent_and_plus() {
        let f = super::Form::parse(b"csrf=ab12&answer=K7+P%2F2&empty=&bad=%zz&end=%4");
        assert_eq!(f.get("csrf"), Some("ab12"));
        assert_eq!(f.get("answer"), Some("K7 P/2"));
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("bad"), Some("%zz"));
        assert_eq!(f.get("end"), Some("%4"));
        assert_eq!(f.get("none"), None);
    }
}
