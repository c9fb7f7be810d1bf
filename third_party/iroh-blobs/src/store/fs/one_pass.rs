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
//!
//! Memory stays bounded whatever the size: every [`GROUP_BLOCKS`] blocks (64 MiB) that have a
//! byte after them are a whole subtree of the final tree (BLAKE3's tree is left-complete), so
//! their parents, which are contiguous in pre-order, are computed then, written to a spill file
//! (unnamed, in the store's temp folder) and only the group's chaining value is kept. At the
//! end the parents above the groups are merged, and the outboard is written in pre-order to a
//! temp file: those parents, with each group's parents copied from the spill in turn. An
//! import holds about 0.6 MiB however large it is (a 4 MiB piece buffer aside), where keeping
//! every leaf and the whole outboard in memory took 6 MiB per GiB.

use std::{
    fs::File,
    io::{self, BufWriter, Read, Seek, Write},
    path::PathBuf,
};

use bao_tree::blake3::{
    self,
    hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode},
};
use rayon::prelude::*;

use super::options::PathOptions;
use crate::store::IROH_BLOCK_SIZE;

/// Bytes per leaf of the tree.
const BLOCK: usize = 1024 << IROH_BLOCK_SIZE.chunk_log();
/// Blocks in a group whose parents are spilled as soon as it is complete (64 MiB of data,
/// 256 KiB of parents). A power of two.
const GROUP_BLOCKS: usize = 4096;
/// Blocks one rayon task hashes (256 KiB: enough to dwarf the task's cost).
const BLOCKS_PER_TASK: usize = 16;
/// Bytes read, written and hashed at a time by [`copy_and_hash`].
pub(super) const PIECE: usize = 4 << 20;

/// A pre-order outboard, in memory or (a large one) in a temp file of the store.
#[derive(Debug)]
pub(super) enum Outboard {
    Mem(Vec<u8>),
    File(PathBuf),
}

/// Hashes a stream of bytes into its BLAKE3 root and pre-order outboard.
#[derive(Debug)]
pub(super) struct OutboardBuilder {
    /// Blocks per spilled group.
    group_blocks: usize,
    /// The chaining values of the groups spilled so far.
    groups: Vec<ChainingValue>,
    /// The spilled groups' parents, in order: in a file created with the first group, or in
    /// memory where the builder has no temp folder (tests).
    spill: Spill,
    /// The chaining values of the blocks hashed since the last spilled group.
    leaves: Vec<ChainingValue>,
    /// The bytes after the last hashed block: 0 to `BLOCK` of them. A block is hashed only
    /// once a byte follows it, because a blob of one block is hashed as the root instead.
    tail: Vec<u8>,
    /// Where a large outboard and the spill go; `None`: memory.
    temp: Option<PathOptions>,
}

#[derive(Debug)]
enum Spill {
    Mem(Vec<u8>),
    File(File),
}

impl OutboardBuilder {
    /// A builder whose spill and large outboard go to the store's temp folder.
    pub(super) fn new(temp: &PathOptions) -> Self {
        Self::with_groups(GROUP_BLOCKS, Some(temp.clone()))
    }

    fn with_groups(group_blocks: usize, temp: Option<PathOptions>) -> Self {
        debug_assert!(group_blocks.is_power_of_two() && group_blocks >= 2);
        Self {
            group_blocks,
            groups: Vec::new(),
            spill: Spill::Mem(Vec::new()),
            leaves: Vec::new(),
            tail: Vec::new(),
            temp,
        }
    }

    /// Blocks hashed so far (the index of the next one).
    fn blocks(&self) -> usize {
        self.groups.len() * self.group_blocks + self.leaves.len()
    }

    pub(super) fn update(&mut self, data: &[u8]) -> io::Result<()> {
        self.hash_leaves(data);
        // Every full group has a byte after it (a leaf is hashed only then): a whole subtree.
        while self.leaves.len() >= self.group_blocks {
            let mut parents = Vec::with_capacity((self.group_blocks - 1) * 64);
            let (left, right) = children(&self.leaves[..self.group_blocks], &mut parents);
            self.spill_parents(&parents)?;
            self.groups
                .push(merge_subtrees_non_root(&left, &right, Mode::Hash));
            self.leaves.drain(..self.group_blocks);
        }
        Ok(())
    }

    fn spill_parents(&mut self, parents: &[u8]) -> io::Result<()> {
        if let Some(temp) = self.temp.as_ref().filter(|_| self.groups.is_empty()) {
            // An unnamed file: nothing is left behind, whatever happens to the import.
            let path = temp.temp_file_name();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            self.spill = Spill::File(file);
        }
        match &mut self.spill {
            Spill::Mem(held) => held.extend_from_slice(parents),
            Spill::File(file) => file.write_all(parents)?,
        }
        Ok(())
    }

    fn hash_leaves(&mut self, mut data: &[u8]) {
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
            let leaf = leaf(self.blocks(), &self.tail);
            self.leaves.push(leaf);
            self.tail.clear();
        }
        // Every full block with a byte after it, in parallel; the rest becomes the tail.
        let whole = (data.len() - 1) / BLOCK * BLOCK;
        let first = self.blocks();
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
    pub(super) fn finalize(mut self) -> io::Result<(blake3::Hash, Outboard)> {
        if self.groups.is_empty() && self.leaves.is_empty() {
            return Ok((blake3::hash(&self.tail), Outboard::Mem(Vec::new())));
        }
        let last = leaf(self.blocks(), &self.tail);
        self.leaves.push(last);
        if self.groups.is_empty() {
            let mut outboard = Vec::with_capacity((self.leaves.len() - 1) * 64);
            let (left, right) = children(&self.leaves, &mut outboard);
            let root = merge_subtrees_root(&left, &right, Mode::Hash);
            return Ok((root, Outboard::Mem(outboard)));
        }
        let tree = Tree {
            group_blocks: self.group_blocks,
            groups: &self.groups,
            leaves: &self.leaves,
        };
        let blocks = tree.blocks();
        let split = largest_power_of_two_below(blocks);
        let (left, right) = (tree.value(0, split), tree.value(split, blocks));
        let root = merge_subtrees_root(&left, &right, Mode::Hash);
        let spill: Box<dyn Read> = match &mut self.spill {
            Spill::Mem(held) => Box::new(io::Cursor::new(std::mem::take(held))),
            Spill::File(file) => {
                file.rewind()?;
                Box::new(io::BufReader::with_capacity(1 << 20, file))
            }
        };
        let mut writer = Preorder {
            tree,
            spill,
            group: vec![0; (self.group_blocks - 1) * 64],
        };
        let outboard = match &self.temp {
            None => {
                let mut outboard = Vec::new();
                writer.write(0, blocks, &mut outboard)?;
                Outboard::Mem(outboard)
            }
            Some(temp) => {
                let path = temp.temp_file_name();
                let written = std::fs::File::create(&path).and_then(|file| {
                    let mut out = BufWriter::with_capacity(1 << 20, file);
                    writer.write(0, blocks, &mut out)?;
                    out.into_inner().map_err(|e| e.into_error())?;
                    Ok(())
                });
                if let Err(cause) = written {
                    std::fs::remove_file(&path).ok();
                    return Err(cause);
                }
                Outboard::File(path)
            }
        };
        Ok((root, outboard))
    }
}

/// The tree of a builder with spilled groups: blocks `0..groups * group_blocks` are the
/// groups, the rest are `leaves`.
struct Tree<'a> {
    group_blocks: usize,
    groups: &'a [ChainingValue],
    leaves: &'a [ChainingValue],
}

impl Tree<'_> {
    fn blocks(&self) -> usize {
        self.groups.len() * self.group_blocks + self.leaves.len()
    }

    /// The spilled group that blocks `start..end` are, if they are one.
    fn group(&self, start: usize, end: usize) -> Option<usize> {
        let index = start / self.group_blocks;
        (start % self.group_blocks == 0
            && end - start == self.group_blocks
            && index < self.groups.len())
        .then_some(index)
    }

    /// The chaining value of the subtree over blocks `start..end` (not the root).
    fn value(&self, start: usize, end: usize) -> ChainingValue {
        if let Some(group) = self.group(start, end) {
            return self.groups[group];
        }
        if end - start == 1 {
            return self.leaves[start - self.groups.len() * self.group_blocks];
        }
        let split = start + largest_power_of_two_below(end - start);
        let (left, right) = (self.value(start, split), self.value(split, end));
        merge_subtrees_non_root(&left, &right, Mode::Hash)
    }
}

/// Writes the pre-order parents of a [`Tree`], a spilled group's from the spill.
struct Preorder<'a> {
    tree: Tree<'a>,
    spill: Box<dyn Read + 'a>,
    group: Vec<u8>,
}

impl Preorder<'_> {
    /// The parents of the subtree over blocks `start..end` (at least two).
    fn write(&mut self, start: usize, end: usize, out: &mut impl Write) -> io::Result<()> {
        if self.tree.group(start, end).is_some() {
            // Groups are spilled in order, and pre-order visits them in order.
            self.spill.read_exact(&mut self.group)?;
            return out.write_all(&self.group);
        }
        let split = start + largest_power_of_two_below(end - start);
        out.write_all(&self.tree.value(start, split))?;
        out.write_all(&self.tree.value(split, end))?;
        if split - start > 1 {
            self.write(start, split, out)?;
        }
        if end - split > 1 {
            self.write(split, end, out)?;
        }
        Ok(())
    }
}

/// The largest power of two below `n` (at least 2): where a subtree of `n` blocks splits.
fn largest_power_of_two_below(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
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
    let split = largest_power_of_two_below(leaves.len());
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
    temp: &PathOptions,
) -> io::Result<(u64, blake3::Hash, Outboard)> {
    let mut builder = OutboardBuilder::new(temp);
    let mut size = 0u64;
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = read_piece(&mut source, &mut buf)?;
        if n == 0 {
            break;
        }
        let piece = &buf[..n];
        let (written, hashed) =
            rayon::join(|| target.write_all(piece), || builder.update(piece));
        written?;
        hashed?;
        size += n as u64;
    }
    let (hash, outboard) = builder.finalize()?;
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

    /// A store's temp folder of its own, removed at the end.
    struct TempFolder(PathOptions);

    impl TempFolder {
        fn new(name: &str) -> Self {
            let root = std::env::temp_dir().join(format!(
                "veilshare-one-pass-{}-{name}",
                std::process::id()
            ));
            std::fs::create_dir_all(root.join("temp")).expect("temp folder");
            Self(PathOptions::new(&root))
        }

        fn files(&self) -> usize {
            std::fs::read_dir(&self.0.temp_path).expect("list").count()
        }
    }

    impl Drop for TempFolder {
        fn drop(&mut self) {
            let root = self.0.temp_path.parent().expect("root").to_owned();
            std::fs::remove_dir_all(root).ok();
        }
    }

    #[test]
    fn matches_bao_tree_around_every_boundary() {
        let mut sizes = vec![0, 1, 1023, 1024, 1025, BLOCK - 1, BLOCK, BLOCK + 1];
        for blocks in [2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100] {
            sizes.extend([blocks * BLOCK - 1, blocks * BLOCK, blocks * BLOCK + 1]);
        }
        let folder = TempFolder::new("boundaries");
        for size in sizes {
            let data = data(size);
            let expected = PreOrderMemOutboard::create(&data, IROH_BLOCK_SIZE);
            // Fed whole, and in awkward pieces that cut blocks anywhere; with everything in
            // memory, and with groups of 2, 4 and 8 blocks spilled to memory or to a file.
            for piece in [size.max(1), 1000, BLOCK, 3 * BLOCK + 5] {
                for (groups, temp) in [
                    (GROUP_BLOCKS, None),
                    (2, None),
                    (4, Some(&folder.0)),
                    (8, Some(&folder.0)),
                ] {
                    let mut builder = OutboardBuilder::with_groups(groups, temp.cloned());
                    for part in data.chunks(piece) {
                        builder.update(part).expect("update");
                    }
                    let (hash, outboard) = builder.finalize().expect("finalize");
                    let outboard = match outboard {
                        Outboard::Mem(outboard) => outboard,
                        Outboard::File(path) => {
                            // The spill left nothing behind: the outboard is the only file.
                            assert_eq!(folder.files(), 1, "{size} bytes: files in temp");
                            let outboard = std::fs::read(&path).expect("outboard");
                            std::fs::remove_file(path).expect("remove");
                            outboard
                        }
                    };
                    let case = format!("{size} bytes in {piece}, groups of {groups}");
                    assert_eq!(hash, blake3::hash(&data), "hash of {case}");
                    assert_eq!(hash, expected.root, "root of {case}");
                    assert!(outboard == expected.data, "outboard of {case}");
                }
            }
        }
        assert_eq!(folder.files(), 0);
    }
}
