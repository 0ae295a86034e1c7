//! `kiln fsck`: check that every file in a store is what its name says and
//! that every record points at something present and well-formed.
//!
//! Content-addressed files are hashed again: blobs (`blobs/sha256/<hex>`),
//! cached images (`images/<hex>.raw`, only their data extents read) and
//! .debs (against the sha256 the layers that used them recorded, when one
//! did). Records are parsed, at most [`MAX_RECORD`](super::MAX_RECORD) bytes
//! each: key entries (named by their key, their blob present and a layer
//! every build can use: it unpacks within the tar size the entry records
//! and passes [`crate::fs::tree::Tree::check_layer`]), manifests
//! (named by their image digest), build records (their manifest present),
//! output stamps, memo entries and blob check stamps (their blob present), verdicts (in the
//! directory of their image digest) and every release store's channel
//! entries (their release directory holds a manifest of that digest, an
//! image file with that sha256, and a `.minisig` beside every file).
//! A symbolic link anywhere in the store is a problem, `tmp/` and the
//! store's top level included, and none is followed: every directory is
//! read through the store's layout ([`crate::store::layout::Layout`]), which
//! opens it without following a link on the way; `--repair` removes the
//! link itself, never what it points at.
//!
//! Each problem is one line, `PATH: what is wrong`. `--repair` removes the
//! store entries at fault (never anything in a release store: those are
//! reported only), so the next build recreates them, then checks again,
//! until a check finds nothing more to remove (removing a corrupt blob
//! leaves the key entries naming it dangling, and they go next). The
//! report is that last check: after a repair the store is healthy unless a
//! problem could not be repaired.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::{channel_files, contained, hex_name, read_record, remove_path};
use crate::build::output::{file_digest_sparse, BuildRecord, Stamp};
use crate::model::deb::{deb_file_name, parse_deb_filename};
use crate::model::manifest::Manifest;
use crate::publish::release::{self, Releases};
use crate::publish::sign::sig_path;
use crate::store::layout::{image_file_digest, Area};
use crate::store::verdict::Verdict;
use crate::store::{KeyEntry, Store};
use crate::util::digest::Digest;
use crate::util::walk::{DirEntry, Kind, WalkError};

/// What fsck says of a symbolic link.
const LINK: &str = "is a symbolic link (kiln never writes one, nor follows one)";

/// Checks `--repair` runs at most (each removal can leave a reference to
/// the removed file dangling: blob → key entry; manifest → build record).
const MAX_ROUNDS: usize = 4;

/// What `kiln fsck` checks and whether it repairs.
#[derive(Debug, Clone)]
pub struct FsckOptions {
    /// Remove the store entries at fault.
    pub repair: bool,
    /// The release stores to check.
    pub releases: Vec<Releases>,
}

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
    /// Whether `--repair` removes it (never for a release store, nor for a
    /// file kiln cannot read).
    pub repairable: bool,
}

/// How many entries of each kind were checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Layer blobs, hashed.
    pub blobs: usize,
    /// Key-index entries.
    pub keys: usize,
    /// Image manifests.
    pub manifests: usize,
    /// Cached image files, hashed.
    pub images: usize,
    /// Build records.
    pub builds: usize,
    /// Output stamps.
    pub outputs: usize,
    /// Memo entries.
    pub memo: usize,
    /// Check stamps of blobs.
    pub checked: usize,
    /// Verdicts.
    pub verdicts: usize,
    /// .deb files (hashed when a layer recorded their sha256).
    pub debs: usize,
    /// Channel entries of the release stores.
    pub releases: usize,
}

/// What `kiln fsck --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// The store.
    pub store: PathBuf,
    /// What the last check covered.
    pub checked: Checked,
    /// What the last check found.
    pub problems: Vec<Problem>,
    /// What `--repair` removed, with what was wrong with it.
    pub repaired: Vec<Problem>,
}

impl FsckReport {
    /// Whether the last check found nothing wrong.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check `store` (and the release stores), repairing on request. A store
/// that does not exist is empty, hence healthy.
pub fn fsck(store: &Store, opts: &FsckOptions) -> Result<FsckReport> {
    let mut report = FsckReport {
        store: store.root().to_path_buf(),
        checked: Checked::default(),
        problems: Vec::new(),
        repaired: Vec::new(),
    };
    if !store.root().is_dir() {
        return Ok(report);
    }
    // No build writes while the store is checked. A store kiln cannot lock
    // (read-only) can still be checked, not repaired.
    let _lock = match store.lock() {
        Ok(l) => Some(l),
        Err(e) if !opts.repair => {
            tracing::warn!("checking without the store's lock: {e:#}");
            None
        }
        Err(e) => return Err(e),
    };
    let mut failed = BTreeSet::new();
    for round in 0.. {
        let c = check(store, &opts.releases);
        report.checked = c.checked;
        report.problems = c.problems;
        if !opts.repair || round == MAX_ROUNDS {
            break;
        }
        let fix: Vec<Problem> = report
            .problems
            .iter()
            .filter(|p| p.repairable && !failed.contains(&p.path))
            .cloned()
            .collect();
        if fix.is_empty() {
            break;
        }
        for p in fix {
            match remove_path(&p.path) {
                Ok(()) => report.repaired.push(p),
                Err(e) => {
                    tracing::warn!(path = %p.path.display(), "cannot remove: {e}");
                    failed.insert(p.path);
                }
            }
        }
    }
    Ok(report)
}

/// One check of everything.
#[derive(Default)]
struct Checker {
    checked: Checked,
    problems: Vec<Problem>,
    /// The sha256s layers recorded for each .deb file name.
    debs: BTreeMap<String, BTreeSet<Digest>>,
}

fn check(store: &Store, releases: &[Releases]) -> Checker {
    let mut c = Checker::default();
    c.links(store);
    c.blobs(store);
    c.keys(store);
    c.images(store);
    c.builds(store);
    c.outputs(store);
    c.memo(store);
    c.check_stamps(store);
    c.verdicts(store);
    c.debs(store);
    let mut seen = BTreeSet::new();
    for rel in releases {
        if seen.insert(rel.root().to_path_buf()) {
            c.releases(rel);
        }
    }
    c
}

impl Checker {
    fn problem(&mut self, path: &Path, problem: impl Into<String>, repairable: bool) {
        // A link met twice (at the top level and as an area) is one problem.
        if self.problems.iter().any(|p| p.path == path) {
            return;
        }
        self.problems.push(Problem {
            path: path.to_path_buf(),
            problem: problem.into(),
            repairable,
        });
    }

    /// The entries a walk found, links reported and left out: `None` (and
    /// a problem) when the directory itself, or one on the way to it, is a
    /// link, not a directory, or unreadable; no entries when it is missing.
    fn walked(
        &mut self,
        walk: Result<Vec<DirEntry>, WalkError>,
        repairable: bool,
    ) -> Option<Vec<DirEntry>> {
        let list = match walk {
            Ok(l) => l,
            Err(WalkError::Link(p)) => {
                self.problem(&p, LINK, repairable);
                return None;
            }
            Err(WalkError::NotDir(p)) => {
                self.problem(&p, "is not a directory", repairable);
                return None;
            }
            Err(WalkError::Io(p, e)) => {
                self.problem(&p, format!("cannot be read: {e}"), false);
                return None;
            }
        };
        let (links, rest): (Vec<_>, Vec<_>) =
            list.into_iter().partition(|e| e.kind == Kind::Symlink);
        for l in links {
            self.problem(&l.path, LINK, repairable);
        }
        Some(rest)
    }

    /// A directory outside the store (a release store), itself not followed.
    fn list(&mut self, dir: &Path, repairable: bool) -> Option<Vec<DirEntry>> {
        let walk = crate::util::walk::entries(dir);
        self.walked(walk, repairable)
    }

    /// [`Checker::list`], with nothing to list when it is `None`.
    fn list_or_none(&mut self, dir: &Path, repairable: bool) -> Vec<DirEntry> {
        self.list(dir, repairable).unwrap_or_default()
    }

    /// An area of the store (the walk gc shares), links reported.
    fn area(&mut self, store: &Store, area: Area) -> Vec<DirEntry> {
        let walk = store.layout().list(area);
        self.walked(walk, true).unwrap_or_default()
    }

    /// Links where kiln keeps no records of its own to check: the store's
    /// top level, `tmp/` (the scratch entries of the living are theirs),
    /// the download caches and prepared firmware.
    fn links(&mut self, store: &Store) {
        // A link there is reported with the release store, not removed.
        let releases = store.layout().list(Area::Releases).map(|_| Vec::new());
        self.walked(releases, false);
        let top = store.layout().top();
        self.walked(top, true);
        for area in [Area::Tmp, Area::AptLists, Area::Firmware] {
            self.area(store, area);
        }
    }

    /// Read and parse a record; a problem (and `None`) when that fails.
    fn record<T: serde::de::DeserializeOwned>(&mut self, path: &Path, what: &str) -> Option<T> {
        let bytes = match read_record(path) {
            Ok(b) => b,
            Err(e) => {
                let repairable = e.is_bad_content();
                self.problem(path, e.to_string(), repairable);
                return None;
            }
        };
        match crate::util::record::parse_json(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(path, format!("is not {what}: {e}"), true);
                None
            }
        }
    }

    /// Hash a content-addressed file against the digest it is named by.
    fn rehash(&mut self, path: &Path, want: Digest, sparse: bool) {
        let got = if sparse {
            file_digest_sparse(path)
        } else {
            Digest::of_file(path)
        };
        match got {
            Ok(got) if got == want => {}
            Ok(got) => self.problem(
                path,
                format!("its content hashes to {got}, not {want}"),
                true,
            ),
            Err(e) => self.problem(path, format!("cannot be read: {e:#}"), false),
        }
    }

    fn blobs(&mut self, store: &Store) {
        for e in self.area(store, Area::Blobs) {
            self.checked.blobs += 1;
            let Some(d) = e.name().and_then(hex_name) else {
                self.problem(&e.path, "is not named by a sha256 digest", true);
                continue;
            };
            if e.kind != Kind::File {
                self.problem(&e.path, "is not a regular file", true);
                continue;
            }
            self.rehash(&e.path, d, false);
        }
    }

    fn keys(&mut self, store: &Store) {
        for e in self.area(store, Area::Keys) {
            self.checked.keys += 1;
            let Some(name) = e.name().and_then(|n| Area::Keys.digest_of(n)) else {
                self.problem(&e.path, "is not named <key hex>.json", true);
                continue;
            };
            let Some(entry) = self.record::<KeyEntry>(&e.path, "a key-index entry") else {
                continue;
            };
            for p in &entry.packages {
                if let Some(d) = p.sha256 {
                    let file = deb_file_name(&p.name, &p.version, &p.architecture);
                    self.debs.entry(file).or_default().insert(d);
                }
            }
            if entry.key != name {
                let k = entry.key;
                self.problem(
                    &e.path,
                    format!("records key {k}, not the one it is named by"),
                    true,
                );
            }
            if blob_present(store, entry.digest) {
                self.layer(&e.path, store, entry.digest, &entry);
            } else {
                let d = entry.digest;
                self.problem(&e.path, format!("its blob {d} is missing"), true);
            }
        }
    }

    /// The layer of a key entry, unpacked (its blob was hashed by
    /// [`Checker::blobs`]): one no build can use, such as one a registry
    /// cache gave an older kiln, is a problem of the entry (removing it has
    /// the next build make the layer again).
    fn layer(&mut self, path: &Path, store: &Store, d: Digest, entry: &KeyEntry) {
        let blob = store.blobs_dir().join(d.hex());
        if self.problems.iter().any(|p| p.path == blob) {
            // A corrupt blob is one problem, reported as such.
            return;
        }
        let checked = std::fs::File::open(&blob)
            .map_err(anyhow::Error::from)
            .and_then(|f| crate::fs::layer::unpack_within(f, entry.tar_size))
            .and_then(|t| t.check_layer().map_err(anyhow::Error::from));
        if let Err(err) = checked {
            let problem = format!("its layer {d} ({}) is not usable: {err:#}", entry.name);
            self.problem(path, problem, true);
        }
    }

    fn images(&mut self, store: &Store) {
        for e in self.area(store, Area::Images) {
            let name = e.name().unwrap_or_default();
            if let Some(d) = Area::Images.digest_of(name) {
                self.checked.manifests += 1;
                let Some(m) = self.record::<Manifest>(&e.path, "an image manifest") else {
                    continue;
                };
                let got = m.image.digest;
                if got != d {
                    self.problem(
                        &e.path,
                        format!("describes image {got}, not the one it is named by"),
                        true,
                    );
                }
            } else if let Some(d) = image_file_digest(name) {
                self.checked.images += 1;
                if e.kind != Kind::File {
                    self.problem(&e.path, "is not a regular file", true);
                } else if !is_file(&store.layout().entry(Area::Images, &d)) {
                    self.problem(&e.path, "is a cached image without a manifest", true);
                } else {
                    self.rehash(&e.path, d, true);
                }
            } else {
                self.problem(
                    &e.path,
                    "is neither <digest hex>.json nor <digest hex>.raw",
                    true,
                );
            }
        }
    }

    fn builds(&mut self, store: &Store) {
        for e in self.area(store, Area::Builds) {
            self.checked.builds += 1;
            if e.name().and_then(|n| Area::Builds.digest_of(n)).is_none() {
                self.problem(&e.path, "is not named <image key hex>.json", true);
                continue;
            }
            let Some(rec) = self.record::<BuildRecord>(&e.path, "a build record") else {
                continue;
            };
            if !is_file(&store.layout().entry(Area::Images, &rec.image)) {
                self.problem(
                    &e.path,
                    format!("the manifest of its image {} is missing", rec.image),
                    true,
                );
            }
        }
    }

    fn outputs(&mut self, store: &Store) {
        for e in self.area(store, Area::Outputs) {
            self.checked.outputs += 1;
            if e.name().and_then(hex_name).is_none() {
                self.problem(&e.path, "is not named by the sha256 of a path", true);
                continue;
            }
            let Some(s) = self.record::<Stamp>(&e.path, "an output stamp") else {
                continue;
            };
            if let (Some(n), Some(p)) = (s.record_name(), s.path()) {
                if Some(n.as_str()) != e.name() {
                    let why = format!("is the stamp of {}, whose stamp is named {n}", p.display());
                    self.problem(&e.path, why, true);
                }
            }
        }
    }

    /// `checked/<hex>`: each parses and its blob is there (every blob is
    /// hashed above whatever its stamp says).
    fn check_stamps(&mut self, store: &Store) {
        for e in self.area(store, Area::Checked) {
            self.checked.checked += 1;
            let Some(d) = e.name().and_then(hex_name) else {
                self.problem(&e.path, "is not named by a sha256 digest", true);
                continue;
            };
            if self
                .record::<crate::store::CheckStamp>(&e.path, "a blob check stamp")
                .is_some()
                && !blob_present(store, d)
            {
                self.problem(&e.path, format!("its blob {d} is missing"), true);
            }
        }
    }

    fn memo(&mut self, store: &Store) {
        for e in self.area(store, Area::Memo) {
            self.checked.memo += 1;
            if e.name().and_then(hex_name).is_none() {
                self.problem(&e.path, "is not named by a sha256 digest", true);
                continue;
            }
            let bytes = match read_record(&e.path) {
                Ok(b) => b,
                Err(err) => {
                    self.problem(&e.path, err.to_string(), err.is_bad_content());
                    continue;
                }
            };
            match Digest::parse(String::from_utf8_lossy(&bytes).trim()) {
                Ok(d) if blob_present(store, d) => {}
                Ok(d) => self.problem(&e.path, format!("its blob {d} is missing"), true),
                Err(err) => self.problem(&e.path, err.to_string(), true),
            }
        }
    }

    fn verdicts(&mut self, store: &Store) {
        for dir in self.area(store, Area::Verdicts) {
            let Some(d) = dir
                .name()
                .and_then(hex_name)
                .filter(|_| dir.kind == Kind::Dir)
            else {
                self.problem(
                    &dir.path,
                    "is not a directory named by an image digest",
                    true,
                );
                continue;
            };
            let rel = Path::new(Area::Verdicts.dir()).join(&dir.name);
            let walk = store.layout().list_below(&rel);
            for e in self.walked(walk, true).unwrap_or_default() {
                self.checked.verdicts += 1;
                let numbered = e
                    .name()
                    .and_then(|n| n.strip_suffix(".json"))
                    .is_some_and(|n| n.parse::<u64>().is_ok());
                if !numbered {
                    self.problem(&e.path, "is not named <n>.json", true);
                    continue;
                }
                let Some(v) = self.record::<Verdict>(&e.path, "a verdict") else {
                    continue;
                };
                if v.image_digest != d {
                    self.problem(
                        &e.path,
                        format!(
                            "is a verdict on {}, not on the image it is filed under",
                            v.image_digest
                        ),
                        true,
                    );
                }
            }
        }
    }

    fn debs(&mut self, store: &Store) {
        for e in self.area(store, Area::Debs) {
            // apt's own: its lock and its partial downloads.
            let Some(name) = e.name().filter(|n| n.ends_with(".deb")) else {
                continue;
            };
            self.checked.debs += 1;
            if parse_deb_filename(name).is_none() || e.kind != Kind::File {
                self.problem(
                    &e.path,
                    "is not a .deb file named NAME_VERSION_ARCH.deb",
                    true,
                );
                continue;
            }
            let Some(want) = self.debs.get(name).cloned() else {
                continue;
            };
            match Digest::of_file(&e.path) {
                Ok(got) if want.contains(&got) => {}
                Ok(got) => {
                    let want: Vec<String> = want.iter().map(Digest::to_string).collect();
                    let why = format!(
                        "its content hashes to {got}, not {} as the layers that used it recorded",
                        want.join(" or ")
                    );
                    self.problem(&e.path, why, true);
                }
                Err(err) => self.problem(&e.path, format!("cannot be read: {err:#}"), false),
            }
        }
    }

    /// A release store: reported, never repaired.
    fn releases(&mut self, rel: &Releases) {
        if self.list(rel.root(), false).is_none() || self.list(&rel.channels_dir(), false).is_none()
        {
            return;
        }
        let files = match channel_files(rel) {
            Ok(f) => f,
            Err(e) => {
                self.problem(&rel.channels_dir(), format!("cannot be read: {e}"), false);
                return;
            }
        };
        let mut dirs: BTreeMap<PathBuf, Digest> = BTreeMap::new();
        for f in files {
            self.checked.releases += 1;
            let e = match f.entry {
                Ok(e) => e,
                Err(why) => {
                    self.problem(&f.path, why, false);
                    continue;
                }
            };
            let mut wrong = Vec::new();
            if e.schema != release::SCHEMA {
                wrong.push(format!("schema {:?}, not {:?}", e.schema, release::SCHEMA));
            }
            if f.seq != Some(e.seq) {
                wrong.push(format!("seq {} does not match its file name", e.seq));
            }
            if e.channel != f.channel {
                wrong.push(format!(
                    "channel {:?} does not match its directory",
                    e.channel
                ));
            }
            let digest = Some(e.digest);
            let dir = match contained(&e.path) {
                None => {
                    wrong.push(format!(
                        "path {:?} is not a directory inside the release store",
                        e.path
                    ));
                    None
                }
                Some(p) => match first_link(rel.root(), p) {
                    Some(link) => {
                        wrong.push(format!(
                            "its release directory passes through a symbolic link, {}",
                            link.display()
                        ));
                        None
                    }
                    None => Some(rel.root().join(p)),
                },
            };
            for w in wrong {
                self.problem(&f.path, w, false);
            }
            let (Some(d), Some(dir)) = (digest, dir) else {
                continue;
            };
            match dirs.get(&dir) {
                Some(seen) if *seen == d => {}
                Some(seen) => self.problem(
                    &f.path,
                    format!("names {d}, but {} holds {seen}", dir.display()),
                    false,
                ),
                None => {
                    dirs.insert(dir.clone(), d);
                    self.release_dir(&f.path, &dir, &e.name, &e.version, d);
                }
            }
        }
    }

    /// A release directory: its manifest, its image and every signature.
    fn release_dir(&mut self, entry: &Path, dir: &Path, name: &str, version: &str, d: Digest) {
        if !dir.is_dir() {
            self.problem(
                entry,
                format!("its release directory {} is missing", dir.display()),
                false,
            );
            return;
        }
        let manifest = dir.join(release::manifest_name(name, version));
        let m = match read_record(&manifest) {
            Ok(b) => crate::util::record::parse_json::<Manifest>(&b)
                .map_err(|e| format!("is not an image manifest: {e}")),
            Err(e) => Err(e.to_string()),
        };
        match m {
            Err(why) => self.problem(&manifest, why, false),
            Ok(m) if m.image.digest != d => {
                self.problem(
                    &manifest,
                    format!(
                        "describes image {}, not {d} as the channel says",
                        m.image.digest
                    ),
                    false,
                );
            }
            Ok(m) => match contained(&m.image.file).filter(|p| p.components().count() == 1) {
                None => self.problem(
                    &manifest,
                    format!("image.file {:?} is not a file name", m.image.file),
                    false,
                ),
                Some(file) => {
                    let image = dir.join(file);
                    match std::fs::symlink_metadata(&image) {
                        Ok(m) if m.is_file() => match file_digest_sparse(&image) {
                            Ok(got) if got == d => {}
                            Ok(got) => self.problem(
                                &image,
                                format!("its content hashes to {got}, not {d} as the channel says"),
                                false,
                            ),
                            Err(e) => self.problem(&image, format!("{e:#}"), false),
                        },
                        Ok(_) => self.problem(&image, "is not a regular file", false),
                        Err(e) => self.problem(&image, format!("cannot be read: {e}"), false),
                    }
                }
            },
        }
        for e in self.list_or_none(dir, false) {
            let Some(n) = e
                .name()
                .filter(|n| !n.starts_with('.') && !n.ends_with(".minisig"))
            else {
                continue;
            };
            if e.kind == Kind::File && !sig_path(&e.path).is_file() {
                self.problem(&e.path, format!("has no signature ({n}.minisig)"), false);
            }
        }
    }
}

/// The first symbolic link on the way from `root` down `rel`, if any.
fn first_link(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(at);
        }
    }
    None
}

/// Whether the store holds a blob (a regular file, not through a link).
fn blob_present(store: &Store, d: Digest) -> bool {
    is_file(&store.layout().entry(Area::Blobs, &d))
}

/// Whether `path` is a regular file (a link to one is not).
fn is_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
#[path = "fsck_tests.rs"]
mod tests;
