//! Tests of Secure Boot keys and UKI signing, checked with sbverify and
//! openssl (tools nobody here wrote).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::OnceLock;

use super::*;
use crate::fs::uki::{self, UkiParts};
use crate::testutil::tool;

/// One keygen for the whole test binary (RSA key generation is slow).
fn keys() -> &'static Path {
    static KEYS: OnceLock<tempfile::TempDir> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("sb")).unwrap();
        dir
    })
    .path()
}

fn sb(name: &str) -> PathBuf {
    keys().join("sb").join(name)
}

fn uki() -> Vec<u8> {
    const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
    let stub = std::fs::read(STUB)
        .unwrap_or_else(|e| panic!("{STUB}: {e}: install the Debian package `systemd-boot-efi`"));
    uki::build(
        &stub,
        &UkiParts {
            osrel: b"ID=kiln\n",
            cmdline: "console=ttyS0 roothash=00",
            uname: None,
            linux: &[0x90; 4097],
            initrd: &[3; 1234],
        },
    )
    .unwrap()
}

fn input_error(e: &anyhow::Error) -> &InputError {
    e.chain()
        .find_map(|c| c.downcast_ref::<InputError>())
        .unwrap_or_else(|| panic!("not an InputError: {e:#}"))
}

#[test]
fn keygen_writes_six_files_keys_private_never_overwrites() {
    for name in KEY_NAMES {
        let key = sb(&format!("{name}.key"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        // openssl reads each certificate and finds an RSA key of 2048 bits.
        let out = Command::new(tool("openssl", "openssl"))
            .args(["x509", "-noout", "-text", "-in"])
            .arg(sb(&format!("{name}.crt")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
        assert!(
            text.contains(&format!("CN = kiln Secure Boot {name}")),
            "{text}"
        );
        // The key is the certificate's.
        UkiSigner::load(&key, &sb(&format!("{name}.crt"))).unwrap();
    }
    let e = keygen(&keys().join("sb")).unwrap_err();
    assert!(input_error(&e).file.ends_with("PK.key"), "{e:#}");
}

#[test]
fn signed_uki_is_accepted_by_sbverify_and_reproducible() {
    let signer = UkiSigner::load(&sb("db.key"), &sb("db.crt")).unwrap();
    let unsigned = uki();
    let mut a = unsigned.clone();
    let sig = sign_uki(&mut a, &signer).unwrap();
    let mut b = unsigned.clone();
    assert_eq!(sign_uki(&mut b, &signer).unwrap(), sig);
    assert_eq!(a, b, "two signatures of the same UKI differ");
    assert_eq!(sig.signer, "CN=kiln Secure Boot db");
    assert_eq!(
        sig.authenticode_digest,
        crate::util::digest::Digest::from(authenticode::digest(&a).unwrap())
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uki.efi");
    std::fs::write(&path, &a).unwrap();
    let verify = |cert: &str| {
        Command::new(tool("sbverify", "sbsigntool"))
            .arg("--cert")
            .arg(sb(cert))
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = verify("db.crt");
    assert!(ok.status.success(), "sbverify --cert db.crt: {ok:?}");
    // Another key's certificate does not verify it.
    let other = verify("KEK.crt");
    assert!(
        !other.status.success(),
        "sbverify --cert KEK.crt: {other:?}"
    );
    // A changed byte in the kernel breaks it.
    let mut tampered = a.clone();
    let linux = uki::sections(&a)
        .unwrap()
        .into_iter()
        .find(|s| s.name == ".linux")
        .unwrap();
    tampered[linux.raw_offset as usize] ^= 1;
    std::fs::write(&path, &tampered).unwrap();
    let bad = verify("db.crt");
    assert!(!bad.status.success(), "sbverify of a tampered UKI: {bad:?}");
}

#[test]
fn unusable_keys_and_certificates_name_the_file() {
    let missing = keys().join("nope.crt");
    let e = UkiSigner::load(&sb("db.key"), &missing).unwrap_err();
    assert_eq!(input_error(&e).file, missing.display().to_string());
    assert!(format!("{e:#}").contains("cannot read"), "{e:#}");

    // A key that is not the certificate's: the key file is named.
    let e = UkiSigner::load(&sb("KEK.key"), &sb("db.crt")).unwrap_err();
    assert_eq!(input_error(&e).file, sb("KEK.key").display().to_string());
    assert!(format!("{e:#}").contains("does not match"), "{e:#}");

    // Expired: the same certificate eleven years from now.
    let later = std::time::SystemTime::now() + 11 * CERT_LIFETIME / 10;
    let e = UkiSigner::load_at(&sb("db.key"), &sb("db.crt"), later).unwrap_err();
    assert_eq!(input_error(&e).file, sb("db.crt").display().to_string());
    assert!(format!("{e:#}").contains("expired"), "{e:#}");

    // A TLS server certificate (openssl-made) cannot sign code.
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("tls.key"), dir.path().join("tls.crt"));
    let st = Command::new(tool("openssl", "openssl"))
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=tls",
        ])
        .args(["-days", "30", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let e = UkiSigner::load(&key, &cert).unwrap_err();
    assert_eq!(input_error(&e).file, cert.display().to_string());
    assert!(format!("{e:#}").contains("codeSigning"), "{e:#}");

    // Garbage.
    std::fs::write(dir.path().join("junk.crt"), b"junk").unwrap();
    let e = UkiSigner::load(&key, &dir.path().join("junk.crt")).unwrap_err();
    assert!(
        format!("{e:#}").contains("not an X.509 certificate"),
        "{e:#}"
    );
}
