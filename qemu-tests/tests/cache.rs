//! The layer cache in a registry (issue 15), with Debian's `docker-registry`
//! on loopback and recipes/hello.toml: runners with empty stores share one
//! registry repository. The first builds every layer and pushes it, signed;
//! the second, read-only and requiring that signature, takes every layer
//! from the registry with mmdebstrap and apt replaced by programs that fail,
//! and writes the same image digest; one that trusts another key refuses
//! every entry and builds everything itself, to the same digest; and one
//! that finds a blob corrupted in the registry's storage warns, builds that
//! layer itself and still gets the same digest. Nothing here boots.

use std::path::Path;

use kiln_qemu_tests::{kiln, kiln_json, offline_env, require_tool, Registry};

/// Each layer's `source` in a `kiln build --json` report, bottom first.
fn sources(report: &serde_json::Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .expect("the report lists its layers")
        .iter()
        .map(|l| {
            l["source"]
                .as_str()
                .expect("each layer has a source")
                .to_string()
        })
        .collect()
}

fn build(store: &Path, out: &Path, extra: &[&str], envs: &[(&str, String)]) -> serde_json::Value {
    let out = out.to_str().unwrap();
    let mut args = vec!["build", "recipes/hello.toml", "-o", out];
    args.extend_from_slice(extra);
    kiln_json(&args, store, envs)
}

#[test]
fn runners_share_layers_through_a_registry_and_never_use_a_bad_blob() {
    require_tool("mmdebstrap", "mmdebstrap");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::start(d);
    let cache = format!("oci://127.0.0.1:{}/kiln/cache", reg.port);
    // A minisign key pair (unencrypted) at `key` and `key.pub`.
    let keygen = |key: &Path| {
        let out = kiln(
            &["keygen", "-o", key.to_str().unwrap(), "--unencrypted"],
            &d.join("keystore"),
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = d.join("cache.key");
    keygen(&key);
    let pubkey = d.join("cache.key.pub");

    // Runner 1: empty store, builds everything and pushes it, signed.
    let first = build(
        &d.join("store1"),
        &d.join("out1"),
        &["--cache", &cache, "--cache-sign-key", key.to_str().unwrap()],
        &[],
    );
    let n = first["layers"].as_array().unwrap().len();
    assert_eq!(sources(&first), vec!["built"; n], "{first:#}");
    let digest = first["image"]["digest"].as_str().unwrap().to_string();

    // Runner 2: empty store, read-only, signature required, and no way to
    // build a layer: every layer comes from the registry.
    let no_build = offline_env(&d.join("bin"), &["mmdebstrap", "apt-get", "apt", "dpkg"]);
    let no_build: Vec<(&str, String)> =
        no_build.into_iter().filter(|(k, _)| *k == "PATH").collect();
    let second = build(
        &d.join("store2"),
        &d.join("out2"),
        &[
            "--cache",
            &cache,
            "--cache-read-only",
            "--cache-pubkey",
            pubkey.to_str().unwrap(),
        ],
        &no_build,
    );
    assert_eq!(sources(&second), vec!["registry"; n], "{second:#}");
    assert!(second["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["cached"] == true));
    assert_eq!(second["image"]["digest"], digest.as_str());
    // The manifest (and so the provenance) names the cache each layer came from.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second["manifest"].as_str().unwrap()).unwrap())
            .unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(l["cache"], cache.as_str(), "{l:#}");
    }
    // The registry's entries are what skopeo, an outside reader, sees.
    require_tool("skopeo", "skopeo");
    let top = first["layers"][n - 1].clone();
    let tag = top["key"].as_str().unwrap().replace("sha256:", "sha256-");
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://127.0.0.1:{}/kiln/cache:{tag}", reg.port))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(m["artifactType"], "application/vnd.kiln.layer-key.v1");
    assert_eq!(m["layers"][0]["digest"], top["digest"]);

    // A runner that trusts another key uses none of these entries: it
    // builds every layer itself, warning about each, with the same result.
    let other = d.join("other.key");
    keygen(&other);
    let out4 = d.join("out4");
    let other_pub = d.join("other.key.pub");
    let args = [
        "build",
        "recipes/hello.toml",
        "-o",
        out4.to_str().unwrap(),
        "--cache",
        &cache,
        "--cache-read-only",
        "--cache-pubkey",
        other_pub.to_str().unwrap(),
        "--json",
    ];
    let out = kiln(&args, &d.join("store4"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let fourth: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sources(&fourth), vec!["built"; n], "{fourth:#}");
    assert_eq!(fourth["image"]["digest"], digest.as_str());
    assert_eq!(
        stderr.matches("not by the given public key").count(),
        n,
        "one warning per refused entry: {stderr}"
    );

    // Runner 3: the top layer's blob is corrupted in the registry's
    // storage. It is refused with a warning naming it, the layer is built
    // here, and the image is the same.
    let blob = reg.blob_file(top["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let out3 = d.join("out3");
    let args = [
        "build",
        "recipes/hello.toml",
        "-o",
        out3.to_str().unwrap(),
        "--cache",
        &cache,
        "--cache-read-only",
        "--json",
    ];
    let out = kiln(&args, &d.join("store3"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let third: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut want = vec!["registry"; n];
    want[n - 1] = "built";
    assert_eq!(sources(&third), want, "{third:#}");
    assert_eq!(third["image"]["digest"], digest.as_str());
    assert!(
        stderr.contains(top["digest"].as_str().unwrap()) && stderr.contains("corrupt"),
        "the warning names the bad blob: {stderr}"
    );
}
