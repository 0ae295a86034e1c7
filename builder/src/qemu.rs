//! The one QEMU wrapper, for `kiln boot` (and the boot test): UEFI firmware
//! (OVMF, code read-only, a private copy of the variables), the image behind
//! a throwaway qcow2 overlay so the image file is never written, user
//! networking with host port forwards, KVM when a short probe shows a guest
//! really runs under it, TCG otherwise.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::error::EnvError;
use crate::exec::Cmd;

/// The QEMU system emulator for x86-64.
pub const QEMU: &str = "qemu-system-x86_64";
/// OVMF firmware code (Debian package ovmf), 4 MiB flash layout.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Whether KVM runs a guest here. `/dev/kvm` can exist and still hang guests,
/// so this boots a 64 KiB firmware whose reset vector writes to QEMU's
/// isa-debug-exit port: under a working KVM QEMU exits at once with code
/// (0x42 << 1) | 1; anything else within two seconds means TCG.
pub fn probe_kvm(tmp: &Path) -> Accel {
    if std::env::var("KILN_ACCEL").as_deref() == Ok("tcg") {
        return Accel::Tcg;
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let rom = tmp.join("kvm-probe.rom");
    let mut bytes = vec![0xf4u8; 64 * 1024]; // hlt
                                             // At the reset vector (last 16 bytes): mov al, 0x42; out 0xf4, al; hlt.
    let n = bytes.len();
    bytes[n - 16..n - 11].copy_from_slice(&[0xb0, 0x42, 0xe6, 0xf4, 0xf4]);
    if std::fs::write(&rom, &bytes).is_err() {
        return Accel::Tcg;
    }
    let child = Command::new(QEMU)
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-m",
            "16",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-bios"])
        .arg(&rom)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return if status.code() == Some((0x42 << 1) | 1) {
                Accel::Kvm
            } else {
                Accel::Tcg
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Accel::Tcg
}

/// A free TCP port on 127.0.0.1 (bound, then released for QEMU to take).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The files a boot needs: a private copy of the firmware variables and an
/// overlay over the image. Removed when dropped.
pub struct Scratch {
    /// The directory holding them.
    pub dir: tempfile::TempDir,
    /// The overlay (qcow2, backed by the image, read-only use of the image).
    pub overlay: PathBuf,
    /// The copy of OVMF_VARS.
    pub vars: PathBuf,
}

/// Check the host has QEMU and OVMF, then prepare scratch files for booting `image`.
pub fn prepare(image: &Path) -> Result<Scratch> {
    if !crate::exec::have_program(QEMU) {
        bail!(EnvError::new(format!("`{QEMU}` is not installed: install the Debian package qemu-system-x86 (scripts/setup-host.sh)")));
    }
    for f in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(f).is_file() {
            bail!(EnvError::new(format!(
                "{f} is missing: install the Debian package ovmf (scripts/setup-host.sh)"
            )));
        }
    }
    let image = std::fs::canonicalize(image)
        .with_context(|| format!("{}: no such image", image.display()))?;
    let dir = tempfile::Builder::new().prefix("kiln-qemu-").tempdir()?;
    let vars = dir.path().join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).with_context(|| format!("copying {OVMF_VARS}"))?;
    let overlay = dir.path().join("overlay.qcow2");
    Cmd::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&image)
        .arg(&overlay)
        .run()
        .context("creating the overlay")?;
    Ok(Scratch { dir, overlay, vars })
}

/// How to run QEMU.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Accelerator.
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// (host port, guest port) forwards.
    pub forwards: Vec<(u16, u16)>,
    /// Serial console: `None` to the terminal (with the QEMU monitor on Ctrl-A c), or a log file.
    pub serial_log: Option<PathBuf>,
    /// QMP socket path, if any.
    pub qmp: Option<PathBuf>,
}

/// The QEMU argument vector for booting the overlay in `scratch`.
pub fn args(scratch: &Scratch, cfg: &VmConfig) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &[&str]| a.extend(s.iter().map(|x| x.to_string()));
    push(&[
        "-machine",
        "q35",
        "-accel",
        cfg.accel.as_str(),
        "-m",
        &cfg.memory_mib.to_string(),
        "-smp",
        "2",
    ]);
    push(&["-nodefaults", "-no-reboot", "-display", "none"]);
    push(&[
        "-drive",
        &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
    ]);
    push(&[
        "-drive",
        &format!("if=pflash,format=raw,file={}", scratch.vars.display()),
    ]);
    push(&[
        "-drive",
        &format!("if=virtio,format=qcow2,file={}", scratch.overlay.display()),
    ]);
    let fwd: String = cfg
        .forwards
        .iter()
        .map(|(h, g)| format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"))
        .collect();
    push(&[
        "-netdev",
        &format!("user,id=n0{fwd}"),
        "-device",
        "virtio-net-pci,netdev=n0",
    ]);
    match &cfg.serial_log {
        None => push(&["-serial", "mon:stdio"]),
        Some(log) => push(&[
            "-serial",
            &format!("file:{}", log.display()),
            "-monitor",
            "none",
        ]),
    }
    if let Some(q) = &cfg.qmp {
        push(&["-qmp", &format!("unix:{},server=on,wait=off", q.display())]);
    }
    a
}

/// `kiln boot`: the serial console on this terminal until the guest powers off.
pub fn boot_interactive(image: &Path, memory_mib: u32, guest_ports: &[u16]) -> Result<()> {
    let scratch = prepare(image)?;
    let accel = probe_kvm(scratch.dir.path());
    let mut forwards = Vec::new();
    for g in guest_ports {
        forwards.push((free_port()?, *g));
    }
    let cfg = VmConfig {
        accel,
        memory_mib,
        forwards: forwards.clone(),
        serial_log: None,
        qmp: None,
    };
    eprintln!(
        "kiln: booting {} with {} (serial console below; Ctrl-A x quits QEMU)",
        image.display(),
        accel.as_str()
    );
    for (h, g) in &forwards {
        eprintln!("kiln: guest port {g} is 127.0.0.1:{h}");
    }
    // Interactive: stdin stays the terminal, unlike crate::exec::Cmd.
    let status = Command::new(QEMU)
        .args(args(&scratch, &cfg))
        .status()
        .with_context(|| format!("starting {QEMU}"))?;
    if !status.success() {
        bail!("{QEMU} exited with {status}");
    }
    Ok(())
}
