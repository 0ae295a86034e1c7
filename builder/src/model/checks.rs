//! The checks that judge a booted image: the validated `[test]` settings of
//! a recipe, and the serialisable form an image manifest carries so that
//! `kiln test IMAGE` needs no recipe.

use regex::Regex;
use serde::Deserialize;

/// `[test]`.
#[derive(Debug, Clone)]
pub struct TestSettings {
    /// Overall timeout, seconds.
    pub timeout: u64,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// Console patterns that must appear, in order.
    pub console: Vec<ConsoleCheck>,
    /// Console patterns that must never appear (defaults included unless turned off).
    pub forbid: Vec<Regex>,
    /// TCP connect probes.
    pub tcp: Vec<TcpCheck>,
    /// HTTP probes.
    pub http: Vec<HttpCheck>,
    /// Programs run on the host while the guest is up.
    pub command: Vec<CommandCheck>,
    /// Guest ports forwarded for commands beyond those the TCP and HTTP
    /// checks name (`test.forward`).
    pub forward: Vec<u16>,
    /// Clean-shutdown check: `None` when disabled, else its timeout in seconds.
    pub shutdown_timeout: Option<u64>,
}

impl PartialEq for TestSettings {
    fn eq(&self, o: &Self) -> bool {
        let pats = |v: &[Regex]| v.iter().map(|r| r.as_str().to_string()).collect::<Vec<_>>();
        self.timeout == o.timeout
            && self.memory_mib == o.memory_mib
            && self.console == o.console
            && pats(&self.forbid) == pats(&o.forbid)
            && self.tcp == o.tcp
            && self.http == o.http
            && self.command == o.command
            && self.forward == o.forward
            && self.shutdown_timeout == o.shutdown_timeout
    }
}

/// `[test]` in a serialisable form, carried in the image manifest so that
/// `kiln test IMAGE` needs no recipe.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct TestSpec {
    /// Overall timeout, seconds.
    pub timeout: u64,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// (pattern, timeout) pairs that must appear in order.
    pub console: Vec<(String, u64)>,
    /// Patterns that must never appear (defaults already included).
    pub forbid: Vec<String>,
    /// TCP probes.
    pub tcp: Vec<TcpCheck>,
    /// HTTP probes.
    pub http: Vec<HttpCheck>,
    /// Host commands (absent from manifests written before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<CommandCheck>,
    /// Extra forwarded guest ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward: Vec<u16>,
    /// Shutdown timeout, `None` when the check is disabled.
    pub shutdown_timeout: Option<u64>,
}

impl TestSettings {
    /// The serialisable form.
    pub fn to_spec(&self) -> TestSpec {
        TestSpec {
            timeout: self.timeout,
            memory_mib: self.memory_mib,
            console: self
                .console
                .iter()
                .map(|c| (c.pattern.as_str().to_string(), c.timeout))
                .collect(),
            forbid: self.forbid.iter().map(|r| r.as_str().to_string()).collect(),
            tcp: self.tcp.clone(),
            http: self.http.clone(),
            command: self.command.clone(),
            forward: self.forward.clone(),
            shutdown_timeout: self.shutdown_timeout,
        }
    }

    /// Back from the serialisable form (patterns recompiled).
    /// The TCP and command patterns are compiled here too, so a manifest
    /// edited by hand fails before anything boots, as a recipe would.
    pub fn from_spec(spec: &TestSpec) -> Result<TestSettings, regex::Error> {
        let patterns = spec.tcp.iter().filter_map(|t| t.expect.as_ref()).chain(
            spec.command
                .iter()
                .flat_map(|c| c.stdout.iter().chain(c.stderr.iter())),
        );
        for p in patterns {
            Regex::new(p)?;
        }
        Ok(TestSettings {
            timeout: spec.timeout,
            memory_mib: spec.memory_mib,
            console: spec
                .console
                .iter()
                .map(|(p, t)| {
                    Ok(ConsoleCheck {
                        pattern: Regex::new(p)?,
                        timeout: *t,
                    })
                })
                .collect::<Result<_, regex::Error>>()?,
            forbid: spec
                .forbid
                .iter()
                .map(|p| Regex::new(p))
                .collect::<Result<_, _>>()?,
            tcp: spec.tcp.clone(),
            http: spec.http.clone(),
            command: spec.command.clone(),
            forward: spec.forward.clone(),
            shutdown_timeout: spec.shutdown_timeout,
        })
    }

    /// Every guest port the boot forwards to the host: those of the TCP and
    /// HTTP checks and `test.forward`, sorted, each once.
    pub fn forwarded_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .tcp
            .iter()
            .map(|t| t.port)
            .chain(self.http.iter().map(|h| h.port))
            .chain(self.forward.iter().copied())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// A console pattern that must appear.
#[derive(Debug, Clone)]
pub struct ConsoleCheck {
    /// The regular expression.
    pub pattern: Regex,
    /// Seconds allowed from the previous check's success (or boot start).
    pub timeout: u64,
}

impl PartialEq for ConsoleCheck {
    fn eq(&self, o: &Self) -> bool {
        self.pattern.as_str() == o.pattern.as_str() && self.timeout == o.timeout
    }
}

/// A TCP probe: the guest port must accept a connection through the
/// forward and, with `expect`, answer (after `send`, if given) with bytes
/// the pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct TcpCheck {
    /// Guest port.
    pub port: u16,
    /// Seconds allowed.
    pub timeout: u64,
    /// Bytes written once connected (the recipe's string, UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// A regular expression the reply must match (validated when the recipe
    /// was read); the reply is read until it matches, the guest closes the
    /// connection, or the probe's read timeout passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

/// A program run on the host while the guest is up (`[[test.command]]`),
/// judged by its exit status and, optionally, its output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct CommandCheck {
    /// Program and arguments, with the placeholders `{port:N}` (the host
    /// port forwarded to guest port N), `{image}` and `{console_log}`
    /// (absolute paths) still in them.
    pub argv: Vec<String>,
    /// The exit status that passes (default 0).
    pub status: i32,
    /// A regular expression stdout must match (validated).
    pub stdout: Option<String>,
    /// A regular expression stderr must match (validated).
    pub stderr: Option<String>,
    /// Seconds one attempt may run before it is killed.
    pub timeout: u64,
    /// Attempts after the first that fail (one second apart).
    pub retries: u32,
}

impl CommandCheck {
    /// The check's stable name: `command[i]` and the argv as written,
    /// placeholders unexpanded (so JUnit names do not change between runs).
    pub fn name(&self, i: usize) -> String {
        format!("command[{i}] {}", self.argv.join(" "))
    }
}

/// An HTTP probe through a port forward.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct HttpCheck {
    /// Guest port.
    pub port: u16,
    /// Request path (default `/`).
    pub path: String,
    /// Expected status (default 200).
    pub status: u16,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    /// Seconds allowed.
    pub timeout: u64,
}

/// A placeholder in a `[[test.command]]` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{port:N}`: the host port forwarded to guest port N.
    Port(u16),
    /// `{image}`: the image file under test, absolute.
    Image,
    /// `{console_log}`: the guest's serial console so far, absolute.
    ConsoleLog,
}

/// The placeholders in `arg` with their byte ranges, in order. Text of the
/// form `{word}` or `{word:…}` (word: `a-z` and `_`) must be a known
/// placeholder; any other brace is literal (so JSON in an argument stays
/// as written).
pub fn placeholders(arg: &str) -> Result<Vec<(std::ops::Range<usize>, Placeholder)>, String> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    // A constant pattern, compiled once.
    let re = RE.get_or_init(|| Regex::new(r"\{([a-z_]+)(?::([^{}]*))?\}").expect("valid pattern"));
    let mut out = Vec::new();
    for c in re.captures_iter(arg) {
        let whole = c.get(0).map_or(0..0, |m| m.range());
        let p = match (&c[1], c.get(2).map(|m| m.as_str())) {
            ("port", Some(n)) => match n.parse::<u16>() {
                Ok(p) if p > 0 => Placeholder::Port(p),
                _ => return Err(format!("{{port:{n}}}: the port must be 1-65535")),
            },
            ("image", None) => Placeholder::Image,
            ("console_log", None) => Placeholder::ConsoleLog,
            _ => {
                return Err(format!(
                    "unknown placeholder {}: expected {{port:N}}, {{image}} or {{console_log}}",
                    &arg[whole]
                ))
            }
        };
        out.push((whole, p));
    }
    Ok(out)
}

/// `arg` with each placeholder replaced by `value(placeholder)`.
pub fn expand(arg: &str, value: impl Fn(Placeholder) -> String) -> Result<String, String> {
    let mut s = String::new();
    let mut at = 0;
    for (r, p) in placeholders(arg)? {
        s.push_str(&arg[at..r.start]);
        s.push_str(&value(p));
        at = r.end;
    }
    s.push_str(&arg[at..]);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_checked() {
        let table: &[(&str, Result<Vec<Placeholder>, &str>)] = &[
            ("plain", Ok(vec![])),
            ("{port:6379}", Ok(vec![Placeholder::Port(6379)])),
            (
                "http://127.0.0.1:{port:80}/x?{image}",
                Ok(vec![Placeholder::Port(80), Placeholder::Image]),
            ),
            ("{console_log}", Ok(vec![Placeholder::ConsoleLog])),
            (r#"{"json": {"a": 1}}"#, Ok(vec![])),
            ("{port:0}", Err("{port:0}: the port must be 1-65535")),
            ("{port:http}", Err("{port:http}: the port must be 1-65535")),
            ("{port}", Err("unknown placeholder {port}")),
            ("{imgae}", Err("unknown placeholder {imgae}")),
        ];
        for (arg, want) in table {
            let got = placeholders(arg).map(|v| v.into_iter().map(|(_, p)| p).collect::<Vec<_>>());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{arg}"),
                (Err(g), Err(w)) => assert!(g.starts_with(w), "{arg}: {g}"),
                (g, w) => panic!("{arg}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_manifest_with_a_bad_pattern_is_refused() {
        let mut spec = TestSpec {
            timeout: 1,
            memory_mib: 64,
            console: vec![],
            forbid: vec![],
            tcp: vec![TcpCheck {
                port: 1,
                timeout: 1,
                send: None,
                expect: Some("ok".into()),
            }],
            http: vec![],
            command: vec![],
            forward: vec![],
            shutdown_timeout: None,
        };
        assert!(TestSettings::from_spec(&spec).is_ok());
        spec.tcp[0].expect = Some("(".into());
        assert!(TestSettings::from_spec(&spec).is_err());
    }

    #[test]
    fn expansion_replaces_each_placeholder() {
        let v = |p| match p {
            Placeholder::Port(n) => (n + 1).to_string(),
            Placeholder::Image => "/i.raw".into(),
            Placeholder::ConsoleLog => "/c.log".into(),
        };
        assert_eq!(
            expand("a{port:80}b{image}c{console_log}", v).unwrap(),
            "a81b/i.rawc/c.log"
        );
        assert_eq!(expand("{}", v).unwrap(), "{}");
    }
}
