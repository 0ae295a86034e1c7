//! The checks `kiln test` runs from the host against a booted guest beyond
//! connecting: a TCP exchange (`[[test.tcp]]` with `send`/`expect`) and a
//! program of the recipe's (`[[test.command]]`), run with its placeholders
//! expanded, judged by its exit status and output, killed with everything
//! it started when its time is up. Neither touches the image: a command
//! gets its path (`{image}`) to read, the boot runs on an overlay, and the
//! image's digest is compared before and after the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use regex::Regex;

use crate::model::checks::{expand, CommandCheck, Placeholder, TestSettings};
use crate::store::verdict::{CommandOutcome, Stop};
use crate::util::exec::CommandRunExt;

/// How much of a reply or of a command's output is kept to match against.
const KEEP_BYTES: usize = 1 << 20;
/// How much of a reply or of a command's output a report quotes.
const QUOTE_BYTES: usize = 400;
/// How long a TCP exchange waits for the reply to match.
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// The pause between a failed command's attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Every program the recipe's commands run is installed: checked before the
/// boot, so a missing client is exit 3 naming its Debian package (where
/// kiln knows it, [`crate::util::exec::package_for`]) and costs no boot.
pub fn require_programs(settings: &TestSettings) -> Result<()> {
    for c in &settings.command {
        if let Some(p) = c.argv.first() {
            crate::util::exec::require_program(p)?;
        }
    }
    Ok(())
}

/// What a command's placeholders stand for in one boot.
pub struct Substitutions<'a> {
    /// (host port, guest port) forwards.
    pub forwards: &'a [(u16, u16)],
    /// The image file, absolute.
    pub image: PathBuf,
    /// The console log so far, absolute.
    pub console_log: PathBuf,
}

impl Substitutions<'_> {
    fn value(&self, p: Placeholder) -> String {
        match p {
            Placeholder::Port(g) => self
                .forwards
                .iter()
                .find(|(_, gp)| *gp == g)
                .map_or_else(|| "0".into(), |(h, _)| h.to_string()),
            Placeholder::Image => self.image.display().to_string(),
            Placeholder::ConsoleLog => self.console_log.display().to_string(),
        }
    }

    /// `argv` with its placeholders expanded (validated when read, so an
    /// error here is a manifest edited by hand).
    pub fn argv(&self, argv: &[String]) -> Result<Vec<String>, String> {
        argv.iter().map(|a| expand(a, |p| self.value(p))).collect()
    }
}

/// Run `c` once (`argv` expanded) with its scratch files in `dir`: `Ok`
/// with a summary when its status and output are what the check wants,
/// else `Err` with what it did instead, quoting its output.
pub fn run_command(c: &CommandCheck, argv: &[String], dir: &Path) -> Result<String, String> {
    let (Some(program), Some(args)) = (argv.first(), argv.get(1..)) else {
        return Err("no program to run".into());
    };
    let out_path = dir.join("command.stdout");
    let err_path = dir.join("command.stderr");
    let files = std::fs::File::create(&out_path).and_then(|o| {
        let e = std::fs::File::create(&err_path)?;
        Ok((o, e))
    });
    let (out, err) = files.map_err(|e| format!("cannot create its output files: {e}"))?;
    // Its own process group, so that what it starts dies with it on a timeout.
    let child = Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn_bound();
    let mut child = child.map_err(|e| format!("cannot start: {e:#}"))?;
    let deadline = Instant::now() + Duration::from_secs(c.timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    let Some(status) = status else {
        kill_group(child.id());
        let _ = child.wait();
        return Err(format!(
            "still running after {} s, killed{}",
            c.timeout,
            outputs(&out_path, &err_path)
        ));
    };
    // Whatever it left running in its group goes too.
    kill_group(child.id());
    let stdout = read_kept(&out_path);
    let stderr = read_kept(&err_path);
    let mut wrong = Vec::new();
    match status.code() {
        Some(code) if code == c.status => {}
        Some(code) => wrong.push(format!("exit status {code}, expected {}", c.status)),
        None => wrong.push(format!("{status}, expected exit status {}", c.status)),
    }
    for (name, pattern, text) in [
        ("stdout", &c.stdout, &stdout),
        ("stderr", &c.stderr, &stderr),
    ] {
        if let Some(p) = pattern {
            // Multi-line: `^` and `$` match at each line's start and end.
            match regex::RegexBuilder::new(p).multi_line(true).build() {
                Ok(re) if re.is_match(text) => {}
                Ok(_) => wrong.push(format!("{name} does not match /{p}/")),
                Err(e) => wrong.push(format!("{name} pattern /{p}/: {e}")),
            }
        }
    }
    if wrong.is_empty() {
        let matched: Vec<String> = [("stdout", &c.stdout), ("stderr", &c.stderr)]
            .iter()
            .filter_map(|(n, p)| p.as_ref().map(|p| format!(", {n} matches /{p}/")))
            .collect();
        Ok(format!("exit status {}{}", c.status, matched.concat()))
    } else {
        Err(format!(
            "{}{}",
            wrong.join("; "),
            outputs(&out_path, &err_path)
        ))
    }
}

/// SIGKILL to the process group `pgid` (a command's, led by the command).
fn kill_group(pgid: u32) {
    if let Ok(pid) = i32::try_from(pgid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// At most [`KEEP_BYTES`] of a command's output file, as text.
fn read_kept(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(KEEP_BYTES as u64).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The end of each output, quoted for a report: `; stdout: "…"; stderr: "…"`.
fn outputs(out: &Path, err: &Path) -> String {
    let mut s = String::new();
    for (name, path) in [("stdout", out), ("stderr", err)] {
        let text = read_kept(path);
        let text = text.trim();
        if !text.is_empty() {
            s.push_str(&format!("; {name}: {:?}", tail(text)));
        }
    }
    if s.is_empty() {
        s.push_str("; no output");
    }
    s
}

/// The last [`QUOTE_BYTES`] of `text` (on a character boundary).
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(QUOTE_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The first [`QUOTE_BYTES`] of `text` (on a character boundary).
fn head(text: &str) -> &str {
    let mut end = text.len().min(QUOTE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Run `c` until it passes or its retries are spent, asking `watch` before
/// each attempt whether the boot has stopped.
pub fn run_with_retries(
    c: &CommandCheck,
    argv: &[String],
    dir: &Path,
    mut watch: impl FnMut() -> Option<Stop>,
) -> CommandOutcome {
    let attempts = c.retries + 1;
    let mut last = Err(String::new());
    for n in 1..=attempts {
        if let Some(stop) = watch() {
            return CommandOutcome::Stopped { stop };
        }
        last = run_command(c, argv, dir);
        if last.is_ok() {
            break;
        }
        if n < attempts {
            std::thread::sleep(RETRY_PAUSE);
        }
    }
    match last {
        Ok(detail) => CommandOutcome::Passed { detail },
        Err(e) if attempts > 1 => CommandOutcome::Failed {
            detail: format!("{attempts} attempts, the last: {e}"),
        },
        Err(detail) => CommandOutcome::Failed { detail },
    }
}

/// One TCP exchange through the forward to `addr`: connect, write `send`
/// (if any), read until the reply matches `expect`, the guest closes the
/// connection or [`REPLY_WAIT`] passes.
pub fn tcp_exchange(addr: SocketAddr, send: Option<&str>, expect: &Regex) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    if let Some(bytes) = send {
        s.write_all(bytes.as_bytes())
            .map_err(|e| format!("sending: {e}"))?;
    }
    let deadline = Instant::now() + REPLY_WAIT;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).ok();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if expect.is_match(&String::from_utf8_lossy(&reply)) {
                    return Ok(());
                }
                if reply.len() > KEEP_BYTES {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if reply.is_empty() {
        // QEMU's forward accepts before the guest does: a connection the
        // guest refuses is closed at once, with nothing said.
        return Err("no reply (connection closed or silent)".into());
    }
    let text = String::from_utf8_lossy(&reply);
    Err(format!(
        "reply does not match /{}/: {:?}",
        expect.as_str(),
        head(&text)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn check(argv: &[&str]) -> CommandCheck {
        CommandCheck {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            status: 0,
            stdout: None,
            stderr: None,
            timeout: 5,
            retries: 0,
        }
    }

    fn run(c: &CommandCheck) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        run_command(c, &c.argv, dir.path())
    }

    #[test]
    fn commands_are_judged_by_status_and_output() {
        let mut c = check(&["sh", "-c", "echo PONG; echo warn >&2"]);
        c.stdout = Some("^PONG$".into());
        c.stderr = Some("warn".into());
        assert_eq!(
            run(&c).unwrap(),
            "exit status 0, stdout matches /^PONG$/, stderr matches /warn/"
        );
        c.stdout = Some("PANG".into());
        let e = run(&c).unwrap_err();
        assert!(e.starts_with("stdout does not match /PANG/"), "{e}");
        assert!(
            e.contains("stdout: \"PONG\"") && e.contains("stderr: \"warn\""),
            "{e}"
        );

        let c = check(&["sh", "-c", "echo 404 Not Found >&2; exit 22"]);
        let e = run(&c).unwrap_err();
        assert_eq!(e, "exit status 22, expected 0; stderr: \"404 Not Found\"");
        let mut c = check(&["sh", "-c", "exit 3"]);
        c.status = 3;
        assert!(run(&c).is_ok());
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let mut c = check(&["sh", "-c", "sleep 30 & echo started; wait"]);
        c.timeout = 1;
        let t = Instant::now();
        let e = run(&c).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(e.starts_with("still running after 1 s, killed"), "{e}");
        assert!(e.contains("started"), "{e}");
    }

    #[test]
    fn retries_run_until_a_pass() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("second");
        let script = format!(
            "test -e {0} && echo ok && exit 0; touch {0}; exit 1",
            flag.display()
        );
        let mut c = check(&["sh", "-c", &script]);
        c.retries = 2;
        assert_eq!(
            run_with_retries(&c, &c.argv, dir.path(), || None),
            CommandOutcome::Passed {
                detail: "exit status 0".into()
            }
        );
        c.argv = vec!["false".into()];
        c.retries = 1;
        assert_eq!(
            run_with_retries(&c, &c.argv, dir.path(), || None),
            CommandOutcome::Failed {
                detail: "2 attempts, the last: exit status 1, expected 0; no output".into()
            }
        );
        let stop = Stop::Timeout { secs: 5 };
        assert_eq!(
            run_with_retries(&c, &c.argv, dir.path(), || Some(stop.clone())),
            CommandOutcome::Stopped { stop }
        );
    }

    #[test]
    fn placeholders_expand_to_this_boot() {
        let fwd = [(40123, 6379)];
        let s = Substitutions {
            forwards: &fwd,
            image: "/out/hello-1.0.raw".into(),
            console_log: "/tmp/c.log".into(),
        };
        let argv: Vec<String> = ["redis-cli", "-p", "{port:6379}", "{image}:{console_log}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            s.argv(&argv).unwrap(),
            ["redis-cli", "-p", "40123", "/out/hello-1.0.raw:/tmp/c.log"]
        );
    }

    #[test]
    fn tcp_exchanges_match_the_reply() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for reply in [&b"+PONG\r\n"[..], b"-ERR unknown\r\n", b""] {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 6];
                c.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"PING\r\n");
                c.write_all(reply).unwrap();
            }
        });
        let re = Regex::new(r"^\+PONG").unwrap();
        assert_eq!(tcp_exchange(addr, Some("PING\r\n"), &re), Ok(()));
        assert_eq!(
            tcp_exchange(addr, Some("PING\r\n"), &re).unwrap_err(),
            "reply does not match /^\\+PONG/: \"-ERR unknown\\r\\n\""
        );
        assert_eq!(
            tcp_exchange(addr, Some("PING\r\n"), &re).unwrap_err(),
            "no reply (connection closed or silent)"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let mut s = TestSettings::from_spec(&crate::model::checks::TestSpec {
            timeout: 1,
            memory_mib: 64,
            console: vec![],
            forbid: vec![],
            tcp: vec![],
            http: vec![],
            command: vec![check(&["sh"])],
            forward: vec![],
            shutdown_timeout: None,
        })
        .unwrap();
        require_programs(&s).unwrap();
        s.command[0].argv[0] = "/nonexistent/redis-cli".into();
        let e = require_programs(&s).unwrap_err();
        assert_eq!(crate::util::error::exit_code(&e), 3);
        assert!(e.to_string().contains("`redis-tools`"), "{e}");
    }
}
