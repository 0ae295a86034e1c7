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
