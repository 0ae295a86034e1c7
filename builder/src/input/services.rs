//! What a plan already tells about each service's program, before anything
//! is fetched or built.
//!
//! The composed image is known only after the layers are built, and the
//! build checks every program there (`crate::build`). Much is known before:
//! each layer's `[files]` tree, and the `[strip]` rules that decide what of
//! its Debian packages can survive. Looking the program's path up from the
//! top layer down, this finds programs that no layer can provide, so that a
//! typo fails in planning instead of after a download, with no false alarm:
//! wherever a layer's packages could hold the path (or a symlink on the way
//! to it), the answer is "unknown" and the build decides.

use crate::fs::tree::{normalize_lexically, NodeKind, Tree, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::fs::usrmerge::canonical;
use crate::input::layerdef::{glob, LayerDef, StripRules};
use crate::util::error::InputError;

/// What the plan can tell about a path in the composed image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// A regular file (or a hard link to one) in a layer's files.
    File,
    /// Not decidable before building (packages, symlinks).
    Unknown,
    /// Certainly not a regular file in the composed image, and why.
    Missing(String),
}

/// Characters that make a glob component match more than itself (globset syntax).
const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// Kiln writes each service's files under this directory of the layer that
/// declares it (`crate::layers::source::SERVICES_DIR`), over the layer's
/// files; programs there are left to the build's check.
const KILN_DIR: &str = "etc/kiln";

/// What the check reads of one layer of the plan, bottom first: its
/// definition and its `[files]` tree, if it has one.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// The layer's definition.
    pub def: &'a LayerDef,
    /// Its `[files]` read into a tree (merged-/usr form).
    pub files: Option<&'a Tree>,
}

/// Every service's program must be able to exist in the composed image: an
/// [`InputError`] naming the layer file, line and field for one that
/// certainly cannot.
pub fn check(layers: &[Layer]) -> Result<(), InputError> {
    for pl in layers {
        for s in &pl.def.services {
            let prog = &s.command[0];
            if let Found::Missing(why) = lookup(layers, prog) {
                return Err(InputError {
                    file: pl.def.file.display().to_string(),
                    line: Some(s.line),
                    field: Some("service.command".into()),
                    message: format!(
                        "service {:?}: {prog} does not exist in the composed image: {why}",
                        s.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Look `path` (absolute, as in a service command) up in what the layers,
/// bottom first, are known to hold.
fn lookup(layers: &[Layer], path: &str) -> Found {
    // Layers' files and strip rules are in merged-/usr form: so is the path.
    let path = canonical(&normalize_lexically(path)).into_owned();
    if path.is_empty() {
        return Found::Missing("it is the root directory".into());
    }
    if path == KILN_DIR || path.starts_with(&format!("{KILN_DIR}/")) {
        return Found::Unknown;
    }
    // `prefixes[i]` is the path's first i + 1 components; the last is the path.
    let comps: Vec<&str> = path.split('/').collect();
    let prefixes: Vec<String> = (1..=comps.len()).map(|n| comps[..n].join("/")).collect();
    // How many leading prefixes the files of the layers above make directories.
    let mut dirs = 0;
    for pl in layers.iter().rev() {
        if let Some(files) = pl.files {
            if let Some(found) = in_files(files, &prefixes, &mut dirs, &pl.def.name) {
                return found;
            }
        }
        if pl.def.debian.is_some() && !strip_deletes(&pl.def.strip, &prefixes[dirs]) {
            return Found::Unknown;
        }
    }
    let with_packages: Vec<&str> = layers
        .iter()
        .filter(|pl| pl.def.debian.is_some())
        .map(|pl| pl.def.name.as_str())
        .collect();
    Found::Missing(if with_packages.is_empty() {
        "no layer's files hold it".into()
    } else {
        format!(
            "no layer's files hold it, and the [strip] rules of {} delete it from their packages",
            with_packages.join(", ")
        )
    })
}

/// One layer's files, which lie over its packages and the layers below:
/// `Some` when they decide. `dirs` leading prefixes are directories above;
/// these files may make more of them directories.
fn in_files(files: &Tree, prefixes: &[String], dirs: &mut usize, layer: &str) -> Option<Found> {
    let last = prefixes.len() - 1;
    while let Some(node) = prefixes.get(*dirs).and_then(|p| files.get(p)) {
        let found = match (&node.kind, *dirs == last) {
            (NodeKind::Dir, false) => {
                *dirs += 1;
                continue;
            }
            (NodeKind::Symlink(_), _) => Found::Unknown,
            (NodeKind::File(_) | NodeKind::Hardlink(_), true) => Found::File,
            (NodeKind::Dir, true) => {
                Found::Missing(format!("it is a directory in the files of layer {layer}"))
            }
            (_, true) => Found::Missing(format!(
                "it is not a regular file in the files of layer {layer}"
            )),
            (_, false) => Found::Missing(format!(
                "/{} is not a directory in the files of layer {layer}",
                prefixes[*dirs]
            )),
        };
        return Some(found);
    }
    // A whiteout here hides the path from this layer's packages and the
    // layers below. (Its parents are directories in these files, so the
    // loop above has walked past them.)
    prefixes[..=(*dirs).min(last)].iter().find_map(|p| {
        let (dir, name) = match p.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), p.as_str()),
        };
        let hidden = [
            format!("{WHITEOUT_PREFIX}{name}"),
            OPAQUE_MARKER.to_string(),
        ]
        .iter()
        .any(|w| files.get(&format!("{dir}{w}")).is_some());
        hidden.then(|| Found::Missing(format!("the files of layer {layer} white out /{p}")))
    })
}

/// Whether a layer's `[strip]` rules certainly delete `path`, and with it
/// everything below it, from the layer's packages: a delete glob matches it,
/// no keep glob matches it, and no keep glob can match anything below it
/// (kept paths keep their parents). Kernel module paths are never certain
/// when `keep_modules` writes a `modules.dep`.
fn strip_deletes(rules: &StripRules, path: &str) -> bool {
    if rules.keep_modules.is_some() && path.split('/').any(|c| c == "modules") {
        return false;
    }
    let (delete, keep) = rules.matchers();
    delete.iter().any(|g| g.is_match(path))
        && !keep.iter().any(|g| g.is_match(path))
        && !rules
            .keep
            .iter()
            .any(|k| may_match_below(&canonical(k), path))
}

/// Whether glob `pattern` may match a path strictly below `path`; `true`
/// when unsure (a component with glob syntax).
fn may_match_below(pattern: &str, path: &str) -> bool {
    if glob(pattern).is_err() {
        return true;
    }
    let mut pat = pattern.split('/');
    for comp in path.split('/') {
        match pat.next() {
            None => return false,
            Some(p) if p.contains(GLOB_META) => return true,
            Some(p) if p != comp => return false,
            Some(_) => {}
        }
    }
    pat.next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::layerdef::{DebianSource, LayerKind};
    use crate::testutil::{dir, file};

    #[test]
    fn keep_globs_below_a_path() {
        for (pattern, path, want) in [
            ("bin/busybox", "bin", true),
            ("bin/busybox", "bin/busybox", false),
            ("bin/busybox", "usr", false),
            ("usr/lib/systemd/boot/x.stub", "usr/lib", true),
            ("usr/lib/systemd/boot/x.stub", "usr/lib/hello", false),
            ("lib/modules/**", "lib/modules/6.1", true),
            ("boot/vmlinuz-*", "boot", true),
            ("boot/vmlinuz-*", "usr/boot", false),
            ("**/copyright", "srv", true),
        ] {
            assert_eq!(
                may_match_below(pattern, path),
                want,
                "{pattern} below {path}"
            );
        }
    }

    fn layer(
        name: &str,
        kind: LayerKind,
        packages: bool,
        strip: (&[&str], &[&str]),
        files: &[(&str, crate::fs::tree::Node)],
    ) -> (LayerDef, Option<Tree>) {
        let mut tree = Tree::new(0);
        for (p, n) in files {
            tree.insert_with_parents(p, n.clone(), &crate::fs::tree::Meta::root(0o755, 0))
                .unwrap();
        }
        // As `crate::input::files::files_tree` leaves them: merged-/usr form.
        crate::fs::usrmerge::merge(&mut tree, false).unwrap();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        (
            LayerDef {
                dir: name.into(),
                file: format!("{name}/layer.toml").into(),
                name: name.into(),
                kind,
                description: None,
                debian: packages.then(|| DebianSource {
                    suite: "bookworm".into(),
                    variant: "extract".into(),
                    packages: vec!["busybox-static".into()],
                    mirror: None,
                    components: vec!["main".into()],
                    architecture: "amd64".into(),
                }),
                strip: StripRules {
                    delete: strings(strip.0),
                    keep: strings(strip.1),
                    keep_modules: None,
                    purge: Vec::new(),
                },
                files: None,
                overrides: Vec::new(),
                services: Vec::new(),
            },
            (!files.is_empty()).then_some(tree),
        )
    }

    /// [`lookup`] over layers the tests own.
    fn look(layers: &[(LayerDef, Option<Tree>)], path: &str) -> Found {
        let views: Vec<Layer> = layers
            .iter()
            .map(|(def, files)| Layer {
                def,
                files: files.as_ref(),
            })
            .collect();
        lookup(&views, path)
    }

    fn link(t: &str) -> crate::fs::tree::Node {
        crate::fs::tree::Node {
            kind: NodeKind::Symlink(t.into()),
            meta: crate::fs::tree::Meta::root(0o777, 0),
        }
    }

    #[test]
    fn what_the_plan_can_tell() {
        use Found::*;
        // hello's shape: a base whose packages are stripped to a keep list,
        // an app with its own files.
        let busybox = || {
            layer(
                "base",
                LayerKind::Base,
                true,
                (&["**"], &["bin/busybox", "usr/lib/systemd/boot/efi/x.stub"]),
                &[("etc/hostname", file("h"))],
            )
        };
        let app = |files: &[(&str, crate::fs::tree::Node)]| {
            layer("app", LayerKind::App, false, (&[], &[]), files)
        };
        let hello = [
            busybox(),
            app(&[
                ("usr/lib/hello/start", file("x")),
                ("srv/www", dir()),
                ("opt/run", link("/bin/busybox")),
            ]),
        ];
        let missing = |f: Found| matches!(f, Missing(_));
        assert_eq!(look(&hello, "/usr/lib/hello/start"), File);
        assert_eq!(look(&hello, "/usr/lib/hello/../hello/start"), File);
        assert!(
            missing(look(&hello, "/usr/lib/hello/strat")),
            "a typo in the app's own directory"
        );
        assert!(missing(look(&hello, "/srv/www")), "a directory");
        assert!(
            missing(look(&hello, "/usr/lib/hello/start/x")),
            "below a file"
        );
        assert!(missing(look(&hello, "/")));
        assert!(missing(look(&hello, "/etc/hostname/x")));
        assert_eq!(look(&hello, "/etc/hostname"), File, "a lower layer's files");
        assert_eq!(
            look(&hello, "/bin/busybox"),
            Unknown,
            "kept by the strip rules"
        );
        assert_eq!(
            look(&hello, "/usr/lib/systemd/x"),
            Unknown,
            "may be kept below usr/lib/systemd"
        );
        assert_eq!(look(&hello, "/opt/run"), Unknown, "a symlink");
        assert_eq!(look(&hello, "/etc/kiln/services/hello/run"), Unknown);

        // Packages without strip rules may hold anything.
        let unstripped = [
            layer("base", LayerKind::Base, true, (&[], &[]), &[]),
            app(&[("srv/x", file("x"))]),
        ];
        assert_eq!(look(&unstripped, "/usr/bin/nginx"), Unknown);
        // A packages layer in between may provide it, whatever the base strips.
        let web = [
            busybox(),
            layer("nginx", LayerKind::Packages, true, (&[], &[]), &[]),
            app(&[("srv/x", file("x"))]),
        ];
        assert_eq!(look(&web, "/usr/sbin/nginx"), Unknown);
        // Files-only layers are known completely.
        let plain = [
            layer(
                "base",
                LayerKind::Base,
                false,
                (&[], &[]),
                &[("bin/sh", file("x"))],
            ),
            app(&[("srv/x", file("x"))]),
        ];
        assert_eq!(look(&plain, "/bin/sh"), File);
        assert!(missing(look(&plain, "/bin/bash")));

        // Whiteouts in an upper layer's files hide the lower ones' files.
        let hidden = [
            layer(
                "base",
                LayerKind::Base,
                false,
                (&[], &[]),
                &[("bin/sh", file("x"))],
            ),
            app(&[("bin/.wh.sh", file(""))]),
        ];
        assert!(missing(look(&hidden, "/bin/sh")));
        let opaque = [
            layer(
                "base",
                LayerKind::Base,
                false,
                (&[], &[]),
                &[("bin/sh", file("x"))],
            ),
            app(&[("bin/.wh..wh..opq", file("")), ("bin/ls", file("x"))]),
        ];
        assert!(missing(look(&opaque, "/bin/sh")));
        assert_eq!(look(&opaque, "/bin/ls"), File);
        // ... and the packages of their own layer, whatever the strip rules keep.
        let own = [layer(
            "base",
            LayerKind::Base,
            true,
            (&[], &[]),
            &[("bin/.wh.sh", file(""))],
        )];
        assert!(missing(look(&own, "/bin/sh")));
        // A whiteout of something else hides nothing here.
        let other = [
            layer(
                "base",
                LayerKind::Base,
                false,
                (&[], &[]),
                &[("bin/sh", file("x"))],
            ),
            app(&[("bin/.wh.ls", file(""))]),
        ];
        assert_eq!(look(&other, "/bin/sh"), File);
    }
}
