//! `kiln pull` against a registry that lies. A fake registry on 127.0.0.1
//! serves what `kiln publish` pushes, built with the manifest builders
//! [`super::super::push`] uses, or the tampered variants a hostile
//! registry could serve instead; it logs every request, so a test can tell
//! what a refused pull never fetched.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::super::{artifact_manifest, descriptor, image_manifest, MANIFEST_TYPE};
use super::*;
use crate::fs::layer::sha256_digest;
use crate::model::manifest::{BuilderInfo, ImageFile, RecipeRef, SCHEMA};
use crate::publish::sign::{SigningKey, TrustedComment};
use crate::util::error::exit_code;

const REPO: &str = "kiln/hello";
const TAG: &str = "1.0";

/// A registry on 127.0.0.1 answering `GET`s from its routes (path → body,
/// 404 otherwise), one request per connection.
struct FakeRegistry {
    port: u16,
    routes: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let reg = FakeRegistry {
            port: listener.local_addr().unwrap().port(),
            routes: Arc::default(),
            log: Arc::default(),
            stop: Arc::default(),
        };
        let (routes, log, stop) = (reg.routes.clone(), reg.log.clone(), reg.stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = answer(conn, &routes, &log);
                }
            }
        });
        reg
    }

    /// Serve `body` at `/v2/REPO/{tail}`.
    fn put(&self, tail: &str, body: Vec<u8>) {
        let path = format!("/v2/{REPO}/{tail}");
        self.routes.lock().unwrap().insert(path, body);
    }

    /// Whether anyone asked for `/v2/REPO/{tail}`.
    fn was_asked(&self, tail: &str) -> bool {
        let want = format!("GET /v2/{REPO}/{tail}");
        self.log.lock().unwrap().contains(&want)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(
    conn: TcpStream,
    routes: &Mutex<HashMap<String, Vec<u8>>>,
    log: &Mutex<Vec<String>>,
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
    let path = target.split('?').next().unwrap_or(target);
    log.lock().unwrap().push(format!("{method} {path}"));
    let body = match (method, path) {
        ("GET", "/v2/") => Some(b"{}".to_vec()),
        ("GET", p) => routes.lock().unwrap().get(p).cloned(),
        _ => None,
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"{}".to_vec()),
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(&body)?;
    w.flush()
}

/// A minisign key pair in `dir`: the signing key and the public key file.
fn key(dir: &Path, name: &str) -> (SigningKey, PathBuf) {
    let path = dir.join(name);
    let rep = sign::keygen(&path, false).unwrap();
    (SigningKey::load(&path).unwrap(), rep.public_key)
}

/// How the kiln manifest is signed.
enum ManifestSig {
    Good,
    /// By another key.
    OtherKey(Box<SigningKey>),
    /// By the right key, over other bytes.
    OtherBytes,
    /// Not at all (the disk's signature is still there).
    Missing,
}

/// Where the referrers are.
#[derive(Clone, Copy, PartialEq)]
enum Referrers {
    /// The referrers API.
    Api,
    /// The fallback tag `sha256-<hex>`, as Debian's docker-registry needs.
    Tag,
    /// Nowhere.
    None,
}

/// What `kiln publish` pushes for one image, and what a hostile registry
/// may change about it.
struct Release {
    key: SigningKey,
    manifest: Manifest,
    disk: Vec<u8>,
    /// The disk blob served, in place of the zstd of `disk`.
    blob: Option<Vec<u8>>,
    /// Bytes sent after the disk blob, beyond its descriptor's size.
    trailing: Vec<u8>,
    /// Bytes sent after the kiln manifest blob.
    config_trailing: Vec<u8>,
    /// An edit of the kiln manifest's JSON (a field no typed value holds).
    config_edit: Option<fn(&mut serde_json::Value)>,
    /// The disk layer descriptor's size, in place of the blob's.
    layer_size: Option<u64>,
    manifest_sig: ManifestSig,
    referrers: Referrers,
}

/// What was served: the `oci://` reference and the disk blob's digest.
struct Served {
    source: String,
    blob: String,
}

impl Release {
    fn new(key: SigningKey) -> Release {
        let disk: Vec<u8> = (0..256u32 << 10).map(|i| (i * 7 % 251) as u8).collect();
        let manifest = Manifest {
            schema: SCHEMA.into(),
            name: "hello".into(),
            version: TAG.into(),
            recipe: RecipeRef {
                file: "hello.toml".into(),
                digest: Digest::of(b"recipe"),
            },
            source_date_epoch: 1_700_000_000,
            epoch_source: None,
            layers: vec![],
            image: ImageFile {
                format: "raw".into(),
                file: "hello-1.0.raw".into(),
                digest: Digest::of(&disk),
                size: disk.len() as u64,
            },
            disk: None,
            test: None,
            builder: BuilderInfo::current(),
        };
        Release {
            key,
            manifest,
            disk,
            blob: None,
            trailing: vec![],
            config_trailing: vec![],
            config_edit: None,
            layer_size: None,
            manifest_sig: ManifestSig::Good,
            referrers: Referrers::Api,
        }
    }

    /// Put the release in the registry, as `push` lays it out.
    fn serve(&self, reg: &FakeRegistry) -> Served {
        let m = &self.manifest;
        let scratch = tempfile::tempdir().unwrap();
        let at = |n: &str, data: &[u8]| {
            let p = scratch.path().join(n);
            std::fs::write(&p, data).unwrap();
            p
        };
        let mut json = serde_json::to_value(m).unwrap();
        if let Some(edit) = self.config_edit {
            edit(&mut json);
        }
        let config = serde_json::to_vec_pretty(&json).unwrap();
        let (man_file, raw_file) = (at("manifest.json", &config), at("disk.raw", &self.disk));
        let comment = |f: &str| {
            TrustedComment::for_image(
                f,
                &m.image.digest.to_string(),
                Some(&m.name),
                Some(&m.version),
            )
        };
        let man_name = format!("{}-{}.manifest.json", m.name, m.version);
        let man_sig = match &self.manifest_sig {
            ManifestSig::Good => Some(self.key.sign_file(&man_file, &comment(&man_name))),
            ManifestSig::OtherKey(k) => Some(k.sign_file(&man_file, &comment(&man_name))),
            ManifestSig::OtherBytes => {
                let other = at("other.json", b"{}");
                Some(self.key.sign_file(&other, &comment(&man_name)))
            }
            ManifestSig::Missing => None,
        };
        let raw_sig = self.key.sign_file(&raw_file, &comment(&m.image.file));

        let blob = self
            .blob
            .clone()
            .unwrap_or_else(|| zstd::bulk::compress(&self.disk, 3).unwrap());
        let blob_digest = sha256_digest(&blob);
        let layer_size = self.layer_size.unwrap_or(blob.len() as u64);
        reg.put(
            &format!("blobs/{blob_digest}"),
            [&blob[..], &self.trailing].concat(),
        );
        let config_digest = sha256_digest(&config);
        let config_len = config.len() as u64;
        reg.put(
            &format!("blobs/{config_digest}"),
            [&config[..], &self.config_trailing].concat(),
        );
        let image = image_manifest(m, (&config_digest, config_len), (&blob_digest, layer_size));
        let image_bytes = serde_json::to_vec(&image).unwrap();
        let image_digest = sha256_digest(&image_bytes);
        reg.put(&format!("manifests/{TAG}"), image_bytes.clone());
        reg.put(&format!("manifests/{image_digest}"), image_bytes.clone());

        let mut layers = Vec::new();
        for (name, text) in [
            (format!("{}.minisig", m.image.file), Some(raw_sig.unwrap())),
            (format!("{man_name}.minisig"), man_sig.map(Result::unwrap)),
        ] {
            let Some(text) = text else { continue };
            let d = sha256_digest(text.as_bytes());
            reg.put(&format!("blobs/{d}"), text.clone().into_bytes());
            layers.push(descriptor(
                SIGNATURE_ARTIFACT,
                &d,
                text.len() as u64,
                Some(&name),
            ));
        }
        let subject = descriptor(MANIFEST_TYPE, &image_digest, image_bytes.len() as u64, None);
        let art = artifact_manifest(SIGNATURE_ARTIFACT, layers, &subject, m.source_date_epoch);
        let art_bytes = serde_json::to_vec(&art).unwrap();
        let art_digest = sha256_digest(&art_bytes);
        reg.put(&format!("manifests/{art_digest}"), art_bytes.clone());
        let mut entry = descriptor(MANIFEST_TYPE, &art_digest, art_bytes.len() as u64, None);
        entry["artifactType"] = json!(SIGNATURE_ARTIFACT);
        let index = json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry] });
        let index = serde_json::to_vec(&index).unwrap();
        match self.referrers {
            Referrers::Api => reg.put(&format!("referrers/{image_digest}"), index),
            Referrers::Tag => reg.put(
                &format!("manifests/{}", image_digest.replacen(':', "-", 1)),
                index,
            ),
            Referrers::None => {}
        }
        Served {
            source: format!("oci://127.0.0.1:{}/{REPO}:{TAG}", reg.port),
            blob: blob_digest,
        }
    }
}

/// A scratch directory with a key pair, and the output directory a pull
/// writes to (`root/a/out`, so `../../` from it lands in `root`).
struct Scene {
    root: tempfile::TempDir,
    pubkey: PathBuf,
    out: PathBuf,
}

fn scene() -> (Scene, Release) {
    let root = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (k, pubkey) = key(keys.path(), "k");
    let kept = root.path().join("k.pub");
    std::fs::copy(&pubkey, &kept).unwrap();
    let out = root.path().join("a/out");
    let s = Scene {
        pubkey: kept,
        out,
        root,
    };
    (s, Release::new(k))
}

/// Everything under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            found.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            }
        }
    }
    found.sort();
    found
}

impl Scene {
    fn pull(&self, served: &Served) -> Result<PullReport> {
        pull(&served.source, &self.out, &self.pubkey)
    }

    /// The pull failed with exit `code` and a message containing `want`,
    /// and left nothing behind: no file in the output directory, nothing
    /// staged, nothing written anywhere else.
    fn refused(&self, r: Result<PullReport>, code: i32, want: &str, before: &[String]) -> String {
        let e = r.unwrap_err();
        let msg = format!("{e:#}");
        eprintln!("MSG {code}: {msg}");
        assert_eq!(exit_code(&e), code, "{msg}");
        assert!(msg.contains(want), "{msg}\n  lacks {want:?}");
        assert_eq!(tree(self.root.path()), before, "{msg}");
        msg
    }
}

#[test]
fn pulls_what_publish_pushes() {
    for referrers in [Referrers::Api, Referrers::Tag] {
        let (s, mut rel) = scene();
        rel.referrers = referrers;
        let reg = FakeRegistry::start();
        let served = rel.serve(&reg);
        let r = s.pull(&served).unwrap();
        assert_eq!(r.digest, rel.manifest.image.digest);
        assert_eq!((r.name.as_str(), r.version.as_str()), ("hello", "1.0"));
        let names: Vec<_> = r
            .files
            .iter()
            .map(|f| f.strip_prefix(&s.out).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "hello-1.0.raw",
                "hello-1.0.raw.minisig",
                "hello-1.0.manifest.json",
                "hello-1.0.manifest.json.minisig"
            ]
        );
        assert_eq!(std::fs::read(&r.image).unwrap(), rel.disk);
        let pk = sign::load_public_key(&s.pubkey).unwrap();
        sign::verify_file(&r.files[2], &r.files[3], &pk).unwrap();
        sign::verify_file(&r.image, &r.files[1], &pk).unwrap();
        // Nothing else anywhere; and a second pull replaces the files.
        let after = tree(s.root.path());
        assert_eq!(after.iter().filter(|p| p.contains(".kiln-pull")).count(), 0);
        s.pull(&served).unwrap();
        assert_eq!(tree(s.root.path()), after);
    }
}

#[test]
fn a_zstd_bomb_stops_at_the_signed_size() {
    let (s, mut rel) = scene();
    std::fs::create_dir_all(&s.out).unwrap();
    let mut bomb = Vec::new();
    let zeros = std::io::repeat(0).take(32 << 20);
    zstd::stream::copy_encode(zeros, &mut bomb, 19).unwrap();
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    rel.blob = Some(bomb);
    let reg = FakeRegistry::start();
    let served = rel.serve(&reg);
    let before = tree(s.root.path());
    s.refused(
        s.pull(&served),
        1,
        "decompresses to more than the 262144 bytes its signed manifest declares",
        &before,
    );
}

#[test]
fn copying_stops_at_the_limit() {
    /// A reader of `n` bytes that counts what was read.
    struct Counted(u64, u64);
    impl Read for Counted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.0 - self.1) as usize;
            buf[..n].fill(7);
            self.1 += n as u64;
            Ok(n)
        }
    }
    let no = |e: std::io::Error| anyhow::anyhow!(e);
    for (have, limit, want) in [
        (10, 10, Some(10)),
        (9, 10, Some(9)),
        (11, 10, None),
        (1 << 20, 10, None),
        (0, 0, Some(0)),
        (1, 0, None),
    ] {
        let (mut r, mut w) = (Counted(have, 0), Vec::new());
        let got = copy_at_most(&mut r, &mut w, limit, no).unwrap();
        assert_eq!(got, want, "{have} {limit}");
        assert!(
            w.len() as u64 <= limit && r.1 <= limit + 1,
            "{have} {limit}"
        );
    }
}

#[test]
fn content_beyond_its_descriptor_is_refused() {
    // The disk blob runs past its descriptor.
    let (s, mut rel) = scene();
    rel.trailing = vec![0; 4096];
    let reg = FakeRegistry::start();
    let served = rel.serve(&reg);
    let before = tree(s.root.path());
    s.refused(s.pull(&served), 1, "sent more than the", &before);

    // So does the kiln manifest.
    let (s, mut rel) = scene();
    rel.config_trailing = b" ".to_vec();
    let reg = FakeRegistry::start();
    let served = rel.serve(&reg);
    let before = tree(s.root.path());
    s.refused(s.pull(&served), 1, "kiln manifest sha256:", &before);
    assert!(!reg.was_asked(&format!("blobs/{}", served.blob)));

    // A disk descriptor larger than any zstd stream of the signed size:
    // refused without asking for the blob.
    let (s, mut rel) = scene();
    rel.layer_size = Some(1 << 40);
    let reg = FakeRegistry::start();
    let served = rel.serve(&reg);
    let before = tree(s.root.path());
    s.refused(s.pull(&served), 1, "more than the", &before);
    assert!(!reg.was_asked(&format!("blobs/{}", served.blob)));
}

#[test]
fn names_in_a_signed_manifest_must_be_safe() {
    type Edit = fn(&mut Manifest);
    let cases: &[(&str, Edit)] = &[
        ("name", |m| m.name = "../../x".into()),
        ("name", |m| m.name = String::new()),
        ("version", |m| m.version = "1.0/../../../x".into()),
        ("image.file", |m| m.image.file = "../../x.raw".into()),
        ("image.file", |m| m.image.file = "sub/x.raw".into()),
        ("image.file", |m| m.image.file = "/tmp/x.raw".into()),
        ("image.file", |m| m.image.file = ".x.raw".into()),
        ("image.file", |m| m.image.file = "..".into()),
        ("image.file", |m| m.image.file = "x\n.raw".into()),
        ("image.file", |m| {
            m.image.file = "hello-1.0.manifest.json".into()
        }),
    ];
    type JsonEdit = fn(&mut serde_json::Value);
    let json_cases: &[(&str, JsonEdit)] = &[
        ("image.digest", |m| {
            m["image"]["digest"] = "sha256:../x".into()
        }),
        ("image.digest", |m| {
            m["image"]["digest"] =
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()
        }),
        ("recipe.digest", |m| {
            m["recipe"]["digest"] =
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".into()
        }),
    ];
    let cases = cases
        .iter()
        .map(|(f, e)| (*f, Some(*e), None))
        .chain(json_cases.iter().map(|(f, e)| (*f, None, Some(*e))));
    for (field, edit, json_edit) in cases {
        let (s, mut rel) = scene();
        if let Some(edit) = edit {
            edit(&mut rel.manifest);
        }
        rel.config_edit = json_edit;
        let reg = FakeRegistry::start();
        let served = rel.serve(&reg);
        let before = tree(s.root.path());
        let e = s.refused(s.pull(&served), 2, "the kiln manifest sha256:", &before);
        assert!(e.contains(&format!("field `{field}`")), "{e}");
        assert!(!reg.was_asked(&format!("blobs/{}", served.blob)), "{e}");
    }
}

#[test]
fn an_unsigned_or_badly_signed_manifest_is_refused_before_the_disk() {
    type Edit = fn(&mut Release);
    let cases: &[(&str, Edit)] = &[
        ("no signature *.manifest.json.minisig", |r| {
            r.manifest_sig = ManifestSig::Missing
        }),
        ("no signature", |r| r.referrers = Referrers::None),
        ("not by the given public key", |r| {
            let dir = tempfile::tempdir().unwrap();
            r.manifest_sig = ManifestSig::OtherKey(Box::new(key(dir.path(), "o").0));
        }),
        ("does not verify", |r| {
            r.manifest_sig = ManifestSig::OtherBytes
        }),
    ];
    for (want, edit) in cases {
        let (s, mut rel) = scene();
        edit(&mut rel);
        let reg = FakeRegistry::start();
        let served = rel.serve(&reg);
        let before = tree(s.root.path());
        s.refused(s.pull(&served), 1, want, &before);
        assert!(!reg.was_asked(&format!("blobs/{}", served.blob)), "{want}");
    }
}

#[test]
fn inside_takes_only_plain_file_names() {
    assert!(inside(Path::new("/o"), "../x").is_err());
    assert_eq!(inside(Path::new("/o"), "x").unwrap(), Path::new("/o/x"));
}
