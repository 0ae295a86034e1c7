//! Debian bookworm (oldstable) still builds and boots: hello on the bookworm
//! busybox base (not merged-/usr when unpacked, uncompressed `.ko` modules,
//! kernel 6.1) passes `kiln test`, and `kiln inspect` names its kernel.

use kiln_qemu_tests::{kiln, kiln_json, repo_root, require_tool};

#[test]
fn hello_on_bookworm_builds_and_passes_its_boot_test() {
    require_tool("mmdebstrap", "mmdebstrap");
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let recipe = repo_root().join("recipes/hello-bookworm.toml");
    let out_dir = dir.path().join("out");
    let built = kiln_json(
        &[
            "build",
            recipe.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    let image = built["image"]["path"].as_str().unwrap().to_string();
    let inspect = kiln_json(&["inspect", &image], &store, &[]);
    let kernel = inspect.to_string();
    assert!(
        kernel.contains("6.1.0-"),
        "bookworm's kernel is 6.1: {inspect:#}"
    );

    let out = kiln(&["test", &image, "--json"], &store, &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{v:#}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["passed"], true, "{v:#}");
}
