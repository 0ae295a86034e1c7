//! From tree to inode list: inode numbers (root 2, then 11, 12, … in path
//! order), link counts, directory contents, symlink and device encodings,
//! xattr placement, and which logical blocks of each file hold data.

use super::dir::{self, DirEntry};
use super::inode::{self, EXTENTS_FL, I_BLOCK_LEN};
use super::layout::{BLOCK_SIZE, FIRST_INO, ROOT_INO};
use super::xattr::{self, Xattrs};
use super::Ext4Error;
use crate::fs::tree::{self, Node, NodeKind, Tree};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// Name of the directory e2fsck puts orphans in; created when the tree has none.
pub(super) const LOST_FOUND: &str = "lost+found";
/// `i_links_count` limit (`EXT4_LINK_MAX`); directories beyond it count 1 (dir_nlink).
const LINK_MAX: u32 = 65000;
/// Longest symlink target (one block, minus the terminating NUL user space expects).
const SYMLINK_MAX: usize = BLOCK_SIZE as usize - 1;
/// Permission bits of a created lost+found.
pub(super) const LOST_FOUND_MODE: u32 = 0o700;

static NO_XATTRS: BTreeMap<String, Vec<u8>> = BTreeMap::new();
static ZERO_BLOCK: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// A stretch of logical blocks that holds data (outside it: holes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub lblk: u32,
    pub len: u32,
}

/// Where an inode's contents live.
pub(super) enum Body<'a> {
    /// In data blocks mapped by extents: regular files, directories, slow symlinks.
    Blocks { data: Cow<'a, [u8]>, runs: Vec<Run> },
    /// In `i_block` itself: fast symlinks, devices, fifos.
    Inline([u8; I_BLOCK_LEN]),
}

/// One inode to write.
pub(super) struct PlannedInode<'a> {
    pub ino: u32,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub time: i64,
    pub links: u16,
    pub size: u64,
    pub is_dir: bool,
    pub body: Body<'a>,
    pub xattrs: Xattrs,
}

impl PlannedInode<'_> {
    /// Data blocks (excluding extent tree and xattr blocks).
    pub fn data_blocks(&self) -> u64 {
        match &self.body {
            Body::Blocks { runs, .. } => runs.iter().map(|r| u64::from(r.len)).sum(),
            Body::Inline(_) => 0,
        }
    }

    /// `i_flags`.
    pub fn flags(&self) -> u32 {
        match self.body {
            Body::Blocks { .. } => EXTENTS_FL,
            Body::Inline(_) => 0,
        }
    }
}

/// Position in the inode list of inode `ino` (root first, then 11, 12, …).
pub(super) fn index_of(ino: u32) -> usize {
    if ino == ROOT_INO {
        0
    } else {
        (ino - FIRST_INO + 1) as usize
    }
}

fn ino_at(index: usize) -> u32 {
    if index == 0 {
        ROOT_INO
    } else {
        FIRST_INO + index as u32 - 1
    }
}

/// Display form of a tree path in errors.
pub(super) fn display(path: &str) -> String {
    format!("/{path}")
}

/// Numbered node before its contents are encoded.
struct Proto<'a> {
    path: &'a str,
    /// `None`: the lost+found kiln adds.
    node: Option<&'a Node>,
    links: u32,
    parent: u32,
    entries: Vec<DirEntry<'a>>,
}

fn file_type(kind: &NodeKind) -> u8 {
    match kind {
        NodeKind::Dir => dir::FT_DIR,
        NodeKind::File(_) | NodeKind::Hardlink(_) => dir::FT_REG_FILE,
        NodeKind::Symlink(_) => dir::FT_SYMLINK,
        NodeKind::CharDev { .. } => dir::FT_CHRDEV,
        NodeKind::BlockDev { .. } => dir::FT_BLKDEV,
        NodeKind::Fifo => dir::FT_FIFO,
    }
}

/// The inodes of `tree`, in inode-number order, with a lost+found added
/// (times `lf_time`) if the tree has none.
pub(super) fn plan<'a>(
    tree: &'a Tree,
    fs_seed: u32,
    lf_time: i64,
) -> Result<Vec<PlannedInode<'a>>, Ext4Error> {
    match tree.get("") {
        Some(n) if n.kind == NodeKind::Dir => {}
        _ => return Err(Ext4Error::RootNotDir),
    }
    let add_lost_found = match tree.get(LOST_FOUND) {
        None => true,
        Some(n) if n.kind == NodeKind::Dir => false,
        Some(_) => return Err(Ext4Error::LostFoundNotDir),
    };
    let proto = |path, node| Proto {
        path,
        node,
        links: if matches!(
            node,
            Some(Node {
                kind: NodeKind::Dir,
                ..
            }) | None
        ) {
            2
        } else {
            1
        },
        parent: ROOT_INO,
        entries: Vec::new(),
    };

    // Inode numbers, in path order.
    let mut protos: Vec<Proto<'a>> = Vec::with_capacity(tree.len() + 1);
    let mut inos: HashMap<&'a str, u32> = HashMap::with_capacity(tree.len());
    protos.push(proto("", tree.get("")));
    inos.insert("", ROOT_INO);
    if add_lost_found {
        protos.push(proto(LOST_FOUND, None));
    }
    for (path, node) in tree.iter() {
        if path.is_empty() || matches!(node.kind, NodeKind::Hardlink(_)) {
            continue;
        }
        let ino = ino_at(protos.len());
        inos.insert(path, ino);
        protos.push(proto(path, Some(node)));
    }
    if protos.len() as u64 + u64::from(FIRST_INO) > u64::from(u32::MAX) {
        return Err(Ext4Error::TooManyInodes);
    }

    // Directory entries and link counts. Tree order lists each directory's
    // children in name byte order.
    for (path, node) in tree.iter() {
        if path.is_empty() {
            continue;
        }
        let name = tree::file_name(path);
        if name.len() > dir::NAME_MAX || name.contains('\0') {
            return Err(Ext4Error::BadName {
                path: display(path),
            });
        }
        let parent_path = tree::parent(path).unwrap_or("");
        let parent = match inos.get(parent_path) {
            Some(&p)
                if protos[index_of(p)]
                    .node
                    .is_some_and(|n| n.kind == NodeKind::Dir) =>
            {
                p
            }
            _ => {
                return Err(Ext4Error::ParentNotDir {
                    path: display(path),
                })
            }
        };
        let ino = match &node.kind {
            NodeKind::Hardlink(target) => {
                let t = inos
                    .get(target.as_str())
                    .copied()
                    .filter(|&t| {
                        matches!(
                            protos[index_of(t)].node,
                            Some(Node {
                                kind: NodeKind::File(_),
                                ..
                            })
                        )
                    })
                    .ok_or_else(|| Ext4Error::BadHardlink {
                        path: display(path),
                        target: target.clone(),
                    })?;
                protos[index_of(t)].links += 1;
                if protos[index_of(t)].links > LINK_MAX {
                    return Err(Ext4Error::TooManyLinks {
                        path: display(target),
                    });
                }
                t
            }
            _ => inos[path],
        };
        if node.kind == NodeKind::Dir {
            protos[index_of(parent)].links += 1;
            protos[index_of(ino)].parent = parent;
        }
        protos[index_of(parent)].entries.push(DirEntry {
            name: name.as_bytes(),
            ino,
            file_type: file_type(&node.kind),
        });
    }
    if add_lost_found {
        let root = &mut protos[0];
        let at = root
            .entries
            .partition_point(|e| e.name < LOST_FOUND.as_bytes());
        root.entries.insert(
            at,
            DirEntry {
                name: LOST_FOUND.as_bytes(),
                ino: FIRST_INO,
                file_type: dir::FT_DIR,
            },
        );
        root.links += 1;
    }

    protos
        .into_iter()
        .enumerate()
        .map(|(i, p)| encode(ino_at(i), p, fs_seed, lf_time))
        .collect()
}

fn encode<'a>(
    ino: u32,
    p: Proto<'a>,
    fs_seed: u32,
    lf_time: i64,
) -> Result<PlannedInode<'a>, Ext4Error> {
    let shown = || display(p.path);
    let (mode, uid, gid, time, xattrs) = match p.node {
        Some(n) => (
            n.st_mode(),
            n.meta.uid,
            n.meta.gid,
            n.meta.mtime,
            &n.meta.xattrs,
        ),
        None => (0o040000 | LOST_FOUND_MODE, 0, 0, lf_time, &NO_XATTRS),
    };
    let kind = p.node.map_or(&NodeKind::Dir, |n| &n.kind);
    let (body, size) = match kind {
        NodeKind::Dir => {
            let data = dir::encode(ino, p.parent, &p.entries, inode::inode_seed(fs_seed, ino));
            let len = data.len() as u64;
            let runs = vec![Run {
                lblk: 0,
                len: (len / BLOCK_SIZE) as u32,
            }];
            (
                Body::Blocks {
                    data: Cow::Owned(data),
                    runs,
                },
                len,
            )
        }
        NodeKind::File(content) => {
            if content.len() as u64 > u64::from(u32::MAX) * BLOCK_SIZE {
                return Err(Ext4Error::FileTooLarge { path: shown() });
            }
            let runs = data_runs(content);
            (
                Body::Blocks {
                    data: Cow::Borrowed(&content[..]),
                    runs,
                },
                content.len() as u64,
            )
        }
        NodeKind::Symlink(target) => {
            let t = target.as_bytes();
            if t.is_empty() || t.len() > SYMLINK_MAX || t.contains(&0) {
                return Err(Ext4Error::BadSymlink { path: shown() });
            }
            if t.len() < I_BLOCK_LEN {
                // Fast symlink: the target lives in i_block.
                let mut b = [0u8; I_BLOCK_LEN];
                b[..t.len()].copy_from_slice(t);
                (Body::Inline(b), t.len() as u64)
            } else {
                let runs = vec![Run { lblk: 0, len: 1 }];
                (
                    Body::Blocks {
                        data: Cow::Borrowed(t),
                        runs,
                    },
                    t.len() as u64,
                )
            }
        }
        NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
            (Body::Inline(inode::device_i_block(*major, *minor)), 0)
        }
        NodeKind::Fifo => (Body::Inline([0; I_BLOCK_LEN]), 0),
        // Hard links never get an inode of their own (skipped when numbering).
        NodeKind::Hardlink(_) => {
            return Err(Ext4Error::BadHardlink {
                path: shown(),
                target: String::new(),
            })
        }
    };
    let links = if p.links > LINK_MAX {
        1
    } else {
        p.links as u16
    };
    Ok(PlannedInode {
        ino,
        mode: mode as u16,
        uid,
        gid,
        time,
        links,
        size,
        is_dir: *kind == NodeKind::Dir,
        body,
        xattrs: xattr::layout(&shown(), xattrs)?,
    })
}

/// The runs of 4 KiB blocks of `data` that are not all zero; the all-zero
/// blocks become holes.
fn data_runs(data: &[u8]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, chunk) in data.chunks(BLOCK_SIZE as usize).enumerate() {
        if chunk == &ZERO_BLOCK[..chunk.len()] {
            continue;
        }
        let lblk = i as u32;
        match runs.last_mut() {
            Some(r) if r.lblk + r.len == lblk => r.len += 1,
            _ => runs.push(Run { lblk, len: 1 }),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes() {
        let mut d = vec![0u8; 5 * 4096 + 10];
        d[4096] = 1; // block 1
        d[3 * 4096 + 5] = 1; // block 3
        d[4 * 4096] = 1; // block 4
        assert_eq!(
            data_runs(&d),
            [Run { lblk: 1, len: 1 }, Run { lblk: 3, len: 2 }]
        );
        assert!(data_runs(&[0u8; 100]).is_empty());
        assert_eq!(data_runs(b"x"), [Run { lblk: 0, len: 1 }]);
    }

    #[test]
    fn index_and_ino_round_trip() {
        for i in 0..50 {
            assert_eq!(index_of(ino_at(i)), i);
        }
        assert_eq!(ino_at(1), FIRST_INO);
    }
}
