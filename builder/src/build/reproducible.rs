//! `kiln build --check-reproducible`: build a recipe twice, from nothing,
//! under different conditions, and compare every output byte for byte.
//!
//! The two builds are separate kiln processes, run side by side, each with
//! its own temporary store, output and working directory (nothing is
//! shared, not even the download cache). They differ in umask, time zone
//! and wall-clock time: the second runs kiln under libfaketime, more than a
//! year ahead. (Only kiln itself sees the fake clock: apt refuses archive
//! indexes whose Valid-Until lies in the past. The tools kiln runs still
//! see two different real times, since every build-time mtime they write
//! differs between the builds.)
//!
//! On a difference, the report names the first differing partition, file
//! and field ([`crate::read::firstdiff`]) and the command exits 1. When the builds
//! agree, the first build's outputs go to the output directory as a plain
//! `kiln build` would write them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::read::firstdiff::{self, Difference};
use crate::util::error::{check_failed, EnvError, InputError};
use crate::util::exec::{CommandFailed, CommandRunExt};

/// Where Debian's `faketime` package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The conditions of one build.
#[derive(Debug, Clone, Serialize)]
pub struct Conditions {
    /// The umask kiln runs with (octal).
    pub umask: String,
    /// `TZ`.
    pub tz: String,
    /// libfaketime's `FAKETIME` offset, if the clock is shifted.
    pub faketime: Option<String>,
}

/// One of the two builds.
#[derive(Debug, Clone, Serialize)]
pub struct BuildRun {
    /// Its conditions.
    pub conditions: Conditions,
    /// The image digest it produced.
    pub digest: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What `--check-reproducible` found (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether every output file was identical.
    pub reproducible: bool,
    /// The two builds.
    pub builds: Vec<BuildRun>,
    /// The output files compared.
    pub files: Vec<String>,
    /// The first difference, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
    /// The image written to the output directory (when reproducible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<PathBuf>,
}

/// The two builds' conditions.
pub fn conditions() -> [Conditions; 2] {
    [
        Conditions {
            umask: "0022".into(),
            tz: "UTC".into(),
            faketime: None,
        },
        Conditions {
            umask: "0077".into(),
            // UTC+14, the farthest from UTC there is.
            tz: "Pacific/Kiritimati".into(),
            faketime: Some("+400d".into()),
        },
    ]
}

/// Build `recipe` twice with the kiln binary `kiln` and compare. On success
/// the first build's outputs are moved into `out_dir`. A build that fails
/// fails the check with its own exit code. `build_args` go to both builds
/// (e.g. the Secure Boot signing options, with absolute paths).
pub fn check(
    kiln: &Path,
    recipe: &Path,
    out_dir: &Path,
    quiet: bool,
    build_args: &[std::ffi::OsString],
) -> Result<Report> {
    if !Path::new(LIBFAKETIME).is_file() {
        anyhow::bail!(EnvError::new(format!(
            "{LIBFAKETIME} not found: install the Debian package faketime (the second build runs with the clock shifted)"
        )));
    }
    let recipe = std::fs::canonicalize(recipe)
        .with_context(|| format!("{}: cannot read the recipe", recipe.display()))?;
    let scratch = crate::util::scratch::in_temp_dir()?;
    let conds = conditions();
    let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|n| scratch.path().join(n)).collect();
    for d in &dirs {
        for sub in ["store", "out", "work"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
    }
    if !quiet {
        for (c, d) in conds.iter().zip(&dirs) {
            eprintln!(
                "kiln: building {} in {} (umask {}, TZ {}{})",
                recipe.display(),
                d.display(),
                c.umask,
                c.tz,
                c.faketime
                    .as_ref()
                    .map(|f| format!(", clock {f}"))
                    .unwrap_or_default()
            );
        }
    }
    // Side by side: each build is mostly one process waiting on another.
    let runs: Vec<Result<BuildRun>> = std::thread::scope(|s| {
        let handles: Vec<_> = conds
            .iter()
            .zip(&dirs)
            .map(|(c, d)| s.spawn(|| run_build(kiln, &recipe, d, c, build_args)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(crate::internal_err!("build thread panicked")))
            })
            .collect()
    });
    let runs = runs.into_iter().collect::<Result<Vec<_>>>()?;

    let (a_out, b_out) = (dirs[0].join("out"), dirs[1].join("out"));
    let files = output_files(&a_out)?;
    let mut difference = None;
    let b_files = output_files(&b_out)?;
    if files != b_files {
        difference = Some(Difference {
            part: "output directory".into(),
            file: None,
            field: "file names".into(),
            a: Some(files.join(" ")),
            b: Some(b_files.join(" ")),
            also: Vec::new(),
        });
    }
    // The image first: its report names the cause; the sidecars follow from it.
    let mut ordered = files.clone();
    ordered.sort_by_key(|f| (!(f.ends_with(".raw") || f.ends_with(".tar")), f.clone()));
    for f in &ordered {
        if difference.is_some() {
            break;
        }
        let (a, b) = (a_out.join(f), b_out.join(f));
        if firstdiff::same_bytes(&a, &b)? {
            continue;
        }
        difference = if f.ends_with(".json") {
            firstdiff::first_sidecar_difference(&a, &b)?
        } else if f.ends_with(".raw") || f.ends_with(".tar") {
            firstdiff::first_difference(&a, &b)?
        } else {
            None
        };
        if difference.is_none() {
            difference = Some(Difference {
                part: f.clone(),
                file: None,
                field: "bytes".into(),
                a: None,
                b: None,
                also: Vec::new(),
            });
        }
    }
    let mut report = Report {
        reproducible: difference.is_none(),
        builds: runs,
        files,
        difference,
        image: None,
    };
    if report.reproducible {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating output directory {}", out_dir.display()))?;
        for f in &report.files {
            let dest = out_dir.join(f);
            // Same filesystem: a rename; else a copy then a rename.
            if std::fs::rename(a_out.join(f), &dest).is_err() {
                let tmp = out_dir.join(format!(".kiln-tmp-{f}"));
                crate::build::output::copy_sparse(&a_out.join(f), &tmp)?;
                std::fs::rename(&tmp, &dest)
                    .with_context(|| format!("moving {f} into {}", out_dir.display()))?;
            }
            if f.ends_with(".raw") || f.ends_with(".tar") {
                report.image = Some(dest);
            }
        }
    }
    Ok(report)
}

/// Fail (exit 1) with the report's difference.
pub fn verdict(report: &Report) -> Result<()> {
    match &report.difference {
        None => Ok(()),
        Some(d) => Err(check_failed(format!("not reproducible: {d}"))),
    }
}

fn run_build(
    kiln: &Path,
    recipe: &Path,
    dir: &Path,
    c: &Conditions,
    build_args: &[std::ffi::OsString],
) -> Result<BuildRun> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask \"$1\"; shift; exec \"$@\"")
        .arg("sh")
        .arg(&c.umask)
        .arg(kiln)
        .arg("--store")
        .arg(dir.join("store"))
        .arg("--json")
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(dir.join("out"))
        .args(build_args)
        .current_dir(dir.join("work"))
        .env("TZ", &c.tz)
        .env_remove("SOURCE_DATE_EPOCH")
        // Dies with this kiln; waited for on this (scoped) thread.
        .lifecycle_bind();
    if let Some(offset) = &c.faketime {
        cmd.env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME", offset)
            .env("FAKETIME_ONLY_CMDS", "kiln")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            // Only the clock: file times as the filesystem has them.
            .env("NO_FAKE_STAT", "1");
    }
    let start = Instant::now();
    let result = cmd.run_get_output();
    let seconds = start.elapsed().as_secs_f64();
    let stdout = match result {
        Ok(stdout) => stdout,
        Err(e) => {
            let Some(failed) = e.downcast_ref::<CommandFailed>() else {
                return Err(e.context(format!("running {}", kiln.display())));
            };
            // The build's own exit code is the check's: its class is known.
            let code = failed.status.code().unwrap_or(1);
            let tail: Vec<&str> = failed.stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let message = format!(
                "the build in {} (umask {}, TZ {}) failed with exit code {code}:\n{}",
                dir.display(),
                c.umask,
                c.tz,
                tail.join("\n")
            );
            return Err(match code {
                2 => InputError::file(recipe.display().to_string(), message).into(),
                3 => EnvError::new(message).into(),
                1 => crate::util::error::check_failed(message),
                _ => crate::internal_err!("{message}"),
            });
        }
    };
    let json: serde_json::Value =
        serde_json::from_slice(&stdout).context("reading the build's --json report")?;
    Ok(BuildRun {
        conditions: c.clone(),
        digest: json["image"]["digest"].as_str().unwrap_or("").to_string(),
        seconds,
    })
}

fn output_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
