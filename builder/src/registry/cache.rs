//! The layer cache in an OCI registry (`kiln build --cache oci://HOST/REPO`):
//! runners that share a registry repository share the layers they build.
//!
//! A layer key `sha256:<hex>` maps to the tag `sha256-<hex>` (tags allow
//! no `:`; every registry takes this form). The tag names a *key entry*: an
//! OCI image manifest (image-spec `manifest.md`, the artifact form of
//! "Guidelines for Artifact Usage") with
//! - `artifactType` [`KEY_ARTIFACT`];
//! - `config`: the store's key entry JSON ([`crate::store::KeyEntry`]: key,
//!   blob digest and size, diff_id, name, kind, packages, epoch) as a blob
//!   of type [`KEY_TYPE`]; with a signing key, the config descriptor carries
//!   a minisign signature over those exact bytes in the annotation
//!   [`SIGNATURE_ANNOTATION`];
//! - `layers`: exactly one descriptor, the layer blob ([`LAYER_TYPE`]).
//!
//! Nothing from the registry is trusted more than the local store: the
//! manifest is parsed as untrusted input ([`crate::registry::spec`]), the
//! entry must name the key asked for and the blob its layer descriptor
//! names, every blob is fetched by descriptor (size and sha256 checked while
//! it streams, into a scratch file of the store's, never whole in memory),
//! and with a public key the entry's signature must verify. The layer is
//! then taken only if it is exactly what a build here would store
//! ([`accept`]). Any failure (network, parse, digest, signature, content)
//! is a warning and a miss: the caller builds the layer itself and gets
//! the same digest. After the first network failure the cache is left
//! alone for the rest of the run.

mod accept;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use minisign::PublicKey;
use serde_json::json;

use super::spec::ImageManifest;
use super::{Client, Reference, MANIFEST_TYPE, SMALL_LIMIT};
use crate::fs::layer::{self, sha256_digest};
use crate::store::KeyEntry;
use crate::util::digest::Digest;
use crate::util::error::check_failed;
use crate::util::minisign::{verify_bytes, SigningKey};
use crate::util::progress::Transfer;
pub use accept::{accept, expected_epoch, Accepted, Below};

/// `artifactType` of a key entry manifest.
pub const KEY_ARTIFACT: &str = "application/vnd.kiln.layer-key.v1";
/// Media type of the key entry JSON (the manifest's config).
pub const KEY_TYPE: &str = "application/vnd.kiln.layer-key.v1+json";
/// Media type of a layer blob: kiln's deterministic tar, zstd-compressed.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Annotation of the config descriptor holding the `.minisig` text.
pub const SIGNATURE_ANNOTATION: &str = "dev.kiln.cache.signature";
/// Largest layer blob taken from the cache (streamed to a scratch file
/// while it is hashed; unpacked, it is held in memory, as a layer kiln
/// builds is).
const LAYER_LIMIT: u64 = 4 << 30;
/// Largest key entry (a layer's package list is a few hundred KiB at most).
const ENTRY_LIMIT: u64 = SMALL_LIMIT;

/// How `kiln build` uses a registry as its layer cache.
pub struct CacheConfig {
    /// `oci://HOST[:PORT]/REPO` (no tag).
    pub reference: Reference,
    /// Never push (untrusted runners).
    pub read_only: bool,
    /// When set, only key entries signed by this key are used.
    pub pubkey: Option<PublicKey>,
    /// When set, pushed key entries are signed with it.
    pub sign_key: Option<SigningKey>,
}

/// A layer cache in a registry, connected on first use.
pub struct Cache {
    config: CacheConfig,
    client: Mutex<Option<Client>>,
    /// Set at the first failure to reach the registry.
    down: AtomicBool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.url())
    }
}

/// A key entry found in the cache, its blob fetched and checked.
pub struct Hit {
    /// The entry (its key and digest checked against the request and the blob).
    pub entry: KeyEntry,
    /// The layer blob, hashing to `entry.digest`: a scratch file in the
    /// directory the lookup was given (removed when dropped).
    pub blob: tempfile::NamedTempFile,
}

/// What a lookup found.
pub enum Lookup {
    /// A usable entry.
    Hit(Box<Hit>),
    /// No entry under the key's tag.
    Miss,
    /// An entry that is there but was refused (already warned about).
    Refused,
}

/// The tag of a layer key: `sha256:<hex>` → `sha256-<hex>`.
pub fn tag_for(key: &str) -> Result<String> {
    let d = Digest::parse(key).map_err(|e| crate::internal_err!("layer key {key:?}: {e}"))?;
    Ok(format!("sha256-{}", d.hex()))
}

/// The manifest and config bytes of the key entry for `entry`, signed
/// with `sign` when given.
pub fn key_entry_manifest(
    entry: &KeyEntry,
    sign: Option<&SigningKey>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let config = serde_json::to_vec(entry)?;
    let mut config_desc = json!({
        "mediaType": KEY_TYPE,
        "digest": sha256_digest(&config),
        "size": config.len(),
    });
    if let Some(k) = sign {
        let trusted = format!("key:{}\tdigest:{}", entry.key, entry.digest);
        config_desc["annotations"] =
            json!({ SIGNATURE_ANNOTATION: k.sign_bytes(&config, &trusted)? });
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": KEY_ARTIFACT,
        "config": config_desc,
        "layers": [{ "mediaType": LAYER_TYPE, "digest": entry.digest, "size": entry.size }],
        "annotations": { "org.opencontainers.image.title": entry.name },
    });
    Ok((serde_json::to_vec(&manifest)?, config))
}

/// The checks on a key entry manifest that need no network: its shape.
/// Returns the parsed manifest; `what` names it in errors.
pub(crate) fn parse_key_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    let m = ImageManifest::parse(bytes, what)?;
    if m.artifact_type.as_deref() != Some(KEY_ARTIFACT) {
        bail!(check_failed(format!(
            "{what}: artifactType is {:?}, not {KEY_ARTIFACT}",
            m.artifact_type
        )));
    }
    if m.config.media_type != KEY_TYPE {
        bail!(check_failed(format!(
            "{what}: config.mediaType is {:?}, not {KEY_TYPE}",
            m.config.media_type
        )));
    }
    match m.layers.as_slice() {
        [l] if l.media_type == LAYER_TYPE => Ok(m),
        _ => bail!(check_failed(format!(
            "{what}: `layers` must be exactly one {LAYER_TYPE}"
        ))),
    }
}

/// The key entry in `config` (the bytes the manifest `m` names as its
/// config), checked: the signature when `pubkey` requires one, the key
/// asked for, and the blob digest and size the manifest's layer names.
pub(crate) fn check_key_entry(
    m: &ImageManifest,
    config: &[u8],
    key: &str,
    pubkey: Option<&PublicKey>,
    what: &str,
) -> Result<KeyEntry> {
    if let Some(pk) = pubkey {
        let sig = m
            .config
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .ok_or_else(|| {
                check_failed(format!(
                    "{what}: not signed, and --cache-pubkey requires a signature"
                ))
            })?;
        verify_bytes(what, config, sig, pk)?;
    }
    let entry: KeyEntry = crate::util::record::parse_json(config)
        .map_err(|e| check_failed(format!("{what}: the key entry is not readable: {e}")))?;
    let layer = &m.layers[0];
    if entry.key.to_string() != key || entry.digest != layer.digest || entry.size != layer.size {
        bail!(check_failed(format!(
            "{what}: the entry names key {} and blob {} ({} bytes), not key {key} and the manifest's blob {} ({} bytes)",
            entry.key, entry.digest, entry.size, layer.digest, layer.size
        )));
    }
    // Checked before the blob is fetched: a bomb's declared size is refused
    // here, and its unpacking stops at `tar_size` ([`accept`]).
    let most = layer::tar_limit(entry.size);
    if entry.tar_size > most {
        bail!(check_failed(format!(
            "{what}: the entry declares a {}-byte tar in a {}-byte blob, more than the {most} bytes kiln unpacks from a blob that size (at most {} times it)",
            entry.tar_size,
            entry.size,
            layer::MAX_RATIO
        )));
    }
    Ok(entry)
}

/// Reads `bytes` as a key entry manifest and, with the same bytes as its
/// config, as the key entry, the way a lookup does (without a signature
/// requirement); for the fuzz harness (`builder/tests/fuzz_readers.rs`),
/// which checks that every input gives a value or an error, never a panic.
#[doc(hidden)]
pub fn parse_untrusted(bytes: &[u8]) -> Result<()> {
    let key = format!("sha256:{}", "0".repeat(64));
    match parse_key_manifest(bytes, "fuzz") {
        Ok(m) => check_key_entry(&m, bytes, &key, None, "fuzz").map(drop),
        Err(_) => serde_json::from_slice::<KeyEntry>(bytes)
            .map(drop)
            .map_err(Into::into),
    }
}

impl Cache {
    /// A cache at `config.reference`; nothing is sent until the first lookup.
    pub fn new(config: CacheConfig) -> Cache {
        Cache {
            config,
            client: Mutex::new(None),
            down: AtomicBool::new(false),
        }
    }

    /// `oci://HOST/REPO`.
    pub fn url(&self) -> String {
        format!(
            "oci://{}/{}",
            self.config.reference.host, self.config.reference.repo
        )
    }

    /// Whether built layers are pushed.
    pub fn read_only(&self) -> bool {
        self.config.read_only
    }

    /// Run `f` with the connected client; a failure to connect marks the
    /// cache down.
    fn with_client<T>(&self, f: impl FnOnce(&Client) -> Result<T>) -> Result<T> {
        let mut guard = self
            .client
            .lock()
            .map_err(|_| crate::internal_err!("cache client lock poisoned"))?;
        if guard.is_none() {
            let push = !self.config.read_only;
            *guard = Some(Client::connect(&self.config.reference, push)?);
        }
        let c = guard.as_ref().context("cache client")?;
        f(c)
    }

    /// A failure talking to the registry: warned about, and the cache is
    /// not asked again in this run when it could not be reached at all.
    fn failed(&self, doing: &str, e: &anyhow::Error) {
        let unreachable = crate::util::error::exit_code(e) == 3;
        if unreachable {
            self.down.store(true, Ordering::Relaxed);
        }
        tracing::warn!(cache = %self.url(), "layer cache: {doing}: {e:#}{}", if unreachable { " (not using the cache for the rest of this run)" } else { "" });
    }

    /// Look a layer key up; its blob streams into a scratch file in
    /// `scratch` (the store's own temporary directory, so that it can be
    /// renamed into the store) while it is hashed. Never an error: every
    /// failure is a warning and a [`Lookup::Refused`] (or [`Lookup::Miss`]
    /// when the registry could not be asked).
    pub fn lookup(&self, key: &str, name: &str, transfer: &Transfer, scratch: &Path) -> Lookup {
        if self.down.load(Ordering::Relaxed) {
            return Lookup::Miss;
        }
        let tag = match tag_for(key) {
            Ok(t) => t,
            Err(e) => {
                self.failed("looking up a layer", &e);
                return Lookup::Miss;
            }
        };
        let what = format!("layer cache entry {}:{tag} ({name})", self.url());
        let got = self.with_client(|c| {
            let Some(bytes) = c.get_manifest(&tag)? else {
                return Ok(None);
            };
            let m = parse_key_manifest(&bytes, &what)?;
            let config = c.get_small_blob(&what, &m.config, ENTRY_LIMIT)?;
            let entry = check_key_entry(&m, &config, key, self.config.pubkey.as_ref(), &what)?;
            let file = tempfile::Builder::new()
                .prefix(".kiln-layer-")
                .tempfile_in(scratch)
                .with_context(|| format!("creating a scratch file in {}", scratch.display()))?;
            let mut blob = Counting::new(file, transfer);
            c.get_blob_to(&what, &m.layers[0], LAYER_LIMIT, &mut blob)?;
            Ok(Some(Hit {
                entry,
                blob: blob.file,
            }))
        });
        match got {
            Ok(Some(hit)) => Lookup::Hit(Box::new(hit)),
            Ok(None) => Lookup::Miss,
            Err(e) => {
                self.failed(&format!("not using {tag} ({name}), building it"), &e);
                if self.down.load(Ordering::Relaxed) {
                    Lookup::Miss
                } else {
                    Lookup::Refused
                }
            }
        }
    }

    /// Push a layer built here: its blob, then its key entry. `replace`:
    /// an entry is already under the tag (one this run refused); it is
    /// only replaced by a signed one. Never an error: failures are warnings.
    pub fn push(&self, entry: &KeyEntry, blob: &[u8], replace: bool) {
        if self.config.read_only || self.down.load(Ordering::Relaxed) {
            return;
        }
        if entry.tar_size > layer::tar_limit(entry.size) {
            tracing::info!(cache = %self.url(), layer = %entry.name, "layer cache: not pushing the layer: it unpacks to more than {} times its blob, which every runner refuses as a possible bomb", layer::MAX_RATIO);
            return;
        }
        if replace && self.config.sign_key.is_none() {
            tracing::warn!(cache = %self.url(), layer = %entry.name, "layer cache: not replacing the refused entry with an unsigned one");
            return;
        }
        let pushed = self.with_client(|c| {
            let tag = tag_for(&entry.key.to_string())?;
            let (manifest, config) = key_entry_manifest(entry, self.config.sign_key.as_ref())?;
            c.put_blob(&entry.digest.to_string(), blob.len() as u64, blob)?;
            c.put_blob(
                &sha256_digest(&config),
                config.len() as u64,
                config.as_slice(),
            )?;
            c.put_manifest(&tag, MANIFEST_TYPE, &manifest)?;
            Ok(tag)
        });
        match pushed {
            Ok(tag) => {
                tracing::info!(cache = %self.url(), layer = %entry.name, %tag, "layer pushed to the cache")
            }
            Err(e) => self.failed(&format!("pushing layer {}", entry.name), &e),
        }
    }
}

/// A layer blob as it downloads into a scratch file (in the pieces the
/// download copies, unbuffered: what arrived is on disk, not in memory),
/// its size so far on the progress line.
struct Counting<'a> {
    file: tempfile::NamedTempFile,
    written: u64,
    transfer: &'a Transfer,
    start: std::time::Instant,
}

impl<'a> Counting<'a> {
    fn new(file: tempfile::NamedTempFile, transfer: &'a Transfer) -> Self {
        Counting {
            file,
            written: 0,
            transfer,
            start: std::time::Instant::now(),
        }
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.transfer.show(self.written, self.start.elapsed());
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests;
