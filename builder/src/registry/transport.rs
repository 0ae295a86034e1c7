//! How [`super::Client`] reaches a registry: the one place its HTTP agents
//! are built, with the limits and rules every request lives under.
//!
//! - **Time.** Connecting (name resolution included) may take
//!   [`Net::connect`]; a request ends when no byte moves either way for
//!   [`Net::idle`]; and every request ends after [`Net::overall`] for its
//!   size (a base, plus the bytes at a floor rate of [`FLOOR_RATE`]), so a
//!   registry that accepts and never answers, stops half way through a blob
//!   or trickles cannot hold kiln. ureq has no limits by default. A request
//!   out of time is an environment error naming the registry (exit 3):
//!   `pull` and `publish` fail, the layer cache warns and builds locally.
//!   [`TIMEOUT_ENV`] sets the idle limit (the others follow from it).
//! - **Proxies** (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, read by
//!   ureq) carry only traffic to other machines: a request to loopback
//!   always goes direct, so a local registry's credentials never pass
//!   through a proxy.
//! - **Redirects** are followed by kiln, not ureq ([`follow`]), for GET and
//!   HEAD, at most [`MAX_REDIRECTS`] hops, each hop allowed only by
//!   [`Origin::redirect_allowed`]: to HTTPS, or from plain-HTTP loopback to
//!   plain-HTTP loopback. Each hop's `Authorization` is decided afresh for
//!   that hop's origin by the caller, so credentials stay with their origin.
//!   Uploads (POST, PUT) follow no redirect.

use std::time::Duration;

use anyhow::Result;

use super::auth::Origin;
use super::{net, Response};
use crate::util::error::{EnvError, InputError};

/// The environment variable that sets [`Net::idle`], in seconds (a decimal
/// number); connecting may take as long, and a request's base allowance is
/// [`BASE_PER_IDLE`] times it.
pub const TIMEOUT_ENV: &str = "KILN_REGISTRY_TIMEOUT";

/// Longest wait for a connection (name resolution, TCP, TLS).
const CONNECT: Duration = Duration::from_secs(30);

/// Longest time with no byte received or sent.
const IDLE: Duration = Duration::from_secs(60);

/// A request's base allowance, in idle limits: a manifest or a token takes
/// a few round trips, each of which may wait up to the idle limit.
const BASE_PER_IDLE: u32 = 5;

/// The slowest transfer kiln waits for, in bytes per second: 128 KiB/s, so
/// a 1 GiB blob may take 2 h 16 min beyond the base allowance.
pub(crate) const FLOOR_RATE: u64 = 128 << 10;

/// Most redirects followed for one request (ureq's own default).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// The limits and proxy of a registry client.
#[derive(Clone)]
pub(crate) struct Net {
    /// Longest wait for a connection.
    pub(crate) connect: Duration,
    /// Longest time with no byte received or sent.
    pub(crate) idle: Duration,
    /// A request's allowance before its size is counted.
    pub(crate) base: Duration,
    /// The proxy for traffic to other machines.
    pub(crate) proxy: Option<ureq::Proxy>,
}

impl Net {
    /// The limits for an idle limit `idle` (the others follow from it), and
    /// the proxy `proxy`.
    pub(crate) fn new(idle: Duration, proxy: Option<ureq::Proxy>) -> Net {
        Net {
            connect: idle.min(CONNECT),
            idle,
            base: idle * BASE_PER_IDLE,
            proxy,
        }
    }

    /// The defaults, [`TIMEOUT_ENV`] applied, and the environment's proxy.
    pub(crate) fn from_env() -> Result<Net> {
        let idle = match std::env::var(TIMEOUT_ENV) {
            Err(_) => IDLE,
            Ok(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0 && *v <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| InputError {
                    file: "(environment)".into(),
                    line: None,
                    field: Some(TIMEOUT_ENV.into()),
                    message: format!("{s:?}: not a number of seconds in (0, 86400]"),
                })?,
        };
        Ok(Net::new(idle, ureq::Proxy::try_from_env()))
    }

    /// How long a request moving `size` bytes may take in all.
    pub(crate) fn overall(&self, size: u64) -> Duration {
        self.base
            .saturating_add(Duration::from_secs(size / FLOOR_RATE))
    }
}

/// A client's two agents: one through the proxy, one direct for loopback.
pub(crate) struct Agents {
    proxied: ureq::Agent,
    direct: ureq::Agent,
}

impl Agents {
    /// The agents for `net`.
    pub(crate) fn new(net: &Net) -> Agents {
        Agents {
            proxied: agent(net, net.proxy.clone()),
            direct: agent(net, None),
        }
    }

    /// The agent for a request to `url`: direct to loopback, else through
    /// the proxy (when there is one).
    pub(crate) fn for_url(&self, url: &str) -> &ureq::Agent {
        if Origin::of(url).is_some_and(|o| o.loopback()) {
            &self.direct
        } else {
            &self.proxied
        }
    }
}

/// An agent with kiln's limits, no redirects of its own, and `proxy`.
fn agent(net: &Net, proxy: Option<ureq::Proxy>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .middleware(super::logged_request)
        .proxy(proxy)
        .max_redirects(0)
        .timeout_resolve(Some(net.connect))
        .timeout_connect(Some(net.connect))
        .timeout_per_read(Some(net.idle))
        .timeout_per_write(Some(net.idle))
        .timeout_global(Some(net.base))
        .build()
        .into()
}

/// Send a GET or HEAD request to `url` with `send(url, first_hop)`, and
/// follow its redirects by the rules in the module documentation. `send`
/// builds each hop's request itself (with the `Authorization` that hop's
/// origin may have). `registry` names the registry in errors.
pub(crate) fn follow(
    registry: &str,
    url: &str,
    mut send: impl FnMut(&str, bool) -> std::result::Result<Response, ureq::Error>,
) -> Result<Response> {
    let mut at = url.to_string();
    for hop in 0..=MAX_REDIRECTS {
        let resp = send(&at, hop == 0).map_err(net(&at))?;
        let to = match resp.headers().get("location") {
            Some(loc) if resp.status().is_redirection() && resp.status() != 304 => loc,
            _ => return Ok(resp),
        };
        let to = to.to_str().ok().and_then(|l| resolve(&at, l));
        let allowed = to.as_deref().and_then(|t| {
            let (from, next) = (Origin::of(&at)?, Origin::of(t)?);
            from.redirect_allowed(&next).then_some(t)
        });
        let Some(next) = allowed else {
            let shown = resp
                .headers()
                .get("location")
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(EnvError::new(format!(
                "the registry {registry} redirects {at} to {shown:?}: kiln follows a redirect only to HTTPS, or from loopback to loopback"
            ))
            .into());
        };
        tracing::debug!(from = %at, to = %next, "registry redirect");
        at = next.to_string();
    }
    Err(EnvError::new(format!(
        "the registry {registry} redirects {url} more than {MAX_REDIRECTS} times"
    ))
    .into())
}

/// The absolute URL a `Location` header `loc` names, seen from `base`
/// (RFC 9110 §10.2.2: a URI reference, resolved against the request's URL).
fn resolve(base: &str, loc: &str) -> Option<String> {
    let lower = loc.get(..8).unwrap_or(loc).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(loc.to_string());
    }
    let origin = Origin::of(base)?;
    if let Some(rest) = loc.strip_prefix("//") {
        let scheme = base.split_once("://")?.0;
        return Some(format!("{scheme}://{rest}"));
    }
    if loc.starts_with('/') {
        return Some(format!("{origin}{loc}"));
    }
    // A relative path: beside the last segment of the base's path.
    let path = base.split(['?', '#']).next()?;
    let after_authority = path.split_once("://")?.1;
    let dir = match after_authority.rfind('/') {
        Some(i) => &path[..path.len() - after_authority.len() + i + 1],
        None => return Some(format!("{path}/{loc}")),
    };
    Some(format!("{dir}{loc}"))
}

#[cfg(test)]
mod tests;
