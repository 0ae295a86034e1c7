//! Image → output directory, and the assembled-image cache that makes a
//! rebuild with nothing changed a copy.
//!
//! An image's *key* covers everything its bytes depend on besides the
//! layers' contents: the layer digests, the recipe's bytes and file name,
//! the kiln-init binary, SOURCE_DATE_EPOCH, kiln's version and the assembly
//! format. `STORE/builds/<key>.json` names the image digest; the store keeps
//! the manifest under that digest and, for the last [`KEEP_PER_NAME`]
//! images of each name, the image file itself (`images/<hex>.raw`).
//!
//! The output directory only ever receives complete files: everything is
//! written into a temporary directory beside them and renamed into place.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::fs::layer::{finish_digest, hash_zeros, sha256_digest};
use crate::model::manifest::Manifest;
use crate::store::layout::{self, Area};
use crate::store::{write_atomic, Store};
use crate::util::digest::Digest;
use crate::util::scratch::{self, ScratchDir};

/// Bumped whenever disk assembly changes its output for the same inputs.
/// (2: the manifest records the predicted PCR 11; 3: the root gets a
/// tmpfiles.d file for the directories its tmpfs mounts hide.)
pub const ASSEMBLY_VERSION: u32 = 3;

/// Cached image files kept per image name (older ones are removed; their
/// manifests stay).
pub const KEEP_PER_NAME: usize = 2;

/// Everything an assembled image depends on besides its layers' contents.
#[derive(Serialize)]
pub struct ImageKeyInput<'a> {
    /// [`ASSEMBLY_VERSION`].
    pub assembly: u32,
    /// kiln's version (recorded in the manifest).
    pub kiln: &'a str,
    /// The recipe file's name (recorded in the manifest).
    pub recipe_file: &'a str,
    /// `sha256:` of the recipe's bytes (disk, boot and test settings).
    pub recipe: &'a str,
    /// The layer digests, bottom first.
    pub layers: Vec<&'a Digest>,
    /// `sha256:` of kiln-init, for disk images.
    pub init: Option<&'a Digest>,
    /// SOURCE_DATE_EPOCH of the image.
    pub source_date_epoch: i64,
    /// Where it came from (recorded in the manifest).
    pub epoch_source: crate::model::manifest::EpochSource,
    /// `sha256:` of the Secure Boot signing certificate, when the UKI is
    /// signed (absent otherwise, so unsigned images keep their keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uki_signer: Option<&'a Digest>,
}

impl ImageKeyInput<'_> {
    /// The key: sha256 over the canonical JSON.
    pub fn key(&self) -> String {
        sha256_digest(&serde_json::to_vec(self).expect("key input serialises"))
    }
}

/// A file bound for the output directory.
pub struct OutFile {
    /// Its name there.
    pub name: String,
    /// Where it is now (in the temporary directory); `None` when the output
    /// directory already holds it ([`up_to_date`]).
    pub path: Option<PathBuf>,
    /// `sha256:`, for SHA256SUMS.
    pub digest: String,
}

/// The checksum file of an output directory, `sha256sum -c`'s format.
pub const SUMS: &str = "SHA256SUMS";

/// The temporary directory beside the output files.
/// What killed builds left there (their scratch locks died with them) is
/// removed first.
pub fn temp_dir(out_dir: &Path) -> Result<ScratchDir> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("creating output directory {}", out_dir.display()))?;
    scratch::sweep(out_dir, false)?;
    ScratchDir::new_in(out_dir)
        .with_context(|| format!("creating a temporary directory in {}", out_dir.display()))
}

/// Write the root hash sidecar (disk images), the manifest, the SBOM and
/// SHA256SUMS beside `files` (the image files, already in `tmp`), then
/// rename everything into `out_dir`. Returns the manifest's path and the
/// SHA256SUMS lines of the image's files.
///
/// Disk images get their root hash sidecar ([`Manifest::roothash_sidecar`]).
pub fn finish(
    tmp: &Path,
    out_dir: &Path,
    manifest: &Manifest,
    mut files: Vec<OutFile>,
) -> Result<(PathBuf, String)> {
    let base = format!("{}-{}", manifest.name, manifest.version);
    // Small files already there with the same bytes are left alone.
    let add = |files: &mut Vec<OutFile>, name: String, data: &[u8]| -> Result<()> {
        let path = tmp.join(&name);
        let same = std::fs::read(out_dir.join(&name)).is_ok_and(|old| old == data);
        if !same {
            write_new(&path, data)?;
        }
        files.push(OutFile {
            name,
            path: (!same).then_some(path),
            digest: sha256_digest(data),
        });
        Ok(())
    };
    if let Some((name, content)) = manifest.roothash_sidecar() {
        add(&mut files, name, content.as_bytes())?;
    }
    add(
        &mut files,
        format!("{base}.spdx.json"),
        &serde_json::to_vec_pretty(&crate::model::sbom::document(manifest))?,
    )?;
    let manifest_name = format!("{base}.manifest.json");
    add(
        &mut files,
        manifest_name.clone(),
        &serde_json::to_vec_pretty(manifest)?,
    )?;
    let mut sums = String::new();
    for f in &files {
        sums.push_str(&format!(
            "{}  {}\n",
            f.digest.trim_start_matches("sha256:"),
            f.name
        ));
    }
    add(&mut files, SUMS.into(), sums.as_bytes())?;
    // Complete files only: rename each into place.
    for f in &files {
        if let Some(path) = &f.path {
            replace(path, &out_dir.join(&f.name))
                .with_context(|| format!("moving {} into {}", f.name, out_dir.display()))?;
        }
    }
    Ok((out_dir.join(manifest_name), sums))
}

/// Write a new file in the output's temporary directory, world-readable,
/// its bytes on disk before it is renamed into the output directory. No
/// temporary name and no fsync of the directory, as [`write_atomic`] has:
/// the directory is this build's own, and the entry is renamed out of it.
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let write = || -> std::io::Result<()> {
        let mut f = File::create_new(path)?;
        f.write_all(data)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Move `src` to `dest`, atomically replacing what is there.
///
/// An existing `dest` is exchanged with `src` (renameat2(2)
/// `RENAME_EXCHANGE`), then removed from `src`'s name: a plain rename over
/// an existing file makes ext4 write the new file's data out before it
/// returns (its auto_da_alloc heuristic for programs that never fsync,
/// ext4(5)), which for a freshly written image takes longer than the rest
/// of an app-only rebuild; the exchange is just as atomic and skips that.
/// Where there is nothing to exchange with, or the filesystem cannot
/// exchange, it is a plain rename.
fn replace(src: &Path, dest: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, src, AT_FDCWD, dest, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => std::fs::remove_file(src),
        Err(_) => std::fs::rename(src, dest),
    }
}

/// The directory of output stamps in the store.
pub fn outputs_dir(store: &Store) -> PathBuf {
    store.layout().dir(Area::Outputs)
}

/// What identifies a file's state without reading it, as git's index
/// does: any write changes its ctime, which no user can set. Recorded in
/// `STORE/outputs/<sha256 of the absolute path>` for each image file kiln
/// writes to an output directory.
#[derive(Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stamp {
    digest: String,
    /// The file's absolute path (its parent canonical), so `kiln gc` can
    /// find the output directories kiln wrote. Absent in stamps written
    /// before kiln recorded it: such a stamp never matches a file again.
    #[serde(default)]
    path: Option<PathBuf>,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The stamp of the file at `abs` (an absolute path, see [`absolute`]) holding `digest`.
    fn of(abs: &Path, digest: &str) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(abs).ok()?;
        Some(Stamp {
            digest: digest.to_string(),
            path: Some(abs.to_path_buf()),
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }

    /// Parse a stamp record.
    pub fn parse(bytes: &[u8]) -> serde_json::Result<Stamp> {
        serde_json::from_slice(bytes)
    }

    /// The image file it describes, when the stamp records it.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The record's file name for this stamp's path (`None` without a path).
    pub fn record_name(&self) -> Option<String> {
        self.path.as_deref().map(record_name)
    }

    /// Whether the file is still there, unchanged since kiln wrote it.
    pub fn is_current(&self) -> bool {
        self.path
            .as_deref()
            .is_some_and(|p| Stamp::of(p, &self.digest).as_ref() == Some(self))
    }
}

/// `path` made absolute through its parent's canonical path (the file
/// itself may be absent, and is never followed if it is a link).
fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(
        std::fs::canonicalize(path.parent().unwrap_or(Path::new(".")))?
            .join(path.file_name().unwrap_or_default()),
    )
}

/// The stamp record's file name for an absolute path: its sha256 in hex.
fn record_name(abs: &Path) -> String {
    crate::util::digest::Digest::of(abs.as_os_str().as_encoded_bytes()).hex()
}

/// Whether `path` still holds the image `digest` that kiln wrote there
/// (its stamp is unchanged since [`record_output`]).
pub fn up_to_date(store: &Store, path: &Path, digest: &str) -> bool {
    let Ok(abs) = absolute(path) else {
        return false;
    };
    let Ok(Some(text)) = store.read_record(&outputs_dir(store).join(record_name(&abs))) else {
        return false;
    };
    Stamp::parse(&text).is_ok_and(|s| Some(s) == Stamp::of(&abs, digest))
}

/// Remember that `path` (in an output directory) holds the image `digest`.
pub fn record_output(store: &Store, path: &Path, digest: &str) -> Result<()> {
    let abs = absolute(path)?;
    let Some(stamp) = Stamp::of(&abs, digest) else {
        return Ok(());
    };
    let dir = outputs_dir(store);
    std::fs::create_dir_all(&dir)?;
    write_atomic(
        &store.tmp_dir()?,
        &dir.join(record_name(&abs)),
        &serde_json::to_vec(&stamp)?,
    )
}

/// The data extents of a file as (offset, length), from SEEK_DATA/SEEK_HOLE.
fn data_extents(f: &File, len: u64) -> Vec<(u64, u64)> {
    use nix::unistd::{lseek, Whence};
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        // ENXIO: no data after pos.
        let data = lseek(f, pos as i64, Whence::SeekData).map_or(len, |o| o as u64);
        if data >= len {
            break;
        }
        let hole = lseek(f, data as i64, Whence::SeekHole).map_or(len, |o| (o as u64).min(len));
        out.push((data, hole - data));
        pos = hole;
    }
    out
}

/// sha256 of a file whose data lies in `extents` (zeros elsewhere).
fn hash_extents(f: &File, len: u64, extents: &[(u64, u64)]) -> std::io::Result<String> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK];
    let mut h = Sha256::new();
    let mut pos = 0u64;
    for &(off, n) in extents {
        hash_zeros(&mut h, off - pos);
        let mut at = off;
        while at < off + n {
            let k = ((off + n - at) as usize).min(CHUNK);
            f.read_exact_at(&mut buf[..k], at)?;
            h.update(&buf[..k]);
            at += k as u64;
        }
        pos = off + n;
    }
    hash_zeros(&mut h, len - pos);
    Ok(finish_digest(h))
}

/// Copy a (sparse) file, keeping its holes, and return the sha256 of its
/// bytes. The kernel copies (copy_file_range) while a second thread hashes.
pub fn copy_hashing(src: &Path, dst: &Path) -> Result<String> {
    copy(src, dst, true).map(|d| d.unwrap_or_default())
}

/// Copy a (sparse) file, keeping its holes.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<()> {
    copy(src, dst, false).map(drop)
}

/// The sha256 of a (sparse) file, reading only its data extents.
pub fn file_digest_sparse(path: &Path) -> Result<crate::util::digest::Digest> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let extents = data_extents(&f, len);
    let hex =
        hash_extents(&f, len, &extents).with_context(|| format!("reading {}", path.display()))?;
    crate::util::digest::Digest::parse(&hex).map_err(Into::into)
}

fn copy(src: &Path, dst: &Path, hash: bool) -> Result<Option<String>> {
    let from = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    copy_from(&from, src, dst, hash)
}

/// [`copy`] from a file already open (`src` names it in messages).
fn copy_from(from: &File, src: &Path, dst: &Path, hash: bool) -> Result<Option<String>> {
    let len = from.metadata()?.len();
    let extents = data_extents(from, len);
    let to = File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    to.set_len(len)?;
    std::thread::scope(|s| -> Result<Option<String>> {
        let hasher = hash.then(|| s.spawn(|| hash_extents(from, len, &extents)));
        for &(off, n) in &extents {
            copy_range(from, &to, off, n)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
        hasher
            .map(|h| {
                h.join()
                    .map_err(|_| crate::internal_err!("hashing thread panicked"))?
                    .with_context(|| format!("reading {}", src.display()))
            })
            .transpose()
    })
}

/// Copy `n` bytes at `off` of `from` to the same offset of `to`: with
/// copy_file_range(2) (in the kernel, or a reflink where the file system
/// shares extents), else, where the kernel cannot copy between the two
/// (EXDEV: another file system, e.g. an output directory on a tmpfs and the
/// store on disk; or a file system without it), through a buffer.
fn copy_range(from: &File, to: &File, off: u64, n: u64) -> std::io::Result<()> {
    use nix::errno::Errno;
    let shrank = || {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file shrank while it was copied",
        )
    };
    let (mut i, mut o) = (off as i64, off as i64);
    let end = off + n;
    while (i as u64) < end {
        let left = (end - i as u64) as usize;
        match nix::fcntl::copy_file_range(from, Some(&mut i), to, Some(&mut o), left) {
            Ok(0) => return Err(shrank()),
            Ok(_) => {}
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut buf = vec![0u8; (end - i as u64).min(1 << 20) as usize];
    let mut at = i as u64;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        let got = from.read_at(&mut buf[..want], at)?;
        if got == 0 {
            return Err(shrank());
        }
        to.write_all_at(&buf[..got], at)?;
        at += got as u64;
    }
    Ok(())
}

/// A cached image: its manifest and its file in the store.
pub struct CachedImage {
    /// The manifest recorded when it was built.
    pub manifest: Manifest,
    /// The image file in the store.
    pub file: PathBuf,
}

/// The directory of build records (image key → image digest) in the store.
pub fn builds_dir(store: &Store) -> PathBuf {
    store.layout().dir(Area::Builds)
}

fn build_record(store: &Store, key: &str) -> Result<PathBuf> {
    Ok(store.layout().entry(Area::Builds, &Digest::parse(key)?))
}

/// A build record, `STORE/builds/<image key>.json`. Its mtime is when a
/// build last used it (written when the image is assembled, touched when a
/// build finds it cached), which is how `kiln gc --keep-last` orders builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BuildRecord {
    /// The image digest.
    pub image: crate::util::digest::Digest,
}

/// The cached image for an image key, if the store still holds its file.
pub fn lookup(store: &Store, key: &str) -> Result<Option<CachedImage>> {
    let record = build_record(store, key)?;
    let Ok(Some(text)) = store.read_record(&record) else {
        return Ok(None);
    };
    let Ok(rec) = serde_json::from_slice::<BuildRecord>(&text) else {
        return Ok(None);
    };
    let image = rec.image.to_string();
    let Some(manifest) = store.image(&image)? else {
        return Ok(None);
    };
    let manifest: Manifest = match serde_json::from_slice(&manifest) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    let file = store.image_file(&image)?;
    let fits = std::fs::metadata(&file).is_ok_and(|m| m.len() == manifest.image.size);
    if fits {
        // Only the record's time changes: it says when a build last used it.
        if let Err(e) =
            File::open(&record).and_then(|f| f.set_modified(std::time::SystemTime::now()))
        {
            tracing::debug!(record = %record.display(), "cannot touch the build record: {e}");
        }
    }
    Ok(fits.then_some(CachedImage { manifest, file }))
}

/// Make the just-assembled image at `path` the store's cached file of
/// `digest` by a hard link, when the store is on the output directory's
/// file system (where it cannot be linked, [`remember`] copies it). Called before the file is renamed into the output directory
/// (its stamp, [`record_output`], is taken after the link, which changes
/// its ctime).
///
/// The output file and the store's copy are then one file. kiln never
/// writes an image once it is named (`kiln test` boots it behind an
/// overlay); one changed in place by someone else shows as a cached file
/// that no longer matches its digest, which every reuse checks
/// ([`copy_hashing`]: the image is then assembled again) and `kiln fsck`
/// reports.
pub fn share(store: &Store, digest: &str, path: &Path) {
    let Ok(dest) = store.image_file(digest) else {
        return;
    };
    // The file is complete, and a link appears whole: no scratch name.
    match std::fs::hard_link(path, &dest) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            tracing::debug!(image = %path.display(), "no hard link into the store ({e}): copying");
        }
        _ => {}
    }
}

/// A number for a scratch name of its own: the builds of one
/// `kiln build R1 R2` share the scratch directory and may remember their
/// images at once.
fn next_copy() -> u64 {
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Remember an assembled image named `name`: its file (copied into the
/// store unless [`share`] linked it) under its digest, and key → digest. Older cached files of the
/// same name beyond [`KEEP_PER_NAME`] are removed. (The build records the
/// manifest beside it; [`lookup`] finds the image only once both are there.)
///
/// The image is read from `file`, opened where it was written (`path`), so
/// the copy may run while the file is renamed into the output directory.
pub fn remember(
    store: &Store,
    key: &str,
    name: &str,
    digest: &str,
    file: &File,
    path: &Path,
) -> Result<()> {
    let dest = store.image_file(digest)?;
    if !dest.exists() {
        // Not hashed again here: every reuse of the copy hashes it
        // (copy_hashing). Not created beforehand: copy_from makes it.
        let tmp = store.tmp_dir()?.join(format!("image-{}.raw", next_copy()));
        copy_from(file, path, &tmp, false)?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("renaming into {}", dest.display()))?;
    }
    let record = build_record(store, key)?;
    std::fs::create_dir_all(record.parent().unwrap_or(store.root()))?;
    write_atomic(
        &store.tmp_dir()?,
        &record,
        serde_json::to_string(&serde_json::json!({ "image": digest }))?.as_bytes(),
    )?;
    prune(store, name, digest)
}

/// Keep the newest [`KEEP_PER_NAME`] cached image files of `name` (`keep` among them).
fn prune(store: &Store, name: &str, keep: &str) -> Result<()> {
    let mut mine = Vec::new();
    // Never through a link: a link where `images/` belongs lists nothing.
    let Ok(list) = store.layout().list(Area::Images) else {
        return Ok(());
    };
    for e in list {
        let file = e.path;
        let Some(digest) = e.name.to_str().and_then(layout::image_file_digest) else {
            continue;
        };
        let digest = digest.to_string();
        if digest == keep {
            continue;
        }
        let is_mine = store
            .image(&digest)?
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            .is_some_and(|m| m.name == name);
        if let (true, Ok(md)) = (is_mine, std::fs::metadata(&file)) {
            mine.push((md.modified().ok(), file));
        }
    }
    mine.sort();
    let excess = (mine.len() + 1).saturating_sub(KEEP_PER_NAME);
    for (_, file) in mine.into_iter().take(excess) {
        std::fs::remove_file(&file).ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_record_their_path_and_old_ones_still_parse() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        store.init().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let file = out.join("hello-1.0.raw");
        std::fs::write(&file, b"image").unwrap();
        let digest = sha256_digest(b"image");
        record_output(&store, &file, &digest).unwrap();
        assert!(up_to_date(&store, &file, &digest));
        let records: Vec<_> = std::fs::read_dir(outputs_dir(&store))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let [record] = &records[..] else {
            panic!("one stamp: {records:?}")
        };
        let s = Stamp::parse(&std::fs::read(record).unwrap()).unwrap();
        let abs = std::fs::canonicalize(&out).unwrap().join("hello-1.0.raw");
        assert_eq!(s.path(), Some(abs.as_path()));
        assert_eq!(
            s.record_name().as_deref(),
            record.file_name().and_then(|n| n.to_str())
        );
        assert!(s.is_current());
        std::fs::write(&file, b"edited").unwrap();
        assert!(!s.is_current());
        assert!(!up_to_date(&store, &file, &digest));

        // A stamp written before stamps had a path parses, and matches nothing.
        let old = Stamp::parse(
            br#"{"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","dev":1,"ino":2,"size":3,"mtime_ns":4,"ctime_ns":5}"#,
        )
        .unwrap();
        assert_eq!((old.path(), old.record_name()), (None, None));
        assert!(!old.is_current());
    }

    #[test]
    fn sparse_digest_is_the_digest_of_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.set_len(3 << 20).unwrap();
        f.write_all_at(b"middle", 1 << 20).unwrap();
        drop(f);
        assert_eq!(
            file_digest_sparse(&p).unwrap(),
            crate::util::digest::Digest::of_file(&p).unwrap()
        );
    }

    #[test]
    fn copy_keeps_holes_and_hashes_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("sparse");
        let f = File::create(&src).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(&[7u8; 70000], 3 << 20).unwrap();
        f.write_all_at(b"end", (8 << 20) - 3).unwrap();
        drop(f);
        let dst = dir.path().join("copy");
        let d = copy_hashing(&src, &dst).unwrap();
        assert_eq!(d, crate::util::digest::file_digest(&src).unwrap());
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&dst).unwrap().blocks() * 512;
        assert!(
            blocks < 2 << 20,
            "the copy is not sparse: {blocks} bytes allocated"
        );
    }
}
