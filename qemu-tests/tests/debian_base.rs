//! The stripped Debian base boots systemd from the read-only verity root to
//! multi-user.target with no failed unit, and powers off cleanly.

use kiln_qemu_tests::{kiln, repo_root, require_tool};

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
        &dir.path().join("store"),
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{v:#}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["passed"], true);
    let console = std::fs::read_to_string(out_dir.join("debian-base-12.0.console.log")).unwrap();
    assert!(console.contains("kiln-init: /dev/mapper/root"), "{console}");
    assert!(!console.contains("FAILED"), "a unit failed:\n{console}");
}
