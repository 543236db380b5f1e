//! The inode table: the channel's directory tree, built once from the object listing.
//!
//! A FastFile mount is a snapshot (`doc/contract/data.md` §7: the key set is listed once at job start),
//! so the tree never changes after the mount is ready. That makes the table simple and fast:
//! inodes are indexes into one `Vec` (inode `n` is `nodes[n - 1]`, the root is 1), numbers are
//! stable for the mount's lifetime without any reference counting, `forget` has nothing to do,
//! and each directory keeps its children sorted by name so a lookup is a binary search and a
//! `readdir` offset is simply a position in that list.
//!
//! Building costs one pass over the objects plus one sort per directory, with a hash map only
//! for directories (there are usually far fewer directories than files) and a one-entry cache
//! of the last directory, since listings arrive in key order and neighbours share a directory.
//! Start-up therefore depends on the number of objects, never on their bytes.

use std::collections::HashMap;

use crate::DataError;
use crate::fastfile::MountEntry;
use crate::fastfile::error::FsError;
use crate::objects::safe_relative_path;

/// Inode number of the mount's root directory (FUSE's fixed root id).
pub const ROOT_INO: u64 = 1;

/// What an inode is.
#[derive(Debug)]
pub(crate) enum NodeKind {
    /// A directory: its children's inode numbers in byte-wise name order.
    Dir {
        /// Children, sorted by name.
        children: Vec<u64>,
        /// How many children are directories (for `nlink`).
        subdirs: u32,
    },
    /// A file: the index of its object in [`InodeTable::entry`].
    File {
        /// Index into the entry list.
        entry: usize,
    },
}

/// One inode.
#[derive(Debug)]
pub(crate) struct Node {
    /// Parent directory (the root is its own parent).
    pub(crate) parent: u64,
    /// Name inside the parent (empty for the root).
    pub(crate) name: Box<str>,
    /// File or directory.
    pub(crate) kind: NodeKind,
}

/// The immutable tree of one mount.
#[derive(Debug)]
pub(crate) struct InodeTable {
    nodes: Vec<Node>,
    entries: Vec<MountEntry>,
    total_bytes: u64,
    dirs: usize,
}

impl InodeTable {
    /// Builds the tree from the objects' relative paths, synthesising intermediate directories.
    ///
    /// Fails on a path that would leave the mount ([`DataError::UnsafeKey`]) and on two objects
    /// that land on the same name, including a file whose name is another object's directory
    /// ([`DataError::Collision`]).
    pub(crate) fn build(entries: Vec<MountEntry>) -> Result<Self, DataError> {
        let mut nodes = vec![Node {
            parent: ROOT_INO,
            name: "".into(),
            kind: NodeKind::Dir {
                children: Vec::new(),
                subdirs: 0,
            },
        }];
        // Children of each directory by name, for directories only.
        let mut dir_names: HashMap<u64, HashMap<Box<str>, u64>> = HashMap::new();
        let mut last_dir: (String, u64) = (String::new(), ROOT_INO);
        let mut total_bytes = 0u64;

        for (index, entry) in entries.iter().enumerate() {
            let rel = entry.object.rel_path.as_str();
            safe_relative_path(&entry.object.key, rel)?;
            let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let parent = if dir == last_dir.0 {
                last_dir.1
            } else {
                let mut cur = ROOT_INO;
                for seg in dir.split('/').filter(|s| !s.is_empty()) {
                    let known = dir_names.get(&cur).and_then(|m| m.get(seg)).copied();
                    cur = match known {
                        Some(ino) => ino,
                        None => {
                            let ino = push_node(&mut nodes, cur, seg, None);
                            if let NodeKind::Dir { subdirs, .. } =
                                &mut node_mut(&mut nodes, cur).kind
                            {
                                *subdirs += 1;
                            }
                            dir_names.entry(cur).or_default().insert(seg.into(), ino);
                            ino
                        }
                    };
                }
                last_dir = (dir.to_string(), cur);
                cur
            };
            push_node(&mut nodes, parent, name, Some(index));
            total_bytes = total_bytes.saturating_add(entry.object.size);
        }

        let mut table = InodeTable {
            dirs: dir_names.values().map(HashMap::len).sum::<usize>() + 1,
            nodes,
            entries,
            total_bytes,
        };
        table.sort_and_check()?;
        Ok(table)
    }

    /// Sorts every directory's children by name and rejects duplicate names.
    fn sort_and_check(&mut self) -> Result<(), DataError> {
        for i in 0..self.nodes.len() {
            let NodeKind::Dir { children, .. } = &mut self.nodes[i].kind else {
                continue;
            };
            let mut kids = std::mem::take(children);
            let nodes = &self.nodes;
            let name_of = |ino: u64| &*nodes[(ino - 1) as usize].name;
            kids.sort_unstable_by(|a, b| name_of(*a).cmp(name_of(*b)));
            if let Some(pair) = kids.windows(2).find(|w| name_of(w[0]) == name_of(w[1])) {
                return Err(DataError::Collision {
                    first: self.some_key_under(pair[0]),
                    second: self.some_key_under(pair[1]),
                });
            }
            if let NodeKind::Dir { children, .. } = &mut self.nodes[i].kind {
                *children = kids;
            }
        }
        Ok(())
    }

    /// A key that explains why `ino` exists: its own key for a file, the first file below it
    /// for a directory.
    fn some_key_under(&self, ino: u64) -> String {
        let mut cur = ino;
        loop {
            match self.node(cur).map(|n| &n.kind) {
                Some(NodeKind::File { entry }) => return self.entries[*entry].object.key.clone(),
                Some(NodeKind::Dir { children, .. }) if !children.is_empty() => cur = children[0],
                _ => return String::new(),
            }
        }
    }

    /// The inode `ino`, if it exists.
    pub(crate) fn node(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    /// The inode `ino`, or [`FsError::NoInode`].
    pub(crate) fn get(&self, ino: u64) -> Result<&Node, FsError> {
        self.node(ino).ok_or(FsError::NoInode { ino })
    }

    /// The children of directory `ino`, sorted by name.
    pub(crate) fn children(&self, ino: u64) -> Result<&[u64], FsError> {
        match &self.get(ino)?.kind {
            NodeKind::Dir { children, .. } => Ok(children),
            NodeKind::File { .. } => Err(FsError::NotADirectory { ino }),
        }
    }

    /// The inode called `name` in directory `parent`.
    pub(crate) fn lookup(&self, parent: u64, name: &str) -> Result<u64, FsError> {
        let children = self.children(parent)?;
        match name {
            "." => return Ok(parent),
            ".." => return Ok(self.get(parent)?.parent),
            _ => {}
        }
        children
            .binary_search_by(|c| self.nodes[(*c - 1) as usize].name.as_ref().cmp(name))
            .map(|i| children[i])
            .map_err(|_| FsError::NotFound {
                parent,
                name: name.to_string(),
            })
    }

    /// The object behind entry index `index`.
    pub(crate) fn entry(&self, index: usize) -> &MountEntry {
        &self.entries[index]
    }

    /// Number of inodes (files plus directories, root included).
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Number of directories, root included.
    pub(crate) fn dirs(&self) -> usize {
        self.dirs
    }

    /// Number of files.
    pub(crate) fn files(&self) -> usize {
        self.entries.len()
    }

    /// Sum of all file sizes.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

fn node_mut(nodes: &mut [Node], ino: u64) -> &mut Node {
    // INVARIANT: only inode numbers handed out by `push_node` (or the root) reach here.
    &mut nodes[(ino - 1) as usize]
}

/// Appends a node under `parent` and returns its inode number.
fn push_node(nodes: &mut Vec<Node>, parent: u64, name: &str, entry: Option<usize>) -> u64 {
    nodes.push(Node {
        parent,
        name: name.into(),
        kind: match entry {
            Some(entry) => NodeKind::File { entry },
            None => NodeKind::Dir {
                children: Vec::new(),
                subdirs: 0,
            },
        },
    });
    let ino = nodes.len() as u64;
    if let NodeKind::Dir { children, .. } = &mut node_mut(nodes, parent).kind {
        children.push(ino);
    }
    ino
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::ChannelObject;

    fn entry(key: &str, rel: &str, size: u64) -> MountEntry {
        MountEntry::from(ChannelObject {
            bucket: "b".into(),
            key: key.into(),
            size,
            etag: None,
            rel_path: rel.into(),
        })
    }

    fn names(t: &InodeTable, dir: u64) -> Vec<String> {
        t.children(dir)
            .unwrap()
            .iter()
            .map(|c| t.node(*c).unwrap().name.to_string())
            .collect()
    }

    #[test]
    fn tree_synthesises_directories_and_sorts_children() {
        let t = InodeTable::build(vec![
            entry("p/z.csv", "z.csv", 3),
            entry("p/a/b/c.bin", "a/b/c.bin", 5),
            entry("p/a/b-x", "a/b-x", 1),
            entry("p/a/a", "a/a", 0),
        ])
        .unwrap();
        assert_eq!(names(&t, ROOT_INO), ["a", "z.csv"]);
        let a = t.lookup(ROOT_INO, "a").unwrap();
        assert_eq!(names(&t, a), ["a", "b", "b-x"]);
        let b = t.lookup(a, "b").unwrap();
        let c = t.lookup(b, "c.bin").unwrap();
        assert!(matches!(
            t.get(c).unwrap().kind,
            NodeKind::File { entry: 1 }
        ));
        assert_eq!(t.lookup(b, "..").unwrap(), a);
        assert_eq!(t.lookup(ROOT_INO, "..").unwrap(), ROOT_INO);
        assert_eq!(
            (t.files(), t.dirs(), t.len(), t.total_bytes()),
            (4, 3, 7, 9)
        );
        assert!(matches!(
            t.lookup(a, "nope"),
            Err(FsError::NotFound { parent, .. }) if parent == a
        ));
        assert!(matches!(
            t.lookup(c, "x"),
            Err(FsError::NotADirectory { .. })
        ));
        assert!(matches!(t.get(99), Err(FsError::NoInode { ino: 99 })));
        assert!(t.node(0).is_none());
    }

    #[test]
    fn conflicting_names_are_refused() {
        let err = InodeTable::build(vec![entry("p/a", "a", 1), entry("q/a", "a", 1)]).unwrap_err();
        assert!(matches!(err, DataError::Collision { ref first, ref second }
            if first.as_str().min(second.as_str()) == "p/a" && first.as_str().max(second.as_str()) == "q/a"));
        let err =
            InodeTable::build(vec![entry("p/a", "a", 1), entry("p/a/b", "a/b", 1)]).unwrap_err();
        assert!(matches!(err, DataError::Collision { .. }), "{err}");
        let err = InodeTable::build(vec![entry("p/../x", "../x", 1)]).unwrap_err();
        assert!(matches!(err, DataError::UnsafeKey { .. }), "{err}");
    }

    #[test]
    fn empty_listing_is_an_empty_root() {
        let t = InodeTable::build(Vec::new()).unwrap();
        assert!(t.children(ROOT_INO).unwrap().is_empty());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn hundred_thousand_objects_build_quickly() {
        let entries: Vec<MountEntry> = (0..100_000)
            .map(|i| {
                let rel = format!("shard-{:03}/part-{:06}.rec", i / 1000, i);
                entry(&format!("data/train/{rel}"), &rel, i as u64)
            })
            .collect();
        let start = Instant::now();
        let t = InodeTable::build(entries).unwrap();
        let elapsed = start.elapsed();
        assert_eq!((t.files(), t.dirs()), (100_000, 101));
        // Generous even for an unoptimised build on a loaded machine; release builds take
        // tens of milliseconds (see the measurements in the FastFile module docs).
        assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
    }
}
