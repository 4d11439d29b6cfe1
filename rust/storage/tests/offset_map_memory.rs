//! The cleaner's offset map holds memory only where keys landed: a new map of Kafka's default
//! size (128 MiB) is not resident, and `clear` gives a used map's pages back. One test in its own
//! binary, so no other test's allocations move the process's RSS meanwhile (Linux: /proc).

use tidelog_storage::OffsetMap;

const MIB: usize = 1 << 20;
/// Kafka's `log.cleaner.dedupe.buffer.size` default.
const DEDUPE_BUFFER_BYTES: usize = 128 * MIB;
/// Slack for the allocator and the test harness between two readings.
const SLACK_BYTES: usize = 8 * MIB;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: a plain libc query.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

#[test]
fn the_map_is_resident_only_where_keys_landed_and_clear_gives_it_back() {
    let before = resident_bytes();
    let mut map = OffsetMap::new(DEDUPE_BUFFER_BYTES);
    let new_map = resident_bytes();
    assert!(new_map < before + SLACK_BYTES, "a new map is resident: {} MiB", (new_map - before) / MIB);

    // Enough keys to touch every page of the map (about 5.6M slots, 1.7 slots per 4 KiB page of
    // offsets): it becomes resident, as a pass over many keys makes it.
    for i in 0..2_000_000u32 {
        assert!(map.put(&i.to_be_bytes(), i as i64));
    }
    let used = resident_bytes();
    assert!(used > before + 64 * MIB, "a used map is resident: {} MiB", (used - before) / MIB);
    assert_eq!(map.get(&7u32.to_be_bytes()), 7);

    map.clear();
    let cleared = resident_bytes();
    assert!(cleared < before + SLACK_BYTES, "a cleared map is still resident: {} MiB", (cleared - before) / MIB);
    assert!(map.is_empty());
    assert_eq!(map.get(&7u32.to_be_bytes()), -1);
    assert!(map.put(&7u32.to_be_bytes(), 0));
    assert_eq!(map.get(&7u32.to_be_bytes()), 0);
}
