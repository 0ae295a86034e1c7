//! Push to and pull from OCI registries, per the OCI Distribution
//! Specification v1.1 (<https://github.com/opencontainers/distribution-spec>)
//! and the Image Manifest v1.1 artifact guidance.
//!
//! An image goes up as an artifact manifest tagged with its version:
//! - `config`: the kiln manifest (`application/vnd.kiln.manifest.v1+json`);
//! - one layer: the raw disk, zstd-compressed (`application/vnd.kiln.disk.raw.v1+zstd`),
//!   annotated with the uncompressed digest and size.
//!
//! Beside it, as artifacts whose `subject` is the image manifest: the
//! minisign signatures of every release file, the provenance statement with
//! the verdict, and the SBOM when there is one. Registries without the
//! referrers API (Debian's docker-registry 2.8) get the spec's fallback: an
//! image index under the tag `sha256-<hex of the image manifest>`.
//!
//! Loopback registries are spoken to over plain HTTP, every other one over
//! HTTPS. Authentication follows the `WWW-Authenticate` challenge of `/v2/`:
//! `Basic`, or `Bearer` with a token from the realm (the Docker token
//! protocol), with credentials from `$KILN_REGISTRY_USERNAME` and
//! `$KILN_REGISTRY_PASSWORD`, else the `auths` of containers' `auth.json` or
//! Docker's `config.json`. Blobs are streamed from and to files, never held
//! in memory.
//!
//! A registry is not trusted: `kiln pull` (`oci/pull.rs`) verifies the
//! signed kiln manifest before it uses any of its fields and lets it bound
//! the disk download; every answer is read bounded by the size its
//! descriptor declares (`oci/registry.rs`), and the OCI JSON is parsed into
//! checked values whose errors name the structure and field (`oci/spec.rs`).

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::model::manifest::Manifest;
use crate::publish::PublishedFile;
use crate::util::digest::{Digest, HashWriter};
use crate::util::error::InputError;

mod pull;
use crate::registry::spec;
use crate::registry::Client;
pub use crate::registry::{parse_challenge, Challenge, Reference};
pub use pull::{pull, PullReport};

/// Parses `bytes` as an OCI image manifest and as an image index, the way
/// `kiln pull` reads a registry's answers; for the fuzz harness
/// (`builder/tests/fuzz_readers.rs`), which checks that every answer gives a
/// value or an error, never a panic.
#[doc(hidden)]
pub fn parse_registry_json(bytes: &[u8]) -> (Result<()>, Result<()>) {
    (
        spec::ImageManifest::parse(bytes, "manifest").map(drop),
        spec::Index::parse(bytes, "index").map(drop),
    )
}

pub use crate::registry::{INDEX_TYPE, MANIFEST_TYPE};
/// artifactType of a kiln image.
pub const IMAGE_ARTIFACT: &str = "application/vnd.kiln.image.v1";
/// Media type of the kiln manifest as the artifact's config.
pub const CONFIG_TYPE: &str = "application/vnd.kiln.manifest.v1+json";
/// Media type of the compressed disk layer.
pub const DISK_TYPE: &str = "application/vnd.kiln.disk.raw.v1+zstd";
/// artifactType and layer type of the signature artifact.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.kiln.minisign.v1";
/// artifactType of the provenance artifact (in-toto).
pub const PROVENANCE_ARTIFACT: &str = "application/vnd.in-toto+json";
/// artifactType of the SBOM artifact.
pub const SBOM_ARTIFACT: &str = "application/spdx+json";
/// The OCI empty descriptor's media type, digest and content (image-spec v1.1).
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// Annotations (OCI pre-defined and kiln's).
const TITLE: &str = "org.opencontainers.image.title";
const RAW_DIGEST: &str = "dev.kiln.image.digest";
const RAW_SIZE: &str = "dev.kiln.image.size";
/// zstd level for the disk layer: fast, and the same bytes every time.
const ZSTD_LEVEL: i32 = 3;

fn descriptor(media_type: &str, digest: &str, size: u64, title: Option<&str>) -> Value {
    let mut d = json!({ "mediaType": media_type, "digest": digest, "size": size });
    if let Some(t) = title {
        d["annotations"] = json!({ TITLE: t });
    }
    d
}

/// The image manifest of `m`, given its config (the kiln manifest) and its
/// compressed disk layer as (digest, size).
fn image_manifest(m: &Manifest, config: (&str, u64), layer: (&str, u64)) -> Value {
    let mut disk = descriptor(
        DISK_TYPE,
        layer.0,
        layer.1,
        Some(&format!("{}.zst", m.image.file)),
    );
    disk["annotations"][RAW_DIGEST] = json!(m.image.digest);
    disk["annotations"][RAW_SIZE] = json!(m.image.size.to_string());
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": IMAGE_ARTIFACT,
        "config": descriptor(CONFIG_TYPE, config.0, config.1, None),
        "layers": [disk],
        "annotations": {
            TITLE: m.name,
            "org.opencontainers.image.version": m.version,
            "org.opencontainers.image.created": crate::util::time::rfc3339(m.source_date_epoch),
            RAW_DIGEST: m.image.digest,
        },
    })
}

/// An artifact of `artifact_type` referring to `subject`, with `layers`.
fn artifact_manifest(
    artifact_type: &str,
    layers: Vec<Value>,
    subject: &Value,
    epoch: i64,
) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": artifact_type,
        "config": descriptor(EMPTY_TYPE, EMPTY_DIGEST, 2, None),
        "layers": layers,
        "subject": subject,
        "annotations": { "org.opencontainers.image.created": crate::util::time::rfc3339(epoch) },
    })
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `HOST/REPO:TAG@sha256:…` of the image manifest.
    pub reference: String,
    /// The image manifest digest.
    pub manifest_digest: Digest,
    /// The compressed disk layer's digest and size.
    pub layer_digest: Digest,
    /// Compressed size.
    pub layer_size: u64,
    /// Digests of the signature, provenance and SBOM artifacts.
    pub referrers: Vec<String>,
}

/// Push a published release (its directory and signed files) to `oci://HOST[:PORT]/REPO`.
pub fn push(target: &str, dir: &Path, m: &Manifest, files: &[PublishedFile]) -> Result<PushReport> {
    let r = Reference::parse(target)?;
    if r.tag.is_some() {
        return Err(InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("--to".into()),
            message: format!(
                "{target}: give the repository without a tag; the tag is the image version"
            ),
        }
        .into());
    }
    let c = Client::connect(&r, true)?;
    let base = format!("{}-{}", m.name, m.version);
    let file = |suffix: &str| {
        files.iter().find(|f| {
            f.path
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == format!("{base}{suffix}"))
        })
    };
    let raw = dir.join(&m.image.file);
    let man = file(".manifest.json").context("published manifest missing")?;
    let config = std::fs::read(&man.path)?;

    // The disk, compressed into a temporary file (hashed on the way), then streamed up.
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-tmp-")
        .tempfile_in(dir)?;
    let mut w = HashWriter::new(tmp.reopen()?);
    zstd::stream::copy_encode(
        File::open(&raw).with_context(|| format!("opening {}", raw.display()))?,
        &mut w,
        ZSTD_LEVEL,
    )
    .with_context(|| format!("compressing {}", raw.display()))?;
    let (f, layer, layer_size) = w.finish();
    let layer_digest = layer.to_string();
    f.sync_all()?;
    tracing::info!(%layer_digest, layer_size, "pushing the disk layer");
    c.put_blob(&layer_digest, layer_size, File::open(tmp.path())?)?;
    let config_digest = crate::fs::layer::sha256_digest(&config);
    c.put_blob(&config_digest, config.len() as u64, &config[..])?;
    c.put_blob(EMPTY_DIGEST, 2, &b"{}"[..])?;

    let image = image_manifest(
        m,
        (&config_digest, config.len() as u64),
        (&layer_digest, layer_size),
    );
    let image_bytes = serde_json::to_vec(&image)?;
    let tag = &m.version;
    let (image_digest, _) = c.put_manifest(tag, MANIFEST_TYPE, &image_bytes)?;
    let subject = descriptor(MANIFEST_TYPE, &image_digest, image_bytes.len() as u64, None);

    // Referring artifacts: signatures, provenance (+ verdict), SBOM.
    let mut artifacts: Vec<(&str, Vec<(String, &Path)>)> = vec![(
        SIGNATURE_ARTIFACT,
        files
            .iter()
            .map(|f| (SIGNATURE_ARTIFACT.to_string(), f.signature.as_path()))
            .collect(),
    )];
    let mut prov = Vec::new();
    for (suffix, mt) in [
        (".provenance.json", PROVENANCE_ARTIFACT),
        (".verdict.json", "application/vnd.kiln.verdict.v1+json"),
    ] {
        if let Some(f) = file(suffix) {
            prov.push((mt.to_string(), f.path.as_path()));
        }
    }
    artifacts.push((PROVENANCE_ARTIFACT, prov));
    if let Some(f) = file(".spdx.json") {
        artifacts.push((
            SBOM_ARTIFACT,
            vec![(SBOM_ARTIFACT.to_string(), f.path.as_path())],
        ));
    }
    let mut referrers = Vec::new();
    let mut fallback = Vec::new();
    for (artifact_type, parts) in artifacts {
        let mut layers = Vec::new();
        for (mt, p) in parts {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let d = crate::fs::layer::sha256_digest(&b);
            c.put_blob(&d, b.len() as u64, &b[..])?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            layers.push(descriptor(&mt, &d, b.len() as u64, name.as_deref()));
        }
        let art = artifact_manifest(artifact_type, layers, &subject, m.source_date_epoch);
        let bytes = serde_json::to_vec(&art)?;
        let digest = crate::fs::layer::sha256_digest(&bytes);
        let (_, indexed) = c.put_manifest(&digest, MANIFEST_TYPE, &bytes)?;
        if !indexed {
            let mut d = descriptor(MANIFEST_TYPE, &digest, bytes.len() as u64, None);
            d["artifactType"] = json!(artifact_type);
            fallback.push(d);
        }
        referrers.push(digest);
    }
    if !fallback.is_empty() {
        // The referrers tag schema (distribution-spec v1.1, "Unavailable Referrers API").
        let tag = image_digest.replacen(':', "-", 1);
        let what = format!("the referrers index {}/{}:{tag}", r.host, r.repo);
        let mut index = match c.get_manifest(&tag)? {
            Some(b) => {
                serde_json::from_slice::<Value>(&b).with_context(|| format!("{what}: not JSON"))?
            }
            None => json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [] }),
        };
        let list = index["manifests"]
            .as_array_mut()
            .with_context(|| format!("{what}: field `manifests`: not an array"))?;
        for d in fallback {
            if !list.iter().any(|x| x["digest"] == d["digest"]) {
                list.push(d);
            }
        }
        c.put_manifest(&tag, INDEX_TYPE, &serde_json::to_vec(&index)?)?;
    }
    Ok(PushReport {
        reference: format!("{}/{}:{tag}@{image_digest}", r.host, r.repo),
        // What the registry was sent, and so what it names the manifest by.
        manifest_digest: Digest::of(&image_bytes),
        layer_digest: layer,
        layer_size,
        referrers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_descriptor_digest() {
        assert_eq!(crate::fs::layer::sha256_digest(b"{}"), EMPTY_DIGEST);
    }
}
