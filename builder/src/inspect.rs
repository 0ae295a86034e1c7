//! `kiln ls` and `kiln inspect`: what the store holds and what an image is made of.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::error::InputError;
use crate::manifest::Manifest;
use crate::store::Store;

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
    /// The manifest.
    pub manifest: Manifest,
    /// Whether the image file's sha256 matches the manifest (when the file was given).
    pub digest_verified: Option<bool>,
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
            manifest: serde_json::from_slice(&bytes)?,
            digest_verified: None,
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
    let bytes = std::fs::read(&manifest_path).map_err(|e| {
        InputError::file(
            manifest_path.display().to_string(),
            format!("cannot read the image's manifest: {e}"),
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        InputError::file(
            manifest_path.display().to_string(),
            format!("not a kiln manifest: {e}"),
        )
    })?;
    let digest_verified = match image_path {
        Some(p) => Some(crate::layer::sha256_digest(&std::fs::read(p)?) == manifest.image.digest),
        None => None,
    };
    Ok(Inspection {
        manifest_path: Some(manifest_path.display().to_string()),
        manifest,
        digest_verified,
    })
}

/// Print an inspection for people.
pub fn print_human(i: &Inspection) {
    let m = &i.manifest;
    println!("{} {}", m.name, m.version);
    println!("digest  {}", m.image.digest);
    match i.digest_verified {
        Some(true) => println!("file    {} (sha256 verified)", m.image.file),
        Some(false) => println!(
            "file    {} (sha256 DOES NOT MATCH the manifest)",
            m.image.file
        ),
        None => println!("file    {}", m.image.file),
    }
    println!(
        "format  {}, {}",
        m.image.format,
        crate::cli::human(m.image.size)
    );
    println!("recipe  {} {}", m.recipe.file, m.recipe.digest);
    println!("SOURCE_DATE_EPOCH {}", m.source_date_epoch);
    println!("layers:");
    for l in &m.layers {
        println!(
            "  {:<8} {:<24} {} {}",
            l.kind,
            l.name,
            l.digest,
            crate::cli::human(l.size)
        );
    }
}
