//! The checks every layer passes before kiln stores it, whether it was
//! built here or fetched from a registry cache
//! (`crate::registry::cache::accept`), and that `kiln fsck` runs on every
//! stored layer: what composing the layer ([`Tree::apply_layer`]) and
//! writing its files to ext4 (`crate::fs::ext4` planning) would otherwise
//! refuse later, in every build that uses it.

use super::{check_whiteout_entry, file_name, parent, NodeKind, Tree, TreeError};

/// Longest file name ext4 holds (`EXT4_NAME_LEN`, the kernel's
/// `fs/ext4/ext4.h`), and so the longest name in a layer.
pub const NAME_MAX: usize = 255;

impl Tree {
    /// Check the tree as a layer: its invariants ([`Tree::validate`]),
    /// every name one ext4 can hold (at most [`NAME_MAX`] bytes, no NUL),
    /// and every whiteout well formed and in a place a layer may hold it
    /// ([`check_whiteout_entry`]). The error names the entry.
    pub fn check_layer(&self) -> Result<(), TreeError> {
        self.validate()?;
        for (path, node) in self.iter() {
            if path.is_empty() {
                continue;
            }
            let name = file_name(path);
            let bad = |why: String| TreeError::BadEntry {
                path: path.to_string(),
                why,
            };
            if name.len() > NAME_MAX {
                return Err(bad(format!(
                    "its name is {} bytes long; ext4 holds at most {NAME_MAX}",
                    name.len()
                )));
            }
            if name.contains('\0') {
                return Err(bad("its name holds a NUL byte".into()));
            }
            let at_top = parent(path) == Some("");
            check_whiteout_entry(name, at_top, node.kind == NodeKind::Dir).map_err(bad)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{dir, file};

    #[test]
    fn layers_that_compose_and_fit_ext4_pass_and_others_name_the_entry() {
        let long = "n".repeat(NAME_MAX);
        let too_long = "n".repeat(300);
        for (entries, want) in [
            (vec![("srv", dir()), ("srv/a", file("a"))], None),
            (vec![("srv", dir()), (long.as_str(), file("x"))], None),
            (vec![("srv", dir()), ("srv/.wh.old", file(""))], None),
            (vec![("srv", dir()), ("srv/.wh..wh..opq", file(""))], None),
            (vec![(too_long.as_str(), file("x"))], Some("300 bytes long")),
            (
                vec![(".wh..wh..opq", file(""))],
                Some("at the top of a layer"),
            ),
            (
                vec![("srv", dir()), ("srv/.wh...", file(""))],
                Some("own entry"),
            ),
            (
                vec![("srv", dir()), ("srv/.wh.x", dir())],
                Some("not a directory"),
            ),
            (vec![("srv", dir()), ("srv/a\0b", file(""))], Some("NUL")),
        ] {
            let mut t = Tree::new(0);
            for (p, n) in entries {
                t.insert(p, n).unwrap();
            }
            match (t.check_layer(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, want) => panic!("got {got:?}, want {want:?}"),
            }
        }
    }
}
