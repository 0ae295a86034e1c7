//! kiln-init: the `/init` of the initramfs kiln generates.
//!
//! In order, printing a `kiln-init: ...` line for each step:
//! 1. mounts devtmpfs on `/dev`, proc on `/proc`, sysfs on `/sys`, and
//!    reports whether the firmware enforced Secure Boot and, with a TPM,
//!    the PCR 11 systemd-stub measured (see [`firmware`]);
//! 2. reads the kernel command line (see [`cmdline`]; `roothash=` is required);
//! 3. loads the kernel modules listed in `/etc/kiln/modules` (see [`modules`]);
//! 4. waits (default 30 s) for the root data and verity hash partitions,
//!    found by GPT unique GUID = first / last 128 bits of the root hash
//!    (see [`discover`]);
//! 5. reads the verity superblock from the hash partition and creates the
//!    read-only dm-verity device `/dev/mapper/root` through
//!    `/dev/mapper/control` (see [`verity`], [`dm`], [`dmctl`]);
//! 6. mounts it read-only on `/sysroot`, checks the image's init is there,
//!    moves `/dev`, `/proc`, `/sys` into it (detaching any the image has no
//!    directory for), empties the initramfs, switches root and execs the
//!    init with the kernel's arguments (see [`switch`]).
//!
//! On any failure it prints `kiln-init: FATAL: <what and why>`, waits
//! [`FATAL_DELAY`] so the message reaches the console, and powers the machine
//! off: never a fallback to an unverified root, never a shell, and a test
//! harness sees the failure in seconds rather than a hang.
//!
//! Messages go to the console (stderr, which the kernel opens on
//! `/dev/console`) and to `/dev/kmsg` at debug level, so they are in
//! `dmesg` without appearing twice on the console.
//!
//! It must be statically linked (the initramfs holds no libc). The kiln
//! crate's build script (`builder/build.rs`) builds it, static and
//! reproducible, whenever kiln is built, and kiln carries the binary;
//! `builder/init/build-static.sh` prints its path.

mod cmdline;
mod discover;
mod dm;
mod dmctl;
mod firmware;
mod modules;
mod switch;
mod verity;

use kiln_format::gpt;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use std::convert::Infallible;
use std::io::Write;
use std::time::{Duration, Instant};

/// How long a FATAL message stays up before the power-off.
pub const FATAL_DELAY: Duration = Duration::from_secs(5);
/// Where the root is mounted before the switch.
const SYSROOT: &str = "/sysroot";
/// The dm device name, and its node.
const DM_NAME: &str = "root";
const DM_NODE: &str = "/dev/mapper/root";
/// How often the partition scan repeats, and how often the wait is reported.
const POLL: Duration = Duration::from_millis(100);
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Print one `kiln-init:` line on the console and into the kernel log.
fn log(msg: &str) {
    let line = format!("kiln-init: {msg}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(mut k) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        // <7> is KERN_DEBUG: recorded, but below the default console level,
        // so the line is not printed on the console a second time.
        let _ = k.write_all(format!("<7>{line}").as_bytes());
    }
}

/// Report a failure and power off. Never returns.
fn fatal(msg: &str) -> ! {
    log(&format!("FATAL: {msg}"));
    log(&format!("powering off in {} s", FATAL_DELAY.as_secs()));
    std::thread::sleep(FATAL_DELAY);
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused to power off: PID 1 must not exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn mkdir_p(path: &str) -> Result<(), String> {
    match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(format!("mkdir {path}: {e}")),
    }
}

/// Step 1: the API filesystems, and a console on fds 0-2 if the kernel
/// could not give us one.
fn mount_api() -> Result<(), String> {
    let nosuid = MsFlags::MS_NOSUID;
    let noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    for (fstype, target, flags) in [
        ("devtmpfs", "/dev", nosuid),
        ("proc", "/proc", noexec),
        ("sysfs", "/sys", noexec),
    ] {
        mkdir_p(target)?;
        match mount(
            Some(fstype),
            target,
            Some(fstype),
            flags,
            Some("mode=0755").filter(|_| fstype == "devtmpfs"),
        ) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(format!("mounting {fstype} on {target}: {e}")),
        }
    }
    if nix::fcntl::fcntl(std::io::stderr(), nix::fcntl::FcntlArg::F_GETFD).is_err() {
        if let Ok(c) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
        {
            let _ = nix::unistd::dup2_stdin(&c);
            let _ = nix::unistd::dup2_stdout(&c);
            let _ = nix::unistd::dup2_stderr(&c);
        }
    }
    log("mounted /dev, /proc, /sys");
    Ok(())
}

/// Step 3: load the listed modules in order.
fn load_modules() -> Result<(), String> {
    let text = match std::fs::read_to_string(modules::LIST) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log(&format!("no {}; loading no modules", modules::LIST));
            return Ok(());
        }
        Err(e) => return Err(format!("reading {}: {e}", modules::LIST)),
    };
    let kver = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(|e| format!("reading the kernel release from /proc/sys/kernel/osrelease: {e}"))?;
    let list = modules::parse_list(&text, kver.trim()).map_err(|e| e.to_string())?;
    for m in list {
        let f = std::fs::File::open(&m.path).map_err(|e| format!("module {}: {e}", m.path))?;
        let params = std::ffi::CString::new(m.params.as_str())
            .map_err(|_| format!("module {}: parameters contain NUL", m.path))?;
        let result = nix::kmod::finit_module(&f, &params, nix::kmod::ModuleInitFlags::empty());
        match modules::classify(result) {
            modules::LoadOutcome::Loaded => log(&format!("loaded {}", m.path)),
            modules::LoadOutcome::AlreadyThere => log(&format!("{} already loaded", m.path)),
            modules::LoadOutcome::NoDevice => log(&format!(
                "{}: no device to drive (ENODEV); continuing",
                m.path
            )),
            modules::LoadOutcome::Failed(e) => {
                return Err(format!(
                    "loading module {}: {e} (the kernel log above may say more)",
                    m.path
                ))
            }
        }
    }
    Ok(())
}

/// Step 4: poll sysfs until both partitions are there, or time out.
fn wait_for_partitions(
    cfg: &cmdline::Config,
) -> Result<(discover::BlockDev, discover::BlockDev), String> {
    let (data, hash) = gpt::verity_partition_uuids(&cfg.roothash);
    let what = format!(
        "root data partition PARTUUID={} and verity hash partition PARTUUID={}",
        gpt::format_guid(&data),
        gpt::format_guid(&hash)
    );
    log(&format!("waiting up to {} s for {what}", cfg.timeout_secs));
    let start = Instant::now();
    let mut next_report = start + REPORT_EVERY;
    loop {
        let s = discover::scan(
            std::path::Path::new("/sys/class/block"),
            std::path::Path::new("/dev"),
            &data,
            &hash,
        );
        if let Some((d, h)) = s.found {
            log(&format!(
                "found data /dev/{} ({}:{}), hash /dev/{} ({}:{})",
                d.name, d.major, d.minor, h.name, h.major, h.minor
            ));
            return Ok((d, h));
        }
        let now = Instant::now();
        if now.duration_since(start) >= Duration::from_secs(cfg.timeout_secs) {
            let seen = if s.notes.is_empty() {
                "no disk had either".to_string()
            } else {
                s.notes.join("; ")
            };
            return Err(format!(
                "timed out after {} s waiting for {what}: {seen}",
                cfg.timeout_secs
            ));
        }
        if now >= next_report {
            log(&format!(
                "still waiting ({} s)",
                now.duration_since(start).as_secs()
            ));
            next_report += REPORT_EVERY;
        }
        std::thread::sleep(POLL);
    }
}

/// Step 5: the dm-verity device. Returns its node.
fn setup_verity(
    cfg: &cmdline::Config,
    data: &discover::BlockDev,
    hash: &discover::BlockDev,
) -> Result<&'static str, String> {
    use std::os::unix::fs::FileExt;
    let hash_node = format!("/dev/{}", hash.name);
    let mut sb = vec![0u8; verity::SUPERBLOCK_SIZE];
    std::fs::File::open(&hash_node)
        .and_then(|f| f.read_exact_at(&mut sb, 0))
        .map_err(|e| format!("reading the verity superblock from {hash_node}: {e}"))?;
    let sb = verity::parse_superblock(&sb).map_err(|e| format!("{hash_node}: {e}"))?;
    let params = verity::table_params(
        &sb,
        (data.major, data.minor),
        (hash.major, hash.minor),
        &cfg.roothash,
    );
    log(&format!("verity {params}"));

    let ctl = dmctl::Control::open()
        .map_err(|e| format!("opening {}: {e} (is dm-mod loaded?)", dmctl::CONTROL))?;
    let uuid = format!("KILN-VERITY-{}", cmdline::to_hex(&cfg.roothash[..16]));
    let mut buf = dm::dev_create(DM_NAME, &uuid).map_err(|e| e.to_string())?;
    ctl.ioctl(dm::Command::DevCreate, &mut buf)
        .map_err(|e| format!("creating device-mapper device {DM_NAME}: {e}"))?;
    let (major, minor) = dm::reply_dev(&buf);
    let mut buf =
        dm::table_load(DM_NAME, sb.data_sectors(), "verity", &params).map_err(|e| e.to_string())?;
    ctl.ioctl(dm::Command::TableLoad, &mut buf).map_err(|e| {
        format!("the kernel rejected the verity table for /dev/{} + /dev/{}: {e} (the device-mapper line in the kernel log says why)", data.name, hash.name)
    })?;
    let mut buf = dm::dev_resume(DM_NAME).map_err(|e| e.to_string())?;
    ctl.ioctl(dm::Command::DevSuspend, &mut buf)
        .map_err(|e| format!("activating device-mapper device {DM_NAME}: {e}"))?;
    mkdir_p("/dev/mapper")?;
    match nix::sys::stat::mknod(
        DM_NODE,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major.into(), minor.into()),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(format!("mknod {DM_NODE} ({major}:{minor}): {e}")),
    }
    log(&format!(
        "{DM_NODE} ({major}:{minor}) is the dm-verity view of /dev/{}",
        data.name
    ));
    Ok(DM_NODE)
}

fn run(args: &[String]) -> Result<Infallible, String> {
    mount_api()?;
    if let Some(line) = firmware::secure_boot_report() {
        log(&line);
    }
    if let Some(line) = firmware::pcr11_report() {
        log(&line);
    }
    let text = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("reading /proc/cmdline: {e}"))?;
    let cfg = cmdline::parse(&text).map_err(|e| e.to_string())?;
    log(&format!(
        "roothash={} init={} fstype={}",
        cmdline::to_hex(&cfg.roothash),
        cfg.init,
        cfg.fstype
    ));
    load_modules()?;
    let (data, hash) = wait_for_partitions(&cfg)?;
    let node = setup_verity(&cfg, &data, &hash)?;
    mkdir_p(SYSROOT)?;
    mount(
        Some(node),
        SYSROOT,
        Some(cfg.fstype.as_str()),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| {
        let hint = if e == nix::errno::Errno::EIO {
            " (an I/O error here means dm-verity found data that does not match the root hash)"
        } else {
            ""
        };
        format!(
            "mounting {node} ({}) read-only on {SYSROOT}: {e}{hint}",
            cfg.fstype
        )
    })?;
    log(&format!("mounted {node} read-only on {SYSROOT}"));
    switch::check_executable_in(std::path::Path::new(SYSROOT), &cfg.init)?;
    switch::switch_root(SYSROOT, &cfg.init, args, log)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!("kiln-init: this is the init of kiln's initramfs and runs only as PID 1; refusing to run");
        std::process::exit(2);
    }
    match run(argv.get(1..).unwrap_or_default()) {
        Ok(never) => match never {},
        Err(e) => fatal(&e),
    }
}
