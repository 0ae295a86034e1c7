//! Booting with UEFI Secure Boot enforced (ARCHITECTURE.md "Secure Boot"):
//! the certificates to enroll, and a private OVMF variable store with PK,
//! KEK and db written in ([`crate::fs::efivars`]), so that the firmware
//! starts in user mode and runs only images the db certificate signed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use x509_cert::der::Encode;

use crate::fs::efivars::{self, Guid, Variable};
use crate::image::secureboot::read_certificate;
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
}
