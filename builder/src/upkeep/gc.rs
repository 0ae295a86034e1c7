//! `kiln gc`: bound a store's size without breaking the next build.
//!
//! What goes, in this order (references before what they point at, so a gc
//! killed half-way leaves a store every build reads correctly):
//! 1. *scratch*: the scratch of dead kiln processes ([`scratch::sweep`]) in
//!    `STORE/tmp`, in every output directory a stamp names and in `$TMPDIR`;
//!    and, since builds write `STORE/tmp` only while holding the store's lock,
//!    everything else in `STORE/tmp` that is not a living scratch entry
//!    (temporary files and directories of older kiln versions). In output
//!    directories, a `.kiln-tmp-*` directory without a lock file is an older
//!    kiln's build scratch and goes too; such a file goes once it is an hour
//!    old (`kiln sign` writes one beside a signature for a moment).
//! 2. *outputs*: stamps whose file is gone or changed (or that predate stamps
//!    recording their path): they would never match again.
//! 3. *builds*: build records whose manifest is gone, and with
//!    `--keep-last N` those beyond the newest N images of each name.
//! 4. *manifests*: with `--keep-last`, manifests no kept build or release uses.
//! 5. *images*: cached image files beyond the newest N (`--keep-last`, else
//!    [`KEEP_PER_NAME`]) images of each name, and any without a manifest.
//! 6. *keys*: key entries whose blob is missing, and with `--keep-last` those
//!    no kept manifest lists.
//! 7. *memo*: memo entries whose blob is missing.
//! 8. *blobs*: blobs no kept key entry, kept manifest or memo entry names.
//! 9. *checked*: check stamps (`checked/<hex>`) of blobs not kept or missing.
//! 10. *debs*: with `--debs`, the .deb download cache.
//!
//! Builds are ordered by their record's mtime, which a build sets when it
//! assembles the image and refreshes when it finds it cached: "the newest N"
//! are the N most recently built or reused. With `--keep-released` (the
//! default) whatever a release references stays: its manifest, cached image,
//! layer blobs and key entries. Verdicts stay (publication needs them), and
//! the release store is never touched.
//!
//! Everything in the store happens under its lock, so a running build
//! finishes first and the next one waits; a reader (`kiln inspect`) may see
//! an entry disappear and fail cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{channel_files, contained, read_record, remove_path};
use crate::build::output::{BuildRecord, Stamp, KEEP_PER_NAME};
use crate::model::manifest::Manifest;
use crate::publish::release::{self, Releases};
use crate::store::layout::{image_file_digest, Area, Layout};
use crate::store::{KeyEntry, Store};
use crate::util::digest::Digest;
use crate::util::error::check_failed;
use crate::util::scratch::{self, disk_usage, Swept, SCRATCH_PREFIX};
use crate::util::walk::{self, DirEntry, Kind};

/// How old a lockless `.kiln-tmp-*` file in an output directory must be
/// before gc takes it for a leftover.
const LEGACY_FILE_AGE: Duration = Duration::from_secs(3600);

/// What `kiln gc` keeps and where it looks.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Keep the newest N builds of each image name (their manifest, layers
    /// and cached image); `None` keeps every build's manifest and layers.
    pub keep_last: Option<usize>,
    /// Keep whatever a release references.
    pub keep_released: bool,
    /// The release stores whose releases count.
    pub releases: Vec<Releases>,
    /// Also empty the .deb download cache.
    pub debs: bool,
    /// Report what would go; remove nothing.
    pub dry_run: bool,
    /// The shared temporary directory to sweep (`std::env::temp_dir()`).
    pub temp_dir: Option<PathBuf>,
}

/// The kinds of things gc removes, in the order it removes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Scratch of dead processes and leftovers of older kiln versions.
    Scratch,
    /// Output stamps.
    Outputs,
    /// Build records.
    Builds,
    /// Image manifests.
    Manifests,
    /// Cached image files.
    Images,
    /// Key-index entries.
    Keys,
    /// Memo entries.
    Memo,
    /// Layer blobs.
    Blobs,
    /// Check stamps of blobs (`checked/`).
    Checked,
    /// Downloaded .deb files.
    Debs,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 10] = [
        Category::Scratch,
        Category::Outputs,
        Category::Builds,
        Category::Manifests,
        Category::Images,
        Category::Keys,
        Category::Memo,
        Category::Blobs,
        Category::Checked,
        Category::Debs,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Category::Scratch => "scratch",
            Category::Outputs => "outputs",
            Category::Builds => "builds",
            Category::Manifests => "manifests",
            Category::Images => "images",
            Category::Keys => "keys",
            Category::Memo => "memo",
            Category::Blobs => "blobs",
            Category::Checked => "checked",
            Category::Debs => "debs",
        }
    }
}

/// What went (or would go) in one category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// The category.
    pub category: Category,
    /// How many entries.
    pub count: usize,
    /// Bytes they occupied on disk.
    pub bytes: u64,
    /// The entries.
    pub paths: Vec<PathBuf>,
}

/// An entry gc meant to remove but could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The entry.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// What stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// Build records.
    pub builds: usize,
    /// Image manifests.
    pub images: usize,
    /// Layer blobs.
    pub blobs: usize,
}

/// What `kiln gc --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// The store.
    pub store: PathBuf,
    /// Nothing was removed: this is what would have been.
    pub dry_run: bool,
    /// One entry per [`Category`], in [`Category::ALL`] order.
    pub removed: Vec<Removed>,
    /// Entries removed in all.
    pub count: usize,
    /// Bytes freed in all.
    pub bytes: u64,
    /// What stays.
    pub kept: Kept,
    /// Entries that could not be removed.
    pub failed: Vec<Failure>,
}

/// Collects removals, doing them unless it is a dry run.
struct Removals {
    /// The store's root: nothing below it is removed through a link.
    store: PathBuf,
    dry_run: bool,
    by_category: BTreeMap<Category, (u64, Vec<PathBuf>)>,
    failed: Vec<Failure>,
}

impl Removals {
    fn remove(&mut self, category: Category, path: &Path) {
        if path.starts_with(&self.store) {
            if let Err(e) = Layout::new(&self.store).check(path) {
                self.failed.push(Failure {
                    path: path.to_path_buf(),
                    error: format!("{} {}; left alone", e.path().display(), e.reason()),
                });
                return;
            }
        }
        let bytes = disk_usage(path);
        if !self.dry_run {
            if let Err(e) = remove_path(path) {
                self.failed.push(Failure {
                    path: path.to_path_buf(),
                    error: e.to_string(),
                });
                return;
            }
        }
        let slot = self.by_category.entry(category).or_default();
        slot.0 += bytes;
        slot.1.push(path.to_path_buf());
    }

    /// A sweep's result (already done, or not, per its own `dry_run`).
    fn swept(&mut self, s: Swept) {
        let slot = self.by_category.entry(Category::Scratch).or_default();
        slot.0 += s.bytes;
        slot.1.extend(s.paths);
    }

    /// Sweep `dir`; a directory that cannot be read is a failure, not an error.
    fn sweep(&mut self, dir: &Path) {
        match scratch::sweep(dir, self.dry_run) {
            Ok(s) => self.swept(s),
            Err(e) => self.failed.push(Failure {
                path: dir.to_path_buf(),
                error: format!("{e:#}"),
            }),
        }
    }

    fn report(self, store: &Path, kept: Kept) -> GcReport {
        let mut by = self.by_category;
        let removed: Vec<Removed> = Category::ALL
            .iter()
            .map(|&category| {
                let (bytes, paths) = by.remove(&category).unwrap_or_default();
                Removed {
                    category,
                    count: paths.len(),
                    bytes,
                    paths,
                }
            })
            .collect();
        GcReport {
            store: store.to_path_buf(),
            dry_run: self.dry_run,
            count: removed.iter().map(|r| r.count).sum(),
            bytes: removed.iter().map(|r| r.bytes).sum(),
            removed,
            kept,
            failed: self.failed,
        }
    }
}

/// Run gc on `store`. A store that does not exist has nothing to remove
/// (`$TMPDIR` is still swept).
pub fn gc(store: &Store, opts: &GcOptions) -> Result<GcReport> {
    let mut r = Removals {
        store: store.root().to_path_buf(),
        dry_run: opts.dry_run,
        by_category: BTreeMap::new(),
        failed: Vec::new(),
    };
    // Before anything is removed: a release gc cannot read stops it.
    let released = if opts.keep_released {
        released(&opts.releases)?
    } else {
        BTreeMap::new()
    };
    if let Some(t) = &opts.temp_dir {
        r.sweep(t);
    }
    let kept = if store.root().is_dir() {
        let _lock = store.lock()?;
        collect(store, opts, &released, &mut r)?
    } else {
        Kept::default()
    };
    Ok(r.report(store.root(), kept))
}

/// Whether `name` is a scratch entry's lock file, or a scratch entry whose
/// lock file exists (what [`scratch::sweep`] leaves: the living).
fn announced(dir: &Path, name: &str) -> bool {
    name.starts_with(SCRATCH_PREFIX)
        && (name.ends_with(".lock")
            || std::fs::symlink_metadata(dir.join(format!("{name}.lock")))
                .is_ok_and(|m| m.is_file()))
}

/// Sweep an output directory: the dead's scratch, and older kiln's
/// lockless `.kiln-tmp-*` directories (and old such files).
fn sweep_output_dir(dir: &Path, r: &mut Removals) {
    r.sweep(dir);
    // The directory is the one the stamp names; nothing in it is followed.
    let Ok(list) = walk::list_below(dir, Path::new("")) else {
        return;
    };
    let now = SystemTime::now();
    for e in list {
        let Some(name) = e.name() else { continue };
        if !name.starts_with(SCRATCH_PREFIX) || announced(dir, name) {
            continue;
        }
        let old = || {
            std::fs::symlink_metadata(&e.path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > LEGACY_FILE_AGE)
        };
        if e.kind == Kind::Dir || old() {
            r.remove(Category::Scratch, &e.path);
        }
    }
}

/// A build record that names a manifest in the store.
struct Build {
    path: PathBuf,
    used: SystemTime,
    image: Digest,
    name: String,
}

/// Every image a release references, with the layers its release manifest
/// lists (for an image whose manifest the store no longer holds).
fn released(releases: &[Releases]) -> Result<BTreeMap<Digest, Vec<(Digest, Digest)>>> {
    let mut out = BTreeMap::new();
    for rel in releases {
        let files = channel_files(rel)
            .with_context(|| format!("reading the release store {}", rel.root().display()))?;
        for f in files {
            // gc must know everything a release references before it removes
            // anything: an entry it cannot read stops it.
            let unreadable = |why: String| {
                check_failed(format!(
                    "{}: {why}; gc keeps what releases reference and cannot tell what this one does (see `kiln fsck`)",
                    f.path.display()
                ))
            };
            let e = f.entry.map_err(unreadable)?;
            let digest = e.digest;
            let layers = contained(&e.path)
                .map(|p| {
                    rel.root()
                        .join(p)
                        .join(release::manifest_name(&e.name, &e.version))
                })
                .and_then(|p| read_record(&p).ok())
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
                .map(|m| m.layers.into_iter().map(|l| (l.key, l.digest)).collect())
                .unwrap_or_default();
            out.insert(digest, layers);
        }
    }
    Ok(out)
}

/// Everything inside the store, under its lock. A store one of whose
/// directories is a link is left alone (each link a failure naming it):
/// gc removes nothing through a link, and what it keeps depends on reading
/// every directory.
fn collect(
    store: &Store,
    opts: &GcOptions,
    released: &BTreeMap<Digest, Vec<(Digest, Digest)>>,
    r: &mut Removals,
) -> Result<Kept> {
    let linked = store.layout().linked_dirs();
    if !linked.is_empty() {
        for e in linked {
            tracing::warn!(
                "{e}; gc leaves the store alone (`kiln fsck --repair` removes the link)"
            );
            r.failed.push(Failure {
                path: e.path().to_path_buf(),
                error: format!(
                    "{}; gc left the store alone (`kiln fsck --repair` removes the link)",
                    e.reason()
                ),
            });
        }
        return Ok(Kept::default());
    }
    sweep_scratch(store, r)?;
    let images = read_images(store)?;
    let builds = choose_builds(store, opts, released, &images, r)?;
    let kept_images = drop_images(opts, released, &images, &builds, r);
    let kept_blobs = drop_layers(store, opts, released, &images, &kept_images, r)?;
    if opts.debs {
        drop_debs(store, r)?;
    }
    Ok(Kept {
        builds: builds.kept,
        images: kept_images.len(),
        blobs: kept_blobs,
    })
}

/// The entries of an area of the store ([`crate::store::layout::Layout::list`]).
fn list(store: &Store, area: Area) -> Result<Vec<DirEntry>> {
    Ok(store.layout().list(area)?)
}

/// Phases 1 and 2: scratch in `STORE/tmp`, output stamps, and the scratch
/// in the output directories they name.
fn sweep_scratch(store: &Store, r: &mut Removals) -> Result<()> {
    let tmp = store.tmp_root();
    r.sweep(&tmp);
    for e in list(store, Area::Tmp)? {
        let living = e.kind != Kind::Symlink && e.name().is_some_and(|n| announced(&tmp, n));
        if !living {
            r.remove(Category::Scratch, &e.path);
        }
    }
    let mut out_dirs = BTreeSet::new();
    for e in list(store, Area::Outputs)? {
        let stamp = read_record(&e.path)
            .ok()
            .and_then(|b| Stamp::parse(&b).ok());
        if let Some(dir) = stamp.as_ref().and_then(Stamp::path).and_then(Path::parent) {
            out_dirs.insert(dir.to_path_buf());
        }
        let current =
            stamp.is_some_and(|s| s.is_current() && s.record_name().as_deref() == e.name());
        if !current {
            r.remove(Category::Outputs, &e.path);
        }
    }
    for dir in out_dirs {
        sweep_output_dir(&dir, r);
    }
    Ok(())
}

/// The store's images: manifests (parsed when they parse) and cached files.
#[derive(Default)]
struct Images {
    manifests: BTreeMap<Digest, (PathBuf, Option<Manifest>)>,
    raws: BTreeMap<Digest, PathBuf>,
}

fn read_images(store: &Store) -> Result<Images> {
    let mut out = Images::default();
    for e in list(store, Area::Images)? {
        let Some(name) = e.name() else { continue };
        if let Some(d) = Area::Images.digest_of(name) {
            let m = read_record(&e.path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
            out.manifests.insert(d, (e.path, m));
        } else if let Some(d) = image_file_digest(name) {
            out.raws.insert(d, e.path);
        }
    }
    Ok(out)
}

/// What the build records keep.
struct Builds {
    /// Build records kept.
    kept: usize,
    /// Images a kept build record names.
    images: BTreeSet<Digest>,
    /// Images whose cached file may stay: the newest few of each name.
    cached: BTreeSet<Digest>,
}

/// Phase 3, build records: newest first within each image name. A released
/// image's record stays with its cached file, which it makes usable.
fn choose_builds(
    store: &Store,
    opts: &GcOptions,
    released: &BTreeMap<Digest, Vec<(Digest, Digest)>>,
    images: &Images,
    r: &mut Removals,
) -> Result<Builds> {
    let mut by_name: BTreeMap<String, Vec<Build>> = BTreeMap::new();
    for e in list(store, Area::Builds)? {
        let image = read_record(&e.path)
            .ok()
            .and_then(|b| serde_json::from_slice::<BuildRecord>(&b).ok())
            .map(|rec| rec.image);
        let name = image.and_then(|d| images.manifests.get(&d)?.1.as_ref().map(|m| m.name.clone()));
        match (image, name) {
            (Some(image), Some(name)) => {
                let used = std::fs::symlink_metadata(&e.path)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                by_name.entry(name.clone()).or_default().push(Build {
                    path: e.path,
                    used,
                    image,
                    name,
                });
            }
            _ => r.remove(Category::Builds, &e.path),
        }
    }
    let raw_keep = opts.keep_last.unwrap_or(KEEP_PER_NAME);
    let mut out = Builds {
        kept: 0,
        images: BTreeSet::new(),
        cached: BTreeSet::new(),
    };
    for builds in by_name.values_mut() {
        builds.sort_by(|a, b| b.used.cmp(&a.used).then_with(|| a.path.cmp(&b.path)));
        let mut newest: Vec<Digest> = Vec::new();
        for b in builds.iter() {
            if !newest.contains(&b.image) {
                newest.push(b.image);
            }
        }
        let keep: BTreeSet<Digest> = newest
            .iter()
            .take(opts.keep_last.unwrap_or(usize::MAX))
            .copied()
            .collect();
        out.cached.extend(newest.iter().take(raw_keep).copied());
        for b in builds.iter() {
            if keep.contains(&b.image) || released.contains_key(&b.image) {
                out.kept += 1;
                out.images.insert(b.image);
            } else {
                tracing::debug!(image = %b.image, name = %b.name, "build beyond --keep-last");
                r.remove(Category::Builds, &b.path);
            }
        }
    }
    Ok(out)
}

/// Phases 4 and 5: manifests and cached image files; returns the images kept.
fn drop_images(
    opts: &GcOptions,
    released: &BTreeMap<Digest, Vec<(Digest, Digest)>>,
    images: &Images,
    builds: &Builds,
    r: &mut Removals,
) -> BTreeSet<Digest> {
    let mut kept_images = BTreeSet::new();
    for (d, (path, _)) in &images.manifests {
        let keep =
            opts.keep_last.is_none() || builds.images.contains(d) || released.contains_key(d);
        if keep {
            kept_images.insert(*d);
        } else {
            r.remove(Category::Manifests, path);
        }
    }
    for (d, path) in &images.raws {
        let keep =
            kept_images.contains(d) && (builds.cached.contains(d) || released.contains_key(d));
        if !keep {
            r.remove(Category::Images, path);
        }
    }
    kept_images
}

/// Phases 6 to 9: key entries, memo entries, blobs and their check
/// stamps; returns how many blobs stay.
fn drop_layers(
    store: &Store,
    opts: &GcOptions,
    released: &BTreeMap<Digest, Vec<(Digest, Digest)>>,
    images: &Images,
    kept_images: &BTreeSet<Digest>,
    r: &mut Removals,
) -> Result<usize> {
    // What the kept images are made of.
    let mut layer_keys = BTreeSet::new();
    let mut layer_blobs = BTreeSet::new();
    let kept_manifests = kept_images
        .iter()
        .filter_map(|d| images.manifests.get(d)?.1.as_ref());
    let layers = kept_manifests
        .flat_map(|m| m.layers.iter().map(|l| (l.key, l.digest)))
        .chain(released.values().flatten().cloned());
    for (key, digest) in layers {
        layer_keys.insert(key);
        layer_blobs.insert(digest);
    }
    let blob_path = |d: &Digest| store.layout().entry(Area::Blobs, d);
    let has_blob = |d: &Digest| std::fs::symlink_metadata(blob_path(d)).is_ok_and(|m| m.is_file());

    // 6. Key entries.
    let mut kept_blobs: BTreeSet<Digest> = layer_blobs.clone();
    for e in list(store, Area::Keys)? {
        let entry = read_record(&e.path)
            .ok()
            .and_then(|b| serde_json::from_slice::<KeyEntry>(&b).ok());
        let Some(entry) = entry else {
            // Not gc's to judge unless builds are being dropped: fsck names it.
            if opts.keep_last.is_some() {
                r.remove(Category::Keys, &e.path);
            }
            continue;
        };
        let wanted = opts.keep_last.is_none()
            || layer_keys.contains(&entry.key)
            || layer_blobs.contains(&entry.digest);
        if wanted && has_blob(&entry.digest) {
            kept_blobs.insert(entry.digest);
        } else {
            r.remove(Category::Keys, &e.path);
        }
    }

    // 7. Memo entries.
    for e in list(store, Area::Memo)? {
        let blob = read_record(&e.path)
            .ok()
            .and_then(|b| Digest::parse(String::from_utf8_lossy(&b).trim()).ok())
            .filter(has_blob);
        match blob {
            Some(d) => {
                kept_blobs.insert(d);
            }
            None => r.remove(Category::Memo, &e.path),
        }
    }

    // 8. Blobs.
    let mut kept_blob_count = 0;
    for e in list(store, Area::Blobs)? {
        // A file not named by a digest is fsck's to report.
        let Some(d) = e.name().and_then(|n| Area::Blobs.digest_of(n)) else {
            continue;
        };
        if kept_blobs.contains(&d) && e.kind == Kind::File {
            kept_blob_count += 1;
        } else {
            r.remove(Category::Blobs, &e.path);
        }
    }

    // 9. Check stamps of the blobs that went (a stamp vouches only for the
    // very file it was taken of, so a stale one is merely litter).
    for e in list(store, Area::Checked)? {
        // A file not named by a digest is fsck's to report.
        let gone = |d: Digest| !kept_blobs.contains(&d) || !has_blob(&d);
        if e.name()
            .and_then(|n| Area::Checked.digest_of(n))
            .is_some_and(gone)
        {
            r.remove(Category::Checked, &e.path);
        }
    }
    Ok(kept_blob_count)
}

/// Phase 10, on request: the .deb download cache (apt's lock file stays)
/// and apt's indexes kept beside it, downloads too.
fn drop_debs(store: &Store, r: &mut Removals) -> Result<()> {
    for e in list(store, Area::Debs)? {
        if e.name().is_some_and(|n| n.ends_with(".deb")) {
            r.remove(Category::Debs, &e.path);
        }
    }
    let partial = Path::new(Area::Debs.dir()).join("partial");
    for e in store.layout().list_below(&partial)? {
        r.remove(Category::Debs, &e.path);
    }
    for e in list(store, Area::AptLists)? {
        r.remove(Category::Debs, &e.path);
    }
    Ok(())
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
