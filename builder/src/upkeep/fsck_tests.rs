//! Tests of `kiln fsck`: a healthy store, then one kind of damage at a time,
//! each named by its path, and what `--repair` does about it.

use crate::util::memo::Memo;
use std::fs;

use super::*;
use crate::build::output;
use crate::model::deb::DebPackage;
use crate::store::verdict;
use crate::upkeep::fixture::{Fixture, Image, Layer};

/// A healthy store with one of everything fsck checks.
struct Healthy {
    f: Fixture,
    base: Layer,
    app: Layer,
    image: Image,
    verdict: PathBuf,
    release: PathBuf,
    deb: PathBuf,
}

const DEB: &[u8] = b"!<arch>\ndebian-binary";

fn healthy() -> Healthy {
    let f = Fixture::new();
    let base = f.layer("base");
    let app = f.layer("app");
    // A layer that recorded the .deb it was made from.
    let deb_layer = KeyEntry {
        key: Digest::of(b"deb layer"),
        digest: base.blob,
        diff_id: base.blob,
        name: "debs".into(),
        kind: "base".into(),
        size: 1,
        tar_size: f
            .store
            .lookup_key(&base.key.to_string())
            .unwrap()
            .unwrap()
            .tar_size,
        packages: vec![DebPackage {
            name: "busybox".into(),
            version: "1:1.35".into(),
            architecture: "amd64".into(),
            sha256: Some(Digest::of(DEB)),
            download: None,
        }],
        source_date_epoch: None,
    };
    f.store.record_key(&deb_layer).unwrap();
    let deb = f.store.deb_cache().join("busybox_1%3a1.35_amd64.deb");
    fs::create_dir_all(deb.parent().unwrap()).unwrap();
    fs::write(&deb, DEB).unwrap();
    let image = f.image("hello", "1.0", &[base, app], 10);
    Memo::memo(&f.store, "test", b"in", &|| Ok(b"out".to_vec())).unwrap();
    // A check stamp of a file since replaced: stale, but well-formed.
    fs::create_dir_all(f.store.check_stamps_dir()).unwrap();
    fs::write(
        f.store.check_stamps_dir().join(base.blob.hex()),
        r#"{"dev":1,"ino":2,"size":3,"mtime_ns":4,"ctime_ns":5}"#,
    )
    .unwrap();
    f.output("out", &image);
    let verdict = verdict::record(
        &f.store,
        &Verdict {
            schema: verdict::SCHEMA.into(),
            image_digest: image.digest,
            image: "hello 1.0".into(),
            passed: true,
            failed_check: None,
            checks: Vec::new(),
            phases: Default::default(),
            duration_secs: 1.0,
            qemu_version: "QEMU 7.2".into(),
            firmware: "OVMF_CODE_4M.fd".into(),
            accel: "tcg".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            kiln_version: "0.1.0".into(),
            console_log: None,
            secure_boot: false,
        },
    )
    .unwrap();
    let release = f.release(&image, "stable", 1);
    Healthy {
        f,
        base,
        app,
        image,
        verdict,
        release,
        deb,
    }
}

fn options(f: &Fixture, repair: bool) -> FsckOptions {
    FsckOptions {
        repair,
        releases: vec![Releases::of_store(&f.store)],
    }
}

#[test]
fn a_healthy_store_is_healthy() {
    let h = healthy();
    let r = fsck(&h.f.store, &options(&h.f, false)).unwrap();
    assert!(r.healthy(), "{:#?}", r.problems);
    assert_eq!(
        r.checked,
        Checked {
            blobs: 3,
            keys: 3,
            manifests: 1,
            images: 1,
            builds: 1,
            outputs: 1,
            memo: 1,
            checked: 1,
            verdicts: 1,
            debs: 1,
            releases: 1,
        }
    );
    // A store that does not exist is empty, so healthy (and not created).
    let missing = Store::new(h.f.dir.path().join("nope"));
    let r = fsck(&missing, &options(&h.f, true)).unwrap();
    assert!(r.healthy());
    assert!(!missing.root().exists());
}

/// One kind of damage: what to do, then the path fsck must name, words of
/// its message, and whether `--repair` removes it.
type Damage = fn(&Healthy) -> PathBuf;

fn blob_of(h: &Healthy, l: Layer) -> PathBuf {
    h.f.store.blob_path(&l.blob.to_string()).unwrap()
}

fn key_of(h: &Healthy, l: Layer) -> PathBuf {
    h.f.store.keys_dir().join(format!("{}.json", l.key.hex()))
}

fn other_hex() -> String {
    Digest::of(b"elsewhere").hex()
}

#[test]
fn each_kind_of_damage_is_named_and_repaired() {
    let cases: Vec<(&str, Damage, &str, bool)> = vec![
        (
            "corrupt blob",
            |h| {
                let p = blob_of(h, h.app);
                fs::write(&p, b"flipped").unwrap();
                p
            },
            "its content hashes to sha256:",
            true,
        ),
        (
            "blob not named by a digest",
            |h| {
                let p = h.f.store.blobs_dir().join("not-a-digest");
                fs::write(&p, b"x").unwrap();
                p
            },
            "is not named by a sha256 digest",
            true,
        ),
        (
            "key entry under another key's name",
            |h| {
                let p = h.f.store.keys_dir().join(format!("{}.json", other_hex()));
                fs::copy(key_of(h, h.app), &p).unwrap();
                p
            },
            "records key sha256:",
            true,
        ),
        (
            "key entry with a digest in upper case",
            |h| {
                let p = key_of(h, h.app);
                let text = fs::read_to_string(&p).unwrap();
                let hex = h.app.blob.hex();
                let bad = text.replace(
                    &format!("\"digest\": \"sha256:{hex}\""),
                    &format!("\"digest\": \"sha256:{}\"", hex.to_uppercase()),
                );
                assert_ne!(bad, text);
                fs::write(&p, bad).unwrap();
                p
            },
            "is not a key-index entry: field `digest`: ",
            true,
        ),
        (
            "manifest with a layer digest in bare hex",
            |h| {
                let p =
                    h.f.store
                        .image_manifest(&h.image.digest.to_string())
                        .unwrap();
                let mut m: serde_json::Value =
                    serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                m["layers"][1]["diff_id"] = h.app.blob.hex().into();
                fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
                p
            },
            "is not an image manifest: field `layers[1].diff_id`: ",
            true,
        ),
        (
            "released manifest with a digest in upper case",
            |h| {
                let p = h.release.join("hello-1.0.manifest.json");
                let mut m: serde_json::Value =
                    serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                m["recipe"]["digest"] =
                    format!("sha256:{}", h.image.digest.hex().to_uppercase()).into();
                fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
                p
            },
            "is not an image manifest: field `recipe.digest`: ",
            false,
        ),
        (
            "verdict with a short image digest",
            |h| {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&fs::read(&h.verdict).unwrap()).unwrap();
                v["image_digest"] = format!("sha256:{}", &h.image.digest.hex()[..63]).into();
                fs::write(&h.verdict, serde_json::to_vec(&v).unwrap()).unwrap();
                h.verdict.clone()
            },
            "is not a verdict: field `image_digest`: ",
            true,
        ),
        (
            "release entry without the sha256: prefix",
            |h| {
                let p = h.f.root().join("releases/channels/stable/000001.json");
                let mut e: serde_json::Value =
                    serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                e["digest"] = h.image.digest.hex().into();
                fs::write(&p, serde_json::to_vec(&e).unwrap()).unwrap();
                p
            },
            "is not a channel entry: field `digest`: ",
            false,
        ),
        (
            "key entry that is not JSON",
            |h| {
                let p = key_of(h, h.app);
                fs::write(&p, b"{\"key\": tru").unwrap();
                p
            },
            "is not a key-index entry",
            true,
        ),
        (
            "a 10 GiB key entry",
            |h| {
                let p = key_of(h, h.app);
                fs::File::create(&p).unwrap().set_len(10 << 30).unwrap();
                p
            },
            "more than any record kiln writes",
            true,
        ),
        (
            "key entry without its blob",
            |h| {
                fs::remove_file(blob_of(h, h.app)).unwrap();
                key_of(h, h.app)
            },
            "its blob sha256:",
            true,
        ),
        (
            "a symbolic link in the store",
            |h| {
                let p = h.f.store.keys_dir().join(format!("{}.json", other_hex()));
                std::os::unix::fs::symlink(key_of(h, h.base), &p).unwrap();
                p
            },
            "is a symbolic link",
            true,
        ),
        (
            "blobs/ is a link out of the store",
            |h| {
                let p = h.f.root().join("blobs");
                let away = h.f.dir.path().join("away");
                fs::rename(&p, &away).unwrap();
                std::os::unix::fs::symlink(&away, &p).unwrap();
                p
            },
            "is a symbolic link",
            true,
        ),
        (
            "manifest under another image's name",
            |h| {
                let p = h.f.store.images_dir().join(format!("{}.json", other_hex()));
                let d = h.image.digest.to_string();
                fs::write(&p, h.f.store.image(&d).unwrap().unwrap()).unwrap();
                p
            },
            "describes image sha256:",
            true,
        ),
        (
            "corrupt cached image",
            |h| {
                let p = h.f.store.image_file(&h.image.digest.to_string()).unwrap();
                fs::write(&p, b"flipped").unwrap();
                p
            },
            "its content hashes to sha256:",
            true,
        ),
        (
            "build record without its manifest",
            |h| {
                let p = output::builds_dir(&h.f.store).join(format!("{}.json", other_hex()));
                fs::write(&p, format!("{{\"image\":\"sha256:{}\"}}", other_hex())).unwrap();
                p
            },
            "the manifest of its image",
            true,
        ),
        (
            "output stamp that is not one",
            |h| {
                let p = output::outputs_dir(&h.f.store).join(other_hex());
                fs::write(&p, b"[]").unwrap();
                p
            },
            "is not an output stamp",
            true,
        ),
        (
            "memo entry without its blob",
            |h| {
                let p = h.f.store.memo_dir().join(other_hex());
                fs::write(&p, format!("sha256:{}", other_hex())).unwrap();
                p
            },
            "its blob sha256:",
            true,
        ),
        (
            "check stamp without its blob",
            |h| {
                let p = h.f.store.check_stamps_dir().join(other_hex());
                fs::write(
                    &p,
                    r#"{"dev":1,"ino":2,"size":3,"mtime_ns":4,"ctime_ns":5}"#,
                )
                .unwrap();
                p
            },
            "its blob sha256:",
            true,
        ),
        (
            "check stamp that is not one",
            |h| {
                let p = h.f.store.check_stamps_dir().join(other_hex());
                fs::write(&p, b"{}").unwrap();
                p
            },
            "is not a blob check stamp",
            true,
        ),
        (
            "verdict filed under another image",
            |h| {
                let dir = h.f.root().join(Area::Verdicts.dir()).join(other_hex());
                fs::create_dir_all(&dir).unwrap();
                fs::copy(&h.verdict, dir.join("1.json")).unwrap();
                dir.join("1.json")
            },
            "is a verdict on sha256:",
            true,
        ),
        (
            ".deb unlike what its layer recorded",
            |h| {
                fs::write(&h.deb, b"another build of it").unwrap();
                h.deb.clone()
            },
            "as the layers that used it recorded",
            true,
        ),
        (
            "released image changed",
            |h| {
                let p = h.release.join("hello-1.0.raw");
                fs::write(&p, b"tampered").unwrap();
                p
            },
            "as the channel says",
            false,
        ),
        (
            "released file without a signature",
            |h| {
                let p = h.release.join("hello-1.0.manifest.json.minisig");
                fs::remove_file(p).unwrap();
                h.release.join("hello-1.0.manifest.json")
            },
            "has no signature",
            false,
        ),
        (
            "channel entry pointing out of the release store",
            |h| {
                let p = h.f.root().join("releases/channels/stable/000001.json");
                let text = fs::read_to_string(&p).unwrap();
                fs::write(&p, text.replace("\"hello/1.0\"", "\"../../etc\"")).unwrap();
                p
            },
            "is not a directory inside the release store",
            false,
        ),
    ];
    for (what, damage, words, repairable) in cases {
        let h = healthy();
        let path = damage(&h);
        let r = fsck(&h.f.store, &options(&h.f, false)).unwrap();
        assert_eq!(
            r.problems.len(),
            1,
            "{what}: exactly one problem: {:#?}",
            r.problems
        );
        let p = &r.problems[0];
        assert_eq!(p.path, path, "{what}");
        assert!(p.problem.contains(words), "{what}: {}", p.problem);
        assert_eq!(p.repairable, repairable, "{what}");

        let r = fsck(&h.f.store, &options(&h.f, true)).unwrap();
        if repairable {
            assert!(r.healthy(), "{what}: after --repair: {:#?}", r.problems);
            assert!(r.repaired.iter().any(|p| p.path == path), "{what}");
            assert!(fs::symlink_metadata(&path).is_err(), "{what}: still there");
        } else {
            assert_eq!(r.problems.len(), 1, "{what}: {:#?}", r.problems);
            assert!(r.repaired.is_empty(), "{what}: {:#?}", r.repaired);
            assert!(path.exists(), "{what}: a release store is never changed");
        }
        // What a repair leaves is what a second check finds.
        let again = fsck(&h.f.store, &options(&h.f, false)).unwrap();
        assert_eq!(again.problems, r.problems, "{what}");
    }
}

#[test]
fn repairing_a_corrupt_blob_also_drops_the_key_entries_naming_it() {
    let h = healthy();
    let blob = blob_of(&h, h.base);
    fs::write(&blob, b"flipped").unwrap();
    let r = fsck(&h.f.store, &options(&h.f, true)).unwrap();
    assert!(r.healthy(), "{:#?}", r.problems);
    let mut removed: Vec<PathBuf> = r.repaired.iter().map(|p| p.path.clone()).collect();
    removed.sort();
    let mut want = vec![
        blob,
        // Its check stamp, whose blob is gone.
        h.f.store.check_stamps_dir().join(h.base.blob.hex()),
        key_of(&h, h.base),
        h.f.store
            .keys_dir()
            .join(format!("{}.json", Digest::of(b"deb layer").hex())),
    ];
    want.sort();
    assert_eq!(removed, want);
    // The other layer and the image are untouched.
    assert!(blob_of(&h, h.app).exists() && key_of(&h, h.app).exists());
}

#[test]
fn a_removed_verdict_never_makes_the_next_one_overwrite_another() {
    let h = healthy();
    let v: Verdict = serde_json::from_slice(&fs::read(&h.verdict).unwrap()).unwrap();
    let second = verdict::record(&h.f.store, &v).unwrap();
    fs::write(&h.verdict, b"garbage").unwrap();
    let r = fsck(&h.f.store, &options(&h.f, true)).unwrap();
    assert!(r.healthy(), "{:#?}", r.problems);
    let third = verdict::record(&h.f.store, &v).unwrap();
    assert_ne!(third, second);
    assert_eq!(
        verdict::list(&h.f.store, &v.image_digest.to_string())
            .unwrap()
            .len(),
        2
    );
}

/// A stored layer no build can use (issue 22: an opaque whiteout at the top
/// of an app layer, which a registry cache gave an older kiln; every build
/// on the store failed while fsck called it healthy) is a problem of its key
/// entry, and `--repair` removes the entry, so the next build makes the
/// layer again.
#[test]
fn a_stored_layer_no_build_can_use_is_reported() {
    let f = Fixture::new();
    let mut tree = crate::fs::tree::Tree::new(1_700_000_000);
    tree.insert(".wh..wh..opq", crate::testutil::file(""))
        .unwrap();
    let layer = f.layer_of("apps/app", &tree);
    let entry = f
        .root()
        .join("keys")
        .join(format!("{}.json", layer.key.hex()));
    let r = fsck(&f.store, &options(&f, false)).unwrap();
    let p = r
        .problems
        .iter()
        .find(|p| p.path == entry)
        .unwrap_or_else(|| panic!("{:#?}", r.problems));
    assert!(
        p.problem.contains("would hide every layer below"),
        "{}",
        p.problem
    );
    assert!(p.repairable);
    let r = fsck(&f.store, &options(&f, true)).unwrap();
    assert!(r.healthy(), "{:#?}", r.problems);
    assert!(!entry.exists());
}
