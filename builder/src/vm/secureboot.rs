//! Booting with UEFI Secure Boot enforced (ARCHITECTURE.md "Secure Boot"):
//! the certificates to enroll, and a private OVMF variable store with PK,
//! KEK and db written in ([`crate::fs::efivars`]), so that the firmware
//! starts in user mode and runs only images the db certificate signed.
//! Also how `kiln test` judges such a boot, and a measured one
//! (ARCHITECTURE.md "Measured boot"), from what the guest prints.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use x509_cert::der::Encode;

use crate::fs::efivars::{self, Guid, Variable};
use crate::image::secureboot::read_certificate;
use crate::store::verdict::{Pcr11Outcome, SecureBootOutcome};
use crate::util::error::InputError;

/// Debian's OVMF build with Secure Boot and SMM (needs `-machine q35,smm=on`
/// and the secure pflash setting).
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

/// The owner GUID kiln puts on the certificates it enrolls.
const KILN_OWNER: Guid = Guid::new(
    0x6b69_6c6e,
    0x5342,
    0x4b65,
    [0x79, 0x73, 0x6b, 0x69, 0x6c, 0x6e, 0x00, 0x01],
);

/// EFI_TIME of the enrolled variables: later updates signed by the KEK or
/// PK must carry a later time.
const ENROLL_TIME: (u16, u8, u8, u8, u8, u8) = (2024, 1, 1, 0, 0, 0);

/// The certificates (DER) to enroll.
#[derive(Debug, Clone)]
pub struct SecureBootKeys {
    /// Where they came from: a keygen directory or one certificate.
    pub source: PathBuf,
    /// The platform key's certificate.
    pub pk: Vec<u8>,
    /// The key exchange key's certificate.
    pub kek: Vec<u8>,
    /// The certificate that signs images.
    pub db: Vec<u8>,
}

impl SecureBootKeys {
    /// A directory as `kiln keygen --secure-boot` writes it (`PK.crt`,
    /// `KEK.crt`, `db.crt`), or a single db certificate, which is then
    /// enrolled as PK and KEK too (nothing in a test boot updates them).
    pub fn load(path: &Path) -> Result<Self> {
        let der = |p: &Path| -> Result<Vec<u8>> {
            read_certificate(p)?
                .to_der()
                .with_context(|| format!("encoding {}", p.display()))
        };
        if path.is_dir() {
            Ok(SecureBootKeys {
                source: path.to_path_buf(),
                pk: der(&path.join("PK.crt"))?,
                kek: der(&path.join("KEK.crt"))?,
                db: der(&path.join("db.crt"))?,
            })
        } else if path.is_file() {
            let db = der(path)?;
            Ok(SecureBootKeys {
                source: path.to_path_buf(),
                pk: db.clone(),
                kek: db.clone(),
                db,
            })
        } else {
            Err(InputError::file(
                path.display().to_string(),
                "no such directory or certificate (--secure-boot takes a `kiln keygen --secure-boot` directory or a db certificate)",
            )
            .into())
        }
    }

    /// Write PK, KEK and db (and edk2's SecureBootEnable = 1, CustomMode =
    /// 0) into `vars`, an OVMF variable store image.
    pub fn enroll(&self, vars: &mut [u8]) -> Result<()> {
        let list = |cert: &[u8]| efivars::x509_signature_lists(KILN_OWNER, &[cert]);
        let nv_bs = efivars::ATTR_NON_VOLATILE | efivars::ATTR_BOOTSERVICE_ACCESS;
        let v = |name: &str, vendor, attributes, data| Variable {
            name: name.into(),
            vendor,
            attributes,
            data,
        };
        efivars::append(
            vars,
            &[
                v(
                    "SecureBootEnable",
                    efivars::SECURE_BOOT_ENABLE_DISABLE,
                    nv_bs,
                    vec![1],
                ),
                v("CustomMode", efivars::CUSTOM_MODE_ENABLE, nv_bs, vec![0]),
                v(
                    "db",
                    efivars::IMAGE_SECURITY_DATABASE,
                    efivars::SECURE_BOOT_DB_ATTRS,
                    list(&self.db),
                ),
                v(
                    "KEK",
                    efivars::GLOBAL_VARIABLE,
                    efivars::SECURE_BOOT_DB_ATTRS,
                    list(&self.kek),
                ),
                v(
                    "PK",
                    efivars::GLOBAL_VARIABLE,
                    efivars::SECURE_BOOT_DB_ATTRS,
                    list(&self.pk),
                ),
            ],
            ENROLL_TIME,
        )
        .context("enrolling the Secure Boot keys")?;
        Ok(())
    }
}

/// The check a `--secure-boot` boot adds.
pub const SECURE_BOOT_CHECK: &str = "secure_boot";
/// What the guest prints when it finds Secure Boot on: the Linux kernel
/// (`arch/x86/kernel/setup.c`, from the firmware's SecureBoot variable,
/// shown unless `quiet`), and kiln-init (reading that variable itself).
const SECURE_BOOT_ON: [&str; 2] = ["Secure boot enabled", "kiln-init: secure boot: enabled"];
/// What they print when the firmware booted it without enforcing.
const SECURE_BOOT_OFF: [&str; 2] = ["Secure boot disabled", "kiln-init: secure boot: disabled"];

/// The console line where OVMF's boot manager refused an image (a failed
/// signature check is `Access Denied` or `Security Violation`).
pub fn secure_boot_refusal(console: &str) -> Option<&str> {
    console.lines().map(str::trim).find(|l| {
        l.contains("BdsDxe: failed to load")
            && (l.contains("Access Denied") || l.contains("Security Violation"))
    })
}

/// The `secure_boot` check over a whole console log: passed only when the
/// guest kernel itself reported Secure Boot enabled; otherwise why not.
pub fn secure_boot_outcome(console: &str) -> SecureBootOutcome {
    let reported = |marks: [&str; 2]| {
        console
            .lines()
            .find(|l| marks.iter().any(|m| l.contains(m)))
            .map(|l| l.trim().to_string())
    };
    if let Some(line) = reported(SECURE_BOOT_ON) {
        return SecureBootOutcome::Enabled { line };
    }
    if let Some(line) = secure_boot_refusal(console) {
        return SecureBootOutcome::Refused { line: line.into() };
    }
    if let Some(line) = reported(SECURE_BOOT_OFF) {
        return SecureBootOutcome::Disabled { line };
    }
    SecureBootOutcome::NotReported
}

/// The check a `--tpm` boot adds.
pub const PCR11_CHECK: &str = "pcr11";
/// kiln-init's line with the measured PCR 11.
const PCR11_MARK: &str = "kiln-init: tpm pcr-sha256/11=";

/// The `pcr11` check over a whole console log: the value kiln-init read
/// from the TPM must equal the build's prediction.
pub fn pcr11_outcome(console: &str, predicted: Option<&str>) -> Pcr11Outcome {
    let measured = console.lines().find_map(|l| {
        let at = l.find(PCR11_MARK)?;
        Some(l[at + PCR11_MARK.len()..].trim().to_string())
    });
    match (measured, predicted) {
        (None, _) => Pcr11Outcome::NotReported,
        (Some(measured), None) => Pcr11Outcome::NoPrediction { measured },
        (Some(measured), Some(p)) if measured.eq_ignore_ascii_case(p) => {
            Pcr11Outcome::AsPredicted { measured }
        }
        (Some(measured), Some(p)) => Pcr11Outcome::Mismatch {
            measured,
            predicted: p.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// The keys kiln enrolls into Debian's empty OVMF_VARS_4M.fd are what
    /// virt-fw-vars (virt-firmware, an outside reader) finds there.
    #[test]
    fn virt_fw_vars_reads_the_enrolled_keys() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("sb");
        crate::image::secureboot::keygen(&keys_dir).unwrap();
        let keys = SecureBootKeys::load(&keys_dir).unwrap();
        let mut vars = std::fs::read(crate::vm::qemu::OVMF_VARS).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: install the Debian package ovmf",
                crate::vm::qemu::OVMF_VARS
            )
        });
        keys.enroll(&mut vars).unwrap();
        let path = dir.path().join("VARS.fd");
        std::fs::write(&path, &vars).unwrap();
        let fw_vars = std::env::var_os("KILN_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/kiln-tools"))
            .join("bin/virt-fw-vars");
        assert!(
            fw_vars.is_file(),
            "{}: missing: run scripts/setup-host.sh (PyPI virt-firmware)",
            fw_vars.display()
        );
        let out = Command::new(&fw_vars)
            .arg("-i")
            .arg(&path)
            .arg("--print")
            .arg("--verbose")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        for name in ["PK", "KEK", "db", "SecureBootEnable", "CustomMode"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("name={name} "))),
                "virt-fw-vars does not list {name}:\n{text}"
            );
        }
        assert!(
            text.contains(
                "name=SecureBootEnable guid=guid:EfiSecureBootEnableDisable size=1\n  bool: ON"
            ),
            "{text}"
        );
        for cn in [
            "kiln Secure Boot PK",
            "kiln Secure Boot KEK",
            "kiln Secure Boot db",
        ] {
            assert!(text.contains(cn), "virt-fw-vars shows no {cn}:\n{text}");
        }
        // Our own reader agrees, and a second enrollment is refused.
        let back = efivars::read(&vars).unwrap();
        let db = back.iter().find(|v| v.name == "db").unwrap();
        assert!(db.data.ends_with(&keys.db));
        assert!(keys.enroll(&mut vars).is_err());
        // A missing directory is bad input naming it.
        let e = SecureBootKeys::load(&dir.path().join("nope")).unwrap_err();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }

    #[test]
    fn secure_boot_is_judged_from_the_guest() {
        let on = "BdsDxe: starting Boot0001\n[    0.000000] secureboot: Secure boot enabled\n";
        assert_eq!(
            secure_boot_outcome(on),
            SecureBootOutcome::Enabled {
                line: "[    0.000000] secureboot: Secure boot enabled".into()
            }
        );
        let init = "kiln-init: mounted /dev, /proc, /sys\nkiln-init: secure boot: enabled (EFI variable SecureBoot=1)\n";
        assert_eq!(
            secure_boot_outcome(init).to_string(),
            "the guest reports: kiln-init: secure boot: enabled (EFI variable SecureBoot=1)"
        );
        let refused = "BdsDxe: loading Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0)\n\
                       BdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0): Access Denied\n";
        let outcome = secure_boot_outcome(refused);
        assert!(matches!(outcome, SecureBootOutcome::Refused { .. }));
        let detail = outcome.to_string();
        assert!(
            detail.contains("refused the image: BdsDxe: failed to load Boot0001"),
            "{detail}"
        );
        assert!(detail.ends_with("Access Denied"), "{detail}");
        let off = "[    0.000000] secureboot: Secure boot disabled\n";
        assert_eq!(
            secure_boot_outcome(off),
            SecureBootOutcome::Disabled {
                line: "[    0.000000] secureboot: Secure boot disabled".into()
            }
        );
        assert_eq!(secure_boot_outcome(""), SecureBootOutcome::NotReported);
        // A boot option that merely failed to load for another reason is no refusal.
        assert!(secure_boot_refusal("BdsDxe: failed to load Boot0002: Not Found").is_none());
    }

    #[test]
    fn pcr11_is_compared_with_the_prediction() {
        let a = "a".repeat(64);
        let console =
            format!("kiln-init: mounted /dev, /proc, /sys\nkiln-init: tpm pcr-sha256/11={a}\n");
        assert_eq!(
            pcr11_outcome(&console, Some(&a.to_uppercase())).to_string(),
            format!("measured {a}, as predicted")
        );
        let b = "b".repeat(64);
        assert_eq!(
            pcr11_outcome(&console, Some(&b)),
            Pcr11Outcome::Mismatch {
                measured: a.clone(),
                predicted: b
            }
        );
        assert_eq!(
            pcr11_outcome(&console, None),
            Pcr11Outcome::NoPrediction {
                measured: a.clone()
            }
        );
        assert_eq!(
            pcr11_outcome("kiln-init: exec /sbin/init", Some(&a)),
            Pcr11Outcome::NotReported
        );
    }
}
