//! The credential handles of one policy instance, resolved once. A lease
//! names its credential by handle (a number that crosses the boundary with
//! nothing to allocate); the host asks the policy for the id the first time
//! it meets a handle and keeps it here with the decrypted secrets, so a
//! lease costs no string lookup. Handles belong to their instance: a new
//! instance starts with an empty table.

use crate::secrets::Secrets;
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct Handles {
    entries: Vec<Option<Entry>>,
}

struct Entry {
    id: Arc<str>,
    /// The secrets and the vault's write count read before they were
    /// fetched: they are current while the count has not moved.
    secrets: Option<(u64, Arc<Secrets>)>,
}

impl Handles {
    fn entry(&self, handle: u32) -> Option<&Entry> {
        self.entries.get(handle as usize)?.as_ref()
    }

    /// The credential id behind `handle`, if known.
    pub fn id(&self, handle: u32) -> Option<&Arc<str>> {
        self.entry(handle).map(|e| &e.id)
    }

    /// The kept secrets of `handle`, if the vault has written no bundle
    /// since they were fetched (`written` is its count now).
    pub fn secrets(&self, handle: u32, written: u64) -> Option<Arc<Secrets>> {
        match &self.entry(handle)?.secrets {
            Some((at, secrets)) if *at == written => Some(secrets.clone()),
            _ => None,
        }
    }

    /// Notes the id the policy gave for `handle`.
    pub fn learn(&mut self, handle: u32, id: Arc<str>) {
        let i = handle as usize;
        if self.entries.len() <= i {
            self.entries.resize_with(i + 1, || None);
        }
        self.entries[i] = Some(Entry { id, secrets: None });
    }

    /// Keeps secrets fetched for `handle` when the vault's count was
    /// `written`, unless the handle now names another credential.
    pub fn keep_secrets(&mut self, handle: u32, id: &str, written: u64, secrets: Arc<Secrets>) {
        if let Some(Some(e)) = self.entries.get_mut(handle as usize)
            && &*e.id == id
        {
            e.secrets = Some((written, secrets));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_reused_only_while_the_vault_wrote_nothing() {
        let mut h = Handles::default();
        assert!(h.id(3).is_none());
        h.learn(3, "c3".into());
        assert_eq!(h.id(3).map(|s| &**s), Some("c3"));
        assert!(h.secrets(3, 7).is_none());
        h.keep_secrets(3, "c3", 7, Arc::new(Secrets::default()));
        assert!(h.secrets(3, 7).is_some());
        assert!(
            h.secrets(3, 8).is_none(),
            "a bundle write since: fetch again"
        );
        // Secrets fetched for another credential are not kept.
        h.keep_secrets(3, "other", 9, Arc::new(Secrets::default()));
        assert!(h.secrets(3, 9).is_none());
        assert!(h.id(1).is_none());
    }
}
