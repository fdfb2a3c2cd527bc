//! Text for people and log lines: an enum's kebab-case word (as the WIT
//! and the JSON name it, never its Rust name) and a time in RFC 3339.

use std::borrow::Cow;
use std::fmt::Debug;

/// The one name of a site: sites are case-insensitive, and neither a
/// `www.` prefix nor a trailing dot makes a new one (`WWW.JD.com.` is
/// `jd.com`). Borrowed when already so (the acquire path).
pub fn site_key(name: &str) -> Cow<'_, str> {
    let name = name.trim();
    let bare = name.trim_end_matches('.');
    let www = bare.len() > 4 && bare[..4].eq_ignore_ascii_case("www.") && bare[4..].contains('.');
    let bare = if www { &bare[4..] } else { bare };
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}

/// Edits (insert, delete, substitute) from `a` to `b`, stopping early once
/// past `max` (the suggestion of a similar site).
pub fn edits_within(a: &str, b: &str, max: usize) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max {
        return false;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        let mut best = row[0];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
            best = best.min(next);
        }
        if best > max {
            return false;
        }
    }
    row[b.len()] <= max
}

/// The kebab-case word of a unit variant: `AllLeased` -> `all-leased`.
pub fn kebab(v: impl Debug) -> String {
    let name = format!("{v:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Milliseconds since the epoch as RFC 3339 in UTC to the millisecond
/// (`2026-01-01T00:00:00.000Z`), as the host prints `next_free_at`.
pub fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum E {
        AllLeased,
        PoolExhausted,
        Other,
    }

    #[test]
    fn a_site_has_one_name() {
        for given in ["jd.com", "JD.COM", "www.jd.com", "WWW.Jd.Com.", " jd.com "] {
            assert_eq!(site_key(given), "jd.com", "{given}");
        }
        assert!(matches!(site_key("jd.com"), Cow::Borrowed(_)));
        // `www` alone or as the registrable name stays.
        assert_eq!(site_key("www.com"), "www.com");
        assert_eq!(site_key("m.jd.com"), "m.jd.com");
    }

    #[test]
    fn similar_names_are_a_few_edits_apart() {
        assert!(edits_within("jd.cm", "jd.com", 2));
        assert!(edits_within("jdd.com", "jd.com", 1));
        assert!(!edits_within("taobao.com", "jd.com", 2));
        assert!(edits_within("", "ab", 2));
    }

    #[test]
    fn variants_are_kebab_words() {
        assert_eq!(kebab(E::AllLeased), "all-leased");
        assert_eq!(kebab(E::PoolExhausted), "pool-exhausted");
        assert_eq!(kebab(E::Other), "other");
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_521_566_202), "2026-12-06T01:46:06.202Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
