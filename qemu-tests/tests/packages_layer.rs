//! A packages layer: nginx installed with apt over the Debian base in a
//! chroot (maintainer scripts run), kept as the difference. The composed root
//! has the program and a dpkg database that says it is installed; building
//! again in a fresh store gives the same layer digest; nothing stays mounted.

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_qemu_tests::{kiln_json, require_tool, scratch_repo};

const LAYER: &str = r#"# nginx from trixie, installed with apt over the layers below.
[layer]
kind = "packages"
description = "nginx"

[debian]
suite = "trixie"
packages = ["nginx"]
"#;

const RECIPE: &str = r#"[image]
name = "web-root"
version = "1"
layers = ["../layers/base/debian", "../layers/pkgs/nginx"]
source_date_epoch = 1700000000

[disk]
format = "tar"
"#;

/// One file of a tar, read with GNU tar (an outside oracle).
fn tar_file(tar: &Path, member: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(member)
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "{member} is not in {}: {}",
        tar.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn layer_digest(report: &serde_json::Value, name: &str) -> String {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in {report:#}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn no_kiln_mounts() {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("kiln-apt-"),
        "a mount of the apt chroot leaked to the host:\n{mounts}"
    );
}

#[test]
fn nginx_package_layer_is_installed_and_reproducible() {
    require_tool("mmdebstrap", "mmdebstrap");
    require_tool("tar", "tar");
    let repo = scratch_repo();
    let layer_dir = repo.path().join("layers/pkgs/nginx");
    fs::create_dir_all(&layer_dir).unwrap();
    fs::write(layer_dir.join("layer.toml"), LAYER).unwrap();
    let recipe = repo.path().join("recipes/web-root.toml");
    fs::write(&recipe, RECIPE).unwrap();

    let build = |name: &str| {
        let store = repo.path().join(format!("store-{name}"));
        let out = repo.path().join(format!("out-{name}"));
        let r = kiln_json(
            &[
                "build",
                recipe.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &store,
            &[],
        );
        no_kiln_mounts();
        let leftovers: Vec<_> = fs::read_dir(store.join("tmp")).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "the store's tmp directory keeps {leftovers:?}"
        );
        (r, out.join("web-root-1.tar"), store)
    };

    let (first, tar, store) = build("a");
    let nginx = Command::new("tar")
        .arg("-tvf")
        .arg(&tar)
        .arg("usr/sbin/nginx")
        .output()
        .unwrap();
    assert!(
        nginx.status.success() && String::from_utf8_lossy(&nginx.stdout).starts_with("-rwxr-xr-x"),
        "usr/sbin/nginx is not an executable file in the composed root: {}",
        String::from_utf8_lossy(&nginx.stderr)
    );
    let status = tar_file(&tar, "var/lib/dpkg/status");
    let stanza = status
        .split("\n\n")
        .find(|s| s.starts_with("Package: nginx\n"))
        .unwrap_or_else(|| panic!("nginx is not in var/lib/dpkg/status"));
    assert!(
        stanza.contains("\nStatus: install ok installed\n"),
        "{stanza}"
    );
    // apt's lists, caches and logs stay out of the layer.
    let layer = first["layers"][1]["digest"].as_str().unwrap();
    let blob = store
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let listing = Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(&blob)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    for volatile in [
        "var/lib/apt/lists/",
        "var/cache/apt/",
        "var/log/dpkg.log",
        "var/lib/dpkg/status-old",
    ] {
        assert!(
            !listing.lines().any(|l| l.starts_with(volatile)),
            "{volatile} is in the layer"
        );
    }
    // The download cache kept the .debs.
    assert!(fs::read_dir(store.join("debs"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("nginx_")));

    let (second, _, _) = build("b");
    assert_eq!(
        layer_digest(&first, "base/debian"),
        layer_digest(&second, "base/debian"),
        "the Debian base differs between two builds in fresh stores"
    );
    assert_eq!(
        layer_digest(&first, "pkgs/nginx"),
        layer_digest(&second, "pkgs/nginx"),
        "the packages layer differs between two builds in fresh stores"
    );
    assert_eq!(first["image"]["digest"], second["image"]["digest"]);
}
