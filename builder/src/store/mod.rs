//! The content-addressed store (ARCHITECTURE.md "Content addressing").
//!
//! Its directories and their entries' names are declared in [`layout`]:
//! blobs ([`Store::read_blob`] checks each against its name), the key index
//! ([`KeyEntry`]), image manifests and cached image files (`build::output`),
//! memo entries (the store is a [`Memo`]), blob check stamps
//! ([`CheckStamp`]), verdicts ([`verdict`]), download caches and scratch.
//! Nothing below the store's root is reached through a symbolic link
//! ([`layout::Layout::check`]): [`Store::init`] refuses a store whose
//! directories are links, and every record is read without following one.
//!
//! The store is append-only: files are written under a temporary name in
//! `tmp/`, fsynced, then renamed into place, and never modified afterwards
//! (cached image files may be removed, never changed).
//! Nothing is created in the store until a build has validated its inputs.

pub mod layout;
pub mod verdict;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fs::layer::sha256_digest;
use crate::util::digest::Digest;
use crate::util::error::EnvError;
use crate::util::memo::Memo;
use crate::util::scratch::{self, ScratchDir};
use layout::{Area, Layout};

/// The store's root and its layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// This process's scratch directory in `tmp/`, made on first use and
    /// removed when the last clone of the store is dropped.
    scratch: Arc<Mutex<Option<ScratchDir>>>,
}

/// What a blob file was when its content last hashed to its name:
/// `checked/<hex>`. A file that still matches it (same device, inode, size,
/// mtime and ctime) has not been written since, so [`Store::read_blob`]
/// need not hash it again; any write, rename, chmod or link changes the
/// ctime, which no one but root can set back. `kiln fsck` hashes every blob
/// regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl CheckStamp {
    /// The stamp of an open file.
    fn of(file: &File) -> Option<CheckStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(CheckStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether the file's last change is far enough in the past that a
    /// change now would show in its times, even on a file system that keeps
    /// them to the second (a stamp taken in the same second as a write
    /// could match the file after it).
    fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.settled_at(now)
    }

    fn settled_at(&self, now_ns: i128) -> bool {
        now_ns - self.ctime_ns.max(self.mtime_ns) > 2_000_000_000
    }
}

/// What the key index says about a built layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEntry {
    /// The layer key (`sha256:`).
    pub key: Digest,
    /// The blob digest (`sha256:`).
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Layer name.
    pub name: String,
    /// Layer kind.
    pub kind: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Uncompressed tar size.
    pub tar_size: u64,
    /// Debian packages that went into the layer.
    #[serde(default)]
    pub packages: Vec<crate::model::deb::DebPackage>,
    /// The layer's SOURCE_DATE_EPOCH (see `epoch.rs`).
    #[serde(default)]
    pub source_date_epoch: Option<i64>,
}

/// The default store location: `$KILN_STORE`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_STORE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("kiln");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/kiln")
}

/// The 64 hex digits of a digest: its file name in the store.
fn hex_of(digest: &str) -> Result<String> {
    Ok(Digest::parse(digest)?.hex())
}

/// Whether [`write_file`] may replace a file already at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Rename over it.
    Yes,
    /// Fail instead (published files and keys are written once).
    No,
}

/// Write `dest` atomically: `fill` writes a temporary file in `tmp_dir`,
/// which gets `mode`, is fsynced and renamed into place; then the directory
/// is fsynced. `dest` must be on the same filesystem as `tmp_dir`.
pub fn write_file(
    tmp_dir: &Path,
    dest: &Path,
    mode: u32,
    replace: Replace,
    fill: impl FnOnce(&mut File) -> Result<()>,
) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-tmp-")
        .tempfile_in(tmp_dir)
        .with_context(|| format!("creating a temporary file in {}", tmp_dir.display()))?;
    fill(tmp.as_file_mut()).with_context(|| format!("writing {}", tmp.path().display()))?;
    // tempfile makes files 0600 whatever the umask: give the one asked for.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    match replace {
        Replace::Yes => tmp
            .persist(dest)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", dest.display()))?,
        Replace::No => tmp
            .persist_noclobber(dest)
            .map_err(|e| e.error)
            .with_context(|| format!("{} already exists or cannot be created", dest.display()))?,
    };
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

/// Write `data` to `dest` atomically ([`write_file`]), world-readable,
/// replacing what is there.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    write_file(tmp_dir, dest, 0o644, Replace::Yes, |f| {
        f.write_all(data).map_err(Into::into)
    })
}

/// An exclusive flock(2) on `DIR/lock` (created if needed), held until the
/// returned file is dropped. `what` names the directory in errors.
pub fn lock_dir(dir: &Path, what: &str) -> Result<nix::fcntl::Flock<File>> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(layout::LOCK))
        .with_context(|| format!("opening {}/lock", dir.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| crate::env_err!("locking {what} {}: {e}", dir.display()))
}

impl Store {
    /// A handle on a store directory; nothing is created yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store {
            root: root.into(),
            scratch: Arc::default(),
        }
    }

    /// The store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's layout at its root.
    pub fn layout(&self) -> Layout<'_> {
        Layout::new(&self.root)
    }

    /// Create the layout if needed. Called only once inputs are validated.
    /// A store with a link where one of its directories belongs is refused
    /// (before anything is created through it): kiln follows none.
    pub fn init(&self) -> Result<()> {
        if let Some(e) = self.layout().linked_dirs().into_iter().next() {
            return Err(EnvError::new(format!(
                "store directory {e}; `kiln fsck --repair` removes it"
            ))
            .into());
        }
        for area in Area::MADE_AT_INIT {
            let p = self.layout().dir(area);
            fs::create_dir_all(&p).map_err(|e| {
                EnvError::new(format!(
                    "cannot create store directory {}: {e}",
                    p.display()
                ))
            })?;
        }
        // What killed kiln processes left in tmp/ (their locks died with them).
        let swept = scratch::sweep(&self.tmp_root(), false)?;
        if !swept.paths.is_empty() {
            tracing::info!(
                count = swept.paths.len(),
                bytes = swept.bytes,
                "removed the scratch of dead kiln processes in {}",
                self.tmp_root().display()
            );
        }
        Ok(())
    }

    /// Take the store's write lock (held until the returned file is dropped).
    pub fn lock(&self) -> Result<nix::fcntl::Flock<File>> {
        lock_dir(&self.root, "the store")
    }

    /// `STORE/tmp/`, where every kiln process using the store has its own
    /// scratch directory ([`ScratchDir`]).
    pub fn tmp_root(&self) -> PathBuf {
        self.layout().dir(Area::Tmp)
    }

    /// This process's temporary directory inside the store (the same
    /// filesystem as the blobs, so files written there are renamed into
    /// place), created on first use. A killed kiln's is swept by the next
    /// [`Store::init`] or `kiln gc`.
    pub fn tmp_dir(&self) -> Result<PathBuf> {
        let mut s = self
            .scratch
            .lock()
            .map_err(|_| crate::internal_err!("the store's scratch lock is poisoned"))?;
        if let Some(d) = s.as_ref() {
            return Ok(d.path().to_path_buf());
        }
        let d = ScratchDir::new_in(&self.tmp_root()).map_err(|e| {
            EnvError::new(format!(
                "cannot create a temporary directory in {}: {e:#}",
                self.tmp_root().display()
            ))
        })?;
        let path = d.path().to_path_buf();
        *s = Some(d);
        Ok(path)
    }

    /// Where blobs live: `blobs/sha256/`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.layout().dir(Area::Blobs)
    }

    /// Where the key index lives: `keys/`.
    pub fn keys_dir(&self) -> PathBuf {
        self.layout().dir(Area::Keys)
    }

    /// Where image manifests and cached image files live: `images/`.
    pub fn images_dir(&self) -> PathBuf {
        self.layout().dir(Area::Images)
    }

    /// Where memoised computations are recorded: `memo/`.
    pub fn memo_dir(&self) -> PathBuf {
        self.layout().dir(Area::Memo)
    }

    /// The download cache of .deb files (see `source::debian_tree`).
    pub fn deb_cache(&self) -> PathBuf {
        self.layout().dir(Area::Debs)
    }

    /// apt's package indexes kept between apt runs ([`crate::layers::aptlists`]).
    pub fn apt_lists(&self) -> PathBuf {
        self.layout().dir(Area::AptLists)
    }

    /// Path of a blob by digest.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.layout().entry(Area::Blobs, &Digest::parse(digest)?))
    }

    /// Whether a blob is present.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest)
            .is_ok_and(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }

    /// A record of the store (JSON, a memo entry), read without following
    /// a link ([`crate::util::record::read_record`], and no directory on the
    /// way a link); `None` when it is missing.
    pub fn read_record(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        self.layout().check(path)?;
        match crate::util::record::read_record(path) {
            Ok(b) => Ok(Some(b)),
            Err(crate::util::record::ReadError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    /// Open a blob file for reading, not through a link.
    fn open_blob(&self, path: &Path) -> Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        self.layout().check(path)?;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("reading blob {}", path.display()))
    }

    /// Add a blob; returns its digest. An existing blob is left untouched.
    pub fn put_blob(&self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            write_atomic(&self.tmp_dir()?, &path, data)?;
        }
        Ok(digest)
    }

    /// Add a blob written to a scratch file in [`Store::tmp_dir`] (a layer
    /// fetched from a registry cache): hashed once more, fsynced and
    /// renamed into place, never read into memory; `digest` is what it must
    /// hash to. An existing blob is left untouched (and the file dropped).
    pub fn put_blob_file(&self, file: tempfile::NamedTempFile, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        let actual = Digest::of_file(file.path())
            .with_context(|| format!("reading {}", file.path().display()))?;
        if actual.to_string() != digest {
            bail!(
                "{}: it hashes to {actual}, not {digest}",
                file.path().display()
            );
        }
        if path.exists() {
            return Ok(());
        }
        file.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        file.as_file().sync_all()?;
        file.persist_noclobber(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming into {}", path.display()))?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        Ok(())
    }

    /// Read a blob, checking that its content matches its name.
    pub fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        self.with_blob(digest, |_| Ok(())).map(|(data, ())| data)
    }

    /// Read a blob and run `f` on it while a second thread checks that its
    /// content matches its name; `f`'s result counts only if it does.
    pub fn with_blob<T: Send>(
        &self,
        digest: &str,
        f: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<(Vec<u8>, T)> {
        let path = self.blob_path(digest)?;
        let mut data = Vec::new();
        self.open_blob(&path)?
            .read_to_end(&mut data)
            .with_context(|| format!("reading blob {}", path.display()))?;
        let (actual, out) = std::thread::scope(|s| {
            let h = s.spawn(|| sha256_digest(&data));
            let out = f(&data);
            (h.join(), out)
        });
        let actual = actual.map_err(|_| crate::internal_err!("hashing thread panicked"))?;
        if actual != digest {
            bail!(crate::util::error::check_failed(format!(
                "store blob {} is corrupt: its content hashes to {actual}",
                path.display()
            )));
        }
        Ok((data, out?))
    }

    /// Run `f` on a reader of a blob while a second thread reads the file
    /// again and checks that its content matches its name; `f`'s result
    /// counts only if it does. Unlike [`Store::with_blob`], the blob is
    /// never held in memory whole (a base layer's is tens of MB, all of it
    /// fresh memory to fault in); both read the page cache in small pieces.
    ///
    /// The file's [`CheckStamp`] is recorded once it checks out, and a file
    /// whose stamp still matches is not hashed again (the caller holds the
    /// store's lock: stamps are written only then).
    pub fn read_blob<T: Send>(
        &self,
        digest: &str,
        f: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let path = self.blob_path(digest)?;
        let open = || self.open_blob(&path);
        // Both opened before either reads: they are the same file.
        let (mut file, check) = (open()?, open()?);
        let stamp = CheckStamp::of(&file);
        if stamp.is_some() && self.check_stamp(digest) == stamp {
            return f(&mut file);
        }
        let (actual, out) = std::thread::scope(|s| {
            let h = s.spawn(|| Digest::of_reader(check));
            let out = f(&mut file);
            (h.join(), out)
        });
        let actual = actual
            .map_err(|_| crate::internal_err!("hashing thread panicked"))?
            .with_context(|| format!("reading blob {}", path.display()))?
            .to_string();
        if actual != digest {
            bail!(crate::util::error::check_failed(format!(
                "store blob {} is corrupt: its content hashes to {actual}",
                path.display()
            )));
        }
        if let Some(stamp) = stamp.filter(CheckStamp::settled) {
            let record = self.check_stamps_dir().join(hex_of(digest)?);
            let written = fs::create_dir_all(self.check_stamps_dir())
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    write_atomic(&self.tmp_dir()?, &record, &serde_json::to_vec(&stamp)?)
                });
            if let Err(e) = written {
                tracing::debug!(record = %record.display(), "cannot record the blob's check: {e:#}");
            }
        }
        out
    }

    /// Where blob check stamps live: `checked/` ([`CheckStamp`]).
    pub fn check_stamps_dir(&self) -> PathBuf {
        self.layout().dir(Area::Checked)
    }

    /// The stamp recorded when the blob `digest` last checked out, if any.
    fn check_stamp(&self, digest: &str) -> Option<CheckStamp> {
        let record = self.check_stamps_dir().join(hex_of(digest).ok()?);
        let bytes = self.read_record(&record).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    fn key_path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.layout().entry(Area::Keys, &Digest::parse(key)?))
    }

    /// Look a layer key up in the index. An entry whose blob is gone counts as absent.
    pub fn lookup_key(&self, key: &str) -> Result<Option<KeyEntry>> {
        let path = self.key_path(key)?;
        let Some(bytes) = self.read_record(&path)? else {
            return Ok(None);
        };
        let entry: KeyEntry = crate::util::record::parse_json(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        Ok(self.has_blob(&entry.digest.to_string()).then_some(entry))
    }

    /// Record key → digest. The entry is immutable once written.
    pub fn record_key(&self, entry: &KeyEntry) -> Result<()> {
        let path = self.key_path(&entry.key.to_string())?;
        if !path.exists() {
            write_atomic(&self.tmp_dir()?, &path, &serde_json::to_vec_pretty(entry)?)?;
        }
        Ok(())
    }

    /// All key-index entries.
    pub fn key_entries(&self) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        for e in self.layout().list(Area::Keys)? {
            if e.name().is_some_and(|n| n.ends_with(layout::JSON)) {
                let Some(bytes) = self.read_record(&e.path)? else {
                    continue;
                };
                out.push(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("parsing {}", e.path.display()))?,
                );
            }
        }
        out.sort_by(|a: &KeyEntry, b| (&a.name, &a.key).cmp(&(&b.name, &b.key)));
        Ok(out)
    }

    /// Record an image manifest under its image digest.
    pub fn record_image(&self, digest: &str, manifest: &[u8]) -> Result<()> {
        let path = self.image_manifest(digest)?;
        if !path.exists() {
            write_atomic(&self.tmp_dir()?, &path, manifest)?;
        }
        Ok(())
    }

    /// All image manifests in the store, by digest.
    pub fn images(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for e in self.layout().list(Area::Images)? {
            if let Some(digest) = e.name().and_then(|n| Area::Images.digest_of(n)) {
                if let Some(bytes) = self.read_record(&e.path)? {
                    out.push((digest.to_string(), bytes));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Where the store keeps an image's file (see `output.rs`).
    pub fn image_file(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.layout().image_file(&Digest::parse(digest)?))
    }

    /// Where the store keeps an image's manifest.
    pub fn image_manifest(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.layout().entry(Area::Images, &Digest::parse(digest)?))
    }

    /// The manifest of an image digest, if recorded.
    pub fn image(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        self.read_record(&self.image_manifest(digest)?)
    }
}

/// The output is kept as a blob, named under `memo/<sha256(kind, 0, input)>`.
impl Memo for Store {
    fn memo(&self, kind: &str, input: &[u8], f: &dyn Fn() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(kind.as_bytes());
        h.update([0u8]);
        h.update(input);
        let record = self.layout().entry(Area::Memo, &Digest::finish(h));
        if let Ok(Some(bytes)) = self.read_record(&record) {
            let digest = String::from_utf8_lossy(&bytes);
            if self.has_blob(digest.trim()) {
                return self.get_blob(digest.trim());
            }
        }
        let out = f()?;
        let digest = self.put_blob(&out)?;
        fs::create_dir_all(self.memo_dir())?;
        write_atomic(&self.tmp_dir()?, &record, digest.as_bytes())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`Store::read_blob`] gives a reader that takes it all.
    fn read(r: &mut dyn Read) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    /// A store made in a fresh directory (kept alive with it).
    fn fresh() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().join("store"));
        s.init().unwrap();
        (dir, s)
    }

    #[test]
    fn blobs_are_content_addressed_and_checked() {
        let (dir, s) = fresh();
        let d = s.put_blob(b"hello").unwrap();
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.get_blob(&d).unwrap(), b"hello");
        assert_eq!(s.read_blob(&d, read).unwrap(), b"hello");
        // Corrupt it behind the store's back: reading must notice.
        let p = s.blob_path(&d).unwrap();
        fs::write(&p, b"jello").unwrap();
        let e = s.get_blob(&d).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        let e = s.read_blob(&d, read).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        // Nothing left in this process's scratch, which goes with the store.
        assert_eq!(fs::read_dir(s.tmp_dir().unwrap()).unwrap().count(), 0);
        drop(s);
        assert_eq!(
            fs::read_dir(dir.path().join("store/tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_checked_blob_is_not_hashed_again_until_its_file_changes() {
        let (_dir, s) = fresh();
        let d = s.put_blob(b"layer bytes").unwrap();
        let record = s.check_stamps_dir().join(hex_of(&d).unwrap());
        // Just written: a change within the same second could keep its
        // times, so the check is not recorded yet.
        assert_eq!(s.read_blob(&d, read).unwrap(), b"layer bytes");
        assert!(!record.exists());
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(s.read_blob(&d, read).unwrap(), b"layer bytes");
        let file = File::open(s.blob_path(&d).unwrap()).unwrap();
        assert_eq!(s.check_stamp(&d), CheckStamp::of(&file));
        // Written in place (same length): the stamp no longer matches, the
        // file is hashed, and the damage is found.
        fs::OpenOptions::new()
            .write(true)
            .open(s.blob_path(&d).unwrap())
            .unwrap()
            .write_all(b"LAYER")
            .unwrap();
        assert_ne!(s.check_stamp(&d), CheckStamp::of(&file));
        let e = s.read_blob(&d, read).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }

    #[test]
    fn a_stamp_is_settled_two_seconds_after_the_last_change() {
        let t = 1_700_000_000_000_000_000i128;
        let stamp = CheckStamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: t,
            ctime_ns: t + 500_000_000,
        };
        assert!(!stamp.settled_at(t + 1_000_000_000));
        assert!(!stamp.settled_at(t + 2_500_000_000));
        assert!(stamp.settled_at(t + 2_600_000_000));
    }

    #[test]
    fn a_store_with_a_linked_directory_is_refused_and_never_read_through() {
        let (dir, s) = fresh();
        let d = s.put_blob(b"layer").unwrap();
        let key = format!("sha256:{}", "cd".repeat(32));
        s.record_key(&KeyEntry {
            key: key.parse().unwrap(),
            digest: d.parse().unwrap(),
            diff_id: d.parse().unwrap(),
            name: "x".into(),
            kind: "app".into(),
            size: 5,
            tar_size: 5,
            packages: vec![],
            source_date_epoch: None,
        })
        .unwrap();
        // `keys/` moved away and replaced by a link to it.
        let away = dir.path().join("away");
        fs::rename(s.keys_dir(), &away).unwrap();
        std::os::unix::fs::symlink(&away, s.keys_dir()).unwrap();
        let e = s.init().unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("{}: is a symbolic link", s.keys_dir().display())),
            "{e}"
        );
        assert!(s.lookup_key(&key).is_err());
        assert!(s.key_entries().is_err());
        // `blobs/` likewise: the blob is not read through it.
        let away = dir.path().join("blobs-away");
        fs::rename(s.root().join("blobs"), &away).unwrap();
        std::os::unix::fs::symlink(&away, s.root().join("blobs")).unwrap();
        assert!(s.get_blob(&d).is_err());
        assert!(s.read_blob(&d, read).is_err());
    }

    #[test]
    fn key_index_needs_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        s.init().unwrap();
        let d = s.put_blob(b"layer").unwrap();
        let key = format!("sha256:{}", "ab".repeat(32));
        let e = KeyEntry {
            key: key.parse().unwrap(),
            digest: d.parse().unwrap(),
            diff_id: d.parse().unwrap(),
            name: "x".into(),
            kind: "app".into(),
            size: 5,
            tar_size: 5,
            packages: vec![],
            source_date_epoch: Some(1_700_000_000),
        };
        assert_eq!(s.lookup_key(&key).unwrap(), None);
        s.record_key(&e).unwrap();
        assert_eq!(s.lookup_key(&key).unwrap(), Some(e));
        fs::remove_file(s.blob_path(&d).unwrap()).unwrap();
        assert_eq!(s.lookup_key(&key).unwrap(), None);
    }

    #[test]
    fn memo_runs_once_per_input() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        s.init().unwrap();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let f = || {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(b"out".to_vec())
        };
        assert_eq!(s.memo("k", b"in", &f).unwrap(), b"out");
        assert_eq!(s.memo("k", b"in", &f).unwrap(), b"out");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        s.memo("k", b"other", &f).unwrap();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A failing computation leaves no entry behind.
        let fails = || anyhow::bail!("no");
        assert!(s.memo("k", b"third", &fails).is_err());
        assert_eq!(s.memo("k", b"third", &f).unwrap(), b"out");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn digests_are_checked_before_they_become_paths() {
        let s = Store::new("/nonexistent");
        for bad in ["sha256:../../etc/passwd", "sha256:", "", "sha256:AB"] {
            assert!(s.blob_path(bad).is_err(), "{bad}");
            assert!(s.image(bad).is_err(), "{bad}");
        }
    }
}
