//! The image manifest: what an image is made of, written beside it as
//! `NAME-VERSION.manifest.json` and kept in the store under the image digest.

use serde::{Deserialize, Serialize};

/// Manifest schema identifier; bumped on incompatible changes.
pub const SCHEMA: &str = "kiln.manifest/v1";

/// An image manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: String,
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// The recipe it was built from.
    pub recipe: RecipeRef,
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: i64,
    /// Where it came from: the recipe, the environment, or derived from the packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_source: Option<EpochSource>,
    /// The layers, bottom first.
    pub layers: Vec<ManifestLayer>,
    /// The image file.
    pub image: ImageFile,
    /// The disk: kernel, command line, root hash, partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<crate::model::disk::DiskInfo>,
    /// The recipe's boot-test settings, so `kiln test IMAGE` needs no recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<crate::model::checks::TestSpec>,
    /// What built it.
    pub builder: BuilderInfo,
}

/// The recipe an image was built from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecipeRef {
    /// File name of the recipe.
    pub file: String,
    /// `sha256:` of the recipe's bytes.
    pub digest: String,
}

/// One layer of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestLayer {
    /// Layer name (`base/busybox`).
    pub name: String,
    /// base, packages or app.
    pub kind: String,
    /// Layer key.
    pub key: String,
    /// Blob digest.
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Blob size.
    pub size: u64,
    /// Debian packages that went into the layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<crate::model::deb::DebPackage>,
}

/// The image file itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageFile {
    /// `raw`: a GPT disk image.
    pub format: String,
    /// File name, relative to the manifest.
    pub file: String,
    /// `sha256:` of the file: the image's name.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// The builder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuilderInfo {
    /// `kiln`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Layer format version.
    pub layer_format: u32,
}

impl BuilderInfo {
    /// This builder.
    pub fn current() -> Self {
        BuilderInfo {
            name: "kiln".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            layer_format: crate::fs::layer::LAYER_FORMAT_VERSION,
        }
    }
}

/// Where a build's SOURCE_DATE_EPOCH came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochSource {
    /// `image.source_date_epoch` in the recipe.
    Recipe,
    /// The `SOURCE_DATE_EPOCH` environment variable.
    Environment,
    /// Derived from the layers' packages (see the module documentation).
    Derived,
}
