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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::model::manifest::Manifest;
use crate::publish::release::PublishedFile;
use crate::publish::sign;
use crate::util::digest::HashWriter;
use crate::util::error::{CheckFailed, InputError};

mod registry;
use registry::{check_digest, net, read_small, Client};
pub use registry::{parse_challenge, Challenge, Reference};

/// OCI image manifest media type.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
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

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `HOST/REPO:TAG@sha256:…` of the image manifest.
    pub reference: String,
    /// The image manifest digest.
    pub manifest_digest: String,
    /// The compressed disk layer's digest and size.
    pub layer_digest: String,
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
    let (f, layer_digest, layer_size) = w.finish();
    let layer_digest = layer_digest.to_string();
    f.sync_all()?;
    tracing::info!(%layer_digest, layer_size, "pushing the disk layer");
    c.put_blob(&layer_digest, File::open(tmp.path())?)?;
    let config_digest = crate::fs::layer::sha256_digest(&config);
    c.put_blob(&config_digest, &config[..])?;
    c.put_blob(EMPTY_DIGEST, &b"{}"[..])?;

    let mut layer = descriptor(
        DISK_TYPE,
        &layer_digest,
        layer_size,
        Some(&format!("{}.zst", m.image.file)),
    );
    layer["annotations"][RAW_DIGEST] = json!(m.image.digest);
    layer["annotations"][RAW_SIZE] = json!(m.image.size.to_string());
    let image = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": IMAGE_ARTIFACT,
        "config": descriptor(CONFIG_TYPE, &config_digest, config.len() as u64, None),
        "layers": [layer],
        "annotations": {
            TITLE: m.name,
            "org.opencontainers.image.version": m.version,
            "org.opencontainers.image.created": crate::util::time::rfc3339(m.source_date_epoch),
            RAW_DIGEST: m.image.digest,
        },
    });
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
            c.put_blob(&d, &b[..])?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            layers.push(descriptor(&mt, &d, b.len() as u64, name.as_deref()));
        }
        let art = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": artifact_type,
            "config": descriptor(EMPTY_TYPE, EMPTY_DIGEST, 2, None),
            "layers": layers,
            "subject": subject,
            "annotations": { "org.opencontainers.image.created": crate::util::time::rfc3339(m.source_date_epoch) },
        });
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
        let mut index = match c.get_manifest(&tag)? {
            Some(b) => serde_json::from_slice::<Value>(&b)?,
            None => json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [] }),
        };
        let list = index["manifests"]
            .as_array_mut()
            .context("referrers index without manifests")?;
        for d in fallback {
            if !list.iter().any(|x| x["digest"] == d["digest"]) {
                list.push(d);
            }
        }
        c.put_manifest(&tag, INDEX_TYPE, &serde_json::to_vec(&index)?)?;
    }
    Ok(PushReport {
        reference: format!("{}/{}:{tag}@{image_digest}", r.host, r.repo),
        manifest_digest: image_digest,
        layer_digest,
        layer_size,
        referrers,
    })
}

/// What `kiln pull` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The image file.
    pub image: PathBuf,
    /// Its digest (verified).
    pub digest: String,
    /// Name and version.
    pub name: String,
    /// Version.
    pub version: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// The key id that signed it.
    pub key_id: String,
    /// The image manifest digest in the registry.
    pub manifest_digest: String,
}

/// The referrers of a manifest: the referrers API, else the fallback tag.
fn referrers(c: &Client, digest: &str) -> Result<Vec<Value>> {
    let url = c.url(&format!("referrers/{digest}"));
    let mut resp = c
        .req("GET", &url)
        .header("Accept", INDEX_TYPE)
        .call()
        .map_err(net(&url))?;
    let index: Value = if resp.status().as_u16() == 200 {
        serde_json::from_slice(&read_small(&mut resp)?)?
    } else {
        match c.get_manifest(&digest.replacen(':', "-", 1))? {
            Some(b) => serde_json::from_slice(&b)?,
            None => json!({ "manifests": [] }),
        }
    };
    Ok(index["manifests"].as_array().cloned().unwrap_or_default())
}

/// Download the compressed disk to a temporary file in `dir`, check its
/// digest, decompress to another, check the image digest; returns that file.
fn fetch_disk(
    c: &Client,
    layer: &Value,
    want_raw: &str,
    dir: &Path,
) -> Result<tempfile::NamedTempFile> {
    let digest = layer["digest"]
        .as_str()
        .context("disk layer without digest")?;
    let mut resp = c.get_blob(digest)?;
    let zst = tempfile::Builder::new()
        .prefix(".kiln-pull-")
        .tempfile_in(dir)?;
    let mut w = HashWriter::new(zst.reopen()?);
    std::io::copy(
        &mut resp.body_mut().with_config().limit(u64::MAX).reader(),
        &mut w,
    )
    .with_context(|| format!("downloading blob {digest}"))?;
    let (_, got, _) = w.finish();
    if got.to_string() != digest {
        bail!(CheckFailed {
            message: format!("disk blob {digest} from {}/{}: the downloaded bytes hash to {got}: the registry's copy is corrupt or tampered with", c.r.host, c.r.repo)
        });
    }
    let raw = tempfile::Builder::new()
        .prefix(".kiln-pull-")
        .tempfile_in(dir)?;
    let mut w = HashWriter::new(raw.reopen()?);
    zstd::stream::copy_decode(File::open(zst.path())?, &mut w).map_err(|e| CheckFailed {
        message: format!("disk blob {digest} does not decompress: {e}"),
    })?;
    let (f, got, _) = w.finish();
    f.sync_all()?;
    if got.to_string() != want_raw {
        bail!(CheckFailed {
            message: format!(
                "the disk in blob {digest} hashes to {got}, but its manifest names {want_raw}"
            )
        });
    }
    Ok(raw)
}

/// `kiln pull oci://HOST[:PORT]/REPO:TAG -o DIR --pubkey P`: fetch the image,
/// check every digest and the minisign signatures of the disk and its
/// manifest, and only then write `DIR/NAME-VERSION.raw`, its manifest and
/// their signatures.
pub fn pull(source: &str, out: &Path, pubkey: &Path) -> Result<PullReport> {
    let r = Reference::parse(source)?;
    let Some(tag) = r.tag.clone() else {
        return Err(InputError::file(
            "(command line)",
            format!("{source}: no tag (oci://HOST/REPO:TAG)"),
        )
        .into());
    };
    let pk = sign::load_public_key(pubkey)?;
    let c = Client::connect(&r, false)?;
    let bytes = c
        .get_manifest(&tag)?
        .ok_or_else(|| InputError::file("(command line)", format!("{source}: no such tag")))?;
    let manifest_digest = crate::fs::layer::sha256_digest(&bytes);
    let image: Value = serde_json::from_slice(&bytes)?;
    if image["artifactType"] != IMAGE_ARTIFACT && image["config"]["mediaType"] != CONFIG_TYPE {
        bail!(InputError::file(
            "(command line)",
            format!(
                "{source} is not a kiln image (artifactType {})",
                image["artifactType"]
            )
        ));
    }
    let config_digest = image["config"]["digest"]
        .as_str()
        .context("manifest without config")?;
    let config = c.get_small_blob(config_digest)?;
    // Checked before its names become file names in `out`.
    let m = Manifest::from_json(&config).map_err(|e| CheckFailed {
        message: format!("{source}: the image's kiln manifest: {e}"),
    })?;
    let layer = image["layers"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["mediaType"] == DISK_TYPE))
        .context("no disk layer in the image manifest")?
        .clone();

    // Signatures: the signature artifact among the referrers.
    let mut sigs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for d in referrers(&c, &manifest_digest)? {
        if d["artifactType"] != SIGNATURE_ARTIFACT {
            continue;
        }
        let Some(dd) = d["digest"].as_str() else {
            continue;
        };
        let Some(b) = c.get_manifest(dd)? else {
            continue;
        };
        check_digest(&b, dd, "signature artifact")?;
        let art: Value = serde_json::from_slice(&b)?;
        if art["subject"]["digest"] != manifest_digest.as_str() {
            continue;
        }
        for l in art["layers"].as_array().into_iter().flatten() {
            if let (Some(t), Some(ld)) = (l["annotations"][TITLE].as_str(), l["digest"].as_str()) {
                sigs.insert(t.to_string(), c.get_small_blob(ld)?);
            }
        }
    }
    let base = format!("{}-{}", m.name, m.version);
    let raw_sig_name = format!("{}.minisig", m.image.file);
    let man_name = format!("{base}.manifest.json");
    let man_sig_name = format!("{man_name}.minisig");
    for n in [&raw_sig_name, &man_sig_name] {
        if !sigs.contains_key(n) {
            bail!(CheckFailed {
                message: format!("{source}: no signature {n} among the image's referrers: refusing an unsigned image")
            });
        }
    }

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let raw = fetch_disk(&c, &layer, &m.image.digest, out)?;
    let stage = |data: &[u8]| -> Result<tempfile::NamedTempFile> {
        let mut t = tempfile::Builder::new()
            .prefix(".kiln-pull-")
            .tempfile_in(out)?;
        t.write_all(data)?;
        t.as_file().sync_all()?;
        Ok(t)
    };
    let raw_sig = stage(&sigs[&raw_sig_name])?;
    let man = stage(&config)?;
    let man_sig = stage(&sigs[&man_sig_name])?;
    let named = |n: &str| format!("{n} from {source}");
    let v = sign::verify_named(raw.path(), &named(&m.image.file), raw_sig.path(), &pk)?;
    sign::verify_named(man.path(), &named(&man_name), man_sig.path(), &pk)?;
    if v.fields.digest.as_deref() != Some(m.image.digest.as_str()) {
        bail!(CheckFailed {
            message: format!(
                "{source}: the signature's trusted comment names {:?}, not {}",
                v.fields.digest, m.image.digest
            )
        });
    }

    let mut files = Vec::new();
    for (t, name) in [
        (raw, m.image.file.clone()),
        (raw_sig, raw_sig_name),
        (man, man_name),
        (man_sig, man_sig_name),
    ] {
        let dest = out.join(&name);
        t.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        t.persist(&dest)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {}", dest.display()))?;
        files.push(dest);
    }
    Ok(PullReport {
        image: files[0].clone(),
        digest: m.image.digest,
        name: m.name,
        version: m.version,
        files,
        key_id: v.key_id,
        manifest_digest,
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
