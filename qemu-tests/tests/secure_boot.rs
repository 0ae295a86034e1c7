//! Secure Boot and measured boot end to end: hello built with its UKI
//! signed by a `kiln keygen --secure-boot` db key, checked by sbverify,
//! built again in a fresh store to the same bytes, its predicted PCR 11
//! checked against systemd-measure, and booted under OVMF's Secure Boot
//! firmware with kiln's keys enrolled and a software TPM (passes: the guest
//! reports Secure Boot enabled and the predicted PCR 11; publish says so).
//! The firmware refuses the unsigned image and the signed one under another
//! db: each fails the `secure_boot` check naming the refusal. Three boots.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_qemu_tests::{kiln, kiln_json, repo_root, require_tool, shared_store, stored_layer};
use serde_json::Value;

/// `kiln build hello` into `out`, signed with `keys` when given.
fn build(store: &Path, out: &Path, keys: Option<&Path>) -> Value {
    let recipe = repo_root().join("recipes/hello.toml");
    let mut args = vec![
        "build".to_owned(),
        recipe.display().to_string(),
        "-o".to_owned(),
        out.display().to_string(),
    ];
    if let Some(k) = keys {
        args.extend([
            "--secure-boot-key".to_owned(),
            k.join("db.key").display().to_string(),
            "--secure-boot-cert".to_owned(),
            k.join("db.crt").display().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kiln_json(&args, store, &[])
}

/// `kiln test IMAGE --secure-boot KEYS [--tpm] --json`: (exit code, verdict).
fn boot(store: &Path, image: &Path, keys: &Path, tpm: bool) -> (Option<i32>, Value) {
    let out = Command::new(kiln_qemu_tests::kiln_bin())
        .arg("test")
        .arg(image)
        .arg("--secure-boot")
        .arg(keys)
        .args(tpm.then_some("--tpm"))
        .args(["--json", "--store"])
        .arg(store)
        .env("KILN_ACCEL", "tcg")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kiln test printed no verdict ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {v:#}"))
}

/// The UKI on the image's ESP, copied out with mtools.
fn extract_uki(image: &Path, manifest: &Value, dest: &Path) {
    require_tool("mcopy", "mtools");
    let esp = &manifest["disk"]["partitions"][0];
    assert_eq!(esp["name"], "esp");
    let st = Command::new("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{}", image.display(), esp["offset"]))
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .arg(dest)
        .output()
        .unwrap();
    assert!(st.status.success(), "mcopy: {st:?}");
}

/// The first number after `what` in `text` (`systemd 252 (…)`,
/// `LoaderInfo: systemd-stub 252.39-1 ####`).
fn version_after(text: &str, what: &str) -> u32 {
    let rest = text
        .split(what)
        .nth(1)
        .unwrap_or_else(|| panic!("no {what:?} in {text:?}"));
    rest.trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no version after {what:?} in {text:?}"))
}

/// The systemd version of the UKI's stub, from its `.sdmagic` section.
fn stub_version(uki: &Path, dir: &Path) -> u32 {
    require_tool("objcopy", "binutils");
    let out = dir.join("section.sdmagic");
    let st = Command::new("objcopy")
        .args(["-O", "binary", "--only-section=.sdmagic"])
        .arg(uki)
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success(), "objcopy .sdmagic: {st:?}");
    version_after(
        &String::from_utf8_lossy(&std::fs::read(&out).unwrap()),
        "systemd-stub ",
    )
}

/// The host's systemd-measure version.
fn host_measure_version() -> u32 {
    let out = Command::new("/lib/systemd/systemd-measure")
        .arg("--version")
        .output()
        .unwrap();
    version_after(&String::from_utf8_lossy(&out.stdout), "systemd ")
}

/// `systemd-measure calculate` over the UKI's measured sections: the
/// host's (`chroot` `None`), or the one in a root directory of the image's
/// own suite, run in a chroot there (the sections are copied into its /tmp).
fn systemd_measure(uki: &Path, dir: &Path, chroot: Option<&Path>) -> String {
    const MEASURE: &str = "/lib/systemd/systemd-measure";
    require_tool("objcopy", "binutils");
    let mut cmd = match chroot {
        None => {
            assert!(
                Path::new(MEASURE).is_file(),
                "{MEASURE} is missing: install the Debian package `systemd`"
            );
            Command::new(MEASURE)
        }
        Some(root) => {
            let mut c = Command::new("chroot");
            c.arg(root).arg("/usr/lib/systemd/systemd-measure");
            c
        }
    };
    cmd.args(["calculate", "--bank=sha256", "--phase="]);
    let mut sections = vec!["linux", "osrel", "cmdline", "initrd"];
    if stub_version(uki, dir) >= 254 {
        sections.extend(["uname", "sbat"]);
    }
    for section in sections {
        let out = dir.join(format!("section.{section}"));
        let st = Command::new("objcopy")
            .args(["-O", "binary", &format!("--only-section=.{section}")])
            .arg(uki)
            .arg(&out)
            .output()
            .unwrap();
        assert!(st.status.success(), "objcopy .{section}: {st:?}");
        let arg = match chroot {
            None => out,
            Some(root) => {
                let inside = Path::new("/tmp").join(format!("section.{section}"));
                std::fs::copy(&out, root.join(inside.strip_prefix("/").unwrap())).unwrap();
                inside
            }
        };
        cmd.arg(format!("--{section}={}", arg.display()));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-measure: {out:?}");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("11:sha256="))
        .unwrap_or_else(|| panic!("no 11:sha256= in {text}"))
        .to_lowercase()
}

/// A root directory with the repository's stripped Debian base (trixie:
/// its systemd-measure knows the sections trixie's stub measures), unpacked
/// from the base layer's blob in the store the Debian tests share.
fn debian_base_root(dir: &Path) -> PathBuf {
    require_tool("zstd", "zstd");
    let store = shared_store("debian");
    let recipe = repo_root().join("recipes/debian-base.toml");
    let out = dir.join("debian-base-out");
    kiln_json(
        &[
            "build",
            recipe.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    let base = stored_layer(&store, "base/debian");
    let digest = base["digest"].as_str().unwrap();
    let blob = store
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let root = dir.join("debian-root");
    std::fs::create_dir_all(&root).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$1\" | tar -x -C \"$2\"")
        .arg("sh")
        .arg(&blob)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "unpacking {}", blob.display());
    root
}

#[test]
fn signed_image_boots_under_secure_boot_and_others_are_refused() {
    require_tool("sbverify", "sbsigntool");
    require_tool("mmdebstrap", "mmdebstrap");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let keys = dir.path().join("keys");
    let other = dir.path().join("other-keys");
    for k in [&keys, &other] {
        let r = kiln_json(
            &["keygen", "--secure-boot", "-o", k.to_str().unwrap()],
            &store,
            &[],
        );
        assert_eq!(r["keys"].as_array().unwrap().len(), 3, "{r:#}");
    }

    // Signed: the manifest names the signer; sbverify accepts the UKI.
    let signed = build(&store, &dir.path().join("signed"), Some(&keys));
    let image = PathBuf::from(signed["image"]["path"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(signed["manifest"].as_str().unwrap()).unwrap())
            .unwrap();
    let sig = &manifest["disk"]["uki_signature"];
    assert_eq!(sig["signer"], "CN=kiln Secure Boot db", "{manifest:#}");
    let uki = dir.path().join("BOOTX64.EFI");
    extract_uki(&image, &manifest, &uki);
    let v = Command::new("sbverify")
        .arg("--cert")
        .arg(keys.join("db.crt"))
        .arg(&uki)
        .output()
        .unwrap();
    assert!(v.status.success(), "sbverify --cert db.crt: {v:?}");
    let v = Command::new("sbverify")
        .arg("--cert")
        .arg(other.join("db.crt"))
        .arg(&uki)
        .output()
        .unwrap();
    assert!(!v.status.success(), "sbverify under another db: {v:?}");
    // The same inputs and key, in a fresh store: the same bytes.
    let again = build(
        &dir.path().join("store2"),
        &dir.path().join("again"),
        Some(&keys),
    );
    assert_eq!(again["image"]["digest"], signed["image"]["digest"]);
    assert_eq!(
        std::fs::read(&image).unwrap(),
        std::fs::read(again["image"]["path"].as_str().unwrap()).unwrap()
    );
    // An unusable key is bad input naming the file, before any work.
    let recipe = repo_root().join("recipes/hello.toml");
    let out = kiln(
        &[
            "build",
            recipe.to_str().unwrap(),
            "-o",
            dir.path().join("bad").to_str().unwrap(),
            "--secure-boot-key",
            other.join("db.key").to_str().unwrap(),
            "--secure-boot-cert",
            keys.join("db.crt").to_str().unwrap(),
        ],
        &store,
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: the key does not match",
            other.join("db.key").display()
        )),
        "{err}"
    );

    // The PCR 11 prediction is systemd-measure's for the UKI's sections,
    // when the host's systemd-measure knows every section the image's stub
    // measures (systemd 254 added .uname and .sbat; the TPM check below
    // holds either way).
    let predicted = manifest["disk"]["pcr11_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let (stub, host) = (stub_version(&uki, dir.path()), host_measure_version());
    let measured = if stub >= 254 && host < 254 {
        // The host's systemd-measure predates .uname and .sbat: trixie's
        // own, in a chroot of the Debian base.
        let root = debian_base_root(dir.path());
        systemd_measure(&uki, dir.path(), Some(&root))
    } else {
        systemd_measure(&uki, dir.path(), None)
    };
    assert_eq!(predicted, measured, "{manifest:#}");

    // Boot 1: enforced, and the guest says so; the TPM measured the prediction.
    let (code, v) = boot(&store, &image, &keys, true);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["secure_boot"], true);
    assert!(v["firmware"]
        .as_str()
        .unwrap()
        .ends_with("OVMF_CODE_4M.secboot.fd"));
    let sb = check(&v, "secure_boot");
    assert_eq!(sb["passed"], true);
    assert!(
        sb["detail"]
            .as_str()
            .unwrap()
            .contains("secure boot: enabled")
            || sb["detail"]
                .as_str()
                .unwrap()
                .contains("Secure boot enabled"),
        "{sb:#}"
    );
    let pcr = check(&v, "pcr11");
    assert_eq!(pcr["passed"], true, "{v:#}");
    assert_eq!(pcr["detail"], format!("measured {predicted}, as predicted"));
    // Publish shows and records it.
    let mkey = dir.path().join("ci.key");
    kiln_json(
        &["keygen", "-o", mkey.to_str().unwrap(), "--unencrypted"],
        &store,
        &[],
    );
    let out = kiln(
        &[
            "publish",
            image.to_str().unwrap(),
            "--channel",
            "stable",
            "--key",
            mkey.to_str().unwrap(),
        ],
        &store,
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("(booted with Secure Boot enforced)"),
        "{text}"
    );
    let published: Value = serde_json::from_slice(
        &std::fs::read(store.join("releases/hello/1.0/hello-1.0.verdict.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(published["secure_boot"], true);

    // Boot 2: the same image under another db: refused by the firmware.
    let (code, v) = boot(&store, &image, &other, false);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["failed_check"], "secure_boot", "{v:#}");
    let detail = check(&v, "secure_boot")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("the firmware refused the image") && detail.contains("Access Denied"),
        "{detail}"
    );

    // Boot 3: the unsigned image, refused likewise.
    let unsigned = build(&store, &dir.path().join("unsigned"), None);
    assert_ne!(unsigned["image"]["digest"], signed["image"]["digest"]);
    let unsigned_manifest: Value =
        serde_json::from_slice(&std::fs::read(unsigned["manifest"].as_str().unwrap()).unwrap())
            .unwrap();
    assert!(unsigned_manifest["disk"].get("uki_signature").is_none());
    let (code, v) = boot(
        &store,
        Path::new(unsigned["image"]["path"].as_str().unwrap()),
        &keys,
        false,
    );
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["failed_check"], "secure_boot", "{v:#}");
    let detail = check(&v, "secure_boot")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("Access Denied"), "{detail}");
}
