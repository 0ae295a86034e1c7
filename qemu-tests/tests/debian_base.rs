//! The stripped Debian base (trixie) boots systemd from the read-only verity
//! root to multi-user.target with no failed unit, and powers off cleanly; the
//! booted kernel is trixie's 6.12, and the stripped base layer is at most
//! 80 MiB uncompressed with no apt and no perl left in it.

use kiln_qemu_tests::{kiln, repo_root, require_tool, shared_store, stored_layer};

#[test]
fn debian_base_reaches_multi_user_and_powers_off() {
    require_tool("mmdebstrap", "mmdebstrap");
    let dir = tempfile::tempdir().unwrap();
    let recipe = repo_root().join("recipes/debian-base.toml");
    let out_dir = dir.path().join("out");
    let out = kiln(
        &[
            "test",
            recipe.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
            "--json",
        ],
        &shared_store("debian"),
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{v:#}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["passed"], true);
    let console = std::fs::read_to_string(out_dir.join("debian-base-13.0.console.log")).unwrap();
    assert!(console.contains("kiln-init: /dev/mapper/root"), "{console}");
    assert!(!console.contains("FAILED"), "a unit failed:\n{console}");
    assert!(
        console.contains("Linux version 6.12."),
        "not trixie's kernel:\n{console}"
    );

    let base = stored_layer(&shared_store("debian"), "base/debian");
    let size = base["tar_size"].as_u64().unwrap();
    assert!(
        size <= 80 << 20,
        "base/debian is {size} bytes uncompressed, over 80 MiB"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("debian-base-13.0.manifest.json")).unwrap(),
    )
    .unwrap();
    let packages = manifest.to_string();
    for gone in ["\"perl-base\"", "\"apt\""] {
        assert!(!packages.contains(gone), "{gone} is still in the image");
    }
}
