//! Signed publication end to end (issue 6): hello built with the real tools,
//! refused by `kiln publish` until a passing verdict exists for its digest,
//! signed so the stock `minisign` verifies it, released on channels with
//! promote and rollback, and pushed to a real registry (Debian's
//! `docker-registry`, started here on loopback) that `skopeo` reads and
//! `kiln pull` fetches back from.
//!
//! These tests do not boot: the passing verdict is written through
//! `kiln::store::verdict::record` as test set-up (qemu-tests/tests/hello_disk.rs and
//! `kiln test` cover booting). Layers are built once into a cache store in
//! CARGO_TARGET_TMPDIR; every test publishes from a fresh store of its own,
//! so verdicts never leak between tests or runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use kiln_qemu_tests::{
    kiln, kiln_json, record_passing_verdict, require_tool, scratch_repo, Registry,
};

/// The layer cache shared by the tests (content-addressed and append-only,
/// so sharing it across tests and runs is safe).
fn cache_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("publish-cache-store")
}

/// Build hello at `version` into `out` (any version but 1.0 with its own
/// page, so a different digest); returns (image path, digest).
fn build_hello(repo: &Path, version: &str, out: &Path) -> (PathBuf, String) {
    // One build at a time: the first of a run may be cold, the others reuse its layers.
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("mmdebstrap", "mmdebstrap");
    let recipe = repo.join("recipes/hello.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        text.replace("version = \"1.0\"", &format!("version = \"{version}\"")),
    )
    .unwrap();
    if version != "1.0" {
        // The version alone does not change the disk's bytes; the page does.
        std::fs::write(
            repo.join("layers/apps/hello/files/srv/hello/index.html"),
            format!("<h1>hello {version}</h1>\n"),
        )
        .unwrap();
    }
    let args = [
        "build",
        recipe.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    let r = kiln_json(&args, &cache_store(), &[]);
    (
        PathBuf::from(r["image"]["path"].as_str().unwrap()),
        r["image"]["digest"].as_str().unwrap().to_string(),
    )
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("ci.key");
    let r = kiln_json(
        &["keygen", "-o", key.to_str().unwrap(), "--unencrypted"],
        &dir.join("unused-store"),
        &[],
    );
    assert_eq!(r["encrypted"], false);
    (key.clone(), PathBuf::from(format!("{}.pub", key.display())))
}

fn minisign_verify(file: &Path, pubkey: &Path, sig: &Path) -> Output {
    require_tool("minisign", "minisign");
    Command::new("minisign")
        .arg("-Vm")
        .arg(file)
        .arg("-p")
        .arg(pubkey)
        .arg("-x")
        .arg(sig)
        .output()
        .unwrap()
}

#[test]
fn publish_refuses_untested_then_signs_for_stock_minisign() {
    let repo = scratch_repo();
    let (image, digest) = build_hello(repo.path(), "1.0", &repo.path().join("out"));
    let store = repo.path().join("store");
    let (key, pubkey) = keygen(repo.path());
    let publish = [
        "publish",
        image.to_str().unwrap(),
        "--channel",
        "stable",
        "--key",
        key.to_str().unwrap(),
    ];

    // No verdict for this digest: refused, naming the digest and the verdict.
    let out = kiln(&publish, &store, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&digest) && err.contains("no passing `kiln test` verdict"),
        "{err}"
    );
    assert!(!store.join("releases/channels").exists());

    // A real boot test (QEMU, TCG) records the passing verdict.
    let out = kiln(&["test", image.to_str().unwrap()], &store, &[]);
    ok(&out, "kiln test");
    let mut args = publish.to_vec();
    args.push("--json");
    let out = kiln(&args, &store, &[]);
    ok(&out, "publish");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["digest"], digest.as_str());
    let dir = store.join("releases/hello/1.0");
    let published = dir.join("hello-1.0.raw");
    assert_eq!(
        std::fs::read(&published).unwrap(),
        std::fs::read(&image).unwrap()
    );
    for f in [
        "hello-1.0.raw",
        "hello-1.0.manifest.json",
        "hello-1.0.roothash",
        "hello-1.0.verdict.json",
        "hello-1.0.provenance.json",
    ] {
        let sig = dir.join(format!("{f}.minisig"));
        let out = minisign_verify(&dir.join(f), &pubkey, &sig);
        ok(&out, &format!("minisign -V {f}"));
    }
    let out = minisign_verify(&published, &pubkey, &dir.join("hello-1.0.raw.minisig"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("digest:{digest}")) && said.contains("name:hello\tversion:1.0"),
        "trusted comment: {said}"
    );
    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("hello-1.0.provenance.json")).unwrap())
            .unwrap();
    assert_eq!(prov["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        prov["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );

    // A copy with one byte changed: rejected by minisign and by kiln verify.
    let tampered = repo.path().join("tampered.raw");
    let mut bytes = std::fs::read(&published).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&tampered, bytes).unwrap();
    let sig = dir.join("hello-1.0.raw.minisig");
    assert!(!minisign_verify(&tampered, &pubkey, &sig).status.success());
    let out = kiln(
        &[
            "verify",
            tampered.to_str().unwrap(),
            "--signature",
            sig.to_str().unwrap(),
            "--pubkey",
            pubkey.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tampered.raw"));
    let out = kiln(
        &[
            "verify",
            published.to_str().unwrap(),
            "--pubkey",
            pubkey.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    ok(&out, "kiln verify of the published image");

    let rel = kiln_json(&["releases", "--channel", "stable"], &store, &[]);
    assert_eq!(rel["current"]["digest"], digest.as_str());
    assert_eq!(rel["history"][0]["action"], "publish");
    // Published files are never replaced: the release directory is read back as is.
    let before = std::fs::read(dir.join("hello-1.0.raw.minisig")).unwrap();
    ok(&kiln(&publish, &store, &[]), "re-publish");
    assert_eq!(
        std::fs::read(dir.join("hello-1.0.raw.minisig")).unwrap(),
        before
    );
}

#[test]
fn channels_promote_and_rollback_across_two_versions() {
    let repo = scratch_repo();
    let store = repo.path().join("store");
    let (key, _) = keygen(repo.path());
    let (img1, d1) = build_hello(repo.path(), "1.0", &repo.path().join("out1"));
    let (img2, d2) = build_hello(repo.path(), "1.1", &repo.path().join("out2"));
    assert_ne!(d1, d2);
    for (img, d, v) in [(&img1, &d1, "hello 1.0"), (&img2, &d2, "hello 1.1")] {
        record_passing_verdict(&store, d, v);
        for channel in ["canary", "stable"] {
            let out = kiln(
                &[
                    "publish",
                    img.to_str().unwrap(),
                    "--channel",
                    channel,
                    "--key",
                    key.to_str().unwrap(),
                ],
                &store,
                &[],
            );
            ok(&out, "publish");
        }
    }
    let cur = |c: &str| {
        kiln_json(&["releases", "--channel", c], &store, &[])["current"]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(cur("stable"), d2);
    let r = kiln_json(&["rollback", "--channel", "stable"], &store, &[]);
    assert_eq!(r["current"]["digest"], d1.as_str());
    assert_eq!(r["current"]["action"], "rollback");
    assert_eq!(r["history"].as_array().unwrap().len(), 3);
    // Nothing before 1.0: a second rollback is refused, and changes nothing.
    let out = kiln(&["rollback", "--channel", "stable"], &store, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(cur("stable"), d1);
    // Promote 1.1 from canary (by a digest prefix) back onto stable.
    let r = kiln_json(
        &["promote", &d2[..19], "--from", "canary", "--to", "stable"],
        &store,
        &[],
    );
    assert_eq!(r["current"]["digest"], d2.as_str());
    assert_eq!(r["current"]["from"], "canary");
    assert_eq!(r["history"].as_array().unwrap().len(), 4);
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    require_tool("skopeo", "skopeo");
    let out = Command::new("skopeo").args(args).output().unwrap();
    ok(&out, &format!("skopeo {args:?}"));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn oci_push_is_read_by_skopeo_and_pulled_back_verified() {
    let repo = scratch_repo();
    let (image, digest) = build_hello(repo.path(), "1.0", &repo.path().join("out"));
    let store = repo.path().join("store");
    let (key, pubkey) = keygen(repo.path());
    let reg = Registry::start(repo.path());
    let target = format!("oci://127.0.0.1:{}/kiln/hello", reg.port);
    record_passing_verdict(&store, &digest, "hello 1.0");
    let r = kiln_json(
        &[
            "publish",
            image.to_str().unwrap(),
            "--channel",
            "stable",
            "--key",
            key.to_str().unwrap(),
            "--to",
            &target,
        ],
        &store,
        &[],
    );
    let push = &r["oci"][0];
    assert!(push["reference"].as_str().unwrap().contains(&format!(
        "kiln/hello:1.0@{}",
        push["manifest_digest"].as_str().unwrap()
    )));

    let docker = format!("docker://127.0.0.1:{}/kiln/hello", reg.port);
    let tags = skopeo(&["list-tags", "--tls-verify=false", &docker]);
    assert!(
        tags["Tags"].as_array().unwrap().iter().any(|t| t == "1.0"),
        "{tags}"
    );
    let m = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{docker}:1.0"),
    ]);
    assert_eq!(m["artifactType"], "application/vnd.kiln.image.v1");
    assert_eq!(
        m["layers"][0]["annotations"]["dev.kiln.image.digest"],
        digest.as_str()
    );

    let pulled = repo.path().join("pulled");
    let src = format!("{target}:1.0");
    let p = kiln_json(
        &[
            "pull",
            &src,
            "-o",
            pulled.to_str().unwrap(),
            "--pubkey",
            pubkey.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    assert_eq!(p["digest"], digest.as_str());
    assert_eq!(
        std::fs::read(pulled.join("hello-1.0.raw")).unwrap(),
        std::fs::read(&image).unwrap(),
        "kiln pull did not write back identical bytes"
    );
    // With the root hash sidecar systemd looks for, as the build wrote it.
    let built_roothash = std::fs::read(image.with_extension("roothash")).unwrap();
    assert_eq!(
        std::fs::read(pulled.join("hello-1.0.roothash")).unwrap(),
        built_roothash
    );
    assert_eq!(
        std::fs::read(store.join("releases/hello/1.0/hello-1.0.roothash")).unwrap(),
        built_roothash
    );
    // The signature it brought back is one the stock minisign accepts.
    ok(
        &minisign_verify(
            &pulled.join("hello-1.0.raw"),
            &pubkey,
            &pulled.join("hello-1.0.raw.minisig"),
        ),
        "minisign -V of the pulled image",
    );

    // Another key: refused.
    let other = repo.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, other_pub) = keygen(&other);
    let out = kiln(
        &[
            "pull",
            &src,
            "-o",
            other.join("p").to_str().unwrap(),
            "--pubkey",
            other_pub.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A tampered blob in the registry's storage: the pull fails and writes no image.
    let layer = push["layer_digest"].as_str().unwrap();
    let blob = reg.blob_file(layer);
    let mut b = std::fs::read(&blob).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&blob, b).unwrap();
    let bad = repo.path().join("pulled-bad");
    let out = kiln(
        &[
            "pull",
            &src,
            "-o",
            bad.to_str().unwrap(),
            "--pubkey",
            pubkey.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(layer) && err.contains("tampered"), "{err}");
    assert!(!bad.join("hello-1.0.raw").exists());
}
