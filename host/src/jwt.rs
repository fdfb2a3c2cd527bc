//! The expiry of an access token that is a JWT (RFC 7519), from its `exp`
//! claim. The signature is not verified: the pool only learns when to
//! refresh, it trusts nothing else in the token. Anything that is not a
//! well-formed JWT (three base64url parts, JSON objects, a numeric `exp`)
//! is simply not one: no expiry, no error.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

/// Latest `exp` taken as a time (year 9999); beyond it is not a date.
const MAX_EXP_SECS: f64 = 253_402_300_799.0;

/// Milliseconds since the epoch at which `token` expires, if it is a JWT
/// with an `exp` claim.
pub fn expiry_ms(token: &str) -> Option<i64> {
    let mut parts = token.trim().split('.');
    let (header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&decode(header)?).ok()?;
    header.get("alg")?.as_str()?;
    // The claims may hold personal data: their raw bytes are wiped once
    // read (the parsed values are not).
    let claims = decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    let exp = claims.as_object()?.get("exp")?.as_f64()?;
    if !(exp > 0.0 && exp <= MAX_EXP_SECS) {
        return None;
    }
    Some((exp * 1000.0) as i64)
}

fn decode(part: &str) -> Option<Zeroizing<Vec<u8>>> {
    // Some issuers pad; RFC 7515 says not to. Both are read.
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &str, claims: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn exp_is_read_in_milliseconds() {
        let t = jwt(
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"sub":"u1","exp":1893456000}"#,
        );
        assert_eq!(expiry_ms(&t), Some(1_893_456_000_000));
        // A fractional `exp` (NumericDate allows it).
        let t = jwt(r#"{"alg":"HS256"}"#, r#"{"exp":1893456000.5}"#);
        assert_eq!(expiry_ms(&t), Some(1_893_456_000_500));
    }

    #[test]
    fn what_is_not_a_jwt_with_exp_has_no_expiry() {
        for t in [
            "opaque-access-token".to_string(),
            "a.b.c".to_string(),
            "a.b".to_string(),
            jwt(r#"{"alg":"RS256"}"#, r#"{"sub":"no exp"}"#),
            jwt(r#"{"alg":"RS256"}"#, r#"{"exp":"1893456000"}"#),
            jwt(r#"{"alg":"RS256"}"#, r#"{"exp":-5}"#),
            jwt(r#"{"alg":"RS256"}"#, r#"{"exp":1e300}"#),
            jwt(r#"{"typ":"JWT"}"#, r#"{"exp":1893456000}"#),
            jwt(r#"["alg"]"#, r#"{"exp":1893456000}"#),
            jwt(r#"{"alg":"RS256"}"#, r#"[1893456000]"#),
            format!("{}.x", jwt(r#"{"alg":"RS256"}"#, r#"{"exp":1893456000}"#)),
            "...".to_string(),
            String::new(),
        ] {
            assert_eq!(expiry_ms(&t), None, "{t}");
        }
    }
}
