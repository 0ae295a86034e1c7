//! Issue 7's acceptance: bit-for-bit reproducible images, proven.
//! - hello built in two directories, one under `faketime` (every process of
//!   the build sees a clock three days ahead) with umask 077 and another
//!   TZ, gives identical files;
//! - `kiln diff` of hello 1.0 against a copy whose app page changed lists
//!   exactly that file;
//! - `kiln build --check-reproducible` passes for every recipe in `recipes/`.
//!
//! These build with the real Debian mirror; nothing here boots.

use std::path::Path;
use std::process::Command;

use kiln_qemu_tests::{
    kiln, kiln_bin, kiln_json, layers_cached, repo_root, require_tool, scratch_repo,
};

fn build(recipe: &Path, out: &Path, store: &Path) -> serde_json::Value {
    kiln_json(
        &[
            "build",
            recipe.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        store,
        &[],
    )
}

#[test]
fn hello_is_identical_under_faketime_umask_and_tz_and_diff_names_the_changed_page() {
    require_tool("mmdebstrap", "mmdebstrap");
    require_tool("faketime", "faketime");
    let a = scratch_repo();
    let b = scratch_repo();
    let (out_a, out_b) = (a.path().join("out"), b.path().join("out"));
    let ra = build(
        &a.path().join("recipes/hello.toml"),
        &out_a,
        &a.path().join("store"),
    );
    assert_eq!(ra["image"]["cached"], false);

    // The second build: another directory and store, umask 077, UTC+14, and
    // a clock three days ahead for every process (kiln, mmdebstrap, apt,
    // dpkg). NO_FAKE_STAT: libfaketime would otherwise shift the file
    // times tar reads from the packages, which is not the clock.
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec faketime -f +3d \"$@\"")
        .arg("sh")
        .arg(kiln_bin())
        .arg("--store")
        .arg(b.path().join("store"))
        .args(["build", "--json", "recipes/hello.toml", "-o"])
        .arg(&out_b)
        .current_dir(b.path())
        .env("TZ", "Pacific/Kiritimati")
        .env("NO_FAKE_STAT", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ra["image"]["digest"], rb["image"]["digest"]);
    for f in [
        "hello-1.0.raw",
        "hello-1.0.manifest.json",
        "hello-1.0.spdx.json",
        "hello-1.0.roothash",
        "SHA256SUMS",
    ] {
        assert_eq!(
            std::fs::read(out_a.join(f)).unwrap(),
            std::fs::read(out_b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_a.join("hello-1.0.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["epoch_source"], "derived", "{m}");

    // A no-op rebuild copies nothing: the image is up to date.
    let again = build(
        &a.path().join("recipes/hello.toml"),
        &out_a,
        &a.path().join("store"),
    );
    assert_eq!(again["image"]["cached"], true);
    assert_eq!(again["image"]["digest"], ra["image"]["digest"]);

    // Change the app's page in B: only the app layer is rebuilt, and
    // `kiln diff` lists exactly that file.
    let page = b
        .path()
        .join("layers/apps/hello/files/srv/hello/index.html");
    let text = std::fs::read_to_string(&page).unwrap();
    std::fs::write(
        &page,
        text.replace("hello from kiln", "hello from kiln, changed"),
    )
    .unwrap();
    let rc = build(
        &b.path().join("recipes/hello.toml"),
        &out_b,
        &b.path().join("store"),
    );
    assert_eq!(layers_cached(&rc), [true, false]);
    let d = kiln(
        &[
            "diff",
            "--json",
            out_a.join("hello-1.0.raw").to_str().unwrap(),
            out_b.join("hello-1.0.raw").to_str().unwrap(),
        ],
        &a.path().join("store"),
        &[],
    );
    assert_eq!(
        d.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&d.stderr)
    );
    let diff: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    let changed: Vec<&str> = diff["files"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["/srv/hello/index.html"], "{diff}");
    assert_eq!(diff["files"]["added"].as_array().unwrap().len(), 0);
    assert_eq!(diff["files"]["removed"].as_array().unwrap().len(), 0);
    // The human form names the file too.
    let h = kiln(
        &[
            "diff",
            out_a.join("hello-1.0.raw").to_str().unwrap(),
            out_b.join("hello-1.0.raw").to_str().unwrap(),
        ],
        &a.path().join("store"),
        &[],
    );
    let text = String::from_utf8_lossy(&h.stdout);
    assert!(text.contains("~ /srv/hello/index.html"), "{text}");
}

#[test]
fn every_recipe_passes_check_reproducible() {
    require_tool("mmdebstrap", "mmdebstrap");
    let mut recipes: Vec<_> = std::fs::read_dir(repo_root().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    recipes.sort();
    assert!(recipes.len() >= 3, "{recipes:?}");
    let mut failures = Vec::new();
    for r in &recipes {
        let dir = tempfile::tempdir().unwrap();
        let out = kiln(
            &[
                "build",
                "--check-reproducible",
                "--json",
                r.to_str().unwrap(),
                "-o",
                dir.path().join("out").to_str().unwrap(),
            ],
            &dir.path().join("store"),
            &[],
        );
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        eprintln!(
            "{}: exit {:?}, {}",
            r.display(),
            out.status.code(),
            serde_json::to_string(&rep["builds"]).unwrap_or_default()
        );
        if !out.status.success() || rep["reproducible"] != true {
            failures.push(format!(
                "{}: {}\n{}",
                r.display(),
                rep["difference"],
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
