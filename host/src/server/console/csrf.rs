//! CSRF protection of the console's forms: one random token per session
//! (and one per sign-in form, before there is a session), sent back as a
//! hidden field and compared in constant time. SameSite=Strict cookies are
//! the first guard; the token is the one that does not depend on the
//! browser.

use subtle::ConstantTimeEq;

/// 256 random bits, hex.
pub fn new_token() -> Result<String, String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether the form's token is the session's. An absent or empty token
/// never matches.
pub fn matches(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(g) if !g.is_empty() && !expected.is_empty() => {
            g.len() == expected.len() && bool::from(g.as_bytes().ct_eq(expected.as_bytes()))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_same_token_matches() {
        let t = super::new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert!(super::matches(&t, Some(&t)));
        assert!(!super::matches(&t, Some(&t[..63])));
        assert!(!super::matches(&t, None));
        assert!(!super::matches(&t, Some("")));
        assert!(!super::matches("", Some("")));
        assert_ne!(t, super::new_token().unwrap());
    }
}
