//! `kiln build --cache` against a registry that serves entries whose
//! digests are right but whose content is not what kiln would build: bad
//! names and whiteouts, a zstd bomb, a recompressed blob, forged metadata.
//! Each is a warning and a local build, the image is the one a local build
//! gives, and the store stays usable (every later build works, fsck is
//! happy). A genuine entry is taken, and its blob reaches the store through
//! a scratch file while it downloads. The registry is a fake one on
//! 127.0.0.1; no network, no QEMU.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::fs::layer;
use kiln::fs::tree::{Meta, Node, NodeKind, Tree};
use kiln::registry::cache::{key_entry_manifest, tag_for};
use kiln::store::KeyEntry;
use serde_json::Value;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const REPO: &str = "kiln/cache";

/// A registry on 127.0.0.1 answering `GET`s from its routes (path → body,
/// 404 otherwise), one request per connection. A body in `stall` is sent
/// in two halves, the second once `release` is set.
struct Registry {
    port: u16,
    routes: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    stall: Arc<Mutex<Option<String>>>,
    release: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Registry {
    fn start() -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let reg = Registry {
            port: listener.local_addr().unwrap().port(),
            routes: Arc::default(),
            stall: Arc::default(),
            release: Arc::default(),
            stop: Arc::default(),
        };
        let (routes, stall, release, stop) = (
            reg.routes.clone(),
            reg.stall.clone(),
            reg.release.clone(),
            reg.stop.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (routes, stall, release) = (routes.clone(), stall.clone(), release.clone());
                std::thread::spawn(move || {
                    let _ = answer(conn, &routes, &stall, &release);
                });
            }
        });
        reg
    }

    fn url(&self) -> String {
        format!("oci://127.0.0.1:{}/{REPO}", self.port)
    }

    /// Serve `body` at `/v2/REPO/{tail}`.
    fn put(&self, tail: &str, body: Vec<u8>) {
        let path = format!("/v2/{REPO}/{tail}");
        self.routes.lock().unwrap().insert(path, body);
    }

    /// Serve `entry` under its key's tag, with `blob` as its layer.
    fn serve(&self, entry: &KeyEntry, blob: &[u8]) {
        let (manifest, config) = key_entry_manifest(entry, None).unwrap();
        self.put(&format!("blobs/{}", entry.digest), blob.to_vec());
        self.put(&format!("blobs/{}", layer::sha256_digest(&config)), config);
        self.put(
            &format!("manifests/{}", tag_for(&entry.key.to_string()).unwrap()),
            manifest,
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(
    conn: TcpStream,
    routes: &Mutex<HashMap<String, Vec<u8>>>,
    stall: &Mutex<Option<String>>,
    release: &AtomicBool,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or(target).to_string();
    let body = match (method, path.as_str()) {
        ("GET", "/v2/") => Some(b"{}".to_vec()),
        ("GET", p) => routes.lock().unwrap().get(p).cloned(),
        _ => None,
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"{}".to_vec()),
    };
    let mut w = conn;
    let ctype = if path.contains("/manifests/") {
        "application/vnd.oci.image.manifest.v1+json"
    } else {
        "application/octet-stream"
    };
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: {ctype}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    let half = match stall.lock().unwrap().as_deref() {
        Some(s) if s == path => body.len() / 2,
        _ => body.len(),
    };
    w.write_all(&body[..half])?;
    w.flush()?;
    while half < body.len() && !release.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    w.write_all(&body[half..])?;
    w.flush()
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A recipe of a files-only base and an app layer, its SOURCE_DATE_EPOCH
/// derived; and the image, key entries and blobs a local build made of it.
struct Fixture {
    dir: tempfile::TempDir,
    /// The local build's report.
    local: Value,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            &root.join("layers/base/mini/layer.toml"),
            "[layer]\nkind = \"base\"\n\n[files]\ndir = \"files\"\n",
        );
        write(&root.join("layers/base/mini/files/etc/hostname"), "mini\n");
        write(&root.join("layers/base/mini/files/etc/motd"), "hello\n");
        write(
            &root.join("layers/apps/app/layer.toml"),
            "[layer]\nkind = \"app\"\n\n[files]\ndir = \"files\"\n",
        );
        write(
            &root.join("layers/apps/app/files/srv/app/index.html"),
            "v1\n",
        );
        write(&root.join("layers/apps/app/files/etc/.wh.motd"), "");
        write(
            &root.join("recipe.toml"),
            "[image]\nname = \"app\"\nversion = \"1.0\"\nlayers = [\"layers/base/mini\", \"layers/apps/app\"]\n\n[disk]\nformat = \"tar\"\n",
        );
        let mut f = Fixture {
            dir,
            local: Value::Null,
        };
        let out = f.build("local", None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        f.local = serde_json::from_slice(&out.stdout).unwrap();
        f
    }

    fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("store")
    }

    /// `kiln build --json` with the store `name` (and the cache, read-only).
    fn build(&self, name: &str, cache: Option<&str>) -> Output {
        self.build_cmd(name, cache).output().unwrap()
    }

    fn build_cmd(&self, name: &str, cache: Option<&str>) -> Command {
        let mut cmd = Command::new(KILN);
        cmd.arg("build")
            .arg(self.dir.path().join("recipe.toml"))
            .arg("-o")
            .arg(self.dir.path().join(name).join("out"))
            .arg("--json")
            .arg("--store")
            .arg(self.store(name))
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(c) = cache {
            cmd.args(["--cache", c, "--cache-read-only"]);
        }
        cmd
    }

    /// The local build's key entry and blob of layer `i`.
    fn layer(&self, i: usize) -> (KeyEntry, Vec<u8>) {
        let key = self.local["layers"][i]["key"].as_str().unwrap();
        let hex = key.strip_prefix("sha256:").unwrap();
        let store = self.store("local");
        let entry: KeyEntry =
            serde_json::from_slice(&fs::read(store.join(format!("keys/{hex}.json"))).unwrap())
                .unwrap();
        let blob_hex = entry.digest.hex();
        let blob = fs::read(store.join("blobs/sha256").join(&blob_hex)).unwrap();
        (entry, blob)
    }

    fn digest(report: &Value) -> &str {
        report["image"]["digest"].as_str().unwrap()
    }
}

fn sources(report: &Value) -> Vec<&str> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect()
}

/// An entry for `tree` under `like`'s key, its digests, sizes and
/// metadata all consistent with the blob (kiln's own packing).
fn entry_for(like: &KeyEntry, tree: &Tree) -> (KeyEntry, Vec<u8>) {
    let p = layer::pack(tree).unwrap();
    let mut e = like.clone();
    e.digest = p.digest.parse().unwrap();
    e.diff_id = p.diff_id.parse().unwrap();
    e.size = p.blob.len() as u64;
    e.tar_size = p.tar_size;
    (e, p.blob)
}

/// The fixture's app layer with `path` added (a file, or a directory).
fn app_with(like: &KeyEntry, blob: &[u8], path: &str, is_dir: bool) -> (KeyEntry, Vec<u8>) {
    let mut t = layer::unpack(blob).unwrap();
    let mtime = t.get("").unwrap().meta.mtime;
    let node = Node {
        kind: if is_dir {
            NodeKind::Dir
        } else {
            NodeKind::File(Arc::new(Vec::new()))
        },
        meta: Meta::root(if is_dir { 0o755 } else { 0o644 }, mtime),
    };
    t.insert_with_parents(path, node, &Meta::root(0o755, mtime))
        .unwrap();
    entry_for(like, &t)
}

/// Build with a registry serving the genuine base entry and `app` as the
/// app layer's: the app entry is refused with `why`, the layer is built,
/// the image is the local one, and the store serves later builds.
fn refused(f: &Fixture, case: &str, app: (KeyEntry, Vec<u8>), why: &str) {
    let reg = Registry::start();
    let (base, base_blob) = f.layer(0);
    reg.serve(&base, &base_blob);
    reg.serve(&app.0, &app.1);
    let out = f.build(case, Some(&reg.url()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{case}: {stderr}");
    assert!(
        stderr.contains("layer cache: not using") && stderr.contains(why),
        "{case}: {stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sources(&r), ["registry", "built"], "{case}");
    assert_eq!(Fixture::digest(&r), Fixture::digest(&f.local), "{case}");
    // The store took nothing from the refused entry: a build without the
    // cache takes both layers from it, and gives the same image.
    let again = f.build(case, None);
    assert!(
        again.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let r: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(sources(&r), ["store", "store"], "{case}");
    assert_eq!(Fixture::digest(&r), Fixture::digest(&f.local), "{case}");
    let fsck = Command::new(KILN)
        .args(["fsck", "--store"])
        .arg(f.store(case))
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn a_genuine_entry_is_taken_and_gives_the_local_image() {
    let f = Fixture::new();
    let reg = Registry::start();
    for i in 0..2 {
        let (e, b) = f.layer(i);
        reg.serve(&e, &b);
    }
    let out = f.build("remote", Some(&reg.url()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sources(&r), ["registry", "registry"]);
    assert_eq!(Fixture::digest(&r), Fixture::digest(&f.local));
}

/// Issue 22, item 2: content no layer kiln stores may hold.
#[test]
fn entries_with_bad_names_or_whiteouts_are_refused() {
    let f = Fixture::new();
    let (app, blob) = f.layer(1);
    let long = format!("srv/{}", "n".repeat(300));
    refused(
        &f,
        "long",
        app_with(&app, &blob, &long, false),
        "300 bytes long",
    );
    refused(
        &f,
        "opaque",
        app_with(&app, &blob, ".wh..wh..opq", false),
        "would hide every layer below",
    );
    refused(
        &f,
        "dots",
        app_with(&app, &blob, "srv/.wh...", false),
        "not a valid whiteout",
    );
    refused(
        &f,
        "wh-dir",
        app_with(&app, &blob, "srv/.wh.x", true),
        "not a directory",
    );
}

/// Issue 22, item 3: a few KB of zstd holding a 1 GiB file of zeros,
/// declared as what it unpacks to (refused before it is fetched) or as
/// less (refused when the tar header claims more than that).
#[test]
fn a_zstd_bomb_is_refused_without_unpacking_it() {
    let f = Fixture::new();
    let (app, _) = f.layer(1);
    let bomb = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus/layer/zstd-bomb-1g-file.bin"),
    )
    .unwrap();
    let mut e = app.clone();
    e.digest = layer::sha256_digest(&bomb).parse().unwrap();
    e.size = bomb.len() as u64;
    e.tar_size = (1 << 30) + 2048;
    refused(&f, "declared", (e.clone(), bomb.clone()), "more than the");
    e.tar_size = app.tar_size;
    refused(
        &f,
        "understated",
        (e, bomb),
        "the whole layer may unpack to",
    );
}

/// Issue 22, item 5: the same files in another blob, or the same blob with
/// other metadata.
#[test]
fn entries_not_in_canonical_form_are_refused() {
    let f = Fixture::new();
    let (app, blob) = f.layer(1);
    let tar = zstd::decode_all(blob.as_slice()).unwrap();
    let recompressed = zstd::encode_all(tar.as_slice(), 19).unwrap();
    assert_ne!(recompressed, blob);
    let mut e = app.clone();
    e.digest = layer::sha256_digest(&recompressed).parse().unwrap();
    e.size = recompressed.len() as u64;
    refused(&f, "recompressed", (e, recompressed), "canonical form");
    let mut e = app.clone();
    e.source_date_epoch = e.source_date_epoch.map(|t| t + 1);
    refused(&f, "epoch", (e, blob.clone()), "source_date_epoch");
    let mut e = app.clone();
    e.packages = vec![kiln::model::deb::DebPackage {
        name: "busybox".into(),
        version: "1.0".into(),
        architecture: "amd64".into(),
        sha256: None,
        download: None,
    }];
    refused(&f, "packages", (e, blob), "packages");
}

/// Issue 22, item 4: a blob downloads into a scratch file in the store's
/// `tmp/`, not into memory, and is moved into the store from there.
#[test]
fn a_blob_downloads_into_a_scratch_file_of_the_store() {
    let f = Fixture::new();
    let reg = Registry::start();
    let (base, base_blob) = f.layer(0);
    let (app, app_blob) = f.layer(1);
    reg.serve(&base, &base_blob);
    reg.serve(&app, &app_blob);
    let half = app_blob.len() / 2;
    *reg.stall.lock().unwrap() = Some(format!("/v2/{REPO}/blobs/{}", app.digest));
    let child = f
        .build_cmd("stall", Some(&reg.url()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = f.store("stall").join("tmp");
    let start = Instant::now();
    let seen = loop {
        let found = scratch_files(&tmp)
            .into_iter()
            .find(|(_, len)| *len as usize == half);
        if let Some(found) = found {
            break Some(found);
        }
        if start.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reg.release.store(true, Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (file, _) = seen.unwrap_or_else(|| {
        panic!(
            "no scratch file of {half} bytes appeared in {}: {stderr}",
            tmp.display()
        )
    });
    assert!(out.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sources(&r), ["registry", "registry"]);
    assert!(!file.exists(), "{} was left behind", file.display());
    let hex = app.digest.hex();
    let stored = f.store("stall").join("blobs/sha256").join(hex);
    assert_eq!(fs::read(stored).unwrap(), app_blob);
}

/// Files under `dir` (any depth): path and size.
fn scratch_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            out.extend(scratch_files(&e.path()));
        } else {
            out.push((e.path(), m.len()));
        }
    }
    out
}
