//! `kiln ls` and `kiln inspect`: what the store holds and what an image is
//! made of, as data; `cli::render` prints them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::model::manifest::Manifest;
use crate::read::imagefs::FileKind;
use crate::read::locate;
use crate::store::Store;
use crate::util::digest::Digest;
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
            key: e.key.to_string(),
            digest: e.digest.to_string(),
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
    if let Ok(list) = store.layout().list(crate::store::layout::Area::Blobs) {
        for e in list
            .iter()
            .filter(|e| e.kind == crate::util::walk::Kind::File)
        {
            total_bytes += std::fs::symlink_metadata(&e.path).map_or(0, |m| m.len());
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
    /// Where the manifest was found (or, when `digest_verified` is false,
    /// the manifest beside the image that names another digest).
    pub manifest_path: Option<String>,
    /// The manifest, when one was found.
    pub manifest: Option<Manifest>,
    /// sha256 of the image file (when a file was given).
    pub digest: Option<String>,
    /// For an image file: true when its manifest was found, false when the
    /// only manifest naming it names another digest (the file changed since
    /// it was built; that manifest is not used), absent when none names it.
    pub digest_verified: Option<bool>,
    /// What the disk image itself says: partitions, command line, root hash, kernel, os-release.
    pub disk: Option<crate::read::disk::DiskReport>,
    /// Boot-test verdicts recorded in the store for this digest, oldest first.
    pub verdicts: Vec<crate::store::verdict::Verdict>,
}

/// Inspect an image file, a manifest file, or a digest in the store. An
/// image file's manifest is the one [`locate`] finds.
pub fn inspect(store: &Store, target: &str) -> Result<Inspection> {
    if target.starts_with("sha256:") {
        let digest = Digest::parse(target).map_err(|e| InputError::file(target, e.to_string()))?;
        let Some(found) = locate::from_store(store, &digest)? else {
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
            manifest: Some(found.manifest),
            digest: Some(target.to_string()),
            digest_verified: None,
            disk: None,
            verdicts: crate::store::verdict::list(store, target)?,
        });
    }
    let path = Path::new(target);
    locate::regular_file(path)?;
    if target.ends_with(locate::MANIFEST_SUFFIX) {
        let Some(found) = locate::manifest_file(path)? else {
            bail!(InputError::file(target, "not a kiln manifest"));
        };
        return Ok(Inspection {
            manifest_path: Some(target.to_string()),
            manifest: Some(found.manifest),
            digest: None,
            digest_verified: None,
            disk: None,
            verdicts: Vec::new(),
        });
    }
    // What the file is, from its first sectors, before hashing it all: a
    // large file that is no image is refused at once.
    let kind = crate::read::imagefs::file_kind(path)?;
    let digest = Digest::of_file(path)?;
    let lookup = locate::locate(store, path, &digest)?;
    let (manifest_path, manifest, digest_verified) = match (lookup.found, lookup.stale.first()) {
        (Some(f), _) => (
            Some(f.source.path().to_path_buf()),
            Some(f.manifest),
            Some(true),
        ),
        (None, Some(stale)) => (Some(stale.clone()), None, Some(false)),
        (None, None) => (None, None, None),
    };
    let disk = match kind {
        FileKind::Tar => None,
        FileKind::Disk => Some(
            crate::read::disk::read_disk(path)
                .map_err(|e| InputError::file(target, format!("{e:#}")))?,
        ),
    };
    let digest = digest.to_string();
    Ok(Inspection {
        manifest_path: manifest_path.map(|p| p.display().to_string()),
        manifest,
        verdicts: crate::store::verdict::list(store, &digest)?,
        digest: Some(digest),
        digest_verified,
        disk,
    })
}
