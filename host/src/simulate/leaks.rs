//! The zero-leak check of a run: every file under the run's data
//! directory and its log, searched for every secret the accounts had or
//! the sites issued (passwords, TOTP seeds, cookies, tokens), as is and
//! hex-, base64- and URL-encoded. One pass per file for all the secrets
//! at once (Aho-Corasick): a run issues thousands of cookies.

use super::report::LeakScan;
use aho_corasick::AhoCorasick;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Values shorter than this (SMS codes, captcha words) would match by
/// chance in any binary file; they are not searched for.
pub const SHORTEST: usize = 8;

/// The forms a secret may take in a log line or a file.
fn forms(secret: &str) -> Vec<Zeroizing<Vec<u8>>> {
    let b = secret.as_bytes();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let url: String = b
        .iter()
        .map(|&x| match x {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (x as char).to_string()
            }
            _ => format!("%{x:02X}"),
        })
        .collect();
    vec![
        Zeroizing::new(b.to_vec()),
        Zeroizing::new(hex.into_bytes()),
        Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .encode(b)
                .into_bytes(),
        ),
        Zeroizing::new(url.into_bytes()),
    ]
}

fn files_under(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            files_under(&e?.path(), out)?;
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Searches every file under `paths` for `secrets`; names the files
/// where one was found, never the secret.
pub fn scan(paths: &[PathBuf], secrets: &[Zeroizing<String>]) -> std::io::Result<LeakScan> {
    // Each distinct secret once (a password is both added and issued).
    let distinct: std::collections::BTreeSet<&str> = secrets
        .iter()
        .map(|s| s.as_str())
        .filter(|s| s.len() >= SHORTEST)
        .collect();
    let mut patterns = Vec::new();
    for s in &distinct {
        patterns.extend(forms(s));
    }
    let searched = distinct.len();
    let matcher =
        AhoCorasick::new(patterns.iter().map(|p| p.as_slice())).map_err(std::io::Error::other)?;
    let mut files = Vec::new();
    for p in paths {
        files_under(p, &mut files)?;
    }
    let mut scan = LeakScan {
        secrets: searched,
        ..LeakScan::default()
    };
    for f in &files {
        let data = Zeroizing::new(std::fs::read(f)?);
        scan.files += 1;
        scan.bytes += data.len() as u64;
        if !patterns.is_empty() && matcher.is_match(data.as_slice()) {
            scan.found_in.push(f.display().to_string());
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_secret_is_found_in_each_form_and_a_clean_file_passes() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Zeroizing::new("s3cret/p@ss word".to_string());
        let clean = dir.path().join("clean.log");
        std::fs::write(&clean, "login ok for shop-0001 password=***\n").unwrap();
        let s = scan(&[dir.path().to_path_buf()], std::slice::from_ref(&secret)).unwrap();
        assert_eq!((s.files, s.secrets), (1, 1));
        assert!(s.found_in.is_empty());
        for (i, form) in forms(&secret).iter().enumerate() {
            let f = dir.path().join(format!("leak{i}.bin"));
            let mut data = b"\x00\x01header ".to_vec();
            data.extend_from_slice(form);
            std::fs::write(&f, data).unwrap();
        }
        let s = scan(&[dir.path().to_path_buf()], &[secret]).unwrap();
        assert_eq!(s.files, 5);
        assert_eq!(s.found_in.len(), 4, "{:?}", s.found_in);
        assert!(s.found_in.iter().all(|f| !f.contains("clean")));
        // Short values are not searched for (they match by chance).
        let s = scan(
            &[dir.path().to_path_buf()],
            &[Zeroizing::new("header".to_string())],
        )
        .unwrap();
        assert_eq!(s.secrets, 0);
        assert!(s.found_in.is_empty());
    }
}
