//! Image arguments that are not regular files: every command that takes an
//! image file refuses a FIFO, a device or a directory at once (exit 2,
//! saying what the path is), and a large file that is no image is refused
//! from its first sectors, before it is hashed.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

mod common;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Far longer than a refusal takes, far shorter than blocking forever or
/// hashing a TiB.
const DEADLINE: Duration = Duration::from_secs(60);

/// Run kiln with a store in `dir`, within [`DEADLINE`].
fn kiln(dir: &Path, args: &[&str]) -> Output {
    common::output_within(
        Command::new(KILN)
            .args(args)
            .arg("--store")
            .arg(dir.join("store")),
        DEADLINE,
    )
}

#[test]
fn fifos_devices_and_directories_are_refused_at_once_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("hello-1.0.raw");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let key = dir.path().join("no.key");
    let key = key.to_str().unwrap();
    let cases = [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a character device"),
        (sub.to_str().unwrap(), "a directory"),
    ];
    for (path, what) in cases {
        let commands: [Vec<&str>; 5] = [
            vec!["inspect", path],
            vec!["diff", path, path],
            vec!["test", path],
            vec!["sign", path, "--key", key],
            vec!["publish", path, "--channel", "stable", "--key", key],
        ];
        for args in commands {
            let out = kiln(dir.path(), &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "kiln {args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("{path}: {what}, not a regular file")),
                "kiln {args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn a_huge_file_that_is_no_image_is_refused_before_hashing() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.raw");
    // A sparse TiB: hashing it would take most of an hour.
    let f = std::fs::File::create(&big).unwrap();
    if let Err(e) = f.set_len(1 << 40) {
        panic!("this test needs a file system with sparse files of 1 TiB: {e}");
    }
    let path = big.to_str().unwrap();
    let out = kiln(dir.path(), &["inspect", path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("neither a GPT disk image"), "{stderr}");
}
