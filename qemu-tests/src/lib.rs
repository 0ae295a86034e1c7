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
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
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
