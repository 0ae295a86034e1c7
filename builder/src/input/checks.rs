//! A recipe's `[test]` section: the checks that judge the booted image
//! (console patterns, forbidden patterns, TCP and HTTP probes, host
//! commands, the clean shutdown), read from `Raw*` structs that reject
//! unknown keys and turned into [`TestSettings`]. Every error names the
//! file, the line and the field ([`InputError`]); the README's "Recipe
//! reference" documents every field.

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::input::source_file::SourceFile;
use crate::model::checks::{
    placeholders, CommandCheck, ConsoleCheck, HttpCheck, Placeholder, TcpCheck, TestSettings,
};
use crate::util::error::InputError;

/// Console patterns that fail a boot test whenever they appear, unless the
/// recipe turns the defaults off (`test.default_forbid = false`).
pub const DEFAULT_FORBID: &[&str] = &[
    "Kernel panic",
    "Call Trace",
    r"device-mapper: verity: .*(corrupted|error)",
    r"(I/O|i/o) error, dev (vd|sd|dm-)",
    "Failed to start",
    "kiln-init: FATAL",
];

/// `[test]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    timeout: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<u32>>,
    #[serde(default)]
    console: Vec<RawConsole>,
    #[serde(default)]
    forbid: Vec<Spanned<String>>,
    default_forbid: Option<bool>,
    #[serde(default)]
    tcp: Vec<RawTcp>,
    #[serde(default)]
    http: Vec<RawHttp>,
    #[serde(default)]
    command: Vec<RawCommand>,
    #[serde(default)]
    forward: Vec<Spanned<u16>>,
    shutdown: Option<RawShutdown>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    pattern: Spanned<String>,
    timeout: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    port: Spanned<u16>,
    timeout: Option<Spanned<u64>>,
    send: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    port: Spanned<u16>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    status: Option<Spanned<u16>>,
    body_contains: Option<String>,
    timeout: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    argv: Spanned<Vec<Spanned<String>>>,
    status: Option<Spanned<i32>>,
    stdout: Option<Spanned<String>>,
    stderr: Option<Spanned<String>>,
    timeout: Option<Spanned<u64>>,
    retries: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    enabled: Option<bool>,
    timeout: Option<Spanned<u64>>,
}

/// The most attempts a command may ask for after its first.
const MAX_RETRIES: u32 = 100;

fn positive(
    src: &SourceFile,
    v: &Option<Spanned<u64>>,
    field: &str,
    default: u64,
) -> Result<u64, InputError> {
    match v {
        None => Ok(default),
        Some(s) if *s.get_ref() == 0 => Err(src.error(s.span(), field, "must be greater than 0")),
        Some(s) => Ok(*s.get_ref()),
    }
}

fn regex(src: &SourceFile, s: &Spanned<String>, field: &str) -> Result<Regex, InputError> {
    if s.get_ref().is_empty() {
        return Err(src.error(s.span(), field, "pattern must not be empty"));
    }
    Regex::new(s.get_ref()).map_err(|e| {
        src.error(
            s.span(),
            field,
            format!("not a valid regular expression: {e}"),
        )
    })
}

fn port(src: &SourceFile, p: &Spanned<u16>, field: &str) -> Result<u16, InputError> {
    if *p.get_ref() == 0 {
        return Err(src.error(p.span(), field, "port must be 1-65535"));
    }
    Ok(*p.get_ref())
}

/// Validate `[test]`.
pub fn test_settings(src: &SourceFile, t: &RawTest) -> Result<TestSettings, InputError> {
    let mut console = Vec::new();
    for (i, c) in t.console.iter().enumerate() {
        console.push(ConsoleCheck {
            pattern: regex(src, &c.pattern, &format!("test.console[{i}].pattern"))?,
            timeout: positive(src, &c.timeout, &format!("test.console[{i}].timeout"), 60)?,
        });
    }
    let mut forbid = Vec::new();
    if t.default_forbid.unwrap_or(true) {
        for p in DEFAULT_FORBID {
            // The defaults are constants checked by a unit test.
            forbid.push(Regex::new(p).expect("default pattern is valid"));
        }
    }
    for (i, p) in t.forbid.iter().enumerate() {
        forbid.push(regex(src, p, &format!("test.forbid[{i}]"))?);
    }
    let mut tcp = Vec::new();
    for (i, c) in t.tcp.iter().enumerate() {
        let field = |f: &str| format!("test.tcp[{i}].{f}");
        let expect = match &c.expect {
            Some(e) => Some(regex(src, e, &field("expect"))?.as_str().to_string()),
            None => None,
        };
        if let (Some(s), None) = (&c.send, &expect) {
            return Err(src.error(
                s.span(),
                &field("send"),
                "send needs an expect pattern to judge the reply by",
            ));
        }
        tcp.push(TcpCheck {
            port: port(src, &c.port, &field("port"))?,
            timeout: positive(src, &c.timeout, &field("timeout"), 30)?,
            send: c.send.as_ref().map(|s| s.get_ref().clone()),
            expect,
        });
    }
    let mut http = Vec::new();
    for (i, h) in t.http.iter().enumerate() {
        let path = match &h.path {
            None => "/".to_string(),
            Some(p) if !p.get_ref().starts_with('/') => {
                return Err(src.error(
                    p.span(),
                    &format!("test.http[{i}].path"),
                    "must start with /",
                ))
            }
            Some(p) => p.get_ref().clone(),
        };
        let status = match &h.status {
            None => 200,
            Some(s) if !(100..=599).contains(s.get_ref()) => {
                return Err(src.error(
                    s.span(),
                    &format!("test.http[{i}].status"),
                    "must be an HTTP status code (100-599)",
                ))
            }
            Some(s) => *s.get_ref(),
        };
        http.push(HttpCheck {
            port: port(src, &h.port, &format!("test.http[{i}].port"))?,
            path,
            status,
            body_contains: h.body_contains.clone(),
            timeout: positive(src, &h.timeout, &format!("test.http[{i}].timeout"), 30)?,
        });
    }
    let mut forward = Vec::new();
    for (i, p) in t.forward.iter().enumerate() {
        forward.push(port(src, p, &format!("test.forward[{i}]"))?);
    }
    let mut settings = TestSettings {
        timeout: positive(src, &t.timeout, "test.timeout", 300)?,
        memory_mib: match &t.memory_mib {
            Some(m) if *m.get_ref() < 64 => {
                return Err(src.error(m.span(), "test.memory_mib", "must be at least 64"))
            }
            m => m.as_ref().map_or(512, |m| *m.get_ref()),
        },
        console,
        forbid,
        tcp,
        http,
        command: Vec::new(),
        forward,
        shutdown_timeout: match &t.shutdown {
            Some(s) if s.enabled == Some(false) => None,
            Some(s) => Some(positive(src, &s.timeout, "test.shutdown.timeout", 30)?),
            None => Some(30),
        },
    };
    let forwarded = settings.forwarded_ports();
    for (i, c) in t.command.iter().enumerate() {
        settings.command.push(command(src, c, i, &forwarded)?);
    }
    Ok(settings)
}

/// Validate one `[[test.command]]`: a program, known placeholders naming
/// forwarded ports, valid patterns.
fn command(
    src: &SourceFile,
    c: &RawCommand,
    i: usize,
    forwarded: &[u16],
) -> Result<CommandCheck, InputError> {
    let field = |f: &str| format!("test.command[{i}].{f}");
    let argv = c.argv.get_ref();
    match argv.first() {
        None => {
            return Err(src.error(
                c.argv.span(),
                &field("argv"),
                "needs at least the program to run",
            ))
        }
        Some(p) if p.get_ref().trim().is_empty() || p.get_ref().contains('{') => {
            return Err(src.error(
                p.span(),
                &field("argv[0]"),
                "must name a program (no placeholders)",
            ))
        }
        Some(_) => {}
    }
    for (j, a) in argv.iter().enumerate() {
        let at = field(&format!("argv[{j}]"));
        let found = placeholders(a.get_ref()).map_err(|e| src.error(a.span(), &at, e))?;
        for (_, p) in found {
            if let Placeholder::Port(n) = p {
                if !forwarded.contains(&n) {
                    return Err(src.error(
                        a.span(),
                        &at,
                        format!(
                            "guest port {n} is not forwarded: add it to test.forward \
                             (forwarded: {})",
                            if forwarded.is_empty() {
                                "none".to_string()
                            } else {
                                forwarded
                                    .iter()
                                    .map(u16::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    ));
                }
            }
        }
    }
    let pattern = |p: &Option<Spanned<String>>, f: &str| -> Result<Option<String>, InputError> {
        p.as_ref()
            .map(|p| regex(src, p, &field(f)).map(|r| r.as_str().to_string()))
            .transpose()
    };
    let retries = match &c.retries {
        Some(r) if *r.get_ref() > MAX_RETRIES => {
            return Err(src.error(
                r.span(),
                &field("retries"),
                format!("must be at most {MAX_RETRIES}"),
            ))
        }
        r => r.as_ref().map_or(0, |r| *r.get_ref()),
    };
    Ok(CommandCheck {
        argv: argv.iter().map(|a| a.get_ref().clone()).collect(),
        status: c.status.as_ref().map_or(0, |s| *s.get_ref()),
        stdout: pattern(&c.stdout, "stdout")?,
        stderr: pattern(&c.stderr, "stderr")?,
        timeout: positive(src, &c.timeout, &field("timeout"), 30)?,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn default_patterns_compile() {
        for p in DEFAULT_FORBID {
            Regex::new(p).unwrap();
        }
    }

    #[derive(Debug, Deserialize)]
    struct Doc {
        test: RawTest,
    }

    fn parse(text: &str) -> Result<TestSettings, InputError> {
        let src = SourceFile::from_bytes(Path::new("r.toml"), text.as_bytes().to_vec())?;
        let doc: Doc = src.parse()?;
        test_settings(&src, &doc.test)
    }

    #[test]
    fn commands_and_tcp_exchanges_are_read() {
        let t = parse(
            "[test]\nforward = [6379]\n\
             [[test.tcp]]\nport = 6379\nsend = \"PING\\r\\n\"\nexpect = '\\+PONG'\n\
             [[test.command]]\nargv = [\"redis-cli\", \"-p\", \"{port:6379}\", \"PING\"]\n\
             stdout = \"PONG\"\nretries = 3\n",
        )
        .unwrap();
        assert_eq!(t.tcp[0].send.as_deref(), Some("PING\r\n"));
        assert_eq!(t.tcp[0].expect.as_deref(), Some(r"\+PONG"));
        let c = &t.command[0];
        assert_eq!(c.argv, ["redis-cli", "-p", "{port:6379}", "PING"]);
        assert_eq!((c.status, c.timeout, c.retries), (0, 30, 3));
        assert_eq!(c.stdout.as_deref(), Some("PONG"));
        assert_eq!(c.name(0), "command[0] redis-cli -p {port:6379} PING");
        assert_eq!(t.forwarded_ports(), [6379]);
    }

    #[test]
    fn bad_checks_name_line_and_field() {
        let table: &[(&str, usize, &str, &str)] = &[
            (
                "[test]\n[[test.command]]\nargv = [\"curl\", \"{port:80}\"]\n",
                3,
                "test.command[0].argv[1]",
                "guest port 80 is not forwarded",
            ),
            (
                "[test]\n[[test.command]]\nargv = []\n",
                3,
                "test.command[0].argv",
                "needs at least the program",
            ),
            (
                "[test]\n[[test.command]]\nargv = [\"{image}\"]\n",
                3,
                "test.command[0].argv[0]",
                "must name a program",
            ),
            (
                "[test]\n[[test.command]]\nargv = [\"cat\", \"{imgae}\"]\n",
                3,
                "test.command[0].argv[1]",
                "unknown placeholder {imgae}",
            ),
            (
                "[test]\n[[test.command]]\nargv = [\"true\"]\n\nstdout = \"(\"\n",
                5,
                "test.command[0].stdout",
                "not a valid regular expression",
            ),
            (
                "[test]\n[[test.command]]\nargv = [\"true\"]\nstdin = \"x\"\n",
                4,
                "test.command.stdin",
                "unknown field `stdin`",
            ),
            (
                "[test]\n[[test.tcp]]\nport = 1\nsend = \"x\"\n",
                4,
                "test.tcp[0].send",
                "send needs an expect pattern",
            ),
            (
                "[test]\n[[test.tcp]]\nport = 1\nexpect = \"[\"\n",
                4,
                "test.tcp[0].expect",
                "not a valid regular expression",
            ),
            (
                "[test]\nforward = [0]\n",
                2,
                "test.forward[0]",
                "port must be 1-65535",
            ),
        ];
        for (text, line, field, msg) in table {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(*line), "{text}: {e}");
            assert_eq!(e.field.as_deref(), Some(*field), "{text}: {e:?}");
            assert!(e.message.contains(msg), "{text}: {e}");
        }
    }
}
