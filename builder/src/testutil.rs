//! Helpers shared by the unit tests.

use std::path::PathBuf;

/// Find an outside tool, or fail loudly naming its Debian package: CI
/// installs every tool, so a missing one is a failure, never a skip.
pub fn tool(name: &str, package: &str) -> PathBuf {
    crate::util::exec::find_program(name).unwrap_or_else(|| {
        panic!("`{name}` not found: install the Debian package `{package}` (scripts/setup-host.sh)")
    })
}

/// A root-owned regular file node (0644, time 0) holding `data`.
pub fn file(data: &str) -> crate::fs::tree::Node {
    crate::fs::tree::Node {
        kind: crate::fs::tree::NodeKind::File(std::sync::Arc::new(data.as_bytes().to_vec())),
        meta: crate::fs::tree::Meta::root(0o644, 0),
    }
}

/// A root-owned directory node (0755, time 0).
pub fn dir() -> crate::fs::tree::Node {
    crate::fs::tree::Node {
        kind: crate::fs::tree::NodeKind::Dir,
        meta: crate::fs::tree::Meta::root(0o755, 0),
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

/// The kernel release of [`fake_disk`]'s root.
pub const FAKE_KVER: &str = "6.1.0-kiln-test";

/// A composed root that [`crate::image::disk::assemble`] accepts without a real
/// kernel: an empty module directory, a fake kernel, the host's systemd EFI
/// stub (package `systemd-boot-efi`), and `files` (path, content; parents
/// created). Every time is `sde`.
pub fn fake_root(files: &[(&str, &str)], sde: i64) -> crate::fs::tree::Tree {
    use crate::fs::tree::{Meta, Node, NodeKind, Tree};
    let stub_host = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
    let stub = std::fs::read(stub_host).unwrap_or_else(|e| {
        panic!("{stub_host}: {e}: install the Debian package `systemd-boot-efi`")
    });
    let d = Meta::root(0o755, sde);
    let mut t = Tree::new(sde);
    let mut put = |path: &str, kind: NodeKind| {
        t.insert_with_parents(
            path,
            Node {
                kind,
                meta: Meta::root(0o644, sde),
            },
            &d,
        )
        .unwrap();
    };
    put(&format!("lib/modules/{FAKE_KVER}"), NodeKind::Dir);
    put(
        &format!("boot/vmlinuz-{FAKE_KVER}"),
        NodeKind::File(std::sync::Arc::new(b"not really a kernel".to_vec())),
    );
    put(
        crate::image::disk::STUB_PATH,
        NodeKind::File(std::sync::Arc::new(stub)),
    );
    for (path, content) in files {
        put(
            path,
            NodeKind::File(std::sync::Arc::new(content.as_bytes().to_vec())),
        );
    }
    t
}

/// Assemble `root` into a disk image at `out` with the hello recipe's disk
/// and boot settings (no initramfs modules), as `kiln build` would.
pub fn fake_disk(
    root: &crate::fs::tree::Tree,
    sde: i64,
    out: &std::path::Path,
) -> crate::model::disk::DiskInfo {
    let recipe_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/hello.toml");
    let mut recipe = crate::input::recipe::Recipe::load(&recipe_path).unwrap();
    recipe.boot.initrd_modules.clear();
    crate::image::disk::assemble(
        &recipe,
        root,
        &["sha256:fake-layer".to_string()],
        sde,
        &crate::image::initramfs::Init::new(&b"#!/bin/sh\n# not really kiln-init\n"[..]),
        &crate::util::memo::NoMemo,
        &|_| None,
        None,
        out,
    )
    .unwrap()
    .0
}
