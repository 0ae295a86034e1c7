//! `kiln build`: plan → layers (from the store, or built and stored) →
//! composed root → image file → manifest, written to the output directory
//! ([`crate::build::output`], which also keeps the assembled-image cache).

pub mod many;
pub mod output;
pub mod reproducible;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::build::many::Claims;
pub use crate::build::many::{build_many, FailedRecipe, ManyReport};
use crate::build::output::OutFile;
use crate::fs::layer::{self, sha256_digest};
use crate::fs::tree::{self, file_name, Meta, NodeKind, Tree, WHITEOUT_PREFIX};
use crate::fs::usrmerge;
use crate::input::epoch::{self, EpochRule};
use crate::input::layerdef::LayerKind;
use crate::input::plan::{Plan, PlannedLayer};
use crate::input::recipe::DiskFormat;
use crate::layers::apt;
use crate::layers::source;
use crate::model::deb;
use crate::model::manifest::{BuilderInfo, ImageFile, Manifest, ManifestLayer, RecipeRef, SCHEMA};
use crate::registry::cache::{Cache, Lookup};
use crate::store::{write_atomic, KeyEntry, Store};
use crate::util::error::InputError;
use crate::util::exec::CommandRunExt;
use crate::util::progress::Progress;

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

/// The layers of a plan, built or fetched, and the root they compose to.
pub struct Layers {
    /// Per layer: key-index entry and where it came from.
    pub entries: Vec<(KeyEntry, LayerSource)>,
    /// Per layer: its own tree (sharing file contents with `root`).
    pub trees: Vec<Tree>,
    /// The composed root.
    pub root: Tree,
}

impl Layers {
    /// The digest of the layer blob whose file at `path` the composed root
    /// holds unchanged: the very bytes that layer's tree has there (shared,
    /// not compared), from the topmost layer that has them.
    pub fn layer_of(&self, path: &str) -> Option<String> {
        let file = |t: &Tree| match t.get(path).map(|n| &n.kind) {
            Some(NodeKind::File(d)) => Some(Arc::clone(d)),
            _ => None,
        };
        let data = file(&self.root)?;
        self.trees
            .iter()
            .zip(&self.entries)
            .rev()
            .find(|(t, _)| file(t).is_some_and(|d| Arc::ptr_eq(&d, &data)))
            .map(|(_, (e, _))| e.digest.clone())
    }
}

/// A layer the registry cache gave: its entry and tree, once its blob
/// checked out and unpacked. `None` (after a warning) when it did not.
fn from_cache(
    cache: &Cache,
    key: &str,
    pl: &PlannedLayer,
    lookup: Lookup,
) -> Option<(KeyEntry, Vec<u8>, Tree)> {
    let Lookup::Hit(hit) = lookup else {
        return None;
    };
    let name = &pl.def.name;
    let entry = hit.entry;
    // The store's own check: the bytes hash to the digest they are kept under.
    let digest = sha256_digest(&hit.blob);
    let refused = if digest != entry.digest {
        Some(format!("the blob hashes to {digest}, not {}", entry.digest))
    } else if entry.name != *name || entry.kind != pl.def.kind.as_str() {
        Some(format!(
            "the entry is for {} layer {}",
            entry.kind, entry.name
        ))
    } else {
        None
    };
    let tree = match refused {
        Some(m) => Err(crate::util::error::check_failed(m)),
        None => layer::unpack(&hit.blob),
    };
    match tree {
        Ok(tree) => Some((entry, hit.blob, tree)),
        Err(e) => {
            tracing::warn!(cache = %cache.url(), layer = %name, %key, "layer cache: not using the entry, building the layer: {e:#}");
            None
        }
    }
}

/// Build (or take from the store, or from the registry cache) every layer
/// of a plan and compose them. Layers built here are pushed to the cache
/// (unless it is read-only) once they are in the store.
pub fn build_layers(
    plan: &Plan,
    store: &Store,
    cache: Option<&Cache>,
    claims: Option<&Claims>,
    progress: &mut Progress,
) -> Result<Layers> {
    let mut root = Tree::new(plan.epoch.provisional());
    let mut entries = Vec::new();
    let mut trees = Vec::new();
    let mut lower: Option<KeyEntry> = None;
    // New layers reach the store only once the whole composition checks out,
    // so that bad input (a service whose program is missing) leaves nothing.
    let mut pending = Vec::new();
    // Layers built here, to push: (index in `pending`, whether the cache
    // holds a refused entry under the key).
    let mut to_push = Vec::new();
    // Keys this build is making, held (with `claims`) until they are in
    // the store, so a build beside it waits for them instead of making them too.
    let mut held = Vec::new();
    for pl in &plan.layers {
        let key = pl.key(lower.as_ref().map(|e| e.digest.as_str()), plan.epoch.fixed);
        let name = &pl.def.name;
        progress.step(format!("layer {name}"));
        let mut local = store.lookup_key(&key)?;
        if let (None, Some(c)) = (&local, claims) {
            held.push(c.claim(&key)?);
            local = store.lookup_key(&key)?;
        }
        let mut refused = false;
        let remote = match (&local, cache) {
            (None, Some(c)) => {
                progress.step(format!("layer {name}: looking it up in {}", c.url()));
                let lookup = c.lookup(&key, name, &progress.transfer());
                // An entry is under the key's tag, but it was not usable.
                let present = !matches!(lookup, Lookup::Miss);
                let hit = from_cache(c, &key, pl, lookup);
                refused = present && hit.is_none();
                hit
            }
            _ => None,
        };
        let (entry, source, tree) = match (local, remote) {
            (Some(entry), _) => {
                tracing::info!(layer = %name, %key, digest = %entry.digest, "cached");
                let tree = store
                    .read_blob(&entry.digest, layer::unpack_reader)
                    .with_context(|| format!("unpacking cached layer {name} ({})", entry.digest))?;
                (entry, LayerSource::Store, tree)
            }
            (None, Some((entry, blob, tree))) => {
                tracing::info!(layer = %name, %key, digest = %entry.digest, "from the registry cache");
                pending.push((blob, entry.clone()));
                (entry, LayerSource::Registry, tree)
            }
            (None, None) => {
                let lower_epoch = lower.as_ref().and_then(|e| e.source_date_epoch);
                let built = build_layer(pl, &root, plan.epoch, lower_epoch, store, progress)
                    .with_context(|| {
                        format!("building layer {name} ({})", pl.def.file.display())
                    })?;
                let packed = layer::pack(&built.tree)?;
                let entry = KeyEntry {
                    key: key.clone(),
                    digest: packed.digest.clone(),
                    diff_id: packed.diff_id,
                    name: name.clone(),
                    kind: pl.def.kind.as_str().into(),
                    size: packed.blob.len() as u64,
                    tar_size: packed.tar_size,
                    packages: built.packages,
                    source_date_epoch: Some(built.epoch),
                };
                to_push.push((pending.len(), refused));
                pending.push((packed.blob, entry.clone()));
                (entry, LayerSource::Built, built.tree)
            }
        };
        progress.finish(Some(match source {
            LayerSource::Store => "cached",
            LayerSource::Registry => "from the registry cache",
            LayerSource::Built => "built",
        }));
        root.apply_layer(&tree)
            .with_context(|| format!("applying layer {name}"))?;
        lower = Some(entry.clone());
        entries.push((entry, source));
        trees.push(tree);
    }
    check_services(plan, &root)?;
    for (blob, entry) in &pending {
        let digest = store.put_blob(blob)?;
        anyhow::ensure!(
            digest == entry.digest,
            crate::check_err!(
                "layer {}: its blob hashes to {digest}, not {}",
                entry.name,
                entry.digest
            )
        );
        store.record_key(entry)?;
    }
    // In the store: other builds of this run may take them now.
    drop(held);
    if let Some(c) = cache.filter(|c| !c.read_only()) {
        for (i, replace) in to_push {
            let (blob, entry) = &pending[i];
            progress.step(format!("layer {}: pushing it to {}", entry.name, c.url()));
            c.push(entry, blob, replace);
            progress.finish(None);
        }
    }
    Ok(Layers {
        entries,
        trees,
        root,
    })
}

/// The SOURCE_DATE_EPOCH of the image made of these layers: the fixed one,
/// else the top layer's derived one.
pub fn image_epoch(plan: &Plan, entries: &[(KeyEntry, LayerSource)]) -> i64 {
    plan.epoch
        .layer_epoch(entries.last().and_then(|(e, _)| e.source_date_epoch), None)
}

/// Held while apt runs.
static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One layer, built: its tree, the Debian packages in it and its epoch.
struct BuiltLayer {
    tree: Tree,
    packages: Vec<deb::DebPackage>,
    epoch: i64,
}

/// Build one layer's tree from its sources.
///
/// A base or app layer is its unpacked (and stripped) Debian packages, its
/// files and its services. A packages layer with `[debian]` is what apt
/// changes when it installs the packages over `lower_root` in a chroot
/// ([`apt::install`]), stripped, with its files and services on top; without
/// `[debian]` it is the difference its files make. Every time in it is
/// clamped to the layer's epoch ([`crate::input::epoch`]).
fn build_layer(
    pl: &PlannedLayer,
    lower_root: &Tree,
    rule: EpochRule,
    lower_epoch: Option<i64>,
    store: &Store,
    progress: &mut Progress,
) -> Result<BuiltLayer> {
    let packages_layer = pl.def.kind == LayerKind::Packages;
    let (mut tree, packages, epoch) = match &pl.def.debian {
        Some(deb) if packages_layer => {
            progress.step(format!(
                "layer {}: installing {} Debian packages with apt",
                pl.def.name,
                deb.packages.len()
            ));
            // apt locks the download cache it shares with other builds of
            // this process ([`many`]): one apt run at a time.
            let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
            let built = apt::install(
                lower_root,
                &pl.def.file,
                deb,
                pl.locked.as_deref(),
                rule,
                lower_epoch,
                store,
                &progress.transfer(),
            )?;
            let debs: Vec<deb::DebPackage> = built
                .installed
                .iter()
                .map(|p| deb::DebPackage {
                    name: p.package.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    sha256: p.sha256.clone().unwrap_or_else(|| "NOASSERTION".into()),
                    download: None,
                })
                .collect();
            if let Some(locked) = &pl.locked {
                crate::input::lock::check_installed(&pl.def.name, locked, &debs)?;
            }
            let mut t = built.tree;
            usrmerge::merge(&mut t, false)
                .with_context(|| format!("layer {}: what apt installed", pl.def.name))?;
            let st = source::strip_layer(&mut t, &pl.def)?;
            tracing::info!(layer = %pl.def.name, installed = built.installed.len(), deleted = st.deleted, timings = ?built.timings, epoch = built.epoch, "packages installed");
            (t, debs, built.epoch)
        }
        Some(deb) => {
            progress.step(format!(
                "layer {}: unpacking {} Debian packages with mmdebstrap",
                pl.def.name,
                deb.packages.len()
            ));
            let (mut t, mut debs) = source::debian_tree(
                deb,
                pl.locked.as_deref(),
                rule.fixed,
                store,
                &progress.transfer(),
            )?;
            // Purged packages (`[strip] purge`) are not in the image: not
            // in its package list (manifest, SBOM) and not in its lock.
            debs.retain(|d| !pl.def.strip.purge.contains(&d.name));
            if let Some(locked) = &pl.locked {
                crate::input::lock::check_installed(&pl.def.name, locked, &debs)?;
            }
            let newest = match rule.fixed {
                Some(_) => None,
                None => epoch::newest_deb_date(
                    &store.deb_cache(),
                    debs.iter()
                        .map(|d| deb::deb_file_name(&d.name, &d.version, &d.architecture)),
                )?,
            };
            let epoch = rule.layer_epoch(lower_epoch, newest);
            t.clamp_mtimes(epoch);
            usrmerge::merge(&mut t, pl.def.kind == LayerKind::Base).with_context(|| {
                format!(
                    "layer {}: merging /usr in the unpacked packages",
                    pl.def.name
                )
            })?;
            let st = source::strip_layer(&mut t, &pl.def)?;
            tracing::info!(layer = %pl.def.name, deleted = st.deleted, modules_kept = st.modules_kept, modules_removed = st.modules_removed, epoch, "stripped");
            for (rule, bytes) in &st.rule_bytes {
                tracing::info!(layer = %pl.def.name, rule = %rule, bytes, "strip rule saved");
            }
            (t, debs, epoch)
        }
        None => {
            let epoch = rule.layer_epoch(lower_epoch, None);
            (Tree::new(epoch), Vec::new(), epoch)
        }
    };
    if let Some(files) = &pl.files {
        let mut files = files.clone();
        files.set_mtimes(epoch);
        tree.apply_layer(&files)?;
        // Whiteouts in the files (`.wh.NAME`) are meant for the layers
        // below: applying them here consumed them, so they go into the
        // layer itself too.
        for (path, node) in files.iter() {
            if file_name(path).starts_with(WHITEOUT_PREFIX) {
                tree.insert_with_parents(path, node.clone(), &Meta::root(0o755, epoch))?;
            }
        }
    }
    source::add_services(&pl.def, &mut tree, epoch)?;
    if pl.def.kind == LayerKind::Base {
        // A base layer is a whole root: it carries the merged-/usr links.
        usrmerge::merge(&mut tree, true)
            .with_context(|| format!("layer {}: merging /usr", pl.def.name))?;
    }
    if packages_layer && pl.def.debian.is_none() {
        let mut full = lower_root.clone();
        full.apply_layer(&tree)?;
        tree = tree::diff(lower_root, &full);
    }
    Ok(BuiltLayer {
        tree,
        packages,
        epoch,
    })
}

/// Every declared service's program must exist in the composed image.
fn check_services(plan: &Plan, root: &Tree) -> Result<()> {
    for pl in &plan.layers {
        for s in &pl.def.services {
            let prog = &s.command[0];
            if !matches!(root.resolve(prog), Some((_, n)) if matches!(n.kind, NodeKind::File(_))) {
                return Err(InputError {
                    file: pl.def.file.display().to_string(),
                    line: Some(s.line),
                    field: Some("service.command".into()),
                    message: format!("service {:?}: {prog} does not exist in the composed image (or is not a regular file)", s.name),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// The key-index entries of a plan's layers when every one of them is in the
/// store (nothing is unpacked); `None` at the first that is not.
fn cached_entries(plan: &Plan, store: &Store) -> Result<Option<Vec<(KeyEntry, LayerSource)>>> {
    let mut entries: Vec<(KeyEntry, LayerSource)> = Vec::new();
    for pl in &plan.layers {
        let lower = entries.last().map(|(e, _)| e.digest.as_str());
        match store.lookup_key(&pl.key(lower, plan.epoch.fixed))? {
            Some(e) => entries.push((e, LayerSource::Store)),
            None => return Ok(None),
        }
    }
    Ok(Some(entries))
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
    let recipe = &plan.recipe;
    let init = match recipe.disk.format {
        DiskFormat::Tar => None,
        _ => Some(crate::image::initramfs::find_init()?),
    };
    let init_digest = init.as_ref().map(|i| i.digest.as_str());
    let recipe_file = recipe_path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let image_key = |entries: &[(KeyEntry, LayerSource)]| {
        crate::build::output::ImageKeyInput {
            assembly: crate::build::output::ASSEMBLY_VERSION,
            kiln: env!("CARGO_PKG_VERSION"),
            recipe_file: &recipe_file,
            recipe: &plan.recipe_digest,
            layers: entries.iter().map(|(e, _)| e.digest.as_str()).collect(),
            init: init_digest,
            source_date_epoch: image_epoch(plan, entries),
            epoch_source: plan.epoch.source,
            uki_signer: opts
                .secure_boot
                .as_ref()
                .map(|s| s.cert_fingerprint.as_str()),
        }
        .key()
    };

    let base = format!("{}-{}", recipe.name, recipe.version);

    // Nothing changed: every layer and the assembled image are in the store.
    if let Some(entries) = cached_entries(plan, store)? {
        if let Some(hit) = crate::build::output::lookup(store, &image_key(&entries))? {
            let tmp = crate::build::output::temp_dir(&opts.out_dir)?;
            let m = hit.manifest;
            let name = m.image.file.clone();
            let out_path = opts.out_dir.join(&name);
            let path = tmp.path().join(&name);
            // The output directory may still hold the very file kiln wrote.
            let in_place = recipe.disk.format != DiskFormat::Qcow2
                && crate::build::output::up_to_date(store, &out_path, &m.image.digest);
            let files = if in_place {
                progress.step(format!("{} is up to date", out_path.display()));
                progress.finish(None);
                Some(vec![OutFile {
                    name,
                    path: None,
                    digest: m.image.digest.clone(),
                }])
            } else {
                progress.step("copying the cached image");
                let digest = crate::build::output::copy_hashing(&hit.file, &path)?;
                progress.finish(Some(&digest));
                if digest == m.image.digest {
                    let mut files = vec![OutFile {
                        name,
                        path: Some(path.clone()),
                        digest,
                    }];
                    if recipe.disk.format == DiskFormat::Qcow2 {
                        files.push(qcow2(&path, tmp.path(), &base, progress)?);
                    }
                    Some(files)
                } else {
                    None
                }
            };
            if let Some(files) = files {
                let finished = crate::build::output::finish(tmp.path(), &opts.out_dir, &m, files)?;
                if !in_place {
                    crate::build::output::record_output(store, &out_path, &m.image.digest)?;
                }
                return Ok(report(&m, &entries, &opts.out_dir, finished, true));
            }
            // The store's copy is damaged: forget it and assemble again.
            tracing::warn!(file = %hit.file.display(), "cached image does not match its digest; reassembling");
            std::fs::remove_file(&hit.file).ok();
            std::fs::remove_file(&path).ok();
        }
    }

    let layers = build_layers(plan, store, opts.cache.as_deref(), claims, progress)?;
    // The output directory is made only now: bad input found while building
    // (a service program no layer provides) leaves none behind.
    let tmp = crate::build::output::temp_dir(&opts.out_dir)?;
    let sde = image_epoch(plan, &layers.entries);
    let (image_name, disk, digest) = if recipe.disk.format == DiskFormat::Tar {
        progress.step("writing the composed root as a tar");
        let name = format!("{base}.tar");
        let tar = layer::write_tar(&layers.root)?;
        write_atomic(tmp.path(), &tmp.path().join(&name), &tar)?;
        (name, None, sha256_digest(&tar))
    } else {
        progress.step("assembling the disk image");
        let name = format!("{base}.raw");
        let layer_digests: Vec<String> = layers
            .entries
            .iter()
            .map(|(e, _)| e.digest.clone())
            .collect();
        let init = init.as_ref().context("kiln-init")?;
        let (disk, digest) = crate::image::disk::assemble(
            recipe,
            &layers.root,
            &layer_digests,
            sde,
            init,
            store,
            &|path| layers.layer_of(path),
            opts.secure_boot.as_ref(),
            &tmp.path().join(&name),
        )?;
        (name, Some(disk), digest)
    };
    let raw_tmp = tmp.path().join(&image_name);
    let size = std::fs::metadata(&raw_tmp)?.len();
    progress.finish(Some(&digest));
    // The store's copy of the image is the output file itself where a hard
    // link can make it; otherwise it is copied beside everything below
    // (qcow2, the manifest, the output files, their stamp), from the file
    // opened here: it is renamed into the output directory meanwhile.
    let key = image_key(&layers.entries);
    crate::build::output::share(store, &digest, &raw_tmp);
    let image_file =
        std::fs::File::open(&raw_tmp).with_context(|| format!("opening {}", raw_tmp.display()))?;
    let (remembered, written) = std::thread::scope(|s| {
        let remembered = s.spawn(|| {
            crate::build::output::remember(
                store,
                &key,
                &recipe.name,
                &digest,
                &image_file,
                &raw_tmp,
            )
        });
        let written = (|| -> Result<(Manifest, (PathBuf, String))> {
            let mut files = vec![OutFile {
                name: image_name.clone(),
                path: Some(raw_tmp.clone()),
                digest: digest.clone(),
            }];
            if recipe.disk.format == DiskFormat::Qcow2 {
                files.push(qcow2(&raw_tmp, tmp.path(), &base, progress)?);
            }
            let manifest = Manifest {
                schema: SCHEMA.into(),
                name: recipe.name.clone(),
                version: recipe.version.clone(),
                recipe: RecipeRef {
                    file: recipe_file.clone(),
                    digest: plan.recipe_digest.clone(),
                },
                source_date_epoch: sde,
                epoch_source: Some(plan.epoch.source),
                layers: layers
                    .entries
                    .iter()
                    .map(|(e, source)| ManifestLayer {
                        cache: (*source == LayerSource::Registry)
                            .then(|| opts.cache.as_ref().map(|c| c.url()))
                            .flatten(),
                        name: e.name.clone(),
                        kind: e.kind.clone(),
                        key: e.key.clone(),
                        digest: e.digest.clone(),
                        diff_id: e.diff_id.clone(),
                        size: e.size,
                        packages: e.packages.clone(),
                    })
                    .collect(),
                image: ImageFile {
                    format: if disk.is_some() { "raw" } else { "tar" }.into(),
                    file: image_name.clone(),
                    digest: digest.clone(),
                    size,
                },
                disk,
                test: Some(recipe.test.to_spec()),
                builder: BuilderInfo::current(),
            };
            store.record_image(&digest, &serde_json::to_vec_pretty(&manifest)?)?;
            let finished =
                crate::build::output::finish(tmp.path(), &opts.out_dir, &manifest, files)?;
            crate::build::output::record_output(store, &opts.out_dir.join(&image_name), &digest)?;
            Ok((manifest, finished))
        })();
        (remembered.join(), written)
    });
    let (manifest, finished) = written?;
    remembered.map_err(|_| crate::internal_err!("the image cache thread panicked"))??;
    Ok(report(
        &manifest,
        &layers.entries,
        &opts.out_dir,
        finished,
        false,
    ))
}

/// Convert the raw image to qcow2 beside it.
fn qcow2(raw: &Path, tmp: &Path, base: &str, progress: &mut Progress) -> Result<OutFile> {
    progress.step("converting to qcow2");
    let name = format!("{base}.qcow2");
    let q = tmp.join(&name);
    std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(&q)
        .run()?;
    let digest = crate::util::digest::file_digest(&q)?;
    progress.finish(None);
    Ok(OutFile {
        name,
        path: Some(q),
        digest,
    })
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

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
