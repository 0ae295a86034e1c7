//! SOURCE_DATE_EPOCH: the one time every timestamp in an image is clamped to
//! (layer tars, ext4, FAT, cpio, the manifest and SBOM).
//!
//! It comes from the recipe (`image.source_date_epoch`), else the
//! environment (`SOURCE_DATE_EPOCH`), else it is derived from the inputs,
//! never from the clock: each layer's epoch is the newest of the layer
//! below's and the build dates of the Debian packages it installed (the
//! `ar` member times that `dpkg-deb` writes, which Debian sets from the
//! package's changelog), and the image's is its top layer's. A recipe with
//! no Debian packages at all gets [`FALLBACK_EPOCH`].

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::model::manifest::EpochSource;
use crate::util::error::InputError;

/// The derived epoch of layers with no packages and nothing below them:
/// 2023-11-14T22:13:20Z. A constant, so that such builds stay reproducible.
pub const FALLBACK_EPOCH: i64 = 1_700_000_000;

/// The epoch a plan asks for: a fixed time, or derived layer by layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRule {
    /// The fixed time, when the recipe or the environment gives one.
    pub fixed: Option<i64>,
    /// Where it comes from.
    pub source: EpochSource,
}

impl EpochRule {
    /// The recipe's value, else `SOURCE_DATE_EPOCH` from the environment
    /// (an error names the variable when it is not a non-negative integer),
    /// else derived.
    pub fn choose(recipe: Option<i64>, env: Option<&str>) -> Result<EpochRule, InputError> {
        if let Some(e) = recipe {
            return Ok(EpochRule {
                fixed: Some(e),
                source: EpochSource::Recipe,
            });
        }
        match env.filter(|v| !v.is_empty()) {
            Some(v) => {
                let e: i64 =
                    v.trim()
                        .parse()
                        .ok()
                        .filter(|e| *e >= 0)
                        .ok_or_else(|| InputError {
                            file: "environment".into(),
                            line: None,
                            field: Some("SOURCE_DATE_EPOCH".into()),
                            message: format!("{v:?} is not a non-negative integer"),
                        })?;
                Ok(EpochRule {
                    fixed: Some(e),
                    source: EpochSource::Environment,
                })
            }
            None => Ok(EpochRule {
                fixed: None,
                source: EpochSource::Derived,
            }),
        }
    }

    /// The time a layer's sources are read with before its epoch is known
    /// (files and services get their final time from [`crate::fs::tree::Tree::set_mtimes`]).
    pub fn provisional(&self) -> i64 {
        self.fixed.unwrap_or(0)
    }

    /// The time to clamp a layer's tree to while it is read, before its
    /// packages are known: the fixed epoch, or no clamping yet.
    pub fn read_clamp(&self) -> i64 {
        self.fixed.unwrap_or(i64::MAX)
    }

    /// A layer's epoch: the fixed one, else the newest of the layer below's
    /// and its own packages' dates, else [`FALLBACK_EPOCH`].
    pub fn layer_epoch(&self, lower: Option<i64>, newest_package: Option<i64>) -> i64 {
        self.fixed.unwrap_or_else(|| match (lower, newest_package) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => FALLBACK_EPOCH,
        })
    }

    /// The time given to maintainer scripts (`SOURCE_DATE_EPOCH` in their
    /// environment) before the layer's own epoch is known.
    pub fn script_epoch(&self, lower: Option<i64>) -> i64 {
        self.fixed.or(lower).unwrap_or(FALLBACK_EPOCH)
    }
}

/// The build date of a `.deb`: the modification time of its first `ar`
/// member (`debian-binary`), which `dpkg-deb` sets to the package's
/// SOURCE_DATE_EPOCH.
pub fn deb_date(path: &Path) -> Result<i64> {
    let mut head = [0u8; 8 + 60];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("reading the ar header of {}", path.display()))?;
    if &head[..8] != b"!<arch>\n" {
        bail!(crate::check_err!(
            "{} is not a Debian package (no ar magic)",
            path.display()
        ));
    }
    // ar member header: name[16] mtime[12] uid[6] gid[6] mode[8] size[10] fmag[2].
    let field = std::str::from_utf8(&head[8 + 16..8 + 28])
        .ok()
        .map(str::trim)
        .and_then(|s| s.parse::<i64>().ok());
    field.with_context(|| format!("{}: the ar member has no valid mtime", path.display()))
}

/// The newest build date among `.deb` files (by file name in `cache`);
/// `None` when there are none.
pub fn newest_deb_date(
    cache: &Path,
    files: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<Option<i64>> {
    let mut newest = None;
    for f in files {
        let d = deb_date(&cache.join(f.as_ref())).context(
            "deriving SOURCE_DATE_EPOCH from the packages (set image.source_date_epoch to skip this)",
        )?;
        newest = Some(newest.map_or(d, |n: i64| n.max(d)));
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(dir: &Path, name: &str, mtime: i64) -> String {
        let mut b = b"!<arch>\n".to_vec();
        b.extend(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                "debian-binary", mtime, 0, 0, 100644, 4
            )
            .as_bytes(),
        );
        b.extend(b"2.0\n");
        std::fs::write(dir.join(name), b).unwrap();
        name.to_string()
    }

    #[test]
    fn recipe_then_environment_then_derived() {
        let r = EpochRule::choose(Some(5), Some("7")).unwrap();
        assert_eq!((r.fixed, r.source), (Some(5), EpochSource::Recipe));
        let r = EpochRule::choose(None, Some("7")).unwrap();
        assert_eq!((r.fixed, r.source), (Some(7), EpochSource::Environment));
        let r = EpochRule::choose(None, Some("")).unwrap();
        assert_eq!((r.fixed, r.source), (None, EpochSource::Derived));
        let e = EpochRule::choose(None, Some("yesterday")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("SOURCE_DATE_EPOCH"));
        assert!(EpochRule::choose(None, Some("-1")).is_err());
    }

    #[test]
    fn derived_epoch_is_the_newest_package_or_the_layer_below() {
        let dir = tempfile::tempdir().unwrap();
        let a = deb(dir.path(), "a_1_all.deb", 1_650_000_000);
        let b = deb(dir.path(), "b_1_all.deb", 1_690_000_000);
        let newest = newest_deb_date(dir.path(), [a.as_str(), b.as_str()]).unwrap();
        assert_eq!(newest, Some(1_690_000_000));
        let derived = EpochRule::choose(None, None).unwrap();
        assert_eq!(derived.layer_epoch(None, newest), 1_690_000_000);
        assert_eq!(
            derived.layer_epoch(Some(1_700_000_123), newest),
            1_700_000_123
        );
        assert_eq!(
            derived.layer_epoch(Some(1_600_000_000), None),
            1_600_000_000
        );
        assert_eq!(derived.layer_epoch(None, None), FALLBACK_EPOCH);
        let fixed = EpochRule::choose(Some(42), None).unwrap();
        assert_eq!(fixed.layer_epoch(Some(1_700_000_123), newest), 42);
        assert_eq!(newest_deb_date(dir.path(), [""; 0]).unwrap(), None);
        std::fs::write(
            dir.path().join("bad.deb"),
            b"not a deb at all, really, no ar magic here at all....................",
        )
        .unwrap();
        let e = newest_deb_date(dir.path(), ["bad.deb"]).unwrap_err();
        assert!(format!("{e:#}").contains("bad.deb"), "{e:#}");
    }
}
