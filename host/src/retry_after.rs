//! A site's `Retry-After` as a crawler passes it on (RFC 9110 §10.2.3):
//! whole seconds, or an HTTP-date (IMF-fixdate, or the obsolete RFC 850
//! and asctime forms a recipient must also accept).

use chrono::{DateTime, NaiveDateTime, Utc};

/// Seconds to wait from `now_ms`: the number itself, or the time until
/// the date (rounded up; none left for a date already past).
pub fn seconds(text: &str, now_ms: i64) -> Result<u32, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u32>().map_err(|_| {
            format!(
                "Retry-After {text:?} is too large: at most {} seconds",
                u32::MAX
            )
        });
    }
    let at = http_date(text).ok_or_else(|| {
        format!(
            "Retry-After {text:?} is neither whole seconds (e.g. 120) nor an HTTP-date \
             (e.g. Sun, 06 Nov 1994 08:49:37 GMT)"
        )
    })?;
    let wait_ms = at.timestamp_millis().saturating_sub(now_ms).max(0);
    Ok(u32::try_from((wait_ms + 999) / 1000).unwrap_or(u32::MAX))
}

/// The three forms of RFC 9110 §5.6.7, always GMT.
fn http_date(text: &str) -> Option<DateTime<Utc>> {
    const FORMS: [&str; 3] = [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    ];
    FORMS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::seconds;

    /// 1994-11-06T08:49:37Z.
    const AT: i64 = 784_111_777_000;

    #[test]
    fn whole_seconds_and_all_three_date_forms() {
        assert_eq!(seconds("120", AT), Ok(120));
        assert_eq!(seconds(" 0 ", AT), Ok(0));
        for form in [
            "Sun, 06 Nov 1994 08:51:37 GMT",
            "Sunday, 06-Nov-94 08:51:37 GMT",
            "Sun Nov  6 08:51:37 1994",
        ] {
            assert_eq!(seconds(form, AT), Ok(120), "{form}");
        }
        // Part of a second left waits the whole second; the past waits none.
        assert_eq!(seconds("Sun, 06 Nov 1994 08:49:38 GMT", AT - 500), Ok(2));
        assert_eq!(seconds("Sun, 06 Nov 1994 08:00:00 GMT", AT), Ok(0));
    }

    #[test]
    fn anything_else_is_refused_with_what_is_accepted() {
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "2026-01-01T00:00:00Z",
            "99999999999",
        ] {
            let e = seconds(bad, AT).unwrap_err();
            assert!(e.contains("Retry-After"), "{bad}: {e}");
        }
    }
}
