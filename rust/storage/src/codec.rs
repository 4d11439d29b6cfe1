//! Decompression of a batch's records section, for the few paths that need individual records:
//! ListOffsets by timestamp and by max timestamp, in-process readers, the cleaner and the key check
//! of compacted topics; and compression, for the cleaner's rewritten batches. The produce and
//! fetch paths never decompress: batches are stored and served as producers sent them.
//!
//! Kafka's codecs: gzip (a gzip stream), snappy (Xerial's framing from Java producers, or a raw
//! block), lz4 (the LZ4 frame format), zstd (a zstd frame). Output is bounded by
//! `DECOMPRESSED_RECORDS_BYTES_MAX`, so a small batch cannot make the broker allocate without
//! limit.

use std::borrow::Cow;
use std::io::Read;

use crate::batch::{BatchHeader, Compression};
use crate::error::{Result, StorageError};
use crate::limits::{BATCH_HEADER_BYTES, DECOMPRESSED_RECORDS_BYTES_MAX};

/// The 8-byte magic of Xerial's snappy framing, then a version and a compatible version.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

fn corrupt(codec: &str, detail: impl std::fmt::Display) -> StorageError {
    StorageError::CorruptRecord(format!("{codec} records do not decompress: {detail}"))
}

fn too_large() -> StorageError {
    StorageError::CorruptRecord(format!("records decompress to more than {DECOMPRESSED_RECORDS_BYTES_MAX} bytes"))
}

/// Reads `reader` to its end, refusing more than the bound.
fn read_bounded(reader: impl Read, codec: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let limit = DECOMPRESSED_RECORDS_BYTES_MAX as u64 + 1;
    reader.take(limit).read_to_end(&mut out).map_err(|e| corrupt(codec, e))?;
    if out.len() > DECOMPRESSED_RECORDS_BYTES_MAX {
        return Err(too_large());
    }
    Ok(out)
}

fn snappy_block(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let length = snap::raw::decompress_len(data).map_err(|e| corrupt("snappy", e))?;
    if out.len() + length > DECOMPRESSED_RECORDS_BYTES_MAX {
        return Err(too_large());
    }
    let start = out.len();
    out.resize(start + length, 0);
    snap::raw::Decoder::new().decompress(data, &mut out[start..]).map_err(|e| corrupt("snappy", e))?;
    Ok(())
}

fn snappy(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, &mut out)?;
        return Ok(out);
    }
    let mut at = XERIAL_HEADER_BYTES.min(data.len());
    while at < data.len() {
        let Some(length) = data.get(at..at + 4) else { return Err(corrupt("snappy", "cut in a block length")) };
        let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
        at += 4;
        let Some(block) = data.get(at..at + length) else { return Err(corrupt("snappy", "cut in a block")) };
        snappy_block(block, &mut out)?;
        at += length;
    }
    Ok(out)
}

/// The records of `batch` (a whole batch) as they are before compression: borrowed when the
/// batch is uncompressed.
pub fn records_of<'a>(header: &BatchHeader, batch: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    let records = &batch[BATCH_HEADER_BYTES..header.size_bytes().min(batch.len())];
    decompress(header.compression_id(), records)
}

/// Decompresses a records section compressed with Kafka codec `codec` (0: none).
pub fn decompress(codec: i16, data: &[u8]) -> Result<Cow<'_, [u8]>> {
    let out = match Compression::from_id(codec) {
        Some(Compression::None) => return Ok(Cow::Borrowed(data)),
        Some(Compression::Gzip) => read_bounded(flate2::read::MultiGzDecoder::new(data), "gzip")?,
        Some(Compression::Snappy) => snappy(data)?,
        Some(Compression::Lz4) => read_bounded(lz4_flex::frame::FrameDecoder::new(data), "lz4")?,
        Some(Compression::Zstd) => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt("zstd", e))?;
            read_bounded(decoder, "zstd")?
        }
        None => return Err(StorageError::InvalidRecord(format!("unknown compression id {codec}"))),
    };
    Ok(Cow::Owned(out))
}

/// Xerial's block size for snappy, as Kafka's Java producer writes it.
const XERIAL_BLOCK_BYTES: usize = 32 << 10;
/// Xerial's header: magic, then version 1 and compatible version 1.
const XERIAL_VERSIONS: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 1];

fn encode_failed(codec: &str, detail: impl std::fmt::Display) -> StorageError {
    StorageError::Io(std::io::Error::other(format!("{codec} compression failed: {detail}")))
}

/// Compresses a records section with Kafka codec `codec` (0: none), in the form Kafka's own
/// broker writes when it recompresses (the cleaner, after removing records): a gzip stream,
/// snappy in Xerial's framing, an LZ4 frame, a zstd frame.
pub fn compress(codec: i16, data: &[u8]) -> Result<Cow<'_, [u8]>> {
    use std::io::Write;
    let out = match Compression::from_id(codec) {
        Some(Compression::None) => return Ok(Cow::Borrowed(data)),
        Some(Compression::Gzip) => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(|e| encode_failed("gzip", e))?;
            encoder.finish().map_err(|e| encode_failed("gzip", e))?
        }
        Some(Compression::Snappy) => {
            let mut out = Vec::with_capacity(data.len() / 2 + XERIAL_HEADER_BYTES);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&XERIAL_VERSIONS);
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block).map_err(|e| encode_failed("snappy", e))?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        Some(Compression::Lz4) => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data).map_err(|e| encode_failed("lz4", e))?;
            encoder.finish().map_err(|e| encode_failed("lz4", e))?
        }
        Some(Compression::Zstd) => zstd::bulk::compress(data, 3).map_err(|e| encode_failed("zstd", e))?,
        None => return Err(StorageError::InvalidRecord(format!("unknown compression id {codec}"))),
    };
    Ok(Cow::Owned(out))
}
