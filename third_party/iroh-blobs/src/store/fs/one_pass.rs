//! veilshare's patch: the BLAKE3 hash and pre-order outboard of an import, built while its
//! bytes go by, hashed on every core, and written once.
//!
//! Upstream copies a file into the store and then reads the copy again to build the outboard on
//! one thread (`init_outboard`, which writes 64 bytes per parent node and sends a progress
//! message per chunk group). Here the leaves of the tree, one chaining value per 16 KiB block
//! ([`IROH_BLOCK_SIZE`]), are hashed with `blake3::hazmat` in parallel on rayon's pool as the
//! bytes arrive; the parents (a few thousandths of the work) are merged at the end into the
//! outboard in memory (64 bytes per 16 KiB: 4 MiB per GiB).
//!
//! The layout is bao-tree's `PreOrderOutboard`: each parent's two child chaining values, left
//! then right, parents in pre-order, no header. A tree of `n` blocks splits after the largest
//! power of two below `n`, which is where BLAKE3 splits its chunks: the root hash is BLAKE3's.
//! The tests compare both with bao-tree's own construction for sizes around every boundary.

use std::io::{self, Read, Write};

use bao_tree::blake3::{
    self,
    hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode},
};
use rayon::prelude::*;

use crate::store::IROH_BLOCK_SIZE;

/// Bytes per leaf of the tree.
const BLOCK: usize = 1024 << IROH_BLOCK_SIZE.chunk_log();
/// Blocks one rayon task hashes (256 KiB: enough to dwarf the task's cost).
const BLOCKS_PER_TASK: usize = 16;
/// Bytes read, written and hashed at a time by [`copy_and_hash`].
pub(super) const PIECE: usize = 4 << 20;

/// Hashes a stream of bytes into its BLAKE3 root and pre-order outboard.
#[derive(Debug, Default)]
pub(super) struct OutboardBuilder {
    /// The chaining values of the blocks hashed so far.
    leaves: Vec<ChainingValue>,
    /// The bytes after the last hashed block: 0 to `BLOCK` of them. A block is hashed only
    /// once a byte follows it, because a blob of one block is hashed as the root instead.
    tail: Vec<u8>,
}

impl OutboardBuilder {
    pub(super) fn update(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if !self.tail.is_empty() || data.len() <= BLOCK {
            let take = (BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if data.is_empty() {
                return;
            }
            // A byte follows the full tail: it is a leaf.
            let leaf = leaf(self.leaves.len(), &self.tail);
            self.leaves.push(leaf);
            self.tail.clear();
        }
        // Every full block with a byte after it, in parallel; the rest becomes the tail.
        let whole = (data.len() - 1) / BLOCK * BLOCK;
        let first = self.leaves.len();
        self.leaves.par_extend(
            data[..whole]
                .par_chunks(BLOCK * BLOCKS_PER_TASK)
                .enumerate()
                .flat_map_iter(|(task, group)| {
                    group
                        .chunks(BLOCK)
                        .enumerate()
                        .map(move |(i, block)| leaf(first + task * BLOCKS_PER_TASK + i, block))
                }),
        );
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// The root hash and the outboard (empty for a blob of at most one block).
    pub(super) fn finalize(mut self) -> (blake3::Hash, Vec<u8>) {
        if self.leaves.is_empty() {
            return (blake3::hash(&self.tail), Vec::new());
        }
        let last = leaf(self.leaves.len(), &self.tail);
        self.leaves.push(last);
        let mut outboard = Vec::with_capacity((self.leaves.len() - 1) * 64);
        let (left, right) = children(&self.leaves, &mut outboard);
        let root = merge_subtrees_root(&left, &right, Mode::Hash);
        (root, outboard)
    }
}

/// The chaining value of block `index`.
fn leaf(index: usize, block: &[u8]) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset((index * BLOCK) as u64);
    hasher.update(block);
    hasher.finalize_non_root()
}

/// Writes the parent over `leaves` (at least two) and its descendants to `outboard` in
/// pre-order, and returns its two children's chaining values.
fn children(leaves: &[ChainingValue], outboard: &mut Vec<u8>) -> (ChainingValue, ChainingValue) {
    let split = 1 << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
    let at = outboard.len();
    outboard.extend_from_slice(&[0; 64]);
    let left = subtree(&leaves[..split], outboard);
    let right = subtree(&leaves[split..], outboard);
    outboard[at..at + 32].copy_from_slice(&left);
    outboard[at + 32..at + 64].copy_from_slice(&right);
    (left, right)
}

/// The chaining value of a subtree that is not the root.
fn subtree(leaves: &[ChainingValue], outboard: &mut Vec<u8>) -> ChainingValue {
    if let [leaf] = leaves {
        return *leaf;
    }
    let (left, right) = children(leaves, outboard);
    merge_subtrees_non_root(&left, &right, Mode::Hash)
}

/// Reads `source` to its end, writing every piece to `target` while it is hashed (the write
/// on one of rayon's threads, the hashing on the others). What is hashed is exactly what was
/// written, even if the source changes meanwhile. Returns the size, hash and outboard; to
/// hash only, give `io::sink()`.
pub(super) fn copy_and_hash(
    mut source: impl Read,
    target: &mut (impl Write + Send),
) -> io::Result<(u64, blake3::Hash, Vec<u8>)> {
    let mut builder = OutboardBuilder::default();
    let mut size = 0u64;
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = read_piece(&mut source, &mut buf)?;
        if n == 0 {
            break;
        }
        let piece = &buf[..n];
        let (written, ()) = rayon::join(|| target.write_all(piece), || builder.update(piece));
        written?;
        size += n as u64;
    }
    let (hash, outboard) = builder.finalize();
    Ok((size, hash, outboard))
}

/// Fills `buf` unless the end comes first; the bytes read.
fn read_piece(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use bao_tree::io::outboard::PreOrderMemOutboard;

    use super::*;

    fn data(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn matches_bao_tree_around_every_boundary() {
        let mut sizes = vec![0, 1, 1023, 1024, 1025, BLOCK - 1, BLOCK, BLOCK + 1];
        for blocks in [2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100] {
            sizes.extend([blocks * BLOCK - 1, blocks * BLOCK, blocks * BLOCK + 1]);
        }
        for size in sizes {
            let data = data(size);
            let expected = PreOrderMemOutboard::create(&data, IROH_BLOCK_SIZE);
            // Fed whole, and in awkward pieces that cut blocks anywhere.
            for piece in [size.max(1), 1000, BLOCK, 3 * BLOCK + 5] {
                let mut builder = OutboardBuilder::default();
                for part in data.chunks(piece) {
                    builder.update(part);
                }
                let (hash, outboard) = builder.finalize();
                assert_eq!(hash, blake3::hash(&data), "hash of {size} bytes in {piece}");
                assert_eq!(hash, expected.root, "root of {size} bytes in {piece}");
                assert_eq!(
                    outboard, expected.data,
                    "outboard of {size} bytes in {piece}"
                );
            }
        }
    }
}
