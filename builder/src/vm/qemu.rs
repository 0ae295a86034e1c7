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

use crate::util::error::EnvError;
use crate::util::exec::CommandRunExt;
use crate::util::scratch::{self, ScratchDir};
use crate::vm::secureboot::{SecureBootKeys, OVMF_CODE_SECBOOT};

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

/// How long the KVM probe waits for the firmware's first serial output.
const KVM_PROBE_SECS: u64 = 3;

/// Whether KVM runs a guest here. `/dev/kvm` can exist while guests fail
/// under it (seen here: an emulation failure inside OVMF's first
/// instructions, after which the guest hangs). So the probe boots the very
/// firmware tests use, with no disk, under KVM: if it writes to the serial
/// port within a few seconds KVM works; a KVM internal error, an early exit
/// or silence means TCG. The answer is cached per host boot (keyed by
/// `/proc/sys/kernel/random/boot_id`) in the temporary directory.
/// `KILN_ACCEL=tcg|kvm` overrides the probe.
pub fn probe_kvm(tmp: &Path) -> Accel {
    match std::env::var("KILN_ACCEL").as_deref() {
        Ok("tcg") => return Accel::Tcg,
        Ok("kvm") => return Accel::Kvm,
        _ => {}
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = std::env::temp_dir().join(format!("kiln-kvm-probe-{}", boot_id.trim()));
    match std::fs::read_to_string(&cache).as_deref() {
        Ok("kvm") if !boot_id.is_empty() => return Accel::Kvm,
        Ok("tcg") if !boot_id.is_empty() => return Accel::Tcg,
        _ => {}
    }
    let accel = run_kvm_probe(tmp);
    if !boot_id.is_empty() {
        let _ = std::fs::write(&cache, accel.as_str());
    }
    accel
}

fn run_kvm_probe(tmp: &Path) -> Accel {
    let vars = tmp.join("probe-vars.fd");
    let serial = tmp.join("probe-serial.log");
    let errlog = tmp.join("probe-stderr.log");
    let (Ok(_), Ok(err)) = (
        std::fs::copy(OVMF_VARS, &vars),
        std::fs::File::create(&errlog),
    ) else {
        return Accel::Tcg;
    };
    let child = Command::new(QEMU)
        .args([
            "-machine",
            "q35",
            "-accel",
            "kvm",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn_bound();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(KVM_PROBE_SECS);
    let mut accel = Accel::Tcg;
    while std::time::Instant::now() < deadline {
        if std::fs::metadata(&serial).is_ok_and(|m| m.len() > 0) {
            accel = Accel::Kvm;
            break;
        }
        let failed = std::fs::read_to_string(&errlog)
            .is_ok_and(|e| e.contains("KVM internal error") || e.contains("emulation failure"));
        if failed || matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    tracing::info!(accel = accel.as_str(), "KVM probe");
    accel
}

/// A free TCP port on 127.0.0.1 (bound, then released for QEMU to take).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The files a boot needs: a private copy of the firmware variables and an
/// overlay over the image (the QMP socket and console log go beside them).
/// Removed when dropped; what a killed kiln left is swept by the next boot.
pub struct Scratch {
    /// The directory holding them, in `$TMPDIR`.
    pub dir: ScratchDir,
    /// The overlay (qcow2, backed by the image, read-only use of the image).
    pub overlay: PathBuf,
    /// The copy of OVMF_VARS.
    pub vars: PathBuf,
    /// Whether the copy has Secure Boot keys enrolled: boot the Secure
    /// Boot firmware then ([`crate::vm::secureboot`]).
    pub secure_boot: bool,
    /// The control socket of a software TPM to attach ([`start_swtpm`]).
    pub tpm: Option<PathBuf>,
}

/// Check the host has QEMU and OVMF, then prepare scratch files for booting `image`.
pub fn prepare(image: &Path) -> Result<Scratch> {
    prepare_with(image, None)
}

/// [`prepare`], with Secure Boot keys enrolled in the variables when given.
pub fn prepare_with(image: &Path, secure_boot: Option<&SecureBootKeys>) -> Result<Scratch> {
    crate::util::exec::require_program(QEMU)?;
    let code = secure_boot.map_or(OVMF_CODE, |_| OVMF_CODE_SECBOOT);
    for f in [code, OVMF_VARS] {
        if !Path::new(f).is_file() {
            bail!(EnvError::new(format!(
                "{f} is missing: install the Debian package ovmf (scripts/setup-host.sh)"
            )));
        }
    }
    let image = std::fs::canonicalize(image)
        .with_context(|| format!("{}: no such image", image.display()))?;
    let dir = scratch::in_temp_dir()?;
    let vars = dir.path().join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).with_context(|| format!("copying {OVMF_VARS}"))?;
    if let Some(keys) = secure_boot {
        let mut store = std::fs::read(&vars).with_context(|| format!("reading {OVMF_VARS}"))?;
        keys.enroll(&mut store)
            .with_context(|| format!("in a copy of {OVMF_VARS}"))?;
        std::fs::write(&vars, &store).with_context(|| format!("writing {}", vars.display()))?;
    }
    let overlay = dir.path().join("overlay.qcow2");
    Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&image)
        .arg(&overlay)
        .run()
        .context("creating the overlay")?;
    Ok(Scratch {
        dir,
        overlay,
        vars,
        secure_boot: secure_boot.is_some(),
        tpm: None,
    })
}

/// The software TPM (Debian package swtpm).
pub const SWTPM: &str = "swtpm";

/// Start a software TPM 2.0 with fresh state in `scratch`'s directory and
/// attach it to the boot (`scratch.tpm`); it ends when QEMU disconnects,
/// and is killed with the returned child otherwise.
pub fn start_swtpm(scratch: &mut Scratch) -> Result<std::process::Child> {
    crate::util::exec::require_program(SWTPM)?;
    let state = scratch.dir.path().join("tpm");
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let sock = scratch.dir.path().join("swtpm.sock");
    let log = std::fs::File::create(scratch.dir.path().join("swtpm.log"))?;
    let mut child = Command::new(SWTPM)
        .args(["socket", "--tpm2", "--terminate", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", sock.display()))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn_bound()?;
    // It listens once its socket exists.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(crate::env_err!(
                "swtpm exited ({status}) before listening: see {}",
                scratch.dir.path().join("swtpm.log").display()
            ));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(crate::env_err!(
                "swtpm did not create {} within 10 s",
                sock.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    scratch.tpm = Some(sock);
    Ok(child)
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

/// Virtual CPUs: two under KVM; one under TCG, where a second vCPU costs
/// the firmware's and the kernel's CPU bring-up and IPIs, emulated, and
/// the guests kiln tests gain nothing from it on a host whose cores the
/// emulation already keeps busy (hello's boot to its ready line: about 6 s
/// of QEMU CPU time with one, 7.7 s with two, on this 2-core host). And
/// with two, QEMU's multi-threaded TCG does not keep one vCPU's view of code
/// the other patches coherent: Linux 6.12 patching its static keys
/// (`text_poke_bp`, an int3 on each patched site) oopsed at boot, "Oops:
/// int3" in `sched_clock_tick` on the other CPU, on QEMU 7.2 (trixie's
/// cloud kernel).
pub fn cpus(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "2",
        Accel::Tcg => "1",
    }
}

/// The QEMU argument vector for booting the overlay in `scratch`.
pub fn args(scratch: &Scratch, cfg: &VmConfig) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &[&str]| a.extend(s.iter().map(|x| x.to_string()));
    // Secure Boot firmware keeps its variables in SMM-protected flash.
    let (machine, code) = if scratch.secure_boot {
        ("q35,smm=on", OVMF_CODE_SECBOOT)
    } else {
        ("q35", OVMF_CODE)
    };
    push(&[
        "-machine",
        machine,
        "-accel",
        cfg.accel.as_str(),
        "-m",
        &cfg.memory_mib.to_string(),
        "-smp",
        cpus(cfg.accel),
    ]);
    push(&["-nodefaults", "-no-reboot", "-display", "none"]);
    if scratch.secure_boot {
        push(&["-global", "driver=cfi.pflash01,property=secure,value=on"]);
    }
    push(&[
        "-drive",
        &format!("if=pflash,format=raw,readonly=on,file={code}"),
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
    if let Some(sock) = &scratch.tpm {
        push(&[
            "-chardev",
            &format!("socket,id=chrtpm,path={}", sock.display()),
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            "tpm-tis,tpmdev=tpm0",
        ]);
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
    // The serial console and the QEMU monitor are this terminal.
    Command::new(QEMU)
        .args(args(&scratch, &cfg))
        .lifecycle_bind()
        .run_interactive()
}
