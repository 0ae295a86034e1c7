//! End-to-end tests of `kiln build` on small fixture recipes: caching by key,
//! app-only rebuilds, determinism against host noise, golden digests, and bad
//! input. No network and no QEMU: the Debian source is served by a stand-in
//! `mmdebstrap` on PATH that prints a fixed tarball.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

mod common;

struct Fixture {
    dir: tempfile::TempDir,
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

impl Fixture {
    /// A repo with a Debian-sourced base (served by the fake mmdebstrap), a
    /// files-only app layer and a recipe composing them.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // What the fake mmdebstrap "unpacks".
        write(&root.join("debroot/bin/busybox"), "#!fake busybox\n");
        write(
            &root.join("debroot/usr/share/doc/busybox/copyright"),
            "GPL\n",
        );
        write(&root.join("debroot/etc/motd"), "debian\n");
        let status = Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@1800000000",
                "-C",
            ])
            .arg(root.join("debroot"))
            .args(["-cf"])
            .arg(root.join("deb.tar"))
            .arg(".")
            .status()
            .expect("GNU tar (Debian package tar)");
        assert!(status.success());
        fs::create_dir_all(root.join("bin")).unwrap();
        write(
            &root.join("bin/mmdebstrap"),
            &format!(
                "#!/bin/sh\necho called >> {}\ncat {}\n",
                root.join("mmdebstrap.calls").display(),
                root.join("deb.tar").display()
            ),
        );
        fs::set_permissions(
            root.join("bin/mmdebstrap"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();

        write(
            &root.join("layers/base/mini/layer.toml"),
            r#"[layer]
kind = "base"

[debian]
suite = "bookworm"
packages = ["busybox-static"]
mirror = "http://deb.debian.org/debian"

[strip]
delete = ["usr/share/doc/**"]

[files]
dir = "files"
"#,
        );
        write(&root.join("layers/base/mini/files/etc/hostname"), "mini\n");
        write(
            &root.join("layers/apps/app/layer.toml"),
            r#"[layer]
kind = "app"

[files]
dir = "files"

[[override]]
path = "srv/app/secret"
mode = "0600"
uid = 33
gid = 33

[[service]]
name = "app"
command = ["/bin/busybox", "httpd", "-f"]
"#,
        );
        write(
            &root.join("layers/apps/app/files/srv/app/index.html"),
            "v1\n",
        );
        write(
            &root.join("layers/apps/app/files/srv/app/secret"),
            "s3cret\n",
        );
        // An OCI whiteout in the app's files: deletes the base's etc/motd.
        write(&root.join("layers/apps/app/files/etc/.wh.motd"), "");
        write(
            &root.join("recipes/app.toml"),
            r#"[image]
name = "app"
version = "1.0"
layers = ["../layers/base/mini", "../layers/apps/app"]
source_date_epoch = 1700000000

[disk]
format = "tar"   # no kernel in this fixture: the composed root as a tar
"#,
        );
        Fixture { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self) -> PathBuf {
        self.root().join("store")
    }

    fn out(&self) -> PathBuf {
        self.root().join("out")
    }

    fn mmdebstrap_calls(&self) -> usize {
        fs::read_to_string(self.root().join("mmdebstrap.calls"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn kiln(&self, args: &[&str]) -> Output {
        self.kiln_env(args, &[])
    }

    /// [`Fixture::kiln`] with more environment variables.
    fn kiln_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.root().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // A kiln that would wait forever (on a registry) fails the test.
        common::output_within(
            Command::new(KILN)
                .args(args)
                .arg("--store")
                .arg(self.store())
                .env("PATH", path)
                .env_remove("SOURCE_DATE_EPOCH")
                // Colour is for terminals: kiln decides by what stderr is.
                .env_remove("NO_COLOR")
                .envs(env.iter().copied()),
            std::time::Duration::from_secs(600),
        )
    }

    fn build_json(&self, recipe: &str) -> Value {
        let out = self.kiln(&[
            "build",
            &self.root().join(recipe).display().to_string(),
            "-o",
            &self.out().display().to_string(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "kiln build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn cached(report: &Value) -> Vec<bool> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cached"].as_bool().unwrap())
        .collect()
}

/// `sha256sum -c SHA256SUMS` in `dir` passes (an outside check of kiln's sums).
fn sha256sum_accepts(dir: &Path) {
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn second_build_is_cached_and_identical() {
    let f = Fixture::new();
    let first = f.build_json("recipes/app.toml");
    assert_eq!(cached(&first), [false, false]);
    assert_eq!(f.mmdebstrap_calls(), 1);
    let second = f.build_json("recipes/app.toml");
    assert_eq!(cached(&second), [true, true]);
    assert_eq!(
        f.mmdebstrap_calls(),
        1,
        "a cached layer must not call mmdebstrap"
    );
    assert_eq!(first["image"]["digest"], second["image"]["digest"]);

    // The output checks out with sha256sum, and the image holds what the layers say.
    sha256sum_accepts(&f.out());
    let list = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(f.out().join("app-1.0.tar"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("bin/busybox"), "{list}");
    assert!(
        !list.contains("usr/share/doc/busybox/copyright"),
        "strip rules apply: {list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rw------- 33/33") && l.ends_with("srv/app/secret")),
        "{list}"
    );
    assert!(list.contains("etc/kiln/services/app/run"), "{list}");
    assert!(
        !list.contains("etc/motd") && !list.contains(".wh."),
        "the app's whiteout hides the base's etc/motd: {list}"
    );
    // Package times are clamped to SOURCE_DATE_EPOCH.
    assert!(!list.contains("2027-"), "{list}");
}

#[test]
fn an_image_changed_in_place_is_assembled_again() {
    use std::os::unix::fs::FileExt;
    let f = Fixture::new();
    let first = f.build_json("recipes/app.toml");
    let digest = first["image"]["digest"].as_str().unwrap().to_owned();
    let cached_file = f
        .store()
        .join("images")
        .join(format!("{}.raw", digest.trim_start_matches("sha256:")));
    // Someone writes into the output (the store's cached file may be the
    // same file: a hard link).
    let image = f.out().join("app-1.0.tar");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .write_all_at(b"changed", 600)
        .unwrap();
    let second = f.build_json("recipes/app.toml");
    assert_eq!(cached(&second), [true, true]);
    assert_eq!(second["image"]["digest"], first["image"]["digest"]);
    sha256sum_accepts(&f.out());
    // The store holds the image as it should be again.
    let bytes = std::fs::read(&cached_file).unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        digest
    );
}

#[test]
fn an_output_directory_on_another_file_system_gets_the_image() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    // /dev/shm: a tmpfs wherever Linux runs (containers too), and not the
    // file system of the store, so nothing can be linked or copied in the
    // kernel between the two.
    let shm = Path::new("/dev/shm");
    let other = tempfile::tempdir_in(shm).expect("a directory in /dev/shm (a tmpfs)");
    let store_dev = fs::metadata(f.root()).unwrap().dev();
    assert_ne!(
        fs::metadata(other.path()).unwrap().dev(),
        store_dev,
        "/dev/shm is on the test's own file system"
    );
    let out = other.path().join("out");
    let build = || {
        let o = f.kiln(&[
            "build",
            &f.root().join("recipes/app.toml").display().to_string(),
            "-o",
            &out.display().to_string(),
            "--json",
        ]);
        assert!(
            o.status.success(),
            "kiln build failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let first = build();
    let digest = first["image"]["digest"].as_str().unwrap().to_owned();
    sha256sum_accepts(&out);
    let cached_file = f
        .store()
        .join("images")
        .join(format!("{}.raw", digest.trim_start_matches("sha256:")));
    assert_eq!(fs::metadata(&cached_file).unwrap().dev(), store_dev);
    let bytes = fs::read(&cached_file).unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        digest
    );
    // Output gone: the store's copy comes back across.
    fs::remove_file(out.join("app-1.0.tar")).unwrap();
    let second = build();
    assert_eq!(second["image"]["digest"], first["image"]["digest"]);
    sha256sum_accepts(&out);
}

#[test]
fn editing_the_app_rebuilds_only_the_app() {
    let f = Fixture::new();
    let first = f.build_json("recipes/app.toml");
    write(
        &f.root().join("layers/apps/app/files/srv/app/index.html"),
        "v2\n",
    );
    let second = f.build_json("recipes/app.toml");
    assert_eq!(cached(&second), [true, false]);
    assert_eq!(first["layers"][0]["digest"], second["layers"][0]["digest"]);
    assert_ne!(first["layers"][1]["digest"], second["layers"][1]["digest"]);
    assert_ne!(first["image"]["digest"], second["image"]["digest"]);
    assert_eq!(f.mmdebstrap_calls(), 1);
}

/// Golden digests: an accidental change to the layer format, the key's
/// canonical form or the tar writer changes these and must be deliberate
/// (bump LAYER_FORMAT_VERSION).
#[test]
fn golden_layer_key_and_digest() {
    let f = Fixture::new();
    let r = f.build_json("recipes/app.toml");
    let app = &r["layers"][1];
    assert_eq!(
        app["key"],
        "sha256:bcbcb3276b4b18efe1927e831e4cf1fcc826098a58fb3f067d432d63f16d5816"
    );
    assert_eq!(
        app["digest"],
        "sha256:8d2a36a8bef1beada8bb9aee1239d96aa8eedaaae85cc8dd1b1ba36073cba62c"
    );
}

/// The same sources with other mtimes, another umask, and files created in
/// another order give the same layer digests and the same image.
#[test]
fn host_noise_does_not_change_digests() {
    let a = Fixture::new();
    let ra = a.build_json("recipes/app.toml");

    let b = Fixture::new();
    let files = b.root().join("layers/apps/app/files/srv/app");
    fs::remove_dir_all(&files).unwrap();
    fs::create_dir_all(&files).unwrap();
    // Reverse creation order, group/other bits stripped, odd mtimes.
    write(&files.join("secret"), "s3cret\n");
    write(&files.join("index.html"), "v1\n");
    for f in ["secret", "index.html"] {
        fs::set_permissions(files.join(f), fs::Permissions::from_mode(0o600)).unwrap();
        let ok = Command::new("touch")
            .args(["-d", "2001-02-03 04:05:06"])
            .arg(files.join(f))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077; TZ=Pacific/Kiritimati exec {KILN} build {} -o {} --json --store {}",
            b.root().join("recipes/app.toml").display(),
            b.out().display(),
            b.store().display()
        ))
        .env(
            "PATH",
            format!(
                "{}:{}",
                b.root().join("bin").display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rb: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ra["layers"], rb["layers"]);
    assert_eq!(ra["image"]["digest"], rb["image"]["digest"]);
}

/// Each bad input exits 2 with a message naming file, line and field, and
/// leaves nothing in the store or the output directory.
#[test]
fn bad_inputs_are_named_and_leave_nothing_behind() {
    // (file to change, its new content, expected fragments of the message)
    let cases: &[(&str, &[u8], &[&str])] = &[
        ("recipes/app.toml", b"", &["recipes/app.toml", "empty"]),
        ("recipes/app.toml", b"[image\nname = 1", &["recipes/app.toml:1", "unclosed table"]),
        (
            "recipes/app.toml",
            b"[image]\nname = \"app\"\nversion = \"1\"\nlayers = [\"../layers/base/mini\"]\ncolour = \"red\"\n",
            &["recipes/app.toml:5", "field `image.colour`", "unknown field"],
        ),
        ("recipes/app.toml", b"[image]\nname = \"app\xff\"\n", &["recipes/app.toml:2", "UTF-8"]),
        (
            "recipes/app.toml",
            b"[image]\nname = \"app\"\nversion = 1\nlayers = [\"../layers/base/mini\"]\n",
            &["recipes/app.toml:3", "invalid type"],
        ),
        (
            "recipes/app.toml",
            b"[image]\nname = \"app\"\nversion = \"1\"\nlayers = [\n  \"../layers/base/mini\",\n  \"../layers/apps/nope\",\n]\n",
            &["recipes/app.toml:6", "field `image.layers[1]`", "not found"],
        ),
        (
            "recipes/app.toml",
            b"[image]\nname = \"app\"\nversion = \"1\"\nlayers = [\"../layers/apps/app\", \"../layers/base/mini\"]\n",
            &["recipes/app.toml:4", "first layer must be a base layer"],
        ),
        (
            "recipes/app.toml",
            b"[image]\nname = \"a pp\"\nversion = \"1\"\nlayers = [\"../layers/base/mini\"]\n",
            &["recipes/app.toml:2", "field `image.name`"],
        ),
        (
            "recipes/app.toml",
            b"[image]\nname = \"app\"\nversion = \"1\"\nlayers = [\"../layers/base/mini\"]\n[[test.console]]\npattern = \"(unclosed\"\n",
            &["recipes/app.toml:6", "field `test.console[0].pattern`", "regular expression"],
        ),
        ("layers/apps/app/layer.toml", b"[layer]\nkind = \"application\"\n", &["layers/apps/app/layer.toml:2", "field `layer.kind`"]),
        (
            "layers/apps/app/layer.toml",
            b"[layer]\nkind = \"app\"\n[files]\ndir = \"files\"\n[[override]]\npath = \"srv/app/*\"\nmode = \"0999\"\n",
            &["layers/apps/app/layer.toml:7", "field `override[0].mode`", "octal"],
        ),
        (
            "layers/apps/app/layer.toml",
            b"[layer]\nkind = \"app\"\n[files]\ndir = \"files\"\n[[override]]\npath = \"nothing/here\"\nmode = \"0644\"\n",
            &["layers/apps/app/layer.toml:6", "matches no file"],
        ),
        (
            "layers/apps/app/layer.toml",
            b"[layer]\nkind = \"app\"\n[files]\ndir = \"files\"\n[[service]]\nname = \"app\"\ncommand = [\"/usr/bin/missing\"]\n",
            &["layers/apps/app/layer.toml:6", "field `service.command`", "/usr/bin/missing does not exist"],
        ),
        ("layers/apps/app/layer.toml", b"[layer]\nkind = \"app\"\n[files]\ndir = \"nofiles\"\n", &["layers/apps/app/layer.toml:4", "field `files.dir`", "does not exist"]),
    ];
    for (file, content, want) in cases {
        let f = Fixture::new();
        fs::write(f.root().join(file), content).unwrap();
        fs::create_dir_all(f.out()).unwrap();
        let out = f.kiln(&[
            "build",
            &f.root().join("recipes/app.toml").display().to_string(),
            "-o",
            &f.out().display().to_string(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file} {:?}: {stderr}",
            String::from_utf8_lossy(content)
        );
        for w in *want {
            assert!(stderr.contains(w), "{file}: expected {w:?} in: {stderr}");
        }
        let store_entries = walk_files(&f.store());
        assert!(
            store_entries.is_empty() || store_entries.iter().all(|p| p.ends_with("lock")),
            "store written: {store_entries:?}"
        );
        assert_eq!(
            walk_files(&f.out()),
            Vec::<PathBuf>::new(),
            "output written for {file}"
        );
    }
}

#[test]
fn escaping_symlink_is_refused() {
    let f = Fixture::new();
    std::os::unix::fs::symlink(
        "../../../../etc/passwd",
        f.root().join("layers/apps/app/files/srv/app/passwd"),
    )
    .unwrap();
    let out = f.kiln(&[
        "build",
        &f.root().join("recipes/app.toml").display().to_string(),
        "-o",
        &f.out().display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("srv/app/passwd") && stderr.contains("outside"),
        "{stderr}"
    );
    assert!(!f.store().exists());
}

impl Fixture {
    /// `kiln build` of the fixture's recipe into `out/`.
    fn build(&self) -> (Option<i32>, String) {
        let out = self.kiln(&[
            "build",
            &self.root().join("recipes/app.toml").display().to_string(),
            "-o",
            &self.out().display().to_string(),
        ]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Bad input found in planning: exit 2, the message names `want`, and
    /// nothing ran, nothing was fetched and nothing was written.
    fn refused_in_planning(&self, want: &[&str]) {
        let (code, stderr) = self.build();
        assert_eq!(code, Some(2), "{stderr}");
        for w in want {
            assert!(stderr.contains(w), "expected {w:?} in: {stderr}");
        }
        assert_eq!(self.mmdebstrap_calls(), 0, "{stderr}");
        assert!(!self.store().exists(), "store created: {stderr}");
        assert!(!self.out().exists(), "-o created: {stderr}");
    }
}

/// `[files] dir` must stay inside the layer directory: `..`, an absolute
/// path, a `files` that is a symlink out and a symlinked parent component
/// all exit 2 naming the layer file, line and field.
#[test]
fn files_dir_outside_the_layer_is_refused() {
    let layer = "layers/apps/app";
    let cases: &[(&str, &str)] = &[
        (
            "../../../../../../../../../../etc",
            "outside the layer directory",
        ),
        ("/etc", "must be a relative path"),
        ("linked", "outside the layer directory"),
        ("up/etc", "outside the layer directory"),
    ];
    for (dir, why) in cases {
        let f = Fixture::new();
        std::os::unix::fs::symlink("/etc", f.root().join(layer).join("linked")).unwrap();
        std::os::unix::fs::symlink("/", f.root().join(layer).join("up")).unwrap();
        write(
            &f.root().join(layer).join("layer.toml"),
            &format!("[layer]\nkind = \"app\"\n\n[files]\ndir = \"{dir}\"\n"),
        );
        f.refused_in_planning(&[&format!("{layer}/layer.toml:5"), "field `files.dir`", why]);
    }
}

/// Whiteouts in an app's files reach the layers below; a malformed one
/// (`.wh.` alone at the top once removed the whole root and failed late with
/// exit 3) is bad input naming the file.
#[test]
fn malformed_whiteouts_in_files_are_refused() {
    let files = "layers/apps/app/files";
    for (path, why) in [
        (".wh.", "names nothing"),
        ("etc/.wh..", "own entry"),
        ("etc/.wh..wh.motd", "reserved"),
        (".wh..wh..opq", "every layer below"),
    ] {
        let f = Fixture::new();
        write(&f.root().join(files).join(path), "");
        f.refused_in_planning(&[&format!("{files}/{path}"), why]);
    }
}

/// A service program that no layer can provide fails in planning when the
/// plan can tell (the app's own files don't hold it and the base's strip
/// rules delete everything else there), before mmdebstrap runs; when only the
/// build can tell, it fails after building with no output directory made.
#[test]
fn missing_service_program_is_found_before_building() {
    let strip_all = |f: &Fixture| {
        let p = f.root().join("layers/base/mini/layer.toml");
        let text = fs::read_to_string(&p).unwrap().replace(
            "delete = [\"usr/share/doc/**\"]",
            "delete = [\"**\"]\nkeep = [\"bin/busybox\", \"etc/motd\"]",
        );
        fs::write(p, text).unwrap();
    };
    let service = |f: &Fixture, prog: &str| {
        let p = f.root().join("layers/apps/app/layer.toml");
        let text = fs::read_to_string(&p)
            .unwrap()
            .replace("/bin/busybox", prog);
        fs::write(p, text).unwrap();
    };

    // A typo beside the app's own files.
    let f = Fixture::new();
    strip_all(&f);
    service(&f, "/srv/app/indx.html");
    f.refused_in_planning(&[
        "layers/apps/app/layer.toml:14",
        "field `service.command`",
        "/srv/app/indx.html does not exist",
        "[strip] rules of base/mini",
    ]);
    // A directory of the app's own files.
    let f = Fixture::new();
    service(&f, "/srv/app");
    f.refused_in_planning(&["/srv/app does not exist", "is a directory"]);
    // Not a clean path.
    let f = Fixture::new();
    service(&f, "/bin/../bin/busybox");
    f.refused_in_planning(&["field `service[0].command`", "clean absolute path"]);
    // The base's packages may hold it: only the build can tell.
    let f = Fixture::new();
    service(&f, "/usr/bin/missing");
    let (code, stderr) = f.build();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("/usr/bin/missing does not exist"),
        "{stderr}"
    );
    assert_eq!(f.mmdebstrap_calls(), 1);
    assert!(!f.out().exists(), "-o created: {stderr}");
    // What the strip rules keep is left to the build, which finds it.
    let f = Fixture::new();
    strip_all(&f);
    let (code, stderr) = f.build();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn missing_mmdebstrap_is_an_environment_error() {
    let f = Fixture::new();
    fs::remove_file(f.root().join("bin/mmdebstrap")).unwrap();
    let out = Command::new(KILN)
        .args([
            "build",
            &f.root().join("recipes/app.toml").display().to_string(),
            "-o",
            &f.out().display().to_string(),
            "--store",
        ])
        .arg(f.store())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("mmdebstrap") && stderr.contains("install"),
        "{stderr}"
    );
}

#[test]
fn ls_and_inspect_report_the_build() {
    let f = Fixture::new();
    let r = f.build_json("recipes/app.toml");
    let out = f.kiln(&["ls", "--json"]);
    assert!(out.status.success());
    let ls: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls["layers"].as_array().unwrap().len(), 2);
    assert_eq!(ls["images"][0]["digest"], r["image"]["digest"]);
    let out = f.kiln(&["inspect", "--json", r["image"]["path"].as_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let i: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["digest_verified"], true);
    assert_eq!(i["manifest"]["layers"][1]["name"], "apps/app");
    let out = f.kiln(&["inspect", "--json", r["image"]["digest"].as_str().unwrap()]);
    assert!(out.status.success());
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `--check-reproducible` builds twice from nothing (umask, time zone and
/// clock differ) and finds the fixture reproducible, with the derived
/// SOURCE_DATE_EPOCH as well as a fixed one; the outputs land in `-o`.
#[test]
fn check_reproducible_passes_and_writes_the_outputs() {
    let f = Fixture::new();
    let recipe = f.root().join("recipes/app.toml");
    let text = fs::read_to_string(&recipe).unwrap();
    fs::write(
        f.root().join("recipes/derived.toml"),
        text.replace("source_date_epoch = 1700000000\n", ""),
    )
    .unwrap();
    for r in ["recipes/app.toml", "recipes/derived.toml"] {
        let out = f.kiln(&[
            "build",
            "--check-reproducible",
            &f.root().join(r).display().to_string(),
            "-o",
            &f.out().display().to_string(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{r}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rep["reproducible"], true, "{rep}");
        let builds = rep["builds"].as_array().unwrap();
        assert_eq!(builds.len(), 2);
        assert_eq!(builds[0]["digest"], builds[1]["digest"]);
        assert_ne!(
            builds[0]["conditions"]["umask"],
            builds[1]["conditions"]["umask"]
        );
        assert_ne!(builds[0]["conditions"]["tz"], builds[1]["conditions"]["tz"]);
        assert!(builds[1]["conditions"]["faketime"].is_string());
        let image = rep["image"].as_str().unwrap();
        assert!(Path::new(image).is_file(), "{image}");
    }
    // Nothing of the two builds is left in the user's store.
    assert!(!f.store().join("keys").exists());
}

/// An input made time-dependent on purpose (the package source writes the
/// clock into a file) fails the check, and the report names that file.
#[test]
fn check_reproducible_names_a_time_dependent_file() {
    let f = Fixture::new();
    let script = format!(
        "#!/bin/sh\nset -e\nd=$(mktemp -d)\ntar -xf {tar} -C \"$d\"\ndate +%s%N > \"$d/etc/build-stamp\"\ntar --sort=name --numeric-owner -C \"$d\" -cf - .\nrm -rf \"$d\"\n",
        tar = f.root().join("deb.tar").display()
    );
    fs::write(f.root().join("bin/mmdebstrap"), script).unwrap();
    let out = f.kiln(&[
        "build",
        "--check-reproducible",
        &f.root().join("recipes/app.toml").display().to_string(),
        "-o",
        &f.out().display().to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("NOT reproducible: tar: /etc/build-stamp: content"),
        "{stdout}"
    );
    assert!(stderr.contains("/etc/build-stamp"), "{stderr}");
    // A failed check writes nothing to the output directory.
    assert!(!f.out().exists() || fs::read_dir(f.out()).unwrap().count() == 0);
}

#[test]
fn several_recipes_share_their_base_and_a_failing_one_leaves_the_others() {
    let f = Fixture::new();
    let r = f.root();
    write(
        &r.join("layers/apps/other/layer.toml"),
        "[layer]\nkind = \"app\"\n\n[files]\ndir = \"files\"\n",
    );
    write(
        &r.join("layers/apps/other/files/srv/other/index.html"),
        "other\n",
    );
    write(
        &r.join("recipes/other.toml"),
        "[image]\nname = \"other\"\nversion = \"2.0\"\nlayers = [\"../layers/base/mini\", \"../layers/apps/other\"]\nsource_date_epoch = 1700000000\n\n[disk]\nformat = \"tar\"\n",
    );
    write(&r.join("recipes/bad.toml"), "[image]\nname = \"bad\"\n");
    let arg = |p: &str| r.join(p).display().to_string();
    let out = f.kiln(&[
        "build",
        &arg("recipes/app.toml"),
        &arg("recipes/bad.toml"),
        &arg("recipes/other.toml"),
        "-o",
        &f.out().display().to_string(),
        "--jobs",
        "3",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.toml"),
        "the error names the recipe: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = report["images"].as_array().unwrap();
    let names: Vec<&str> = images
        .iter()
        .map(|i| i["image"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "other"]);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
    assert!(report["failed"][0]["recipe"]
        .as_str()
        .unwrap()
        .ends_with("bad.toml"));
    assert_eq!(report["failed"][0]["exit_code"], 2);
    // The shared base was made once: by one build, found in the store by the other.
    assert_eq!(f.mmdebstrap_calls(), 1);
    let mut base: Vec<&str> = images
        .iter()
        .map(|i| i["layers"][0]["source"].as_str().unwrap())
        .collect();
    base.sort();
    assert_eq!(base, ["built", "store"]);
    assert_eq!(
        images[0]["layers"][0]["digest"],
        images[1]["layers"][0]["digest"]
    );
    for i in images {
        assert!(Path::new(i["image"]["path"].as_str().unwrap()).is_file());
    }
    // SHA256SUMS covers both images, and sha256sum agrees with it.
    let sums = fs::read_to_string(f.out().join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains("  app-1.0.tar\n") && sums.contains("  other-2.0.tar\n"),
        "{sums}"
    );
    sha256sum_accepts(&f.out());
    // One recipe alone prints the single-image object, as before.
    let one = f.build_json("recipes/other.toml");
    assert_eq!(one["image"]["name"], "other");
    assert_eq!(one["layers"][1]["source"], "store");
}

#[test]
fn an_unreachable_cache_is_a_warning_and_the_layers_are_built() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cache_failure_is_a_warning(port, &[], "cannot reach");
}

#[test]
fn a_cache_that_accepts_and_never_answers_is_a_warning_and_the_layers_are_built() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept every connection and hold it, unanswered, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let limit = [("KILN_REGISTRY_TIMEOUT", "0.5")];
    cache_failure_is_a_warning(port, &limit, "no answer in time");
}

/// A build with `--cache` at a loopback `port` that fails as `want` says:
/// one warning, and every layer built here.
fn cache_failure_is_a_warning(port: u16, env: &[(&str, &str)], want: &str) {
    let f = Fixture::new();
    let out = f.kiln_env(
        &[
            "build",
            &f.root().join("recipes/app.toml").display().to_string(),
            "-o",
            &f.out().display().to_string(),
            "--cache",
            &format!("oci://127.0.0.1:{port}/kiln/cache"),
            "--json",
        ],
        env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("layer cache") && stderr.contains(want),
        "{stderr}"
    );
    // Warned once: the cache is left alone after the first failure.
    assert_eq!(stderr.matches(want).count(), 1, "{stderr}");
    // stderr is a pipe here, not a terminal: no colour, no escape sequence.
    assert!(!out.stderr.contains(&0x1b), "{stderr:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources: Vec<&str> = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["built", "built"]);
}
