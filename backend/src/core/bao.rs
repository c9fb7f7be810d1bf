//! Bao range maths: what a verified range of a blob costs to send. BLAKE3's tree is sent in
//! chunk groups of 16 KiB (iroh-blobs' bao), so a range is paid for in whole groups; both the
//! direct provider and the public `bao/{hash}` route count transfers with it, and the
//! receiving side sizes its pieces by [`MAX_BAO_RANGE`].

use iroh_blobs::protocol::ChunkRanges;

/// Bao sends content in chunk groups of this many bytes.
pub const CHUNK_GROUP: u64 = 16 * 1024;

/// The largest range the public `bao/{hash}` route sends at once.
pub const MAX_BAO_RANGE: u64 = 16 << 20;

/// Bytes of a blob of `size` bytes that a request for `ranges` sends: every range widened to
/// 16 KiB chunk groups, a range past the end as the last group (bao proves the size with it).
pub fn ranges_size(ranges: &ChunkRanges, size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let last_group = (size - 1) / CHUNK_GROUP * CHUNK_GROUP;
    let mut total = 0u64;
    let mut covered = 0u64;
    for pair in ranges.boundaries().chunks(2) {
        let start = pair[0].0.saturating_mul(1024);
        let end = pair.get(1).map_or(u64::MAX, |c| c.0.saturating_mul(1024));
        let mut start = start / CHUNK_GROUP * CHUNK_GROUP;
        let mut end = end
            .div_ceil(CHUNK_GROUP)
            .saturating_mul(CHUNK_GROUP)
            .min(size);
        if start >= size {
            start = last_group;
            end = size;
        }
        let start = start.max(covered);
        if end > start {
            total += end - start;
            covered = end;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use iroh_blobs::protocol::ChunkRangesExt;

    use super::*;

    #[test]
    fn ranges_widen_to_chunk_groups_and_past_the_end_is_the_last_group() {
        // One 1 KiB chunk in the middle costs its whole 16 KiB group.
        assert_eq!(
            ranges_size(&ChunkRanges::chunks(20..21), 100_000),
            16 * 1024
        );
        // The last chunk proves the size: the last group is sent.
        assert_eq!(
            ranges_size(&ChunkRanges::last_chunk(), 100_000),
            100_000 - 6 * 16 * 1024
        );
        // Two ranges in one group count the group once.
        let both = ChunkRanges::chunks(0..1) | ChunkRanges::chunks(3..4);
        assert_eq!(ranges_size(&both, 100_000), 16 * 1024);
        // A small file is sent whole for any range.
        assert_eq!(ranges_size(&ChunkRanges::last_chunk(), 500), 500);
        assert_eq!(ranges_size(&ChunkRanges::all(), 0), 0);
    }
}
