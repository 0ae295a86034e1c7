//! `kiln ls` and `kiln inspect`: what the store holds and what an image is
//! made of, as data; `cli::render` prints them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::model::manifest::Manifest;
use crate::store::Store;
use crate::util::error::InputError;

/// `kiln ls` output.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// Layers in the key index.
    pub layers: Vec<LayerItem>,
    /// Images with manifests in the store.
    pub images: Vec<ImageItem>,
    /// Bytes used by blobs.
    pub total_bytes: u64,
}

/// A layer in the store.
#[derive(Debug, Serialize)]
pub struct LayerItem {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Key.
    pub key: String,
    /// Blob digest.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// Uncompressed size (the layer's tar).
    pub tar_size: u64,
}

/// An image in the store.
#[derive(Debug, Serialize)]
pub struct ImageItem {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Image digest.
    pub digest: String,
    /// Image size.
    pub size: u64,
}

/// List the store.
pub fn list(store: &Store) -> Result<Listing> {
    let layers: Vec<LayerItem> = store
        .key_entries()?
        .into_iter()
        .map(|e| LayerItem {
            name: e.name,
            kind: e.kind,
            key: e.key,
            digest: e.digest,
            size: e.size,
            tar_size: e.tar_size,
        })
        .collect();
    let mut images = Vec::new();
    for (digest, bytes) in store.images()? {
        let m: Manifest =
            serde_json::from_slice(&bytes).with_context(|| format!("manifest of {digest}"))?;
        images.push(ImageItem {
            name: m.name,
            version: m.version,
            digest,
            size: m.image.size,
        });
    }
    let mut total_bytes = 0;
    if let Ok(rd) = std::fs::read_dir(store.root().join("blobs/sha256")) {
        for e in rd.flatten() {
            total_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Ok(Listing {
        layers,
        images,
        total_bytes,
    })
}

/// `kiln inspect` output.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Where the manifest was found.
    pub manifest_path: Option<String>,
    /// The manifest, when one was found.
    pub manifest: Option<Manifest>,
    /// sha256 of the image file (when a file was given).
    pub digest: Option<String>,
    /// Whether the image file's sha256 matches the manifest (when both are there).
    pub digest_verified: Option<bool>,
    /// What the disk image itself says: partitions, command line, root hash, kernel, os-release.
    pub disk: Option<crate::read::disk::DiskReport>,
    /// Boot-test verdicts recorded in the store for this digest, oldest first.
    pub verdicts: Vec<crate::store::verdict::Verdict>,
}

/// Inspect an image file, a manifest file, or a digest in the store.
pub fn inspect(store: &Store, target: &str) -> Result<Inspection> {
    if target.starts_with("sha256:") {
        let Some(bytes) = store.image(target)? else {
            bail!(InputError::file(
                target,
                format!(
                    "no image with this digest in the store {}",
                    store.root().display()
                )
            ));
        };
        return Ok(Inspection {
            manifest_path: None,
            manifest: Some(serde_json::from_slice(&bytes)?),
            digest: Some(target.to_string()),
            digest_verified: None,
            disk: None,
            verdicts: crate::store::verdict::list(store, target)?,
        });
    }
    let path = Path::new(target);
    if !path.exists() {
        bail!(InputError::file(target, "no such file"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (manifest_path, image_path) = if name.ends_with(".manifest.json") {
        (path.to_path_buf(), None)
    } else {
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        (
            path.with_file_name(format!("{stem}.manifest.json")),
            Some(path),
        )
    };
    let manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => Some(serde_json::from_slice::<Manifest>(&bytes).map_err(|e| {
            InputError::file(
                manifest_path.display().to_string(),
                format!("not a kiln manifest: {e}"),
            )
        })?),
        Err(_) if image_path.is_some() => None,
        Err(e) => bail!(InputError::file(
            manifest_path.display().to_string(),
            format!("cannot read: {e}")
        )),
    };
    let is_tar = manifest.as_ref().is_some_and(|m| m.image.format == "tar");
    let (digest, disk) = match image_path {
        Some(p) if is_tar => (Some(crate::util::digest::file_digest(p)?), None),
        Some(p) => (
            Some(crate::util::digest::file_digest(p)?),
            Some(
                crate::read::disk::read_disk(p)
                    .map_err(|e| InputError::file(target, format!("{e:#}")))?,
            ),
        ),
        None => (None, None),
    };
    let digest_verified = match (&digest, &manifest) {
        (Some(d), Some(m)) => Some(*d == m.image.digest),
        _ => None,
    };
    let verdicts = match &digest {
        Some(d) => crate::store::verdict::list(store, d)?,
        None => Vec::new(),
    };
    Ok(Inspection {
        manifest_path: manifest
            .as_ref()
            .map(|_| manifest_path.display().to_string()),
        manifest,
        digest,
        digest_verified,
        disk,
        verdicts,
    })
}
