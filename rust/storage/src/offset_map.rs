//! The cleaner's offset map (Kafka's `SkimpyOffsetMap`): record key → the last offset holding it
//! in the dirty part of the log, in a fixed amount of memory (`log.cleaner.dedupe.buffer.size`).
//!
//! Keys are stored as their 128-bit XXH3 hash (Kafka stores a 16-byte MD5): two keys sharing a
//! hash would lose the older one's latest value, at odds of about n²/2¹²⁹ for n keys. Open
//! addressing with linear probing; the map counts as full at `LOAD_FACTOR` of its slots, as
//! Kafka's `log.cleaner.io.buffer.load.factor` does, and a full map ends the pass's dirty range
//! there (the next pass goes on from it).
//!
//! An empty slot is all zeros (a slot holds its offset plus one), so the map's memory comes zeroed
//! from the system and a page is resident only once a key lands in it: an idle broker does not
//! hold the 128 MiB default (its offsets alone, filled with a marker, were 43 MiB of a just-started
//! broker's RSS), and `clear` hands the pages back instead of writing every slot.

use xxhash_rust::xxh3::xxh3_128;

/// Bytes one slot takes: the hash and the offset.
pub const SLOT_BYTES: usize = 24;
/// Share of the slots filled before the map counts as full (Kafka's default 0.9).
pub const LOAD_FACTOR: f64 = 0.9;
/// What `get` answers for a key the map does not have.
const ABSENT: i64 = -1;
/// A slot's stored value when it is empty (a stored value is its offset plus one).
const EMPTY_SLOT: u64 = 0;

pub struct OffsetMap {
    hashes: Vec<u128>,
    /// Offset + 1 per slot; `EMPTY_SLOT` for none.
    offsets: Vec<u64>,
    entries: usize,
    /// The last offset the map covers (`-1`: none yet).
    pub latest_offset: i64,
}

impl OffsetMap {
    /// A map in `memory_bytes` (at least one slot).
    pub fn new(memory_bytes: usize) -> OffsetMap {
        OffsetMap::with_slots((memory_bytes / SLOT_BYTES).max(2))
    }

    fn with_slots(slots: usize) -> OffsetMap {
        // vec![0; n] is a zeroed allocation (calloc): no page is touched until written.
        OffsetMap { hashes: vec![0; slots], offsets: vec![EMPTY_SLOT; slots], entries: 0, latest_offset: -1 }
    }

    pub fn slots(&self) -> usize {
        self.hashes.len()
    }
    pub fn len(&self) -> usize {
        self.entries
    }
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
    /// Entries the map takes before it counts as full.
    pub fn capacity(&self) -> usize {
        ((self.slots() as f64 * LOAD_FACTOR) as usize).clamp(1, self.slots() - 1)
    }
    pub fn is_full(&self) -> bool {
        self.entries >= self.capacity()
    }
    pub fn utilization(&self) -> f64 {
        self.entries as f64 / self.slots() as f64
    }

    /// Empties the map. A used map's memory goes back to the system and fresh zeroed memory
    /// takes its place (cheaper than writing every slot, and not resident until used again).
    pub fn clear(&mut self) {
        if self.entries > 0 || self.latest_offset != -1 {
            let slots = self.slots();
            *self = OffsetMap { hashes: Vec::new(), offsets: Vec::new(), entries: 0, latest_offset: -1 };
            *self = OffsetMap::with_slots(slots);
        }
    }

    fn slot_of(&self, hash: u128) -> (usize, bool) {
        let slots = self.slots();
        let mut slot = (hash as u64 % slots as u64) as usize;
        loop {
            if self.offsets[slot] == EMPTY_SLOT {
                return (slot, false);
            }
            if self.hashes[slot] == hash {
                return (slot, true);
            }
            slot = if slot + 1 == slots { 0 } else { slot + 1 };
        }
    }

    /// Records `offset` as the latest for `key`. A new key in a full map is refused (`false`).
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = xxh3_128(key);
        let (slot, found) = self.slot_of(hash);
        if !found {
            if self.is_full() {
                return false;
            }
            self.hashes[slot] = hash;
            self.entries += 1;
        }
        debug_assert!(offset >= 0, "offsets are not negative");
        self.offsets[slot] = offset as u64 + 1;
        true
    }

    /// The latest offset of `key`, or -1 if the map does not have it.
    pub fn get(&self, key: &[u8]) -> i64 {
        let (slot, found) = self.slot_of(xxh3_128(key));
        if found {
            (self.offsets[slot] - 1) as i64
        } else {
            ABSENT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_of_each_key_and_refuses_new_keys_when_full() {
        let mut map = OffsetMap::new(10 * SLOT_BYTES);
        assert_eq!(map.capacity(), 9);
        for i in 0..9u8 {
            assert!(map.put(&[i], i as i64));
        }
        assert!(map.put(&[3], 100), "a known key is updated in a full map");
        assert!(!map.put(&[42], 101), "a new key is refused");
        assert_eq!(map.get(&[0]), 0, "offset 0 is an offset, not an empty slot");
        assert_eq!(map.get(&[3]), 100);
        assert_eq!(map.get(&[8]), 8);
        assert_eq!(map.get(&[42]), -1);
        map.clear();
        assert_eq!(map.get(&[3]), -1);
        assert!(map.is_empty());
    }
}
