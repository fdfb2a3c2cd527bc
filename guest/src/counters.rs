//! Counter pages: the hot counters of up to [`PAGE_SLOTS`] credentials in
//! one binary record (`ctr/<page>`), so a flush writes one small record per
//! page touched instead of re-serialising every credential touched.
//!
//! Each credential owns a place (its counter index, stored in its durable
//! record with a random tag). On load an entry is merged over the record
//! only when its tag matches (not a former holder of the place) and it has
//! seen more uses and results than the record (it was written later).

use crate::model::Millis;

/// Stored-key prefix of counter pages.
pub const PREFIX: &str = "ctr/";
/// Entries per page.
pub const PAGE_SLOTS: u32 = 256;
/// Bytes of one entry.
pub const ENTRY_BYTES: usize = 52;
/// First byte of every page: the format.
const VERSION: u8 = 1;
/// Counter indexes at or above this are refused as corrupt.
pub const MAX_INDEX: u32 = 1 << 24;

/// One credential's hot counters: everything a report or acquire changes
/// without a status change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The owner's tag; 0 = empty place.
    pub tag: u32,
    pub consecutive_failures: u32,
    pub health: u8,
    pub block_streak: u8,
    pub rate_limit_streak: u8,
    /// The learned pace as [`crate::pace::encode`] writes it (0 = none);
    /// in the byte pages written before it left at 0.
    pub pace: u8,
    pub use_count: u64,
    pub success_count: u64,
    pub fail_count: u64,
    /// Raw (`i64::MIN` = never).
    pub last_used_at: Millis,
    /// Raw (`i64::MIN` = none).
    pub cooldown_until: Millis,
}

impl Entry {
    /// Uses plus results: every counter change without a status change
    /// raises it, so a higher value is a later write.
    pub fn progress(&self) -> u64 {
        progress(self.use_count, self.success_count, self.fail_count)
    }

    /// Writes the entry into `out` (exactly [`ENTRY_BYTES`]): fixed
    /// offsets, no growth checks (a flush encodes every entry of a page).
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.tag.to_le_bytes());
        out[4..8].copy_from_slice(&self.consecutive_failures.to_le_bytes());
        out[8..12].copy_from_slice(&[
            self.health,
            self.block_streak,
            self.rate_limit_streak,
            self.pace,
        ]);
        out[12..20].copy_from_slice(&self.use_count.to_le_bytes());
        out[20..28].copy_from_slice(&self.success_count.to_le_bytes());
        out[28..36].copy_from_slice(&self.fail_count.to_le_bytes());
        out[36..44].copy_from_slice(&self.last_used_at.to_le_bytes());
        out[44..52].copy_from_slice(&self.cooldown_until.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Entry {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Entry {
            tag: u32_at(0),
            consecutive_failures: u32_at(4),
            health: b[8],
            block_streak: b[9],
            rate_limit_streak: b[10],
            pace: b[11],
            use_count: u64_at(12),
            success_count: u64_at(20),
            fail_count: u64_at(28),
            last_used_at: u64_at(36) as i64,
            cooldown_until: u64_at(44) as i64,
        }
    }
}

pub fn progress(uses: u64, successes: u64, failures: u64) -> u64 {
    uses.saturating_add(successes).saturating_add(failures)
}

/// The page holding counter index `index`, and its place in it.
pub fn locate(index: u32) -> (u32, usize) {
    (index / PAGE_SLOTS, (index % PAGE_SLOTS) as usize)
}

pub fn page_key(page: u32) -> String {
    format!("{PREFIX}{page:06x}")
}

/// The page number of a stored key, if it is one.
pub fn page_of_key(key: &str) -> Option<u32> {
    let hex = key.strip_prefix(PREFIX)?;
    u32::from_str_radix(hex, 16).ok()
}

/// Encodes a page's entries (empty places as zeros), without trailing
/// empty places. `None` when every place is empty: delete the page.
pub fn encode_page(entries: impl ExactSizeIterator<Item = Entry>) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 1 + entries.len() * ENTRY_BYTES];
    out[0] = VERSION;
    let mut used = 0;
    for (i, (e, slot)) in entries
        .zip(out[1..].chunks_exact_mut(ENTRY_BYTES))
        .enumerate()
    {
        if e.tag != 0 {
            e.encode(slot);
            used = i + 1;
        }
    }
    out.truncate(1 + used * ENTRY_BYTES);
    (used > 0).then_some(out)
}

/// The entry at `place` of a stored page, if present and not empty.
pub fn read_entry(page: &[u8], place: usize) -> Option<Entry> {
    if page.first() != Some(&VERSION) {
        return None;
    }
    let start = 1 + place * ENTRY_BYTES;
    let e = Entry::decode(page.get(start..start + ENTRY_BYTES)?);
    (e.tag != 0).then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u32, n: u64) -> Entry {
        Entry {
            tag,
            consecutive_failures: 3,
            health: 77,
            block_streak: 1,
            rate_limit_streak: 2,
            pace: 97,
            use_count: n,
            success_count: n / 2,
            fail_count: 1,
            last_used_at: 1_700_000_000_123,
            cooldown_until: i64::MIN,
        }
    }

    #[test]
    fn pages_round_trip_and_trim_empty_places() {
        let mut entries = vec![Entry::default(); PAGE_SLOTS as usize];
        entries[0] = entry(5, 10);
        entries[7] = entry(9, u64::MAX);
        let page = encode_page(entries.iter().copied()).unwrap();
        assert_eq!(page.len(), 1 + 8 * ENTRY_BYTES);
        assert_eq!(read_entry(&page, 0), Some(entries[0]));
        assert_eq!(read_entry(&page, 7), Some(entries[7]));
        assert_eq!(read_entry(&page, 3), None);
        assert_eq!(read_entry(&page, 200), None);
        assert_eq!(entries[7].progress(), u64::MAX);
        assert_eq!(encode_page(std::iter::repeat_n(Entry::default(), 4)), None);
        assert_eq!(read_entry(&[2, 0, 0], 0), None, "unknown format");
    }

    #[test]
    fn keys_name_their_page() {
        assert_eq!(page_key(0x1a), "ctr/00001a");
        assert_eq!(page_of_key(&page_key(0x1a)), Some(0x1a));
        assert_eq!(page_of_key("cred/x"), None);
        assert_eq!(locate(513), (2, 1));
    }
}
