//! Image recipes: which layers, in which order, and the disk, boot and test
//! settings of the image. The README's "Recipe reference" documents every field.
//!
//! A recipe is TOML, deserialized into `Raw*` structs that reject unknown keys,
//! then checked and converted into [`Recipe`], whose values are known good.
//! Every error names the file, the line and the field ([`InputError`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::input::source_file::SourceFile;
use crate::model::checks::TestSettings;
use crate::model::manifest::valid_name;
use crate::util::error::InputError;

pub use crate::input::checks::DEFAULT_FORBID;

/// Kernel modules the initramfs loads to reach a virtio disk with dm-verity
/// (their dependencies are added from each module's `.modinfo`).
pub const DEFAULT_INITRD_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "dm_verity"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    image: RawImage,
    #[serde(default)]
    disk: RawDisk,
    #[serde(default)]
    boot: RawBoot,
    #[serde(default)]
    test: crate::input::checks::RawTest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    layers: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    source_date_epoch: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    root_margin_percent: Option<Spanned<u32>>,
    root_extra_mib: Option<Spanned<u64>>,
    format: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoot {
    cmdline: Option<Spanned<String>>,
    init: Option<Spanned<String>>,
    initrd_modules: Option<Vec<Spanned<String>>>,
}

/// A validated recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// The recipe file.
    pub path: PathBuf,
    /// Image name (`[A-Za-z0-9][A-Za-z0-9._+-]*`).
    pub name: String,
    /// Image version (same alphabet as the name).
    pub version: String,
    /// Free-text description.
    pub description: Option<String>,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// SOURCE_DATE_EPOCH given by the recipe, if any.
    pub source_date_epoch: Option<i64>,
    /// Disk settings.
    pub disk: DiskSettings,
    /// Boot settings.
    pub boot: BootSettings,
    /// Boot-test settings.
    pub test: TestSettings,
}

/// A reference from a recipe to a layer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The layer's directory (holding `layer.toml`), resolved against the recipe's directory.
    pub dir: PathBuf,
    /// As written in the recipe.
    pub written: String,
    /// The line of the recipe that names it.
    pub line: usize,
}

/// Output format of the disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// A raw, sparse disk image.
    Raw,
    /// A qcow2 image converted with `qemu-img` (beside the raw one).
    Qcow2,
    /// No disk: the composed root filesystem as a deterministic tar.
    Tar,
}

/// `[disk]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSettings {
    /// Free space in the root filesystem, percent of the content (default 10).
    pub root_margin_percent: u32,
    /// Extra free space in the root filesystem, MiB (default 0).
    pub root_extra_mib: u64,
    /// Output format (default raw).
    pub format: DiskFormat,
}

/// `[boot]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BootSettings {
    /// Kernel command line; kiln appends `roothash=` and what its initramfs needs.
    pub cmdline: String,
    /// The image's own init, run after the switch to the verity root.
    pub init: String,
    /// Modules the initramfs loads (dependencies added automatically).
    pub initrd_modules: Vec<String>,
}

impl Recipe {
    /// Read and validate a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, InputError> {
        let src = SourceFile::read(path)?;
        Self::from_source(&src)
    }

    /// Validate a recipe already read.
    pub fn from_source(src: &SourceFile) -> Result<Recipe, InputError> {
        let raw: RawRecipe = src.parse()?;
        let dir = src.path.parent().unwrap_or(Path::new(".")).to_path_buf();

        let img = &raw.image;
        for (v, field) in [(&img.name, "image.name"), (&img.version, "image.version")] {
            if !valid_name(v.get_ref()) {
                return Err(src.error(
                    v.span(),
                    field,
                    format!("{:?} must be 1-128 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit", v.get_ref()),
                ));
            }
        }
        if img.layers.get_ref().is_empty() {
            return Err(src.error(
                img.layers.span(),
                "image.layers",
                "a recipe needs at least one layer",
            ));
        }
        let mut layers = Vec::new();
        for (i, l) in img.layers.get_ref().iter().enumerate() {
            let field = format!("image.layers[{i}]");
            if l.get_ref().trim().is_empty() {
                return Err(src.error(l.span(), &field, "layer path is empty"));
            }
            let ldir = dir.join(l.get_ref());
            if !ldir.join("layer.toml").is_file() {
                return Err(src.error(
                    l.span(),
                    &field,
                    format!(
                        "layer {:?} not found: {} does not exist",
                        l.get_ref(),
                        ldir.join("layer.toml").display()
                    ),
                ));
            }
            if layers.iter().any(|x: &LayerRef| x.written == *l.get_ref()) {
                return Err(src.error(
                    l.span(),
                    &field,
                    format!("layer {:?} is listed twice", l.get_ref()),
                ));
            }
            layers.push(LayerRef {
                dir: ldir,
                written: l.get_ref().clone(),
                line: src.line_of(l.span().start),
            });
        }
        if let Some(e) = &img.source_date_epoch {
            if *e.get_ref() < 0 {
                return Err(src.error(e.span(), "image.source_date_epoch", "must not be negative"));
            }
        }

        let d = &raw.disk;
        if let Some(m) = &d.root_margin_percent {
            if *m.get_ref() > 1000 {
                return Err(src.error(
                    m.span(),
                    "disk.root_margin_percent",
                    "must be at most 1000",
                ));
            }
        }
        let format = match &d.format {
            None => DiskFormat::Raw,
            Some(f) => match f.get_ref().as_str() {
                "raw" => DiskFormat::Raw,
                "qcow2" => DiskFormat::Qcow2,
                "tar" => DiskFormat::Tar,
                other => {
                    return Err(src.error(
                        f.span(),
                        "disk.format",
                        format!("unknown format {other:?}: expected \"raw\", \"qcow2\" or \"tar\""),
                    ))
                }
            },
        };
        let disk = DiskSettings {
            root_margin_percent: d.root_margin_percent.as_ref().map_or(10, |m| *m.get_ref()),
            root_extra_mib: d.root_extra_mib.as_ref().map_or(0, |m| *m.get_ref()),
            format,
        };

        let b = &raw.boot;
        let cmdline = b
            .cmdline
            .as_ref()
            .map_or_else(|| "console=ttyS0".to_string(), |c| c.get_ref().clone());
        for word in cmdline.split_whitespace() {
            if ["roothash=", "kiln.", "root=", "init="]
                .iter()
                .any(|p| word.starts_with(p))
            {
                let span = b.cmdline.as_ref().map_or(0..0, |c| c.span());
                return Err(src.error(
                    span,
                    "boot.cmdline",
                    format!("{word:?} is set by kiln itself; remove it"),
                ));
            }
        }
        let init = match &b.init {
            None => "/sbin/init".to_string(),
            Some(i)
                if !i.get_ref().starts_with('/') || i.get_ref().contains(char::is_whitespace) =>
            {
                return Err(src.error(
                    i.span(),
                    "boot.init",
                    "must be an absolute path without spaces",
                ))
            }
            Some(i) => i.get_ref().clone(),
        };
        let initrd_modules = match &b.initrd_modules {
            None => DEFAULT_INITRD_MODULES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(v) => {
                let mut out = Vec::new();
                for (i, m) in v.iter().enumerate() {
                    if m.get_ref().is_empty() || m.get_ref().contains(['/', ' ']) {
                        return Err(src.error(
                            m.span(),
                            &format!("boot.initrd_modules[{i}]"),
                            "must be a module name like \"virtio_blk\"",
                        ));
                    }
                    out.push(m.get_ref().replace('-', "_"));
                }
                out
            }
        };
        let boot = BootSettings {
            cmdline,
            init,
            initrd_modules,
        };

        let test = crate::input::checks::test_settings(src, &raw.test)?;

        Ok(Recipe {
            path: src.path.clone(),
            name: img.name.get_ref().clone(),
            version: img.version.get_ref().clone(),
            description: img.description.clone(),
            layers,
            source_date_epoch: img.source_date_epoch.as_ref().map(|e| *e.get_ref()),
            disk,
            boot,
            test,
        })
    }
}
