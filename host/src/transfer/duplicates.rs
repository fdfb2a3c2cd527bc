//! Sessions an import would add twice. A session of the file whose site
//! already holds a session with the same cookies (names and values: the
//! same export imported again) is skipped and said. One with the same
//! cookie names but other values (a newer export of the same login, or
//! another account) is added, and the held one named; with `replace` it
//! takes the held one's place instead.

use super::Parsed;
use crate::ListFilter;
use crate::bindings::types::{AccessLevel, CredentialKind, CredentialMeta};
use crate::error::Result;
use crate::pool::Pool;
use std::collections::{BTreeSet, HashMap};

/// What became of a session of the file the pool already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The same cookies, names and values: not added.
    Skipped,
    /// The same cookie names, other values: added beside the held one.
    AddedBeside,
    /// With `replace`: added, and the held one removed.
    Replaced,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Skipped => "skipped",
            Action::AddedBeside => "added-beside",
            Action::Replaced => "replaced",
        }
    }
}

/// A session of the file matching a held session.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub line: usize,
    pub site: String,
    /// The held session's id.
    pub existing: String,
    pub cookie_names: Vec<String>,
    pub action: Action,
    /// The id the file's session was added under (not for `Skipped`).
    pub added_as: Option<String>,
}

/// A held session of a site: its id and cookie names; its values are
/// read only when the names match.
struct Held {
    id: String,
    names: BTreeSet<String>,
}

/// Finds the file's sessions the pool already holds and takes the
/// skipped ones out of `parsed.credentials`; [`after_add`] finishes the
/// others once they are added.
pub fn find(pool: &Pool, parsed: &mut Parsed, replace: bool) -> Result<()> {
    let mut held: HashMap<String, Vec<Held>> = HashMap::new();
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
                    let names = v.sensitive?.cookie_names.into_iter().collect();
                    Some(Held { id: v.id, names })
                })
                .collect();
            held.insert(site.clone(), sessions);
        }
        let names: BTreeSet<String> = new.secrets.cookies.iter().map(|(n, _)| n.clone()).collect();
        let values: BTreeSet<&(String, String)> = new.secrets.cookies.iter().collect();
        let taken = |id: &str| parsed.duplicates.iter().any(|d| d.existing == id);
        let mut same_names = None;
        let mut identical = None;
        for h in held[&site]
            .iter()
            .filter(|h| h.names == names && !taken(&h.id))
        {
            same_names.get_or_insert_with(|| h.id.clone());
            let stored = pool.vault().get_secrets(&site, &h.id)?;
            if stored.is_some_and(|s| s.cookies.iter().collect::<BTreeSet<_>>() == values) {
                identical = Some(h.id.clone());
                break;
            }
        }
        let (existing, action) = match (identical, same_names) {
            (Some(id), _) if !replace => (id, Action::Skipped),
            (Some(id), _) | (None, Some(id)) if replace => (id, Action::Replaced),
            (None, Some(id)) => (id, Action::AddedBeside),
            _ => {
                keep.push((line, new));
                continue;
            }
        };
        parsed.duplicates.push(Duplicate {
            line,
            site,
            existing,
            cookie_names: names.into_iter().collect(),
            action,
            added_as: None,
        });
        if action != Action::Skipped {
            keep.push((line, new));
        }
    }
    parsed.credentials = keep;
    Ok(())
}

/// After the add: names the id each matching session was added under
/// (`lines[i]` is the line of `added[i]`), and removes each held session
/// a replacing one took the place of. Added first, removed second: a
/// failure between leaves both, never neither.
pub fn after_add(
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
        if d.action == Action::Replaced {
            pool.remove(&d.existing)?;
        }
        d.added_as = Some(new);
    }
    Ok(())
}
