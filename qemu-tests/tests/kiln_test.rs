//! `kiln test` end to end: hello passes (JUnit, verdict, image untouched,
//! nothing left behind), and each negative case fails for the right reason:
//! an app that never comes up, a tampered root (verity), a hung guest
//! (timeout), a host command that fails (after a TCP exchange that passes),
//! a command whose program is missing, and SIGTERM to kiln mid-boot. An
//! image in a read-only directory still gets its verdict.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use kiln_qemu_tests::{kiln_bin, kiln_json, repo_root, require_tool, scratch_repo};
use serde_json::Value;

struct Shared {
    dir: PathBuf,
    image: PathBuf,
}

/// hello built once (its store then serves the negative recipes' cached base).
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        require_tool("mmdebstrap", "mmdebstrap");
        let dir = tempfile::tempdir().unwrap().keep();
        let out = dir.join("out");
        let r = kiln_json(
            &[
                "build",
                repo_root().join("recipes/hello.toml").to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &dir.join("store"),
            &[],
        );
        Shared {
            image: PathBuf::from(r["image"]["path"].as_str().unwrap()),
            dir,
        }
    })
}

fn store() -> PathBuf {
    shared().dir.join("store")
}

/// Run `kiln test ... --json` with its own TMPDIR; returns (exit code, verdict JSON, stderr, tmpdir).
fn kiln_test(target: &Path, extra: &[&str]) -> (Option<i32>, Value, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(kiln_bin())
        .arg("test")
        .arg(target)
        .args(extra)
        .args(["--json", "--store"])
        .arg(store())
        .env("TMPDIR", tmp.path())
        .env("KILN_ACCEL", "tcg")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, stderr, tmp)
}

/// No QEMU started by kiln (their scratch directories are named kiln-qemu-*)
/// is still running, and kiln left nothing in its TMPDIR.
fn assert_nothing_left(tmp: &Path) {
    std::thread::sleep(Duration::from_millis(300));
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let leftover: Vec<&str> = ps
        .lines()
        .filter(|l| l.contains("qemu-system") && l.contains(&tmp.display().to_string()))
        .collect();
    assert!(leftover.is_empty(), "QEMU still running: {leftover:?}");
    let left: Vec<_> = fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// A copy of the shared hello image in `dir` (holes kept).
fn copy_of_hello(dir: &Path) -> PathBuf {
    let image = dir.join("hello-1.0.raw");
    let ok = Command::new("cp")
        .arg("--sparse=always")
        .arg(&shared().image)
        .arg(&image)
        .status()
        .unwrap();
    assert!(ok.success());
    image
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn hello_passes_with_junit_and_an_untouched_image() {
    let image = &shared().image;
    let before = sha256(image);
    let junit = shared().dir.join("junit.xml");
    let (code, v, stderr, tmp) = kiln_test(image, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(code, Some(0), "kiln test failed: {stderr}\n{v:#}");
    assert_eq!(v["passed"], true);
    assert_eq!(sha256(image), before, "the image changed during the test");
    assert_eq!(v["image_digest"], format!("sha256:{before}"));
    let checks = v["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for want in [
        "console[0] hello: listening on :8080",
        "tcp[0] :8080",
        "http[0] GET :8080/",
        "shutdown",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let xml = fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), checks.len(), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
    for phase in ["firmware", "kernel", "init", "ready"] {
        assert!(
            v["phases"][phase].as_f64().is_some(),
            "phase {phase} missing: {v}"
        );
    }
    // The verdict is in the store and inspect shows it.
    let i = kiln_json(&["inspect", image.to_str().unwrap()], &store(), &[]);
    assert!(
        i["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["passed"] == true),
        "{i}"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn tampered_root_fails_on_verity() {
    require_tool("debugfs", "e2fsprogs");
    let dir = tempfile::tempdir().unwrap();
    let image = copy_of_hello(dir.path());
    let manifest = shared().image.with_file_name("hello-1.0.manifest.json");
    fs::copy(&manifest, dir.path().join("hello-1.0.manifest.json")).unwrap();
    // One data block of /usr/bin/busybox (the init), found with debugfs on the root partition.
    let m: Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    let root = m["disk"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "root-x86-64")
        .unwrap();
    let (offset, size) = (
        root["offset"].as_u64().unwrap(),
        root["size"].as_u64().unwrap(),
    );
    let part = dir.path().join("root.img");
    let ok = Command::new("dd")
        .arg(format!("if={}", image.display()))
        .arg(format!("of={}", part.display()))
        .args([
            "bs=1M",
            &format!("skip={}", offset >> 20),
            &format!("count={}", size >> 20),
            "status=none",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new("debugfs")
        .args(["-R", "blocks /usr/bin/busybox"])
        .arg(&part)
        .output()
        .unwrap();
    let block: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(10)
        .and_then(|w| w.parse().ok())
        .expect("blocks of /usr/bin/busybox");
    let mut f = fs::OpenOptions::new().write(true).open(&image).unwrap();
    f.seek(SeekFrom::Start(offset + block * 4096)).unwrap();
    f.write_all(&[0xa5; 4096]).unwrap();
    drop(f);
    // kiln uses only a manifest naming the file's digest: the attacker who
    // rewrote the image rewrites its unsigned manifest too, and dm-verity
    // (the root hash is inside the image's UKI) is what stands in the way.
    let mut m = m;
    m["image"]["digest"] = Value::from(
        kiln::util::digest::Digest::of_file(&image)
            .unwrap()
            .to_string(),
    );
    fs::write(
        dir.path().join("hello-1.0.manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();

    let (code, v, stderr, tmp) = kiln_test(&image, &[]);
    assert_eq!(code, Some(1), "{stderr}\n{v:#}");
    let failed = v["failed_check"].as_str().unwrap();
    assert!(
        failed.starts_with("forbid"),
        "failed for the wrong reason: {failed}\n{v:#}"
    );
    let detail = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == failed)
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("verity") || detail.contains("kiln-init: FATAL"),
        "{detail}"
    );
    assert_nothing_left(tmp.path());
}

/// A recipe from a scratch copy of the repo, edited by `edit`.
fn scratch_recipe(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let repo = scratch_repo();
    edit(repo.path());
    let recipe = repo.path().join("recipes/hello.toml");
    (repo, recipe)
}

#[test]
fn app_that_never_comes_up_fails_its_console_check() {
    let (repo, recipe) = scratch_recipe(|r| {
        fs::write(
            r.join("layers/apps/hello/files/usr/lib/hello/start"),
            "#!/bin/sh\n# Never serves.\nexec /bin/busybox sleep 100000\n",
        )
        .unwrap();
        let text = fs::read_to_string(r.join("recipes/hello.toml"))
            .unwrap()
            .replace("timeout = 90", "timeout = 20");
        fs::write(r.join("recipes/hello.toml"), text).unwrap();
    });
    let out = repo.path().join("out");
    let (code, v, stderr, tmp) = kiln_test(&recipe, &["-o", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}\n{v:#}");
    assert_eq!(
        v["failed_check"], "console[0] hello: listening on :8080",
        "{v:#}"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn failing_command_fails_the_verdict_naming_it_and_its_output() {
    require_tool("curl", "curl");
    let command = "curl --silent --show-error --fail http://127.0.0.1:{port:8080}/missing";
    let (repo, recipe) = scratch_recipe(|r| {
        let hello = fs::read_to_string(r.join("recipes/hello.toml")).unwrap();
        let checks = "\n[[test.tcp]]\nport = 8080\nsend = \"GET / HTTP/1.0\\r\\n\\r\\n\"\n\
                      expect = '^HTTP/1\\.[01] 200'\n\n[[test.command]]\nargv = [";
        let argv: Vec<String> = command.split(' ').map(|w| format!("{w:?}")).collect();
        fs::write(
            r.join("recipes/hello.toml"),
            format!("{hello}{checks}{}]\n", argv.join(", ")),
        )
        .unwrap();
        // The same checks with a client that is not installed.
        fs::write(
            r.join("recipes/missing.toml"),
            format!("{hello}{checks}\"/nonexistent/redis-cli\", \"PING\"]\n")
                .replace("name = \"hello\"", "name = \"missing\""),
        )
        .unwrap();
    });
    let out = repo.path().join("out");

    // A missing client: exit 3 naming its package, before anything boots.
    let missing = repo.path().join("recipes/missing.toml");
    let (code, _, stderr, tmp) = kiln_test(&missing, &["-o", out.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("redis-tools"), "{stderr}");
    assert_nothing_left(tmp.path());

    let (code, v, stderr, tmp) = kiln_test(&recipe, &["-o", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}\n{v:#}");
    let name = format!("command[0] {command}");
    assert_eq!(v["failed_check"], name.as_str(), "{v:#}");
    let checks = v["checks"].as_array().unwrap();
    let exchange = checks.iter().find(|c| c["name"] == "tcp[1] :8080").unwrap();
    assert_eq!(exchange["passed"], true, "{exchange}");
    let failed = checks.iter().find(|c| c["name"] == name.as_str()).unwrap();
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("exit status 22, expected 0") && detail.contains("404"),
        "{detail}"
    );
    assert!(stderr.contains(&name), "{stderr}");
    assert_nothing_left(tmp.path());
}

#[test]
fn hung_guest_times_out_and_qemu_is_killed() {
    let (repo, recipe) = scratch_recipe(|r| {
        fs::write(
            r.join("layers/apps/hello/files/usr/lib/hello/hang"),
            "#!/bin/sh\n# An init that never gets anywhere.\nwhile :; do :; done\n",
        )
        .unwrap();
        let toml = fs::read_to_string(r.join("layers/apps/hello/layer.toml")).unwrap()
            + "\n[[override]]\npath = \"usr/lib/hello/hang\"\nmode = \"0755\"\n";
        fs::write(r.join("layers/apps/hello/layer.toml"), toml).unwrap();
        let text = fs::read_to_string(r.join("recipes/hello.toml"))
            .unwrap()
            .replace(
                "cmdline = \"console=ttyS0 quiet\"",
                "cmdline = \"console=ttyS0 quiet\"\ninit = \"/usr/lib/hello/hang\"",
            )
            .replace("timeout = 120", "timeout = 25")
            .replace("timeout = 90", "timeout = 300");
        fs::write(r.join("recipes/hello.toml"), text).unwrap();
    });
    let out = repo.path().join("out");
    let (code, v, stderr, tmp) = kiln_test(&recipe, &["-o", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}\n{v:#}");
    assert_eq!(v["failed_check"], "timeout", "{v:#}");
    assert!(v["duration_secs"].as_f64().unwrap() < 60.0, "{v}");
    assert_nothing_left(tmp.path());
}

/// Whether a QEMU started by a kiln whose TMPDIR is `tmp` is running.
fn qemu_running(tmp: &Path) -> bool {
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .any(|l| l.contains("qemu-system") && l.contains(&tmp.display().to_string()))
}

#[test]
fn sigterm_stops_qemu_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(kiln_bin())
        .arg("test")
        .arg(&shared().image)
        .args(["--quiet", "--store"])
        .arg(store())
        .env("TMPDIR", tmp.path())
        .env("KILN_ACCEL", "tcg")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let QEMU get going: the signal must reach a kiln that is booting.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !qemu_running(tmp.path()) {
        let exited = child.try_wait().unwrap();
        if exited.is_some() || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "QEMU never ran under kiln test ({:?}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        qemu_running(tmp.path()) && child.try_wait().unwrap().is_none(),
        "QEMU or kiln stopped before the signal"
    );
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(!status.success(), "kiln test should fail when interrupted");
    assert_nothing_left(tmp.path());
}

/// A directory not even root can write to while it lives: a read-only bind
/// mount of itself for root, mode 0555 for anyone else.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        let id = Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&id.stdout).trim() == "0" {
            for args in [&["--bind"][..], &["-o", "remount,bind,ro"]] {
                let ok = Command::new("mount")
                    .args(args)
                    .arg(dir)
                    .arg(dir)
                    .status()
                    .unwrap();
                assert!(ok.success(), "mount {args:?} {}", dir.display());
            }
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        }
        assert!(
            fs::write(dir.join("probe"), b"").is_err(),
            "{} is still writable",
            dir.display()
        );
        ReadOnly(dir.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
    }
}

/// The verdicts the shared store holds for `image`.
fn verdicts_of(image: &Path) -> usize {
    fs::read_dir(store().join("verdicts").join(sha256(image)))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// An image in a directory kiln cannot write to: a JUnit report there is
/// refused before anything boots; without one, the boot is judged, its
/// verdict printed and recorded, and the console log kept in TMPDIR with a
/// warning.
#[test]
fn an_image_in_a_read_only_directory_keeps_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let image = copy_of_hello(&ro);
    let _ro = ReadOnly::new(&ro);
    let before = verdicts_of(&image);

    let junit = ro.join("junit.xml");
    let (code, v, stderr, tmp) = kiln_test(&image, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{stderr}\n{v:#}");
    assert!(stderr.contains(junit.to_str().unwrap()), "{stderr}");
    assert!(!qemu_running(tmp.path()));
    assert_eq!(verdicts_of(&image), before, "a verdict without a boot");
    assert_nothing_left(tmp.path());

    let (code, v, stderr, tmp) = kiln_test(&image, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    assert_eq!(v["passed"], true, "{v:#}");
    assert_eq!(
        verdicts_of(&image),
        before + 1,
        "the verdict is not recorded"
    );
    let log = tmp.path().join("kiln-hello-1.0.console.log");
    assert_eq!(v["console_log"], log.to_str().unwrap(), "{v:#}");
    assert!(
        stderr.contains(&format!("the console log goes to {}", log.display())),
        "{stderr}"
    );
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("hello: listening on :8080"), "{text}");
    fs::remove_file(&log).unwrap();
    assert_nothing_left(tmp.path());
}
