//! TOTP codes (RFC 6238, HMAC-SHA1, 30 s steps) from a stored base32 seed,
//! so 2FA logins need no person. The seed and the codes are secrets: they
//! are never logged, and errors never quote them.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use zeroize::Zeroizing;

/// Why a seed could not be used (names the problem, never the seed).
#[derive(Debug, PartialEq, Eq)]
pub struct SeedError(pub &'static str);

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid TOTP seed: {}", self.0)
    }
}

/// Decodes an RFC 4648 base32 seed (case, spaces and padding ignored).
pub fn decode_base32(seed: &str) -> Result<Zeroizing<Vec<u8>>, SeedError> {
    let mut out = Zeroizing::new(Vec::with_capacity(seed.len() * 5 / 8));
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in seed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
    {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return Err(SeedError("not base32")),
        };
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    if out.is_empty() {
        return Err(SeedError("empty"));
    }
    Ok(out)
}

/// The HOTP value (RFC 4226) of `key` at `counter`, `digits` long.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> Zeroizing<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    let code = bin % 10u32.pow(digits);
    Zeroizing::new(format!("{code:0width$}", width = digits as usize))
}

/// The TOTP code of `key` at `unix_seconds` (30 s step, T0 = 0).
pub fn totp(key: &[u8], unix_seconds: u64, digits: u32) -> Zeroizing<String> {
    hotp(key, unix_seconds / 30, digits)
}

/// The 6-digit code of a base32 seed at a time in milliseconds.
pub fn code_for_seed(seed: &str, now_ms: i64) -> Result<Zeroizing<String>, SeedError> {
    let key = decode_base32(seed)?;
    Ok(totp(&key, (now_ms.max(0) / 1000) as u64, 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (seed "12345678901234567890").
    #[test]
    fn rfc6238_test_vectors() {
        let key = b"12345678901234567890";
        for (t, want) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp(key, t, 8).as_str(), want, "T={t}");
        }
    }

    #[test]
    fn base32_seed_gives_the_same_codes() {
        // base32("12345678901234567890")
        let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(
            decode_base32(seed).unwrap().as_slice(),
            b"12345678901234567890"
        );
        assert_eq!(
            code_for_seed(&seed.to_lowercase(), 59_000)
                .unwrap()
                .as_str(),
            "287082"
        );
        assert_eq!(decode_base32("not base32!"), Err(SeedError("not base32")));
    }
}
