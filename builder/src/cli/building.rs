//! The build commands (`kiln build`, `build --check-reproducible`,
//! `lock`): argument handling and dispatch only.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::{render, CacheArgs, Context};
use crate::build::{self, BuildOptions};
use crate::image::secureboot::UkiSigner;
use crate::publish::sign;
use crate::registry::cache::{Cache, CacheConfig};
use crate::util::error::check_failed;

impl CacheArgs {
    /// The cache these options name, if any: keys read now, so a bad one is
    /// bad input before anything is built.
    pub(super) fn open(&self) -> Result<Option<std::sync::Arc<Cache>>> {
        let Some(url) = self.cache.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let reference = crate::registry::Reference::parse(url)?;
        if reference.tag.is_some() {
            return Err(crate::util::error::InputError {
                file: "(command line)".into(),
                line: None,
                field: Some("--cache".into()),
                message: format!("{url:?}: a cache is a repository, without a tag"),
            }
            .into());
        }
        let pubkey = self
            .cache_pubkey
            .as_deref()
            .map(sign::load_public_key)
            .transpose()?;
        let sign_key = self
            .cache_sign_key
            .as_deref()
            .map(sign::SigningKey::load)
            .transpose()?;
        Ok(Some(std::sync::Arc::new(Cache::new(CacheConfig {
            reference,
            read_only: self.cache_read_only,
            pubkey,
            sign_key,
        }))))
    }
}

/// `kiln build --check-reproducible`: two builds from nothing, compared.
pub(super) fn check_reproducible(
    cx: &Context,
    recipe: &Path,
    output: &Path,
    signing: Option<(&Path, &Path)>,
) -> Result<()> {
    // Bad input fails here, before two builds start.
    crate::input::plan::Plan::new(recipe)?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some((key, cert)) = signing {
        UkiSigner::load(key, cert)?;
        // The builds run in directories of their own.
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        args.extend([
            "--secure-boot-key".into(),
            absolute(key).into_os_string(),
            "--secure-boot-cert".into(),
            absolute(cert).into_os_string(),
        ]);
    }
    let kiln = std::env::current_exe().context("finding the kiln executable")?;
    let report = build::reproducible::check(&kiln, recipe, output, cx.quiet || cx.json, &args)?;
    cx.report(&report, |out| render::build::reproducible(out, &report))?;
    build::reproducible::verdict(&report)
}

/// `--secure-boot-key` and `--secure-boot-cert` (clap requires both or neither).
pub(super) fn signing<'a>(
    key: &'a Option<PathBuf>,
    cert: &'a Option<PathBuf>,
) -> Option<(&'a Path, &'a Path)> {
    match (key, cert) {
        (Some(k), Some(c)) => Some((k.as_path(), c.as_path())),
        _ => None,
    }
}

/// `kiln build`: one recipe prints its report; several are built in turn
/// and print `{"images": [...], "failed": [...]}`, exit 1 when any failed.
pub(super) fn build(
    cx: &Context,
    recipes: &[PathBuf],
    output: &Path,
    jobs: Option<u16>,
    cache: Option<std::sync::Arc<Cache>>,
    signing: Option<(&Path, &Path)>,
) -> Result<()> {
    // A bad key or certificate fails before any work.
    let secure_boot = signing
        .map(|(key, cert)| UkiSigner::load(key, cert))
        .transpose()?;
    let opts = BuildOptions {
        out_dir: output.to_path_buf(),
        cache,
        secure_boot,
    };
    if let [recipe] = recipes {
        let mut progress = cx.progress();
        let report = build::build(recipe, &cx.store, &opts, &mut progress)?;
        drop(progress);
        return cx.report(&report, |out| render::build::build(out, &report));
    }
    let mut progress = cx.progress();
    let jobs = jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let all = build::build_many(recipes, &cx.store, &opts, jobs, &mut progress)?;
    drop(progress);
    cx.report(&all, |out| render::build::build_many(out, &all))?;
    if !all.failed.is_empty() {
        let names: Vec<String> = all
            .failed
            .iter()
            .map(|f| f.recipe.display().to_string())
            .collect();
        anyhow::bail!(check_failed(format!(
            "{} of {} recipes failed: {}",
            names.len(),
            recipes.len(),
            names.join(", ")
        )));
    }
    Ok(())
}

/// `kiln lock`.
pub(super) fn lock(cx: &Context, recipe: &Path) -> Result<()> {
    let mut progress = cx.progress();
    let (path, lock) = build::lock(recipe, &cx.store, &mut progress)?;
    drop(progress);
    cx.report(&render::build::lock_json(&path, &lock), |out| {
        render::build::lock(out, &path, &lock)
    })
}
