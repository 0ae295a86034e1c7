//! `kiln publish` when writing fails half way (a full disk): nothing of its
//! own is left in the release directory, and the next run publishes it all.
//!
//! The failure is the kernel's own: the test runs itself again as a child
//! process whose file size limit (RLIMIT_FSIZE) lets the image through and
//! stops the SBOM half way (`EFBIG`, with SIGXFSZ blocked), as a disk that
//! fills after the image would.

use std::path::{Path, PathBuf};

use super::release::{publish, PublishOptions, Releases};
use super::sign;
use crate::model::manifest::tests::sample;
use crate::store::verdict::{self, Verdict};
use crate::store::Store;
use crate::util::digest::Digest;

/// Set in the child: the directory `setup` prepared.
const CHILD: &str = "KILN_TEST_PUBLISH_FULL_DISK";

/// The child's file size limit: more than the image, less than the SBOM.
const FILE_LIMIT: u64 = 512 << 10;

/// A tested `hello 1.0` image in `root/out`, its SBOM, a store holding its
/// passing verdict, and a key.
fn setup(root: &Path) -> PublishOptions {
    let store = Store::new(root.join("store"));
    store.init().unwrap();
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    let image = out.join("hello-1.0.raw");
    let bytes: Vec<u8> = (0..256u32 << 10).map(|i| (i % 251) as u8).collect();
    std::fs::write(&image, &bytes).unwrap();
    let digest = Digest::of_file(&image).unwrap();
    let mut m = sample();
    m.image.digest = digest;
    m.image.size = bytes.len() as u64;
    std::fs::write(
        out.join("hello-1.0.manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("hello-1.0.spdx.json"), vec![b' '; 1 << 20]).unwrap();
    verdict::record(
        &store,
        &Verdict {
            schema: verdict::SCHEMA.into(),
            image_digest: digest,
            image: "hello 1.0".into(),
            passed: true,
            failed_check: None,
            checks: Vec::new(),
            phases: Default::default(),
            duration_secs: 9.5,
            qemu_version: "QEMU emulator version 7.2.15".into(),
            firmware: "OVMF_CODE_4M.fd".into(),
            accel: "tcg".into(),
            started_at: "2024-05-01T12:00:00Z".into(),
            kiln_version: "0.1.0".into(),
            console_log: None,
            secure_boot: false,
        },
    )
    .unwrap();
    let key = root.join("release.key");
    sign::keygen(&key, false).unwrap();
    PublishOptions {
        image,
        channel: "stable".into(),
        key,
        releases: Releases::new(root.join("releases")),
        oci: Vec::new(),
    }
}

/// The regular files under `dir`, at any depth.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn a_publish_that_fails_half_way_leaves_nothing_behind() {
    if let Some(root) = std::env::var_os(CHILD) {
        // The child: write no file past the limit, and fail instead of dying.
        let mut xfsz = nix::sys::signal::SigSet::empty();
        xfsz.add(nix::sys::signal::Signal::SIGXFSZ);
        xfsz.thread_block().unwrap();
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_FSIZE,
            FILE_LIMIT,
            FILE_LIMIT,
        )
        .unwrap();
        let root = PathBuf::from(root);
        let store = Store::new(root.join("store"));
        let e = publish(&store, &setup_again(&root)).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("spdx.json"), "{text}");
        assert_eq!(text.matches("os error 27").count(), 1, "{text}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = setup(dir.path());
    let me = std::env::current_exe().unwrap();
    let out = std::process::Command::new(me)
        .args([
            "publish::release_tests::a_publish_that_fails_half_way_leaves_nothing_behind",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child: {}",
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
    let release = dir.path().join("releases/hello/1.0");
    assert_eq!(files(&release), Vec::<PathBuf>::new());

    // Room again: the same publish completes, every file signed.
    let store = Store::new(dir.path().join("store"));
    let report = publish(&store, &opts).unwrap();
    assert_eq!(report.files.len(), 5);
    for f in &report.files {
        assert!(f.path.is_file() && f.signature.is_file(), "{f:?}");
    }
}

/// The child's options for what the parent's [`setup`] prepared.
fn setup_again(root: &Path) -> PublishOptions {
    PublishOptions {
        image: root.join("out/hello-1.0.raw"),
        channel: "stable".into(),
        key: root.join("release.key"),
        releases: Releases::new(root.join("releases")),
        oci: Vec::new(),
    }
}
