//! Lock files with the real mirror: `kiln lock` pins hello's packages; a
//! build from the lock gives the same image; with every layer cached the
//! rebuild needs no network at all; a version the mirror does not have fails
//! with exit 3 naming the package; a .deb whose sha256 differs from the lock
//! fails with exit 1; a lock taken on another Debian suite fails with exit 2
//! naming the layer.

use std::fs;

use kiln_qemu_tests::{kiln, kiln_json, layers_cached, offline_env, require_tool, scratch_repo};

#[test]
fn lock_pins_and_rebuilds_offline() {
    require_tool("mmdebstrap", "mmdebstrap");
    let repo = scratch_repo();
    let store = repo.path().join("store");
    let recipe = repo.path().join("recipes/hello.toml");
    let out = repo.path().join("out");
    let r = recipe.to_str().unwrap();
    let o = out.to_str().unwrap();

    let plain = kiln_json(&["build", r, "-o", o], &store, &[]);
    kiln_json(&["lock", r], &store, &[]);
    let lock_path = repo.path().join("recipes/hello.lock");
    let lock = fs::read_to_string(&lock_path).unwrap();
    assert!(lock.contains("name = \"busybox-static\""), "{lock}");

    let locked = kiln_json(&["build", r, "-o", o], &store, &[]);
    assert_eq!(
        locked["image"]["digest"], plain["image"]["digest"],
        "the locked build installs the same packages"
    );

    // Network cut: proxies at a closed port, and an mmdebstrap that fails.
    let env = offline_env(&repo.path().join("shim"), &["mmdebstrap"]);
    let offline = kiln_json(&["build", r, "-o", o], &store, &env);
    assert!(layers_cached(&offline).iter().all(|c| *c), "{offline}");
    assert_eq!(offline["image"]["digest"], locked["image"]["digest"]);

    // A lock taken on another suite: exit 2 naming the layer, before anything is built.
    assert!(lock.contains("suite = \"trixie\""), "{lock}");
    fs::write(
        &lock_path,
        lock.replace("suite = \"trixie\"", "suite = \"bookworm\""),
    )
    .unwrap();
    let res = kiln(&["build", r, "-o", o], &store, &env);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("base/busybox") && err.contains("bookworm") && err.contains("trixie"),
        "{err}"
    );

    // A locked version the mirror does not have: exit 3, naming the package.
    let i = lock.find("name = \"busybox-static\"").unwrap();
    let v = i + lock[i..].find("version = \"").unwrap() + "version = \"".len();
    let end = v + lock[v..].find('"').unwrap();
    let mut bad = lock.clone();
    bad.replace_range(v..end, "1:0.0.1-kiln-test");
    assert_ne!(bad, lock);
    fs::write(&lock_path, &bad).unwrap();
    let res = kiln(&["build", r, "-o", o], &store, &[]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(3), "{err}");
    assert!(err.contains("busybox-static"), "{err}");

    // A .deb that does not hash to what the lock says: exit 1.
    let i = lock.find("name = \"busybox-static\"").unwrap();
    let j = i + lock[i..].find("sha256 = \"sha256:").unwrap() + "sha256 = \"sha256:".len();
    let mut tampered = lock.clone();
    tampered.replace_range(j..j + 64, &"0".repeat(64));
    fs::write(&lock_path, &tampered).unwrap();
    let res = kiln(&["build", r, "-o", o], &store, &[]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("busybox-static") && err.contains("the lock says"),
        "{err}"
    );
}
