//! Seeded draws. Every random choice of the site comes from a generator
//! seeded by (site seed, account, stream, number), so what an account meets
//! depends only on its own history, never on how workers interleave.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zeroize::Zeroizing;

/// What a draw is for: separate streams never share numbers.
#[derive(Clone, Copy)]
#[repr(u64)]
pub(super) enum Stream {
    /// The account's secrets and its random ban.
    Account = 1,
    /// One per crawl request: the captcha and defence-change rolls.
    Request,
    /// One per block episode: its hidden length.
    Block,
    /// One per session or token issued.
    Session,
    /// One per login attempt: the pending-login cookie.
    Login,
    /// One per SMS sent.
    Sms,
    /// One per captcha shown.
    Captcha,
    /// Site-wide: which accounts have which second step or a random ban.
    Site,
    /// Site-wide, one per request: its latency.
    Latency,
}

/// The site-wide "account" of [`Stream::Site`] draws.
pub(super) const SITE: usize = usize::MAX;

/// SplitMix64's finaliser: a good 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the site `name` with seed `seed`: two sites of one run
/// with the same seed still get different accounts (FNV-1a of the name,
/// stable across runs and platforms).
pub(super) fn site_seed(seed: u64, name: &str) -> u64 {
    let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    mix(seed ^ mix(fnv))
}

/// The generator of draw `n` of `stream` for `account`.
pub(super) fn rng(seed: u64, account: usize, stream: Stream, n: u64) -> StdRng {
    let h = mix(mix(mix(seed) ^ account as u64) ^ stream as u64);
    StdRng::seed_from_u64(mix(h ^ n))
}

const ALNUM: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// `len` characters of `alphabet`.
pub(super) fn text(rng: &mut StdRng, alphabet: &[u8], len: usize) -> Zeroizing<String> {
    Zeroizing::new(
        (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect(),
    )
}

/// A secret token: `prefix` and 32 letters and digits (about 190 bits).
pub(super) fn token(rng: &mut StdRng, prefix: &str) -> Zeroizing<String> {
    let body = text(rng, ALNUM, 32);
    Zeroizing::new(format!("{prefix}{}", body.as_str()))
}

/// `n` decimal digits.
pub(super) fn digits(rng: &mut StdRng, n: usize) -> Zeroizing<String> {
    text(rng, b"0123456789", n)
}

/// `n` random bytes (a TOTP key).
pub(super) fn bytes(rng: &mut StdRng, n: usize) -> Zeroizing<Vec<u8>> {
    Zeroizing::new((0..n).map(|_| rng.random::<u8>()).collect())
}

/// A captcha's text as a person reads it off the image.
pub(super) fn captcha(rng: &mut StdRng) -> Zeroizing<String> {
    text(rng, b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 5)
}

/// A uniform draw in `[lo, hi]` milliseconds (`lo` when empty).
pub(super) fn millis_between(rng: &mut StdRng, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// A roll in `[0, 1)`.
pub(super) fn roll(rng: &mut StdRng) -> f64 {
    rng.random::<f64>()
}

/// RFC 4648 base32 (no padding) of `bytes`: how TOTP seeds are written.
pub(super) fn base32(bytes: &[u8]) -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(5) * 8));
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
        buf &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `0..n` in seeded order number `which` (Fisher-Yates).
pub(super) fn permutation(seed: u64, which: u64, n: usize) -> Vec<usize> {
    let mut rng = rng(seed, SITE, Stream::Site, which);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_through_the_totp_decoder() {
        let seed = base32(b"12345678901234567890");
        assert_eq!(seed.as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let mut r = rng(7, 3, Stream::Account, 0);
        let key: Vec<u8> = (0..20).map(|_| r.random::<u8>()).collect();
        let back = crate::lifecycle::totp::decode_base32(&base32(&key)).unwrap();
        assert_eq!(back.as_slice(), key.as_slice());
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = token(&mut rng(1, 2, Stream::Session, 3), "s");
        assert_eq!(a, token(&mut rng(1, 2, Stream::Session, 3), "s"));
        assert_ne!(a, token(&mut rng(1, 2, Stream::Session, 4), "s"));
        assert_ne!(a, token(&mut rng(1, 3, Stream::Session, 3), "s"));
        assert_ne!(a, token(&mut rng(2, 2, Stream::Session, 3), "s"));
        assert_ne!(a, token(&mut rng(1, 2, Stream::Login, 3), "s"));
        let p = permutation(9, 0, 50);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(p, permutation(9, 0, 50));
        assert_ne!(p, permutation(10, 0, 50));
        assert_ne!(p, permutation(9, 1, 50));
    }
}
