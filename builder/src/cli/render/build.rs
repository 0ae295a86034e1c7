//! `kiln build` and `kiln lock` for people: the layers with their short
//! digests and where each came from (`cached` in the store, `registry`
//! cache, `built`), the image written; several recipes' images and
//! failures; the two builds of
//! `--check-reproducible` and their verdict; the packages each lock pins.

use std::io::{self, Write};
use std::path::Path;

use crate::build::reproducible::Report;
use crate::build::{BuildReport, LayerSource, ManyReport};
use crate::input::lock::LockFile;
use crate::util::printable::PrintableExt as _;

use super::{human, short_digest};

/// `kiln build`: the image's name and version, one line per layer, the image
/// file, its digest and size.
pub fn build(mut out: impl Write, r: &BuildReport) -> io::Result<()> {
    writeln!(
        out,
        "{} {}",
        r.image.name.printable(),
        r.image.version.printable()
    )?;
    for l in &r.layers {
        writeln!(
            out,
            "  {:<8} {:<24} {} {}",
            l.kind.printable(),
            l.name.printable(),
            short_digest(&l.digest),
            match l.source {
                LayerSource::Store => "cached",
                LayerSource::Registry => "registry",
                LayerSource::Built => "built",
            }
        )?;
    }
    writeln!(out, "image  {}", r.image.path.display().printable())?;
    writeln!(out, "digest {}", r.image.digest.printable())?;
    writeln!(out, "size   {}", human(r.image.size))
}

/// `kiln build R1 R2 …`: each image as [`build`] shows it, then each
/// recipe that failed with its error.
pub fn build_many(mut out: impl Write, r: &ManyReport) -> io::Result<()> {
    for (i, b) in r.images.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        build(&mut out, b)?;
    }
    for f in &r.failed {
        writeln!(
            out,
            "FAILED {}: {}",
            f.recipe.display().printable(),
            f.error.printable()
        )?;
    }
    Ok(())
}

/// `kiln build --check-reproducible`: each build's conditions, time and
/// digest, then the verdict (the first difference when there is one).
pub fn reproducible(mut out: impl Write, r: &Report) -> io::Result<()> {
    for b in &r.builds {
        writeln!(
            out,
            "build  umask {} TZ {:<18} clock {:<6} {:>6.1} s  {}",
            b.conditions.umask,
            b.conditions.tz.printable(),
            b.conditions.faketime.as_deref().unwrap_or("real"),
            b.seconds,
            b.digest
        )?;
    }
    match &r.difference {
        None => {
            writeln!(out, "reproducible: {} files identical", r.files.len())?;
            if let Some(p) = &r.image {
                writeln!(out, "image  {}", p.display().printable())?;
            }
            Ok(())
        }
        Some(d) => writeln!(out, "NOT reproducible: {d}"),
    }
}

/// `kiln lock`: how many packages each layer pins, and the lock file written.
pub fn lock(mut out: impl Write, path: &Path, lock: &LockFile) -> io::Result<()> {
    for l in &lock.layers {
        writeln!(
            out,
            "  {:<24} {} packages",
            l.name.printable(),
            l.packages.len()
        )?;
    }
    writeln!(out, "wrote {}", path.display().printable())
}

/// What `kiln lock --json` prints: the lock file's path and its layers.
pub fn lock_json(path: &Path, lock: &LockFile) -> serde_json::Value {
    serde_json::json!({"lock": path, "layers": lock.layers})
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{text, EMPTY};
    use super::*;
    use crate::build::reproducible::{BuildRun, Conditions};
    use crate::build::{ImageReport, LayerReport};
    use crate::input::lock::{LockedLayer, LockedPackage};
    use crate::read::firstdiff::Difference;

    fn layer(kind: &str, name: &str, digest: &str, source: LayerSource) -> LayerReport {
        LayerReport {
            name: name.into(),
            kind: kind.into(),
            digest: digest.into(),
            key: EMPTY.into(),
            cached: source != LayerSource::Built,
            source,
            size: 1,
        }
    }

    #[test]
    fn several_recipes_list_each_image_then_the_failures() {
        let image = |name: &str| BuildReport {
            image: ImageReport {
                name: name.into(),
                version: "1.0".into(),
                digest: EMPTY.into(),
                path: PathBuf::from(format!("out/{name}-1.0.raw")),
                size: 1 << 20,
                cached: false,
            },
            layers: vec![layer("base", "base/debian", EMPTY, LayerSource::Built)],
            manifest: PathBuf::from(format!("out/{name}-1.0.manifest.json")),
            source_date_epoch: 0,
            sha256sums: String::new(),
        };
        let r = ManyReport {
            images: vec![image("a"), image("b")],
            failed: vec![crate::build::FailedRecipe {
                recipe: PathBuf::from("recipes/bad.toml"),
                error: "recipes/bad.toml: field `image.version`: missing".into(),
                exit_code: 2,
            }],
        };
        let line = |n: &str| {
            format!(
                "{n} 1.0\n\
                 \x20 base     base/debian              sha256:e3b0c44298fc built\n\
                 image  out/{n}-1.0.raw\n\
                 digest {EMPTY}\n\
                 size   1.0 MiB\n"
            )
        };
        assert_eq!(
            text(|o| build_many(o, &r)),
            format!(
                "{}\n{}FAILED recipes/bad.toml: recipes/bad.toml: field `image.version`: missing\n",
                line("a"),
                line("b")
            )
        );
    }

    #[test]
    fn build_lists_layers_with_short_digests() {
        let r = BuildReport {
            image: ImageReport {
                name: "hello".into(),
                version: "1.0".into(),
                digest: EMPTY.into(),
                path: PathBuf::from("out/hello-1.0.raw"),
                size: 64 << 20,
                cached: false,
            },
            layers: vec![
                layer("base", "base/busybox", EMPTY, LayerSource::Store),
                layer("packages", "packages/web", EMPTY, LayerSource::Registry),
                // A damaged store entry is shown whole instead of panicking.
                layer("app", "app/hello", "sha256:0", LayerSource::Built),
            ],
            manifest: PathBuf::from("out/hello-1.0.manifest.json"),
            source_date_epoch: 0,
            sha256sums: String::new(),
        };
        assert_eq!(
            text(|o| build(o, &r)),
            "hello 1.0\n\
             \x20 base     base/busybox             sha256:e3b0c44298fc cached\n\
             \x20 packages packages/web             sha256:e3b0c44298fc registry\n\
             \x20 app      app/hello                sha256:0 built\n\
             image  out/hello-1.0.raw\n\
             digest sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             size   64.0 MiB\n"
        );
    }

    fn run(umask: &str, tz: &str, faketime: Option<&str>, seconds: f64) -> BuildRun {
        BuildRun {
            conditions: Conditions {
                umask: umask.into(),
                tz: tz.into(),
                faketime: faketime.map(Into::into),
            },
            digest: EMPTY.into(),
            seconds,
        }
    }

    #[test]
    fn reproducible_table() {
        let builds = vec![
            run("0022", "UTC", None, 12.34),
            run("0077", "Pacific/Kiritimati", Some("+400d"), 130.0),
        ];
        let head = "build  umask 0022 TZ UTC                clock real     12.3 s  sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                    build  umask 0077 TZ Pacific/Kiritimati clock +400d   130.0 s  sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";
        let same = Report {
            reproducible: true,
            builds: builds.clone(),
            files: vec!["a.raw".into(), "a.manifest.json".into()],
            difference: None,
            image: Some(PathBuf::from("out/a.raw")),
        };
        let differs = Report {
            reproducible: false,
            builds: builds.clone(),
            files: vec!["a.raw".into()],
            difference: Some(Difference {
                part: "root-x86-64".into(),
                file: Some("/etc/motd".into()),
                field: "mtime".into(),
                a: Some("1".into()),
                b: Some("2".into()),
                also: Vec::new(),
            }),
            image: None,
        };
        let no_image = Report {
            image: None,
            ..same.clone()
        };
        for (report, tail) in [
            (&same, "reproducible: 2 files identical\nimage  out/a.raw\n"),
            (&no_image, "reproducible: 2 files identical\n"),
            (
                &differs,
                "NOT reproducible: root-x86-64: /etc/motd: mtime (1 vs 2)\n",
            ),
        ] {
            assert_eq!(text(|o| reproducible(o, report)), format!("{head}{tail}"));
        }
    }

    #[test]
    fn lock_counts_packages() {
        let pkg = |name: &str| LockedPackage {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            sha256: EMPTY.parse().ok(),
        };
        let lock_file = LockFile {
            layers: vec![
                LockedLayer {
                    name: "packages/nginx".into(),
                    suite: Some("trixie".into()),
                    packages: vec![pkg("nginx"), pkg("libc6")],
                },
                LockedLayer {
                    name: "packages/none".into(),
                    suite: Some("trixie".into()),
                    packages: Vec::new(),
                },
            ],
        };
        let path = Path::new("recipes/web.lock");
        assert_eq!(
            text(|o| lock(o, path, &lock_file)),
            "  packages/nginx           2 packages\n\
             \x20 packages/none            0 packages\n\
             wrote recipes/web.lock\n"
        );
        let mut json = Vec::new();
        super::super::json(&mut json, &lock_json(path, &lock_file)).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert!(
            json.starts_with("{\n  \"layers\": [\n    {\n      \"name\": \"packages/nginx\","),
            "{json}"
        );
        assert!(
            json.ends_with("\n  ],\n  \"lock\": \"recipes/web.lock\"\n}\n"),
            "{json}"
        );
    }
}
