//! Helpers for kiln's end-to-end tests, which build the repository's own
//! recipes with the real tools (mmdebstrap, QEMU, OVMF) and check the results
//! with tools nobody here wrote. Run by `scripts/test.sh` (and CI), not by a
//! plain `cargo test`. A missing tool fails the test, naming its package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("qemu-tests lives in the repo root")
        .to_path_buf()
}

/// The kiln binary under test: `$KILN_BIN` (set by scripts/test.sh), else
/// target/release/kiln, else target/debug/kiln.
pub fn kiln_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_BIN") {
        return PathBuf::from(p);
    }
    for profile in ["release", "debug"] {
        let p = repo_root().join("target").join(profile).join("kiln");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "no kiln binary: run `cargo build --release -p kiln` or scripts/test.sh (or set KILN_BIN)"
    );
}

/// Fail (never skip) when a host tool is missing.
pub fn require_tool(program: &str, package: &str) {
    let found = kiln::util::exec::have_program(program);
    assert!(found, "`{program}` is missing: install the Debian package `{package}` (scripts/setup-host.sh does)");
}

/// Run kiln with arguments; returns its output.
pub fn kiln(args: &[&str], store: &Path, envs: &[(&str, String)]) -> Output {
    let mut c = Command::new(kiln_bin());
    c.args(args)
        .arg("--store")
        .arg(store)
        .current_dir(repo_root());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("running kiln")
}

/// The `cached` flag of each layer in a `kiln build --json` report, bottom first.
pub fn layers_cached(report: &serde_json::Value) -> Vec<bool> {
    report["layers"]
        .as_array()
        .expect("the report lists its layers")
        .iter()
        .map(|l| {
            l["cached"]
                .as_bool()
                .expect("each layer says whether it was cached")
        })
        .collect()
}

/// Run kiln and parse its `--json` output, failing with its stderr.
pub fn kiln_json(args: &[&str], store: &Path, envs: &[(&str, String)]) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = kiln(&all, store, envs);
    assert!(
        out.status.success(),
        "kiln {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("kiln printed JSON")
}

/// A store shared by the tests that build the same layers (by name: the
/// Debian base is built once for debian_base.rs and debian_web.rs). It lives
/// in the target directory, so a clean clone starts empty; layers are
/// content-addressed, so what one test leaves is exactly what another would
/// build.
pub fn shared_store(name: &str) -> PathBuf {
    let dir = repo_root().join("target/qemu-test-stores").join(name);
    std::fs::create_dir_all(&dir).expect("creating a shared store");
    dir
}

/// The `kiln ls --json` entry of the layer called `name` in `store`.
pub fn stored_layer(store: &Path, name: &str) -> serde_json::Value {
    let ls = kiln_json(&["ls"], store, &[]);
    ls["layers"]
        .as_array()
        .expect("kiln ls lists layers")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("kiln ls lists no layer {name} in {}", store.display()))
        .clone()
}

/// Copy the repository's recipes and layers into a scratch directory, so a
/// test can edit them.
pub fn scratch_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["recipes", "layers"] {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(repo_root().join(d))
            .arg(dir.path())
            .status()
            .expect("cp");
        assert!(ok.success());
    }
    dir
}

/// A QEMU guest booted from a disk image for a test: OVMF, the image behind
/// a qcow2 overlay (never written), serial console to a log file, optional
/// port forwards. Killed when dropped.
pub struct Guest {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    /// The serial console log.
    pub console: PathBuf,
}

impl Guest {
    /// Boot `image` under TCG with `forwards` (host port, guest port).
    pub fn boot(image: &Path, forwards: &[(u16, u16)]) -> Guest {
        require_tool("qemu-system-x86_64", "qemu-system-x86");
        require_tool("qemu-img", "qemu-utils");
        assert!(
            Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").is_file(),
            "OVMF missing: install the Debian package ovmf"
        );
        let dir = tempfile::tempdir().unwrap();
        let vars = dir.path().join("vars.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        let image = std::fs::canonicalize(image).unwrap();
        let ok = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&image)
            .arg(&overlay)
            .status()
            .unwrap();
        assert!(ok.success());
        let console = dir.path().join("console.log");
        let fwd: String = forwards
            .iter()
            .map(|(h, g)| format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"))
            .collect();
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "q35",
                "-accel",
                "tcg",
                "-m",
                "256",
                "-smp",
                "2",
                "-nodefaults",
                "-no-reboot",
                "-display",
                "none",
            ])
            .arg("-drive")
            .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()))
            .arg("-drive")
            .arg(format!("if=virtio,format=qcow2,file={}", overlay.display()))
            .arg("-netdev")
            .arg(format!("user,id=n0{fwd}"))
            .args([
                "-device",
                "virtio-net-pci,netdev=n0",
                "-monitor",
                "none",
                "-serial",
            ])
            .arg(format!("file:{}", console.display()))
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting qemu-system-x86_64");
        Guest {
            child,
            _dir: dir,
            console,
        }
    }

    /// The console so far.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Wait until the console contains `needle`, the guest exits, or `secs`
    /// pass. Returns whether the needle appeared.
    pub fn wait_for(&mut self, needle: &str, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if self.console_text().contains(needle) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.console_text().contains(needle);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An environment in which the network is cut for kiln and what it runs:
/// HTTP(S) proxies at a closed port, and stand-ins for `tools` (mmdebstrap,
/// apt-get, …) on PATH that fail loudly if called. The stand-ins live in `dir`.
pub fn offline_env(dir: &Path, tools: &[&str]) -> Vec<(&'static str, String)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for tool in tools {
        let p = dir.join(tool);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho '{tool} called offline' >&2\nexit 99\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dead = "http://127.0.0.1:9".to_string();
    vec![
        (
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
        ("http_proxy", dead.clone()),
        ("https_proxy", dead.clone()),
        ("HTTP_PROXY", dead.clone()),
        ("HTTPS_PROXY", dead),
    ]
}

/// Test set-up: record a passing boot-test verdict for `digest` in `store`
/// through the library, as `kiln test` would after a good boot.
pub fn record_passing_verdict(store: &Path, digest: &str, label: &str) {
    use kiln::store::verdict::{record, Phases, Verdict, SCHEMA};
    let v = Verdict {
        schema: SCHEMA.into(),
        image_digest: digest.parse().expect("a sha256: digest"),
        image: label.into(),
        passed: true,
        failed_check: None,
        checks: vec![],
        phases: Phases::default(),
        duration_secs: 0.0,
        qemu_version: "test set-up: no boot".into(),
        firmware: "none".into(),
        accel: "none".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        kiln_version: "test".into(),
        console_log: None,
        secure_boot: false,
    };
    let store = kiln::store::Store::new(store);
    store.init().expect("creating the store");
    record(&store, &v).expect("recording the verdict");
}

/// Debian's docker-registry on a free loopback port, storage in a temp dir; killed on drop.
pub struct Registry {
    child: std::process::Child,
    /// Its loopback port.
    pub port: u16,
    storage: PathBuf,
}

impl Registry {
    /// Start it with its storage under `dir`.
    pub fn start(dir: &Path) -> Registry {
        require_tool("docker-registry", "docker-registry");
        let port = free_port();
        let storage = dir.join("registry-data");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Registry {
            child,
            port,
            storage,
        }
    }

    /// The file holding a blob in the registry's filesystem storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
