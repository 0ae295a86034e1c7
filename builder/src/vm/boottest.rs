//! `kiln test`: boot the very image that will be published, byte for byte
//! unchanged, and judge it from outside (ARCHITECTURE.md "Verification"):
//! console patterns that must appear in order and patterns that must never
//! appear, TCP and HTTP probes through QEMU port forwards, the recipe's own
//! programs run on the host against those forwards (`vm::hostcheck`), and a
//! clean ACPI power-off requested over QMP (QEMU Machine Protocol,
//! docs/interop/qmp-spec).
//!
//! The verdict is recorded in the store against the image's digest. QEMU, its
//! sockets and scratch files never outlive the test: they are removed after a
//! pass, a failure, a timeout, or SIGINT/SIGTERM to kiln.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::RegexBuilder;

use crate::model::checks::TestSettings;
use crate::store::verdict::{CheckResult, Phases, Verdict, SCHEMA};
use crate::util::error::check_failed;
use crate::util::exec::CommandRunExt;
use crate::util::progress::Progress;
use crate::vm::hostcheck;
use crate::vm::probe::{http_answers, probe, tcp_accepts};
use crate::vm::qemu::{self, VmConfig};
use crate::vm::secureboot::{
    pcr11_outcome, secure_boot_outcome, secure_boot_refusal, SecureBootKeys, PCR11_CHECK,
    SECURE_BOOT_CHECK,
};

/// How often the console and the guest are polled.
const POLL: Duration = Duration::from_millis(100);
/// How often the power button is pressed again while the guest has not
/// powered off (see the shutdown check).
const POWER_BUTTON_REPEAT: Duration = Duration::from_secs(5);
/// Lines of console shown with a failure.
const TAIL_LINES: usize = 25;

/// Set by SIGINT/SIGTERM; the test loop stops QEMU and cleans up.
fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // A second handler cannot be installed; then Ctrl-C keeps its default
        // (QEMU, in our process group, gets it too).
        let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
        flag
    })
}

/// A running QEMU that is killed and reaped when dropped.
struct Vm {
    child: Child,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Console log reader: keeps the whole text, tells what is new.
struct Console {
    path: PathBuf,
    text: String,
    start: Instant,
}

impl Console {
    fn refresh(&mut self) {
        if let Ok(bytes) = std::fs::read(&self.path) {
            if bytes.len() > self.text.len() {
                self.text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }

    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Options for a test run.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Write a JUnit XML report here.
    pub junit: Option<PathBuf>,
    /// Where to keep the console log (default: beside the image, `NAME.console.log`).
    pub console_log: Option<PathBuf>,
    /// Show each boot phase and step on the terminal (`util::progress`:
    /// only when stdout is one).
    pub progress: bool,
    /// The store whose prepared firmware variables the boot starts from
    /// (`vm::firmware`); `None` boots from OVMF's empty variable store.
    pub firmware_cache: Option<crate::store::Store>,
    /// Boot with Secure Boot enforced, these keys enrolled; adds the
    /// `secure_boot` check.
    pub secure_boot: Option<SecureBootKeys>,
    /// Attach a software TPM and add the `pcr11` check against this
    /// prediction (hex; `None` when the manifest has none).
    pub tpm: Option<Option<String>>,
}

/// The outcome of checks run so far, and the first failure.
struct Run {
    checks: Vec<CheckResult>,
    failed: Option<String>,
}

impl Run {
    fn pass(&mut self, name: String, secs: f64, detail: String) {
        self.checks.push(CheckResult {
            name,
            passed: true,
            secs,
            detail,
        });
    }
    fn fail(&mut self, name: String, secs: f64, detail: String) {
        if self.failed.is_none() {
            self.failed = Some(name.clone());
        }
        self.checks.push(CheckResult {
            name,
            passed: false,
            secs,
            detail,
        });
    }
}

/// Names of checks, stable across runs (JUnit test case names).
pub fn console_check_name(i: usize, pattern: &str) -> String {
    format!("console[{i}] {pattern}")
}

fn first_line(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Boot `image` and run the checks; records nothing (see [`crate::store::verdict::record`]).
pub fn run(
    image: &Path,
    image_label: &str,
    settings: &TestSettings,
    opts: &TestOptions,
) -> Result<Verdict> {
    let started_at = crate::util::time::rfc3339_now();
    let t0 = Instant::now();
    let flag = interrupted().clone();
    let progress = std::cell::RefCell::new(if opts.progress {
        Progress::new(false)
    } else {
        Progress::hidden()
    });

    crate::vm::hostcheck::require_programs(settings)?;
    let mut scratch = qemu::prepare_with(image, opts.secure_boot.as_ref())?;
    // Stopped with the guest (it also ends when QEMU disconnects).
    let _swtpm = match opts.tpm {
        Some(_) => Some(Vm {
            child: qemu::start_swtpm(&mut scratch)?,
        }),
        None => None,
    };
    // The image's digest and QEMU's version are taken while the firmware
    // runs (the image is only read, by both), not before the boot starts.
    let host_side = {
        let image = image.to_path_buf();
        std::thread::spawn(move || {
            let digest = crate::util::digest::file_digest(&image);
            let version = Command::new(qemu::QEMU)
                .arg("--version")
                .run_get_output()
                .map(|out| first_line(&out))
                .unwrap_or_default();
            (digest, version)
        })
    };
    let accel = qemu::probe_kvm(scratch.dir.path());
    // Prepared variables replace only OVMF's stock empty store: a boot
    // given variables of its own (enrolled keys, say) keeps them.
    let stock_vars = std::fs::read(&scratch.vars).ok() == std::fs::read(qemu::OVMF_VARS).ok();
    if let (Some(cache), true) = (&opts.firmware_cache, stock_vars) {
        progress
            .borrow_mut()
            .step("preparing the firmware variables (once per OVMF build)");
        let begin = Instant::now();
        let prepared = crate::vm::firmware::prepared_vars(cache, accel, settings.memory_mib);
        if begin.elapsed() < Duration::from_secs(1) {
            progress.borrow_mut().clear();
        }
        if let Some(vars) = prepared {
            std::fs::copy(&vars, &scratch.vars)
                .with_context(|| format!("copying {}", vars.display()))?;
        }
    }
    let mut forwards = Vec::new();
    for g in &settings.forwarded_ports() {
        forwards.push((qemu::free_port()?, *g));
    }
    let host_port = |g: u16| {
        forwards
            .iter()
            .find(|(_, gp)| *gp == g)
            .map(|(h, _)| *h)
            .unwrap_or(0)
    };
    let console_path = scratch.dir.path().join("console.log");
    let qmp_path = scratch.dir.path().join("qmp.sock");
    let cfg = VmConfig {
        accel,
        memory_mib: settings.memory_mib,
        forwards: forwards.clone(),
        serial_log: Some(console_path.clone()),
        qmp: Some(qmp_path.clone()),
    };
    let qemu_log = std::fs::File::create(scratch.dir.path().join("qemu.log"))?;
    // Its own process group: a Ctrl-C at the terminal reaches kiln, which
    // stops QEMU and cleans up, rather than QEMU alone.
    let child = Command::new(qemu::QEMU)
        .args(qemu::args(&scratch, &cfg))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(qemu_log.try_clone()?)
        .stderr(qemu_log)
        .spawn_bound()?;
    let mut vm = Vm { child };
    progress.borrow_mut().step(format!(
        "booting {image_label} ({}): firmware",
        accel.as_str()
    ));
    let mut con = Console {
        path: console_path.clone(),
        text: String::new(),
        start: Instant::now(),
    };
    let overall = Duration::from_secs(settings.timeout);
    let mut run = Run {
        checks: Vec::new(),
        failed: None,
    };
    let mut phases = Phases::default();
    let mut forbid_hit: Option<(String, String)> = None;
    let secure_boot = opts.secure_boot.is_some();

    // One step of watching the guest: refresh the console, note phases,
    // scan for forbidden patterns. Returns why the test must stop, if it must.
    let mut watch = |con: &mut Console, vm: &mut Vm, phases: &mut Phases| -> Option<String> {
        con.refresh();
        let now = con.secs();
        if phases.firmware.is_none() && con.text.contains("BdsDxe: starting") {
            phases.firmware = Some(now);
            progress.borrow_mut().step("kernel");
        }
        if phases.kernel.is_none() && con.text.contains("kiln-init:") {
            phases.kernel = Some(now);
            progress.borrow_mut().step("kiln-init: verity root");
        }
        if phases.init.is_none() && con.text.contains("kiln-init: exec") {
            phases.init = Some(now);
            progress.borrow_mut().step("the image's init");
        }
        if forbid_hit.is_none() {
            for re in &settings.forbid {
                if let Some(line) = con.text.lines().find(|l| re.is_match(l)) {
                    forbid_hit = Some((re.as_str().to_string(), line.trim().to_string()));
                    break;
                }
            }
        }
        if forbid_hit.is_some() {
            return Some("forbidden".into());
        }
        if secure_boot {
            if let Some(line) = secure_boot_refusal(&con.text) {
                return Some(format!("the firmware refused to boot it: {line}"));
            }
        }
        if flag.load(Ordering::SeqCst) {
            return Some("interrupted".into());
        }
        if con.start.elapsed() > overall {
            return Some("timeout".into());
        }
        if let Ok(Some(status)) = vm.child.try_wait() {
            return Some(format!("guest exited ({status})"));
        }
        None
    };

    // 1. Console patterns, in order.
    let mut stop: Option<String> = None;
    let mut searched_from = 0usize;
    'console: for (i, c) in settings.console.iter().enumerate() {
        let name = console_check_name(i, c.pattern.as_str());
        let begin = con.secs();
        let deadline = Instant::now() + Duration::from_secs(c.timeout);
        loop {
            let why = watch(&mut con, &mut vm, &mut phases);
            if let Some(m) = c
                .pattern
                .find(&con.text[searched_from.min(con.text.len())..])
            {
                searched_from += m.end();
                run.pass(
                    name,
                    con.secs(),
                    format!("seen after {:.1} s", con.secs() - begin),
                );
                continue 'console;
            }
            if let Some(why) = why {
                run.fail(name, con.secs(), format!("not seen: {why}"));
                stop = Some(why);
                break 'console;
            }
            if Instant::now() > deadline {
                run.fail(name, con.secs(), format!("not seen within {} s", c.timeout));
                stop = Some("console".into());
                break 'console;
            }
            std::thread::sleep(POLL);
        }
    }
    if stop.is_none() {
        phases.ready = Some(con.secs());
        progress.borrow_mut().step("probes and commands");
    }

    // 2. Probes through the port forwards.
    if stop.is_none() {
        for (i, t) in settings.tcp.iter().enumerate() {
            let name = format!("tcp[{i}] :{}", t.port);
            let addr = SocketAddr::from(([127, 0, 0, 1], host_port(t.port)));
            // Validated when the recipe was read.
            let expect = t
                .expect
                .as_deref()
                .map(|e| RegexBuilder::new(e).multi_line(true).build())
                .transpose()?;
            let p = probe(
                t.timeout,
                || watch(&mut con, &mut vm, &mut phases),
                || match &expect {
                    Some(re) => hostcheck::tcp_exchange(addr, t.send.as_deref(), re),
                    None => tcp_accepts(addr),
                },
            );
            if p.ok {
                let what = match &t.expect {
                    Some(e) => format!("replies matching /{e}/"),
                    None => "accepts connections".into(),
                };
                run.pass(
                    name,
                    p.secs,
                    format!(
                        "guest port {} {what} (host 127.0.0.1:{})",
                        t.port,
                        addr.port()
                    ),
                );
            } else {
                run.fail(
                    name,
                    p.secs,
                    format!("no connection within {} s: {}", t.timeout, p.last),
                );
                stop = Some(p.stopped.unwrap_or_else(|| "tcp".into()));
                break;
            }
        }
    }
    if stop.is_none() {
        for (i, h) in settings.http.iter().enumerate() {
            let name = format!("http[{i}] GET :{}{}", h.port, h.path);
            let addr = SocketAddr::from(([127, 0, 0, 1], host_port(h.port)));
            let p = probe(
                h.timeout,
                || watch(&mut con, &mut vm, &mut phases),
                || http_answers(addr, h),
            );
            if p.ok {
                run.pass(name, p.secs, format!("status {}", h.status));
            } else {
                run.fail(name, p.secs, format!("within {} s: {}", h.timeout, p.last));
                stop = Some(p.stopped.unwrap_or_else(|| "http".into()));
                break;
            }
        }
    }

    // 3. The recipe's programs, run on the host.
    if stop.is_none() {
        let subst = hostcheck::Substitutions {
            forwards: &forwards,
            image: std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf()),
            console_log: std::path::absolute(&console_path).unwrap_or(console_path.clone()),
        };
        for (i, c) in settings.command.iter().enumerate() {
            let name = c.name(i);
            let begin = Instant::now();
            let (outcome, stopped) = match subst.argv(&c.argv) {
                Ok(argv) => hostcheck::run_with_retries(c, &argv, scratch.dir.path(), || {
                    watch(&mut con, &mut vm, &mut phases)
                }),
                Err(e) => (Err(e), None),
            };
            let secs = begin.elapsed().as_secs_f64();
            match outcome {
                Ok(detail) => run.pass(name, secs, detail),
                Err(detail) => {
                    run.fail(name, secs, detail);
                    stop = Some(stopped.unwrap_or_else(|| "command".into()));
                    break;
                }
            }
        }
    }

    // 4. Clean shutdown: ACPI power button through QMP; the guest must power off.
    if let (None, Some(timeout)) = (&stop, settings.shutdown_timeout) {
        progress.borrow_mut().step("ACPI power-off");
        let begin = Instant::now();
        let result = qmp_powerdown(&qmp_path);
        let mut outcome = match result {
            Err(e) => Err(format!("QMP: {e:#}")),
            Ok(()) => Err(String::new()),
        };
        if outcome == Err(String::new()) {
            // A guest that reached its ready line may not have bound its
            // power button yet (udev loads the ACPI button driver in
            // parallel, later on a loaded host): the press is lost, so it is
            // repeated, as a person would, until the guest reacts.
            let mut pressed = Instant::now();
            outcome = loop {
                if pressed.elapsed() >= POWER_BUTTON_REPEAT {
                    pressed = Instant::now();
                    if let Err(e) = qmp_powerdown(&qmp_path) {
                        tracing::debug!("pressing the power button again: {e:#}");
                    }
                }
                if let Some(why) = watch(&mut con, &mut vm, &mut phases) {
                    if why.starts_with("guest exited") {
                        break Ok(why);
                    }
                    stop = Some(why.clone());
                    break Err(why);
                }
                if begin.elapsed() > Duration::from_secs(timeout) {
                    break Err(format!("still running {timeout} s after system_powerdown"));
                }
                std::thread::sleep(POLL);
            };
        }
        let secs = begin.elapsed().as_secs_f64();
        match outcome {
            Ok(why) => run.pass("shutdown".into(), secs, format!("powered off: {why}")),
            Err(why) => {
                run.fail("shutdown".into(), secs, why);
                stop.get_or_insert("shutdown".into());
            }
        }
    }
    con.refresh();
    progress.borrow_mut().finish(None);

    // Forbidden patterns are one check, judged over the whole console.
    match &forbid_hit {
        Some((pat, line)) => run.fail(
            format!("forbid /{pat}/"),
            con.secs(),
            format!("seen: {line}"),
        ),
        None => run.pass(
            format!("forbid ({} patterns)", settings.forbid.len()),
            con.secs(),
            "none seen".into(),
        ),
    }
    // A forbidden pattern is the reason, whatever check was waiting then.
    if let Some((pat, _)) = &forbid_hit {
        run.failed = Some(format!("forbid /{pat}/"));
    }
    // Measured boot: the PCR 11 kiln-init read from the TPM against the
    // manifest's prediction.
    if let Some(predicted) = &opts.tpm {
        let (passed, detail) = pcr11_outcome(&con.text, predicted.as_deref());
        if passed {
            run.pass(PCR11_CHECK.into(), con.secs(), detail);
        } else {
            run.fail(PCR11_CHECK.into(), con.secs(), detail);
        }
    }
    // Secure Boot: judged from what the guest kernel reports; a firmware
    // refusal is the reason, whatever check was waiting then.
    if secure_boot {
        let (passed, detail) = secure_boot_outcome(&con.text);
        if passed {
            run.pass(SECURE_BOOT_CHECK.into(), con.secs(), detail);
        } else {
            let refused = secure_boot_refusal(&con.text).is_some();
            run.fail(SECURE_BOOT_CHECK.into(), con.secs(), detail);
            if refused {
                run.failed = Some(SECURE_BOOT_CHECK.into());
            }
        }
    }
    match stop.as_deref() {
        Some("timeout") => {
            run.checks.push(CheckResult {
                name: "timeout".into(),
                passed: false,
                secs: con.secs(),
                detail: format!("overall timeout of {} s reached", settings.timeout),
            });
            run.failed = Some("timeout".into());
        }
        Some("interrupted") => {
            drop(vm);
            bail!(crate::env_err!(
                "interrupted: QEMU stopped, nothing recorded"
            ));
        }
        _ => {}
    }
    drop(vm);
    let (digest_before, qemu_version) = host_side
        .join()
        .map_err(|_| crate::internal_err!("hashing {} failed", image.display()))?;
    let digest_before = digest_before?;

    // The console log is kept beside the image (or where asked).
    let log_dest = opts.console_log.clone().unwrap_or_else(|| {
        let stem = image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        image.with_file_name(format!("{stem}.console.log"))
    });
    let log = std::fs::read(&console_path)
        .with_context(|| format!("reading the console log {}", console_path.display()))?;
    write_whole(&log_dest, &log)
        .with_context(|| format!("keeping the console log at {}", log_dest.display()))?;

    let digest_after = crate::util::digest::file_digest(image)?;
    if digest_after != digest_before {
        bail!(check_failed(format!(
            "{} changed during the test ({digest_before} → {digest_after})",
            image.display()
        )));
    }
    let passed = run.failed.is_none();
    let verdict = Verdict {
        schema: SCHEMA.into(),
        image_digest: digest_before,
        image: image_label.to_string(),
        passed,
        failed_check: run.failed.clone(),
        checks: run.checks,
        phases,
        duration_secs: t0.elapsed().as_secs_f64(),
        qemu_version,
        firmware: if secure_boot {
            crate::vm::secureboot::OVMF_CODE_SECBOOT
        } else {
            qemu::OVMF_CODE
        }
        .into(),
        accel: accel.as_str().into(),
        started_at,
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        console_log: Some(log_dest),
        secure_boot,
    };
    if let Some(j) = &opts.junit {
        write_whole(j, crate::vm::junit::junit_xml(&verdict).as_bytes())
            .with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(verdict)
}

/// `kiln test IMAGE`: read the image's manifest ([`crate::read::locate`])
/// for its name and test settings, run the test, record the verdict in the
/// store.
pub fn test_image(
    store: &crate::store::Store,
    image: &Path,
    junit: Option<PathBuf>,
    secure_boot: Option<SecureBootKeys>,
    tpm: bool,
) -> Result<Verdict> {
    test_image_with(store, image, junit, secure_boot, tpm, false)
}

/// [`test_image`], with the boot's progress on the terminal when `progress`.
pub fn test_image_with(
    store: &crate::store::Store,
    image: &Path,
    junit: Option<PathBuf>,
    secure_boot: Option<SecureBootKeys>,
    tpm: bool,
    progress: bool,
) -> Result<Verdict> {
    if !image.is_file() {
        bail!(crate::util::error::InputError::file(
            image.display().to_string(),
            "no such file"
        ));
    }
    let digest = crate::util::digest::Digest::of_file(image)?;
    let manifest =
        crate::read::locate::require(store, image, &digest, "kiln test needs its [test] settings")?
            .manifest;
    if manifest.image.format != "raw" {
        bail!(crate::util::error::InputError::file(
            image.display().to_string(),
            format!(
                "a {} image cannot be booted: build with [disk] format = \"raw\"",
                manifest.image.format
            )
        ));
    }
    let Some(spec) = &manifest.test else {
        bail!(crate::util::error::InputError::file(
            image.display().to_string(),
            "the manifest carries no [test] settings"
        ));
    };
    let settings = TestSettings::from_spec(spec).context("test settings in the manifest")?;
    let label = format!("{} {}", manifest.name, manifest.version);
    let v = run(
        image,
        &label,
        &settings,
        &TestOptions {
            junit,
            console_log: None,
            progress,
            firmware_cache: Some(store.clone()),
            secure_boot,
            tpm: tpm.then(|| manifest.disk.as_ref().and_then(|d| d.pcr11_sha256.clone())),
        },
    )?;
    crate::store::verdict::record(store, &v)?;
    Ok(v)
}

/// Write `dest` whole or not at all: into a scratch directory beside it,
/// then renamed into place (a killed kiln leaves an announced scratch
/// directory, which the next run sweeps, never a half-written file).
fn write_whole(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let scratch = crate::util::scratch::ScratchDir::new_in(dir)?;
    let tmp = scratch.path().join("file");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming into {}", dest.display()))
}

pub use crate::vm::junit::junit_xml;

/// The console tail of a finished test, for failure reports.
pub fn console_tail(v: &Verdict) -> String {
    let text = v
        .console_log
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Ask the guest to power off (ACPI power button) through QMP.
fn qmp_powerdown(sock: &Path) -> Result<()> {
    let stream =
        UnixStream::connect(sock).with_context(|| format!("connecting to {}", sock.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    let mut read_msg = |want: &str| -> Result<serde_json::Value> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!(crate::env_err!("QMP closed the connection"));
            }
            let v: serde_json::Value =
                serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))?;
            if v.get("error").is_some() {
                bail!(crate::env_err!("QMP error: {}", v["error"]));
            }
            if v.get(want).is_some() {
                return Ok(v);
            }
        }
    };
    read_msg("QMP")?;
    w.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
    read_msg("return")?;
    w.write_all(b"{\"execute\":\"system_powerdown\"}\n")?;
    read_msg("return")?;
    Ok(())
}
