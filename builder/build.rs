//! Builds kiln-init (`builder/init`), the initramfs's `/init`, and hands its
//! path to the kiln crate, which carries the binary (`include_bytes!` in
//! `image/initramfs.rs`). So `cargo build` or `cargo install` alone gives a
//! kiln that can build images.
//!
//! kiln-init is built by a nested `cargo build` into its own target directory
//! under `OUT_DIR` (the outer build holds the lock on its own), always with
//! the same flags whatever the outer build's profile, so a debug and a
//! release kiln carry the same bytes:
//! - `--target x86_64-unknown-linux-gnu` with `-C target-feature=+crt-static`:
//!   a static executable linked against glibc's static libraries (libc6-dev);
//!   the explicit target keeps the rustflags off build scripts;
//! - the `kiln-init` profile below: small, no unwinding, one codegen unit,
//!   stripped;
//! - the checkout and the cargo home remapped to `/kiln` and `/cargo`, so
//!   the bytes do not depend on where kiln was built;
//! - `--locked`: kiln-init is always built from the versions in `Cargo.lock`,
//!   even when kiln itself is not (`cargo install` without `--locked`). A
//!   locked build of kiln has already fetched all of them (kiln depends on
//!   the same `libc` and `nix`), so cargo then needs no network.
//!
//! `builder/init/build-static.sh` prints the path of the binary this script
//! built, for tools that want the file itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The only target kiln builds images for.
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The profile kiln-init is built with, defined here on the command line.
const PROFILE: &str = "kiln-init";
/// The `kiln-init` profile's settings.
const PROFILE_SETTINGS: &[&str] = &[
    "inherits=\"release\"",
    "opt-level=\"s\"",
    "panic=\"abort\"",
    "lto=true",
    "codegen-units=1",
    "strip=true",
];
/// Environment variables of the outer build that would change the nested
/// one (cargo reads every `CARGO_*` setting from the environment), apart
/// from these: where crates are cached, the jobserver shared with the outer
/// build, and network settings.
const KEEP_CARGO_VARS: &[&str] = &["CARGO_HOME", "CARGO_MAKEFLAGS"];
const KEEP_CARGO_PREFIXES: &[&str] = &["CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_"];
/// Variables outside `CARGO_*` that the outer build may set for itself
/// (flags, clippy's driver) and that must not reach kiln-init's build.
const DROP_VARS: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let init_dir = manifest_dir.join("init");
    // The workspace root: builder/ is one level below it.
    let root = manifest_dir
        .parent()
        .unwrap_or_else(|| fail("CARGO_MANIFEST_DIR has no parent directory"))
        .to_path_buf();
    for input in [
        init_dir.join("src"),
        init_dir.join("Cargo.toml"),
        manifest_dir.join("format"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    let target_dir = out_dir.join("target");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--locked", "--quiet", "--target", TARGET])
        .args(["--profile", PROFILE])
        .arg("--manifest-path")
        .arg(init_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for setting in PROFILE_SETTINGS {
        cmd.arg("--config")
            .arg(format!("profile.{PROFILE}.{setting}"));
    }
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = KEEP_CARGO_VARS.contains(&key)
            || KEEP_CARGO_PREFIXES.iter().any(|p| key.starts_with(p));
        if (key.starts_with("CARGO_") && !keep) || DROP_VARS.contains(&key) {
            cmd.env_remove(key);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags(&root, &cargo_home()));

    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("running {cmd:?}: {e}")));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        fail(&format!(
            "building kiln-init failed ({}); it needs the {TARGET} target \
             and glibc's static libraries (Debian: libc6-dev)",
            out.status
        ));
    }
    let built = target_dir.join(TARGET).join(PROFILE).join("kiln-init");
    let embedded = out_dir.join("kiln-init");
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| fail(&format!("copying {}: {e}", built.display())));
    println!("cargo:rustc-env=KILN_INIT_BINARY={}", embedded.display());
}

/// `-C target-feature=+crt-static` and the path remappings, as
/// `CARGO_ENCODED_RUSTFLAGS` (separated by 0x1f, so paths may hold spaces).
fn rustflags(root: &Path, cargo_home: &Path) -> OsString {
    let mut flags = OsString::from("-C\x1ftarget-feature=+crt-static");
    for (from, to) in [(root, "/kiln"), (cargo_home, "/cargo")] {
        flags.push("\x1f--remap-path-prefix=");
        flags.push(from);
        flags.push(format!("={to}"));
    }
    flags
}

/// `$CARGO_HOME`, else `~/.cargo`: where the crates' sources are unpacked.
fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return home.into();
    }
    let home =
        std::env::var_os("HOME").unwrap_or_else(|| fail("neither CARGO_HOME nor HOME is set"));
    PathBuf::from(home).join(".cargo")
}

fn env(key: &str) -> OsString {
    std::env::var_os(key).unwrap_or_else(|| fail(&format!("cargo did not set {key}")))
}

fn fail(why: &str) -> ! {
    eprintln!("kiln build script: {why}");
    std::process::exit(1)
}
