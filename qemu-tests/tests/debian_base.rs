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
    // What the image holds, not what kiln's manifest says: the root
    // partition read back from the disk image, file by file.
    let image = out_dir.join("debian-base-13.0.raw");
    let parts = kiln::read::disk::read_partitions(&image).unwrap();
    let root_type = kiln::fs::gpt::ROOT_X86_64_TYPE.to_string().to_lowercase();
    let (_, root) = parts
        .iter()
        .find(|(p, _)| p.type_guid.to_string().to_lowercase() == root_type)
        .expect("a root partition");
    let tree = kiln::fs::ext4::read(root).unwrap();
    let paths: Vec<&str> = tree.iter().map(|(p, _)| p).collect();
    assert!(
        paths.contains(&"usr/lib/systemd/systemd") && paths.contains(&"usr/bin/dpkg"),
        "the root read back is not the Debian base ({} paths)",
        paths.len()
    );
    // Files and links only: other packages own directories such as
    // /etc/apt or /usr/share/perl5, which stay (empty) when apt and perl go.
    let not_dirs: Vec<&str> = tree
        .iter()
        .filter(|(_, n)| !matches!(n.kind, kiln::fs::tree::NodeKind::Dir))
        .map(|(p, _)| p)
        .collect();
    let left: Vec<&&str> = not_dirs
        .iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            ["apt", "apt-get", "apt-config", "perl"].contains(&name)
                || name.starts_with("perl5")
                || p.starts_with("usr/lib/apt")
                || p.starts_with("usr/share/perl")
                || p.starts_with("usr/lib/x86_64-linux-gnu/perl")
                || p.starts_with("var/lib/dpkg/info/apt.")
                || p.starts_with("var/lib/dpkg/info/perl-base.")
        })
        .collect();
    assert!(
        left.is_empty(),
        "apt or perl is still in the image: {left:?}"
    );
    let status = kiln::model::deb::dpkg_status(&tree);
    let installed: Vec<String> = kiln::model::deb::parse_dpkg_status(&status)
        .into_iter()
        .filter(|e| e.status.ends_with(" installed"))
        .map(|e| e.package)
        .collect();
    assert!(installed.iter().any(|p| p == "dpkg"), "{installed:?}");
    for gone in ["apt", "perl-base"] {
        assert!(
            !installed.iter().any(|p| p == gone),
            "the image's dpkg status lists {gone} as installed"
        );
    }
}
