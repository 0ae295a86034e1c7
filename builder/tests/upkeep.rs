//! End-to-end tests of `kiln gc` and `kiln fsck` on a store a real build
//! wrote: what a killed build leaves behind is gone after a rebuild and a
//! gc; a corrupt blob is named, exits 1, is repaired, and the next build
//! recreates it. No network and no QEMU: the recipe's layers are files only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

struct Fixture {
    dir: tempfile::TempDir,
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            &root.join("layers/base/layer.toml"),
            "[layer]\nkind = \"base\"\n\n[files]\ndir = \"files\"\n",
        );
        write(&root.join("layers/base/files/etc/hostname"), "mini\n");
        write(
            &root.join("layers/app/layer.toml"),
            "[layer]\nkind = \"app\"\n\n[files]\ndir = \"files\"\n",
        );
        write(&root.join("layers/app/files/srv/index.html"), "v1\n");
        write(
            &root.join("recipes/app.toml"),
            r#"[image]
name = "app"
version = "1.0"
layers = ["../layers/base", "../layers/app"]
source_date_epoch = 1700000000

[disk]
format = "tar"
"#,
        );
        Fixture { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn kiln(&self, args: &[&str]) -> Output {
        Command::new(KILN)
            .args(args)
            .arg("--store")
            .arg(self.store())
            // $TMPDIR is swept by gc: keep this test's to itself.
            .env("TMPDIR", self.dir.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.kiln(&[args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "kiln {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn build(&self) -> Value {
        let recipe = self.dir.path().join("recipes/app.toml");
        let out = self.out();
        self.json(&[
            "build",
            recipe.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn removed(report: &Value, category: &str) -> u64 {
    report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == category)
        .unwrap()["count"]
        .as_u64()
        .unwrap()
}

#[test]
fn leftovers_of_killed_builds_are_gone_after_a_rebuild_and_gc() {
    let f = Fixture::new();
    let first = f.build();
    // A fresh build's stamp matches the file it wrote: nothing stale.
    let clean = f.json(&["gc"]);
    assert_eq!(clean["count"], 0, "{clean:#}");

    // What kill -9 left behind, by older and newer kilns.
    let out = f.out();
    fs::create_dir_all(out.join(".kiln-tmp-12345-00000000deadbeef")).unwrap();
    fs::write(
        out.join(".kiln-tmp-12345-00000000deadbeef/app-1.0.tar"),
        b"partial",
    )
    .unwrap();
    fs::write(out.join(".kiln-tmp-12345-00000000deadbeef.lock"), b"").unwrap();
    fs::create_dir_all(out.join(".kiln-tmp-AbC123")).unwrap();
    fs::write(out.join(".kiln-tmp-AbC123/app-1.0.tar"), b"partial").unwrap();
    let tmp = f.store().join("tmp");
    fs::write(tmp.join(".image-4242"), b"partial image").unwrap();
    fs::write(tmp.join(".tmpXyZ123"), b"partial blob").unwrap();
    fs::create_dir_all(tmp.join("kiln-sources-Qw12/var/cache")).unwrap();
    fs::create_dir_all(f.dir.path().join(".kiln-tmp-777-0000000000000001")).unwrap();
    fs::write(
        f.dir.path().join(".kiln-tmp-777-0000000000000001.lock"),
        b"",
    )
    .unwrap();

    let second = f.build();
    assert_eq!(first["image"]["digest"], second["image"]["digest"]);
    // The rebuild already swept the dead build's announced scratch in -o.
    assert!(!out.join(".kiln-tmp-12345-00000000deadbeef").exists());
    assert!(!out.join(".kiln-tmp-12345-00000000deadbeef.lock").exists());
    let report = f.json(&["gc"]);
    assert_eq!(removed(&report, "scratch"), 5, "{report:#}");
    assert_eq!(
        names(&out),
        [
            "SHA256SUMS",
            "app-1.0.manifest.json",
            "app-1.0.spdx.json",
            "app-1.0.tar"
        ]
    );
    assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
    assert!(!f.dir.path().join(".kiln-tmp-777-0000000000000001").exists());
    let fsck = f.kiln(&["fsck"]);
    assert!(fsck.status.success(), "{fsck:?}");
}

#[test]
fn a_corrupt_blob_is_named_repaired_and_rebuilt() {
    let f = Fixture::new();
    let first = f.build();
    let app = first["layers"][1]["digest"].as_str().unwrap();
    let blob = f
        .store()
        .join("blobs/sha256")
        .join(app.trim_start_matches("sha256:"));
    fs::write(&blob, b"flipped").unwrap();

    let out = f.kiln(&["fsck"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}: its content hashes to sha256:",
            blob.display()
        )),
        "{stdout}"
    );
    let report = f.json(&["fsck", "--repair"]);
    assert_eq!(report["problems"], Value::Array(Vec::new()), "{report:#}");
    assert!(!blob.exists());
    assert!(f.kiln(&["fsck"]).status.success());

    // The next build recreates the layer and gives the same image.
    let again = f.build();
    assert_eq!(again["layers"][1]["cached"], false);
    assert_eq!(again["image"]["digest"], first["image"]["digest"]);
    assert!(blob.exists());
    assert!(f.kiln(&["fsck"]).status.success());
}

#[test]
fn keep_last_bounds_the_store() {
    let f = Fixture::new();
    let v1 = f.build();
    write(
        &f.dir.path().join("layers/app/files/srv/index.html"),
        "v2\n",
    );
    let v2 = f.build();
    assert_ne!(v1["image"]["digest"], v2["image"]["digest"]);
    let dry = f.json(&["gc", "--keep-last", "1", "--dry-run"]);
    let report = f.json(&["gc", "--keep-last", "1"]);
    assert_eq!(dry["removed"], report["removed"]);
    // v1's build record, manifest, cached image, app layer key and blob.
    for (category, n) in [
        ("builds", 1),
        ("manifests", 1),
        ("images", 1),
        ("keys", 1),
        ("blobs", 1),
    ] {
        assert_eq!(removed(&report, category), n, "{category}: {report:#}");
    }
    assert_eq!(report["kept"]["images"], 1);
    assert!(f.kiln(&["fsck"]).status.success());
    // What stays is what the newest build needs: it is all cached.
    let again = f.build();
    assert_eq!(again["image"]["cached"], true);
}

/// What a directory outside the store holds, recursively: each path below
/// it with its content (directories as `/`), links not followed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.push((p.clone(), b"/".to_vec()));
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// A directory outside the store holding what gc would remove from each
/// of the store's directories: a subdirectory, hex-named files (blobs,
/// stamps, memo entries), a record, a dead kiln's scratch and a stray file.
fn plant_outside(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let hex = "ab".repeat(32);
    write(&dir.join("sub/file"), "keep");
    write(&dir.join(&hex), "keep");
    write(&dir.join(format!("{hex}.json")), "{}");
    write(&dir.join(".kiln-tmp-1-0000000000000001/file"), "keep");
    write(&dir.join(".kiln-tmp-1-0000000000000001.lock"), "");
    write(&dir.join(".tmpXyZ123"), "keep");
    snapshot(dir)
}

/// The store's directories a link can replace (as the issue found them).
const PLACES: [&str; 6] = [
    "tmp",
    "outputs",
    "memo",
    "builds",
    "checked",
    "blobs/sha256",
];

/// A store a build wrote, and a directory outside it with content planted.
fn store_and_outside() -> (Fixture, PathBuf, Vec<(PathBuf, Vec<u8>)>) {
    let f = Fixture::new();
    f.build();
    let outside = f.dir.path().join("outside");
    let before = plant_outside(&outside);
    (f, outside, before)
}

/// `kiln fsck` exits 1 and names `link` as a link.
fn fsck_names_link(f: &Fixture, link: &Path) {
    let fsck = f.kiln(&["fsck"]);
    let stdout = String::from_utf8_lossy(&fsck.stdout);
    assert_eq!(fsck.status.code(), Some(1), "{}: {stdout}", link.display());
    let line = format!("{}: is a symbolic link", link.display());
    assert!(stdout.contains(&line), "{stdout}");
}

/// Issue 22 item 1: a link where a store directory belongs (as a shared
/// cache archive can restore one) is never followed. gc leaves the store
/// alone and names the link (exit 3), a build refuses the store, fsck
/// reports the link (exit 1) and `--repair` removes the link only; what
/// the link points at is untouched throughout.
#[test]
fn a_link_in_the_store_is_never_followed() {
    for place in PLACES {
        let (f, outside, before) = store_and_outside();
        let link = f.store().join(place);
        if link.exists() {
            fs::remove_dir_all(&link).unwrap();
        }
        std::os::unix::fs::symlink(&outside, &link).unwrap();

        let recipe = f.dir.path().join("recipes/app.toml");
        let (recipe, out) = (recipe.to_str().unwrap(), f.out());
        for args in [&["gc"][..], &["build", recipe, "-o", out.to_str().unwrap()]] {
            let run = f.kiln(args);
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(3), "{place} {args:?}: {stderr}");
            let named = stderr.contains(&link.display().to_string());
            assert!(named, "{place} {args:?}: {stderr}");
            let reached = snapshot(&outside) != before;
            assert!(!reached, "{place} {args:?} reached through the link");
        }

        fsck_names_link(&f, &link);

        let repair = f.kiln(&["fsck", "--repair"]);
        assert!(repair.status.success(), "{place}: {repair:?}");
        assert!(
            fs::symlink_metadata(&link).is_err(),
            "{place}: the link stays"
        );
        assert_eq!(
            snapshot(&outside),
            before,
            "{place}: --repair reached through the link"
        );
        let gc = f.kiln(&["gc"]);
        assert!(gc.status.success(), "{place}: {gc:?}");
        assert_eq!(snapshot(&outside), before, "{place}");
    }
}

/// A link as an entry of a store directory: fsck names it, gc and
/// `--repair` remove the link, never what it points at.
#[test]
fn a_link_among_a_store_directorys_entries_goes_alone() {
    for place in PLACES {
        let (f, outside, before) = store_and_outside();
        let dir = f.store().join(place);
        fs::create_dir_all(&dir).unwrap();
        let link = dir.join("cd".repeat(32));
        std::os::unix::fs::symlink(&outside, &link).unwrap();

        fsck_names_link(&f, &link);

        let gc = f.kiln(&["gc"]);
        assert!(gc.status.success(), "{place}: {gc:?}");
        assert_eq!(
            snapshot(&outside),
            before,
            "{place}: gc reached through the link"
        );
        f.kiln(&["fsck", "--repair"]);
        assert!(
            fs::symlink_metadata(&link).is_err(),
            "{place}: the link stays"
        );
        assert_eq!(snapshot(&outside), before, "{place}");
        assert!(f.kiln(&["fsck"]).status.success(), "{place}");
    }
}
