//! A client of the OCI Distribution API, for `kiln push`/`kiln pull`
//! ([`crate::publish::oci`]) and the layer cache ([`cache`]): `oci://` references, the
//! `WWW-Authenticate` challenge (RFC 9110 §11.6.1) with Basic and Bearer
//! (Docker token protocol) authentication, and the Distribution API calls
//! kiln makes (<https://github.com/opencontainers/distribution-spec>,
//! "Pulling", "Pushing blobs", "Pushing manifests").
//!
//! Every answer is read bounded: a manifest fetched by tag at most the
//! spec's 4 MiB; content fetched by descriptor is refused before the request
//! when the descriptor's size is over the caller's limit, and refused when
//! the registry sends more than that size (reading stops one byte past it),
//! fewer, or bytes with another digest.
//!
//! Credentials go only to the registry's own origin (RFC 6454: scheme, host,
//! port). A Bearer challenge may name a token service elsewhere; that service
//! gets the credentials configured for its own host, over HTTPS (or to
//! loopback), and nothing else ([`realm_credentials`]). Nothing secret reaches
//! the log: ureq's byte-level trace of the wire (which holds `Authorization`
//! headers and token responses) is switched off for kiln's requests, which
//! kiln logs itself, and the token response is logged redacted
//! ([`redact_token_response`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::util::digest::HashWriter;
use crate::util::error::{check_failed, EnvError, InputError};
use spec::Descriptor;
use transport::{follow, Agents, Net};

mod auth;
pub mod cache;
pub(crate) mod spec;
pub(crate) mod transport;
use auth::{
    basic, configured_credentials, credentials, is_loopback, realm_credentials,
    redact_token_response, Origin,
};

/// Largest manifest or small blob read into memory (the spec's 4 MiB manifest limit).
pub(crate) const SMALL_LIMIT: u64 = 4 << 20;

/// OCI image manifest media type.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// The buffer of a bounded copy.
const COPY_BUFFER: usize = 64 << 10;

/// An `oci://HOST[:PORT]/REPO[:TAG]` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub host: String,
    /// Repository path.
    pub repo: String,
    /// Tag, when given.
    pub tag: Option<String>,
}

impl Reference {
    /// Parse `oci://HOST[:PORT]/REPO[:TAG]`.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |m: &str| InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("oci reference".into()),
            message: format!("{s:?}: {m} (expected oci://HOST[:PORT]/REPO[:TAG])"),
        };
        let rest = s.strip_prefix("oci://").ok_or_else(|| bad("not oci://"))?;
        let (host, path) = rest.split_once('/').ok_or_else(|| bad("no repository"))?;
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        let repo_ok = !repo.is_empty()
            && repo.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if host.is_empty() || !repo_ok {
            return Err(bad("bad host or repository (lower-case a-z, 0-9, . _ - and /)").into());
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(bad("bad tag ([A-Za-z0-9_.-], ≤ 128)").into());
            }
        }
        Ok(Reference {
            host: host.into(),
            repo: repo.into(),
            tag,
        })
    }

    /// Plain HTTP for loopback registries, HTTPS otherwise.
    pub fn base_url(&self) -> String {
        let name = self
            .host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    &self.host
                }
            });
        format!(
            "{}://{}",
            if is_loopback(name) { "http" } else { "https" },
            self.host
        )
    }
}

/// Run `f` with logging off on this thread. At trace level (`-vvv`) ureq
/// dumps every byte it sends and receives, `Authorization` headers and token
/// responses included; kiln's requests run under this and are logged by
/// [`logged_request`] instead.
fn unlogged<T>(f: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
}

/// ureq middleware: every request of a [`Client`] runs [`unlogged`] and is
/// logged at debug level as method, URL without its query, and outcome.
fn logged_request(
    req: ureq::http::Request<ureq::SendBody>,
    next: ureq::middleware::MiddlewareNext,
) -> std::result::Result<Response, ureq::Error> {
    let method = req.method().clone();
    let uri = req.uri();
    let url = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    );
    let resp = unlogged(|| next.handle(req));
    match &resp {
        Ok(r) => tracing::debug!(%method, %url, status = r.status().as_u16(), "registry"),
        Err(e) => tracing::debug!(%method, %url, error = %e, "registry"),
    }
    resp
}

/// A parsed `WWW-Authenticate` challenge (RFC 9110 §11.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower-cased).
    pub scheme: String,
    /// Its auth-params (`realm`, `service`, `scope`), keys lower-cased.
    pub params: BTreeMap<String, String>,
}

/// Parse a `WWW-Authenticate` header value holding one challenge, with
/// quoted-string params that may contain commas and escaped quotes.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, mut rest) = match h.find(' ') {
        Some(i) => (&h[..i], h[i + 1..].trim_start()),
        None => (h, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let mut value = String::new();
        if let Some(r) = rest.strip_prefix('"') {
            let mut chars = r.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &r[end? + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        params.insert(key, value);
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A session with one repository of a registry.
pub(crate) struct Client {
    /// Its agents, with kiln's limits and proxy rule ([`transport`]).
    agents: Agents,
    /// Its limits.
    net: Net,
    pub(crate) base: String,
    /// The origin of `base`: the only one the registry's credentials and
    /// token are sent to.
    pub(crate) origin: Origin,
    pub(crate) r: Reference,
    pub(crate) auth: Option<String>,
}

pub(crate) type Response = ureq::http::Response<ureq::Body>;

pub(crate) fn net(url: &str) -> impl FnOnce(ureq::Error) -> anyhow::Error + '_ {
    move |e| {
        let why = match e {
            ureq::Error::Timeout(t) => format!(
                "no answer in time ({t} limit; {} sets the limits)",
                transport::TIMEOUT_ENV
            ),
            e => e.to_string(),
        };
        EnvError::new(format!("cannot reach the registry at {url}: {why}")).into()
    }
}

impl Client {
    /// Connect: `GET /v2/`, and answer its authentication challenge, with
    /// the limits and proxy of the environment ([`Net::from_env`]).
    pub(crate) fn connect(r: &Reference, push: bool) -> Result<Client> {
        Client::connect_with(r, push, Net::from_env()?)
    }

    /// [`Client::connect`] with the limits and proxy `net`.
    pub(crate) fn connect_with(r: &Reference, push: bool, net: Net) -> Result<Client> {
        let base = r.base_url();
        let origin = Origin::of(&base).ok_or_else(|| InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("oci reference".into()),
            message: format!("{:?}: not a host kiln can reach as {base}", r.host),
        })?;
        let mut c = Client {
            agents: Agents::new(&net),
            net,
            base: base.clone(),
            origin,
            r: r.clone(),
            auth: None,
        };
        let url = format!("{base}/v2/");
        let resp = c.send(&url, |u| c.req("GET", u))?;
        match resp.status().as_u16() {
            200 => {}
            401 => {
                let h = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let ch = parse_challenge(h).with_context(|| {
                    format!("{url} asks for authentication with an unreadable challenge {h:?}")
                })?;
                let creds = credentials(&r.host);
                c.auth = Some(match ch.scheme.as_str() {
                    "basic" => {
                        let (u, p) = creds.ok_or_else(|| no_creds(&r.host))?;
                        basic(&u, &p)
                    }
                    "bearer" => format!("Bearer {}", c.token(&ch, creds.as_ref(), push)?),
                    other => bail!(crate::env_err!(
                        "{url}: unsupported authentication scheme {other:?}"
                    )),
                });
            }
            s => bail!(EnvError::new(format!(
                "{url} answered {s}: is this an OCI registry?"
            ))),
        }
        Ok(c)
    }

    /// A bearer token from the challenge's realm (Docker token protocol),
    /// asked with the credentials [`realm_credentials`] allows there.
    pub(crate) fn token(
        &self,
        ch: &Challenge,
        creds: Option<&(String, String)>,
        push: bool,
    ) -> Result<String> {
        let realm = ch
            .params
            .get("realm")
            .context("bearer challenge without a realm")?;
        let realm_origin = Origin::of(realm).ok_or_else(|| {
            check_failed(format!(
                "the registry {} names the token service {realm:?}, which is not an http(s) URL",
                self.r.host
            ))
        })?;
        let sent = realm_credentials(&self.origin, &realm_origin, creds.cloned(), |h| {
            configured_credentials(h)
        });
        let scope = format!(
            "repository:{}:{}",
            self.r.repo,
            if push { "pull,push" } else { "pull" }
        );
        let mut resp = follow(&self.r.host, realm, |url, first| {
            let mut req = self.agents.for_url(url).get(url);
            if first {
                req = req.query("scope", &scope);
                if let Some(s) = ch.params.get("service") {
                    req = req.query("service", s);
                }
            }
            // The realm's credentials go to the realm's origin only.
            let same = Origin::of(url).is_some_and(|o| o.same(&realm_origin));
            if let Some((u, p)) = sent.as_ref().filter(|_| same) {
                req = req.header("Authorization", basic(u, p));
            }
            req.call()
        })?;
        if resp.status().as_u16() != 200 {
            if sent.is_none() && creds.is_some() {
                bail!(EnvError::new(format!(
                    "the registry {} sends token requests to {realm_origin}, another origin: kiln sends credentials there only over HTTPS (or to loopback), and only those stored for {} in auth.json",
                    self.r.host, realm_origin.authority
                )));
            }
            if sent.is_none() {
                return Err(no_creds(&self.r.host));
            }
            bail!(check_failed(format!(
                "the token service {realm} refused the credentials for {} ({})",
                self.r.host,
                resp.status()
            )));
        }
        let body = unlogged(|| read_small(&mut resp))?;
        tracing::trace!(realm = %realm_origin, response = %redact_token_response(&body), "token service answered");
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            crate::env_err!("the token service {realm_origin} answered with unreadable JSON: {e}")
        })?;
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(String::from)
            .context("token service answered without a token")
    }

    pub(crate) fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.r.repo)
    }

    /// A GET, HEAD or DELETE request to `url`, with the registry's
    /// credentials when `url` is of its origin.
    pub(crate) fn req(
        &self,
        method: &str,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let agent = self.agents.for_url(url);
        let mut b = match method {
            "HEAD" => agent.head(url),
            "DELETE" => agent.delete(url),
            _ => agent.get(url),
        };
        if let Some(a) = self.auth_for(url) {
            b = b.header("Authorization", a);
        }
        b
    }

    /// The `Authorization` header for a request to `url`: only to the
    /// registry's own origin (an upload `Location` may name another host).
    fn auth_for(&self, url: &str) -> Option<&str> {
        let same = Origin::of(url).is_some_and(|o| o.same(&self.origin));
        if !same && self.auth.is_some() {
            tracing::debug!(%url, registry = %self.origin, "another origin: sent without the registry's credentials");
        }
        self.auth.as_deref().filter(|_| same)
    }

    pub(crate) fn req_body(
        &self,
        method: &str,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let agent = self.agents.for_url(url);
        let mut b = if method == "POST" {
            agent.post(url)
        } else {
            agent.put(url)
        };
        if let Some(a) = self.auth_for(url) {
            b = b.header("Authorization", a);
        }
        b
    }

    /// Send the GET or HEAD request `build` makes for each URL, from `url`
    /// on, following redirects by [`transport`]'s rules; each hop's request
    /// is built afresh, so credentials go only to the registry's origin.
    pub(crate) fn send(
        &self,
        url: &str,
        build: impl Fn(&str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> Result<Response> {
        follow(&self.r.host, url, |u, _| build(u).call())
    }

    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(&url, |u| self.req("HEAD", u))?;
        Ok(resp.status().as_u16() == 200)
    }

    /// Upload a blob of `size` bytes (POST then monolithic PUT), unless
    /// already there; the PUT may take [`Net::overall`] for its size.
    pub(crate) fn put_blob(
        &self,
        digest: &str,
        size: u64,
        body: impl ureq::AsSendBody,
    ) -> Result<()> {
        if self.has_blob(digest)? {
            return Ok(());
        }
        let url = self.url("blobs/uploads/");
        let resp = self
            .req_body("POST", &url)
            .send_empty()
            .map_err(net(&url))?;
        expect(&resp, 202, &url)?;
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("blob upload started without a Location")?;
        let mut put = if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{loc}", self.base)
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={digest}"));
        let resp = self
            .req_body("PUT", &put)
            .header("Content-Type", "application/octet-stream")
            .config()
            .timeout_global(Some(self.net.overall(size)))
            .build()
            .send(body)
            .map_err(net(&put))?;
        expect(&resp, 201, &put)
    }

    /// PUT a manifest; returns its digest and whether the registry
    /// processed its subject (the `OCI-Subject` header).
    pub(crate) fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<(String, bool)> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .req_body("PUT", &url)
            .header("Content-Type", media_type)
            .send(body)
            .map_err(net(&url))?;
        expect(&resp, 201, &url)?;
        Ok((
            crate::fs::layer::sha256_digest(body),
            resp.headers().contains_key("oci-subject"),
        ))
    }

    /// GET a manifest (or index); `None` on 404. At most [`SMALL_LIMIT`]
    /// bytes are accepted.
    pub(crate) fn get_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut resp = self.send(&url, |u| {
            self.req("GET", u)
                .header("Accept", format!("{MANIFEST_TYPE}, {INDEX_TYPE}"))
        })?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        expect(&resp, 200, &url)?;
        Ok(Some(read_bounded(&mut resp, SMALL_LIMIT, &url)?))
    }

    /// Fetch the content descriptor `d` names (`what`, for errors) into
    /// `w`: refused before any request when `d.size` is over `limit`;
    /// refused when the registry sends more than `d.size` bytes (reading
    /// stops at `d.size + 1`, nothing past `d.size` reaches `w`), fewer, or
    /// bytes that do not hash to `d.digest`.
    fn get_exact(
        &self,
        tail: &str,
        accept: &str,
        what: &str,
        d: &Descriptor,
        limit: u64,
        w: &mut impl Write,
    ) -> Result<()> {
        let (digest, size) = (&d.digest, d.size);
        let from = format!("{what} {digest} from {}/{}", self.r.host, self.r.repo);
        if size > limit {
            bail!(check_failed(format!(
                    "{from}: its descriptor declares {size} bytes, more than the {limit} kiln accepts for it: refusing it"
                )));
        }
        let url = self.url(tail);
        let mut resp = self.send(&url, |u| {
            self.req("GET", u)
                .header("Accept", accept)
                .config()
                .timeout_global(Some(self.net.overall(size)))
                .build()
        })?;
        expect(&resp, 200, &url)?;
        let body = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut hw = HashWriter::new(w);
        let got = copy_at_most(body, &mut hw, size, |e| {
            EnvError::new(format!("downloading {url}: {e}")).into()
        })?;
        let (_, hash, _) = hw.finish();
        match got {
            None => bail!(check_failed(format!(
                    "{from}: the registry sent more than the {size} bytes its descriptor declares: refusing it"
                ))),
            Some(n) if n != size => bail!(check_failed(format!(
                    "{from}: the registry sent {n} bytes, but its descriptor declares {size}"
                ))),
            Some(_) if hash != *digest => bail!(check_failed(format!(
                    "{from}: the downloaded bytes hash to {hash}: the registry's copy is corrupt or tampered with"
                ))),
            Some(_) => Ok(()),
        }
    }

    /// The blob `d` names, streamed into `w` (see [`Client::get_exact`]).
    pub(crate) fn get_blob_to(
        &self,
        what: &str,
        d: &Descriptor,
        limit: u64,
        w: &mut impl Write,
    ) -> Result<()> {
        let tail = format!("blobs/{}", d.digest);
        self.get_exact(&tail, "*/*", what, d, limit, w)
    }

    /// The small blob `d` names, in memory: at most `limit` (itself at
    /// most [`SMALL_LIMIT`]) bytes.
    pub(crate) fn get_small_blob(&self, what: &str, d: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        let mut b = Vec::new();
        self.get_blob_to(what, d, limit.min(SMALL_LIMIT), &mut b)?;
        Ok(b)
    }

    /// The manifest `d` names (by digest), at most [`SMALL_LIMIT`] bytes.
    pub(crate) fn get_manifest_exact(&self, what: &str, d: &Descriptor) -> Result<Vec<u8>> {
        let mut b = Vec::new();
        let tail = format!("manifests/{}", d.digest);
        let accept = format!("{MANIFEST_TYPE}, {INDEX_TYPE}");
        self.get_exact(&tail, &accept, what, d, SMALL_LIMIT, &mut b)?;
        Ok(b)
    }
}

pub(crate) fn no_creds(host: &str) -> anyhow::Error {
    EnvError::new(format!(
        "the registry {host} needs credentials: set KILN_REGISTRY_USERNAME and KILN_REGISTRY_PASSWORD (or log in with skopeo/podman/docker)"
    ))
    .into()
}

pub(crate) fn expect(resp: &Response, status: u16, url: &str) -> Result<()> {
    let got = resp.status().as_u16();
    if got == status {
        return Ok(());
    }
    let err = format!("{url} answered {} (expected {status})", resp.status());
    if got == 401 || got == 403 {
        bail!(EnvError::new(format!("{err}: not authorised")));
    }
    bail!(EnvError::new(err))
}

pub(crate) fn read_small(resp: &mut Response) -> Result<Vec<u8>> {
    resp.body_mut()
        .with_config()
        .limit(SMALL_LIMIT)
        .read_to_vec()
        .context("reading a registry response")
}

/// Copy `r` into `w` until `r` ends, refusing more than `limit` bytes: at
/// most `limit + 1` bytes are read from `r` and at most `limit` written to
/// `w`. `None` when `r` had more; `read_error` classifies a failed read.
pub(crate) fn copy_at_most(
    r: impl Read,
    w: &mut impl Write,
    limit: u64,
    read_error: impl Fn(std::io::Error) -> anyhow::Error,
) -> Result<Option<u64>> {
    let mut r = r.take(limit.saturating_add(1));
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(Some(total)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        if total + n as u64 > limit {
            return Ok(None);
        }
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A response body of at most `limit` bytes, read into memory.
pub(crate) fn read_bounded(resp: &mut Response, limit: u64, url: &str) -> Result<Vec<u8>> {
    let body = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut b = Vec::new();
    match copy_at_most(body, &mut b, limit, |e| {
        EnvError::new(format!("reading {url}: {e}")).into()
    })? {
        Some(_) => Ok(b),
        None => bail!(check_failed(format!(
            "{url} answered with more than {limit} bytes: refusing it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("oci://127.0.0.1:5000/kiln/hello:1.0").unwrap();
        assert_eq!(
            r,
            Reference {
                host: "127.0.0.1:5000".into(),
                repo: "kiln/hello".into(),
                tag: Some("1.0".into())
            }
        );
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        let r = Reference::parse("oci://ghcr.io/acme/hello").unwrap();
        assert_eq!(
            (r.tag.as_deref(), r.base_url().as_str()),
            (None, "https://ghcr.io")
        );
        assert_eq!(
            Reference::parse("oci://localhost/x").unwrap().base_url(),
            "http://localhost"
        );
        assert_eq!(
            Reference::parse("oci://[::1]:5000/x").unwrap().base_url(),
            "http://[::1]:5000"
        );
        assert_eq!(
            Reference::parse("oci://10.0.0.1:5000/x")
                .unwrap()
                .base_url(),
            "https://10.0.0.1:5000"
        );
        for bad in [
            "docker://x/y",
            "oci://host",
            "oci://host/Upper",
            "oci://host/x:bad/tag",
            "oci:///x",
            "oci://h/x:",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert_eq!(crate::util::error::exit_code(&e), 2, "{bad}");
        }
    }

    #[test]
    fn auth_challenges() {
        type Want = Option<(&'static str, &'static [(&'static str, &'static str)])>;
        let cases: &[(&str, Want)] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
                Some((
                    "bearer",
                    &[
                        ("realm", "https://auth.docker.io/token"),
                        ("scope", "repository:library/alpine:pull,push"),
                        ("service", "registry.docker.io"),
                    ],
                )),
            ),
            (
                r#"Basic realm="Registry Realm""#,
                Some(("basic", &[("realm", "Registry Realm")])),
            ),
            (
                r#"basic  Realm = "a\"b" , charset=UTF-8"#,
                Some(("basic", &[("charset", "UTF-8"), ("realm", "a\"b")])),
            ),
            ("Bearer", Some(("bearer", &[]))),
            (r#"Bearer realm="unterminated"#, None),
            ("", None),
        ];
        for (h, want) in cases {
            let got = parse_challenge(h);
            let want = want.map(|(s, ps)| Challenge {
                scheme: s.into(),
                params: ps
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
            assert_eq!(got, want, "{h}");
        }
    }
}
