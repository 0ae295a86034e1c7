//! What kiln promises after a crash and at its trust boundaries, shown end
//! to end with hello:
//! - `kill -9` of `kiln build` while mmdebstrap unpacks, while the base
//!   layer is packed, while the app layer is built and while the disk is
//!   assembled, and of `kiln test` while the guest runs: nothing kiln
//!   started runs on (no mmdebstrap, apt, dpkg-deb, tar or QEMU), what is
//!   left is scratch only, the next run and `kiln gc` leave nothing but the
//!   outputs, and the rebuilt image has the digest of an uninterrupted build
//!   in another store;
//! - a flipped byte in a layer blob: `kiln fsck` names the blob and exits 1,
//!   `kiln fsck --repair` and a rebuild bring back the same image;
//! - forged manifests beside an image with a passing verdict (or in the
//!   store): `kiln publish` exits 2 naming the manifest and the field, and
//!   writes nothing; the genuine manifest then publishes.
//!
//! A registry serving more than a blob's signed size is refused without
//! writing more than that size: `kiln pull` is tested for it against an
//! in-process fake registry by the unit tests in
//! builder/src/publish/oci/pull/tests.rs (`content_beyond_its_descriptor_is_refused`,
//! `a_zstd_bomb_stops_at_the_signed_size`, `copying_stops_at_the_limit`),
//! without QEMU, so it is not repeated here.
//!
//! Every kiln run here has a TMPDIR of its own inside a directory unique to
//! the test: a process that names that directory in its command line or
//! environment is one of ours, whatever else runs on the host.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_qemu_tests::{
    kiln_bin, layers_cached, record_passing_verdict, require_tool, scratch_repo,
};
use serde_json::Value;

/// The page of the app-only rebuild (hello's HTTP check still passes).
const CHANGED_PAGE: &str = "<h1>hello from kiln, rebuilt after a crash</h1>\n";

/// What an output directory may hold once kiln is done with it.
const OUTPUTS: [&str; 6] = [
    "SHA256SUMS",
    "hello-1.0.console.log",
    "hello-1.0.manifest.json",
    "hello-1.0.raw",
    "hello-1.0.roothash",
    "hello-1.0.spdx.json",
];

/// How long the kill -9 of one kiln process may take to reach everything
/// it started (the kernel's SIGKILLs take milliseconds; what merely runs
/// out of work, as mmdebstrap's orphaned helpers did, takes longer).
const REAP: Duration = Duration::from_secs(3);

/// A directory of one test's own: a store, a TMPDIR, output directories
/// and kiln's logs.
struct Work {
    root: PathBuf,
}

impl Work {
    fn new() -> Work {
        let root = tempfile::tempdir().unwrap().keep();
        fs::create_dir_all(root.join("tmp")).unwrap();
        fs::create_dir_all(root.join("logs")).unwrap();
        Work { root }
    }

    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// kiln's TMPDIR (QEMU's scratch, mmdebstrap's root).
    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// kiln on this store and TMPDIR, QEMU under TCG.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kiln_bin());
        c.args(args)
            .arg("--store")
            .arg(self.store())
            .env("TMPDIR", self.tmp())
            .env("KILN_ACCEL", "tcg")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running kiln")
    }

    /// Run kiln with `--json`; it must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "kiln {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("kiln printed JSON")
    }

    /// Start kiln with its step log (`-v`) going to a file.
    fn spawn(&self, args: &[&str]) -> (Child, PathBuf) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.root.join(format!("logs/{n}.log"));
        let child = self
            .command(args)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting kiln");
        (child, log)
    }

    /// Run kiln, `kill -9` it `after` its log (`-vv`) shows a line with
    /// every one of `needle`'s words, then check that nothing it started
    /// runs on and that it left scratch only. The log is read as it is
    /// written, so a kill `after` zero lands within a millisecond or so.
    fn kill_at(&self, args: &[&str], needle: &[&'static str], after: Duration, outputs: &[&Path]) {
        let moment = format!("{needle:?} + {after:?}");
        let mut child = self
            .command(args)
            .arg("-vv")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kiln");
        let stderr = child.stderr.take().unwrap();
        let (seen, wait) = std::sync::mpsc::channel();
        let needle = needle.to_vec();
        let reader = std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = without_ansi(&line);
                if needle.iter().all(|w| line.contains(w)) {
                    let _ = seen.send(());
                }
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        let seen = wait.recv_timeout(Duration::from_secs(600)).is_ok();
        std::thread::sleep(after);
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        if !(seen && running) {
            panic!(
                "kiln ended before the kill at {moment}:\n{}",
                reader.join().unwrap()
            );
        }
        eprintln!("killed kiln {args:?} at {moment}");
        self.assert_nothing_running(&moment);
        drop(reader);
        for dir in [self.tmp(), self.store().join("tmp")]
            .iter()
            .map(PathBuf::as_path)
            .chain(outputs.iter().copied())
        {
            let other: Vec<String> = names(dir)
                .into_iter()
                .filter(|n| !n.starts_with(".kiln-tmp-") && !OUTPUTS.contains(&n.as_str()))
                .collect();
            assert!(
                other.is_empty(),
                "after the kill at {moment}, {} holds more than scratch: {other:?}",
                dir.display()
            );
        }
    }

    /// Run `kiln test` on `image`, `kill -9` it once the guest writes to
    /// its console, then check that no QEMU runs on and that TMPDIR holds
    /// scratch only.
    fn kill_test(&self, image: &Path) {
        let (mut child, log) = self.spawn(&["test", image.to_str().unwrap()]);
        let booting = wait_until(Duration::from_secs(120), || {
            names(&self.tmp()).iter().any(|n| {
                fs::metadata(self.tmp().join(n).join("console.log")).is_ok_and(|m| m.len() > 0)
            })
        });
        assert!(
            booting,
            "the guest never wrote to its console:\n{}",
            read_text(&log)
        );
        std::thread::sleep(Duration::from_secs(2));
        assert!(child.try_wait().unwrap().is_none(), "{}", read_text(&log));
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!("killed kiln test with the guest running");
        self.assert_nothing_running("kiln test with the guest running");
        let left = names(&self.tmp());
        assert!(
            !left.is_empty() && left.iter().all(|n| n.starts_with(".kiln-tmp-")),
            "{left:?}"
        );
    }

    /// No process of this test's kiln runs (given a moment to die).
    fn assert_nothing_running(&self, moment: &str) {
        let marker = self.root.to_str().unwrap();
        let mut left = Vec::new();
        let gone = wait_until(REAP, || {
            left = processes_naming(marker);
            left.is_empty()
        });
        assert!(gone, "still running after the kill at {moment}:\n{left:#?}");
    }

    /// TMPDIR and the store's tmp/ are empty, and each output directory
    /// holds kiln's outputs only.
    fn assert_clean(&self, outputs: &[&Path], when: &str) {
        for dir in [self.tmp(), self.store().join("tmp")] {
            assert_eq!(
                names(&dir),
                Vec::<String>::new(),
                "{} {when}",
                dir.display()
            );
        }
        for dir in outputs {
            let other: Vec<String> = names(dir)
                .into_iter()
                .filter(|n| !OUTPUTS.contains(&n.as_str()))
                .collect();
            assert!(other.is_empty(), "{} {when}: {other:?}", dir.display());
        }
    }
}

/// A log line without its colours.
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI ... m
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Poll `done` until it holds or `limit` passes; whether it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_text(p: &Path) -> String {
    String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned()
}

/// The names in a directory (none when it does not exist), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every live process but this one whose command line or environment
/// contains `marker` ("PID ARGV").
fn processes_naming(marker: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let has = |hay: &[u8]| hay.windows(marker.len()).any(|w| w == marker.as_bytes());
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().into_string().ok()?;
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                return None;
            }
            // Empty for zombies (already dead) and kernel threads.
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let environ = fs::read(e.path().join("environ")).unwrap_or_default();
            (!cmdline.is_empty() && (has(&cmdline) || has(&environ))).then(|| {
                format!(
                    "{pid} {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                )
            })
        })
        .collect()
}

/// Every file below `dir` with its size, for before/after comparisons.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), if m.is_dir() { 0 } else { m.len() }));
        }
    }
    out.sort();
    out
}

/// hello built without interruption in a store of its own: the digests a
/// build must give after any crash.
struct Reference {
    work: Work,
    /// A copy of the repository's recipes and layers.
    repo: PathBuf,
    /// The same with the app's page changed.
    repo_changed: PathBuf,
    image: PathBuf,
    digest: String,
    digest_changed: String,
}

/// The tests that use [`reference`]: the last to pass removes it.
const USERS: usize = 2;

fn build_args(repo: &Path, out: &Path) -> [String; 4] {
    [
        "build".into(),
        repo.join("recipes/hello.toml").to_str().unwrap().into(),
        "-o".into(),
        out.to_str().unwrap().into(),
    ]
}

fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

fn reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| {
        require_tool("mmdebstrap", "mmdebstrap");
        let work = Work::new();
        let (repo, repo_changed) = (work.path("repo"), work.path("repo-changed"));
        for dir in [&repo, &repo_changed] {
            fs::rename(scratch_repo().keep(), dir).unwrap();
        }
        fs::write(
            repo_changed.join("layers/apps/hello/files/srv/hello/index.html"),
            CHANGED_PAGE,
        )
        .unwrap();
        let t = Instant::now();
        let a = work.json(&strs(&build_args(&repo, &work.path("out"))));
        let b = work.json(&strs(&build_args(&repo_changed, &work.path("out-changed"))));
        eprintln!("reference builds: {:?}", t.elapsed());
        Reference {
            image: PathBuf::from(a["image"]["path"].as_str().unwrap()),
            digest: a["image"]["digest"].as_str().unwrap().to_string(),
            digest_changed: b["image"]["digest"].as_str().unwrap().to_string(),
            work,
            repo,
            repo_changed,
        }
    })
}

/// A test that used [`reference`] passed: its own directory goes, and the
/// reference's once every user is done (a failed test leaves both).
fn passed(w: Work) {
    static DONE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let _ = fs::remove_dir_all(&w.root);
    if DONE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == USERS {
        let _ = fs::remove_dir_all(&reference().work.root);
    }
}

#[test]
fn kill_9_leaves_nothing_running_and_nothing_after_the_next_run_and_gc() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    // Unprivileged, kiln cannot give mmdebstrap a PID namespace, and only
    // mmdebstrap itself dies with it (README: what kiln guarantees after a
    // crash).
    let uid = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap());
    assert_eq!(uid, 0, "this test runs kiln as root, as CI does");
    let r = reference();
    let w = Work::new();
    let t0 = Instant::now();
    let out = w.path("out");
    let outs = [out.as_path()];
    let build = build_args(&r.repo, &out);
    let build = strs(&build);
    let build_changed = build_args(&r.repo_changed, &out);
    let build_changed = strs(&build_changed);

    // Cold: while mmdebstrap downloads and unpacks (its helpers included),
    // and while the base layer is packed.
    let unpacking = ["unpacking 3 Debian packages with mmdebstrap"];
    // Moments found in the log, not by the clock: trixie's extract is
    // quick enough that a kill 6 s into mmdebstrap found the layer stored.
    w.kill_at(&build, &unpacking, Duration::from_secs(2), &outs);
    w.kill_at(&build, &["stripped"], Duration::ZERO, &outs);
    w.kill_at(
        &build,
        &["assembling the disk image"],
        Duration::ZERO,
        &outs,
    );
    let cold = w.json(&build);
    assert_eq!(
        cold["image"]["digest"], r.digest,
        "the build after the kills differs from an uninterrupted one"
    );
    // That run swept what the killed ones left (their locks died with them).
    w.assert_clean(&outs, "after the next build");

    // App only (the base cached): while the app layer is built, and at
    // each step of the disk's assembly (ext4, then after verity and the
    // UKI, while the disk is written; then while the outputs are written).
    for needle in [
        &["layer apps/hello"][..],
        &["assembling the disk image"],
        &["disk assembly", "\"uki\""],
        &["disk assembly", "\"disk\""],
    ] {
        w.kill_at(&build_changed, needle, Duration::ZERO, &outs);
    }
    let changed = w.json(&build_changed);
    assert_eq!(changed["image"]["digest"], r.digest_changed);
    w.assert_clean(&outs, "after the next build");
    let image = PathBuf::from(changed["image"]["path"].as_str().unwrap());

    // kiln test, killed while the guest runs: the next kiln test takes
    // what it left (QEMU's overlay, QMP socket and console log) and passes.
    w.kill_test(&image);
    let tested = w.run(&["test", image.to_str().unwrap()]);
    assert!(
        tested.status.success(),
        "kiln test after the kill: {}",
        String::from_utf8_lossy(&tested.stderr)
    );
    w.assert_clean(&outs, "after the next kiln test");
    // Killed again: kiln gc takes it.
    w.kill_test(&image);
    let gc = w.json(&["gc"]);
    assert!(gc["count"].as_u64().unwrap() >= 1, "{gc:#}");
    w.assert_clean(&outs, "after kiln gc");
    eprintln!("kills, rebuilds and tests: {:?}", t0.elapsed());

    // A flipped byte in the app layer's blob: fsck names it, --repair
    // removes it, and the rebuild gives the same image.
    let fsck = w.run(&["fsck"]);
    assert_eq!(
        fsck.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let layer = changed["layers"][1]["digest"].as_str().unwrap();
    let blob = w
        .store()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&blob, bytes).unwrap();
    let fsck = w.run(&["fsck"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert_eq!(fsck.status.code(), Some(1), "{said}");
    assert!(
        said.contains(blob.to_str().unwrap()),
        "fsck does not name {}: {said}",
        blob.display()
    );
    let repair = w.run(&["fsck", "--repair"]);
    assert_eq!(
        repair.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&repair.stdout)
    );
    assert!(!blob.exists());
    assert_eq!(w.run(&["fsck"]).status.code(), Some(0));
    let rebuilt = w.json(&build_changed);
    assert_eq!(layers_cached(&rebuilt), [true, false]);
    assert_eq!(rebuilt["image"]["digest"], r.digest_changed);
    w.assert_clean(&outs, "after the rebuild");
    eprintln!("whole test: {:?}", t0.elapsed());
    passed(w);
}

#[test]
fn publish_refuses_forged_manifests_and_writes_nothing() {
    let r = reference();
    let w = Work::new();
    record_passing_verdict(&w.store(), &r.digest, "hello 1.0");
    let key = w.path("ci.key");
    w.json(&["keygen", "-o", key.to_str().unwrap(), "--unencrypted"]);
    let genuine: Value = serde_json::from_slice(
        &fs::read(r.image.with_file_name("hello-1.0.manifest.json")).unwrap(),
    )
    .unwrap();
    // The image, copied deep enough that `../..` from its directory or
    // from the release store stays inside this test's directory.
    let dir = w.path("a/b/c");
    fs::create_dir_all(&dir).unwrap();
    let image = dir.join("hello-1.0.raw");
    let ok = Command::new("cp")
        .arg("--sparse=always")
        .arg(&r.image)
        .arg(&image)
        .status()
        .unwrap();
    assert!(ok.success());
    let beside = dir.join("hello-1.0.manifest.json");
    let publish = [
        "publish",
        image.to_str().unwrap(),
        "--channel",
        "c",
        "--key",
        key.to_str().unwrap(),
    ];
    let outside = w.root.parent().unwrap();
    let refused = |what: &str, manifest: &Path, field: &str| {
        let before = snapshot(&w.root);
        let out = w.run(&publish);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(manifest.to_str().unwrap()) && err.contains(field),
            "{what}: the error should name {} and {field}: {err}",
            manifest.display()
        );
        assert_eq!(snapshot(&w.root), before, "{what}: kiln publish wrote");
        for name in ["escaped", "X.raw"] {
            assert!(!outside.join(name).exists(), "{what}: {name} escaped");
        }
    };
    let forge = |edit: &dyn Fn(&mut Value)| {
        let mut m = genuine.clone();
        edit(&mut m);
        serde_json::to_vec_pretty(&m).unwrap()
    };

    // Beside the image, naming it and its digest, with a name that climbs.
    fs::write(&beside, forge(&|m| m["name"] = "../../escaped".into())).unwrap();
    refused("a forged name", &beside, "field `name`");

    // Beside the image, with a file name that climbs: not this image's
    // manifest, so it is passed over, and the store has none.
    fs::write(
        &beside,
        forge(&|m| {
            m["name"] = "../../escaped".into();
            m["image"]["file"] = "../../../X.raw".into();
        }),
    )
    .unwrap();
    refused("a forged image.file beside", &image, "no kiln manifest");

    // In the store, under the image's digest.
    fs::remove_file(&beside).unwrap();
    let in_store = w
        .store()
        .join("images")
        .join(format!("{}.json", r.digest.trim_start_matches("sha256:")));
    fs::create_dir_all(in_store.parent().unwrap()).unwrap();
    fs::write(
        &in_store,
        forge(&|m| m["image"]["file"] = "../../../X.raw".into()),
    )
    .unwrap();
    refused(
        "a forged image.file in the store",
        &in_store,
        "field `image.file`",
    );

    // The genuine manifest: published, inside the release store.
    fs::remove_file(&in_store).unwrap();
    fs::write(&beside, serde_json::to_vec_pretty(&genuine).unwrap()).unwrap();
    let out = w.run(&publish);
    assert!(
        out.status.success(),
        "the genuine manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.store().join("releases/hello/1.0/hello-1.0.raw").is_file());
    passed(w);
}
