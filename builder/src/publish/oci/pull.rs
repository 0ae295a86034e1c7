//! `kiln pull oci://HOST[:PORT]/REPO:TAG -o DIR --pubkey P`: fetch an image
//! that [`super::push`] put up, and write it to `DIR` only once everything
//! about it checks out.
//!
//! The registry is not trusted, so every step is bounded by what the steps
//! before it proved:
//! 1. the image manifest (at most the spec's 4 MiB) names the kiln manifest
//!    and the disk layer by descriptor;
//! 2. the kiln manifest is fetched (at most its descriptor's size, itself at
//!    most 4 MiB, digest-checked) and its minisign signature, found among the
//!    image's referrers, is verified with the given public key before any of
//!    its fields is read;
//! 3. its name, version and image file name, which become file names, are
//!    validated as a recipe's `image.name` and `image.version` are, and every
//!    path written is one plain component inside `DIR`;
//! 4. only then is the disk layer fetched: at most its descriptor's size,
//!    which must fit a zstd stream of the signed `image.size`; decompression
//!    stops at the signed `image.size`, the result must hash to the signed
//!    `image.digest`, and the disk's own signature is checked last.
//!
//! A disk image's root hash sidecar (`NAME-VERSION.roothash`, for systemd)
//! is written from the signed manifest, not fetched.
//!
//! Everything is staged in a temporary directory on `DIR`'s file system and
//! renamed into `DIR` at the end: a failed pull leaves nothing in `DIR`, and
//! does not create it.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minisign::PublicKey;
use serde::Serialize;
use serde_json::Value;

use super::{
    HashWriter, CONFIG_TYPE, DISK_TYPE, IMAGE_ARTIFACT, INDEX_TYPE, SIGNATURE_ARTIFACT, TITLE,
};
use crate::model::manifest::Manifest;
use crate::publish::sign;
use crate::registry::spec::{Descriptor, ImageManifest, Index};
use crate::registry::{copy_at_most, read_bounded, Client, Reference, SMALL_LIMIT};
use crate::util::digest::Digest;
use crate::util::error::{check_failed, InputError};
use crate::util::scratch::{self, ScratchDir};

/// Largest signature blob: a minisig is four lines, its trusted comment at
/// most 1 KiB (minisign's `COMMENTMAXBYTES`).
const SIGNATURE_LIMIT: u64 = 16 << 10;

/// Signature artifacts read from the referrers, and signatures tried for
/// one file: room for re-publications, too few for a registry to keep a
/// pull fetching.
const MAX_SIGNATURE_ARTIFACTS: usize = 16;
const MAX_SIGNATURES_TRIED: usize = 16;

/// Largest zstd window kiln decompresses with: 2^27 bytes, zstd's default
/// decoding limit (`ZSTD_WINDOWLOG_LIMIT_DEFAULT` in zstd.h); bounds the
/// decoder's memory whatever the frame header asks for.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// The most a zstd stream of `n` bytes can take: `ZSTD_COMPRESSBOUND` of
/// zstd.h (`n + n/256` and a little for small inputs) plus room for frame
/// headers, block headers and checksums.
fn zstd_bound(n: u64) -> u64 {
    n.saturating_add(n / 256).saturating_add(64 << 10)
}

/// What `kiln pull` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The image file.
    pub image: PathBuf,
    /// Its digest (verified).
    pub digest: Digest,
    /// Name and version.
    pub name: String,
    /// Version.
    pub version: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// The key id that signed it.
    pub key_id: String,
    /// The image manifest digest in the registry.
    pub manifest_digest: Digest,
}

/// `kiln pull`: see the module documentation.
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

    // 1. What the registry says the image is made of.
    let bytes = c
        .get_manifest(&tag)?
        .ok_or_else(|| InputError::file("(command line)", format!("{source}: no such tag")))?;
    let manifest_digest = Digest::of(&bytes);
    let kind: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if kind["artifactType"] != IMAGE_ARTIFACT && kind["config"]["mediaType"] != CONFIG_TYPE {
        return Err(InputError::file(
            "(command line)",
            format!(
                "{source} is not a kiln image (artifactType {})",
                kind["artifactType"]
            ),
        )
        .into());
    }
    let what = format!("the image manifest of {source}");
    let image = ImageManifest::parse(&bytes, &what)?;
    let layer = image
        .layers
        .iter()
        .find(|l| l.media_type == DISK_TYPE)
        .ok_or_else(|| check_failed(format!("{what}: field `layers`: no {DISK_TYPE} layer")))?;

    // 2. The kiln manifest and its signature, checked before any field is read.
    let config = c.get_small_blob("kiln manifest", &image.config, SMALL_LIMIT)?;
    let sigs = signature_layers(&c, &manifest_digest)?;
    let stage = stage_dir(out)?;
    let staged = |n: &str| stage.path().join(n);
    let (man, man_sig) = (staged("manifest.json"), staged("manifest.json.minisig"));
    let (zst, raw, raw_sig) = (
        staged("disk.raw.zst"),
        staged("disk.raw"),
        staged("disk.raw.minisig"),
    );
    std::fs::write(&man, &config).with_context(|| format!("writing {}", man.display()))?;
    let label = format!(
        "the kiln manifest {} of {source}",
        image.config.digest.short()
    );
    verify_any(
        &c,
        &sigs,
        Wanted::Suffix(".manifest.json.minisig"),
        (&man, &label),
        &man_sig,
        &pk,
    )?;

    // 3. Signed from here on; the fields that become file names are checked.
    let m = Manifest::from_json(&config).map_err(|e| e.in_file(&label))?;
    let names = Names::of(&m, &label)?;
    let want = m.image.digest;

    // 4. The disk, bounded by the signed manifest, then its own signature.
    fetch_disk(&c, layer, m.image.size, &want, &zst, &raw)?;
    let raw_label = format!("{} from {source}", names.raw);
    let v = verify_any(
        &c,
        &sigs,
        Wanted::Title(&names.raw_sig),
        (&raw, &raw_label),
        &raw_sig,
        &pk,
    )?;
    if v.fields.digest != Some(m.image.digest.to_string()) {
        return Err(check_failed(format!(
            "{source}: the signature's trusted comment names {:?}, not {}",
            v.fields.digest, m.image.digest
        )));
    }

    // Everything checks out: into `out`, with the root hash sidecar of a
    // disk image made from the signed manifest.
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let sidecar = m.roothash_sidecar();
    let roothash = staged("roothash");
    if let Some((_, content)) = &sidecar {
        std::fs::write(&roothash, content)
            .with_context(|| format!("writing {}", roothash.display()))?;
    }
    let mut files = Vec::new();
    for (from, name) in [
        (&raw, &names.raw),
        (&raw_sig, &names.raw_sig),
        (&man, &names.manifest),
        (&man_sig, &names.manifest_sig),
    ]
    .into_iter()
    .chain(sidecar.as_ref().map(|(name, _)| (&roothash, name)))
    {
        let dest = inside(out, name)?;
        let f = File::open(from).with_context(|| format!("opening {}", from.display()))?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(from, &dest).with_context(|| format!("writing {}", dest.display()))?;
        files.push(dest);
    }
    File::open(out).and_then(|d| d.sync_all()).ok();
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

/// The file names a pull writes, from a signed kiln manifest, each one
/// plain path component.
struct Names {
    raw: String,
    raw_sig: String,
    manifest: String,
    manifest_sig: String,
}

impl Names {
    /// Check `name`, `version` and `image.file` of `m` (read from `file`):
    /// bad ones are [`InputError`]s naming the field.
    fn of(m: &Manifest, file: &str) -> Result<Names> {
        let err = |field: &str, message: String| InputError {
            file: file.into(),
            line: None,
            field: Some(field.into()),
            message,
        };
        let base = format!("{}-{}", m.name, m.version);
        let names = Names {
            raw: m.image.file.clone(),
            raw_sig: format!("{}.minisig", m.image.file),
            manifest: format!("{base}.manifest.json"),
            manifest_sig: format!("{base}.manifest.json.minisig"),
        };
        if names.raw == names.manifest || names.raw == names.manifest_sig {
            return Err(err(
                "image.file",
                format!("{:?} is the name of the manifest's own file", m.image.file),
            )
            .into());
        }
        Ok(names)
    }
}

/// `dir/name` for a `name` proven to be a plain file name, so the path
/// stays inside `dir`.
fn inside(dir: &Path, name: &str) -> Result<PathBuf> {
    anyhow::ensure!(
        crate::model::manifest::valid_file_name(name),
        crate::check_err!(
            "{name:?} is not a plain file name: refusing to write it in {}",
            dir.display()
        )
    );
    Ok(dir.join(name))
}

/// A temporary directory on `out`'s file system, so the final renames never
/// cross file systems: inside `out` when it exists, else in its nearest
/// existing ancestor. Dropped, it goes with everything in it; a killed
/// pull's is swept by the next one.
fn stage_dir(out: &Path) -> Result<ScratchDir> {
    let at = out
        .ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("."));
    scratch::sweep(at, false)?;
    ScratchDir::new_in(at)
        .with_context(|| format!("creating a temporary directory in {}", at.display()))
}

/// The referrers of a manifest: the referrers API, else the fallback tag
/// (distribution-spec v1.1, "Listing Referrers").
fn referrers(c: &Client, digest: &Digest) -> Result<Index> {
    let url = c.url(&format!("referrers/{digest}"));
    let mut resp = c.send(&url, |u| c.req("GET", u).header("Accept", INDEX_TYPE))?;
    let bytes = if resp.status().as_u16() == 200 {
        read_bounded(&mut resp, SMALL_LIMIT, &url)?
    } else {
        match c.get_manifest(&format!("sha256-{}", digest.hex()))? {
            Some(b) => b,
            None => return Ok(Index { manifests: vec![] }),
        }
    };
    Index::parse(&bytes, &format!("the referrers of {digest}"))
}

/// A signature among the image's referrers: its title (the signed file's
/// name and `.minisig`, as the pusher put it: unproven) and its descriptor.
type SignatureLayer = (String, Descriptor);

/// The layers of the signature artifacts whose subject is `subject`. An
/// artifact the registry cannot serve as described is skipped: a pull
/// without a good signature fails later anyway.
fn signature_layers(c: &Client, subject: &Digest) -> Result<Vec<SignatureLayer>> {
    let mut found = Vec::new();
    let index = referrers(c, subject)?;
    let artifacts = index
        .manifests
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT));
    for d in artifacts.take(MAX_SIGNATURE_ARTIFACTS) {
        let what = format!("signature artifact {}", d.digest);
        let art = c
            .get_manifest_exact("signature artifact", d)
            .and_then(|b| ImageManifest::parse(&b, &what));
        let art = match art {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("skipping {what}: {e:#}");
                continue;
            }
        };
        if art.subject.as_ref().map(|s| &s.digest) != Some(subject) {
            continue;
        }
        for l in art.layers {
            if let Some(t) = l.annotations.get(TITLE) {
                found.push((t.clone(), l));
            }
        }
    }
    Ok(found)
}

/// Which signatures among the referrers are for a file, by title.
#[derive(Clone, Copy)]
enum Wanted<'a> {
    /// Titles ending so (the kiln manifest's, before its name is known).
    Suffix(&'a str),
    /// This title.
    Title(&'a str),
}

impl Wanted<'_> {
    fn matches(self, title: &str) -> bool {
        match self {
            Wanted::Suffix(s) => title.ends_with(s),
            Wanted::Title(t) => title == t,
        }
    }
}

impl std::fmt::Display for Wanted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Suffix(s) => write!(f, "*{s}"),
            Wanted::Title(t) => write!(f, "{t}"),
        }
    }
}

/// Verify `file` (`.0`, named `.1` in errors) with the signatures among
/// `layers` whose title is `wanted`, each fetched (at most
/// [`SIGNATURE_LIMIT`] bytes) to `sig`: the first that verifies with `pk`
/// wins and stays in `sig`. None found or none good is an exit-1 error ([`check_failed`]).
fn verify_any(
    c: &Client,
    layers: &[SignatureLayer],
    wanted: Wanted<'_>,
    file: (&Path, &str),
    sig: &Path,
    pk: &PublicKey,
) -> Result<sign::Verified> {
    let mut last = None;
    let candidates = layers.iter().filter(|(t, _)| wanted.matches(t));
    for (title, d) in candidates.take(MAX_SIGNATURES_TRIED) {
        let title: String = title.chars().take(200).collect();
        let tried = c
            .get_small_blob(&format!("signature {title:?}"), d, SIGNATURE_LIMIT)
            .and_then(|b| {
                std::fs::write(sig, b).with_context(|| format!("writing {}", sig.display()))?;
                sign::verify_named(file.0, file.1, sig, pk)
            });
        match tried {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::debug!("signature {title:?} of {}: {e:#}", file.1);
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        check_failed(format!(
            "{}: no signature {wanted} among the image's referrers: refusing an unsigned image",
            file.1
        ))
    }))
}

/// Fetch the disk layer `layer` to `zst` (at most what a zstd stream of
/// `size` bytes can take) and decompress it to `raw`: at most `size` bytes
/// are written, exactly `size` must come out, and they must hash to `want`.
fn fetch_disk(
    c: &Client,
    layer: &Descriptor,
    size: u64,
    want: &Digest,
    zst: &Path,
    raw: &Path,
) -> Result<()> {
    let blob = &layer.digest;
    let mut f = File::create(zst).with_context(|| format!("creating {}", zst.display()))?;
    c.get_blob_to("disk blob", layer, zstd_bound(size), &mut f)?;
    drop(f);
    let mut dec = zstd::stream::read::Decoder::new(File::open(zst)?)?;
    dec.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
    let mut w = HashWriter::new(File::create(raw)?);
    let got = copy_at_most(dec, &mut w, size, |e| {
        check_failed(format!("disk blob {blob} does not decompress: {e}"))
    })
    .with_context(|| format!("decompressing disk blob {blob} to {}", raw.display()))?;
    std::fs::remove_file(zst).ok();
    let (f, digest, _) = w.finish();
    let fail = |message: String| -> Result<()> { Err(check_failed(message)) };
    match got {
        None => fail(format!(
            "disk blob {blob} decompresses to more than the {size} bytes its signed manifest declares (image.size): refusing it"
        )),
        Some(n) if n != size => fail(format!(
            "disk blob {blob} decompresses to {n} bytes, but its signed manifest declares {size} (image.size)"
        )),
        Some(_) if digest != *want => fail(format!(
            "the disk in blob {blob} hashes to {digest}, but its signed manifest names {want}"
        )),
        Some(_) => Ok(f.sync_all()?),
    }
}

#[cfg(test)]
mod tests;
