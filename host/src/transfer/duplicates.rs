//! Sessions an import would add twice: a session of the file whose site
//! already holds a session with the same cookie names (the same browser
//! export imported again). They are skipped and said, or with `replace`
//! they take the place of the one held.

use super::Parsed;
use crate::ListFilter;
use crate::bindings::types::CredentialMeta;
use crate::bindings::types::{AccessLevel, CredentialKind};
use crate::error::Result;
use crate::pool::Pool;
use std::collections::{BTreeSet, HashMap};

/// A session of the file the pool already holds.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub line: usize,
    pub site: String,
    /// The held session's id.
    pub existing: String,
    pub cookie_names: Vec<String>,
    /// With `replace`: the id of the session that took its place.
    pub replaced_by: Option<String>,
}

fn names_of(names: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    names.into_iter().collect()
}

/// Finds the file's sessions the pool already holds. Without `replace`
/// they leave `parsed.credentials` (skipped); with it they stay, to be
/// added, and the returned list names what each replaces (the caller
/// removes those once the new ones are in).
pub fn find(pool: &Pool, parsed: &mut Parsed, replace: bool) -> Result<()> {
    // Per site, the held sessions by cookie-name set (one list per site).
    let mut held: HashMap<String, Vec<(BTreeSet<String>, String)>> = HashMap::new();
    let mut keep = Vec::with_capacity(parsed.credentials.len());
    for (line, new) in std::mem::take(&mut parsed.credentials) {
        if new.kind != CredentialKind::Session || new.secrets.cookies.is_empty() {
            keep.push((line, new));
            continue;
        }
        let site = crate::names::site_key(&new.site);
        if !held.contains_key(&site) {
            let mut filter = ListFilter::all();
            filter.site = Some(site.clone());
            filter.kind = Some(CredentialKind::Session);
            let sessions = pool
                .list(&filter, AccessLevel::Sensitive)?
                .into_iter()
                .filter_map(|v| {
                    let s = v.sensitive?;
                    Some((names_of(s.cookie_names), v.id))
                })
                .collect();
            held.insert(site.clone(), sessions);
        }
        let names = names_of(new.secrets.cookies.iter().map(|(n, _)| n.clone()));
        let found = held[&site]
            .iter()
            .find(|(n, id)| *n == names && !parsed.duplicates.iter().any(|d| &d.existing == id))
            .map(|(_, id)| id.clone());
        match found {
            Some(existing) => {
                parsed.duplicates.push(Duplicate {
                    line,
                    site,
                    existing,
                    cookie_names: names.into_iter().collect(),
                    replaced_by: None,
                });
                if replace {
                    keep.push((line, new));
                }
            }
            None => keep.push((line, new)),
        }
    }
    parsed.credentials = keep;
    Ok(())
}

/// After the add (with `replace`): each held duplicate gives way to the
/// session that was added from its line (`lines[i]` is the line of
/// `added[i]`). Added first, removed second: a failure between leaves
/// both, never neither.
pub fn replace(
    pool: &Pool,
    parsed: &mut Parsed,
    lines: &[usize],
    added: &[CredentialMeta],
) -> Result<()> {
    for d in &mut parsed.duplicates {
        let Some(new) = lines
            .iter()
            .zip(added)
            .find(|(line, _)| **line == d.line)
            .map(|(_, m)| m.id.clone())
        else {
            continue;
        };
        pool.remove(&d.existing)?;
        d.replaced_by = Some(new);
    }
    Ok(())
}
