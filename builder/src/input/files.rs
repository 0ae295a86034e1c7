//! A layer's `[files]` directory, read into a tree: normalised metadata
//! (root-owned, 0755 for directories and executables, 0644 otherwise, every
//! time SOURCE_DATE_EPOCH), then the layer's overrides. The directory itself
//! must lie inside the layer's directory once every symlink on the way is
//! resolved ([`FilesDir`]); below it, symlinks are stored, never followed, and
//! one whose target climbs out of the directory is an error. OCI whiteouts
//! (`.wh.NAME`, `.wh..wh..opq`) are allowed and reach the layers below; a
//! malformed one is an error ([`crate::fs::tree::whiteout`]).

use std::path::Path;
use std::sync::Arc;

use crate::fs::tree::{self, Meta, Node, NodeKind, Tree};
use crate::input::layerdef::{glob, FilesDir, LayerDef};
use crate::util::error::InputError;

/// Files of this name in a `[files]` directory are not copied: they only keep
/// an otherwise empty directory in git.
pub const KEEP_PLACEHOLDER: &str = ".keep";

/// Read a layer's `[files]` directory into a tree with normalised metadata and
/// the layer's overrides applied. Symlinks are stored, never followed; one
/// whose target climbs out of the directory is an error naming it.
pub fn files_tree(def: &LayerDef, dir: &FilesDir, sde: i64) -> Result<Tree, InputError> {
    let dir = dir.path();
    let mut tree = read_dir_tree(dir, sde)?;
    // Merged /usr: files at `bin/ash` land at `usr/bin/ash` (the root's
    // `/bin` is a symlink to it).
    crate::fs::usrmerge::merge(&mut tree, false).map_err(|e| {
        InputError::file(
            def.file.display().to_string(),
            format!("[files] in {}: {e}", dir.display()),
        )
    })?;
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
/// symlinks stored and checked not to escape `dir`, whiteouts checked,
/// `.keep` files skipped.
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
        check_whiteout(&name, rel, ft.is_dir()).map_err(|m| err(&path, m))?;
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

/// A whiteout-named entry of a `[files]` directory (at `rel`, the relative
/// path of its directory): the rule every layer's whiteouts follow
/// ([`tree::check_whiteout_entry`]).
fn check_whiteout(name: &str, rel: &str, is_dir: bool) -> Result<(), String> {
    tree::check_whiteout_entry(name, rel.is_empty(), is_dir)
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
    use std::path::PathBuf;

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
    /// A layer directory `root/layer` with `files/`, and host files beside it.
    fn layer_dir() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        std::fs::create_dir_all(layer.join("files/etc")).unwrap();
        std::fs::create_dir_all(layer.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(t.path().join("host/etc")).unwrap();
        std::fs::write(t.path().join("host/etc/passwd"), "root:x:0:0\n").unwrap();
        (t, layer)
    }

    #[test]
    fn files_dir_stays_inside_the_layer() {
        use std::os::unix::fs::symlink;
        let (t, layer) = layer_dir();
        let host = t.path().join("host");
        symlink(&host, layer.join("out")).unwrap();
        symlink("../host", layer.join("out-relative")).unwrap();
        symlink("files", layer.join("inside")).unwrap();
        symlink(&host, layer.join("sub/deeper/up")).unwrap();
        symlink("..", layer.join("sub/parent")).unwrap();
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("files", Ok("files")),
            ("./files/", Ok("files")),
            ("sub/../files", Ok("files")),
            // A symlink that stays inside is followed: it is the layer's own.
            ("inside", Ok("files")),
            ("sub/parent/files", Ok("files")),
            (".", Ok("")),
            // `..` out of the layer.
            ("..", Err("outside the layer directory")),
            ("../host", Err("outside the layer directory")),
            (
                "../../../../../../../../etc",
                Err("outside the layer directory"),
            ),
            ("files/../../host/etc", Err("outside the layer directory")),
            // Absolute paths, even to the layer itself.
            ("/etc", Err("must be a relative path")),
            (layer.to_str().unwrap(), Err("must be a relative path")),
            ("", Err("must be a relative path")),
            // `files` itself a symlink out of the layer.
            ("out", Err("outside the layer directory")),
            ("out-relative", Err("outside the layer directory")),
            // A symlink among the parent components.
            ("out/etc", Err("outside the layer directory")),
            ("sub/deeper/up/etc", Err("outside the layer directory")),
            ("sub/parent/../host", Err("outside the layer directory")),
            ("nothing", Err("does not exist")),
            ("files/etc/../../layer.toml", Err("does not exist")),
        ];
        std::fs::write(layer.join("plain"), "x").unwrap();
        let canonical = std::fs::canonicalize(&layer).unwrap();
        for (dir, want) in cases {
            match (FilesDir::resolve(&layer, dir), want) {
                (Ok(got), Ok(rel)) => assert_eq!(got.path(), canonical.join(rel), "{dir}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{dir}: {e}"),
                (got, want) => panic!("{dir:?}: got {got:?}, want {want:?}"),
            }
        }
        let e = FilesDir::resolve(&layer, "plain").unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn whiteouts_in_files() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("etc/.wh.motd", false, None),
            (".wh.usr", false, None),
            ("etc/.wh..wh..opq", false, None),
            (".wh.", false, Some("names nothing")),
            ("etc/.wh.", false, Some("names nothing")),
            ("etc/.wh..", false, Some("own entry")),
            ("etc/.wh...", false, Some("own entry")),
            ("etc/.wh..wh.x", false, Some("reserved")),
            (".wh..wh..opq", false, Some("every layer below")),
            ("etc/.wh.motd", true, Some("not a directory")),
        ];
        for (path, is_dir, want) in cases {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if *is_dir {
                std::fs::create_dir(&p).unwrap();
            } else {
                std::fs::write(&p, "").unwrap();
            }
            match (read_dir_tree(t.path(), 0), want) {
                (Ok(tree), None) => assert!(tree.get(path).is_some(), "{path}"),
                (Err(e), Some(w)) => {
                    assert!(
                        e.file.ends_with(path) && e.message.contains(w),
                        "{path}: {e}"
                    )
                }
                (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
            }
        }
    }
}
