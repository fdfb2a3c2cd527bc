//! `credpool rekey`, `import` and `export`: the store's own commands.

use super::audit::Trail;
use super::client::{Body, Remote};
use super::{EXIT_ERROR, Failed, output, usage};
use crate::error::Error;
use crate::pool::{NewCredential, Pool};
use crate::rekey::RekeyOptions;
use crate::transfer::{self, Format};
use reqwest::Method;
use serde_json::json;
use std::path::Path;

/// Rotates the key and re-encrypts every record.
pub fn rekey(pool: &Pool, batch: usize, keep_old: bool, json: bool) -> Result<(), Failed> {
    let options = RekeyOptions {
        batch,
        retire: !keep_old,
        ..RekeyOptions::default()
    };
    let report = pool.rekey(&options)?;
    let a = &report.audit;
    if json {
        println!(
            "{}",
            json!({
                "primary": report.primary,
                "resumed": report.resumed,
                "rewrapped": report.rewrapped,
                "changed_meanwhile": report.changed_meanwhile,
                "records": a.sealed(),
                "by_key": a.by_key,
                "unreadable": a.unreadable.len(),
                "unknown": a.unknown.len(),
                "retired": report.retired,
                "elapsed_ms": report.elapsed.as_millis() as u64,
            })
        );
    } else {
        if report.resumed {
            println!("finishing the interrupted rekey to key {}", report.primary);
        }
        println!(
            "key {} is primary; re-encrypted {} of {} records in {} ms",
            report.primary,
            report.rewrapped,
            a.sealed(),
            report.elapsed.as_millis()
        );
        if !report.retired.is_empty() {
            println!("retired old keys {:?} from the key file", report.retired);
        } else if keep_old {
            println!("old keys kept for decryption only (--keep-old)");
        }
    }
    if !a.unreadable.is_empty() || !a.unknown.is_empty() {
        return Err(Failed(
            EXIT_ERROR,
            format!(
                "{} records do not open with the keys held and {} are of an unknown kind \
                 (first: {}); old keys were kept",
                a.unreadable.len(),
                a.unknown.len(),
                a.unreadable
                    .iter()
                    .chain(&a.unknown)
                    .next()
                    .map_or("-", String::as_str)
            ),
        ));
    }
    Ok(())
}

fn parse_format(format: &str, allowed: &[Format]) -> Result<Format, Failed> {
    Format::parse(format)
        .filter(|f| allowed.contains(f))
        .ok_or_else(|| usage(format!("unknown --format {format:?}")))
}

/// Imports credentials from a file; any bad record imports nothing unless
/// `skip_invalid`.
pub fn import(
    pool: &Pool,
    file: &Path,
    format: &str,
    site: Option<&str>,
    skip_invalid: bool,
    replace: bool,
    json: bool,
) -> Result<(), Failed> {
    let format = parse_format(
        format,
        &[Format::Json, Format::CookiesTxt, Format::CookieJson],
    )?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file)
            .map_err(|e| Failed(EXIT_ERROR, format!("cannot read {}: {e}", file.display())))?,
    );
    let mut parsed = transfer::parse(format, &text, site);
    // An id already in the pool is a bad record too: found before anything
    // is added, so "nothing imported" holds.
    for (line, new) in &parsed.credentials {
        if let Some(id) = &new.id
            && pool.view(id, crate::AccessLevel::Public).is_ok()
        {
            parsed.problems.push(transfer::Problem {
                line: *line,
                message: format!("a credential with id {id} already exists"),
            });
        }
    }
    parsed.problems.sort_by_key(|p| p.line);
    // A set: a large file with many bad lines is skipped in linear time.
    let bad_lines: std::collections::HashSet<usize> =
        parsed.problems.iter().map(|p| p.line).collect();
    print_problems(file, &parsed.problems);
    if !parsed.problems.is_empty() && !skip_invalid {
        return Err(nothing_imported(file, parsed.problems.len()));
    }
    no_cookie_for_site(file, format, site, &parsed)?;
    crate::transfer::duplicates::find(pool, &mut parsed, replace)?;
    let (lines, news): (Vec<usize>, Vec<NewCredential>) = std::mem::take(&mut parsed.credentials)
        .into_iter()
        .filter(|(line, _)| !bad_lines.contains(line))
        .unzip();
    // One flush to disk for the whole file.
    let added = pool.add_all(news).map_err(|e| {
        let failed = match e.at.and_then(|i| lines.get(i)) {
            Some(line) => format!("{}:{line}: {}", file.display(), e.error),
            None => format!("{}: {}", file.display(), e.error),
        };
        Failed(
            EXIT_ERROR,
            format!(
                "{failed}; {} credential(s) imported before it",
                e.added.len()
            ),
        )
    })?;
    crate::transfer::duplicates::after_add(pool, &mut parsed, &lines, &added)?;
    output::print_import_value(&output::import_json(&added, &parsed), json);
    Ok(())
}

/// Reads and checks an import file as the local import does: the same
/// problems printed and the same refusals, before anything is sent.
fn read_import(
    file: &Path,
    format: Format,
    site: Option<&str>,
    skip_invalid: bool,
) -> Result<(zeroize::Zeroizing<String>, transfer::Parsed), Failed> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file)
            .map_err(|e| Failed(EXIT_ERROR, format!("cannot read {}: {e}", file.display())))?,
    );
    let parsed = transfer::parse(format, &text, site);
    if !skip_invalid && !parsed.problems.is_empty() {
        print_problems(file, &parsed.problems);
        return Err(nothing_imported(file, parsed.problems.len()));
    }
    no_cookie_for_site(file, format, site, &parsed)?;
    Ok((text, parsed))
}

fn print_problems(file: &Path, problems: &[transfer::Problem]) {
    for p in problems {
        eprintln!("{}:{}: {}", file.display(), p.line, p.message);
    }
}

fn nothing_imported(file: &Path, problems: usize) -> Failed {
    Failed(
        EXIT_ERROR,
        format!(
            "{problems} bad line(s) or record(s) in {}: nothing imported (fix them, or pass --skip-invalid)",
            file.display()
        ),
    )
}

/// Cookies given with `--site` and none for it: nothing to import.
fn no_cookie_for_site(
    file: &Path,
    format: Format,
    site: Option<&str>,
    parsed: &transfer::Parsed,
) -> Result<(), Failed> {
    match site {
        Some(site) if format != Format::Json && parsed.credentials.is_empty() => Err(Failed(
            EXIT_ERROR,
            format!("no cookie in {} is for {site}", file.display()),
        )),
        _ => Ok(()),
    }
}

/// Through a server: the file is checked here (same messages), then sent
/// whole; the server refuses ids it already holds.
pub fn import_remote(
    r: &Remote,
    file: &Path,
    format: &str,
    site: Option<&str>,
    skip_invalid: bool,
    replace: bool,
    json: bool,
) -> Result<(), Failed> {
    let format_name = format;
    let format = parse_format(
        format,
        &[Format::Json, Format::CookiesTxt, Format::CookieJson],
    )?;
    let (text, _) = read_import(file, format, site, skip_invalid)?;
    let mut query = vec![("format", format_name)];
    if let Some(s) = site {
        query.push(("site", s));
    }
    if skip_invalid {
        query.push(("skip_invalid", "true"));
    }
    if replace {
        query.push(("replace", "true"));
    }
    let got = r.call(
        Method::POST,
        &["v1", "credentials", "import"],
        &query,
        Body::Text(text.as_str().to_string()),
        "import credentials",
    )?;
    for p in got["problems"].as_array().into_iter().flatten() {
        eprintln!(
            "{}:{}: {}",
            file.display(),
            p["line"].as_u64().unwrap_or(0),
            p["message"].as_str().unwrap_or_default()
        );
    }
    output::print_import_value(&got, json);
    Ok(())
}

/// Writes one credential with its secrets in plain text: only with
/// `--reveal`, audited, and to a 0600 file when `--output` is given.
pub fn export(
    pool: &Pool,
    trail: &Trail,
    id: &str,
    format: &str,
    reveal: bool,
    output: Option<&Path>,
) -> Result<(), Failed> {
    let format = parse_format(format, &[Format::Json, Format::CookiesTxt])?;
    if !reveal {
        return Err(usage(
            "export writes secret values in plain text: pass --reveal to confirm (it is audited)",
        ));
    }
    let (view, secrets) = pool.reveal(id)?;
    let text = zeroize::Zeroizing::new(match format {
        Format::CookiesTxt => {
            if secrets.cookies.is_empty() {
                return Err(Failed(
                    EXIT_ERROR,
                    format!("credential {id} has no cookies to write as cookies.txt"),
                ));
            }
            transfer::to_cookies_txt(&view, &secrets)
        }
        _ => {
            let mut s =
                serde_json::to_string_pretty(&serde_json::Value::Array(vec![transfer::to_json(
                    &view, &secrets,
                )]))
                .expect("json");
            s.push('\n');
            s
        }
    });
    trail.record("export", &view, Some(format.name()))?;
    tracing::warn!(
        target: "credpool::audit",
        "[AUDIT] secrets exported credential={id} format={}",
        format.name()
    );
    match output {
        Some(path) => write_private(path, &text)
            .map_err(|e| Failed(EXIT_ERROR, format!("cannot write {}: {e}", path.display())))?,
        None => print!("{}", text.as_str()),
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut f = options.open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut f = options.open(path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }
}

impl From<crate::rekey::RekeyError> for Failed {
    fn from(e: crate::rekey::RekeyError) -> Self {
        Failed::from(Error::from(e))
    }
}

/// The panic hook of the command: a panic message made at run time (a
/// formatted `String`) may hold data, so only fixed messages (`&'static
/// str`, written in the source) and the location are printed.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        // Caught and reported as a damaged store by the caller.
        if crate::backend::in_guarded_call() {
            return;
        }
        let message = match info.payload().downcast_ref::<&'static str>() {
            Some(m) => *m,
            None => "[message withheld: it may hold data]",
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("credpool: internal error (a bug){at}: {message}");
    }));
}
