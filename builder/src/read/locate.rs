//! Which manifest describes an image file: one rule for every command that
//! needs to know (`kiln test`, `kiln publish`, `kiln sign`, `kiln inspect`,
//! `kiln diff`), so that no two of them can pick different manifests for
//! the same file.
//!
//! Given an image file and the sha256 of its bytes, its manifest is
//! 1. the `*.manifest.json` beside it (a regular file in the same
//!    directory, at most [`MAX_MANIFEST`] bytes; the first in name order)
//!    whose `image.file` is the image file's own name and whose
//!    `image.digest` is its digest; else
//! 2. the store's copy for that digest (`STORE/images/<hex>.json`), if its
//!    `image.digest` is that digest.
//!
//! A manifest naming another digest is never used: either the file changed
//! since it was built or the manifest is another image's. Those beside the
//! file that name it are reported as [`Lookup::stale`], for the error
//! message. Bytes that are not a kiln manifest are passed over. The
//! manifest chosen is checked ([`Manifest::from_json`]): a name, version,
//! file name or digest that `kiln build` could not have written is an
//! [`InputError`](crate::util::error::InputError) naming the manifest file
//! and the field, never a path.

use crate::util::record::{read_record, ReadError, MAX_RECORD};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::model::manifest::{Manifest, ManifestError};
use crate::store::Store;
use crate::util::digest::Digest;
use crate::util::error::InputError;

/// The largest manifest file read (a Debian image's package lists take a
/// few hundred KiB).
pub const MAX_MANIFEST: u64 = MAX_RECORD;

/// The suffix of a manifest's file name (`NAME-VERSION.manifest.json`).
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Where a manifest was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Beside the image file.
    Beside(PathBuf),
    /// In the store, under the image's digest.
    Store(PathBuf),
    /// Given as the manifest file itself.
    File(PathBuf),
}

impl Source {
    /// The manifest file.
    pub fn path(&self) -> &Path {
        match self {
            Source::Beside(p) | Source::Store(p) | Source::File(p) => p,
        }
    }
}

/// A manifest, checked, with its bytes as read.
#[derive(Debug, Clone)]
pub struct Located {
    /// The manifest.
    pub manifest: Manifest,
    /// Its bytes (published as they are, read for fields newer builders add).
    pub bytes: Vec<u8>,
    /// Where it came from.
    pub source: Source,
}

/// What [`locate`] found.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The image's manifest.
    pub found: Option<Located>,
    /// Manifests beside the image that name its file but another digest.
    pub stale: Vec<PathBuf>,
}

/// Open the file a command was given as an image (or a file to sign)
/// without blocking, and refuse it unless it is a regular file (symbolic
/// links followed): a FIFO would block a read forever, a device would never
/// end, and a directory is no image. Every command that takes an image file
/// asks here first, so all say the same: "no such file", or what the path is.
pub fn regular_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = path.display().to_string();
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .and_then(|f| f.metadata().map(|m| (f, m)));
    let (file, meta) = match opened {
        Ok(fm) => fm,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InputError::file(shown, "no such file").into())
        }
        Err(e) => return Err(InputError::file(shown, format!("cannot open: {e}")).into()),
    };
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(file);
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(InputError::file(shown, format!("{what}, not a regular file")).into())
}

/// The manifest of `image`, whose bytes hash to `digest` (see the module
/// documentation for the rule). Errors: a matching manifest that fails its
/// checks, or a store that cannot be read.
pub fn locate(store: &Store, image: &Path, digest: &Digest) -> Result<Lookup> {
    let mut lookup = Lookup::default();
    let file_name = image.file_name().and_then(|n| n.to_str());
    if let Some(file_name) = file_name {
        for path in beside(image) {
            let Ok(Some(bytes)) = read_small(&path) else {
                continue;
            };
            // The cheap look first: only a manifest naming this file is
            // checked, and one that fails its checks is an error.
            if names_file(&bytes).as_deref() != Some(file_name) {
                tracing::debug!(
                    "{}: not a kiln manifest of this file, passed over",
                    path.display()
                );
                continue;
            }
            let found = checked(bytes, Source::Beside(path.clone()))?;
            if found.manifest.image.digest != *digest {
                lookup.stale.push(path);
                continue;
            }
            lookup.found = Some(found);
            return Ok(lookup);
        }
    }
    lookup.found = from_store(store, digest)?;
    Ok(lookup)
}

/// The `image.file` of JSON bytes that claim to be a kiln manifest
/// ([`SCHEMA`](crate::model::manifest::SCHEMA)), read before anything else of them is.
fn names_file(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        schema: String,
        image: PeekImage,
    }
    #[derive(serde::Deserialize)]
    struct PeekImage {
        file: String,
    }
    let p: Peek = serde_json::from_slice(bytes).ok()?;
    (p.schema == crate::model::manifest::SCHEMA).then_some(p.image.file)
}

/// [`locate`] for a command that cannot go on without the manifest: none is
/// an [`InputError`] naming the image, saying what the manifest is `for_what`.
pub fn require(store: &Store, image: &Path, digest: &Digest, for_what: &str) -> Result<Located> {
    let lookup = locate(store, image, digest)?;
    if let Some(found) = lookup.found {
        return Ok(found);
    }
    let mut message = format!(
        "no kiln manifest for image {digest}, beside it (a *{MANIFEST_SUFFIX} naming this file and digest) or in the store {}: {for_what}",
        store.root().display()
    );
    for s in &lookup.stale {
        message.push_str(&format!(
            "; {} names this file with another digest: the file changed since it was built",
            s.display()
        ));
    }
    Err(InputError::file(image.display().to_string(), message).into())
}

/// The store's manifest for `digest`, if it has one that names that digest.
pub fn from_store(store: &Store, digest: &Digest) -> Result<Option<Located>> {
    let key = digest.to_string();
    let Some(bytes) = store.image(&key)? else {
        return Ok(None);
    };
    let path = store.image_manifest(&key)?;
    let found = checked(bytes, Source::Store(path.clone()))?;
    if found.manifest.image.digest != *digest {
        tracing::warn!(
            "{}: names image {}, not {digest}: not used",
            path.display(),
            found.manifest.image.digest
        );
        return Ok(None);
    }
    Ok(Some(found))
}

/// A manifest file given as such (`kiln inspect X.manifest.json`, `kiln
/// sign X.manifest.json`). `None` when the file is not a kiln manifest;
/// an [`InputError`] when it cannot be read or is one that fails its checks.
pub fn manifest_file(path: &Path) -> Result<Option<Located>> {
    let shown = || path.display().to_string();
    let Some(bytes) =
        read_small(path).map_err(|e| InputError::file(shown(), format!("cannot read: {e}")))?
    else {
        return Ok(None);
    };
    match Manifest::from_json(&bytes) {
        Ok(manifest) => Ok(Some(Located {
            manifest,
            bytes,
            source: Source::File(path.to_path_buf()),
        })),
        Err(ManifestError::NotManifest(_)) => Ok(None),
        Err(e) => Err(e.in_file(shown()).into()),
    }
}

/// Parse and check manifest bytes read from `source`.
fn checked(bytes: Vec<u8>, source: Source) -> Result<Located> {
    let manifest =
        Manifest::from_json(&bytes).map_err(|e| e.in_file(source.path().display().to_string()))?;
    Ok(Located {
        manifest,
        bytes,
        source,
    })
}

/// The `*.manifest.json` files beside `image`, in name order.
fn beside(image: &Path) -> Vec<PathBuf> {
    let dir = image.parent().filter(|d| !d.as_os_str().is_empty());
    let Ok(rd) = std::fs::read_dir(dir.unwrap_or(Path::new("."))) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(MANIFEST_SUFFIX))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// A manifest file's bytes: [`read_record`]'s rules (a regular file, not
/// through a link, never blocking, at most [`MAX_MANIFEST`] bytes); `None`
/// when the name holds something else.
fn read_small(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match read_record(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ReadError::Io(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::tests::sample;

    struct Setup {
        _dir: tempfile::TempDir,
        store: Store,
        image: PathBuf,
        digest: Digest,
    }

    /// `out/hello-1.0.raw` and an empty store.
    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        store.init().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let image = dir.path().join("out/hello-1.0.raw");
        std::fs::write(&image, b"a disk image").unwrap();
        let digest = Digest::of_file(&image).unwrap();
        Setup {
            _dir: dir,
            store,
            image,
            digest,
        }
    }

    impl Setup {
        /// The sample manifest, naming this image.
        fn manifest(&self) -> Manifest {
            let mut m = sample();
            m.image.digest = self.digest;
            m
        }

        fn beside(&self, name: &str, m: &Manifest) -> PathBuf {
            let p = self.image.with_file_name(name);
            std::fs::write(&p, serde_json::to_vec(m).unwrap()).unwrap();
            p
        }

        fn in_store(&self, m: &Manifest) {
            let key = self.digest.to_string();
            self.store
                .record_image(&key, &serde_json::to_vec(m).unwrap())
                .unwrap();
        }

        fn locate(&self) -> Result<Lookup> {
            locate(&self.store, &self.image, &self.digest)
        }
    }

    fn field_of(e: anyhow::Error) -> (String, Option<String>) {
        let e = e.downcast::<InputError>().expect("an InputError");
        (e.file, e.field)
    }

    #[test]
    fn beside_comes_before_the_store() {
        let s = setup();
        let mut m = s.manifest();
        s.in_store(&m);
        let found = s.locate().unwrap().found.unwrap();
        assert_eq!(
            found.source,
            Source::Store(s.store.image_manifest(&s.digest.to_string()).unwrap())
        );
        m.recipe.file = "other.toml".into();
        let p = s.beside("hello-1.0.manifest.json", &m);
        let found = s.locate().unwrap().found.unwrap();
        assert_eq!(found.source, Source::Beside(p.clone()));
        assert_eq!(found.manifest, m);
        assert_eq!(found.bytes, std::fs::read(&p).unwrap());
    }

    #[test]
    fn a_manifest_of_another_digest_or_file_is_never_used() {
        let s = setup();
        let mut other = s.manifest();
        other.image.digest = Digest::of(b"another image");
        let stale = s.beside("hello-1.0.manifest.json", &other);
        let mut renamed = s.manifest();
        renamed.image.file = "hello-0.9.raw".into();
        s.beside("hello-0.9.manifest.json", &renamed);
        std::fs::write(s.image.with_file_name("junk.manifest.json"), b"{").unwrap();
        let l = s.locate().unwrap();
        assert!(l.found.is_none());
        assert_eq!(l.stale, std::slice::from_ref(&stale));
        let e = require(&s.store, &s.image, &s.digest, "needed").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&stale.display().to_string()) && msg.contains("needed"),
            "{msg}"
        );
        assert_eq!(field_of(e), (s.image.display().to_string(), None));

        // The store's copy is the fallback, unless it names another digest too.
        s.in_store(&s.manifest());
        assert!(matches!(
            s.locate().unwrap().found.unwrap().source,
            Source::Store(_)
        ));
        let s = setup();
        s.in_store(&other);
        assert!(s.locate().unwrap().found.is_none());
    }

    #[test]
    fn hostile_fields_are_input_errors_naming_the_manifest() {
        let s = setup();
        let mut m = s.manifest();
        m.image.file = "../../etc/cron.d/x".into();
        s.in_store(&m);
        let store_copy = s.store.image_manifest(&s.digest.to_string()).unwrap();
        let e = s.locate().unwrap_err();
        assert_eq!(
            field_of(e),
            (store_copy.display().to_string(), Some("image.file".into()))
        );

        let mut m = s.manifest();
        m.version = "../../1.0".into();
        let p = s.beside("hello-1.0.manifest.json", &m);
        let e = s.locate().unwrap_err();
        assert_eq!(
            field_of(e),
            (p.display().to_string(), Some("version".into()))
        );
    }

    #[test]
    fn a_fifo_named_like_a_manifest_does_not_hang() {
        let s = setup();
        let fifo = s.image.with_file_name("a.manifest.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let p = s.beside("hello-1.0.manifest.json", &s.manifest());
        assert_eq!(s.locate().unwrap().found.unwrap().source, Source::Beside(p));
    }

    #[test]
    fn a_manifest_file_given_as_such() {
        let s = setup();
        assert!(manifest_file(&s.image).unwrap().is_none());
        let p = s.beside("hello-1.0.manifest.json", &s.manifest());
        let found = manifest_file(&p).unwrap().unwrap();
        assert_eq!(found.source, Source::File(p.clone()));
        let mut m = s.manifest();
        m.name = "hello\tdigest:sha256:0".into();
        let p = s.beside("hello-1.0.manifest.json", &m);
        assert_eq!(
            field_of(manifest_file(&p).unwrap_err()),
            (p.display().to_string(), Some("name".into()))
        );
        assert!(manifest_file(&s.image.with_file_name("missing")).is_err());
    }
}
