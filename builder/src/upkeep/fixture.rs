//! A small store for the tests of gc and fsck: layers, images with their
//! manifests, cached files and build records, releases, memo entries and
//! output stamps, written the way kiln writes them, without building.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::build::output::{builds_dir, record_output};
use crate::model::manifest::{BuilderInfo, ImageFile, Manifest, ManifestLayer, RecipeRef};
use crate::publish::release::{self, Action, Entry, Releases};
use crate::store::{KeyEntry, Store};
use crate::util::digest::Digest;

/// A layer in the fixture store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    pub key: Digest,
    pub blob: Digest,
}

/// An image in the fixture store.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: Digest,
    /// Its image key (the build record's name).
    pub key: Digest,
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("store"));
        store.init().unwrap();
        Fixture { dir, store }
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// A layer: its blob (a real layer holding the file `/NAME`, so that
    /// fsck can unpack it) and its key entry.
    pub fn layer(&self, name: &str) -> Layer {
        let mut tree = crate::fs::tree::Tree::new(1_700_000_000);
        tree.insert(name, crate::testutil::file(name)).unwrap();
        self.layer_of(name, &tree)
    }

    /// A layer of `tree` named `name`: its blob and its key entry.
    pub fn layer_of(&self, name: &str, tree: &crate::fs::tree::Tree) -> Layer {
        let packed = crate::fs::layer::pack(tree).unwrap();
        let blob = Digest::parse(&self.store.put_blob(&packed.blob).unwrap()).unwrap();
        let key = Digest::of(format!("key of {name}").as_bytes());
        self.store
            .record_key(&KeyEntry {
                key,
                digest: blob,
                diff_id: packed.diff_id.parse().unwrap(),
                name: name.into(),
                kind: "app".into(),
                size: packed.blob.len() as u64,
                tar_size: packed.tar_size,
                packages: Vec::new(),
                source_date_epoch: Some(1_700_000_000),
            })
            .unwrap();
        Layer { key, blob }
    }

    /// An image of `layers`: its manifest, its cached file and a build
    /// record last used `age_secs` ago.
    pub fn image(&self, name: &str, version: &str, layers: &[Layer], age_secs: u64) -> Image {
        let bytes = format!("image {name} {version}").into_bytes();
        let digest = Digest::of(&bytes);
        let manifest = Manifest {
            schema: crate::model::manifest::SCHEMA.into(),
            name: name.into(),
            version: version.into(),
            recipe: RecipeRef {
                file: format!("{name}.toml"),
                digest: Digest::of(name.as_bytes()),
            },
            source_date_epoch: 1_700_000_000,
            epoch_source: None,
            layers: layers
                .iter()
                .map(|l| ManifestLayer {
                    cache: None,
                    name: "layer".into(),
                    kind: "app".into(),
                    key: l.key,
                    digest: l.blob,
                    diff_id: l.blob,
                    size: 1,
                    packages: Vec::new(),
                })
                .collect(),
            image: ImageFile {
                format: "raw".into(),
                file: format!("{name}-{version}.raw"),
                digest,
                size: bytes.len() as u64,
            },
            disk: None,
            test: None,
            builder: BuilderInfo::current(),
        };
        let d = digest.to_string();
        self.store
            .record_image(&d, &serde_json::to_vec_pretty(&manifest).unwrap())
            .unwrap();
        fs::write(self.store.image_file(&d).unwrap(), &bytes).unwrap();
        let key = Digest::of(format!("image key of {name} {version}").as_bytes());
        let record = builds_dir(&self.store).join(format!("{}.json", key.hex()));
        fs::write(&record, format!("{{\"image\":\"{digest}\"}}")).unwrap();
        set_age(&record, age_secs);
        Image {
            digest,
            key,
            manifest,
            bytes,
        }
    }

    /// Publish `image` on `channel` in the store's release store, the way
    /// `kiln publish` lays it out (signatures are stand-ins).
    pub fn release(&self, image: &Image, channel: &str, seq: u64) -> PathBuf {
        let rel = Releases::of_store(&self.store);
        let m = &image.manifest;
        let rel_path = format!("{}/{}", m.name, m.version);
        let dir = rel.root().join(&rel_path);
        fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join(release::manifest_name(&m.name, &m.version));
        fs::write(&manifest, serde_json::to_vec_pretty(m).unwrap()).unwrap();
        fs::write(dir.join(&m.image.file), &image.bytes).unwrap();
        for f in [manifest.clone(), dir.join(&m.image.file)] {
            fs::write(
                crate::publish::sign::sig_path(&f),
                b"untrusted comment: test\n",
            )
            .unwrap();
        }
        let ch = rel.channels_dir().join(channel);
        fs::create_dir_all(&ch).unwrap();
        let entry = Entry {
            schema: release::SCHEMA.into(),
            seq,
            channel: channel.into(),
            action: Action::Publish,
            name: m.name.clone(),
            version: m.version.clone(),
            digest: image.digest,
            time: "2026-01-01T00:00:00Z".into(),
            key_id: "0123456789ABCDEF".into(),
            path: rel_path,
            from: None,
            replaces: None,
            oci: Vec::new(),
        };
        let path = ch.join(format!("{seq:06}.json"));
        fs::write(&path, serde_json::to_vec_pretty(&entry).unwrap()).unwrap();
        dir
    }

    /// An image file written to an output directory, with its stamp.
    pub fn output(&self, dir: &str, image: &Image) -> PathBuf {
        let out = self.dir.path().join(dir);
        fs::create_dir_all(&out).unwrap();
        let path = out.join(&image.manifest.image.file);
        fs::write(&path, &image.bytes).unwrap();
        record_output(&self.store, &path, &image.digest.to_string()).unwrap();
        path
    }

    /// Every file below the store (links included, directories not),
    /// relative to it, sorted; `lock` left out.
    /// (The store's own scratch in `tmp/`, which lives as long as the
    /// fixture's store, is left out.)
    pub fn files(&self) -> Vec<String> {
        let own = self.store.tmp_dir().unwrap();
        let own_lock = format!("tmp/{}.lock", own.file_name().unwrap().to_str().unwrap());
        let mut files = files_below(self.root());
        files.retain(|f| *f != own_lock);
        files
    }
}

/// Every non-directory below `root`, relative, sorted; `lock` left out.
pub fn files_below(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else if rel != "lock" {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Set a file's mtime to `secs` ago.
pub fn set_age(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    fs::File::open(path).unwrap().set_modified(t).unwrap();
}
