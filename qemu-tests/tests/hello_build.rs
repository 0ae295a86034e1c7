//! The hello recipe built with the real Debian packages: a cold build, a warm
//! rebuild that must not call mmdebstrap, and an app-only change.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use kiln_qemu_tests::{kiln_json, require_tool, scratch_repo};

fn cached(r: &serde_json::Value) -> Vec<(String, bool)> {
    r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["cached"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn hello_builds_then_rebuilds_from_cache_without_mmdebstrap() {
    require_tool("mmdebstrap", "mmdebstrap");
    let repo = scratch_repo();
    let store = repo.path().join("store");
    let out = repo.path().join("out");
    let recipe = repo.path().join("recipes/hello.toml");
    let args = [
        "build",
        recipe.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];

    let cold = kiln_json(&args, &store, &[]);
    assert_eq!(
        cached(&cold),
        [("base/busybox".into(), false), ("apps/hello".into(), false)]
    );

    // A stand-in mmdebstrap that fails loudly: a warm build must not run it.
    let shim = repo.path().join("shim");
    fs::create_dir_all(&shim).unwrap();
    fs::write(
        shim.join("mmdebstrap"),
        format!("#!/bin/sh\ntouch {}/called\nexit 99\n", shim.display()),
    )
    .unwrap();
    fs::set_permissions(shim.join("mmdebstrap"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", shim.display(), std::env::var("PATH").unwrap());
    let warm = kiln_json(&args, &store, &[("PATH", path.clone())]);
    assert_eq!(
        cached(&warm),
        [("base/busybox".into(), true), ("apps/hello".into(), true)]
    );
    assert!(
        !shim.join("called").exists(),
        "mmdebstrap was called for a cached layer"
    );
    assert_eq!(cold["image"]["digest"], warm["image"]["digest"]);

    // Editing only the app's page rebuilds only the app layer.
    fs::write(
        repo.path()
            .join("layers/apps/hello/files/srv/hello/index.html"),
        "<h1>hello, changed</h1>\n",
    )
    .unwrap();
    let app = kiln_json(&args, &store, &[("PATH", path)]);
    assert_eq!(
        cached(&app),
        [("base/busybox".into(), true), ("apps/hello".into(), false)]
    );
    assert_eq!(app["layers"][0]["digest"], cold["layers"][0]["digest"]);
    assert_ne!(app["image"]["digest"], cold["image"]["digest"]);
    assert!(!shim.join("called").exists());
}
