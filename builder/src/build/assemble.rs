//! Composed root → image: the image file (a disk assembled by
//! [`crate::image::disk`], or the root as a tar; qcow2 beside it on
//! request), its manifest and the output files ([`super::output`]), or all
//! of it taken from the store's image cache when nothing changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::compose::{image_epoch, Layers};
use super::output::{self, OutFile};
use super::{report, BuildOptions, BuildReport, LayerSource};
use crate::fs::layer::{self, sha256_digest};
use crate::image::initramfs::Init;
use crate::input::plan::Plan;
use crate::input::recipe::DiskFormat;
use crate::model::disk::DiskInfo;
use crate::model::manifest::{BuilderInfo, ImageFile, Manifest, ManifestLayer, RecipeRef, SCHEMA};
use crate::store::{write_atomic, KeyEntry, Store};
use crate::util::exec::CommandRunExt;
use crate::util::progress::Progress;

/// What one build assembles its image from, besides the layers.
pub(super) struct Assembly<'a> {
    plan: &'a Plan,
    store: &'a Store,
    opts: &'a BuildOptions,
    /// kiln-init, for a disk image (a tar has no initramfs).
    init: Option<Init>,
    /// The recipe's file name, as the manifest records it.
    recipe_file: String,
    /// `NAME-VERSION`: the output files' name without its extension.
    base: String,
}

/// The image file, written to the scratch directory.
pub(super) struct WrittenImage {
    /// Its file name in the output directory.
    name: String,
    /// Where it is now, in the scratch directory.
    path: PathBuf,
    /// The disk's description (`None` for a tar).
    disk: Option<DiskInfo>,
    /// `sha256:` of the file.
    digest: String,
    /// Its size in bytes.
    size: u64,
}

impl<'a> Assembly<'a> {
    /// The assembly of `plan` (read from `recipe_path`): kiln-init found.
    pub(super) fn new(
        recipe_path: &Path,
        plan: &'a Plan,
        store: &'a Store,
        opts: &'a BuildOptions,
    ) -> Result<Assembly<'a>> {
        let recipe = &plan.recipe;
        let init = match recipe.disk.format {
            DiskFormat::Tar => None,
            _ => Some(crate::image::initramfs::find_init()?),
        };
        let recipe_file = recipe_path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        Ok(Assembly {
            plan,
            store,
            opts,
            init,
            recipe_file,
            base: format!("{}-{}", recipe.name, recipe.version),
        })
    }

    /// The key of the image these layers assemble to, in the store's image cache.
    fn image_key(&self, entries: &[(KeyEntry, LayerSource)]) -> String {
        output::ImageKeyInput {
            assembly: output::ASSEMBLY_VERSION,
            kiln: env!("CARGO_PKG_VERSION"),
            recipe_file: &self.recipe_file,
            recipe: &self.plan.recipe_digest,
            layers: entries.iter().map(|(e, _)| &e.digest).collect(),
            init: self.init.as_ref().map(|i| &i.digest),
            source_date_epoch: image_epoch(self.plan, entries),
            epoch_source: self.plan.epoch.source,
            uki_signer: self.opts.secure_boot.as_ref().map(|s| &s.cert_fingerprint),
        }
        .key()
    }

    /// Nothing changed (every layer is in the store as `entries`): the
    /// image from the store's image cache, in the output directory. `None`
    /// when the cache does not have it, or its copy is damaged.
    pub(super) fn reuse(
        &self,
        entries: &[(KeyEntry, LayerSource)],
        progress: &mut Progress,
    ) -> Result<Option<BuildReport>> {
        let (store, opts, recipe) = (self.store, self.opts, &self.plan.recipe);
        let Some(hit) = output::lookup(store, &self.image_key(entries))? else {
            return Ok(None);
        };
        let tmp = output::temp_dir(&opts.out_dir)?;
        let m = hit.manifest;
        let want = m.image.digest.to_string();
        let name = m.image.file.clone();
        let out_path = opts.out_dir.join(&name);
        let path = tmp.path().join(&name);
        // The output directory may still hold the very file kiln wrote.
        let in_place =
            recipe.disk.format != DiskFormat::Qcow2 && output::up_to_date(store, &out_path, &want);
        let files = if in_place {
            progress.step(format!("{} is up to date", out_path.display()));
            progress.finish(None);
            Some(vec![OutFile {
                name,
                path: None,
                digest: want.clone(),
            }])
        } else {
            progress.step("copying the cached image");
            let digest = output::copy_hashing(&hit.file, &path)?;
            progress.finish(Some(&digest));
            if digest == want {
                let mut files = vec![OutFile {
                    name,
                    path: Some(path.clone()),
                    digest,
                }];
                if recipe.disk.format == DiskFormat::Qcow2 {
                    files.push(qcow2(&path, tmp.path(), &self.base, progress)?);
                }
                Some(files)
            } else {
                None
            }
        };
        if let Some(files) = files {
            let finished = output::finish(tmp.path(), &opts.out_dir, &m, files)?;
            if !in_place {
                output::record_output(store, &out_path, &want)?;
            }
            return Ok(Some(report(&m, entries, &opts.out_dir, finished, true)));
        }
        // The store's copy is damaged: forget it and assemble again.
        tracing::warn!(file = %hit.file.display(), "cached image does not match its digest; reassembling");
        std::fs::remove_file(&hit.file).ok();
        std::fs::remove_file(&path).ok();
        Ok(None)
    }

    /// Write the image file of the composed root into `tmp`: the root as a
    /// tar, or the assembled disk.
    pub(super) fn write_image(
        &self,
        layers: &Layers,
        tmp: &Path,
        progress: &mut Progress,
    ) -> Result<WrittenImage> {
        let (recipe, base) = (&self.plan.recipe, &self.base);
        let sde = image_epoch(self.plan, &layers.entries);
        let (image_name, disk, digest) = if recipe.disk.format == DiskFormat::Tar {
            progress.step("writing the composed root as a tar");
            let name = format!("{base}.tar");
            let tar = layer::write_tar(&layers.root)?;
            write_atomic(tmp, &tmp.join(&name), &tar)?;
            (name, None, sha256_digest(&tar))
        } else {
            progress.step("assembling the disk image");
            let name = format!("{base}.raw");
            let layer_digests: Vec<String> = layers
                .entries
                .iter()
                .map(|(e, _)| e.digest.to_string())
                .collect();
            let init = self.init.as_ref().context("kiln-init")?;
            let (disk, digest) = crate::image::disk::assemble(
                recipe,
                &layers.root,
                &layer_digests,
                sde,
                init,
                self.store,
                &|path| layers.layer_of(path),
                self.opts.secure_boot.as_ref(),
                &tmp.join(&name),
            )?;
            (name, Some(disk), digest)
        };
        let raw_tmp = tmp.join(&image_name);
        let size = std::fs::metadata(&raw_tmp)?.len();
        progress.finish(Some(&digest));
        Ok(WrittenImage {
            name: image_name,
            path: raw_tmp,
            disk,
            digest,
            size,
        })
    }

    /// The image's manifest, its output files (qcow2 too on request) moved
    /// from `tmp` into the output directory, and the image kept in the
    /// store's image cache: the manifest and what [`output::finish`] gives.
    pub(super) fn write_outputs(
        &self,
        layers: &Layers,
        mut image: WrittenImage,
        tmp: &Path,
        progress: &mut Progress,
    ) -> Result<(Manifest, (PathBuf, String))> {
        let (store, opts, recipe) = (self.store, self.opts, &self.plan.recipe);
        // The store's copy of the image is the output file itself where a hard
        // link can make it; otherwise it is copied beside everything below
        // (qcow2, the manifest, the output files, their stamp), from the file
        // opened here: it is renamed into the output directory meanwhile.
        let key = self.image_key(&layers.entries);
        let disk = image.disk.take();
        let (digest, raw_tmp) = (&image.digest, &image.path);
        output::share(store, digest, raw_tmp);
        let image_file = std::fs::File::open(raw_tmp)
            .with_context(|| format!("opening {}", raw_tmp.display()))?;
        let (remembered, written) = std::thread::scope(|s| {
            let remembered = s.spawn(|| {
                output::remember(store, &key, &recipe.name, digest, &image_file, raw_tmp)
            });
            let written = (|| -> Result<(Manifest, (PathBuf, String))> {
                let mut files = vec![OutFile {
                    name: image.name.clone(),
                    path: Some(raw_tmp.clone()),
                    digest: digest.clone(),
                }];
                if recipe.disk.format == DiskFormat::Qcow2 {
                    files.push(qcow2(raw_tmp, tmp, &self.base, progress)?);
                }
                let manifest = self.manifest(layers, &image, disk)?;
                store.record_image(digest, &serde_json::to_vec_pretty(&manifest)?)?;
                let finished = output::finish(tmp, &opts.out_dir, &manifest, files)?;
                output::record_output(store, &opts.out_dir.join(&image.name), digest)?;
                Ok((manifest, finished))
            })();
            (remembered.join(), written)
        });
        let (manifest, finished) = written?;
        remembered.map_err(|_| crate::internal_err!("the image cache thread panicked"))??;
        Ok((manifest, finished))
    }

    /// The manifest of `image` (whose disk is `disk`), made of `layers`.
    fn manifest(
        &self,
        layers: &Layers,
        image: &WrittenImage,
        disk: Option<DiskInfo>,
    ) -> Result<Manifest> {
        let (plan, recipe) = (self.plan, &self.plan.recipe);
        Ok(Manifest {
            schema: SCHEMA.into(),
            name: recipe.name.clone(),
            version: recipe.version.clone(),
            recipe: RecipeRef {
                file: self.recipe_file.clone(),
                digest: plan.recipe_digest.parse()?,
            },
            source_date_epoch: image_epoch(plan, &layers.entries),
            epoch_source: Some(plan.epoch.source),
            layers: layers
                .entries
                .iter()
                .map(|(e, source)| ManifestLayer {
                    cache: (*source == LayerSource::Registry)
                        .then(|| self.opts.cache.as_ref().map(|c| c.url()))
                        .flatten(),
                    name: e.name.clone(),
                    kind: e.kind.clone(),
                    key: e.key,
                    digest: e.digest,
                    diff_id: e.diff_id,
                    size: e.size,
                    packages: e.packages.clone(),
                })
                .collect(),
            image: ImageFile {
                format: if disk.is_some() { "raw" } else { "tar" }.into(),
                file: image.name.clone(),
                digest: image.digest.parse()?,
                size: image.size,
            },
            disk,
            test: Some(recipe.test.to_spec()),
            builder: BuilderInfo::current(),
        })
    }
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
