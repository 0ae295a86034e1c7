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
            shutdown_timeout: self.shutdown_timeout,
        }
    }

    /// Back from the serialisable form (patterns recompiled).
    pub fn from_spec(spec: &TestSpec) -> Result<TestSettings, regex::Error> {
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
            shutdown_timeout: spec.shutdown_timeout,
        })
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

/// A TCP probe: the guest port must accept a connection through the forward.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct TcpCheck {
    /// Guest port.
    pub port: u16,
    /// Seconds allowed.
    pub timeout: u64,
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
