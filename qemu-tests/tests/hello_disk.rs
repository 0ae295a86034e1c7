//! The hello image as a disk: checked with tools nobody here wrote (sfdisk,
//! fsck.vfat, e2fsck, objcopy, veritysetup, systemd-dissect), booted under QEMU TCG with OVMF,
//! refused when a block of its init is overwritten, byte-identical across
//! builds, and assembled without privileges.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kiln_qemu_tests::{free_port, kiln_json, layers_cached, repo_root, require_tool, Guest};
use serde_json::Value;

struct Built {
    dir: PathBuf,
    report: Value,
    manifest: Value,
}

/// hello, built once for all tests of this file.
fn hello() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_tool("mmdebstrap", "mmdebstrap");
        let dir = tempfile::tempdir().unwrap().keep();
        let out = dir.join("out");
        let recipe = repo_root().join("recipes/hello.toml");
        let report = kiln_json(
            &[
                "build",
                recipe.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &dir.join("store"),
            &[],
        );
        let manifest: Value =
            serde_json::from_slice(&fs::read(out.join("hello-1.0.manifest.json")).unwrap())
                .unwrap();
        Built {
            dir,
            report,
            manifest,
        }
    })
}

fn image() -> PathBuf {
    PathBuf::from(hello().report["image"]["path"].as_str().unwrap())
}

fn partition(name: &str) -> (u64, u64) {
    let p = hello().manifest["disk"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap();
    (p["offset"].as_u64().unwrap(), p["size"].as_u64().unwrap())
}

fn extract(name: &str, to: &Path) {
    let (offset, size) = partition(name);
    let mut f = fs::File::open(image()).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; size as usize];
    f.read_exact(&mut buf).unwrap();
    fs::write(to, buf).unwrap();
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `debugfs -R REQUEST FS`, which exits 0 whatever happens (an image it
/// cannot open, a path it cannot find): its request succeeded only when it
/// exits 0 and says nothing on stderr beyond its version line. Returns stdout.
fn debugfs(request: &str, fs: &Path) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(fs)
        .output()
        .unwrap_or_else(|e| panic!("debugfs: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "debugfs -R {request:?} {}: {}\n{stderr}",
        fs.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn debugfs_that_cannot_open_its_image_fails() {
    require_tool("debugfs", "e2fsprogs");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.img");
    fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
    // debugfs itself exits 0 here.
    let (ok, out) = run(Command::new("debugfs")
        .args(["-R", "ls -l /boot"])
        .arg(&junk));
    assert!(ok, "{out}");
    let judged = std::panic::catch_unwind(|| debugfs("ls -l /boot", &junk));
    assert!(judged.is_err(), "{judged:?}");
}

/// The kernel's dm-verity error and kiln-init's FATAL line that a corrupt
/// block of the init gives, when the console shows both: kiln-init prints a
/// `verity` line on every boot, and a boot that is merely slow shows no
/// FATAL, so neither alone is the failure.
fn verity_failure(console: &str) -> Option<(&str, &str)> {
    let corrupted = console
        .lines()
        .find(|l| l.contains("device-mapper: verity") && l.contains("is corrupted"))?;
    let fatal = console
        .lines()
        .find(|l| l.contains("kiln-init: FATAL:") && l.contains("I/O error"))?;
    Some((corrupted.trim(), fatal.trim()))
}

#[test]
fn verity_failure_is_told_from_a_slow_boot() {
    let slow = "BdsDxe: starting Boot0001\n\
                kiln-init: roothash=ab init=/sbin/init fstype=ext4\n\
                kiln-init: verity 1 /dev/vda2 /dev/vda3 4096 4096 100 1 sha256 ab 00\n";
    assert_eq!(verity_failure(slow), None);
    let other_fatal = format!("{slow}kiln-init: FATAL: no partition of type root-x86-64\n");
    assert_eq!(verity_failure(&other_fatal), None);
    let failed = format!(
        "{slow}[    9.1] device-mapper: verity: 254:0: data block 1234 is corrupted\n\
         kiln-init: FATAL: exec /sbin/init in the new root: EIO: I/O error\n"
    );
    assert_eq!(
        verity_failure(&failed),
        Some((
            "[    9.1] device-mapper: verity: 254:0: data block 1234 is corrupted",
            "kiln-init: FATAL: exec /sbin/init in the new root: EIO: I/O error"
        ))
    );
}

#[test]
fn outside_tools_accept_every_part() {
    for (t, p) in [
        ("sfdisk", "fdisk"),
        ("fsck.vfat", "dosfstools"),
        ("e2fsck", "e2fsprogs"),
        ("objcopy", "binutils"),
        ("veritysetup", "cryptsetup-bin"),
        ("mcopy", "mtools"),
    ] {
        require_tool(t, p);
    }
    let tmp = tempfile::tempdir().unwrap();
    // GPT with the Discoverable Partitions types.
    let (ok, out) = run(Command::new("sfdisk").arg("--json").arg(image()));
    assert!(ok, "{out}");
    let table: Value = serde_json::from_str(&out).unwrap();
    let types: Vec<&str> = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"
        ]
    );
    let (ok, out) = run(Command::new("sgdisk").arg("-v").arg(image()));
    assert!(ok && out.contains("No problems found"), "{out}");

    // ESP: clean FAT with the UKI.
    let esp = tmp.path().join("esp.img");
    extract("esp", &esp);
    let (ok, out) = run(Command::new("fsck.vfat").arg("-n").arg(&esp));
    assert!(ok, "fsck.vfat: {out}");
    let uki = tmp.path().join("BOOTX64.EFI");
    let (ok, out) = run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&esp)
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .arg(&uki));
    assert!(ok, "{out}");
    let linux = tmp.path().join("linux");
    let (ok, out) = run(Command::new("objcopy")
        .args(["-O", "binary", "--only-section=.linux"])
        .arg(&uki)
        .arg(&linux));
    assert!(
        ok && fs::metadata(&linux).unwrap().len() > 1_000_000,
        "{out}"
    );
    let cmdline = tmp.path().join("cmdline");
    let (ok, out) = run(Command::new("objcopy")
        .args(["-O", "binary", "--only-section=.cmdline"])
        .arg(&uki)
        .arg(&cmdline));
    assert!(ok, "{out}");
    let cmdline = String::from_utf8(fs::read(&cmdline).unwrap()).unwrap();
    let root_hash = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roothash="))
        .expect("roothash= in .cmdline")
        .trim_end_matches('\0')
        .to_string();
    assert_eq!(
        root_hash,
        hello().manifest["disk"]["root_hash"].as_str().unwrap()
    );

    // Root: clean ext4, accepted by veritysetup against that hash.
    let root = tmp.path().join("root.img");
    let hash = tmp.path().join("verity.img");
    extract("root-x86-64", &root);
    extract("root-x86-64-verity", &hash);
    let (ok, out) = run(Command::new("e2fsck").arg("-fn").arg(&root));
    assert!(ok, "e2fsck: {out}");
    let (ok, out) = run(Command::new("veritysetup")
        .arg("verify")
        .arg(&root)
        .arg(&hash)
        .arg(&root_hash));
    assert!(ok, "veritysetup verify: {out}");
    // The kernel is in the UKI, not the root.
    let ls = debugfs("ls -l /boot", &root);
    assert!(ls.contains(" ..\n"), "not a listing of /boot: {ls}");
    assert!(!ls.contains("vmlinuz"), "{ls}");
}

#[test]
fn boots_to_hello_on_a_readonly_verity_root() {
    let port = free_port();
    let mut g = Guest::boot(&image(), &[(port, 8080)]);
    assert!(
        g.wait_for("hello: listening on :8080", 120),
        "no hello line; console:\n{}",
        g.console_text()
    );
    let console = g.console_text();
    assert!(
        console.contains("kiln: root /dev/mapper/root ext4 ro"),
        "root is not a read-only dm device:\n{console}"
    );
    let body = Command::new("curl")
        .args(["-sf", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body.stdout).contains("hello from kiln"),
        "HTTP: {:?}",
        body
    );
}

/// Overwrite one data block of /usr/bin/busybox (the init) inside the root
/// partition of a copy: the verity check must stop the boot.
#[test]
fn tampered_init_block_fails_the_boot() {
    require_tool("debugfs", "e2fsprogs");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root.img");
    extract("root-x86-64", &root);
    let out = debugfs("blocks /usr/bin/busybox", &root);
    // The first block: the ELF header, which exec must read (a block at
    // the end of the file may hold code no boot runs, and a corrupt block
    // nobody reads fails nothing).
    let block: u64 = out
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("a block of /usr/bin/busybox");
    let copy = tmp.path().join("tampered.raw");
    let ok = Command::new("cp")
        .arg("--sparse=always")
        .arg(image())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(ok.success());
    let (offset, _) = partition("root-x86-64");
    let mut f = fs::OpenOptions::new().write(true).open(&copy).unwrap();
    f.seek(SeekFrom::Start(offset + block * 4096)).unwrap();
    f.write_all(&[0x5a; 4096]).unwrap();
    drop(f);
    let mut g = Guest::boot(&copy, &[]);
    // Waited for until kiln-init gives up (or the guest powers off), so
    // a slow boot is never taken for a refused one.
    g.wait_for("kiln-init: FATAL", 180);
    let console = g.console_text();
    assert!(
        !console.contains("hello: listening"),
        "a tampered root booted:\n{console}"
    );
    assert!(
        verity_failure(&console).is_some(),
        "no dm-verity failure on the console:\n{console}"
    );
}

#[test]
fn two_builds_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = repo_root().join("recipes/hello.toml");
    let out = dir.path().join("again");
    let again = kiln_json(
        &[
            "build",
            recipe.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &dir.path().join("store"),
        &[],
    );
    assert_eq!(again["image"]["digest"], hello().report["image"]["digest"]);
    assert_eq!(
        fs::read(out.join("hello-1.0.raw")).unwrap(),
        fs::read(image()).unwrap()
    );
}

/// Assembly from cached layers as nobody (uid 65534) gives the same digest.
#[test]
fn unprivileged_assembly_gives_the_same_digest() {
    require_tool("setpriv", "util-linux");
    let built = hello();
    let work = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(built.dir.join("store"))
        .arg(work.path().join("store"))
        .status()
        .unwrap();
    assert!(ok.success());
    for d in ["recipes", "layers"] {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(repo_root().join(d))
            .arg(work.path())
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let ok = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(work.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("chmod")
        .args(["755"])
        .arg(work.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let mut cmd = if nix_is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(kiln_qemu_tests::kiln_bin());
        c
    } else {
        Command::new(kiln_qemu_tests::kiln_bin())
    };
    let out = cmd
        .args([
            "build",
            "recipes/hello.toml",
            "-o",
            "out",
            "--json",
            "--store",
            "store",
        ])
        .current_dir(work.path())
        .env("HOME", work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unprivileged build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(layers_cached(&r).iter().all(|c| *c), "{r}");
    assert_eq!(r["image"]["digest"], built.report["image"]["digest"]);
}

/// systemd's own image dissector finds every partition by its Discoverable
/// Partitions type and, from the `.roothash` sidecar beside the image, the
/// verity data for the root (no mount: the host has no device-mapper).
#[test]
fn systemd_dissect_finds_the_partitions_and_the_verity_root() {
    require_tool("systemd-dissect", "systemd-container");
    let roothash = fs::read_to_string(image().with_file_name("hello-1.0.roothash")).unwrap();
    assert_eq!(
        roothash,
        format!(
            "{}\n",
            hello().manifest["disk"]["root_hash"].as_str().unwrap()
        )
    );
    let sums = fs::read_to_string(image().with_file_name("SHA256SUMS")).unwrap();
    assert!(sums.contains("  hello-1.0.roothash\n"), "{sums}");

    let (ok, out) = run(Command::new("systemd-dissect")
        .arg("--json=short")
        .arg(image()));
    assert!(ok, "systemd-dissect: {out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut found: Vec<(String, String, Value, u64)> = v["mounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no mounts in {v}"))
        .iter()
        .map(|m| {
            (
                m["designator"].as_str().unwrap().to_string(),
                m["partition_label"].as_str().unwrap().to_string(),
                m["verity"].clone(),
                m["partno"].as_u64().unwrap(),
            )
        })
        .collect();
    found.sort_by_key(|f| f.3);
    let want = [
        ("esp", "esp", Value::Null, 1),
        ("root", "root-x86-64", Value::from("yes"), 2),
        ("root-verity", "root-x86-64-verity", Value::Null, 3),
    ];
    let want: Vec<(String, String, Value, u64)> = want
        .into_iter()
        .map(|(d, l, v, n)| (d.to_string(), l.to_string(), v, n))
        .collect();
    assert_eq!(found, want, "{v}");
    // The root is the verity data partition its hash names.
    let root = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["designator"] == "root")
        .unwrap();
    let uuid = root["partition_uuid"].as_str().unwrap().replace('-', "");
    assert_eq!(uuid, roothash.trim()[..32], "{root}");
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The SBOM beside the image validates with the SPDX project's own tool and
/// lists busybox-static with its version, .deb sha256 and download location.
#[test]
fn sbom_validates_with_spdx_tools() {
    let tools = std::env::var("KILN_TOOLS").unwrap_or_else(|_| "/opt/kiln-tools".into());
    let validator = Path::new(&tools).join("bin/pyspdxtools");
    assert!(
        validator.is_file(),
        "{} missing: run scripts/setup-host.sh (spdx-tools from PyPI)",
        validator.display()
    );
    let sbom = image().with_file_name("hello-1.0.spdx.json");
    let (ok, out) = run(Command::new(&validator).arg("-i").arg(&sbom));
    assert!(ok && out.trim().is_empty(), "pyspdxtools: {out}");
    let doc: Value = serde_json::from_slice(&fs::read(&sbom).unwrap()).unwrap();
    let bb = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "busybox-static")
        .expect("busybox-static in the SBOM");
    assert!(
        bb["versionInfo"].as_str().unwrap().contains("1.37"),
        "trixie's busybox: {bb}"
    );
    assert!(
        bb["downloadLocation"].as_str().unwrap().ends_with(".deb"),
        "{bb}"
    );
    assert_eq!(bb["checksums"][0]["algorithm"], "SHA256");
    // SHA256SUMS covers it.
    let sums = fs::read_to_string(image().with_file_name("SHA256SUMS")).unwrap();
    assert!(sums.contains("hello-1.0.spdx.json"), "{sums}");
}
