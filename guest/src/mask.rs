//! Masking of personal data for views below the secret level.

/// Shows at most the last 4 characters, and never more than half of a short
/// value, behind a fixed `***` (so the length does not leak either).
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let keep = (chars.len() / 2).min(4);
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("***{tail}")
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn keeps_at_most_four_trailing_characters() {
        assert_eq!(mask("13812345678"), "***5678");
        assert_eq!(mask("alice@example.com"), "***.com");
    }

    #[test]
    fn short_values_keep_at_most_half() {
        assert_eq!(mask("bob"), "***b");
        assert_eq!(mask("ab"), "***b");
        assert_eq!(mask("a"), "***");
        assert_eq!(mask(""), "***");
    }

    #[test]
    fn multibyte_characters_are_not_split() {
        assert_eq!(mask("张三丰用户名"), "***用户名");
    }
}
