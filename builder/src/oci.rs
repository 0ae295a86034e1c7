//! Push to and pull from OCI registries, per the OCI Distribution
//! Specification v1.1 (<https://github.com/opencontainers/distribution-spec>)
//! and the Image Manifest v1.1 artifact guidance.
//!
//! An image goes up as an artifact manifest tagged with its version:
//! - `config`: the kiln manifest (`application/vnd.kiln.manifest.v1+json`);
//! - one layer: the raw disk, zstd-compressed (`application/vnd.kiln.disk.raw.v1+zstd`),
//!   annotated with the uncompressed digest and size.
//!
//! Beside it, as artifacts whose `subject` is the image manifest: the
//! minisign signatures of every release file, the provenance statement with
//! the verdict, and the SBOM when there is one. Registries without the
//! referrers API (Debian's docker-registry 2.8) get the spec's fallback: an
//! image index under the tag `sha256-<hex of the image manifest>`.
//!
//! Loopback registries are spoken to over plain HTTP, every other one over
//! HTTPS. Authentication follows the `WWW-Authenticate` challenge of `/v2/`:
//! `Basic`, or `Bearer` with a token from the realm (the Docker token
//! protocol), with credentials from `$KILN_REGISTRY_USERNAME` and
//! `$KILN_REGISTRY_PASSWORD`, else the `auths` of containers' `auth.json` or
//! Docker's `config.json`. Blobs are streamed from and to files, never held
//! in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Digest;

use crate::error::{CheckFailed, EnvError, InputError};
use crate::manifest::Manifest;
use crate::release::PublishedFile;
use crate::sign;

/// OCI image manifest media type.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// artifactType of a kiln image.
pub const IMAGE_ARTIFACT: &str = "application/vnd.kiln.image.v1";
/// Media type of the kiln manifest as the artifact's config.
pub const CONFIG_TYPE: &str = "application/vnd.kiln.manifest.v1+json";
/// Media type of the compressed disk layer.
pub const DISK_TYPE: &str = "application/vnd.kiln.disk.raw.v1+zstd";
/// artifactType and layer type of the signature artifact.
pub const SIGNATURE_ARTIFACT: &str = "application/vnd.kiln.minisign.v1";
/// artifactType of the provenance artifact (in-toto).
pub const PROVENANCE_ARTIFACT: &str = "application/vnd.in-toto+json";
/// artifactType of the SBOM artifact.
pub const SBOM_ARTIFACT: &str = "application/spdx+json";
/// The OCI empty descriptor's media type, digest and content (image-spec v1.1).
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// Annotations (OCI pre-defined and kiln's).
const TITLE: &str = "org.opencontainers.image.title";
const RAW_DIGEST: &str = "dev.kiln.image.digest";
const RAW_SIZE: &str = "dev.kiln.image.size";
/// zstd level for the disk layer: fast, and the same bytes every time.
const ZSTD_LEVEL: i32 = 3;
/// Largest manifest or small blob read into memory (the spec's 4 MiB manifest limit).
const SMALL_LIMIT: u64 = 4 << 20;

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
        let loopback = name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback());
        format!(
            "{}://{}",
            if loopback { "http" } else { "https" },
            self.host
        )
    }
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

/// Registry credentials for a host: the environment, else containers'
/// `auth.json`, else Docker's `config.json`.
fn credentials(host: &str) -> Option<(String, String)> {
    if let (Ok(u), Ok(p)) = (
        std::env::var("KILN_REGISTRY_USERNAME"),
        std::env::var("KILN_REGISTRY_PASSWORD"),
    ) {
        return Some((u, p));
    }
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(p.into());
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(p).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        files.push(PathBuf::from(&h).join(".config/containers/auth.json"));
        files.push(PathBuf::from(&h).join(".docker/config.json"));
    }
    for f in files {
        let Some(v) = std::fs::read(&f)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let auth = v["auths"][host]["auth"]
            .as_str()
            .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok());
        if let Some((u, p)) = auth.and_then(|a| String::from_utf8(a).ok()).and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        }) {
            return Some((u, p));
        }
    }
    None
}

fn basic(u: &str, p: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    )
}

/// A session with one repository of a registry.
struct Client {
    agent: ureq::Agent,
    base: String,
    r: Reference,
    auth: Option<String>,
}

type Response = ureq::http::Response<ureq::Body>;

fn net(url: &str) -> impl FnOnce(ureq::Error) -> anyhow::Error + '_ {
    move |e| EnvError::new(format!("cannot reach the registry at {url}: {e}")).into()
}

impl Client {
    /// Connect: `GET /v2/`, and answer its authentication challenge.
    fn connect(r: &Reference, push: bool) -> Result<Client> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let base = r.base_url();
        let mut c = Client {
            agent,
            base: base.clone(),
            r: r.clone(),
            auth: None,
        };
        let url = format!("{base}/v2/");
        let resp = c.agent.get(&url).call().map_err(net(&url))?;
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
                    other => bail!("{url}: unsupported authentication scheme {other:?}"),
                });
            }
            s => bail!(EnvError::new(format!(
                "{url} answered {s}: is this an OCI registry?"
            ))),
        }
        Ok(c)
    }

    /// A bearer token from the challenge's realm (Docker token protocol).
    fn token(
        &self,
        ch: &Challenge,
        creds: Option<&(String, String)>,
        push: bool,
    ) -> Result<String> {
        let realm = ch
            .params
            .get("realm")
            .context("bearer challenge without a realm")?;
        let scope = format!(
            "repository:{}:{}",
            self.r.repo,
            if push { "pull,push" } else { "pull" }
        );
        let mut req = self.agent.get(realm).query("scope", &scope);
        if let Some(s) = ch.params.get("service") {
            req = req.query("service", s);
        }
        if let Some((u, p)) = creds {
            req = req.header("Authorization", basic(u, p));
        }
        let mut resp = req.call().map_err(net(realm))?;
        if resp.status().as_u16() != 200 {
            if creds.is_none() {
                return Err(no_creds(&self.r.host));
            }
            bail!(CheckFailed {
                message: format!(
                    "the token service {realm} refused the credentials for {} ({})",
                    self.r.host,
                    resp.status()
                )
            });
        }
        let v: Value = serde_json::from_slice(&read_small(&mut resp)?)?;
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(String::from)
            .context("token service answered without a token")
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.r.repo)
    }

    fn req(&self, method: &str, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let mut b = match method {
            "HEAD" => self.agent.head(url),
            "DELETE" => self.agent.delete(url),
            _ => self.agent.get(url),
        };
        if let Some(a) = &self.auth {
            b = b.header("Authorization", a);
        }
        b
    }

    fn req_body(&self, method: &str, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut b = if method == "POST" {
            self.agent.post(url)
        } else {
            self.agent.put(url)
        };
        if let Some(a) = &self.auth {
            b = b.header("Authorization", a);
        }
        b
    }

    fn has_blob(&self, digest: &str) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.req("HEAD", &url).call().map_err(net(&url))?;
        Ok(resp.status().as_u16() == 200)
    }

    /// Upload a blob (POST then monolithic PUT), unless already there.
    fn put_blob(&self, digest: &str, body: impl ureq::AsSendBody) -> Result<()> {
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
            .send(body)
            .map_err(net(&put))?;
        expect(&resp, 201, &put)
    }

    /// PUT a manifest; returns its digest and whether the registry
    /// processed its subject (the `OCI-Subject` header).
    fn put_manifest(
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
            crate::layer::sha256_digest(body),
            resp.headers().contains_key("oci-subject"),
        ))
    }

    /// GET a manifest (or index); `None` on 404.
    fn get_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut resp = self
            .req("GET", &url)
            .header("Accept", format!("{MANIFEST_TYPE}, {INDEX_TYPE}"))
            .call()
            .map_err(net(&url))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        expect(&resp, 200, &url)?;
        Ok(Some(read_small(&mut resp)?))
    }

    fn get_blob(&self, digest: &str) -> Result<Response> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.req("GET", &url).call().map_err(net(&url))?;
        expect(&resp, 200, &url)?;
        Ok(resp)
    }

    /// A small blob, checked against its digest.
    fn get_small_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let b = read_small(&mut self.get_blob(digest)?)?;
        check_digest(&b, digest, &self.url(&format!("blobs/{digest}")))?;
        Ok(b)
    }
}

fn no_creds(host: &str) -> anyhow::Error {
    EnvError::new(format!(
        "the registry {host} needs credentials: set KILN_REGISTRY_USERNAME and KILN_REGISTRY_PASSWORD (or log in with skopeo/podman/docker)"
    ))
    .into()
}

fn expect(resp: &Response, status: u16, url: &str) -> Result<()> {
    let got = resp.status().as_u16();
    if got == status {
        return Ok(());
    }
    let err = format!("{url} answered {} (expected {status})", resp.status());
    if got == 401 || got == 403 {
        bail!(EnvError::new(format!("{err}: not authorised")));
    }
    bail!(err)
}

fn read_small(resp: &mut Response) -> Result<Vec<u8>> {
    resp.body_mut()
        .with_config()
        .limit(SMALL_LIMIT)
        .read_to_vec()
        .context("reading a registry response")
}

fn check_digest(bytes: &[u8], digest: &str, what: &str) -> Result<()> {
    let got = crate::layer::sha256_digest(bytes);
    if got != digest {
        bail!(CheckFailed {
            message: format!("{what}: content hashes to {got}, not {digest}: the registry's copy is corrupt or tampered with")
        });
    }
    Ok(())
}

/// A writer that hashes what passes through it.
struct HashWriter<W> {
    inner: W,
    hash: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hash: sha2::Sha256::new(),
            len: 0,
        }
    }
    fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hash.finalize())),
            self.len,
        )
    }
}

fn descriptor(media_type: &str, digest: &str, size: u64, title: Option<&str>) -> Value {
    let mut d = json!({ "mediaType": media_type, "digest": digest, "size": size });
    if let Some(t) = title {
        d["annotations"] = json!({ TITLE: t });
    }
    d
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `HOST/REPO:TAG@sha256:…` of the image manifest.
    pub reference: String,
    /// The image manifest digest.
    pub manifest_digest: String,
    /// The compressed disk layer's digest and size.
    pub layer_digest: String,
    /// Compressed size.
    pub layer_size: u64,
    /// Digests of the signature, provenance and SBOM artifacts.
    pub referrers: Vec<String>,
}

/// Push a published release (its directory and signed files) to `oci://HOST[:PORT]/REPO`.
pub fn push(target: &str, dir: &Path, m: &Manifest, files: &[PublishedFile]) -> Result<PushReport> {
    let r = Reference::parse(target)?;
    if r.tag.is_some() {
        return Err(InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("--to".into()),
            message: format!(
                "{target}: give the repository without a tag; the tag is the image version"
            ),
        }
        .into());
    }
    let c = Client::connect(&r, true)?;
    let base = format!("{}-{}", m.name, m.version);
    let file = |suffix: &str| {
        files.iter().find(|f| {
            f.path
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == format!("{base}{suffix}"))
        })
    };
    let raw = dir.join(&m.image.file);
    let man = file(".manifest.json").context("published manifest missing")?;
    let config = std::fs::read(&man.path)?;

    // The disk, compressed into a temporary file (hashed on the way), then streamed up.
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-tmp-")
        .tempfile_in(dir)?;
    let mut w = HashWriter::new(tmp.reopen()?);
    zstd::stream::copy_encode(
        File::open(&raw).with_context(|| format!("opening {}", raw.display()))?,
        &mut w,
        ZSTD_LEVEL,
    )
    .with_context(|| format!("compressing {}", raw.display()))?;
    let (f, layer_digest, layer_size) = w.finish();
    f.sync_all()?;
    tracing::info!(%layer_digest, layer_size, "pushing the disk layer");
    c.put_blob(&layer_digest, File::open(tmp.path())?)?;
    let config_digest = crate::layer::sha256_digest(&config);
    c.put_blob(&config_digest, &config[..])?;
    c.put_blob(EMPTY_DIGEST, &b"{}"[..])?;

    let mut layer = descriptor(
        DISK_TYPE,
        &layer_digest,
        layer_size,
        Some(&format!("{}.zst", m.image.file)),
    );
    layer["annotations"][RAW_DIGEST] = json!(m.image.digest);
    layer["annotations"][RAW_SIZE] = json!(m.image.size.to_string());
    let image = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": IMAGE_ARTIFACT,
        "config": descriptor(CONFIG_TYPE, &config_digest, config.len() as u64, None),
        "layers": [layer],
        "annotations": {
            TITLE: m.name,
            "org.opencontainers.image.version": m.version,
            "org.opencontainers.image.created": crate::release::rfc3339(m.source_date_epoch),
            RAW_DIGEST: m.image.digest,
        },
    });
    let image_bytes = serde_json::to_vec(&image)?;
    let tag = &m.version;
    let (image_digest, _) = c.put_manifest(tag, MANIFEST_TYPE, &image_bytes)?;
    let subject = descriptor(MANIFEST_TYPE, &image_digest, image_bytes.len() as u64, None);

    // Referring artifacts: signatures, provenance (+ verdict), SBOM.
    let mut artifacts: Vec<(&str, Vec<(String, &Path)>)> = vec![(
        SIGNATURE_ARTIFACT,
        files
            .iter()
            .map(|f| (SIGNATURE_ARTIFACT.to_string(), f.signature.as_path()))
            .collect(),
    )];
    let mut prov = Vec::new();
    for (suffix, mt) in [
        (".provenance.json", PROVENANCE_ARTIFACT),
        (".verdict.json", "application/vnd.kiln.verdict.v1+json"),
    ] {
        if let Some(f) = file(suffix) {
            prov.push((mt.to_string(), f.path.as_path()));
        }
    }
    artifacts.push((PROVENANCE_ARTIFACT, prov));
    if let Some(f) = file(".spdx.json") {
        artifacts.push((
            SBOM_ARTIFACT,
            vec![(SBOM_ARTIFACT.to_string(), f.path.as_path())],
        ));
    }
    let mut referrers = Vec::new();
    let mut fallback = Vec::new();
    for (artifact_type, parts) in artifacts {
        let mut layers = Vec::new();
        for (mt, p) in parts {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let d = crate::layer::sha256_digest(&b);
            c.put_blob(&d, &b[..])?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            layers.push(descriptor(&mt, &d, b.len() as u64, name.as_deref()));
        }
        let art = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": artifact_type,
            "config": descriptor(EMPTY_TYPE, EMPTY_DIGEST, 2, None),
            "layers": layers,
            "subject": subject,
            "annotations": { "org.opencontainers.image.created": crate::release::rfc3339(m.source_date_epoch) },
        });
        let bytes = serde_json::to_vec(&art)?;
        let digest = crate::layer::sha256_digest(&bytes);
        let (_, indexed) = c.put_manifest(&digest, MANIFEST_TYPE, &bytes)?;
        if !indexed {
            let mut d = descriptor(MANIFEST_TYPE, &digest, bytes.len() as u64, None);
            d["artifactType"] = json!(artifact_type);
            fallback.push(d);
        }
        referrers.push(digest);
    }
    if !fallback.is_empty() {
        // The referrers tag schema (distribution-spec v1.1, "Unavailable Referrers API").
        let tag = image_digest.replacen(':', "-", 1);
        let mut index = match c.get_manifest(&tag)? {
            Some(b) => serde_json::from_slice::<Value>(&b)?,
            None => json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [] }),
        };
        let list = index["manifests"]
            .as_array_mut()
            .context("referrers index without manifests")?;
        for d in fallback {
            if !list.iter().any(|x| x["digest"] == d["digest"]) {
                list.push(d);
            }
        }
        c.put_manifest(&tag, INDEX_TYPE, &serde_json::to_vec(&index)?)?;
    }
    Ok(PushReport {
        reference: format!("{}/{}:{tag}@{image_digest}", r.host, r.repo),
        manifest_digest: image_digest,
        layer_digest,
        layer_size,
        referrers,
    })
}

/// What `kiln pull` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The image file.
    pub image: PathBuf,
    /// Its digest (verified).
    pub digest: String,
    /// Name and version.
    pub name: String,
    /// Version.
    pub version: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// The key id that signed it.
    pub key_id: String,
    /// The image manifest digest in the registry.
    pub manifest_digest: String,
}

/// The referrers of a manifest: the referrers API, else the fallback tag.
fn referrers(c: &Client, digest: &str) -> Result<Vec<Value>> {
    let url = c.url(&format!("referrers/{digest}"));
    let mut resp = c
        .req("GET", &url)
        .header("Accept", INDEX_TYPE)
        .call()
        .map_err(net(&url))?;
    let index: Value = if resp.status().as_u16() == 200 {
        serde_json::from_slice(&read_small(&mut resp)?)?
    } else {
        match c.get_manifest(&digest.replacen(':', "-", 1))? {
            Some(b) => serde_json::from_slice(&b)?,
            None => json!({ "manifests": [] }),
        }
    };
    Ok(index["manifests"].as_array().cloned().unwrap_or_default())
}

/// Download the compressed disk to a temporary file in `dir`, check its
/// digest, decompress to another, check the image digest; returns that file.
fn fetch_disk(
    c: &Client,
    layer: &Value,
    want_raw: &str,
    dir: &Path,
) -> Result<tempfile::NamedTempFile> {
    let digest = layer["digest"]
        .as_str()
        .context("disk layer without digest")?;
    let mut resp = c.get_blob(digest)?;
    let zst = tempfile::Builder::new()
        .prefix(".kiln-pull-")
        .tempfile_in(dir)?;
    let mut w = HashWriter::new(zst.reopen()?);
    std::io::copy(
        &mut resp.body_mut().with_config().limit(u64::MAX).reader(),
        &mut w,
    )
    .with_context(|| format!("downloading blob {digest}"))?;
    let (_, got, _) = w.finish();
    if got != digest {
        bail!(CheckFailed {
            message: format!("disk blob {digest} from {}/{}: the downloaded bytes hash to {got}: the registry's copy is corrupt or tampered with", c.r.host, c.r.repo)
        });
    }
    let raw = tempfile::Builder::new()
        .prefix(".kiln-pull-")
        .tempfile_in(dir)?;
    let mut w = HashWriter::new(raw.reopen()?);
    zstd::stream::copy_decode(File::open(zst.path())?, &mut w).map_err(|e| CheckFailed {
        message: format!("disk blob {digest} does not decompress: {e}"),
    })?;
    let (f, got, _) = w.finish();
    f.sync_all()?;
    if got != want_raw {
        bail!(CheckFailed {
            message: format!(
                "the disk in blob {digest} hashes to {got}, but its manifest names {want_raw}"
            )
        });
    }
    Ok(raw)
}

/// `kiln pull oci://HOST[:PORT]/REPO:TAG -o DIR --pubkey P`: fetch the image,
/// check every digest and the minisign signatures of the disk and its
/// manifest, and only then write `DIR/NAME-VERSION.raw`, its manifest and
/// their signatures.
pub fn pull(source: &str, out: &Path, pubkey: &Path) -> Result<PullReport> {
    let r = Reference::parse(source)?;
    let Some(tag) = r.tag.clone() else {
        return Err(InputError::file(
            "(command line)",
            format!("{source}: no tag (oci://HOST/REPO:TAG)"),
        )
        .into());
    };
    let pk = sign::load_public_key(pubkey)?;
    let c = Client::connect(&r, false)?;
    let bytes = c
        .get_manifest(&tag)?
        .ok_or_else(|| InputError::file("(command line)", format!("{source}: no such tag")))?;
    let manifest_digest = crate::layer::sha256_digest(&bytes);
    let image: Value = serde_json::from_slice(&bytes)?;
    if image["artifactType"] != IMAGE_ARTIFACT && image["config"]["mediaType"] != CONFIG_TYPE {
        bail!(InputError::file(
            "(command line)",
            format!(
                "{source} is not a kiln image (artifactType {})",
                image["artifactType"]
            )
        ));
    }
    let config_digest = image["config"]["digest"]
        .as_str()
        .context("manifest without config")?;
    let config = c.get_small_blob(config_digest)?;
    let m: Manifest =
        serde_json::from_slice(&config).context("parsing the kiln manifest from the registry")?;
    let layer = image["layers"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["mediaType"] == DISK_TYPE))
        .context("no disk layer in the image manifest")?
        .clone();

    // Signatures: the signature artifact among the referrers.
    let mut sigs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for d in referrers(&c, &manifest_digest)? {
        if d["artifactType"] != SIGNATURE_ARTIFACT {
            continue;
        }
        let Some(dd) = d["digest"].as_str() else {
            continue;
        };
        let Some(b) = c.get_manifest(dd)? else {
            continue;
        };
        check_digest(&b, dd, "signature artifact")?;
        let art: Value = serde_json::from_slice(&b)?;
        if art["subject"]["digest"] != manifest_digest.as_str() {
            continue;
        }
        for l in art["layers"].as_array().into_iter().flatten() {
            if let (Some(t), Some(ld)) = (l["annotations"][TITLE].as_str(), l["digest"].as_str()) {
                sigs.insert(t.to_string(), c.get_small_blob(ld)?);
            }
        }
    }
    let base = format!("{}-{}", m.name, m.version);
    let raw_sig_name = format!("{}.minisig", m.image.file);
    let man_name = format!("{base}.manifest.json");
    let man_sig_name = format!("{man_name}.minisig");
    for n in [&raw_sig_name, &man_sig_name] {
        if !sigs.contains_key(n) {
            bail!(CheckFailed {
                message: format!("{source}: no signature {n} among the image's referrers: refusing an unsigned image")
            });
        }
    }

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let raw = fetch_disk(&c, &layer, &m.image.digest, out)?;
    let stage = |data: &[u8]| -> Result<tempfile::NamedTempFile> {
        let mut t = tempfile::Builder::new()
            .prefix(".kiln-pull-")
            .tempfile_in(out)?;
        t.write_all(data)?;
        t.as_file().sync_all()?;
        Ok(t)
    };
    let raw_sig = stage(&sigs[&raw_sig_name])?;
    let man = stage(&config)?;
    let man_sig = stage(&sigs[&man_sig_name])?;
    let named = |n: &str| format!("{n} from {source}");
    let v = sign::verify_named(raw.path(), &named(&m.image.file), raw_sig.path(), &pk)?;
    sign::verify_named(man.path(), &named(&man_name), man_sig.path(), &pk)?;
    if v.fields.digest.as_deref() != Some(m.image.digest.as_str()) {
        bail!(CheckFailed {
            message: format!(
                "{source}: the signature's trusted comment names {:?}, not {}",
                v.fields.digest, m.image.digest
            )
        });
    }

    let mut files = Vec::new();
    for (t, name) in [
        (raw, m.image.file.clone()),
        (raw_sig, raw_sig_name),
        (man, man_name),
        (man_sig, man_sig_name),
    ] {
        let dest = out.join(&name);
        t.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        t.persist(&dest)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {}", dest.display()))?;
        files.push(dest);
    }
    Ok(PullReport {
        image: files[0].clone(),
        digest: m.image.digest,
        name: m.name,
        version: m.version,
        files,
        key_id: v.key_id,
        manifest_digest,
    })
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
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}");
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

    #[test]
    fn basic_header() {
        assert_eq!(
            basic("aladdin", "opensesame"),
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l"
        );
        assert_eq!(crate::layer::sha256_digest(b"{}"), EMPTY_DIGEST);
    }
}
