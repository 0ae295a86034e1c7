//! The one way kiln runs external programs (mmdebstrap, apt in its chroot,
//! qemu, qemu-img, a second kiln): [`CommandRunExt`], an extension trait on
//! [`std::process::Command`] after containers/bootc's `CommandRunExt`, so
//! every std option (environment, working directory, stdio, process group)
//! stays available and arguments stay [`OsStr`]s, passed on byte for byte.
//!
//! Every child started through the trait
//! - is logged at debug level, its command line shell-quoted;
//! - inherits none of kiln's secrets ([`is_secret`]): signing and registry
//!   passwords never reach mmdebstrap, apt or a maintainer script;
//! - when its program is not installed, fails with an [`EnvError`] (exit 3)
//!   naming the Debian package that provides it ([`package_for`]);
//! - when it exits unsuccessfully, fails with a [`CommandFailed`] holding its
//!   command line, exit status and the tail of its stderr.
//!
//! Children that run long (QEMU, mmdebstrap, the apt chroot, the builds of a
//! reproducibility check) are bound to kiln's life with
//! [`CommandRunExt::lifecycle_bind`] (Linux's parent-death signal,
//! prctl(2) `PR_SET_PDEATHSIG`), so that a killed kiln leaves none behind.
//! That signal reaches the child alone; a child whose own children must die
//! with it too (mmdebstrap) is started through [`whole_tree`], which makes it
//! the init of a PID namespace of its own.
//!
//! This module also holds kiln's one `PATH` search ([`find_program`]) and its
//! one POSIX shell quoting ([`shell_quote`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use anyhow::Result;

use crate::util::error::EnvError;

/// How many bytes of stderr an error message keeps.
const STDERR_TAIL: usize = 2000;

/// Where programs are looked for after `PATH`: the system directories, so
/// that a user whose `PATH` lacks the `sbin` ones still finds `mkfs.ext4`.
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The Debian package that provides a program kiln (or its tests) runs.
pub fn package_for(program: &str) -> Option<&'static str> {
    Some(match program {
        "mmdebstrap" => "mmdebstrap",
        "qemu-system-x86_64" => "qemu-system-x86",
        "qemu-img" => "qemu-utils",
        "veritysetup" => "cryptsetup-bin",
        "e2fsck" | "mkfs.ext4" | "debugfs" => "e2fsprogs",
        "fsck.vfat" | "mkfs.vfat" => "dosfstools",
        "mcopy" | "mdir" => "mtools",
        "minisign" => "minisign",
        "skopeo" => "skopeo",
        "sfdisk" => "fdisk",
        "sgdisk" => "gdisk",
        "objcopy" | "objdump" => "binutils",
        "zstd" => "zstd",
        "tar" => "tar",
        "cpio" => "cpio",
        "chroot" | "du" | "env" | "printf" | "sleep" | "true" => "coreutils",
        "unshare" => "util-linux",
        "sh" => "dash",
        "python3" => "python3",
        "systemd-dissect" => "systemd-container",
        // Clients a recipe's `[[test.command]]` may run against a guest.
        "curl" => "curl",
        "wget" => "wget",
        "redis-cli" => "redis-tools",
        "psql" | "pg_isready" => "postgresql-client",
        "mysql" | "mariadb" | "mysqladmin" => "mariadb-client",
        "nc" => "netcat-openbsd",
        "socat" => "socat",
        "dig" | "nslookup" | "host" => "bind9-dnsutils",
        "ssh" | "ssh-keyscan" => "openssh-client",
        "openssl" => "openssl",
        "jq" => "jq",
        "ldapsearch" => "ldap-utils",
        "snmpget" | "snmpwalk" => "snmp",
        "mosquitto_pub" | "mosquitto_sub" => "mosquitto-clients",
        "http" => "httpie",
        "nmap" => "nmap",
        _ => return None,
    })
}

/// Whether an environment variable of kiln's holds a secret that no child
/// may inherit: `KILN_KEY_PASSWORD`, `KILN_REGISTRY_PASSWORD`, and any other
/// `KILN_*` variable whose name says password, token or secret.
pub fn is_secret(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.starts_with("KILN_")
        && ["PASSWORD", "TOKEN", "SECRET"]
            .iter()
            .any(|w| name.contains(w))
}

/// Where `program` is found: itself when it names a path, else the first
/// executable file of that name in a `PATH` directory or, after those, in
/// the system directories ([`SYSTEM_DIRS`]).
pub fn find_program(program: &str) -> Option<PathBuf> {
    search(program, &SYSTEM_DIRS)
}

/// [`find_program`] with `also` searched after `PATH`.
fn search(program: &str, also: &[&str]) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// Whether `program` can be found ([`find_program`]).
pub fn have_program(program: &str) -> bool {
    find_program(program).is_some()
}

/// `program`'s path, or an [`EnvError`] naming the package to install.
pub fn require_program(program: &str) -> Result<PathBuf> {
    find_program(program).ok_or_else(|| not_installed(program).into())
}

fn not_installed(program: &str) -> EnvError {
    let name = Path::new(program)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or(program);
    let install = match package_for(name) {
        Some(p) => format!("install the Debian package `{p}`"),
        None => "install the Debian package that provides it".to_string(),
    };
    EnvError::new(format!(
        "`{program}` is not installed: {install} (or run scripts/setup-host.sh)"
    ))
}

/// The `unshare(1)` options (util-linux) under which [`whole_tree`] runs a
/// program: as the init of a new PID namespace (`--pid --fork`), SIGKILLed
/// when `unshare` dies (`--kill-child`), in a mount namespace of its own
/// whose mounts never reach the host (`--mount`: propagation private).
const WHOLE_TREE: [&str; 5] = ["--pid", "--mount", "--fork", "--kill-child", "--"];

/// A command running `program` (looked up on `PATH`, as [`Command::new`]
/// would) so that, once bound with [`CommandRunExt::lifecycle_bind`], its
/// whole process tree dies with kiln, not only the program itself.
///
/// The parent-death signal reaches the direct child alone: what mmdebstrap
/// forks (a second mmdebstrap, apt-get and its download methods, dpkg-deb,
/// tar) would run on after kiln's death, unpacking into a directory nobody
/// removes. Where kiln may make namespaces (as root), the program runs under
/// `unshare` ([`WHOLE_TREE`]): kiln's death kills `unshare`, which kills the
/// program, whose death as the namespace's init makes the kernel kill every
/// other process in the namespace; whatever they mounted goes with their
/// mount namespace. Where it may not (no privileges, no `unshare`), the
/// program runs as it is, bound alone; so does it when kiln runs under an
/// `LD_PRELOAD` shim such as libfaketime, which breaks apt under unshare.
///
/// A `program` missing from `PATH` is an [`EnvError`] naming its package,
/// as it would be from a plain [`Command`].
pub fn whole_tree(program: &str) -> Result<Command> {
    let path = search(program, &[]).ok_or_else(|| not_installed(program))?;
    // A preloaded shim (libfaketime, as `--check-reproducible` and the
    // reproducibility tests use) breaks under unshare: apt's gpgv then
    // rejects the archive's signatures. Such runs keep the plain binding.
    let shimmed = std::env::var_os("LD_PRELOAD").is_some_and(|v| !v.is_empty());
    Ok(match namespace_runner().filter(|_| !shimmed) {
        Some(unshare) => {
            let mut c = Command::new(unshare);
            c.args(WHOLE_TREE).arg(path);
            c
        }
        None => Command::new(path),
    })
}

/// `unshare`, when it can run a program under [`WHOLE_TREE`] here (tried
/// once per process).
fn namespace_runner() -> Option<&'static Path> {
    static RUNNER: OnceLock<Option<PathBuf>> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            let unshare = find_program("unshare")?;
            let probe = find_program("true")?;
            let usable = Command::new(&unshare)
                .args(WHOLE_TREE)
                .arg(probe)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !usable {
                tracing::debug!(
                    "`unshare` cannot make PID and mount namespaces here: a long-running \
                     child is bound to kiln alone, without what it starts"
                );
            }
            usable.then_some(unshare)
        })
        .as_deref()
}

/// `word` quoted for a POSIX shell: in single quotes, each `'` written `'\''`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `word` as a shell would need it: bare when it holds only characters no
/// shell treats specially, else [`shell_quote`]d. For logs and messages.
fn shell_word(word: &OsStr) -> String {
    let plain = !word.is_empty()
        && word
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(b));
    let text = word.to_string_lossy();
    if plain {
        text.into_owned()
    } else {
        shell_quote(&text)
    }
}

/// A command that ran and exited unsuccessfully. Left unclassified (so exit
/// 3, an environment problem, unless a caller that knows better returns its
/// own class): the input was valid, the tool or the host failed.
#[derive(Debug)]
pub struct CommandFailed {
    /// The command line, shell-quoted.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// The last [`STDERR_TAIL`] bytes of its stderr (empty when not captured).
    pub stderr: String,
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed ({})", self.command, self.status)?;
        if !self.stderr.is_empty() {
            write!(f, ":\n{}", self.stderr)?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandFailed {}

/// Running a [`Command`] the way kiln runs every program (see the module
/// documentation): argv, never a shell string; stdin closed unless said
/// otherwise; secrets withheld; failures named.
pub trait CommandRunExt {
    /// Kill the child (SIGKILL) when kiln dies, for a child that runs long.
    ///
    /// The signal comes when the *thread* that started the child ends, not
    /// the process: a bound child must be waited for by the thread that
    /// started it (every `run*` method does; keep a [`Child`] from
    /// [`CommandRunExt::spawn_bound`] on its thread). Only the child itself
    /// is bound, not what it starts (a command from [`whole_tree`] takes its
    /// descendants along): whatever a maintainer script leaves running in
    /// the apt chroot is killed by the chroot's own clean-up.
    fn lifecycle_bind(&mut self) -> &mut Self;

    /// Run to completion with stdin closed and stdout and stderr captured;
    /// an unsuccessful exit is a [`CommandFailed`].
    fn run(&mut self) -> Result<()>;

    /// [`CommandRunExt::run`], returning what the child wrote to stdout.
    fn run_get_output(&mut self) -> Result<Vec<u8>>;

    /// [`CommandRunExt::run_get_output`] as UTF-8 text.
    fn run_get_string(&mut self) -> Result<String>;

    /// Run to completion on kiln's own terminal (stdin, stdout and stderr
    /// inherited), as `kiln boot` runs QEMU.
    fn run_interactive(&mut self) -> Result<()>;

    /// Start a long-lived child, bound to kiln's life
    /// ([`CommandRunExt::lifecycle_bind`]), with the stdio the caller set
    /// (set stdin, which std otherwise inherits). The caller waits for it.
    fn spawn_bound(&mut self) -> Result<Child>;

    /// The command line, shell-quoted, for logs and messages.
    fn command_line(&self) -> String;
}

impl CommandRunExt for Command {
    #[allow(unsafe_code)]
    fn lifecycle_bind(&mut self) -> &mut Self {
        let parent = nix::unistd::getpid();
        // SAFETY: the hook runs in the forked child before exec, where only
        // async-signal-safe calls are allowed. It makes two system calls,
        // prctl(2) and getppid(2), both async-signal-safe, through nix
        // wrappers that neither allocate nor take locks, and builds an
        // io::Error from a raw errno (no allocation either).
        unsafe {
            self.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // kiln may have died between fork and prctl; then the signal
                // will never come, so do not start the program.
                if nix::unistd::getppid() != parent {
                    return Err(nix::errno::Errno::ESRCH.into());
                }
                Ok(())
            })
        }
    }

    fn run(&mut self) -> Result<()> {
        self.run_get_output().map(drop)
    }

    fn run_get_output(&mut self) -> Result<Vec<u8>> {
        self.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        prepare(self);
        let out = self.output().map_err(|e| spawn_error(self, e))?;
        if !out.status.success() {
            return Err(CommandFailed {
                command: self.command_line(),
                status: out.status,
                stderr: stderr_tail(&out.stderr),
            }
            .into());
        }
        Ok(out.stdout)
    }

    fn run_get_string(&mut self) -> Result<String> {
        let out = self.run_get_output()?;
        String::from_utf8(out)
            .map_err(|e| crate::env_err!("`{}` wrote non-UTF-8 output: {e}", self.command_line()))
    }

    fn run_interactive(&mut self) -> Result<()> {
        self.stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        prepare(self);
        let status = self.status().map_err(|e| spawn_error(self, e))?;
        if !status.success() {
            return Err(CommandFailed {
                command: self.command_line(),
                status,
                stderr: String::new(),
            }
            .into());
        }
        Ok(())
    }

    fn spawn_bound(&mut self) -> Result<Child> {
        self.lifecycle_bind();
        prepare(self);
        self.spawn().map_err(|e| spawn_error(self, e))
    }

    fn command_line(&self) -> String {
        std::iter::once(self.get_program())
            .chain(self.get_args())
            .map(shell_word)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What every start does: withhold kiln's secrets, log the command line.
fn prepare(cmd: &mut Command) {
    withhold_secrets(cmd, std::env::vars_os().map(|(k, _)| k));
    tracing::debug!(command = %cmd.command_line(), "running");
}

/// Remove every secret variable from the child's environment: those it
/// would inherit (`inherited`, kiln's own variable names) and those set on
/// the command.
fn withhold_secrets(cmd: &mut Command, inherited: impl Iterator<Item = OsString>) {
    let set: Vec<OsString> = cmd.get_envs().map(|(k, _)| k.to_os_string()).collect();
    for key in inherited.chain(set) {
        if is_secret(&key) {
            cmd.env_remove(key);
        }
    }
}

/// The error for a child that could not be started: a missing program is an
/// [`EnvError`] naming its package.
fn spawn_error(cmd: &Command, e: std::io::Error) -> anyhow::Error {
    // ENOENT also comes from a missing working directory: only then is it
    // not the program that is missing.
    let cwd_missing = cmd.get_current_dir().is_some_and(|d| !d.is_dir());
    if e.kind() == std::io::ErrorKind::NotFound && !cwd_missing {
        not_installed(&cmd.get_program().to_string_lossy()).into()
    } else {
        anyhow::Error::new(e).context(format!("cannot start `{}`", cmd.command_line()))
    }
}

/// The last [`STDERR_TAIL`] bytes of a program's stderr, as text.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&stderr[start..])
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::error::{exit_code, EXIT_ENVIRONMENT};
    use std::time::{Duration, Instant};

    #[test]
    fn missing_program_is_environment_error_naming_package() {
        let err = Command::new("mmdebstrap-does-not-exist").run().unwrap_err();
        assert_eq!(exit_code(&err), EXIT_ENVIRONMENT);
        assert!(err.to_string().contains("not installed"), "{err}");
        let err = Command::new("/nonexistent/qemu-img")
            .arg("info")
            .run()
            .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_ENVIRONMENT);
        assert!(
            err.to_string().contains("Debian package `qemu-utils`"),
            "{err}"
        );
    }

    #[test]
    fn program_off_the_childs_path_is_not_installed() {
        // std looks the program up on the child's PATH, as kiln's tests do
        // when they hide mmdebstrap.
        let err = Command::new("mmdebstrap")
            .env("PATH", "/nonexistent")
            .run()
            .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_ENVIRONMENT);
        assert!(
            err.to_string().contains("Debian package `mmdebstrap`"),
            "{err}"
        );
    }

    #[test]
    fn missing_working_directory_is_not_a_missing_program() {
        let err = Command::new("sh")
            .current_dir("/nonexistent-kiln-dir")
            .run()
            .unwrap_err();
        assert!(!err.to_string().contains("not installed"), "{err:#}");
    }

    #[test]
    fn failure_carries_command_status_and_stderr_tail() {
        let err = Command::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("boom") && msg.contains("exit status: 3") && msg.contains("'echo boom"),
            "{msg}"
        );
        let failed = err.downcast_ref::<CommandFailed>().unwrap();
        assert_eq!(failed.stderr, "boom");
        assert_eq!(failed.status.code(), Some(3));
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let long = format!("{}END\n", "x".repeat(5000));
        let tail = stderr_tail(long.as_bytes());
        assert_eq!(tail.len(), STDERR_TAIL - 1);
        assert!(tail.ends_with("xEND"));
    }

    #[test]
    fn non_utf8_argument_passes_intact() {
        let arg = OsStr::from_bytes(b"a\xff\xfeb c");
        let out = Command::new("printf")
            .arg("%s")
            .arg(arg)
            .run_get_output()
            .unwrap();
        assert_eq!(out, b"a\xff\xfeb c");
    }

    #[test]
    fn run_get_string_reads_stdout() {
        let out = Command::new("printf").arg("hi").run_get_string().unwrap();
        assert_eq!(out, "hi");
    }

    #[test]
    fn secrets_table() {
        for (name, secret) in [
            ("KILN_KEY_PASSWORD", true),
            ("KILN_REGISTRY_PASSWORD", true),
            ("KILN_REGISTRY_TOKEN", true),
            ("KILN_SOME_SECRET", true),
            ("KILN_REGISTRY_USERNAME", false),
            ("KILN_STORE", false),
            ("PASSWORD", false),
            ("SOURCE_DATE_EPOCH", false),
        ] {
            assert_eq!(is_secret(OsStr::new(name)), secret, "{name}");
        }
    }

    #[test]
    fn secrets_are_withheld_from_children() {
        // Inherited: kiln's environment, given here rather than set (tests
        // run in parallel and share one environment).
        let mut cmd = Command::new("env");
        withhold_secrets(
            &mut cmd,
            ["KILN_KEY_PASSWORD", "KILN_STORE", "HOME"]
                .into_iter()
                .map(OsString::from),
        );
        let removed: Vec<&OsStr> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(removed, [OsStr::new("KILN_KEY_PASSWORD")]);
        // Set on the command, then run: the child sees none.
        let out = Command::new("env")
            .env("KILN_REGISTRY_PASSWORD", "hunter2")
            .env("KILN_KEY_PASSWORD", "hunter2")
            .env("KILN_VISIBLE", "yes")
            .run_get_string()
            .unwrap();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("KILN_VISIBLE=yes"), "{out}");
    }

    #[test]
    fn bound_child_dies_with_the_thread_that_started_it() {
        let mut child = std::thread::spawn(|| {
            Command::new("sleep")
                .arg("30")
                .stdin(Stdio::null())
                .spawn_bound()
                .unwrap()
        })
        .join()
        .unwrap();
        assert_killed_by_the_thread(&mut child);
    }

    /// `child` dies of SIGKILL within 20 s (generous: the parent-death
    /// signal is sent as the thread that started it exits).
    fn assert_killed_by_the_thread(child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the bound child outlived the thread that started it");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(nix::libc::SIGKILL), "{status}");
    }

    /// Processes whose command line is exactly `argv`.
    fn processes(argv: &[&str]) -> Vec<u32> {
        let want: Vec<u8> = argv
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse().ok()?;
                (std::fs::read(e.path().join("cmdline")).ok()? == want).then_some(pid)
            })
            .collect()
    }

    #[test]
    fn whole_tree_takes_the_grandchildren_along() {
        // A grandchild no parent-death signal reaches: `sleep` under `sh`.
        let marker = format!("3600.{}", std::process::id());
        let script = format!("sleep {marker} & wait");
        let started = marker.clone();
        let (mut child, namespaced) = std::thread::spawn(move || {
            let mut command = whole_tree("sh").unwrap();
            let namespaced = Some(Path::new(command.get_program())) == namespace_runner();
            let child = command
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn_bound()
                .unwrap();
            // The thread ends (and the signal comes) once sleep is running.
            let deadline = Instant::now() + Duration::from_secs(20);
            while processes(&["sleep", &started]).is_empty() {
                assert!(Instant::now() < deadline, "sleep never started");
                std::thread::sleep(Duration::from_millis(20));
            }
            (child, namespaced)
        })
        .join()
        .unwrap();
        // Either way the child itself dies with the thread that bound it.
        assert_killed_by_the_thread(&mut child);
        let left = processes(&["sleep", &marker]);
        if namespaced {
            // The namespace's init died: the kernel kills the rest.
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut left = left;
            while !left.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                left = processes(&["sleep", &marker]);
            }
            assert!(left.is_empty(), "sleep {marker} outlived kiln: {left:?}");
        } else {
            // Unprivileged (no namespaces): the program runs bound alone, as
            // `whole_tree` documents, so its grandchild is still running.
            for &pid in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            assert!(
                !left.is_empty(),
                "without namespaces the grandchild was expected to outlive its parent"
            );
        }
    }

    #[test]
    fn whole_tree_of_a_missing_program_names_its_package() {
        let err = whole_tree("kiln-no-such-program").unwrap_err();
        assert_eq!(exit_code(&err), EXIT_ENVIRONMENT);
        assert!(err.to_string().contains("not installed"), "{err}");
    }

    #[test]
    fn command_line_quotes() {
        let mut c = Command::new("echo");
        c.args(["a b", "c", "it's", ""]);
        assert_eq!(c.command_line(), r"echo 'a b' c 'it'\''s' ''");
    }

    #[test]
    fn shell_quote_round_trips_through_sh() {
        let word = "a 'b' $HOME `x` \\ \"c\"";
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(word)))
            .run_get_string()
            .unwrap();
        assert_eq!(out, word);
    }

    #[test]
    fn finds_programs_on_path_and_in_system_dirs() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("kiln-no-such-program").is_none());
        assert!(require_program("kiln-no-such-program").is_err());
    }
}
