//! The PCR 11 value systemd-stub measures for a UKI (SHA-256 bank), as
//! `systemd-measure calculate` predicts it.
//!
//! Follows systemd's "TPM2 PCR Measurements Made by systemd" (UAPI-style
//! document `docs/TPM2_PCR_MEASUREMENTS.md`) and `systemd-stub(7)`: before
//! it starts the kernel, the stub extends PCR 11 with, for each UKI section
//! it knows, in its fixed order, first the section name with its NUL
//! terminator, then the section's contents (its `VirtualSize` bytes).
//! `.pcrsig` is never measured. Which sections a stub knows depends on its
//! version, read from the stub's own `.sdmagic` section
//! (`#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####`): `.uname` and
//! `.sbat` joined the list in systemd 254.
//!
//! Extending a PCR: `new = SHA256(old || SHA256(event))`, from 32 zero bytes.

use sha2::{Digest, Sha256};

use super::{parse, section_bytes, Built, Section, UkiError};

/// The sections systemd-stub measures, in its order (systemd 252).
const MEASURED_252: &[&str] = &[
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
];
/// From systemd 254 on (`.ucode` from 255; `.profile`, `.dtbauto`,
/// `.hwids` from 257, none of which kiln writes).
const MEASURED_254: &[&str] = &[
    ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
    ".pcrpkey", ".profile", ".dtbauto", ".hwids",
];
/// The first systemd whose stub measures `.uname` and `.sbat`.
const UNAME_SBAT_SINCE: u32 = 254;

/// The systemd version of a UKI's stub, from its `.sdmagic` section.
pub fn stub_version(pe: &[u8]) -> Option<u32> {
    version_in_magic(super::read_section(pe, ".sdmagic")?)
}

/// The version in a `.sdmagic` payload.
fn version_in_magic(magic: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(magic).ok()?;
    let rest = text.split("systemd-stub ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Extend `pcr` with one event, given by its sha256.
fn extend_digest(pcr: &mut [u8; 32], event_digest: &[u8; 32]) {
    let mut h = Sha256::new();
    h.update(*pcr);
    h.update(event_digest);
    *pcr = h.finalize().into();
}

/// Extend `pcr` with one event.
fn extend(pcr: &mut [u8; 32], event: &[u8]) {
    extend_digest(pcr, &Sha256::digest(event).into());
}

/// The PCR 11 (SHA-256) that systemd-stub leaves after measuring `uki`,
/// and the sections it measured, in order.
pub fn predict_pcr11(uki: &[u8]) -> Result<([u8; 32], Vec<String>), UkiError> {
    let sections = parse(uki)?.sections;
    predict(&sections, |s| section_bytes(uki, s), None)
}

/// [`predict_pcr11`] of a UKI kept in pieces. `linux_digest`, when the
/// caller has it, is the sha256 of the kernel the UKI was built from (its
/// `.linux` payload), so the kernel need not be hashed here again.
pub fn predict_pcr11_built(
    uki: &Built,
    linux_digest: Option<[u8; 32]>,
) -> Result<([u8; 32], Vec<String>), UkiError> {
    predict(&uki.sections()?, |s| uki.section_bytes(s), linux_digest)
}

fn predict<'a>(
    sections: &[Section],
    payload: impl Fn(&Section) -> &'a [u8],
    linux_digest: Option<[u8; 32]>,
) -> Result<([u8; 32], Vec<String>), UkiError> {
    let version = sections
        .iter()
        .find(|s| s.name == ".sdmagic")
        .and_then(|s| version_in_magic(payload(s)))
        .ok_or_else(|| super::bad("no systemd-stub version in .sdmagic"))?;
    let order = if version >= UNAME_SBAT_SINCE {
        MEASURED_254
    } else {
        MEASURED_252
    };
    let mut pcr = [0u8; 32];
    let mut measured = Vec::new();
    for name in order {
        // The stub takes the first section of a name.
        let Some(s) = sections.iter().find(|s| s.name == *name) else {
            continue;
        };
        let mut label = name.as_bytes().to_vec();
        label.push(0);
        extend(&mut pcr, &label);
        match linux_digest.filter(|_| *name == ".linux") {
            Some(d) => extend_digest(&mut pcr, &d),
            None => extend(&mut pcr, payload(s)),
        }
        measured.push((*name).to_owned());
    }
    Ok((pcr, measured))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::fs::uki::{build, UkiParts};

    const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
    const MEASURE: &str = "/lib/systemd/systemd-measure";

    #[test]
    fn extend_matches_the_tpm_definition() {
        let mut pcr = [0u8; 32];
        extend(&mut pcr, b"abc");
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(Sha256::digest(b"abc"));
        assert_eq!(pcr, <[u8; 32]>::from(h.finalize()));
    }

    /// kiln's prediction for a UKI made from the host's stub equals what
    /// the host's systemd-measure calculates from the same payloads.
    #[test]
    fn prediction_agrees_with_systemd_measure() {
        let stub = std::fs::read(STUB).unwrap_or_else(|e| {
            panic!("{STUB}: {e}: install the Debian package `systemd-boot-efi`")
        });
        assert!(
            std::path::Path::new(MEASURE).is_file(),
            "{MEASURE} is missing: install the Debian package `systemd`"
        );
        let osrel = b"ID=kiln\nVERSION_ID=1\n".to_vec();
        let cmdline = "console=ttyS0 roothash=0123 kiln.init=/sbin/init";
        let linux: Vec<u8> = (0..70_001u32).map(|i| (i * 31) as u8).collect();
        let initrd: Vec<u8> = (0..12_345u32).map(|i| (i * 7) as u8).collect();
        let parts = UkiParts {
            osrel: &osrel,
            cmdline,
            uname: Some("6.1.0-kiln"),
            linux: &linux,
            initrd: &initrd,
        };
        let uki = build(&stub, &parts).unwrap();
        let (pcr, measured) = predict_pcr11(&uki).unwrap();
        // The same from the UKI in pieces, hashing the kernel or told its digest.
        let built = crate::fs::uki::build_parts(&stub, &parts).unwrap();
        assert_eq!(built.to_vec(), uki);
        let linux_digest = Sha256::digest(&linux).into();
        for known in [None, Some(linux_digest)] {
            assert_eq!(
                predict_pcr11_built(&built, known).unwrap(),
                (pcr, measured.clone())
            );
        }
        let version = stub_version(&stub).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, data: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        let mut cmd = Command::new(MEASURE);
        cmd.arg("calculate")
            .arg("--bank=sha256")
            // The empty phase: what the stub leaves, before systemd's own
            // phase measurements (kiln-init makes none).
            .arg("--phase=")
            .arg(format!("--linux={}", file("linux", &linux).display()))
            .arg(format!("--osrel={}", file("osrel", &osrel).display()))
            .arg(format!(
                "--cmdline={}",
                file("cmdline", cmdline.as_bytes()).display()
            ))
            .arg(format!("--initrd={}", file("initrd", &initrd).display()));
        if version >= UNAME_SBAT_SINCE {
            let sbat = crate::fs::uki::read_section(&stub, ".sbat").unwrap();
            cmd.arg(format!(
                "--uname={}",
                file("uname", b"6.1.0-kiln").display()
            ))
            .arg(format!("--sbat={}", file("sbat", sbat).display()));
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "systemd-measure: {out:?}");
        // "11:sha256=<hex>" for the one phase asked for.
        let theirs = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("11:sha256="))
            .unwrap_or_else(|| panic!("no 11:sha256= in {text}"));
        assert_eq!(
            hex::encode(pcr),
            theirs.to_lowercase(),
            "{text} (kiln measured {measured:?})"
        );
        assert_eq!(&measured[..4], [".linux", ".osrel", ".cmdline", ".initrd"]);
    }
}
