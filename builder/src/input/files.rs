//! A layer's `[files]` directory, read into a tree: normalised metadata
//! (root-owned, 0755 for directories and executables, 0644 otherwise, every
//! time SOURCE_DATE_EPOCH), then the layer's overrides. Symlinks are stored,
//! never followed; one whose target climbs out of the directory is an error.

use std::path::Path;
use std::sync::Arc;

use crate::fs::tree::{Meta, Node, NodeKind, Tree};
use crate::input::layerdef::{glob, LayerDef};
use crate::util::error::InputError;

/// Files of this name in a `[files]` directory are not copied: they only keep
/// an otherwise empty directory in git.
pub const KEEP_PLACEHOLDER: &str = ".keep";

/// Read a layer's `[files]` directory into a tree with normalised metadata and
/// the layer's overrides applied. Symlinks are stored, never followed; one
/// whose target climbs out of the directory is an error naming it.
pub fn files_tree(def: &LayerDef, dir: &Path, sde: i64) -> Result<Tree, InputError> {
    let mut tree = read_dir_tree(dir, sde)?;
    // Overrides, in file order; each must match something.
    for o in &def.overrides {
        let m = glob(&o.path)
            .map_err(|e| InputError::file(def.file.display().to_string(), e.to_string()))?;
        let mut hit = false;
        let paths: Vec<String> = tree
            .iter()
            .filter(|(p, _)| m.is_match(p))
            .map(|(p, _)| p.to_string())
            .collect();
        for p in paths {
            if let Some(n) = tree.get_mut(&p) {
                hit = true;
                if let Some(mode) = o.mode {
                    n.meta.mode = mode;
                }
                if let Some(uid) = o.uid {
                    n.meta.uid = uid;
                }
                if let Some(gid) = o.gid {
                    n.meta.gid = gid;
                }
            }
        }
        if !hit {
            return Err(InputError {
                file: def.file.display().to_string(),
                line: Some(o.line),
                field: Some("override.path".into()),
                message: format!("{:?} matches no file under {}", o.path, dir.display()),
            });
        }
    }
    Ok(tree)
}

/// Read a directory into a tree: root-owned, modes normalised, times `sde`,
/// symlinks stored and checked not to escape `dir`, `.keep` files skipped.
pub fn read_dir_tree(dir: &Path, sde: i64) -> Result<Tree, InputError> {
    let mut tree = Tree::new(sde);
    walk(dir, dir, "", &mut tree, sde)?;
    Ok(tree)
}

fn walk(root: &Path, dir: &Path, rel: &str, tree: &mut Tree, sde: i64) -> Result<(), InputError> {
    let err = |p: &Path, m: String| InputError::file(p.display().to_string(), m);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot read directory: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(dir, format!("cannot read directory: {e}")))?;
    // Directory read order is the filesystem's whim: sort.
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| err(&path, format!("file name {n:?} is not UTF-8")))?;
        if name == KEEP_PLACEHOLDER {
            continue;
        }
        let relp = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let md = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e.to_string()))?;
        let ft = md.file_type();
        let exec = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o100 != 0;
        let kind = if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| err(&path, e.to_string()))?;
            let target = target
                .to_str()
                .ok_or_else(|| err(&path, "symlink target is not UTF-8".into()))?
                .to_string();
            if escapes(&relp, &target) {
                return Err(err(
                    &path,
                    format!("symlink to {target:?} points outside the layer's source directory {}; it is not followed", root.display()),
                ));
            }
            NodeKind::Symlink(target)
        } else if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            let data = std::fs::read(&path).map_err(|e| err(&path, e.to_string()))?;
            NodeKind::File(Arc::new(data))
        } else {
            return Err(err(
                &path,
                "only regular files, directories and symlinks can be layer sources".into(),
            ));
        };
        let mode = match kind {
            NodeKind::Dir => 0o755,
            NodeKind::Symlink(_) => 0o777,
            _ if exec => 0o755,
            _ => 0o644,
        };
        let is_dir = kind == NodeKind::Dir;
        tree.insert(
            &relp,
            Node {
                kind,
                meta: Meta::root(mode, sde),
            },
        )
        .map_err(|e| err(&path, e.to_string()))?;
        if is_dir {
            walk(root, &path, &relp, tree, sde)?;
        }
    }
    Ok(())
}

/// Whether a symlink at `link` (relative to the source root) with `target`
/// resolves, lexically, outside the source root. Absolute targets are paths
/// in the image, i.e. relative to the layer's root, and cannot escape.
pub fn escapes(link: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return target.split('/').try_fold(0usize, step).is_none();
    }
    let base_depth = link.split('/').count() - 1;
    target.split('/').try_fold(base_depth, step).is_none()
}

fn step(depth: usize, comp: &str) -> Option<usize> {
    match comp {
        "" | "." => Some(depth),
        ".." => depth.checked_sub(1),
        _ => Some(depth + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escape_table() {
        for (link, target, bad) in [
            ("a", "b", false),
            ("a", "../b", true),
            ("d/a", "../b", false),
            ("d/a", "../../b", true),
            ("d/a", "/usr/bin/x", false),
            ("d/a", "/../etc", true),
            ("d/e/a", "./../x/../../y", false),
            ("d/e/a", "../x/../../../y", true),
        ] {
            assert_eq!(escapes(link, target), bad, "{link} -> {target}");
        }
    }
}
