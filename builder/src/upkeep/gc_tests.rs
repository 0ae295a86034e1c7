//! Tests of `kiln gc` on small stores: exactly what remains.

use crate::util::memo::Memo;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::build::output;
use crate::upkeep::fixture::{files_below, set_age, Fixture};
use crate::util::scratch::ScratchDir;

fn options(f: &Fixture) -> GcOptions {
    GcOptions {
        keep_last: None,
        keep_released: true,
        releases: vec![Releases::of_store(&f.store)],
        debs: false,
        dry_run: false,
        temp_dir: None,
    }
}

fn blob(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn key(d: &Digest) -> String {
    format!("keys/{}.json", d.hex())
}

fn manifest(d: &Digest) -> String {
    format!("images/{}.json", d.hex())
}

fn raw(d: &Digest) -> String {
    format!("images/{}.raw", d.hex())
}

fn build(d: &Digest) -> String {
    format!("builds/{}.json", d.hex())
}

/// A dead owner's scratch: a directory and a lock file nobody holds.
fn dead_scratch(dir: &Path, id: &str) -> PathBuf {
    let p = dir.join(format!("{SCRATCH_PREFIX}{id}"));
    fs::create_dir_all(p.join("sub")).unwrap();
    fs::write(p.join("sub/image.raw"), vec![7u8; 8192]).unwrap();
    fs::write(dir.join(format!("{SCRATCH_PREFIX}{id}.lock")), b"").unwrap();
    p
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

#[test]
fn gc_keeps_what_builds_use_and_removes_the_rest() {
    let f = Fixture::new();
    let base = f.layer("base");
    let apps = [f.layer("app1"), f.layer("app2"), f.layer("app3")];
    let v1 = f.image("hello", "1", &[base, apps[0]], 300);
    let v2 = f.image("hello", "2", &[base, apps[1]], 200);
    let v3 = f.image("hello", "3", &[base, apps[2]], 100);
    let memo_out = Memo::memo(&f.store, "test", b"input", &|| Ok(b"memo output".to_vec())).unwrap();
    let memo_blob = Digest::of(&memo_out);

    // Garbage in the store.
    let unused = f.store.put_blob(b"nobody uses this").unwrap();
    let gone = f.layer("gone");
    fs::remove_file(f.store.blob_path(&gone.blob.to_string()).unwrap()).unwrap();
    // Check stamps: of a kept blob, of one that goes, of one already gone.
    let stamps = f.store.check_stamps_dir();
    fs::create_dir_all(&stamps).unwrap();
    for d in [
        base.blob.hex(),
        Digest::parse(&unused).unwrap().hex(),
        gone.blob.hex(),
    ] {
        fs::write(stamps.join(d), "{}").unwrap();
    }
    let missing = Digest::of(b"missing");
    fs::write(f.store.memo_dir().join(missing.hex()), missing.to_string()).unwrap();
    fs::write(
        f.root().join(build(&Digest::of(b"stale build"))),
        format!("{{\"image\":\"{missing}\"}}"),
    )
    .unwrap();
    fs::write(f.root().join(raw(&missing)), b"no manifest").unwrap();

    // STORE/tmp: the living, the dead, and older kiln's leftovers.
    let tmp = f.store.tmp_root();
    let live = ScratchDir::new_in(&tmp).unwrap();
    dead_scratch(&tmp, "1-dead");
    fs::write(tmp.join(".image-4242"), vec![1u8; 4096]).unwrap();
    fs::write(tmp.join(".tmpAbC123"), b"half a blob").unwrap();
    let sources = tmp.join("kiln-sources-XyZ");
    fs::create_dir_all(sources.join("proc")).unwrap();
    fs::write(sources.join("proc/version"), b"x").unwrap();
    fs::set_permissions(sources.join("proc"), fs::Permissions::from_mode(0o555)).unwrap();

    // Output directories: one holds what kiln wrote, one a changed file.
    let out_file = f.output("out", &v3);
    let out = out_file.parent().unwrap().to_path_buf();
    let changed = f.output("out2", &v2);
    fs::write(&changed, b"edited by hand").unwrap();
    let out_live = ScratchDir::new_in(&out).unwrap();
    dead_scratch(&out, "2-dead");
    fs::create_dir(out.join(".kiln-tmp-Ab12Cd")).unwrap();
    fs::write(out.join(".kiln-tmp-Ab12Cd/app-1.0.raw"), b"x").unwrap();
    fs::write(out.join(".kiln-tmp-young"), b"sig").unwrap();
    fs::write(out.join(".kiln-tmp-old"), b"sig").unwrap();
    set_age(&out.join(".kiln-tmp-old"), 7200);
    // A stamp from before stamps recorded their path.
    let old_stamp = output::outputs_dir(&f.store).join(Digest::of(b"old").hex());
    let old_format = br#"{"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","dev":1,"ino":2,"size":3,"mtime_ns":4,"ctime_ns":5}"#;
    fs::write(&old_stamp, old_format).unwrap();

    // $TMPDIR.
    let temp = f.dir.path().join("tmpdir");
    fs::create_dir(&temp).unwrap();
    dead_scratch(&temp, "3-dead");
    fs::write(temp.join("someone-elses"), b"keep").unwrap();

    let mut opts = options(&f);
    opts.temp_dir = Some(temp.clone());
    let before = f.files();
    let dry = gc(
        &f.store,
        &GcOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(f.files(), before, "a dry run removes nothing");
    let report = gc(&f.store, &opts).unwrap();
    assert_eq!(report.removed, dry.removed);
    assert_eq!((report.count, report.bytes), (dry.count, dry.bytes));
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // Stamps are named by the sha256 of the file's absolute path.
    let stamp = Digest::of(
        fs::canonicalize(&out_file)
            .unwrap()
            .as_os_str()
            .as_encoded_bytes(),
    );
    let live_name = file_name(live.path());
    let mut want = vec![
        blob(&base.blob),
        blob(&apps[0].blob),
        blob(&apps[1].blob),
        blob(&apps[2].blob),
        blob(&memo_blob),
        key(&base.key),
        key(&apps[0].key),
        key(&apps[1].key),
        key(&apps[2].key),
        manifest(&v1.digest),
        manifest(&v2.digest),
        manifest(&v3.digest),
        // The newest two cached images of the name.
        raw(&v2.digest),
        raw(&v3.digest),
        build(&v1.key),
        build(&v2.key),
        build(&v3.key),
        // Memo records are named by the sha256 of kind, NUL, input.
        format!("memo/{}", Digest::of(b"test\0input").hex()),
        format!("checked/{}", base.blob.hex()),
        format!("outputs/{}", stamp.hex()),
        format!("tmp/{live_name}.lock"),
    ];
    want.sort();
    assert_eq!(f.files(), want);
    assert!(live.path().is_dir());

    let out_live_name = file_name(out_live.path());
    let mut want_out = vec![
        out_live_name.clone(),
        format!("{out_live_name}.lock"),
        ".kiln-tmp-young".to_string(),
        file_name(&out_file),
    ];
    want_out.sort();
    assert_eq!(names(&out), want_out);
    assert_eq!(names(&temp), ["someone-elses"]);

    let count = |c: Category| {
        report
            .removed
            .iter()
            .find(|r| r.category == c)
            .unwrap()
            .count
    };
    // STORE/tmp: dead + 3 leftovers; out: dead + legacy dir + old file; $TMPDIR: dead.
    assert_eq!(count(Category::Scratch), 4 + 3 + 1);
    assert_eq!(count(Category::Outputs), 2);
    assert_eq!(count(Category::Builds), 1);
    assert_eq!(count(Category::Manifests), 0);
    assert_eq!(count(Category::Images), 2);
    assert_eq!(count(Category::Keys), 1);
    assert_eq!(count(Category::Memo), 1);
    assert_eq!(count(Category::Blobs), 1);
    assert_eq!(count(Category::Checked), 2);
    assert!(report.bytes >= 3 * 8192 + 4096, "{report:?}");
    assert_eq!(
        report.kept,
        Kept {
            builds: 3,
            images: 3,
            blobs: 5
        }
    );

    // Nothing more to do, and the living scratch is still kept.
    let again = gc(&f.store, &opts).unwrap();
    assert_eq!(again.count, 0, "{again:?}");
    drop((live, out_live));
}

#[test]
fn keep_last_keeps_the_newest_builds_and_what_releases_use() {
    let f = Fixture::new();
    let base = f.layer("base");
    let apps = [f.layer("app1"), f.layer("app2"), f.layer("app3")];
    let v1 = f.image("hello", "1", &[base, apps[0]], 300);
    let v2 = f.image("hello", "2", &[base, apps[1]], 200);
    f.image("hello", "3", &[base, apps[2]], 100);
    let other = f.image("other", "1", &[base], 1000);
    f.release(&v2, "stable", 1);
    // A build just found v1 in the cache: that makes it the newest hello.
    assert!(output::lookup(&f.store, &v1.key.to_string())
        .unwrap()
        .is_some());

    let releases = files_below(&f.root().join("releases"));
    let opts = GcOptions {
        keep_last: Some(1),
        ..options(&f)
    };
    let report = gc(&f.store, &opts).unwrap();
    let mut want = vec![
        blob(&base.blob),
        blob(&apps[0].blob),
        blob(&apps[1].blob),
        key(&base.key),
        key(&apps[0].key),
        key(&apps[1].key),
        manifest(&v1.digest),
        manifest(&v2.digest),
        manifest(&other.digest),
        raw(&v1.digest),
        raw(&v2.digest),
        raw(&other.digest),
        build(&v1.key),
        build(&v2.key),
        build(&other.key),
    ];
    want.extend(releases.iter().map(|r| format!("releases/{r}")));
    want.sort();
    assert_eq!(f.files(), want, "{report:#?}");

    // Without --keep-released, the release no longer holds v2 in the store;
    // the release store itself is untouched.
    let opts = GcOptions {
        keep_released: false,
        ..opts
    };
    gc(&f.store, &opts).unwrap();
    let mut want = vec![
        blob(&base.blob),
        blob(&apps[0].blob),
        key(&base.key),
        key(&apps[0].key),
        manifest(&v1.digest),
        manifest(&other.digest),
        raw(&v1.digest),
        raw(&other.digest),
        build(&v1.key),
        build(&other.key),
    ];
    want.extend(releases.iter().map(|r| format!("releases/{r}")));
    want.sort();
    assert_eq!(f.files(), want);
    assert_eq!(files_below(&f.root().join("releases")), releases);

    // --keep-last 0 keeps no build at all.
    gc(
        &f.store,
        &GcOptions {
            keep_last: Some(0),
            ..opts
        },
    )
    .unwrap();
    let left: Vec<String> = f
        .files()
        .into_iter()
        .filter(|p| !p.starts_with("releases/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_release_gc_cannot_read_stops_it_before_anything_goes() {
    let f = Fixture::new();
    let v1 = f.image("hello", "1", &[], 10);
    f.release(&v1, "stable", 1);
    f.store.put_blob(b"garbage").unwrap();
    let entry = f.root().join("releases/channels/stable/000002.json");
    fs::write(&entry, b"{not json").unwrap();
    let before = f.files();
    let e = gc(&f.store, &options(&f)).unwrap_err();
    assert!(format!("{e:#}").contains("000002.json"), "{e:#}");
    assert_eq!(crate::util::error::exit_code(&e), 1);
    assert_eq!(f.files(), before);
}

#[test]
fn debs_go_only_on_request_and_apt_keeps_its_lock() {
    let f = Fixture::new();
    let debs = f.store.deb_cache();
    fs::create_dir_all(debs.join("partial")).unwrap();
    fs::write(debs.join("busybox_1.35_amd64.deb"), b"deb").unwrap();
    fs::write(debs.join("partial/nginx_1.22_amd64.deb"), b"half").unwrap();
    fs::write(debs.join("lock"), b"").unwrap();
    let lists = f.store.apt_lists();
    fs::create_dir_all(&lists).unwrap();
    fs::write(
        lists.join("deb.debian.org_debian_dists_trixie_InRelease"),
        b"r",
    )
    .unwrap();
    gc(&f.store, &options(&f)).unwrap();
    assert_eq!(names(&debs), ["busybox_1.35_amd64.deb", "lock", "partial"]);
    assert_eq!(names(&lists).len(), 1);
    let r = gc(
        &f.store,
        &GcOptions {
            debs: true,
            ..options(&f)
        },
    )
    .unwrap();
    assert_eq!(names(&debs), ["lock", "partial"]);
    assert!(names(&debs.join("partial")).is_empty());
    assert!(names(&lists).is_empty());
    assert_eq!(r.removed.last().unwrap().count, 3);
}

#[test]
fn a_missing_store_has_nothing_to_remove() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("nope"));
    let r = gc(
        &store,
        &GcOptions {
            keep_last: Some(1),
            keep_released: true,
            releases: vec![Releases::of_store(&store)],
            debs: true,
            dry_run: false,
            temp_dir: None,
        },
    )
    .unwrap();
    assert_eq!(r.count, 0);
    assert!(!store.root().exists(), "gc creates no store");
}
