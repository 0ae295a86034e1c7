//! `kiln build`: plan → layers (from the store, or built and stored) →
//! composed root → image file → manifest, written to the output directory
//! ([`crate::build::output`], which also keeps the assembled-image cache).
//! One module per step where the data changes shape: [`compose`] makes the
//! plan's layers and their root ([`from_sources`] builds one layer),
//! [`assemble`] makes the image, its manifest and the output files.

mod assemble;
mod compose;
mod from_sources;
pub mod many;
pub mod output;
pub mod reproducible;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use crate::build::assemble::Assembly;
use crate::build::many::Claims;
pub use crate::build::many::{build_many, FailedRecipe, ManyReport};
use crate::input::plan::Plan;
use crate::model::manifest::Manifest;
use crate::registry::cache::Cache;
use crate::store::{write_atomic, KeyEntry, Store};
use crate::util::progress::Progress;
use compose::cached_entries;
pub use compose::{build_layers, image_epoch, Layers};

/// What `kiln build --json` prints (ARCHITECTURE.md, "The command-line contract").
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The image.
    pub image: ImageReport,
    /// The layers, bottom first.
    pub layers: Vec<LayerReport>,
    /// The manifest file.
    pub manifest: PathBuf,
    /// SOURCE_DATE_EPOCH used.
    pub source_date_epoch: i64,
    /// The SHA256SUMS lines of this image's files (several recipes' are
    /// joined into one file).
    #[serde(skip)]
    pub sha256sums: String,
}

/// `image` in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// `sha256:` of the image file.
    pub digest: String,
    /// The image file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it was copied from the store's image cache (nothing changed).
    pub cached: bool,
}

/// One entry of `layers` in the report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// Layer kind.
    pub kind: String,
    /// Blob digest.
    pub digest: String,
    /// Layer key.
    pub key: String,
    /// Whether it came from the store or the registry cache without being rebuilt.
    pub cached: bool,
    /// Where it came from.
    pub source: LayerSource,
    /// Blob size.
    pub size: u64,
}

/// Where a layer of a build came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerSource {
    /// The local store had it under its key.
    Store,
    /// The registry cache had it (checked, then imported into the store).
    Registry,
    /// Built here.
    Built,
}

/// Build options.
#[derive(Debug)]
pub struct BuildOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// The layer cache in a registry (`--cache`).
    pub cache: Option<Arc<Cache>>,
    /// Sign the UKI for Secure Boot with this db key and certificate.
    pub secure_boot: Option<crate::image::secureboot::UkiSigner>,
}

/// Build an image from a recipe.
pub fn build(
    recipe_path: &Path,
    store: &Store,
    opts: &BuildOptions,
    progress: &mut Progress,
) -> Result<BuildReport> {
    progress.step(format!("reading {}", recipe_path.display()));
    let plan = Plan::new(recipe_path)?;
    progress.finish(None);
    store.init()?;
    let _lock = store.lock()?;
    build_plan(recipe_path, &plan, store, opts, None, progress)
}

/// [`build`] of a validated plan, with the store initialised and locked
/// by the caller; `claims` when other builds of this process run beside it
/// ([`many`]).
pub(crate) fn build_plan(
    recipe_path: &Path,
    plan: &Plan,
    store: &Store,
    opts: &BuildOptions,
    claims: Option<&Claims>,
    progress: &mut Progress,
) -> Result<BuildReport> {
    let assembly = Assembly::new(recipe_path, plan, store, opts)?;
    // Nothing changed: every layer and the assembled image are in the store.
    if let Some(entries) = cached_entries(plan, store)? {
        if let Some(report) = assembly.reuse(&entries, progress)? {
            return Ok(report);
        }
    }
    let layers = build_layers(plan, store, opts.cache.as_deref(), claims, progress)?;
    // The output directory is made only now: bad input found while building
    // (a service program no layer provides) leaves none behind.
    let tmp = output::temp_dir(&opts.out_dir)?;
    let image = assembly.write_image(&layers, tmp.path(), progress)?;
    let (manifest, finished) = assembly.write_outputs(&layers, image, tmp.path(), progress)?;
    Ok(report(
        &manifest,
        &layers.entries,
        &opts.out_dir,
        finished,
        false,
    ))
}

fn report(
    m: &Manifest,
    entries: &[(KeyEntry, LayerSource)],
    out_dir: &Path,
    (manifest, sha256sums): (PathBuf, String),
    image_cached: bool,
) -> BuildReport {
    BuildReport {
        image: ImageReport {
            name: m.name.clone(),
            version: m.version.clone(),
            digest: m.image.digest.clone(),
            path: out_dir.join(&m.image.file),
            size: m.image.size,
            cached: image_cached,
        },
        layers: entries
            .iter()
            .map(|(e, source)| LayerReport {
                name: e.name.clone(),
                kind: e.kind.clone(),
                digest: e.digest.clone(),
                key: e.key.clone(),
                cached: *source != LayerSource::Built,
                source: *source,
                size: e.size,
            })
            .collect(),
        manifest,
        source_date_epoch: m.source_date_epoch,
        sha256sums,
    }
}

/// `kiln lock`: build (or take from the store) the recipe's layers ignoring
/// any existing lock, and write `NAME.lock` beside the recipe with every
/// Debian package each layer installed.
pub fn lock(
    recipe_path: &Path,
    store: &Store,
    progress: &mut Progress,
) -> Result<(PathBuf, crate::input::lock::LockFile)> {
    let plan = Plan::with_lock(recipe_path, false)?;
    store.init()?;
    let _lock = store.lock()?;
    let layers = build_layers(&plan, store, None, None, progress)?;
    let lock = crate::input::lock::LockFile {
        layers: layers
            .entries
            .iter()
            .zip(&plan.layers)
            .filter(|(_, pl)| pl.def.debian.is_some())
            .map(|((e, _), pl)| crate::input::lock::LockedLayer {
                name: pl.def.name.clone(),
                suite: pl.def.debian.as_ref().map(|d| d.suite.clone()),
                packages: e.packages.iter().map(Into::into).collect(),
            })
            .collect(),
    };
    let path = crate::input::lock::path_for(recipe_path);
    let dir = path.parent().unwrap_or(Path::new("."));
    write_atomic(
        dir,
        &path,
        lock.render(&format!("{} {}", plan.recipe.name, plan.recipe.version))
            .as_bytes(),
    )?;
    Ok((path, lock))
}
