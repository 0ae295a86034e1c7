//! Tests of `kiln diff`: images read back from disk files, tar files and
//! the store, compared file by file, package by package and partition by
//! partition.

use super::diff::*;
use crate::fs::tree::Tree;
use crate::read::imagefs::load;
use crate::store::Store;
use crate::testutil::{fake_disk, fake_root};
use crate::util::digest::Digest;
use crate::util::error::{exit_code, EXIT_BAD_INPUT};

const SDE: i64 = 1_700_000_000;

fn hello(page: &str) -> Tree {
    fake_root(
        &[
            ("srv/hello/index.html", page),
            (
                "usr/bin/hello",
                "#!/bin/sh\nhttpd -f -p 8080 -h /srv/hello\n",
            ),
            ("etc/os-release", "ID=kiln\nVERSION_ID=1.0\n"),
        ],
        SDE,
    )
}

#[test]
fn changed_app_page_is_the_only_file_difference() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let (pa, pb) = (dir.path().join("a.raw"), dir.path().join("b.raw"));
    fake_disk(&hello("<h1>hello from kiln</h1>\n"), SDE, &pa);
    fake_disk(&hello("<h1>hello from kiln, changed</h1>\n"), SDE, &pb);
    let a = load(&store, pa.to_str().unwrap()).unwrap();
    let b = load(&store, pb.to_str().unwrap()).unwrap();
    let d = diff(&a, &b);
    eprintln!("{}", d.human());
    assert!(!d.identical);
    assert!(d.files.added.is_empty() && d.files.removed.is_empty());
    let paths: Vec<&str> = d.files.changed.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/srv/hello/index.html"]);
    let fields: Vec<&str> = d.files.changed[0]
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(fields, ["size", "content"]);
    // The root hash (and so the command line and the UKI) follow.
    let boot: Vec<&str> = d.boot.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(boot, ["cmdline", "roothash", "uki"]);
    assert!(d.packages.is_none());
    let same = diff(&a, &load(&store, pa.to_str().unwrap()).unwrap());
    assert!(same.identical, "{}", same.human());
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["files"]["changed"][0]["path"], "/srv/hello/index.html");
    assert_eq!(json["a"]["origin"], "disk");
}

/// A damaged verity partition changes no file, package or boot fact:
/// its digest alone tells the images apart.
#[test]
fn a_partition_not_compared_by_files_still_differs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let (pa, pb) = (dir.path().join("a.raw"), dir.path().join("b.raw"));
    fake_disk(&hello("page\n"), SDE, &pa);
    let mut bytes = std::fs::read(&pa).unwrap();
    let disk = crate::read::disk::read_disk_file(&pa).unwrap();
    let (verity, _) = disk
        .partitions
        .iter()
        .find(|(p, _)| p.type_guid == crate::fs::gpt::ROOT_X86_64_VERITY_TYPE)
        .unwrap();
    bytes[verity.offset as usize + 4096 + 7] ^= 0x10;
    std::fs::write(&pb, &bytes).unwrap();
    let a = load(&store, pa.to_str().unwrap()).unwrap();
    let b = load(&store, pb.to_str().unwrap()).unwrap();
    let d = diff(&a, &b);
    assert!(!d.identical, "{}", d.human());
    assert_eq!(d.files, FileChanges::default());
    assert!(d.boot.is_empty());
    let fields: Vec<String> = d.disk.iter().flatten().map(|c| c.field.clone()).collect();
    assert_eq!(fields, [format!("partition {} sha256", verity.index)]);
    assert!(d.human().contains("disk: 1 changed"), "{}", d.human());
}

#[test]
fn store_digest_reads_as_the_disk_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    store.init().unwrap();
    let mut root = hello("page\n");
    root.insert_with_parents(
        "var/lib/dpkg/status",
        crate::testutil::file(
            "Package: busybox\nStatus: install ok installed\nVersion: 1:1.35.0-4\nArchitecture: amd64\n",
        ),
        &crate::fs::tree::Meta::root(0o755, SDE),
    )
    .unwrap();
    let packed = crate::fs::layer::pack(&root).unwrap();
    store.put_blob(&packed.blob).unwrap();
    let raw = dir.path().join("hello-1.0.raw");
    let disk = fake_disk(&root, SDE, &raw);
    let image_digest = crate::util::digest::file_digest(&raw).unwrap();
    let mut m = crate::model::manifest::tests::sample();
    m.source_date_epoch = SDE;
    m.layers[0].digest = packed.digest.parse().unwrap();
    m.layers[0].diff_id = packed.diff_id.parse().unwrap();
    m.layers[0].size = packed.blob.len() as u64;
    m.image.digest = image_digest.parse().unwrap();
    m.disk = Some(disk);
    store
        .record_image(&image_digest, &serde_json::to_vec(&m).unwrap())
        .unwrap();
    let from_store = load(&store, &image_digest).unwrap();
    let from_file = load(&store, raw.to_str().unwrap()).unwrap();
    let d = diff(&from_store, &from_file);
    assert!(d.identical, "{}", d.human());
    assert_eq!(from_file.packages.unwrap()["busybox"].version, "1:1.35.0-4");
}

#[test]
fn bad_arguments_exit_2_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let junk = dir.path().join("junk.raw");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let missing = format!("sha256:{}", "ab".repeat(32));
    for arg in [junk.to_str().unwrap(), &missing, "/nonexistent/x.raw"] {
        let e = load(&store, arg).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_BAD_INPUT, "{arg}: {e:#}");
        assert!(format!("{e:#}").contains(arg), "{e:#}");
    }
}

#[test]
fn short_table() {
    let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for (v, want) in [
        (None, "-".to_string()),
        (Some(format!("sha256:{hex}")), "sha256:e3b0c44298fc".into()),
        (
            Some(format!("sha256:{hex} (4 bytes)")),
            "sha256:e3b0c44298fc (4 bytes)".into(),
        ),
        // Not a digest: whole, never cut.
        (Some(hex.to_string()), hex.into()),
        (Some("sha256:e3b0".into()), "sha256:e3b0".into()),
        (Some("0644".into()), "0644".into()),
        (Some("é".repeat(40)), "é".repeat(40)),
    ] {
        assert_eq!(short(&v), want, "{v:?}");
    }
}

#[test]
fn metadata_changes_are_named_field_by_field() {
    let mut a = Tree::new(0);
    let mut f = crate::testutil::file("x");
    a.insert("f", f.clone()).unwrap();
    a.insert("gone", crate::testutil::dir()).unwrap();
    let mut b = Tree::new(0);
    f.meta.mode = 0o755;
    f.meta.uid = 5;
    f.meta.mtime = 9;
    f.meta
        .xattrs
        .insert("security.capability".into(), vec![1, 0, 0, 2]);
    b.insert("f", f).unwrap();
    b.insert("new", crate::testutil::file("n")).unwrap();
    let d = diff_trees(&a, &b);
    assert_eq!(d.removed[0].path, "/gone");
    assert_eq!(d.added[0].path, "/new");
    let fields: Vec<(&str, String, String)> = d.changed[0]
        .changes
        .iter()
        .map(|c| (c.field.as_str(), short(&c.old), short(&c.new)))
        .collect();
    assert_eq!(
        fields,
        [
            ("mode", "0644".into(), "0755".into()),
            ("uid", "0".into(), "5".into()),
            (
                "xattr security.capability",
                "-".into(),
                format!("{} (4 bytes)", Digest::of(&[1, 0, 0, 2]).short())
            ),
            ("mtime", "0".into(), "9".into()),
        ]
    );
}
