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
use crate::store::verdict::{
    CheckResult, CommandOutcome, ConsoleOutcome, ForbidOutcome, HttpOutcome, Outcome, Phases,
    SecureBootOutcome, ShutdownOutcome, Stop, TcpOutcome, Verdict, SCHEMA,
};
use crate::util::error::check_failed;
use crate::util::exec::CommandRunExt;
use crate::util::progress::Progress;
use crate::vm::console::Console;
use crate::vm::hostcheck;
use crate::vm::output;
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

/// Options for a test run.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Where to keep the console log (default: beside the image,
    /// `NAME.console.log`; capped, see `vm::console`).
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

/// The checks run so far, and the first failure.
#[derive(Default)]
struct Run {
    checks: Vec<CheckResult>,
    failed: Option<String>,
}

impl Run {
    fn record(&mut self, name: impl Into<String>, secs: f64, outcome: impl Into<Outcome>) {
        let check = CheckResult::new(name, secs, outcome);
        if !check.passed && self.failed.is_none() {
            self.failed = Some(check.name.clone());
        }
        self.checks.push(check);
    }

    /// Whether the steps still to come are run: not after a failure.
    fn going(&self) -> bool {
        self.failed.is_none()
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

/// A guest being watched: QEMU, its console, the boot phases seen so far,
/// and the first forbidden line.
struct Guest<'a> {
    settings: &'a TestSettings,
    vm: Vm,
    con: Console,
    phases: Phases,
    forbid_hit: Option<(String, String)>,
    /// OVMF's line refusing the image (Secure Boot boots only).
    refused: Option<String>,
    progress: Progress,
    interrupted: Arc<AtomicBool>,
    secure_boot: bool,
}

impl Guest<'_> {
    /// One step of watching the guest: read the console on, note phases,
    /// look for forbidden patterns. Returns why the test must stop, if it must.
    fn watch(&mut self) -> Option<Stop> {
        let lines = self.con.refresh();
        self.scan(lines);
        if let Some((pattern, _)) = &self.forbid_hit {
            return Some(Stop::Forbidden {
                pattern: pattern.clone(),
            });
        }
        if let Some(line) = &self.refused {
            return Some(Stop::FirmwareRefused { line: line.clone() });
        }
        if self.interrupted.load(Ordering::SeqCst) {
            return Some(Stop::Interrupted);
        }
        if self.con.secs() > self.settings.timeout as f64 {
            return Some(Stop::Timeout {
                secs: self.settings.timeout,
            });
        }
        if let Ok(Some(status)) = self.vm.child.try_wait() {
            return Some(Stop::GuestExited {
                status: status.to_string(),
            });
        }
        None
    }

    /// Note the boot phases and the first forbidden line in the console's
    /// new lines (`lines`, a range of its text).
    fn scan(&mut self, lines: std::ops::Range<usize>) {
        let now = self.con.secs();
        for line in self.con.text[lines].lines() {
            let phases = &mut self.phases;
            if phases.firmware.is_none() && line.contains("BdsDxe: starting") {
                phases.firmware = Some(now);
                self.progress.step("kernel");
            }
            if phases.kernel.is_none() && line.contains("kiln-init:") {
                phases.kernel = Some(now);
                self.progress.step("kiln-init: verity root");
            }
            if phases.init.is_none() && line.contains("kiln-init: exec") {
                phases.init = Some(now);
                self.progress.step("the image's init");
            }
            if self.secure_boot && self.refused.is_none() {
                self.refused = secure_boot_refusal(line).map(str::to_string);
            }
            if self.forbid_hit.is_none() {
                if let Some(re) = self.settings.forbid.iter().find(|re| re.is_match(line)) {
                    self.forbid_hit = Some((re.as_str().to_string(), line.trim().to_string()));
                }
            }
        }
    }

    /// The port forwarded to guest port `g` (0 when it is not forwarded:
    /// the recipe was validated, so it is).
    fn addr(forwards: &[(u16, u16)], g: u16) -> SocketAddr {
        let host = forwards
            .iter()
            .find(|(_, gp)| *gp == g)
            .map_or(0, |(h, _)| *h);
        SocketAddr::from(([127, 0, 0, 1], host))
    }
}

/// QEMU started on an image, and what the test learns beside the boot.
struct Booted<'a> {
    guest: Guest<'a>,
    /// Kept for QEMU's sockets, logs and the overlay until the test ends.
    scratch: qemu::Scratch,
    forwards: Vec<(u16, u16)>,
    console_path: PathBuf,
    qmp_path: PathBuf,
    accel: qemu::Accel,
    /// The image's digest and QEMU's version, taken while the firmware runs.
    host_side: std::thread::JoinHandle<(Result<String>, String)>,
    /// The software TPM, stopped with the guest.
    _swtpm: Option<Vm>,
}

/// Start QEMU on `image`: scratch, TPM, firmware variables, forwards.
fn boot<'a>(
    image: &Path,
    label: &str,
    settings: &'a TestSettings,
    opts: &TestOptions,
) -> Result<Booted<'a>> {
    let mut progress = if opts.progress {
        Progress::new(false)
    } else {
        Progress::hidden()
    };
    crate::vm::hostcheck::require_programs(settings)?;
    let mut scratch = qemu::prepare_with(image, opts.secure_boot.as_ref())?;
    // Stopped with the guest (it also ends when QEMU disconnects).
    let swtpm = match opts.tpm {
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
        progress.step("preparing the firmware variables (once per OVMF build)");
        let begin = Instant::now();
        let prepared = crate::vm::firmware::prepared_vars(cache, accel, settings.memory_mib);
        if begin.elapsed() < Duration::from_secs(1) {
            progress.clear();
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
    progress.step(format!("booting {label} ({}): firmware", accel.as_str()));
    Ok(Booted {
        guest: Guest {
            settings,
            vm: Vm { child },
            con: Console::new(console_path.clone()),
            phases: Phases::default(),
            forbid_hit: None,
            refused: None,
            progress,
            interrupted: interrupted().clone(),
            secure_boot: opts.secure_boot.is_some(),
        },
        scratch,
        forwards,
        console_path,
        qmp_path,
        accel,
        host_side,
        _swtpm: swtpm,
    })
}

/// Step 1: console patterns, in order, each within its own timeout.
fn console_patterns(g: &mut Guest, run: &mut Run) {
    let mut searched_from = 0usize;
    let mut searched_len = None;
    let settings = g.settings;
    'console: for (i, c) in settings.console.iter().enumerate() {
        let name = console_check_name(i, c.pattern.as_str());
        let begin = g.con.secs();
        let deadline = Instant::now() + Duration::from_secs(c.timeout);
        loop {
            let stop = g.watch();
            // Searched again only when the console grew.
            if searched_len != Some(g.con.text.len()) {
                searched_len = Some(g.con.text.len());
                let rest = &g.con.text[searched_from.min(g.con.text.len())..];
                if let Some(m) = c.pattern.find(rest) {
                    searched_from += m.end();
                    searched_len = None;
                    let secs = g.con.secs();
                    let after_secs = secs - begin;
                    run.record(name, secs, ConsoleOutcome::Seen { after_secs });
                    continue 'console;
                }
            }
            if let Some(stop) = stop {
                run.record(name, g.con.secs(), ConsoleOutcome::Stopped { stop });
                break 'console;
            }
            if Instant::now() > deadline {
                let timeout = c.timeout;
                run.record(name, g.con.secs(), ConsoleOutcome::NotSeen { timeout });
                break 'console;
            }
            std::thread::sleep(POLL);
        }
    }
    if run.going() {
        g.phases.ready = Some(g.con.secs());
        g.progress.step("probes and commands");
    }
}

/// Step 2: probes through the port forwards: TCP, then HTTP.
fn probes(g: &mut Guest, forwards: &[(u16, u16)], run: &mut Run) -> Result<()> {
    let settings = g.settings;
    for (i, t) in settings.tcp.iter().enumerate() {
        if !run.going() {
            return Ok(());
        }
        let addr = Guest::addr(forwards, t.port);
        // Validated when the recipe was read.
        let expect = t
            .expect
            .as_deref()
            .map(|e| RegexBuilder::new(e).multi_line(true).build())
            .transpose()?;
        let p = probe(
            t.timeout,
            || g.watch(),
            || match &expect {
                Some(re) => hostcheck::tcp_exchange(addr, t.send.as_deref(), re),
                None => tcp_accepts(addr),
            },
        );
        let (port, host_port, timeout) = (t.port, addr.port(), t.timeout);
        let outcome = match (p.ok, p.stopped, &t.expect) {
            (true, _, Some(e)) => TcpOutcome::Replies {
                port,
                host_port,
                expect: e.clone(),
            },
            (true, _, None) => TcpOutcome::Accepts { port, host_port },
            (false, Some(stop), _) => TcpOutcome::Stopped { timeout, stop },
            (false, None, _) => TcpOutcome::NoConnection {
                timeout,
                last: p.last,
            },
        };
        run.record(format!("tcp[{i}] :{}", t.port), p.secs, outcome);
    }
    for (i, h) in settings.http.iter().enumerate() {
        if !run.going() {
            return Ok(());
        }
        let addr = Guest::addr(forwards, h.port);
        let p = probe(h.timeout, || g.watch(), || http_answers(addr, h));
        let timeout = h.timeout;
        let outcome = match (p.ok, p.stopped) {
            (true, _) => HttpOutcome::Answered { status: h.status },
            (false, Some(stop)) => HttpOutcome::Stopped { timeout, stop },
            (false, None) => HttpOutcome::NoAnswer {
                timeout,
                last: p.last,
            },
        };
        run.record(
            format!("http[{i}] GET :{}{}", h.port, h.path),
            p.secs,
            outcome,
        );
    }
    Ok(())
}

/// Step 3: the recipe's programs, run on the host against the forwards.
fn commands(g: &mut Guest, b: &CommandSite, run: &mut Run) {
    let subst = hostcheck::Substitutions {
        forwards: b.forwards,
        image: std::fs::canonicalize(b.image).unwrap_or_else(|_| b.image.to_path_buf()),
        console_log: std::path::absolute(b.console_path).unwrap_or(b.console_path.to_path_buf()),
    };
    let settings = g.settings;
    for (i, c) in settings.command.iter().enumerate() {
        if !run.going() {
            return;
        }
        let begin = Instant::now();
        let outcome = match subst.argv(&c.argv) {
            Ok(argv) => hostcheck::run_with_retries(c, &argv, b.dir, || g.watch()),
            Err(detail) => CommandOutcome::Failed { detail },
        };
        run.record(c.name(i), begin.elapsed().as_secs_f64(), outcome);
    }
}

/// Where the recipe's programs run and what their placeholders stand for.
struct CommandSite<'a> {
    image: &'a Path,
    forwards: &'a [(u16, u16)],
    console_path: &'a Path,
    dir: &'a Path,
}

/// Step 4: clean shutdown: the ACPI power button through QMP; the guest must
/// power off within `timeout` seconds.
fn shutdown(g: &mut Guest, qmp_path: &Path, timeout: u64, run: &mut Run) {
    g.progress.step("ACPI power-off");
    let begin = Instant::now();
    let outcome = match qmp_powerdown(qmp_path) {
        Err(e) => ShutdownOutcome::Qmp {
            error: format!("{e:#}"),
        },
        // A guest that reached its ready line may not have bound its power
        // button yet (udev loads the ACPI button driver in parallel, later
        // on a loaded host): the press is lost, so it is repeated, as a
        // person would, until the guest reacts.
        Ok(()) => {
            let mut pressed = Instant::now();
            loop {
                if pressed.elapsed() >= POWER_BUTTON_REPEAT {
                    pressed = Instant::now();
                    if let Err(e) = qmp_powerdown(qmp_path) {
                        tracing::debug!("pressing the power button again: {e:#}");
                    }
                }
                match g.watch() {
                    Some(Stop::GuestExited { status }) => {
                        break ShutdownOutcome::PoweredOff { status }
                    }
                    Some(stop) => break ShutdownOutcome::Stopped { stop },
                    None => {}
                }
                if begin.elapsed() > Duration::from_secs(timeout) {
                    break ShutdownOutcome::StillRunning { timeout };
                }
                std::thread::sleep(POLL);
            }
        }
    };
    run.record("shutdown", begin.elapsed().as_secs_f64(), outcome);
}

/// Step 5: what is judged over the whole console once the guest is stopped:
/// forbidden patterns, the measured PCR 11, Secure Boot; then why the boot
/// stopped early, if it did. A forbidden pattern, a firmware refusal and
/// the overall timeout each become the failing check, whatever check was
/// waiting then.
fn judge_console(g: &mut Guest, tpm: &Option<Option<String>>, run: &mut Run) -> Result<()> {
    let lines = g.con.finish();
    g.scan(lines);
    g.progress.finish(None);
    let secs = g.con.secs();
    match g.forbid_hit.clone() {
        Some((pattern, line)) => {
            let name = format!("forbid /{pattern}/");
            run.record(name.clone(), secs, ForbidOutcome::Seen { pattern, line });
            run.failed = Some(name);
        }
        None => {
            let patterns = g.settings.forbid.len();
            let name = format!("forbid ({patterns} patterns)");
            run.record(name, secs, ForbidOutcome::NoneSeen { patterns });
        }
    }
    if let Some(predicted) = tpm {
        run.record(
            PCR11_CHECK,
            secs,
            pcr11_outcome(&g.con.text, predicted.as_deref()),
        );
    }
    if g.secure_boot {
        let outcome = secure_boot_outcome(&g.con.text);
        let refused = matches!(outcome, SecureBootOutcome::Refused { .. });
        run.record(SECURE_BOOT_CHECK, secs, outcome);
        if refused {
            run.failed = Some(SECURE_BOOT_CHECK.into());
        }
    }
    // Why the boot stopped, as the steps saw it.
    let stopped = run.checks.iter().find_map(|c| match &c.outcome {
        Some(
            Outcome::Console(ConsoleOutcome::Stopped { stop })
            | Outcome::Tcp(TcpOutcome::Stopped { stop, .. })
            | Outcome::Http(HttpOutcome::Stopped { stop, .. })
            | Outcome::Command(CommandOutcome::Stopped { stop })
            | Outcome::Shutdown(ShutdownOutcome::Stopped { stop }),
        ) => Some(stop.clone()),
        _ => None,
    });
    match stopped {
        Some(stop @ Stop::Timeout { .. }) => {
            run.record("timeout", secs, stop);
            run.failed = Some("timeout".into());
        }
        Some(Stop::Interrupted) => bail!(crate::env_err!(
            "interrupted: QEMU stopped, nothing recorded"
        )),
        _ => {}
    }
    Ok(())
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
    // Checked before the boot: a directory kiln cannot write to must not
    // cost the verdict after it.
    let log_dest = output::console_log_dest(image, opts.console_log.clone());
    let mut b = boot(image, image_label, settings, opts)?;
    let guest = &mut b.guest;
    let mut run = Run::default();
    console_patterns(guest, &mut run);
    probes(guest, &b.forwards, &mut run)?;
    let site = CommandSite {
        image,
        forwards: &b.forwards,
        console_path: &b.console_path,
        dir: b.scratch.dir.path(),
    };
    commands(guest, &site, &mut run);
    if let (true, Some(timeout)) = (run.going(), settings.shutdown_timeout) {
        shutdown(guest, &b.qmp_path, timeout, &mut run);
    }
    judge_console(guest, &opts.tpm, &mut run)?;
    let Guest {
        vm, con, phases, ..
    } = b.guest;
    drop(vm);
    drop(b._swtpm);
    drop(b.scratch);

    let (digest_before, qemu_version) = b
        .host_side
        .join()
        .map_err(|_| crate::internal_err!("hashing {} failed", image.display()))?;
    let digest_before = digest_before?;
    let digest_after = crate::util::digest::file_digest(image)?;
    if digest_after != digest_before {
        bail!(check_failed(format!(
            "{} changed during the test ({digest_before} → {digest_after})",
            image.display()
        )));
    }
    let secure_boot = opts.secure_boot.is_some();
    Ok(Verdict {
        schema: SCHEMA.into(),
        image_digest: digest_before.parse()?,
        image: image_label.to_string(),
        passed: run.failed.is_none(),
        failed_check: run.failed,
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
        accel: b.accel.as_str().into(),
        started_at,
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        console_log: output::keep_console_log(log_dest, &con.kept()),
        secure_boot,
    })
}

/// `kiln test IMAGE`: read the image's manifest ([`crate::read::locate`])
/// for its name and test settings, run the test, record the verdict in the
/// store.
pub fn test_image(
    store: &crate::store::Store,
    image: &Path,
    secure_boot: Option<SecureBootKeys>,
    tpm: bool,
) -> Result<Verdict> {
    test_image_with(store, image, secure_boot, tpm, false)
}

/// [`test_image`], with the boot's progress on the terminal when `progress`.
pub fn test_image_with(
    store: &crate::store::Store,
    image: &Path,
    secure_boot: Option<SecureBootKeys>,
    tpm: bool,
    progress: bool,
) -> Result<Verdict> {
    crate::read::locate::regular_file(image)?;
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
            console_log: None,
            progress,
            firmware_cache: Some(store.clone()),
            secure_boot,
            tpm: tpm.then(|| {
                manifest
                    .disk
                    .as_ref()
                    .and_then(|d| d.pcr11_sha256.map(|p| p.to_string()))
            }),
        },
    )?;
    crate::store::verdict::record(store, &v)?;
    Ok(v)
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
