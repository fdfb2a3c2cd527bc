//! A backend in a sorted map: for tests and the demo.

use super::{Backend, BackendError, Swap, Write};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryBackend {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key and value, for tests that inspect what was stored.
    pub fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let map = self.map.lock().unwrap();
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Overwrites raw bytes under a key, for tamper tests.
    pub fn put_raw(&self, key: &str, value: Vec<u8>) {
        self.map.lock().unwrap().insert(key.to_string(), value);
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    fn apply(&self, writes: &[Write]) -> Result<(), BackendError> {
        self.apply_owned(writes.to_vec())
    }

    fn apply_owned(&self, writes: Vec<Write>) -> Result<(), BackendError> {
        let mut map = self.map.lock().unwrap();
        for w in writes {
            match w {
                Write::Put(k, v) => {
                    map.insert(k, v);
                }
                Write::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        let mut map = self.map.lock().unwrap();
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(v) => map.insert(key.to_string(), v.to_vec()),
            None => map.remove(key),
        };
        Ok(true)
    }

    fn swap_unchanged(&self, swaps: &[Swap]) -> Result<usize, BackendError> {
        let mut map = self.map.lock().unwrap();
        let mut applied = 0;
        for s in swaps {
            if let Some(v) = map.get_mut(&s.key)
                && *v == s.expected
            {
                *v = s.new.clone();
                applied += 1;
            }
        }
        Ok(applied)
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
        let map = self.map.lock().unwrap();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
