//! From a recipe to a validated build plan: every layer file read and checked,
//! layer order checked (base, then packages, then app), source directories
//! read and hashed, SOURCE_DATE_EPOCH chosen, service programs checked as far
//! as the plan can tell ([`crate::input::services`]). Every input error that
//! can be found without building surfaces here, before anything is fetched
//! or written to the store or the output directory.

use std::path::Path;

use serde::Serialize;

use crate::fs::layer::{sha256_digest, write_tar, LAYER_FORMAT_VERSION};
use crate::fs::tree::Tree;
use crate::input::epoch::EpochRule;
use crate::input::layerdef::{DebianSource, LayerDef, LayerKind, Service, StripRules};
use crate::input::recipe::{LayerRef, Recipe};
use crate::input::services;
use crate::util::error::InputError;

/// A validated plan.
#[derive(Debug)]
pub struct Plan {
    /// The recipe.
    pub recipe: Recipe,
    /// `sha256:` of the recipe file's bytes.
    pub recipe_digest: String,
    /// How SOURCE_DATE_EPOCH is chosen: fixed, or derived layer by layer.
    pub epoch: EpochRule,
    /// The layers, bottom first.
    pub layers: Vec<PlannedLayer>,
    /// `sha256:` of the lock file beside the recipe, when there is one.
    pub lock_digest: Option<String>,
}

/// A layer ready to build: its definition and its source files, read.
#[derive(Debug)]
pub struct PlannedLayer {
    /// The definition.
    pub def: LayerDef,
    /// The `[files]` directory as a tree (metadata normalised, overrides
    /// applied; times [`EpochRule::provisional`] until the layer is built).
    pub files: Option<Tree>,
    /// `sha256:` of that tree's deterministic tar.
    pub files_digest: Option<String>,
    /// The packages the recipe's lock file pins for this layer.
    pub locked: Option<Vec<crate::input::lock::LockedPackage>>,
}

/// Everything that can change a layer's output, serialised canonically
/// (fixed field order, no maps with host-dependent order) for the layer key.
#[derive(Serialize)]
struct KeyInput<'a> {
    format_version: u32,
    kind: LayerKind,
    lower: Option<&'a str>,
    /// The fixed epoch; `None` when it is derived (from the layer below,
    /// whose digest is here, and the packages, which the key's other
    /// fields determine).
    source_date_epoch: Option<i64>,
    debian: Option<&'a DebianSource>,
    strip: &'a StripRules,
    files: Option<&'a str>,
    services: &'a [Service],
    locked: Option<&'a [crate::input::lock::LockedPackage]>,
    /// How a packages layer with `[debian]` is built (absent for every
    /// other layer, so that their keys stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    installer: Option<&'a str>,
}

/// The installer of packages layers: apt in a chroot over the lower root,
/// maintainer scripts run ([`crate::layers::apt`]). Replaced mmdebstrap's
/// `--variant=extract`; changing it rebuilds every packages layer.
pub const PACKAGES_INSTALLER: &str = "apt-chroot-1";

impl PlannedLayer {
    /// The layer key: sha256 over the canonical definition, the digest of the
    /// layer below, the digest of its source files and the format version.
    pub fn key(&self, lower: Option<&str>, sde: Option<i64>) -> String {
        let input = KeyInput {
            format_version: LAYER_FORMAT_VERSION,
            kind: self.def.kind,
            lower,
            source_date_epoch: sde,
            debian: self.def.debian.as_ref(),
            strip: &self.def.strip,
            files: self.files_digest.as_deref(),
            services: &self.def.services,
            locked: self.locked.as_deref(),
            installer: (self.def.kind == LayerKind::Packages && self.def.debian.is_some())
                .then_some(PACKAGES_INSTALLER),
        };
        // Serialising plain structs of strings and numbers cannot fail.
        let json = serde_json::to_vec(&input).expect("key input serialises");
        sha256_digest(&json)
    }
}

fn order_error(recipe: &Recipe, r: &LayerRef, msg: String) -> InputError {
    InputError {
        file: recipe.path.display().to_string(),
        line: Some(r.line),
        field: Some("image.layers".into()),
        message: msg,
    }
}

impl Plan {
    /// Read and check a recipe and everything it refers to.
    pub fn new(recipe_path: &Path) -> Result<Plan, InputError> {
        Self::with_lock(recipe_path, true)
    }

    /// Like [`Plan::new`]; `use_lock = false` ignores the lock file (`kiln lock` re-resolves).
    pub fn with_lock(recipe_path: &Path, use_lock: bool) -> Result<Plan, InputError> {
        let recipe = Recipe::load(recipe_path)?;
        let lock = if use_lock {
            crate::input::lock::LockFile::load_for(recipe_path)?
        } else {
            None
        };
        let lock_digest = match &lock {
            Some(_) => std::fs::read(crate::input::lock::path_for(recipe_path))
                .ok()
                .map(|b| sha256_digest(&b)),
            None => None,
        };
        let recipe_bytes = std::fs::read(recipe_path)
            .map_err(|e| InputError::file(recipe_path.display().to_string(), e.to_string()))?;
        let epoch = EpochRule::choose(
            recipe.source_date_epoch,
            std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
        )?;
        let sde = epoch.provisional();

        let mut layers: Vec<PlannedLayer> = Vec::new();
        for (i, r) in recipe.layers.iter().enumerate() {
            let def = LayerDef::load(&r.dir)?;
            match (i, def.kind) {
                (0, LayerKind::Base) => {}
                (0, k) => {
                    return Err(order_error(
                        &recipe,
                        r,
                        format!(
                            "the first layer must be a base layer; {:?} is a {} layer",
                            r.written,
                            k.as_str()
                        ),
                    ))
                }
                (_, LayerKind::Base) => {
                    return Err(order_error(
                        &recipe,
                        r,
                        format!(
                            "{:?} is a base layer; only the first layer can be",
                            r.written
                        ),
                    ))
                }
                (_, k) if k < layers[i - 1].def.kind => {
                    return Err(order_error(
                        &recipe,
                        r,
                        format!(
                            "a {} layer cannot come after a {} layer (order: base, packages, app)",
                            k.as_str(),
                            layers[i - 1].def.kind.as_str()
                        ),
                    ))
                }
                _ => {}
            }
            let files = match &def.files {
                Some(dir) => Some(crate::input::files::files_tree(&def, dir, sde)?),
                None => None,
            };
            let files_digest = files
                .as_ref()
                .map(|t| write_tar(t).map(|tar| sha256_digest(&tar)))
                .transpose()
                .map_err(|e| InputError::file(def.file.display().to_string(), format!("{e:#}")))?;
            let locked = match (&lock, &def.debian) {
                (Some(l), Some(deb)) => {
                    let lock_file = crate::input::lock::path_for(recipe_path)
                        .display()
                        .to_string();
                    let entry = l.entry(&def.name).ok_or_else(|| {
                        InputError::file(
                            lock_file.clone(),
                            format!(
                                "no entry for layer {:?}: run `kiln lock {}` again",
                                def.name,
                                recipe_path.display()
                            ),
                        )
                    })?;
                    if entry.suite.as_deref() != Some(deb.suite.as_str()) {
                        return Err(InputError {
                            file: lock_file,
                            line: None,
                            field: Some(format!("layer {:?}: suite", def.name)),
                            message: format!(
                                "the lock pins packages of {}, but layer {} ({}) builds Debian {}: \
                                 run `kiln lock {}` again",
                                entry.suite.as_deref().map_or_else(
                                    || "an unnamed suite (a lock written before kiln recorded suites)".to_string(),
                                    |s| format!("Debian {s}")
                                ),
                                def.name,
                                def.file.display(),
                                deb.suite,
                                recipe_path.display()
                            ),
                        });
                    }
                    Some(entry.packages.clone())
                }
                _ => None,
            };
            layers.push(PlannedLayer {
                def,
                files,
                files_digest,
                locked,
            });
        }
        let views: Vec<services::Layer> = layers
            .iter()
            .map(|l| services::Layer {
                def: &l.def,
                files: l.files.as_ref(),
            })
            .collect();
        services::check(&views)?;
        Ok(Plan {
            recipe,
            recipe_digest: sha256_digest(&recipe_bytes),
            epoch,
            layers,
            lock_digest,
        })
    }
}
