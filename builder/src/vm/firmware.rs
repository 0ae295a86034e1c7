//! Firmware variables that spare every boot OVMF's first-boot work.
//!
//! OVMF starts from an empty variable store (`OVMF_VARS_4M.fd`): on every
//! boot it enumerates the devices, creates a boot option for each
//! (`Boot0001 "UEFI Misc Device" PciRoot(0x0)/Pci(0x2,0x0)` for kiln's virtio
//! disk), writes them and `BootOrder` to its emulated flash, and only then
//! boots. Those variables depend on the firmware build and the VM's devices,
//! not on the image. So kiln prepares them once per OVMF build, QEMU version
//! and device layout ([`VARS_LAYOUT`]): it boots the firmware alone, on an
//! empty disk of the same layout, until OVMF reports that the disk has
//! nothing to boot, and keeps the variable store it wrote in
//! `STORE/firmware/` ([`DIR`]). No image's code ever runs in that boot, so no image
//! can leave anything in the variables another image's test starts from.
//! OVMF refreshes its boot options on every boot anyway: a stale store costs
//! time, never a wrong boot.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::store::Store;
use crate::util::exec::CommandRunExt;
use crate::vm::qemu::{self, Accel, VmConfig};

/// Bumped when [`qemu::args`] changes the devices (and so the device paths
/// OVMF's boot options name).
const VARS_LAYOUT: u32 = 1;
/// What OVMF prints once it has written the boot options and found the
/// empty disk unbootable.
const DONE: &str = "BdsDxe: failed to load Boot";
/// How long the preparing boot may take before kiln gives up on it.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(60);

/// The prepared variable store for this firmware, QEMU and layout in
/// `STORE/firmware/`, made now if it is not there yet; `None` when it
/// cannot be made (the test then starts from OVMF's empty store, as it
/// would anyway).
pub fn prepared_vars(store: &Store, accel: Accel, memory_mib: u32) -> Option<PathBuf> {
    let cache_dir = store.layout().dir(crate::store::layout::Area::Firmware);
    let key = match vars_key(accel) {
        Ok(k) => k,
        Err(e) => {
            tracing::info!("no prepared firmware variables: {e:#}");
            return None;
        }
    };
    let path = cache_dir.join(format!("ovmf-vars-{key}.fd"));
    // Never through a link in the store (`store::layout`).
    if let Err(e) = store.layout().check(&path) {
        tracing::info!("no prepared firmware variables: {e}");
        return None;
    }
    let template_len = std::fs::metadata(qemu::OVMF_VARS).ok()?.len();
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == template_len) {
        return Some(path);
    }
    match prepare(store, &path, accel, memory_mib) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::info!("no prepared firmware variables: {e:#}");
            None
        }
    }
}

/// sha256 over what the prepared variables depend on.
fn vars_key(accel: Accel) -> Result<String> {
    let mut h = Sha256::new();
    for f in [qemu::OVMF_CODE, qemu::OVMF_VARS] {
        h.update(std::fs::read(f).with_context(|| format!("reading {f}"))?);
    }
    let version = Command::new(qemu::QEMU).arg("--version").run_get_output()?;
    h.update(&version);
    h.update(format!("layout {VARS_LAYOUT} cpus {}", qemu::cpus(accel)).as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// Boot the firmware on an empty disk until [`DONE`], then keep its
/// variables at `dest` (written whole, then renamed).
fn prepare(store: &Store, dest: &Path, accel: Accel, memory_mib: u32) -> Result<()> {
    let work = crate::util::scratch::in_temp_dir()?;
    let empty = work.path().join("empty.raw");
    std::fs::File::create(&empty)
        .and_then(|f| f.set_len(1 << 20))
        .with_context(|| format!("creating {}", empty.display()))?;
    let scratch = qemu::prepare(&empty)?;
    let console = scratch.dir.path().join("console.log");
    let cfg = VmConfig {
        accel,
        memory_mib,
        forwards: Vec::new(),
        serial_log: Some(console.clone()),
        qmp: None,
    };
    let mut child = Command::new(qemu::QEMU)
        .args(qemu::args(&scratch, &cfg))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_bound()?;
    let begin = Instant::now();
    let done = loop {
        let text = std::fs::read(&console).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(DONE) {
            break true;
        }
        if begin.elapsed() > PREPARE_TIMEOUT || matches!(child.try_wait(), Ok(Some(_))) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    if !done {
        bail!(crate::env_err!(
            "OVMF did not report the empty disk within {PREPARE_TIMEOUT:?}"
        ));
    }
    let vars = std::fs::read(&scratch.vars)?;
    let template = std::fs::read(qemu::OVMF_VARS)?;
    if vars.len() != template.len() || vars == template {
        bail!(crate::env_err!("OVMF wrote no variables"));
    }
    for dir in [dest.parent(), Some(store.tmp_root().as_path())]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A scratch of its own in STORE/tmp (the store's filesystem), gone
    // once the file is renamed into place.
    let tmp = crate::util::scratch::ScratchDir::new_in(&store.tmp_root())?;
    crate::store::write_atomic(tmp.path(), dest, &vars)?;
    tracing::info!(path = %dest.display(), secs = begin.elapsed().as_secs_f64(), "prepared firmware variables");
    Ok(())
}
