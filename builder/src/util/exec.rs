//! The one wrapper for external programs (mmdebstrap, qemu, apt, qemu-img…).
//!
//! Argument vectors, never shell strings; stdin closed; the command logged at
//! debug level; on failure the error carries the exit status and the tail of
//! stderr. A program that is not installed is an [`EnvError`] naming the
//! Debian package that provides it.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Result;

use crate::util::error::EnvError;

/// How many bytes of stderr an error message keeps.
const STDERR_TAIL: usize = 2000;

/// The Debian package that provides a program kiln runs.
pub fn package_for(program: &str) -> &'static str {
    match program {
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
        "objcopy" | "objdump" => "binutils",
        "zstd" => "zstd",
        "tar" => "tar",
        "cpio" => "cpio",
        "chroot" => "coreutils",
        _ => "(unknown package)",
    }
}

/// A command to run: the program and its arguments.
#[derive(Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    env_removes: Vec<String>,
    clear_env: bool,
    cwd: Option<std::path::PathBuf>,
}

/// What a finished command produced.
#[derive(Debug)]
pub struct Output {
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Cmd {
    /// A command running `program`.
    pub fn new(program: &str) -> Self {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            envs: Vec::new(),
            env_removes: Vec::new(),
            clear_env: false,
            cwd: None,
        }
    }

    /// Append one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Set an environment variable for the child.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.envs.push((key.to_string(), value.into()));
        self
    }

    /// Keep a variable of kiln's environment from the child.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_removes.push(key.to_string());
        self
    }

    /// Start the child with an empty environment (then only [`Cmd::env`]'s
    /// variables), so that nothing of the host's environment reaches it.
    pub fn clear_env(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Run in this directory.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// The command line, shell-quoted, for logs and messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c))
                {
                    format!("'{}'", a.replace('\'', r"'\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).stdin(Stdio::null());
        if self.clear_env {
            c.env_clear();
        }
        for k in &self.env_removes {
            c.env_remove(k);
        }
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c
    }

    /// Run to completion, capturing stdout and stderr. A non-zero exit is an
    /// error holding the status and the tail of stderr.
    pub fn run(&self) -> Result<Output> {
        tracing::debug!(command = %self.display(), "running");
        let out = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            anyhow::bail!(
                "`{}` failed ({}):\n{}",
                self.display(),
                out.status,
                stderr_tail(&out.stderr)
            );
        }
        Ok(Output {
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn spawn_error(&self, e: std::io::Error) -> anyhow::Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            EnvError::new(format!(
                "`{}` is not installed: install the Debian package `{}` (or run scripts/setup-host.sh)",
                self.program,
                package_for(&self.program)
            ))
            .into()
        } else {
            anyhow::Error::new(e).context(format!("cannot start `{}`", self.display()))
        }
    }
}

/// Whether a program can be found on `PATH`.
pub fn have_program(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
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

    #[test]
    fn missing_program_is_environment_error_naming_package() {
        let err = Cmd::new("mmdebstrap-does-not-exist").run().unwrap_err();
        assert_eq!(exit_code(&err), EXIT_ENVIRONMENT);
        assert!(err.to_string().contains("not installed"), "{err}");
    }

    #[test]
    fn failure_carries_stderr_tail() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("boom") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn display_quotes() {
        assert_eq!(
            Cmd::new("echo").args(["a b", "c"]).display(),
            "echo 'a b' c"
        );
    }
}
