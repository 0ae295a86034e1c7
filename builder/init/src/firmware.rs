//! What the firmware told the kernel, reported on the console so that
//! `kiln test` can judge the boot from what the guest itself saw
//! (ARCHITECTURE.md "Secure Boot"):
//! - Secure Boot: the `SecureBoot` EFI global variable (UEFI 2.10, 3.3
//!   "Globally Defined Variables": one byte, 1 when the platform enforces
//!   image signatures), read through efivarfs; if efivarfs cannot be
//!   mounted, the kernel's copy of the EFI stub's finding in
//!   `boot_params.secure_boot` (`/sys/kernel/boot_params/data`, byte
//!   0x1ec, Linux `Documentation/arch/x86/zero-page.rst`).
//! - Measured boot: the TPM's PCR 11 in the SHA-256 bank, where
//!   systemd-stub measured the UKI's sections, read from the kernel's
//!   `/sys/class/tpm/tpm0/pcr-sha256/11` (Linux 5.12+, hex) before the
//!   switch to the image's init (which may extend it further).
//!
//! Lines: `kiln-init: secure boot: enabled (...)` or `disabled (...)`,
//! nothing on a machine that did not boot through UEFI;
//! `kiln-init: tpm pcr-sha256/11=<hex>`, nothing without a TPM.

use nix::mount::{mount, umount, MsFlags};

/// Where the kernel shows EFI runtime state.
const EFI_DIR: &str = "/sys/firmware/efi";
/// efivarfs's mount point.
const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// `SecureBoot` in `EFI_GLOBAL_VARIABLE`'s namespace, as efivarfs names it.
const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// `boot_params` as the kernel exports it, and the offset of `secure_boot`.
const BOOT_PARAMS: &str = "/sys/kernel/boot_params/data";
const BOOT_PARAMS_SECURE_BOOT: usize = 0x1ec;
/// `efi_secureboot_mode_enabled`/`_disabled` in `boot_params.secure_boot`.
const SB_MODE_DISABLED: u8 = 1;
const SB_MODE_ENABLED: u8 = 3;

/// The Secure Boot line, or `None` when the machine has no EFI.
pub fn secure_boot_report() -> Option<String> {
    if !std::path::Path::new(EFI_DIR).is_dir() {
        return None;
    }
    if let Some(value) = read_secure_boot_variable() {
        return Some(secure_boot_line(
            value == 1,
            &format!("EFI variable SecureBoot={value}"),
        ));
    }
    let mode = std::fs::read(BOOT_PARAMS)
        .ok()
        .and_then(|b| b.get(BOOT_PARAMS_SECURE_BOOT).copied());
    Some(match mode {
        Some(SB_MODE_ENABLED) => secure_boot_line(true, "boot_params.secure_boot=3"),
        Some(SB_MODE_DISABLED) => secure_boot_line(false, "boot_params.secure_boot=1"),
        Some(m) => format!("secure boot: unknown (boot_params.secure_boot={m})"),
        None => "secure boot: unknown (no SecureBoot variable, no boot_params)".to_owned(),
    })
}

/// The kernel's view of PCR 11 in the SHA-256 bank.
const PCR11_SHA256: &str = "/sys/class/tpm/tpm0/pcr-sha256/11";

/// The PCR 11 line, or `None` when the machine has no TPM 2.0.
pub fn pcr11_report() -> Option<String> {
    let text = std::fs::read_to_string(PCR11_SHA256).ok()?;
    Some(pcr_line(&text))
}

fn pcr_line(sysfs: &str) -> String {
    format!("tpm pcr-sha256/11={}", sysfs.trim().to_ascii_lowercase())
}

fn secure_boot_line(enabled: bool, how: &str) -> String {
    let state = if enabled { "enabled" } else { "disabled" };
    format!("secure boot: {state} ({how})")
}

/// The SecureBoot variable's value byte: efivarfs is mounted for the read
/// and unmounted after (unless it was there already).
fn read_secure_boot_variable() -> Option<u8> {
    let path = format!("{EFIVARS}/{SECURE_BOOT_VAR}");
    let mounted_here = !std::path::Path::new(&path).exists()
        && mount(
            Some("efivarfs"),
            EFIVARS,
            Some("efivarfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .is_ok();
    let value = std::fs::read(&path).ok().and_then(|b| parse_variable(&b));
    if mounted_here {
        let _ = umount(EFIVARS);
    }
    value
}

/// An efivarfs file is the variable's 4 attribute bytes, then its data.
fn parse_variable(file: &[u8]) -> Option<u8> {
    match file {
        [_, _, _, _, value] => Some(*value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efivarfs_files_and_lines() {
        assert_eq!(parse_variable(&[6, 0, 0, 0, 1]), Some(1));
        assert_eq!(parse_variable(&[6, 0, 0, 0, 0]), Some(0));
        assert_eq!(parse_variable(&[6, 0, 0, 0]), None);
        assert_eq!(parse_variable(&[6, 0, 0, 0, 1, 1]), None);
        assert_eq!(pcr_line("ABCDEF01\n"), "tpm pcr-sha256/11=abcdef01");
        assert_eq!(
            secure_boot_line(true, "EFI variable SecureBoot=1"),
            "secure boot: enabled (EFI variable SecureBoot=1)"
        );
    }
}
