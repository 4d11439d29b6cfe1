//! A seeded, coverage-less mutator for the stable driver: the same seed gives the same inputs
//! on every machine. Byte-level mutations (flips, interesting integers, inserts, deletes,
//! copies, splices) plus two that know the formats: batch CRCs recomputed after a mutation, so
//! inputs get past the checksum, and recovery inputs mutated one file at a time.

use super::seeds::fix_crcs;
use super::{decode_sections, encode_sections};

/// Inputs grow to at most this many bytes.
pub const INPUT_BYTES_MAX: usize = 256 << 10;

/// splitmix64: tiny, fast and good enough to drive mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that sit on the boundaries of the checks: lengths, offsets, counts, sizes.
const INTERESTING: [i64; 20] = [
    0,
    1,
    -1,
    2,
    12,
    49,
    60,
    61,
    127,
    128,
    255,
    0x7fff,
    -0x8000,
    0xffff,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    i64::MAX,
    i64::MIN,
    1 << 31,
];

fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = data.len();
        match rng.below(11) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.next() as u8;
            }
            2 | 3 if len > 0 => {
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = value.to_be_bytes();
                let at = rng.below(len);
                let end = (at + width).min(len);
                data[at..end].copy_from_slice(&bytes[8 - width..8 - width + end - at]);
            }
            4 if len > 0 => {
                // Add or subtract a little from a big-endian 4-byte field (lengths, counts).
                let at = rng.below(len);
                let end = (at + 4).min(len);
                let mut word = [0u8; 4];
                word[..end - at].copy_from_slice(&data[at..end]);
                let delta = rng.below(33) as i32 - 16;
                let changed = i32::from_be_bytes(word).wrapping_add(delta).to_be_bytes();
                data[at..end].copy_from_slice(&changed[..end - at]);
            }
            5 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(16);
                let fill: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
                data.splice(at..at, fill);
            }
            6 if len > 0 => {
                let at = rng.below(len);
                let count = 1 + rng.below((len - at).min(64));
                data.drain(at..at + count);
            }
            7 if len > 0 => {
                let from = rng.below(len);
                let count = 1 + rng.below((len - from).min(256));
                let piece = data[from..from + count].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, piece);
            }
            8 if len > 0 => {
                data.truncate(rng.below(len));
            }
            9 if !pool.is_empty() => {
                // Splice: the head of this input with the tail of another.
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                if len > 0 {
                    let at = rng.below(len);
                    data[at] = data[at].wrapping_add(1);
                }
            }
        }
    }
    data.truncate(INPUT_BYTES_MAX);
}

/// A batch-target input: selector byte, then records; CRCs fixed half the time.
pub fn mutate_batch_input(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    if rng.chance(8) {
        if let Some(first) = out.first_mut() {
            *first = rng.next() as u8;
        }
    }
    let mut records = out.split_off(1.min(out.len()));
    mutate_bytes(rng, &mut records, pool);
    if rng.chance(2) {
        fix_crcs(&mut records);
    }
    out.extend(records);
    out
}

/// A recovery input: one file mutated (a log's CRCs fixed half the time), or a file added,
/// dropped or given another base offset, or the raw encoding mutated.
pub fn mutate_recovery_input(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let Some((&selector, rest)) = input.split_first() else { return vec![0] };
    let mut sections = decode_sections(rest);
    let selector = if rng.chance(16) { rng.next() as u8 } else { selector };
    match rng.below(10) {
        0 => {
            let mut raw = input.to_vec();
            mutate_bytes(rng, &mut raw, &[]);
            return raw;
        }
        1 if !sections.is_empty() => {
            sections.remove(rng.below(sections.len()));
        }
        2 if !pool.is_empty() => {
            let other = &pool[rng.below(pool.len())];
            let others = decode_sections(&other[1.min(other.len())..]);
            if !others.is_empty() {
                sections.push(others[rng.below(others.len())].clone());
            }
        }
        3 if !sections.is_empty() => {
            let at = rng.below(sections.len());
            sections[at].base_offset = match rng.below(3) {
                0 => rng.below(64) as i64,
                1 => INTERESTING[rng.below(INTERESTING.len())] & (super::APPEND_OFFSET_MAX - 1),
                _ => sections[at].base_offset.wrapping_add(rng.below(9) as i64 - 4) & (super::APPEND_OFFSET_MAX - 1),
            };
        }
        _ if !sections.is_empty() => {
            let at = rng.below(sections.len());
            let section = &mut sections[at];
            mutate_bytes(rng, &mut section.bytes, &[]);
            if section.kind == super::FileKind::Log && rng.chance(2) {
                fix_crcs(&mut section.bytes);
            }
        }
        _ => {}
    }
    let mut out = vec![selector];
    out.extend(encode_sections(&sections));
    out.truncate(INPUT_BYTES_MAX);
    out
}

/// An index-target input: selector and number kept most of the time, the file mutated.
pub fn mutate_index_input(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    if out.len() < 5 || rng.chance(10) {
        mutate_bytes(rng, &mut out, pool);
        return out;
    }
    let mut file = out.split_off(5);
    mutate_bytes(rng, &mut file, &[]);
    out.extend(file);
    out
}
