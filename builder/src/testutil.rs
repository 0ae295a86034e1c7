//! Helpers shared by the unit tests.

use std::path::PathBuf;

/// Find an outside tool, or fail loudly naming its Debian package: CI
/// installs every tool, so a missing one is a failure, never a skip.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found: install the Debian package `{package}` (scripts/setup-host.sh)");
}

/// A root-owned regular file node (0644, time 0) holding `data`.
pub fn file(data: &str) -> crate::tree::Node {
    crate::tree::Node {
        kind: crate::tree::NodeKind::File(std::sync::Arc::new(data.as_bytes().to_vec())),
        meta: crate::tree::Meta::root(0o644, 0),
    }
}

/// A root-owned directory node (0755, time 0).
pub fn dir() -> crate::tree::Node {
    crate::tree::Node {
        kind: crate::tree::NodeKind::Dir,
        meta: crate::tree::Meta::root(0o755, 0),
    }
}

/// Run `cmd` with `input` on its stdin (written from another thread, so a
/// child that fills its stdout pipe cannot deadlock us): (success, stdout, stderr).
pub fn run_with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> (bool, Vec<u8>, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
