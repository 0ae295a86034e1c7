//! Lock files: `NAME.lock` beside a recipe pins every Debian package of every
//! layer to a version and a .deb sha256, so that a rebuild installs exactly
//! the same packages (or fails, naming the one it cannot have).
//!
//! Written by `kiln lock RECIPE` from what a build installed; read by every
//! build of that recipe, and part of each Debian layer's key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::input::source_file::SourceFile;
use crate::model::deb::{noassertion, DebPackage};
use crate::util::error::InputError;

/// A lock file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// Per layer (by layer name), the packages pinned.
    #[serde(default, rename = "layer")]
    pub layers: Vec<LockedLayer>,
}

/// One layer's pinned packages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedLayer {
    /// Layer name (`base/debian`).
    pub name: String,
    /// The Debian suite the packages came from (`trixie`): a lock taken on
    /// one suite is refused for a layer that builds another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Its packages.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// `sha256:` of the .deb (`NOASSERTION` when it was not known, which
    /// [`LockFile::load_for`] refuses).
    #[serde(with = "crate::model::deb::noassertion")]
    pub sha256: Option<crate::util::digest::Digest>,
}

impl From<&DebPackage> for LockedPackage {
    fn from(p: &DebPackage) -> Self {
        LockedPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            sha256: p.sha256,
        }
    }
}

/// `recipes/hello.toml` → `recipes/hello.lock`.
pub fn path_for(recipe: &Path) -> PathBuf {
    recipe.with_extension("lock")
}

impl LockFile {
    /// Read the lock beside a recipe, if there is one.
    pub fn load_for(recipe: &Path) -> Result<Option<LockFile>, InputError> {
        let path = path_for(recipe);
        if !path.exists() {
            return Ok(None);
        }
        let src = SourceFile::read(&path)?;
        let lock: LockFile = src.parse()?;
        for l in &lock.layers {
            for p in &l.packages {
                if p.name.is_empty() || p.version.is_empty() || p.sha256.is_none() {
                    return Err(InputError {
                        file: src.display.clone(),
                        line: None,
                        field: Some(format!("layer {:?} package {:?}", l.name, p.name)),
                        message: "a locked package needs a name, a version and a sha256: digest"
                            .into(),
                    });
                }
            }
        }
        Ok(Some(lock))
    }

    /// The packages pinned for a layer.
    pub fn layer(&self, name: &str) -> Option<&[LockedPackage]> {
        self.entry(name).map(|l| l.packages.as_slice())
    }

    /// A layer's entry.
    pub fn entry(&self, name: &str) -> Option<&LockedLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The lock file's text: a header comment and sorted TOML.
    pub fn render(&self, recipe_name: &str) -> String {
        let mut sorted = self.clone();
        for l in &mut sorted.layers {
            l.packages.sort();
        }
        // Serialising plain strings cannot fail.
        let body = toml::to_string(&sorted).unwrap_or_default();
        format!("# kiln lock file for {recipe_name}: the exact Debian packages of each layer.\n# Written by `kiln lock`; builds install these versions and check these sha256s.\n\n{body}")
    }
}

/// Where the pins go in a root while apt installs (removed afterwards).
pub const APT_PREFERENCES: &str = "etc/apt/preferences.d/kiln-lock";

/// apt_preferences(5) pinning every locked package to its version
/// (priority 1001: installed even over a newer candidate). Resolution is
/// otherwise unchanged, so a locked build installs what the unlocked build
/// did, marked the same way.
pub fn apt_preferences(locked: &[LockedPackage]) -> String {
    let mut out = String::from("# kiln lock: exact versions (removed after the install)\n");
    for p in locked {
        out.push_str(&format!(
            "\nPackage: {}:{}\nPin: version {}\nPin-Priority: 1001\n",
            p.name, p.architecture, p.version
        ));
    }
    out
}

/// Check what a layer installed against its lock: every locked package
/// present with the same version and .deb sha256, nothing else. A different
/// version means the pinned one could not be had (an environment problem,
/// exit 3); a different .deb for the same version is a bad artifact (exit 1).
pub fn check_installed(
    layer: &str,
    locked: &[LockedPackage],
    got: &[DebPackage],
) -> anyhow::Result<()> {
    check(layer, locked, got).map_err(|(m, version_missing)| {
        if version_missing {
            anyhow::Error::new(crate::util::error::EnvError::new(format!(
                "a locked version cannot be had from the mirror: {m}"
            )))
        } else {
            crate::util::error::check_failed(m)
        }
    })
}

fn check(layer: &str, locked: &[LockedPackage], got: &[DebPackage]) -> Result<(), (String, bool)> {
    let want: BTreeMap<&str, &LockedPackage> =
        locked.iter().map(|p| (p.name.as_str(), p)).collect();
    for g in got {
        match want.get(g.name.as_str()) {
            None => {
                let m = format!(
                    "layer {layer}: {} {} is not in the lock file (run `kiln lock` again)",
                    g.name, g.version
                );
                return Err((m, false));
            }
            Some(w) if w.version != g.version => {
                let m = format!(
                    "layer {layer}: {} is {}, the lock says {}",
                    g.name, g.version, w.version
                );
                return Err((m, true));
            }
            Some(w) if w.sha256 != g.sha256 => {
                let m = format!(
                    "layer {layer}: {} {}: the .deb hashes to {}, the lock says {}",
                    g.name,
                    g.version,
                    noassertion::show(&g.sha256),
                    noassertion::show(&w.sha256)
                );
                return Err((m, false));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, version: &str, sha: &str) -> DebPackage {
        DebPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            sha256: Some(format!("sha256:{}", sha.repeat(32)).parse().unwrap()),
            download: None,
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        let lock = LockFile {
            layers: vec![LockedLayer {
                name: "base/debian".into(),
                suite: Some("trixie".into()),
                packages: vec![
                    (&deb("zlib1g", "1:1.2.13", "bb")).into(),
                    (&deb("bash", "5.2", "aa")).into(),
                ],
            }],
        };
        let text = lock.render("x 1");
        let src = SourceFile::from_bytes(Path::new("x.lock"), text.clone().into_bytes()).unwrap();
        let back: LockFile = src.parse().unwrap();
        assert_eq!(back.layers[0].packages[0].name, "bash", "sorted");
        assert_eq!(back.layer("base/debian").unwrap().len(), 2);
        assert_eq!(
            back.entry("base/debian").unwrap().suite.as_deref(),
            Some("trixie")
        );
        assert!(text.contains("suite = \"trixie\""), "{text}");
    }

    /// A pin whose sha256 is not `sha256:` and 64 lower-case hex digits is
    /// refused when the lock is read, naming the file, line and field.
    #[test]
    fn a_malformed_pin_is_refused_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("x.toml");
        let lock = LockFile {
            layers: vec![LockedLayer {
                name: "base/debian".into(),
                suite: None,
                packages: vec![(&deb("bash", "5.2", "aa")).into()],
            }],
        };
        let good = lock.render("x 1");
        std::fs::write(path_for(&recipe), &good).unwrap();
        assert_eq!(LockFile::load_for(&recipe).unwrap(), Some(lock));
        let hex = "aa".repeat(32);
        for bad in [
            hex.clone(),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[2..]),
            "NOASSERTION".to_string(),
        ] {
            let text = good.replace(&format!("sha256:{hex}"), &bad);
            assert_ne!(text, good);
            std::fs::write(path_for(&recipe), &text).unwrap();
            let e = LockFile::load_for(&recipe).unwrap_err();
            assert!(e.file.ends_with("x.lock"), "{e}");
            assert!(
                e.field.as_deref().is_some_and(|f| f.contains("sha256"))
                    || e.message.contains("sha256"),
                "{bad}: {e}"
            );
            assert!(e.line.is_some() || bad == "NOASSERTION", "{bad}: {e}");
        }
    }

    #[test]
    fn check_table() {
        let locked: Vec<LockedPackage> = vec![(&deb("bash", "5.2", "aa")).into()];
        assert!(check("l", &locked, &[deb("bash", "5.2", "aa")]).is_ok());
        let e = check("l", &locked, &[deb("bash", "5.3", "aa")]).unwrap_err();
        assert!(e.0.contains("the lock says 5.2") && e.1, "{e:?}");
        let e = check("l", &locked, &[deb("bash", "5.2", "cc")]).unwrap_err();
        assert!(e.0.contains("hashes to sha256:cc") && !e.1, "{e:?}");
        assert!(check("l", &locked, &[deb("zsh", "1", "aa")])
            .unwrap_err()
            .0
            .contains("not in the lock file"));
        use crate::util::error::{exit_code, EXIT_CHECK_FAILED, EXIT_ENVIRONMENT};
        assert_eq!(
            exit_code(&check_installed("l", &locked, &[deb("bash", "5.3", "aa")]).unwrap_err()),
            EXIT_ENVIRONMENT
        );
        assert_eq!(
            exit_code(&check_installed("l", &locked, &[deb("bash", "5.2", "cc")]).unwrap_err()),
            EXIT_CHECK_FAILED
        );
        assert!(apt_preferences(&locked)
            .contains("Package: bash:amd64\nPin: version 5.2\nPin-Priority: 1001"));
    }
}
